/**
 * `net-loopback`: frames through TX → loopback backend → RX on two virtio-net devices side
 * by side, one with EVENT_IDX and one without, same kind of traffic: the notification
 * charts show what EVENT_IDX saves. Every frame must come back intact and in order.
 */
import { Effect } from "effect";
import { LoopbackBackend } from "../../impl/net/backend.ts";
import type { ChartSpec, Scenario, ScenarioInstance } from "../engine.ts";
import { checkNetFaults, netFaults, settlePendingFaults } from "./guest-faults.ts";
import { NetRig } from "./net-rig.ts";

export const NET_CHARTS: readonly ChartSpec[] = [
  {
    title: "Ring occupancy: RX and TX queues of each device",
    kind: "level",
    unit: "descriptors",
    series: [
      { metric: "evt.rx.occupancy", label: "EVENT_IDX: RX" },
      { metric: "evt.tx.occupancy", label: "EVENT_IDX: TX" },
      { metric: "noevt.rx.occupancy", label: "no EVENT_IDX: RX" },
      { metric: "noevt.tx.occupancy", label: "no EVENT_IDX: TX" },
    ],
  },
  {
    title: "Throughput",
    kind: "rate",
    unit: "frame bytes/s received",
    series: [
      { metric: "evt.bytes.received", label: "EVENT_IDX" },
      { metric: "noevt.bytes.received", label: "no EVENT_IDX" },
    ],
  },
  {
    title: "Notifications sent and suppressed",
    kind: "level",
    unit: "count",
    series: [
      { metric: "evt.kicks.sent", label: "EVENT_IDX: kicks sent" },
      { metric: "evt.kicks.suppressed", label: "EVENT_IDX: kicks suppressed" },
      { metric: "evt.irqs.sent", label: "EVENT_IDX: interrupts sent" },
      { metric: "evt.irqs.suppressed", label: "EVENT_IDX: interrupts suppressed" },
      { metric: "noevt.kicks.sent", label: "no EVENT_IDX: kicks sent" },
      { metric: "noevt.irqs.sent", label: "no EVENT_IDX: interrupts sent" },
    ],
  },
];

export const netLoopbackScenario: Scenario = {
  name: "net-loopback",
  summary:
    "virtio-net frames TX -> loopback -> RX on two devices, with and without EVENT_IDX; every frame back intact and in order; kicks and interrupts sent/suppressed",
  defaultSteps: 5000,
  rings: ["split", "packed"],
  smoke: { steps: 600, seeds: [1, 2] },
  defaultFaults: 0,
  charts: NET_CHARTS,
  create: (ctx) =>
    Effect.sync(() => {
      const r = ctx.rng;
      const size = r.pick([16, 32, 64, 128, 256]);
      const mrg = r.chance(0.5);
      const rigs = [
        new NetRig(ctx, {
          ring: ctx.ring,
          name: "evt",
          label: "EVENT_IDX",
          size,
          eventIdx: true,
          mrg,
          backend: new LoopbackBackend(),
          loopback: true,
        }),
        new NetRig(ctx, {
          ring: ctx.ring,
          name: "noevt",
          label: "no EVENT_IDX",
          size,
          eventIdx: false,
          mrg,
          backend: new LoopbackBackend(),
          loopback: true,
        }),
      ];
      // --faults: TX headers and descriptors, RX descriptors broken on both devices (set
      // before the first RX refill, which may already be corrupted).
      const counts = ctx.faultRate > 0 ? rigs.map((rig) => netFaults(ctx, rig)) : null;
      for (const rig of rigs) rig.refillRx();
      const inst: ScenarioInstance = {
        step: () => {
          // The same burst size for both devices, so their counts compare.
          const burst = r.range(0, 8);
          for (const rig of rigs) rig.step(burst);
          ctx.clock.advance(2);
        },
        drain: () => {
          if (counts !== null) rigs.forEach((rig, i) => checkNetFaults(ctx, rig, counts[i]!));
          for (const rig of rigs) rig.drain();
          if (counts !== null) settlePendingFaults(ctx);
        },
      };
      return inst;
    }),
};
