import { Effect, Fiber, Scheduler } from "effect";
import { describe, expect, it } from "vitest";
import { UsbPacketFiller } from "./filler.ts";
import { UsbPacketBuilder } from "./packet.ts";
import { Waiters, waitOn, wake } from "./wakers.ts";

/**
 * The scheduler yields every `ops` operations of a fiber; with the waiter's start delayed by
 * `pre` operations, some (ops, pre) pair puts that yield between the waiter's check of its
 * condition and its wait, where another fiber changes the state and wakes.
 */
const interleavings = Array.from({ length: 10 }, (_, i) => i + 3).flatMap((ops) =>
  Array.from({ length: 6 }, (_, pre) => ({ ops, pre })),
);

const delayed = <A, E>(pre: number, e: Effect.Effect<A, E>): Effect.Effect<A, E> => {
  let out = e;
  for (let i = 0; i < pre; i++) out = Effect.andThen(Effect.void, out);
  return out;
};

/** Whether `waiter` ends within 200 ms (it waits on nothing else than the wake-up). */
const ends = <A, E>(waiter: Effect.Effect<A, E>, waker: Effect.Effect<void>, ops: number): Promise<boolean> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const w = yield* Effect.forkChild(waiter);
      yield* Effect.forkChild(waker);
      const r = yield* Effect.timeoutOption(Fiber.join(w), "200 millis");
      return r._tag === "Some";
    }).pipe(Effect.provideService(Scheduler.MaxOpsBeforeYield, ops)),
  );

describe("usb-vsock wakers", { timeout: 60_000 }, () => {
  it("no wake-up is lost when the scheduler yields between a waiter's check and its wait", async () => {
    const stuck: string[] = [];
    for (const { ops, pre } of interleavings) {
      let ready = false;
      const waiters = new Waiters();
      const loop: Effect.Effect<void> = Effect.suspend(() =>
        ready ? Effect.void : Effect.flatMap(waitOn(waiters), () => loop),
      );
      const waker = Effect.sync(() => {
        ready = true;
        wake(waiters);
      });
      if (!(await ends(delayed(pre, loop), waker, ops))) stuck.push(`ops ${ops} pre ${pre}`);
    }
    expect(stuck).toEqual([]);
  });

  it("the filler's reader sees a packet written while it goes to wait, whatever the interleaving [USB-FILL-WAIT-DATA]", async () => {
    const stuck: string[] = [];
    const address = { deviceCid: 3, hostCid: 2, devicePort: 1, hostPort: 5 };
    for (const { ops, pre } of interleavings) {
      const filler = new UsbPacketFiller();
      const reader = filler.fill(new UsbPacketBuilder(new Uint8Array(256)));
      const writer = Effect.asVoid(filler.writeData(address, new Uint8Array([1, 2, 3])));
      if (!(await ends(delayed(pre, reader), writer, ops))) stuck.push(`ops ${ops} pre ${pre}`);
    }
    expect(stuck).toEqual([]);
  });

  it("an interrupted wait leaves no waiter behind, and a wake-up after the check ends the wait at once", async () => {
    const waiters = new Waiters();
    await Effect.runPromise(
      Effect.gen(function* () {
        const f = yield* Effect.forkChild(waitOn(waiters));
        yield* Effect.yieldNow;
        expect(waiters.resumers.size).toBe(1);
        yield* Fiber.interrupt(f);
        expect(waiters.resumers.size).toBe(0);
        const late = waitOn(waiters); // the check found the condition false here
        wake(waiters); // the state changed before the wait began
        expect((yield* Effect.timeoutOption(late, "1 second"))._tag).toBe("Some");
        expect(waiters.resumers.size).toBe(0);
      }),
    );
  });
});
