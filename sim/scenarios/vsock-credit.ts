/**
 * `vsock-credit`: guest and host programs stream bytes both ways over several virtio-vsock
 * connections while the readers are slow and sometimes stop: credit runs out, the sender
 * stalls, and a CREDIT_UPDATE resumes it. Nothing may be lost or reordered, and no side may
 * ever have more bytes in flight than the receiver advertised (SIM-CREDIT).
 *
 * The device is impl/vsock's VsockDevice with its in-memory host; the guest is the one
 * Linux-like vsock driver (impl/vsock/guest.ts) with the simulator's probe
 * (sim/guest/vsock-probe.ts) checking every device pass.
 */
import { Effect } from "effect";
import { MemoryHost } from "../../impl/vsock/memory-host.ts";
import type { VsockConnection } from "../../impl/vsock/connection.ts";
import type { DeviceQueue } from "../../impl/queue/device-queue.ts";
import type { GuestSocket, VsockGuest } from "../../impl/vsock/guest.ts";
import { simVsockGuest, type SimVsockProbe } from "../guest/vsock-probe.ts";
import type { ChartSpec, Metric, Scenario, ScenarioInstance, SimContext } from "../engine.ts";
import { settlePendingFaults, vsockFault } from "./guest-faults.ts";
import { VSOCK_OP_CREDIT_REQUEST, VSOCK_OP_CREDIT_UPDATE } from "../../wire/vsock.ts";

/** Byte `i` of stream `id`: position-based, so writer and checker need not share chunking. */
export const streamByte = (id: number, i: number): number => {
  let z = Math.imul(id ^ 0x9e3779b9, 0x85ebca6b) ^ Math.floor(i / 4);
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return (z >>> (8 * (i & 3))) & 0xff;
};

export const streamChunk = (id: number, from: number, len: number): Uint8Array => {
  const out = new Uint8Array(len);
  for (let k = 0; k < len; k++) out[k] = streamByte(id, from + k);
  return out;
};

/** One connection, both directions, with what each side sent and checked so far. */
interface Conn {
  readonly index: number;
  readonly sock: GuestSocket;
  host: VsockConnection | null;
  /** Guest → host. */
  g2hSent: number;
  g2hChecked: number;
  /** Host → guest. */
  h2gSent: number;
  h2gChecked: number;
  hostReadChunks: number;
  guestReadChunks: number;
  /** Reader phases: steps left in the current phase, and its speed in bytes per step. */
  hostPhase: number;
  hostSpeed: number;
  guestPhase: number;
  guestSpeed: number;
  stalledSteps: number;
  wasStalled: boolean;
}

export const CREDIT_CHARTS: readonly ChartSpec[] = [
  {
    title: "Ring occupancy: vsock RX and TX queues",
    kind: "level",
    unit: "descriptors",
    series: [
      { metric: "vsock.rx.occupancy", label: "RX descriptors in use" },
      { metric: "vsock.tx.occupancy", label: "TX descriptors in use" },
    ],
  },
  {
    title: "Throughput",
    kind: "rate",
    unit: "bytes/s",
    series: [
      { metric: "vsock.g2h.bytes", label: "guest to host" },
      { metric: "vsock.h2g.bytes", label: "host to guest" },
    ],
  },
  {
    title: "Credit window over time",
    kind: "level",
    unit: "bytes",
    series: [
      { metric: "vsock.credit.guest-view", label: "credit the guest sees (peer free)" },
      { metric: "vsock.inflight.g2h", label: "guest bytes in flight at the host" },
      { metric: "vsock.credit.host-view", label: "credit the host sees" },
      { metric: "vsock.inflight.h2g", label: "host bytes unread by the guest" },
    ],
  },
  {
    title: "Notifications sent and suppressed",
    kind: "level",
    unit: "count",
    series: [
      { metric: "vsock.kicks.sent", label: "kicks sent" },
      { metric: "vsock.kicks.suppressed", label: "kicks suppressed" },
      { metric: "vsock.irqs.sent", label: "interrupts sent" },
      { metric: "vsock.irqs.suppressed", label: "interrupts suppressed" },
      { metric: "vsock.credit.updates", label: "CREDIT_UPDATE received by the guest" },
      { metric: "vsock.stalls", label: "sender stalls (credit exhausted)" },
    ],
  },
];

export const HOST_PORT = 5000;

export class VsockCreditRig {
  readonly ctx: SimContext;
  /** The port the host listens on (bogus packets aim just above it). */
  readonly hostPort = HOST_PORT;
  readonly host = new MemoryHost();
  readonly guest: VsockGuest<DeviceQueue>;
  readonly probe: SimVsockProbe;
  readonly conns: Conn[] = [];
  readonly bufAlloc: number;
  private readonly m: Record<string, Metric>;

  /** `eventIdx` fixes VIRTIO_F_EVENT_IDX; by default the seed decides. */
  constructor(ctx: SimContext, nConns: number, eventIdxOption?: boolean) {
    this.ctx = ctx;
    const r = ctx.rng;
    this.bufAlloc = r.pick([16, 32, 64]) * 1024;
    this.host.listening.add(HOST_PORT);
    const layout = r.chance(0.5) ? "single" : "split";
    // cloud-hypervisor's packet.rs wants header and data in separate descriptors; Linux 6.2+
    // puts them in one, which rust-vmm accepts (issue 204).
    const profile = layout === "single" ? "rust-vmm" : r.pick(["cloud-hypervisor", "virtio"] as const);
    const coin = r.chance(0.5);
    const eventIdx = eventIdxOption ?? coin;
    const made = simVsockGuest(
      ctx,
      this.host,
      {
        guestCid: 3n,
        profile,
        muxer: { bufAlloc: this.bufAlloc, creditUpdateThreshold: this.bufAlloc / 4, trace: false },
      },
      {
        queueSize: r.pick([64, 128]),
        eventIdx,
        layout,
        rxBufSize: 4096,
        txMaxData: r.pick([1024, 4096]),
        sockBufAlloc: this.bufAlloc,
        // Half the window: with 16-64 KiB windows Linux's 64 KiB mark would answer every read.
        creditUpdateBelow: this.bufAlloc / 2,
      },
    );
    this.guest = made.guest;
    this.probe = made.probe;
    ctx.facts["vsock EVENT_IDX"] = eventIdx;
    ctx.facts["buf_alloc (both sides)"] = this.bufAlloc;
    ctx.facts["packet layout"] = layout === "single" ? "header and data in one descriptor" : "header, data";
    ctx.facts["connections"] = nConns;
    ctx.facts["device profile"] = profile;
    const mx = ctx.metrics;
    this.m = {
      g2h: mx.counter("vsock.g2h.bytes", "bytes guest to host, checked"),
      h2g: mx.counter("vsock.h2g.bytes", "bytes host to guest, checked"),
      updates: mx.counter("vsock.credit.updates", "CREDIT_UPDATE packets the guest received"),
      requests: mx.counter("vsock.credit.requests", "CREDIT_REQUEST packets the guest received"),
      stalls: mx.counter("vsock.stalls", "times a guest sender stalled on credit"),
      resumes: mx.counter("vsock.resumes", "times a stalled guest sender resumed"),
      guestView: mx.gauge("vsock.credit.guest-view", "credit the guest sees"),
      hostView: mx.gauge("vsock.credit.host-view", "credit the host sees"),
      g2hIn: mx.gauge("vsock.inflight.g2h", "guest bytes in flight"),
      h2gIn: mx.gauge("vsock.inflight.h2g", "host bytes unread by the guest"),
    };
    for (let i = 0; i < nConns; i++) {
      const sock = this.guest.connect(HOST_PORT);
      this.conns.push({
        index: i,
        sock,
        host: null,
        g2hSent: 0,
        g2hChecked: 0,
        h2gSent: 0,
        h2gChecked: 0,
        hostReadChunks: 0,
        guestReadChunks: 0,
        hostPhase: 0,
        hostSpeed: 0,
        guestPhase: 0,
        guestSpeed: 0,
        stalledSteps: 0,
        wasStalled: false,
      });
    }
  }

  /** The driver's flush / kick / device / interrupt rounds, counting credit packets. */
  private pump(): void {
    const g = this.guest;
    const ops = g.opsReceived;
    const upd = ops.get(VSOCK_OP_CREDIT_UPDATE) ?? 0;
    const req = ops.get(VSOCK_OP_CREDIT_REQUEST) ?? 0;
    g.pump();
    this.m.updates!.value += (ops.get(VSOCK_OP_CREDIT_UPDATE) ?? 0) - upd;
    this.m.requests!.value += (ops.get(VSOCK_OP_CREDIT_REQUEST) ?? 0) - req;
  }

  private phase(c: Conn, side: "host" | "guest"): number {
    const r = this.ctx.rng;
    if (side === "host") {
      if (c.hostPhase-- <= 0) {
        c.hostPhase = r.range(20, 300);
        // Stopped, slow, or fast.
        c.hostSpeed = r.pick([0, 0, 256, 1024, 8192, 65536]);
      }
      return c.hostSpeed;
    }
    if (c.guestPhase-- <= 0) {
      c.guestPhase = r.range(20, 300);
      c.guestSpeed = r.pick([0, 512, 2048, 65536]);
    }
    return c.guestSpeed;
  }

  step(produce: boolean): void {
    const ctx: SimContext = this.ctx;
    const r = ctx.rng;
    const g = this.guest;
    for (const c of this.conns) {
      if (c.host === null) c.host = this.host.accepted.find((h) => h.peerPort === c.sock.port) ?? null;
      if (c.sock.state !== "established" || c.host === null) continue;
      if (produce) {
        // Writers: more than the readers take, so credit runs out.
        if (r.chance(0.7)) {
          const n = r.range(1, 8192);
          g.write(c.sock, streamChunk(2 * c.index, c.g2hSent, n));
          c.g2hSent += n;
          if (ctx.trace.on) ctx.trace.event("guest-write", { conn: c.index, len: n });
        }
        if (r.chance(0.5) && c.host.fromHost.length < 2 * this.bufAlloc) {
          const n = r.range(1, 8192);
          c.host.hostWrite(streamChunk(2 * c.index + 1, c.h2gSent, n));
          c.h2gSent += n;
          if (ctx.trace.on) ctx.trace.event("host-write", { conn: c.index, len: n });
        }
      }
    }
    this.pump();
    for (const c of this.conns) {
      if (c.host === null) continue;
      // The host program reads (slowly), and everything it read must be the guest's stream.
      const speed = produce ? this.phase(c, "host") : 1 << 20;
      const hostRead = speed > 0 ? this.host.read(c.host, r.range(1, speed)) : 0;
      this.checkHost(c);
      const gspeed = produce ? this.phase(c, "guest") : 1 << 20;
      const guestRead = gspeed > 0 ? g.read(c.sock, r.range(1, gspeed)) : 0;
      this.checkGuest(c);
      if (ctx.trace.on && hostRead + guestRead > 0)
        ctx.trace.event("read", { conn: c.index, host: hostRead, guest: guestRead });
    }
    this.pump();
    this.probe.checkStall();
    this.checkCredit();
    this.sample();
  }

  private checkHost(c: Conn): void {
    const ctx: SimContext = this.ctx;
    const chunks = this.host.received.get(c.host!) ?? [];
    for (; c.hostReadChunks < chunks.length; c.hostReadChunks++) {
      const chunk = chunks[c.hostReadChunks]!;
      for (let k = 0; k < chunk.length; k++) {
        if (chunk[k] !== streamByte(2 * c.index, c.g2hChecked + k))
          ctx.fail(
            "SIM-DELIVERY",
            `connection ${c.index}: host read byte ${c.g2hChecked + k} wrong (guest→host stream)`,
          );
      }
      c.g2hChecked += chunk.length;
      this.m.g2h!.value += chunk.length;
    }
    if (c.g2hChecked > c.g2hSent)
      ctx.fail("SIM-DELIVERY", `connection ${c.index}: host read more than the guest wrote`);
  }

  private checkGuest(c: Conn): void {
    const ctx: SimContext = this.ctx;
    const chunks = c.sock.received;
    for (; c.guestReadChunks < chunks.length; c.guestReadChunks++) {
      const chunk = chunks[c.guestReadChunks]!;
      for (let k = 0; k < chunk.length; k++) {
        if (chunk[k] !== streamByte(2 * c.index + 1, c.h2gChecked + k))
          ctx.fail(
            "SIM-DELIVERY",
            `connection ${c.index}: guest read byte ${c.h2gChecked + k} wrong (host→guest stream)`,
          );
      }
      c.h2gChecked += chunk.length;
      this.m.h2g!.value += chunk.length;
    }
  }

  /** SIM-CREDIT: in flight never above buf_alloc; a stalled sender resumes once the reader caught up. */
  private checkCredit(): void {
    const ctx: SimContext = this.ctx;
    for (const c of this.conns) {
      const h = c.host;
      if (h === null) continue;
      const g2hIn = h.unconsumed();
      if (ctx.oracle && g2hIn > this.bufAlloc)
        ctx.fail(
          "SIM-CREDIT",
          `connection ${c.index}: ${g2hIn} guest bytes in flight at the host, buf_alloc ${this.bufAlloc}`,
        );
      if (ctx.oracle && c.sock.maxInFlight > c.sock.bufAlloc)
        ctx.fail(
          "SIM-CREDIT",
          `connection ${c.index}: the device had ${c.sock.maxInFlight} bytes in flight to the guest, its buf_alloc is ${c.sock.bufAlloc}`,
        );
      const s = c.sock;
      const credit = s.peerCredit();
      const stalled = s.pendingBytes > 0 && credit === 0;
      if (stalled && !c.wasStalled) this.m.stalls!.value++;
      if (!stalled && c.wasStalled) this.m.resumes!.value++;
      c.wasStalled = stalled;
      // Stalled although the host program has taken every byte: the credit it freed never
      // reached the guest (a missing fwd_cnt update or CREDIT_UPDATE).
      c.stalledSteps = stalled && h.toHost.length === 0 ? c.stalledSteps + 1 : 0;
      if (ctx.oracle && c.stalledSteps > 50)
        ctx.fail(
          "SIM-CREDIT",
          `connection ${c.index}: guest sender stalled for 50 steps with no credit although the host took every byte (host fwd_cnt ${h.fwdCnt}, rx_cnt ${h.rxCnt}, guest sees fwd_cnt ${s.peerFwdCnt})`,
        );
    }
  }

  private sample(): void {
    const c = this.conns[0];
    if (c?.host != null) {
      const s = c.sock;
      this.m.guestView!.value = s.peerCredit();
      this.m.g2hIn!.value = c.host.unconsumed();
      this.m.hostView!.value = c.host.peerCredit();
      this.m.h2gIn!.value = s.unreadBytes;
    }
  }

  /** Readers catch up; every byte written both ways must arrive (SIM-NO-LOSS via SIM-DELIVERY). */
  drain(): void {
    const ctx: SimContext = this.ctx;
    for (let i = 0; i < 20_000; i++) {
      const done = this.conns.every(
        (c) => c.host === null || (c.g2hChecked === c.g2hSent && c.h2gChecked === c.h2gSent),
      );
      if (done) break;
      this.step(false);
      ctx.clock.advance(10);
    }
    for (const c of this.conns) {
      if (c.host === null || c.sock.state !== "established")
        ctx.fail("SIM-DELIVERY", `connection ${c.index} was never established (guest state ${c.sock.state})`);
      if (c.g2hChecked !== c.g2hSent || c.h2gChecked !== c.h2gSent)
        ctx.fail(
          "SIM-DELIVERY",
          `connection ${c.index}: guest→host ${c.g2hChecked}/${c.g2hSent} bytes, host→guest ${c.h2gChecked}/${c.h2gSent} bytes arrived`,
        );
    }
  }
}

export const vsockCreditScenario: Scenario = {
  name: "vsock-credit",
  rings: ["split", "packed"],
  summary:
    "slow and stopping readers on several vsock connections: credit runs out, senders stall, CREDIT_UPDATE resumes them; nothing lost, never more in flight than buf_alloc",
  defaultSteps: 4000,
  smoke: { steps: 400, seeds: [1, 2] },
  defaultFaults: 0,
  charts: CREDIT_CHARTS,
  create: (ctx) =>
    Effect.sync(() => {
      const rig = new VsockCreditRig(ctx, ctx.rng.range(1, 4));
      const inst: ScenarioInstance = {
        step: () => {
          // --faults: bogus packets (spoofed CIDs, bad ops and types, lying lengths and
          // credit) on ports the real connections do not use.
          const settle = ctx.faultRate > 0 && ctx.rng.chance(ctx.faultRate) ? vsockFault(ctx, rig) : null;
          rig.step(true);
          settle?.();
          ctx.clock.advance(10);
        },
        drain: () => {
          rig.drain();
          if (ctx.faultRate > 0) settlePendingFaults(ctx);
        },
      };
      return inst;
    }),
};
