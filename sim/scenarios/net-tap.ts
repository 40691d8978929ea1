/**
 * `net-tap`: the virtio-net device against a real TAP (impl/native) inside a network
 * namespace the scenario creates and removes. The guest answers the kernel's ARP, sends an
 * ARP request and then ICMP echo requests through the TX queue; the kernel's replies come
 * back through RX and must match one for one (addresses, id, sequence, payload, checksums).
 * Skips, with the reason, without root or /dev/net/tun. Real I/O: the trace records what
 * was sent and answered, but how replies group into steps depends on the kernel.
 */
import { Effect } from "effect";
import { TestClock } from "effect/testing";
import {
  acquireNetns,
  acquireTapBackendIn,
  configureTapIn,
  ip,
  tapUnavailableReason,
} from "../../impl/native/netns.ts";
import {
  ARP_REPLY,
  ARP_REQUEST,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  arpFrame,
  arpRequest,
  icmpEcho,
  parseArp,
  parseIcmp,
  parseIpv4,
} from "../../impl/net/packets.ts";
import type { ChartSpec, Scenario, ScenarioInstance, SimContext } from "../engine.ts";
import { GUEST_MAC, NetRig } from "./net-rig.ts";

const GUEST_IP = parseIpv4("10.201.0.2");
const HOST_IP = parseIpv4("10.201.0.1");
const ICMP_ID = 0x5157;
/** Wall time one step waits for the kernel's replies. */
const REPLY_WAIT_MS = 2000;

export const TAP_CHARTS: readonly ChartSpec[] = [
  {
    title: "Ring occupancy: the TAP device's RX and TX queues",
    kind: "level",
    unit: "descriptors",
    series: [
      { metric: "tap.rx.occupancy", label: "RX descriptors in use" },
      { metric: "tap.tx.occupancy", label: "TX descriptors in use" },
    ],
  },
  {
    title: "Throughput",
    kind: "rate",
    unit: "frame bytes/s",
    series: [
      { metric: "tap.bytes.sent", label: "sent to the kernel" },
      { metric: "tap.bytes.received", label: "received from the kernel" },
    ],
  },
  {
    title: "Notifications sent and suppressed",
    kind: "level",
    unit: "count",
    series: [
      { metric: "tap.kicks.sent", label: "kicks sent" },
      { metric: "tap.kicks.suppressed", label: "kicks suppressed" },
      { metric: "tap.irqs.sent", label: "interrupts sent" },
      { metric: "tap.irqs.suppressed", label: "interrupts suppressed" },
    ],
  },
];

export const netTapScenario: Scenario = {
  name: "net-tap",
  realIo: "the kernel's TAP replies",
  summary:
    "virtio-net against a real TAP in a namespace it creates: ARP and ICMP echo through TX, the kernel's replies checked on RX (skips without root or /dev/net/tun)",
  defaultSteps: 200,
  rings: ["split", "packed"],
  smoke: { steps: 10, seeds: [1] },
  defaultFaults: 0,
  noFaults:
    "its peer is the real kernel, which answers each echo request once: a corrupted frame would be indistinguishable from a device bug (net-loopback and hostile-guest inject virtio-net faults)",
  charts: TAP_CHARTS,
  create: (ctx: SimContext) =>
    Effect.gen(function* () {
      const reason = tapUnavailableReason();
      if (reason !== undefined) return { skip: reason };
      const ns = yield* Effect.result(acquireNetns("sim"));
      if (ns._tag === "Failure") return { skip: `cannot create a network namespace: ${ns.failure.message}` };
      const tap = yield* Effect.result(acquireTapBackendIn(ns.success, "vlab%d"));
      if (tap._tag === "Failure") return { skip: `cannot open a TAP in the namespace: ${tap.failure._tag}` };
      const backend = tap.success;
      const ifName = backend.tap.ifName;
      configureTapIn(ns.success, ifName, "10.201.0.1/24");
      const hostMac = (
        /link\/ether ([0-9a-f:]+)/.exec(ip("-n", ns.success, "link", "show", ifName))?.[1] ?? ""
      )
        .split(":")
        .map((h) => parseInt(h, 16));
      ctx.facts["namespace"] = "vlabnet-<pid>-sim-… (removed at the end)";
      ctx.facts["interface"] = ifName;

      const r = ctx.rng;
      // What to send: the ARP request first, ARP replies the kernel asked for, then pings.
      const outbox: Uint8Array[] = [arpRequest([...GUEST_MAC], GUEST_IP, HOST_IP)];
      const awaiting = new Map<number, Uint8Array>();
      let pingSeq = 0;
      let arpReplies = 0;
      const problems: string[] = [];
      const m = {
        pings: ctx.metrics.counter("tap.pings", "ICMP echo requests sent"),
        replies: ctx.metrics.counter("tap.replies", "ICMP echo replies received and checked"),
        arp: ctx.metrics.counter("tap.arp", "ARP replies from the kernel"),
        other: ctx.metrics.counter("tap.other", "other frames from the kernel (ignored)"),
      };
      const onRxFrame = (f: Uint8Array): void => {
        const a = parseArp(f);
        if (a !== undefined) {
          if (a.op === ARP_REPLY) {
            arpReplies++;
            m.arp.value++;
          } else if (a.op === ARP_REQUEST && a.targetIp.every((b, i) => b === GUEST_IP[i])) {
            outbox.push(arpFrame(ARP_REPLY, a.senderMac, [...GUEST_MAC], GUEST_IP, a.senderMac, a.senderIp));
          }
          return;
        }
        const p = parseIcmp(f);
        if (p === undefined || p.type !== ICMP_ECHO_REPLY || p.id !== ICMP_ID) {
          m.other.value++;
          return;
        }
        const want = awaiting.get(p.seq);
        if (want === undefined) problems.push(`echo reply seq ${p.seq} that was not asked for, or twice`);
        else if (!p.ipChecksumOk || !p.icmpChecksumOk) problems.push(`echo reply seq ${p.seq}: bad checksum`);
        else if (p.payload.length !== want.length || !p.payload.every((b, i) => b === want[i]))
          problems.push(`echo reply seq ${p.seq}: payload differs`);
        else if (!p.dstMac.every((b, i) => b === GUEST_MAC[i]) || !p.srcIp.every((b, i) => b === HOST_IP[i]))
          problems.push(`echo reply seq ${p.seq}: wrong addresses`);
        awaiting.delete(p.seq);
        m.replies.value++;
        if (ctx.trace.on) ctx.trace.event("echo-reply", { seq: p.seq });
      };
      const rig = new NetRig(ctx, {
        ring: ctx.ring,
        name: "tap",
        label: "",
        size: 64,
        eventIdx: r.chance(0.5),
        mrg: r.chance(0.5),
        backend,
        loopback: false,
        frameSource: () => outbox.shift() ?? null,
        onRxFrame,
      });
      rig.refillRx();

      /** RX until every ping has its reply, waiting on the TAP's fd (live clock). */
      const collect = Effect.gen(function* () {
        const started = Date.now();
        for (;;) {
          rig.deviceRun(true);
          rig.guestInterrupts();
          rig.reapRx();
          if (problems.length > 0) return ctx.fail("SIM-DELIVERY", problems[0]!);
          // Answer the kernel's ARP at once (it waits for us before replying to pings).
          if (outbox.length > 0) {
            rig.sendFrames(outbox.length);
            rig.deviceRun(true);
          }
          if (awaiting.size === 0 && (pingSeq === 0 || arpReplies > 0)) return;
          if (Date.now() - started > REPLY_WAIT_MS)
            return ctx.fail(
              "SIM-DELIVERY",
              `no reply from the kernel for echo requests ${[...awaiting.keys()].join(", ")} within ${REPLY_WAIT_MS} ms`,
            );
          yield* TestClock.withLive(Effect.timeoutOption(backend.waitReadable, "20 millis"));
        }
      });

      const inst: ScenarioInstance = {
        step: () =>
          Effect.gen(function* () {
            const n = r.int(4);
            for (let i = 0; i < n; i++) {
              const seq = ++pingSeq & 0xffff;
              const payload = new Uint8Array(r.range(8, 1400));
              r.fill(payload);
              awaiting.set(seq, payload);
              outbox.push(
                icmpEcho(
                  ICMP_ECHO_REQUEST,
                  hostMac,
                  [...GUEST_MAC],
                  GUEST_IP,
                  HOST_IP,
                  ICMP_ID,
                  seq,
                  payload,
                ),
              );
              m.pings.value++;
            }
            rig.sendFrames(outbox.length);
            rig.deviceRun();
            yield* collect;
            rig.sampleGauges();
            ctx.clock.advance(100);
          }),
        drain: () =>
          Effect.gen(function* () {
            yield* collect;
            rig.drain();
            if (arpReplies === 0) ctx.fail("SIM-DELIVERY", "the kernel never answered the ARP request");
          }),
      };
      return inst;
    }),
};
