/**
 * vsock over USB end to end: two Effect endpoints over the simulated bulk link (virtual
 * clock), random link shapes, versions, pause thresholds and traffic. Every byte written on
 * every connection arrives once and in order, and no transfer exceeds the link's size.
 */
import fc from "fast-check";
import { Effect, Fiber } from "effect";
import type { Scope } from "effect";
import { TestClock } from "effect/testing";
import { describe } from "vitest";
import { property } from "./harness.ts";
import { MIN_TRANSFER_SIZE, makeUsbVsockRig, type UsbVsockRigStats } from "../sim/usb-link.ts";
import type { Version } from "../spec/usb-vsock.ts";

/** Runs `body` on the TestClock, moving virtual time until it ends (bounded). */
const runSim = <A, E>(body: Effect.Effect<A, E, Scope.Scope>, stepUs: number): Promise<A | "stuck"> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const fiber = yield* Effect.forkChild(body);
        for (let i = 0; i < 20_000; i++) {
          const done = fiber.pollUnsafe();
          if (done !== undefined) return yield* Fiber.join(fiber);
          yield* TestClock.adjust(`${stepUs} micros`);
        }
        return "stuck" as const;
      }),
    ).pipe(Effect.provide(TestClock.layer())),
  );

const versionArb: fc.Arbitrary<Version> = fc.constantFrom<Version>({ v: 0 }, { v: 1 }, { v: 2, nonce: 0 });

describe("usb-vsock over the simulated link", () => {
  property(
    "many connections, small transfers: every byte once and in order, no transfer over the link size",
    [
      "USB-LINK-MTU",
      "USB-LINK-LATENCY",
      "USB-CONN-DATA",
      "USB-FILL-SPLIT",
      "USB-PAUSE",
      "USB-SYNC-NEGOTIATE",
    ],
    fc.asyncProperty(
      fc.record({
        connections: fc.integer({ min: 1, max: 6 }),
        maxTransferSize: fc.integer({ min: MIN_TRANSFER_SIZE, max: 600 }),
        latencyUs: fc.integer({ min: 0, max: 400 }),
        maxInFlight: fc.integer({ min: 1, max: 4 }),
        hostVersion: versionArb,
        deviceVersion: versionArb,
        highWater: fc.integer({ min: 16, max: 512 }),
        messages: fc.array(fc.tuple(fc.nat({ max: 5 }), fc.integer({ min: 1, max: 300 })), { maxLength: 30 }),
      }),
      async (o) => {
        const out = await runSim(
          Effect.gen(function* () {
            const rig = yield* Effect.orDie(makeUsbVsockRig(o));
            yield* rig.start;
            // Each connection writes its messages in order; connections run concurrently.
            const perConn = Array.from({ length: o.connections }, (_, i) =>
              o.messages.filter(([c]) => c % o.connections === i).map(([, len], k) => ({ len, k })),
            );
            yield* Effect.forEach(
              perConn.map((msgs, i) => ({ msgs, i })),
              ({ msgs, i }) =>
                Effect.forEach(
                  msgs,
                  ({ len, k }) =>
                    rig.send(
                      i,
                      Uint8Array.from({ length: len }, (_, b) => (b * 7 + k * 13 + i) & 0xff),
                    ),
                  { discard: true },
                ),
              { concurrency: "unbounded", discard: true },
            );
            yield* rig.drain;
            return rig.stats();
          }),
          Math.max(1, o.latencyUs),
        );
        if (out === "stuck") throw new Error("the link did not deliver everything (stuck)");
        const s: UsbVsockRigStats = out;
        const total = o.messages.reduce((n, [, len]) => n + len, 0);
        return (
          s.sentBytes === total &&
          s.receivedBytes === total &&
          s.orderViolations === 0 &&
          s.connected === o.connections &&
          s.link.h2d.maxTransfer <= o.maxTransferSize &&
          s.link.d2h.maxTransfer <= o.maxTransferSize &&
          s.link.h2d.parseErrors + s.link.d2h.parseErrors === 0
        );
      },
    ),
    // A link that spins instead of delivering fails on its own time limit, not the test's.
    { numRuns: 200, params: { timeout: 10_000 } },
  );
});
