/**
 * `usb-vsock`: many vsock-over-USB connections between a host and a device endpoint
 * (impl/usb-vsock) over a simulated bulk link (sim/usb-link.ts) with small transfers and
 * latency, all on the Effect test clock the engine moves. Every byte must arrive once and
 * in order on its connection, and no transfer may exceed the link's size.
 */
import { Effect, Fiber, type Exit } from "effect";
import { TestClock } from "effect/testing";
import type { ChartSpec, Scenario, ScenarioInstance, SimContext } from "../engine.ts";
import { makeUsbVsockRig, type UsbVsockRig } from "../usb-link.ts";
import { versionMagic } from "../../spec/usb-vsock.ts";
import { streamChunk } from "./vsock-credit.ts";

export const USB_CHARTS: readonly ChartSpec[] = [
  {
    title: "Link occupancy",
    kind: "level",
    unit: "transfers in flight",
    series: [
      { metric: "usb.h2d.inflight", label: "host to device" },
      { metric: "usb.d2h.inflight", label: "device to host" },
    ],
  },
  {
    title: "Throughput",
    kind: "rate",
    unit: "bytes/s",
    series: [
      { metric: "usb.sent", label: "bytes written by the host" },
      { metric: "usb.received", label: "bytes received in order by the device" },
    ],
  },
  {
    title: "Transfers and pauses",
    kind: "level",
    unit: "count",
    series: [
      { metric: "usb.h2d.transfers", label: "transfers host to device" },
      { metric: "usb.d2h.transfers", label: "transfers device to host" },
      { metric: "usb.pauses", label: "Pause packets (flow control)" },
    ],
  },
];

/** Runs `eff` to its end while moving the test clock (and the engine's) in `stepUs` steps. */
export const runOnClock = <A, E>(
  ctx: SimContext,
  eff: Effect.Effect<A, E>,
  stepUs: number,
  maxSteps: number,
): Effect.Effect<Exit.Exit<A, E> | undefined> =>
  Effect.gen(function* () {
    const fiber = yield* Effect.forkChild(eff);
    for (let i = 0; i < maxSteps; i++) {
      const done = fiber.pollUnsafe();
      if (done !== undefined) return done;
      yield* TestClock.adjust(`${stepUs} micros`);
      ctx.clock.advance(stepUs);
    }
    const done = fiber.pollUnsafe();
    if (done === undefined) yield* Fiber.interrupt(fiber);
    return done;
  });

export const usbVsockScenario: Scenario = {
  name: "usb-vsock",
  summary:
    "many vsock-over-USB connections over a simulated bulk link with small transfers and latency; every byte once and in order, no transfer over the size",
  defaultSteps: 2000,
  smoke: { steps: 200, seeds: [1, 2] },
  defaultFaults: 0,
  noFaults:
    "its simulated bulk link is reliable, as USB bulk transfers are (errors are retried by the host controller); vsock packet faults are in vsock-credit and hostile-guest",
  charts: USB_CHARTS,
  create: (ctx) =>
    Effect.gen(function* () {
      const r = ctx.rng;
      const connections = r.pick([8, 16, 32, 64]);
      const maxTransferSize = r.pick([64, 128, 256, 512]);
      const latencyUs = r.pick([50, 125, 250]);
      const made = yield* Effect.result(makeUsbVsockRig({ connections, maxTransferSize, latencyUs }));
      if (made._tag === "Failure") return { skip: `link set-up refused: ${made.failure._tag}` };
      const rig: UsbVsockRig = made.success;
      ctx.facts["connections"] = connections;
      ctx.facts["max transfer size"] = maxTransferSize;
      ctx.facts["link latency"] = `${latencyUs} µs`;
      const started = yield* runOnClock(ctx, rig.start, latencyUs, 100_000);
      if (started === undefined || started._tag === "Failure")
        return ctx.fail(
          "SIM-DELIVERY",
          `the usb-vsock connections did not open (${started === undefined ? "timeout" : "failure"})`,
        );
      const mx = ctx.metrics;
      const m = {
        sent: mx.counter("usb.sent", "bytes written by the host"),
        received: mx.counter("usb.received", "bytes received in order by the device"),
        h2dT: mx.counter("usb.h2d.transfers", "transfers host to device"),
        d2hT: mx.counter("usb.d2h.transfers", "transfers device to host"),
        pauses: mx.counter("usb.pauses", "Pause packets"),
        h2dIn: mx.gauge("usb.h2d.inflight", "transfers in flight host to device"),
        d2hIn: mx.gauge("usb.d2h.inflight", "transfers in flight device to host"),
      };
      const offsets = new Array<number>(connections).fill(0);
      const check = (): void => {
        const s = rig.stats();
        m.sent.value = s.sentBytes;
        m.received.value = s.receivedBytes;
        m.h2dT.value = s.link.h2d.transfers;
        m.d2hT.value = s.link.d2h.transfers;
        m.pauses.value = s.pauses;
        m.h2dIn.value = s.link.h2d.inFlight;
        m.d2hIn.value = s.link.d2h.inFlight;
        if (s.orderViolations > 0)
          ctx.fail(
            "SIM-DELIVERY",
            `${s.orderViolations} bytes arrived out of order or altered on their connection`,
          );
        const biggest = Math.max(s.link.h2d.maxTransfer, s.link.d2h.maxTransfer);
        if (biggest > maxTransferSize)
          ctx.fail(
            "SIM-BOUNDS",
            `a transfer of ${biggest} bytes on a link of ${maxTransferSize}-byte transfers`,
          );
        if (s.failedWrites > 0)
          ctx.fail("SIM-DELIVERY", `${s.failedWrites} host writes failed on open connections`);
      };
      const inst: ScenarioInstance = {
        step: () =>
          Effect.gen(function* () {
            const n = r.int(4);
            for (let k = 0; k < n; k++) {
              const i = r.int(connections);
              const len = r.range(1, 3 * maxTransferSize);
              yield* rig.offer(i, streamChunk(i, offsets[i]!, len));
              offsets[i]! += len;
              if (ctx.trace.on) ctx.trace.event("offer", { conn: i, len });
            }
            yield* Effect.yieldNow;
            ctx.clock.advance(latencyUs / 5);
            check();
          }),
        drain: () =>
          Effect.gen(function* () {
            const done = yield* runOnClock(ctx, rig.drain, latencyUs, 1_000_000);
            check();
            if (done === undefined || done._tag === "Failure")
              ctx.fail("SIM-DELIVERY", `not every byte arrived: ${m.received.value} of ${m.sent.value}`);
            const s = rig.stats();
            if (s.receivedBytes !== s.sentBytes)
              ctx.fail("SIM-DELIVERY", `after draining, ${s.receivedBytes} of ${s.sentBytes} bytes arrived`);
            ctx.facts["protocol version"] = s.version === undefined ? "none" : versionMagic(s.version);
          }),
      };
      return inst;
    }),
};
