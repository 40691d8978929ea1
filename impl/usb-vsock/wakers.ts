/**
 * Waiting in the filler, the endpoint and the simulated link: one closed Effect `Latch` per
 * condition. A fiber waits with `waitOn(latch)` and re-checks its condition when woken (so a
 * spurious wake-up is harmless; an interrupted wait unregisters itself); whoever changes the
 * state calls `wake(latch)`.
 */
import { Effect, type Latch } from "effect";

/** Resumes every fiber waiting on `latch` now, from synchronous code; the latch stays closed. */
export const wake = (latch: Latch.Latch): void => {
  latch.openUnsafe();
  latch.closeUnsafe();
};

/**
 * Waits for the next `wake`. The latch resumes a waiter synchronously while it is open, so
 * the waiter yields before re-checking: re-checking at once would find the latch still open
 * and spin. (`Latch.release` leaves the latch closed but needs a fiber: from synchronous code
 * through `Effect.runSync` it halves the filler's packet rate.)
 */
export const waitOn = (latch: Latch.Latch): Effect.Effect<void> =>
  Effect.andThen(latch.await, Effect.yieldNow);
