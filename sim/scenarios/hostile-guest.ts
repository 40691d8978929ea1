/**
 * `hostile-guest`: a guest that corrupts its own descriptors, rings, indices and
 * virtio-net headers at the --faults rate, beside well-formed traffic, on two targets:
 *
 * - a split queue (impl/queue SplitQueue + DescriptorChain, with the reference model
 *   beside it) served by a data-moving device;
 * - a virtio-net device (impl/net) on a loopback backend.
 *
 * The devices must stay safe (no access outside guest memory or outside the buffers the
 * descriptors name, nothing thrown: SIM-BOUNDS, SIM-NO-THROW), refuse or drop each broken
 * request with a count, and keep serving: every well-formed chain completes and every
 * well-formed frame arrives intact and in order (SIM-HOSTILE-SERVE). Each fault is logged
 * with what the device did about it.
 * The injectors live in guest-faults.ts (queue, net-loopback and vsock-credit use them
 * too under --faults).
 */
import { Effect } from "effect";
import { LoopbackBackend } from "../../impl/net/backend.ts";
import { TX_QUEUE } from "../../impl/net/device.ts";
import { PopStatus } from "../../impl/queue/split-queue.ts";
import type { Scenario, ScenarioInstance } from "../engine.ts";
import { QueueFaults, checkNetFaults, netFaults, settlePendingFaults, vsockFault } from "./guest-faults.ts";
import { NetRig } from "./net-rig.ts";
import { QueueRig, SHAPES } from "./queue-rig.ts";
import { QUEUE_CHARTS } from "./queue.ts";
import { VsockCreditRig } from "./vsock-credit.ts";

export const hostileGuestScenario: Scenario = {
  name: "hostile-guest",
  summary:
    "corrupts descriptors, rings, indices, virtio-net headers and vsock packets at --faults rate beside well-formed traffic; devices stay in bounds, never throw, keep serving; each fault and its handling logged",
  defaultSteps: 4000,
  rings: ["split", "packed"],
  smoke: { steps: 800, seeds: [1, 2], faults: 0.05 },
  defaultFaults: 0.02,
  charts: [
    // The queue charts are the split-queue target's.
    ...QUEUE_CHARTS.map((c) => ({
      ...c,
      title: c.title.replace("the split queue", "the split-queue target"),
    })),
    {
      title: "virtio-net under attack: frames",
      kind: "level",
      unit: "frames",
      series: [
        { metric: "net.frames.sent", label: "sent" },
        { metric: "net.frames.received", label: "received intact" },
        { metric: "faults", label: "faults injected (all targets)" },
      ],
    },
  ],
  create: (ctx) =>
    Effect.sync(() => {
      const r = ctx.rng;
      const rate = ctx.faultRate;
      const rig = new QueueRig(ctx, {
        ring: ctx.ring,
        name: "",
        size: r.pick([16, 32, 64, 128]),
        eventIdx: r.chance(0.5),
        indirect: true,
      });
      const qf = new QueueFaults(ctx, rig);
      const net = new NetRig(ctx, {
        ring: ctx.ring,
        name: "net",
        label: "net",
        size: r.pick([32, 64, 128]),
        eventIdx: r.chance(0.5),
        mrg: r.chance(0.5),
        backend: new LoopbackBackend(),
        loopback: true,
        deliveryRule: "SIM-HOSTILE-SERVE",
      });
      const netCounts = netFaults(ctx, net);
      net.refillRx();
      const vs = new VsockCreditRig(ctx, 2);
      const faults = ctx.metrics.gauge("faults", "faults injected");
      const inst: ScenarioInstance = {
        step: () => {
          // The queue target.
          const adds = r.int(5);
          for (let i = 0; i < adds; i++) {
            const head = rig.addChain(r.pick(SHAPES));
            if (head < 0) break;
            qf.afterAdd(head);
          }
          rig.publishAndKick();
          qf.afterPublish();
          rig.deviceRun(r.range(1, 8));
          qf.afterDevice();
          rig.guestInterrupt();
          if (r.chance(0.1)) rig.reapAll();
          rig.sampleGauges();
          if (qf.pendingRepairs === 0) rig.checkStall();
          // The virtio-net target.
          net.step(4);
          // The virtio-vsock target: bogus packets beside two well-formed streams.
          const settle = r.chance(rate) ? vsockFault(ctx, vs) : null;
          vs.step(true);
          settle?.();
          faults.value = ctx.faults.count;
          ctx.clock.advance(2);
        },
        drain: () => {
          qf.drain();
          for (let i = 0; i < 100_000 && !rig.idle; i++) rig.drainRound();
          rig.sampleGauges();
          rig.checkDrained();
          checkNetFaults(ctx, net, netCounts);
          net.drain();
          vs.drain();
          faults.value = ctx.faults.count;
          settlePendingFaults(ctx);
          const q0 = net.device.queues[TX_QUEUE];
          if (q0.lastPop === PopStatus.Error)
            ctx.notes.push(`net TX queue's last pop error: ${q0.lastError?._tag}`);
          const st = net.device.stats;
          ctx.notes.push(
            `net device counted: ${st.txChainErrors} TX chain errors, ${st.txTooShort} too short, ${st.txTooLong} too long, ${st.rxChainErrors} RX chain errors, ${st.queueErrors} queue errors`,
          );
        },
      };
      return inst;
    }),
};
