/**
 * `queue`: one queue on the ring --ring chose, a Linux-like driver filling it with chains of the shapes real
 * drivers make (header and data in one or several descriptors, indirect tables), a device
 * popping and completing them, and the oracle checking every chain, used element,
 * notification decision and byte.
 */
import * as Effect from "effect/Effect"; // by path, not the `effect` index (start-up; see engine.ts)
import type { Scenario, ScenarioInstance, SimContext } from "../engine.ts";
import { QueueFaults, settlePendingFaults } from "./guest-faults.ts";
import { QueueRig, SHAPES } from "./queue-rig.ts";

export const QUEUE_CHARTS = [
  {
    title: "Ring occupancy: the split queue",
    kind: "level",
    unit: "descriptors / buffers",
    series: [
      { metric: "ring.occupancy", label: "descriptors in use" },
      { metric: "ring.avail", label: "available, not popped" },
      { metric: "ring.used", label: "used, not reclaimed" },
    ],
  },
  {
    title: "Throughput",
    kind: "rate",
    unit: "bytes/s",
    series: [
      { metric: "bytes.read", label: "bytes read by the device" },
      { metric: "bytes.written", label: "bytes written by the device" },
    ],
  },
  {
    title: "Notifications sent and suppressed",
    kind: "level",
    unit: "count",
    series: [
      { metric: "kicks.sent", label: "kicks sent" },
      { metric: "kicks.suppressed", label: "kicks suppressed" },
      { metric: "irqs.sent", label: "interrupts sent" },
      { metric: "irqs.suppressed", label: "interrupts suppressed" },
    ],
  },
] as const;

/** One step; with `faults` (--faults), the guest corrupts what it adds and repairs it. */
export const queueStep = (
  ctx: SimContext,
  rig: QueueRig,
  maxAdds: number,
  faults: QueueFaults | null = null,
): void => {
  const r = ctx.rng;
  // The device's pace changes in phases (a busy host, a descheduled thread): the ring
  // fills up and drains.
  const pace = rig.pace;
  if (pace.left-- <= 0) {
    pace.left = r.range(50, 400);
    pace.max = r.pick([0, 1, 2, 8, 8, 16]);
  }
  const adds = r.int(maxAdds + 1);
  for (let i = 0; i < adds; i++) {
    const head = rig.addChain(r.pick(SHAPES));
    if (head < 0) break;
    faults?.afterAdd(head);
  }
  // The device may run between the ring entries and the avail.idx store (the barrier):
  // it must not see those entries yet.
  if (r.chance(0.2)) rig.deviceRun(r.range(1, 4));
  rig.publishAndKick();
  faults?.afterPublish();
  if (pace.max > 0) rig.deviceRun(r.range(1, pace.max));
  faults?.afterDevice();
  rig.guestInterrupt();
  // Reclaim without an interrupt, as virtio-net's TX path does on each transmit.
  if (r.chance(0.05)) rig.reapAll();
  rig.sampleGauges();
  if (faults === null || faults.pendingRepairs === 0) rig.checkStall();
  ctx.clock.advance(1);
};

export const drainRig = (ctx: SimContext, rig: QueueRig, faults: QueueFaults | null = null): void => {
  faults?.drain();
  for (let i = 0; i < 100_000 && !rig.idle; i++) {
    rig.drainRound();
    rig.checkStall();
  }
  rig.sampleGauges();
  rig.checkDrained();
  if (faults !== null) settlePendingFaults(ctx);
};

export const queueScenario: Scenario = {
  name: "queue",
  summary:
    "a Linux-like driver fills one queue (split or packed, --ring) with chains of random shapes (direct and indirect); the device pops and completes them; chains, bytes and notifications sent/suppressed",
  defaultSteps: 20_000,
  rings: ["split", "packed"],
  smoke: { steps: 800, seeds: [1, 2, 3] },
  defaultFaults: 0,
  charts: QUEUE_CHARTS,
  create: (ctx) =>
    Effect.sync(() => {
      const r = ctx.rng;
      const rig = new QueueRig(ctx, {
        ring: ctx.ring,
        name: "",
        size: r.pick([8, 16, 32, 64, 128, 256]),
        eventIdx: r.chance(0.5),
        indirect: r.chance(0.7),
      });
      // --faults: descriptors, avail.idx/ring and notification fields corrupted and repaired.
      const faults = ctx.faultRate > 0 ? new QueueFaults(ctx, rig) : null;
      const inst: ScenarioInstance = {
        step: () => queueStep(ctx, rig, 4, faults),
        drain: () => drainRig(ctx, rig, faults),
      };
      return inst;
    }),
};
