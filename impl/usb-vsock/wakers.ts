/**
 * Waiting in the filler, the endpoint and the simulated link: one `Waiters` per condition.
 * A fiber checks its condition and, when it must wait, calls `waitOn(waiters)` in the same
 * synchronous step; whoever changes the state calls `wake(waiters)`. The woken fiber
 * re-checks its condition (so a spurious wake-up is harmless); an interrupted wait
 * unregisters itself.
 *
 * No wake-up is lost between the check and the wait: the fiber scheduler may yield between
 * any two operations of a fiber (every `Scheduler.MaxOpsBeforeYield` operations), so another
 * fiber can change the state and wake before the waiter is registered. `waitOn` notes the
 * number of wake-ups when it is called (with the check) and returns at once when a wake-up
 * came after that.
 */
import { Effect } from "effect";

export class Waiters {
  /** How many times `wake` ran. */
  wakes = 0;
  /** Resumes the fibers waiting now. */
  readonly resumers = new Set<() => void>();
}

/** Resumes every fiber waiting on `waiters` now, from synchronous code. */
export const wake = (waiters: Waiters): void => {
  waiters.wakes++;
  if (waiters.resumers.size === 0) return;
  const now = [...waiters.resumers];
  waiters.resumers.clear();
  for (const resume of now) resume();
};

/**
 * Waits for the next `wake` after this call. Call it in the same synchronous step as the
 * check of the condition. A resumed waiter runs at once, on the waker's stack, so it yields
 * before returning: the waker finishes its step first, and others woken with it get a turn
 * (a filler's writers that are ready all add their packets to one transfer).
 */
export const waitOn = (waiters: Waiters): Effect.Effect<void> => {
  const seen = waiters.wakes;
  return Effect.andThen(
    Effect.callback<void>((resume) => {
      if (waiters.wakes !== seen) return resume(Effect.void);
      const resumer = (): void => resume(Effect.void);
      waiters.resumers.add(resumer);
      return Effect.sync(() => {
        waiters.resumers.delete(resumer);
      });
    }),
    Effect.yieldNow,
  );
};
