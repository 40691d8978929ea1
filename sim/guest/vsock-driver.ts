/**
 * A Linux-like virtio-vsock guest (net/vmw_vsock/virtio_transport.c over virtio_ring), on
 * the simulator's own ring model (virtio-ring.ts): RX buffers kept posted (header and data
 * in one descriptor as Linux 6.2+ does, or two), TX packets as chains, kicks gated by
 * avail_event / NO_NOTIFY, NAPI-style interrupt handling, and stream sockets with the
 * credit counters of virtio_transport_common.c (buf_alloc, fwd_cnt, rx_cnt, tx_cnt,
 * CREDIT_UPDATE when the peer's view of our free space runs low).
 *
 * The device (impl/vsock VsockDevice) runs only when kicked, or on RX when its host side
 * has something for the guest (as its event loop would). Every device pass is checked:
 * interrupts against vring_need_event, used elements against what was posted, and no
 * buffer left unseen by a device that went idle (SIM-KICK-GATE, SIM-USED-*, SIM-NO-STALL).
 */
import { GuestMemory } from "../../impl/memory/guest-memory.ts";
import { EVENT_QUEUE, RX_QUEUE, TX_QUEUE, VIRTIO_F_EVENT_IDX, VsockDevice } from "../../impl/vsock/device.ts";
import type { HostPort, MuxerOptions } from "../../impl/vsock/muxer.ts";
import {
  decodeHeader,
  encodeHeader,
  inFlight,
  peerFree,
  type VsockHeader,
  type VsockProfileName,
} from "../../spec/vsock.ts";
import type { Metric, SimContext } from "../engine.ts";
import { shadowWithSpec } from "../device/queue-shadow.ts";
import { BoundsGuard, specMemoryOf } from "../oracle.ts";
import type { SpecMemory } from "../../spec/memory.ts";
import { GuestRam } from "./ram.ts";
import { GuestVirtqueue, layoutRings, vringNeedEvent, type RingLayout, type Segment } from "./virtio-ring.ts";
import {
  VSOCK_FLAGS_SHUTDOWN_RCV,
  VSOCK_FLAGS_SHUTDOWN_SEND,
  VSOCK_HOST_CID,
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_OP_SHUTDOWN,
  VSOCK_PKT_HDR_SIZE,
  VSOCK_TYPE_STREAM,
} from "../../wire/vsock.ts";

export interface VsockDriverOptions {
  readonly guestCid: bigint;
  readonly profile: VsockProfileName;
  readonly muxer: Partial<MuxerOptions>;
  readonly queueSize: number;
  readonly eventIdx: boolean;
  /** Header and data in one descriptor (Linux 6.2+) or two. */
  readonly layout: "single" | "split";
  readonly rxBufSize: number;
  readonly txMaxData: number;
  /** Our receive buffer per socket, advertised as buf_alloc. */
  readonly sockBufAlloc: number;
  /** Trace each kick (off where real I/O decides how many there are). */
  readonly traceKicks?: boolean;
}

export class VsockSock {
  state: "connecting" | "established" | "closed" = "connecting";
  rxCnt = 0;
  fwdCnt = 0;
  lastFwdSent = 0;
  txCnt = 0;
  peerBufAlloc = 0;
  peerFwdCnt = 0;
  readonly pending: Uint8Array[] = [];
  pendingBytes = 0;
  readonly unread: Uint8Array[] = [];
  unreadBytes = 0;
  /** What the guest program read, in order (the caller empties it). */
  readonly received: Uint8Array[] = [];
  /** Largest rx_cnt - fwd_cnt seen: the device must never exceed our buf_alloc. */
  maxInFlight = 0;
  constructor(
    readonly port: number,
    readonly peerPort: number,
    readonly bufAlloc: number,
  ) {}
}

const QUEUE_NAMES = ["RX", "TX", "event"] as const;

export class VsockDriver {
  readonly ctx: SimContext;
  readonly opts: VsockDriverOptions;
  readonly memory: GuestMemory;
  readonly ram: GuestRam;
  readonly device: VsockDevice;
  readonly queues: readonly [GuestVirtqueue, GuestVirtqueue, GuestVirtqueue];
  readonly rings: readonly [RingLayout, RingLayout, RingLayout];
  readonly sockets = new Map<string, VsockSock>();
  readonly listening = new Set<number>();
  /** Interrupts the device raised and the guest has not handled, per queue. */
  readonly irq = [false, false, false];
  private readonly kicked = [false, false, false];
  private nextPort = 50000;
  private readonly m: Record<string, Metric>;
  /** Packets the device delivered to the guest, by op. */
  readonly opsReceived = new Map<number, number>();
  private readonly guard: BoundsGuard;
  private readonly spec: SpecMemory;

  constructor(ctx: SimContext, host: HostPort | null, opts: VsockDriverOptions) {
    this.ctx = ctx;
    this.opts = opts;
    const size = opts.queueSize;
    const rings: RingLayout[] = [];
    let at = 0x1000;
    for (let i = 0; i < 3; i++) {
      const l = layoutRings(at, size);
      rings.push(l);
      at = l.end + 64;
    }
    this.rings = rings as unknown as readonly [RingLayout, RingLayout, RingLayout];
    const rxOpts = {
      eventIdx: opts.eventIdx,
      indirect: false,
      slabBytes: 64 + opts.rxBufSize,
      maxIndirect: 1,
    };
    const txOpts = {
      eventIdx: opts.eventIdx,
      indirect: false,
      slabBytes: 64 + opts.txMaxData,
      maxIndirect: 1,
    };
    const evOpts = { eventIdx: opts.eventIdx, indirect: false, slabBytes: 8, maxIndirect: 1 };
    const dataBase = 0x400000;
    const rxBytes = GuestVirtqueue.bytesNeeded(size, rxOpts);
    const txBytes = GuestVirtqueue.bytesNeeded(size, txOpts);
    const evBytes = GuestVirtqueue.bytesNeeded(size, evOpts);
    this.memory = GuestMemory.of([
      { base: 0x1000, bytes: new Uint8Array(at - 0x1000) },
      { base: dataBase, bytes: new Uint8Array(rxBytes + txBytes + evBytes) },
    ]);
    this.ram = new GuestRam(this.memory);
    this.queues = [
      new GuestVirtqueue(this.ram, rings[0]!, dataBase, rxOpts),
      new GuestVirtqueue(this.ram, rings[1]!, dataBase + rxBytes, txOpts),
      new GuestVirtqueue(this.ram, rings[2]!, dataBase + rxBytes + txBytes, evOpts),
    ];
    const made = VsockDevice.create(
      this.memory,
      { guestCid: opts.guestCid, profile: opts.profile, muxer: opts.muxer },
      host,
    );
    if (!made.ok) throw new Error(`simulator set-up: vsock device refused: ${made.error._tag}`);
    this.device = made.value;
    for (let i = 0; i < 3; i++) {
      const l = rings[i]!;
      this.device.queues[i]!.configure({
        size,
        ready: true,
        descTable: l.desc,
        availRing: l.avail,
        usedRing: l.used,
      });
    }
    const evt = 1n << BigInt(VIRTIO_F_EVENT_IDX);
    this.device.ackFeatures(opts.eventIdx ? this.device.deviceFeatures : this.device.deviceFeatures & ~evt);
    const act = this.device.activate();
    if (!act.ok) throw new Error(`simulator set-up: vsock queue ${act.error.queue}: ${act.error.error._tag}`);
    for (let i = 0; i < 3; i++)
      shadowWithSpec(ctx, this.device.queues[i]!, this.memory, `vsock ${QUEUE_NAMES[i]} queue`);
    // SIM-BOUNDS: the device may touch the rings and the chains the driver made available.
    this.guard = new BoundsGuard(ctx, this.memory);
    for (const r of rings) this.guard.addRing(r);
    this.spec = specMemoryOf(this.memory);
    const mx = ctx.metrics;
    this.m = {
      kicksSent: mx.counter("vsock.kicks.sent", "vsock: kicks sent"),
      kicksSuppressed: mx.counter("vsock.kicks.suppressed", "vsock: kicks suppressed"),
      irqsSent: mx.counter("vsock.irqs.sent", "vsock: interrupts sent"),
      irqsSuppressed: mx.counter("vsock.irqs.suppressed", "vsock: interrupts suppressed"),
      packetsIn: mx.counter("vsock.packets.in", "vsock: packets device to guest"),
      packetsOut: mx.counter("vsock.packets.out", "vsock: packets guest to device"),
      rxOcc: mx.gauge("vsock.rx.occupancy", "vsock: RX descriptors in use"),
      txOcc: mx.gauge("vsock.tx.occupancy", "vsock: TX descriptors in use"),
    };
    this.refillRx();
    for (let i = 0; i < 4; i++)
      this.allow(EVENT_QUEUE, this.queues[EVENT_QUEUE].add([{ len: 4, write: true }], false, 0));
    this.publishKick(EVENT_QUEUE);
  }

  get cid(): bigint {
    return this.opts.guestCid;
  }

  private key(port: number, peer: number): string {
    return `${port}:${peer}`;
  }

  /** Keeps every RX slot posted. */
  refillRx(): void {
    const q = this.queues[RX_QUEUE];
    let added = 0;
    const segs: Segment[] =
      this.opts.layout === "single"
        ? [{ len: VSOCK_PKT_HDR_SIZE + this.opts.rxBufSize, write: true }]
        : [
            { len: VSOCK_PKT_HDR_SIZE, write: true },
            { len: this.opts.rxBufSize, write: true },
          ];
    while (q.numFree >= segs.length) {
      const head = q.add(segs, false, 0, segs.length === 2 ? [0, 64 - VSOCK_PKT_HDR_SIZE] : undefined);
      if (head < 0) break;
      this.allow(RX_QUEUE, head);
      added++;
    }
    if (added > 0) this.publishKick(RX_QUEUE);
  }

  private publishKick(qi: number): void {
    const q = this.queues[qi]!;
    q.publish();
    const k = q.kickPrepare();
    if (k.need) {
      this.m.kicksSent!.value++;
      this.kicked[qi] = true;
    } else this.m.kicksSuppressed!.value++;
    if (this.ctx.trace.on)
      this.ctx.trace.event("vsock-kick", { q: QUEUE_NAMES[qi]!, need: k.need, idx: k.new });
  }

  header(s: VsockSock, op: number, len: number, flags = 0): VsockHeader {
    s.lastFwdSent = s.fwdCnt;
    return {
      srcCid: this.cid,
      dstCid: VSOCK_HOST_CID,
      srcPort: s.port,
      dstPort: s.peerPort,
      len,
      type: VSOCK_TYPE_STREAM,
      op,
      flags,
      bufAlloc: s.bufAlloc,
      fwdCnt: s.fwdCnt,
    };
  }

  /** Queues one packet on TX (not kicked); false when the ring is full even after reclaiming. */
  sendRaw(h: VsockHeader, data: Uint8Array = new Uint8Array(0)): boolean {
    const q = this.queues[TX_QUEUE];
    const n = Math.min(data.length, this.opts.txMaxData);
    const segs: Segment[] =
      this.opts.layout === "single" || n === 0
        ? [{ len: VSOCK_PKT_HDR_SIZE + n, write: false }]
        : [
            { len: VSOCK_PKT_HDR_SIZE, write: false },
            { len: n, write: false },
          ];
    let head = q.add(segs, false, 0, segs.length === 2 ? [0, 64 - VSOCK_PKT_HDR_SIZE] : undefined);
    if (head < 0) {
      this.reapTx();
      head = q.add(segs, false, 0, segs.length === 2 ? [0, 64 - VSOCK_PKT_HDR_SIZE] : undefined);
      if (head < 0) return false;
    }
    const buf = q.inFlightAt(head)!;
    const first = buf.segments[0]!;
    this.ram.write(first.addr, encodeHeader(h));
    if (n > 0)
      this.ram.write(
        segs.length === 1 ? first.addr + VSOCK_PKT_HDR_SIZE : buf.segments[1]!.addr,
        data.subarray(0, n),
      );
    this.allow(TX_QUEUE, head);
    this.m.packetsOut!.value++;
    return true;
  }

  private allow(qi: number, head: number): void {
    if (this.ctx.oracle && head >= 0) this.guard.allowWalk(this.spec, this.rings[qi]!, head);
  }

  connect(peerPort: number): VsockSock {
    const s = new VsockSock(this.nextPort++, peerPort, this.opts.sockBufAlloc);
    this.sockets.set(this.key(s.port, peerPort), s);
    this.sendRaw(this.header(s, VSOCK_OP_REQUEST, 0));
    return s;
  }

  write(s: VsockSock, bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    s.pending.push(bytes);
    s.pendingBytes += bytes.length;
  }

  /** The guest program reads; a CREDIT_UPDATE goes out when the peer's view of our room is low. */
  read(s: VsockSock, max = Infinity): number {
    let n = 0;
    while (s.unread.length > 0 && n < max) {
      const c = s.unread[0]!;
      const take = Math.min(c.length, max - n);
      s.received.push(c.subarray(0, take));
      if (take === c.length) s.unread.shift();
      else s.unread[0] = c.subarray(take);
      n += take;
    }
    s.unreadBytes -= n;
    s.fwdCnt = (s.fwdCnt + n) >>> 0;
    if (
      n > 0 &&
      s.state === "established" &&
      s.bufAlloc - inFlight(s.rxCnt, s.lastFwdSent) < s.bufAlloc / 2
    ) {
      this.sendRaw(this.header(s, VSOCK_OP_CREDIT_UPDATE, 0));
    }
    return n;
  }

  /** RW packets within the peer's credit. */
  flush(): void {
    for (const s of this.sockets.values()) {
      if (s.state !== "established") continue;
      while (s.pendingBytes > 0) {
        const credit = peerFree(s.peerBufAlloc, s.txCnt, s.peerFwdCnt);
        const c = s.pending[0]!;
        const n = Math.min(credit, this.opts.txMaxData, c.length);
        if (n <= 0) break;
        if (!this.sendRaw(this.header(s, VSOCK_OP_RW, n), c.subarray(0, n))) break;
        if (n === c.length) s.pending.shift();
        else s.pending[0] = c.subarray(n);
        s.pendingBytes -= n;
        s.txCnt = (s.txCnt + n) >>> 0;
      }
    }
  }

  /** One device pass, checked: TX when kicked, RX when kicked or the host has data, events. */
  deviceRun(): void {
    const dev = this.device;
    const now = this.ctx.clock.nowUs / 1000;
    if (this.kicked[TX_QUEUE]) {
      this.kicked[TX_QUEUE] = false;
      this.checked(TX_QUEUE, () => dev.processTx(now));
    }
    if (this.kicked[RX_QUEUE] || dev.hasPendingRx()) {
      this.kicked[RX_QUEUE] = false;
      this.checked(RX_QUEUE, () => dev.processRx(now));
    }
    if (this.kicked[EVENT_QUEUE]) {
      this.kicked[EVENT_QUEUE] = false;
      this.checked(EVENT_QUEUE, () => dev.processEvent());
    }
  }

  /** SIM-KICK-GATE around one device call, from the rings and the device's interrupt bits. */
  private checked(qi: number, run: () => unknown): void {
    const ctx: SimContext = this.ctx;
    const ring = this.rings[qi]!;
    const before = this.ram.u16(ring.used + 2);
    this.guard.arm(`vsock ${QUEUE_NAMES[qi]} device`);
    try {
      run();
    } finally {
      this.guard.disarm();
    }
    const after = this.ram.u16(ring.used + 2);
    const bits = this.device.takeInterrupts();
    for (let i = 0; i < 3; i++) if ((bits & (1 << i)) !== 0) this.irq[i] = true;
    const raised = (bits & (1 << qi)) !== 0;
    if (after === before) return;
    if (ctx.oracle && this.opts.eventIdx) {
      const ev = this.ram.u16(ring.avail + 4 + 2 * ring.size);
      const want = vringNeedEvent(ev, after, before);
      if (want !== raised)
        ctx.fail(
          "SIM-KICK-GATE",
          `vsock ${QUEUE_NAMES[qi]}: used ${before}->${after}, used_event ${ev}: device ${raised ? "interrupted" : "did not interrupt"}, vring_need_event says ${want ? "interrupt" : "suppress"}`,
        );
    } else if (ctx.oracle && !raised && (this.ram.u16(ring.avail) & 1) === 0) {
      ctx.fail(
        "SIM-KICK-GATE",
        `vsock ${QUEUE_NAMES[qi]}: used ${before}->${after} with interrupts on and no interrupt`,
      );
    }
    if (raised) this.m.irqsSent!.value++;
    else this.m.irqsSuppressed!.value++;
  }

  private reapTx(): void {
    const ctx: SimContext = this.ctx;
    for (;;) {
      const g = this.queues[TX_QUEUE].getBuf();
      if (g.kind === "none") return;
      if (g.kind === "bad") ctx.fail("SIM-USED-ID", `vsock TX used {id ${g.id}}: ${g.reason}`);
      this.guard.release(this.rings[TX_QUEUE], g.buf.head);
      if (g.len > g.buf.inBytes)
        ctx.fail("SIM-USED-LEN", `vsock TX head ${g.buf.head}: used len ${g.len}, no writable bytes`);
    }
  }

  private reapRx(): void {
    const ctx: SimContext = this.ctx;
    const q = this.queues[RX_QUEUE];
    for (;;) {
      const g = q.getBuf();
      if (g.kind === "none") break;
      if (g.kind === "bad") ctx.fail("SIM-USED-ID", `vsock RX used {id ${g.id}}: ${g.reason}`);
      this.guard.release(this.rings[RX_QUEUE], g.buf.head);
      if (g.len > g.buf.inBytes)
        ctx.fail(
          "SIM-USED-LEN",
          `vsock RX head ${g.buf.head}: used len ${g.len} > writable ${g.buf.inBytes}`,
        );
      if (g.len < VSOCK_PKT_HDR_SIZE) continue;
      const segs = g.buf.segments;
      const hdr = decodeHeader(this.ram.bytes(segs[0]!.addr, VSOCK_PKT_HDR_SIZE));
      const dataAt = segs.length === 1 ? segs[0]!.addr + VSOCK_PKT_HDR_SIZE : segs[1]!.addr;
      const dlen = Math.min(g.len - VSOCK_PKT_HDR_SIZE, hdr.len, this.opts.rxBufSize);
      if (hdr.op === VSOCK_OP_RW && dlen !== hdr.len)
        ctx.fail(
          "SIM-DELIVERY",
          `vsock RX: header len ${hdr.len}, but the device wrote ${g.len - VSOCK_PKT_HDR_SIZE} data bytes`,
        );
      this.handle(hdr, this.ram.bytes(dataAt, dlen).slice());
    }
    this.refillRx();
  }

  private handle(h: VsockHeader, data: Uint8Array): void {
    this.m.packetsIn!.value++;
    this.opsReceived.set(h.op, (this.opsReceived.get(h.op) ?? 0) + 1);
    if (h.dstCid !== this.cid || h.srcCid !== VSOCK_HOST_CID) return;
    let s = this.sockets.get(this.key(h.dstPort, h.srcPort));
    if (s === undefined) {
      if (h.op === VSOCK_OP_REQUEST && this.listening.has(h.dstPort)) {
        s = new VsockSock(h.dstPort, h.srcPort, this.opts.sockBufAlloc);
        s.state = "established";
        s.peerBufAlloc = h.bufAlloc;
        s.peerFwdCnt = h.fwdCnt;
        this.sockets.set(this.key(s.port, s.peerPort), s);
        this.sendRaw(this.header(s, VSOCK_OP_RESPONSE, 0));
      } else if (h.op !== VSOCK_OP_RST) {
        this.sendRaw(this.header(new VsockSock(h.dstPort, h.srcPort, 0), VSOCK_OP_RST, 0));
      }
      return;
    }
    s.peerBufAlloc = h.bufAlloc;
    s.peerFwdCnt = h.fwdCnt;
    switch (h.op) {
      case VSOCK_OP_RESPONSE:
        if (s.state === "connecting") s.state = "established";
        break;
      case VSOCK_OP_RW:
        s.unread.push(data);
        s.unreadBytes += data.length;
        s.rxCnt = (s.rxCnt + data.length) >>> 0;
        s.maxInFlight = Math.max(s.maxInFlight, inFlight(s.rxCnt, s.fwdCnt));
        break;
      case VSOCK_OP_CREDIT_REQUEST:
        this.sendRaw(this.header(s, VSOCK_OP_CREDIT_UPDATE, 0));
        break;
      case VSOCK_OP_SHUTDOWN:
        if ((h.flags & (VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND)) === 3) {
          this.sendRaw(this.header(s, VSOCK_OP_RST, 0));
          s.state = "closed";
        }
        break;
      case VSOCK_OP_RST:
        s.state = "closed";
        break;
      default:
        break;
    }
  }

  /** The interrupt handlers: reclaim TX, deliver RX and repost, take events. */
  guestInterrupts(): void {
    for (const qi of [TX_QUEUE, RX_QUEUE, EVENT_QUEUE]) {
      if (!this.irq[qi]) continue;
      this.irq[qi] = false;
      const q = this.queues[qi]!;
      for (let round = 0; round < 1000; round++) {
        q.disableCb();
        if (qi === TX_QUEUE) this.reapTx();
        else if (qi === RX_QUEUE) this.reapRx();
        else
          for (let g = q.getBuf(); g.kind === "buf"; g = q.getBuf()) {
            this.guard.release(this.rings[EVENT_QUEUE], g.buf.head);
            this.allow(EVENT_QUEUE, q.add([{ len: 4, write: true }], false, 0));
            this.publishKick(EVENT_QUEUE);
          }
        if (!q.poll(q.enableCbPrepare())) break;
      }
    }
  }

  /** flush, kick, device, interrupts until nothing moves (or `limit` rounds). */
  pump(limit = 16): void {
    for (let round = 0; round < limit; round++) {
      const before = this.m.packetsIn!.value + this.m.packetsOut!.value;
      this.flush();
      if (this.queues[TX_QUEUE].unpublished > 0) this.publishKick(TX_QUEUE);
      this.deviceRun();
      this.guestInterrupts();
      if (this.m.packetsIn!.value + this.m.packetsOut!.value === before && !this.device.hasPendingRx()) break;
    }
    this.m.rxOcc!.value = this.queues[RX_QUEUE].occupancy;
    this.m.txOcc!.value = this.queues[TX_QUEUE].occupancy;
  }

  /** SIM-NO-STALL: TX work with an idle device and no kick; a driver waiting for an interrupt that will not come. */
  checkStall(): void {
    const ctx = this.ctx;
    if (!ctx.oracle) return;
    const txq = this.device.queues[TX_QUEUE];
    if (!this.kicked[TX_QUEUE] && txq.len() !== 0) {
      const availEvent = this.ram.u16(this.rings[TX_QUEUE].used + 4 + 8 * this.rings[TX_QUEUE].size);
      const hint =
        this.opts.eventIdx && availEvent === 0 && txq.nextAvail > 0
          ? "; with EVENT_IDX the driver kicks only when avail.idx passes avail_event, and the device has never written avail_event (VIRTIO 1.2 §2.7.10)"
          : "";
      ctx.fail(
        "SIM-NO-STALL",
        `vsock TX: ${txq.len()} packets available, the device is idle and no kick is pending (avail_event ${availEvent}, avail.idx ${this.queues[TX_QUEUE].publishedIdx}, device next_avail ${txq.nextAvail})${hint}`,
      );
    }
    for (let qi = 0; qi < 3; qi++) {
      const q = this.queues[qi]!;
      if (!q.callbacksEnabled || this.irq[qi]) continue;
      const pending = (q.usedIdx - q.lastUsed) & 0xffff;
      const threshold = this.opts.eventIdx ? (q.usedEvent - q.lastUsed) & 0xffff : 0;
      if (pending > threshold)
        ctx.fail(
          "SIM-NO-STALL",
          `vsock ${QUEUE_NAMES[qi]}: ${pending} used buffers unseen and no interrupt pending`,
        );
    }
  }

  socket(port: number, peer: number): VsockSock | undefined {
    return this.sockets.get(this.key(port, peer));
  }

  /** SHUTDOWN both ways (tests). */
  shutdown(s: VsockSock): void {
    this.sendRaw(this.header(s, VSOCK_OP_SHUTDOWN, 0, VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND));
  }
}
