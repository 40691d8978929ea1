/**
 * The virtio-vsock guest driver model: what Linux's net/vmw_vsock/virtio_transport.c and
 * virtio_transport_common.c do over virtio_ring, reduced. The one vsock guest driver: unit
 * tests, properties, benches and the simulator all drive the device with it.
 *
 * - RX buffers kept posted (header and data in one descriptor as Linux 6.2+ does, in two, or
 *   data scattered over several), reposted as they are reaped;
 * - TX packets as chains; a full ring is reclaimed and retried, as Linux's tx worker does;
 * - kicks gated by the queue's kick decision (avail_event / NO_NOTIFY), and NAPI-style
 *   interrupt handling (disable callbacks, reap, re-enable and poll again);
 * - stream sockets with the credit counters of virtio_transport_common.c (`StreamCredit`),
 *   sending CREDIT_UPDATE when the peer's view of our free space runs low.
 *
 * The device runs only when kicked, or on RX when its host side has something for the guest
 * (as its event loop would). Observers plug in through `VsockGuestProbe`: the simulator's
 * oracle, checks and metrics (sim/guest/vsock-probe.ts) see every buffer offered, kick,
 * device pass, used buffer and packet, and the driver imports nothing of theirs.
 *
 * A well-behaved guest; hostile packets go out with `sendRaw`, hostile chains with `addChainAt`.
 */
import { GuestMemory } from "../memory/guest-memory.ts";
import {
  BufferSlabs,
  NO_ROOM,
  type GuestBuffer,
  type GuestQueue,
  type GuestQueueOptions,
} from "../queue/guest-queue.ts";
import { GuestRam } from "../queue/guest-ram.ts";
import { PACKED_RING, SPLIT_RING, type DeviceQueue, type RingKind } from "../queue/device-queue.ts";
import type { PackedQueue } from "../queue/packed-queue.ts";
import type { SplitQueue } from "../queue/split-queue.ts";
import { PackedDriver, packedLayoutAt, packedLayoutEnd } from "../queue/packed-driver.ts";
import { SplitDriver } from "../queue/split-driver.ts";
import {
  decodeHeader,
  encodeHeader,
  MAX_PKT_BUF_SIZE,
  type VsockHeader,
  type VsockProfileName,
} from "../../spec/vsock.ts";
import { splitLayoutAt, splitLayoutEnd, type SplitLayout } from "../../wire/split.ts";
import { featureBit, VIRTIO_F } from "../../wire/features.ts";
import * as V from "../../wire/vsock.ts";
import { EVENT_QUEUE, RX_QUEUE, TX_QUEUE, VsockDevice } from "./device.ts";
import type { HostPort, MuxerOptions } from "./muxer.ts";
import { StreamCredit, streamHeader, type StreamEnds } from "./credit.ts";

export interface VsockGuestOptions {
  /** The virtqueue layout of all three queues (VIRTIO 1.2 §2.7 split, §2.8 packed: VIRTIO_F_RING_PACKED). */
  readonly ring: "split" | "packed";
  /** Queue size of all three queues (power of two). */
  readonly queueSize: number;
  /** Negotiate VIRTIO_F_EVENT_IDX. */
  readonly eventIdx: boolean;
  /**
   * Chains: header and data in two descriptors (Linux < 6.2), in one (6.2+), or data spread
   * over several descriptors (only the virtio profile gathers it).
   */
  readonly layout: "split" | "single" | "scatter";
  /** Data bytes of each RX buffer, and how many RX buffers are kept posted (at most the ring). */
  readonly rxBufSize: number;
  readonly rxBuffers: number;
  /** Largest data per TX packet, and how many TX packets may be in flight (at most the ring). */
  readonly txMaxData: number;
  readonly txSlots: number;
  /** Our receive buffer per socket, advertised as buf_alloc. */
  readonly sockBufAlloc: number;
  /**
   * A CREDIT_UPDATE goes out when the peer's view of our free space falls below this
   * (Linux: VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
   */
  readonly creditUpdateBelow: number;
  /** Answer packets for unknown sockets with RST, as Linux does (off: hostile runs keep them). */
  readonly rstStrays: boolean;
  /** Bytes of guest memory for tests to put hostile or foreign buffers in (`scratchBase`). */
  readonly scratch: number;
  /** The time in ms the device is told; default the `now` field. */
  readonly clock?: () => number;
}

export const DEFAULT_GUEST_OPTIONS: VsockGuestOptions = {
  ring: "split",
  queueSize: 256,
  eventIdx: false,
  layout: "split",
  rxBufSize: 4096,
  rxBuffers: Infinity,
  txMaxData: MAX_PKT_BUF_SIZE,
  txSlots: Infinity,
  sockBufAlloc: 256 * 1024,
  creditUpdateBelow: MAX_PKT_BUF_SIZE,
  rstStrays: true,
  scratch: 0,
};

/** The device the guest runs against: its CID, whose layout rules it follows, its muxer's settings. */
export interface VsockGuestDeviceConfig {
  readonly guestCid: bigint;
  readonly profile?: VsockProfileName;
  readonly muxer?: Partial<MuxerOptions>;
}

/** A buffer the guest places where it wants (hostile or foreign chains). */
export interface PlacedBuffer {
  readonly addr: number;
  readonly len: number;
  readonly write: boolean;
}

/**
 * What an observer sees of the driver (the simulator's oracle, checks and metrics). Queue
 * numbers are RX_QUEUE, TX_QUEUE, EVENT_QUEUE; every method may throw to stop a run.
 */
export interface VsockGuestProbe {
  /** The driver is set up and the device activated; no buffer is posted yet. */
  attached(guest: VsockGuest<DeviceQueue>): void;
  /** Buffer `head` of queue `q` is the device's now (it may touch what the chain describes). */
  offered(q: number, head: number): void;
  /** The driver published queue `q`'s new buffers up to `availIdx`; `kick`: it notified the device. */
  published(q: number, kick: boolean, availIdx: number): void;
  /** A device pass over queue `q` starts. */
  deviceStart(q: number): void;
  /** It ended; `raised`: the device interrupted for `q`. */
  deviceEnd(q: number, raised: boolean): void;
  /** The driver took back a used buffer and the len the device wrote. */
  reclaimed(q: number, buf: GuestBuffer, len: number): void;
  /** A used entry that names no buffer in flight (Linux's BAD_RING); the driver stops reaping `q` this round. */
  badUsed(q: number, id: number, reason: string): void;
  /** A packet the device delivered: its header, and the data bytes the device wrote after it. */
  delivered(h: VsockHeader, written: number): void;
  /** The driver queued a packet on TX. */
  sent(h: VsockHeader): void;
  /** A pump ended (nothing moves any more, or its round limit). */
  settled(): void;
}

const NO_PROBE: VsockGuestProbe = {
  attached: () => {},
  offered: () => {},
  published: () => {},
  deviceStart: () => {},
  deviceEnd: () => {},
  reclaimed: () => {},
  badUsed: () => {},
  delivered: () => {},
  sent: () => {},
  settled: () => {},
};

export interface ReceivedPacket {
  readonly header: VsockHeader;
  readonly data: Uint8Array;
}

/** A guest-side stream socket (guest port `port`, host port `peerPort`). */
export class GuestSocket extends StreamCredit implements StreamEnds {
  state: "connecting" | "established" | "closed" = "connecting";
  /** Bytes received and not yet read by the guest program. */
  readonly unread: Uint8Array[] = [];
  unreadBytes = 0;
  /** Everything the guest program read, in order (callers may empty it). */
  readonly received: Uint8Array[] = [];
  receivedBytes = 0;
  /** Bytes the guest program wrote and the driver has not sent yet. */
  readonly pending: Uint8Array[] = [];
  pendingBytes = 0;
  /** SHUTDOWN flags the peer sent, we sent, and the program asked for. */
  peerShutdown = 0;
  sentShutdown = 0;
  wantShutdown = 0;
  /** RST received, or the transport was reset. */
  reset = false;
  /** Largest host-to-guest in-flight count seen: the device must stay within our buf_alloc (VSOCK-CREDIT-LIMIT). */
  maxInFlight = 0;
  readonly dstCid = V.VSOCK_HOST_CID;

  constructor(
    readonly srcCid: bigint,
    readonly port: number,
    readonly peerPort: number,
    bufAlloc: number,
  ) {
    super(bufAlloc);
  }

  get srcPort(): number {
    return this.port;
  }
  get dstPort(): number {
    return this.peerPort;
  }
}

/** A segment's length and direction; the driver places it in the chain's slab. */
type SegmentShape = { readonly len: number; readonly write: boolean };

/** What each ring needs: its layout in guest memory, its guest driver, the device's queues. */
const RINGS: Readonly<
  Record<
    VsockGuestOptions["ring"],
    {
      readonly layoutAt: (base: number, size: number) => SplitLayout;
      readonly layoutEnd: (l: SplitLayout, size: number) => number;
      readonly driver: (m: GuestMemory, size: number, l: SplitLayout, o: GuestQueueOptions) => GuestQueue;
      readonly device: RingKind<DeviceQueue>;
    }
  >
> = {
  split: {
    layoutAt: splitLayoutAt,
    layoutEnd: splitLayoutEnd,
    driver: (m, size, l, o) => new SplitDriver(m, size, l, o),
    device: SPLIT_RING,
  },
  packed: {
    layoutAt: packedLayoutAt,
    layoutEnd: packedLayoutEnd,
    driver: (m, size, l, o) => new PackedDriver(m, size, l, o),
    device: PACKED_RING,
  },
};

/** Where data starts in a buffer's slab when the header has its own descriptor (64-byte aligned, as Linux's skb). */
const DATA_AT = 64;
/** Event buffers kept posted (each one `struct virtio_vsock_event`, a u32 id). */
const EVENT_BUFFERS = 4;
const EVENT_BYTES = 4;
const EVENT_SLAB = 8;
/** Where the rings start, and the buffers (a second region, as a VM's RAM above a hole). */
const RINGS_AT = 0x1000;
const BUFFERS_AT = 0x400000;

export class VsockGuest<Q extends DeviceQueue = SplitQueue> {
  readonly options: VsockGuestOptions;
  readonly memory: GuestMemory;
  readonly ram: GuestRam;
  readonly device: VsockDevice<Q>;
  readonly queues: readonly [GuestQueue, GuestQueue, GuestQueue];
  /** Where each queue's parts lie (what the device is configured with). */
  readonly layouts: readonly [SplitLayout, SplitLayout, SplitLayout];
  /** Each queue's buffer space, a slab per id. */
  private readonly slabs: readonly [BufferSlabs, BufferSlabs, BufferSlabs];
  /** Where the scratch area (options.scratch bytes) starts. */
  readonly scratchBase: number;
  readonly sockets = new Map<string, GuestSocket>();
  /** Ports the guest listens on (host-initiated connections to them are accepted). */
  readonly listening = new Set<number>();
  /** Transport events the device sent (VIRTIO_VSOCK_EVENT_*). */
  readonly events: number[] = [];
  /** Interrupts the device raised, per queue (counts), and those not yet handled. */
  readonly interrupts = [0, 0, 0];
  readonly irq = [false, false, false];
  /** Kicks sent and not yet served by a device pass, per queue. */
  readonly kicked = [false, false, false];
  /** Packets the device delivered, by op. */
  readonly opsReceived = new Map<number, number>();
  /** Chains posted with `addChainAt` that the device used: queue, head, len. */
  readonly foreignUsed: { readonly q: number; readonly head: number; readonly len: number }[] = [];
  /** Packets queued on TX, and delivered by the device (len >= a header). */
  sent = 0;
  receivedPackets = 0;
  /** The device's clock in ms when no `clock` option is given. */
  now = 0;
  private readonly probe: VsockGuestProbe;
  private readonly foreign: readonly [Set<number>, Set<number>, Set<number>] = [
    new Set(),
    new Set(),
    new Set(),
  ];
  private rxPosted = 0;
  private nextPort = 50000;
  /** Packets `pollRx` collects (null outside it). */
  private inbox: ReceivedPacket[] | null = null;

  private constructor(
    config: VsockGuestDeviceConfig,
    host: HostPort | null,
    options: VsockGuestOptions,
    probe: VsockGuestProbe,
    kind: RingKind<Q>,
  ) {
    this.options = options;
    this.probe = probe;
    const size = options.queueSize;
    const ring = RINGS[options.ring];
    const layouts: SplitLayout[] = [];
    let at = RINGS_AT;
    for (let i = 0; i < 3; i++) {
      const l = ring.layoutAt(at, size);
      layouts.push(l);
      at = ring.layoutEnd(l, size) + DATA_AT;
    }
    this.layouts = [layouts[0]!, layouts[1]!, layouts[2]!];
    const slabBytes = [DATA_AT + options.rxBufSize, DATA_AT + options.txMaxData, EVENT_SLAB];
    const bases: number[] = [];
    let buffersEnd = BUFFERS_AT;
    for (const bytes of slabBytes) {
      bases.push(buffersEnd);
      buffersEnd += BufferSlabs.bytesNeeded(size, bytes, 1);
    }
    this.slabs = [
      new BufferSlabs(bases[0]!, size, slabBytes[0]!, 1),
      new BufferSlabs(bases[1]!, size, slabBytes[1]!, 1),
      new BufferSlabs(bases[2]!, size, slabBytes[2]!, 1),
    ];
    this.scratchBase = buffersEnd;
    this.memory = GuestMemory.of([
      { base: RINGS_AT, bytes: new Uint8Array(at - RINGS_AT) },
      { base: BUFFERS_AT, bytes: new Uint8Array(buffersEnd + options.scratch - BUFFERS_AT) },
    ]);
    this.ram = new GuestRam(this.memory);
    const queueOpts = { eventIdx: options.eventIdx, indirect: false };
    this.queues = [
      ring.driver(this.memory, size, this.layouts[0], queueOpts),
      ring.driver(this.memory, size, this.layouts[1], queueOpts),
      ring.driver(this.memory, size, this.layouts[2], queueOpts),
    ];
    const made = VsockDevice.create(
      this.memory,
      { guestCid: config.guestCid, profile: config.profile, muxer: config.muxer, ring: kind },
      host,
    );
    if (!made.ok) throw new Error(`vsock guest set-up: the device refused: ${made.error._tag}`);
    this.device = made.value;
    for (let i = 0; i < 3; i++) {
      this.device.queues[i]!.configure({ size, ready: true, ...this.layouts[i]! });
    }
    const evt = featureBit(VIRTIO_F.RING_EVENT_IDX);
    this.device.ackFeatures(
      options.eventIdx ? this.device.deviceFeatures : this.device.deviceFeatures & ~evt,
    );
    const act = this.device.activate();
    if (!act.ok) throw new Error(`vsock guest set-up: queue ${act.error.queue}: ${act.error.error._tag}`);
  }

  /**
   * Guest memory, the device (with `host` behind it, on the ring `options.ring` names), and
   * the driver with its queues set up and buffers posted.
   */
  static create(
    config: VsockGuestDeviceConfig,
    host: HostPort | null,
    options?: Partial<VsockGuestOptions> & { readonly ring?: "split" },
    probe?: VsockGuestProbe,
  ): VsockGuest<SplitQueue>;
  static create(
    config: VsockGuestDeviceConfig,
    host: HostPort | null,
    options: Partial<VsockGuestOptions> & { readonly ring: "packed" },
    probe?: VsockGuestProbe,
  ): VsockGuest<PackedQueue>;
  static create(
    config: VsockGuestDeviceConfig,
    host: HostPort | null,
    options?: Partial<VsockGuestOptions>,
    probe?: VsockGuestProbe,
  ): VsockGuest<DeviceQueue>;
  static create(
    config: VsockGuestDeviceConfig,
    host: HostPort | null,
    options: Partial<VsockGuestOptions> = {},
    probe: VsockGuestProbe = NO_PROBE,
  ): VsockGuest<DeviceQueue> {
    const o = { ...DEFAULT_GUEST_OPTIONS, ...options };
    const g = new VsockGuest<DeviceQueue>(config, host, o, probe, RINGS[o.ring].device);
    probe.attached(g);
    g.refillRx();
    for (let i = 0; i < EVENT_BUFFERS; i++) g.postEvent();
    g.publishKick(EVENT_QUEUE);
    return g;
  }

  get cid(): bigint {
    return this.device.guestCid;
  }

  private time(): number {
    return this.options.clock?.() ?? this.now;
  }

  // ---- chains (every queue-level call of the driver is in this section)

  /** The segments of one packet's chain: header then data, per layout; gaps put data at DATA_AT. */
  private chainShape(dataLen: number, write: boolean): { segs: SegmentShape[]; gaps: number[] | undefined } {
    const H = V.VSOCK_PKT_HDR_SIZE;
    if (this.options.layout === "single" || dataLen === 0)
      return { segs: [{ len: H + dataLen, write }], gaps: undefined };
    if (this.options.layout === "split")
      return {
        segs: [
          { len: H, write },
          { len: dataLen, write },
        ],
        gaps: [0, DATA_AT - H],
      };
    // Scatter: the same contiguous bytes, cut into up to three descriptors.
    const segs: SegmentShape[] = [{ len: H, write }];
    const a = Math.ceil(dataLen / 3);
    const b = Math.ceil((dataLen - a) / 2);
    for (const len of [a, b, dataLen - a - b]) if (len > 0) segs.push({ len, write });
    return { segs, gaps: [0, DATA_AT - H] };
  }

  /** Adds a chain in the slab of the id it gets (not published); NO_ROOM when the ring is full. */
  private addChain(qi: number, segs: readonly SegmentShape[], gaps?: readonly number[]): number {
    return this.slabs[qi]!.add(this.queues[qi]!, segs, false, 0, gaps);
  }

  private postEvent(): void {
    const id = this.addChain(EVENT_QUEUE, [{ len: EVENT_BYTES, write: true }]);
    if (id !== NO_ROOM) this.probe.offered(EVENT_QUEUE, id);
  }

  /** Keeps the RX buffers posted (up to `rxBuffers`, as many as the ring takes). */
  refillRx(): void {
    const q = this.queues[RX_QUEUE];
    const { segs, gaps } = this.chainShape(this.options.rxBufSize, true);
    let added = 0;
    while (this.rxPosted < this.options.rxBuffers && q.numFree >= segs.length) {
      const id = this.addChain(RX_QUEUE, segs, gaps);
      if (id === NO_ROOM) break;
      this.probe.offered(RX_QUEUE, id);
      this.rxPosted++;
      added++;
    }
    if (added > 0) this.publishKick(RX_QUEUE);
  }

  /** Publishes queue `qi` and kicks when the device asked for it. */
  private publishKick(qi: number): void {
    const q = this.queues[qi]!;
    q.publish();
    const k = q.kickPrepare();
    if (k.need) this.kicked[qi] = true;
    this.probe.published(qi, k.need, k.new);
  }

  /**
   * Posts a chain of buffers at addresses the caller chose (hostile or foreign ones: anywhere,
   * any length), published and kicked. Returns the head, or undefined when the ring is full.
   * When the device uses it, it lands in `foreignUsed`.
   */
  addChainAt(qi: number, bufs: readonly PlacedBuffer[]): number | undefined {
    const id = this.queues[qi]!.add(bufs, 0);
    if (id === NO_ROOM) return undefined;
    this.foreign[qi]!.add(id);
    this.publishKick(qi);
    return id;
  }

  /** Queues one packet on TX (not kicked); false when the ring stays full after reclaiming. */
  sendRaw(h: VsockHeader, data: Uint8Array = new Uint8Array(0)): boolean {
    const q = this.queues[TX_QUEUE];
    const n = Math.min(data.length, this.options.txMaxData);
    const { segs, gaps } = this.chainShape(n, false);
    if (q.inFlightCount >= this.options.txSlots) this.reapTx();
    let id = q.inFlightCount < this.options.txSlots ? this.addChain(TX_QUEUE, segs, gaps) : NO_ROOM;
    if (id === NO_ROOM) {
      this.reapTx();
      id = q.inFlightCount < this.options.txSlots ? this.addChain(TX_QUEUE, segs, gaps) : NO_ROOM;
      if (id === NO_ROOM) return false;
    }
    const buf = q.inFlightAt(id)!;
    const first = buf.segments[0]!;
    this.ram.write(first.addr, encodeHeader(h));
    if (n > 0)
      this.ram.write(
        segs.length === 1 ? first.addr + V.VSOCK_PKT_HDR_SIZE : buf.segments[1]!.addr,
        data.subarray(0, n),
      );
    this.probe.offered(TX_QUEUE, id);
    this.sent++;
    this.probe.sent(h);
    return true;
  }

  // ---- the device's side, as its event loop would run it

  /** One device pass: TX when kicked, RX when kicked or the host has data, events when kicked. */
  deviceRun(): void {
    const dev = this.device;
    if (this.kicked[TX_QUEUE]) {
      this.kicked[TX_QUEUE] = false;
      this.pass(TX_QUEUE, () => dev.processTx(this.time()));
    }
    if (this.kicked[RX_QUEUE] || dev.hasPendingRx()) {
      this.kicked[RX_QUEUE] = false;
      this.pass(RX_QUEUE, () => dev.processRx(this.time()));
    }
    if (this.kicked[EVENT_QUEUE]) {
      this.kicked[EVENT_QUEUE] = false;
      this.pass(EVENT_QUEUE, () => dev.processEvent());
    }
  }

  private pass(qi: number, run: () => unknown): void {
    this.probe.deviceStart(qi);
    run();
    const bits = this.device.takeInterrupts();
    for (let i = 0; i < 3; i++) {
      if ((bits & (1 << i)) === 0) continue;
      this.irq[i] = true;
      this.interrupts[i]!++;
    }
    this.probe.deviceEnd(qi, (bits & (1 << qi)) !== 0);
  }

  // ---- the guest's interrupt handlers

  /** Reaps used buffers of queue `qi` into `each`; stops at a bad used entry (reported to the probe). */
  private reap(qi: number, each: (buf: GuestBuffer, len: number) => void): void {
    const q = this.queues[qi]!;
    for (;;) {
      const g = q.getBuf();
      if (g.kind === "none") return;
      if (g.kind === "bad") {
        this.probe.badUsed(qi, g.id, g.reason);
        return;
      }
      this.probe.reclaimed(qi, g.buf, g.len);
      if (this.foreign[qi]!.delete(g.buf.id)) this.foreignUsed.push({ q: qi, head: g.buf.id, len: g.len });
      else each(g.buf, g.len);
    }
  }

  private reapTx(): void {
    this.reap(TX_QUEUE, () => {});
  }

  private reapRx(): void {
    this.reap(RX_QUEUE, (buf, len) => {
      this.rxPosted--;
      if (len < V.VSOCK_PKT_HDR_SIZE) return;
      const segs = buf.segments;
      const h = decodeHeader(this.ram.bytes(segs[0]!.addr, V.VSOCK_PKT_HDR_SIZE));
      const dataAt = segs.length === 1 ? segs[0]!.addr + V.VSOCK_PKT_HDR_SIZE : segs[1]!.addr;
      const written = len - V.VSOCK_PKT_HDR_SIZE;
      this.probe.delivered(h, written);
      const data = this.ram.bytes(dataAt, Math.min(written, h.len, this.options.rxBufSize)).slice();
      this.receivedPackets++;
      this.opsReceived.set(h.op, (this.opsReceived.get(h.op) ?? 0) + 1);
      this.inbox?.push({ header: h, data });
      this.handle(h, data);
    });
    this.refillRx();
  }

  private reapEvents(): void {
    this.reap(EVENT_QUEUE, (buf) => {
      this.events.push(this.ram.u32(buf.segments[0]!.addr));
      // VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: every connection is gone.
      for (const s of this.sockets.values()) s.reset = true;
      this.postEvent();
      this.publishKick(EVENT_QUEUE);
    });
  }

  /** The interrupt handlers (NAPI-style): reclaim TX, deliver RX and repost, take events. */
  guestInterrupts(): void {
    for (const qi of [TX_QUEUE, RX_QUEUE, EVENT_QUEUE]) {
      if (!this.irq[qi]) continue;
      this.irq[qi] = false;
      const q = this.queues[qi]!;
      for (let round = 0; round < 1000; round++) {
        q.disableCb();
        if (qi === TX_QUEUE) this.reapTx();
        else if (qi === RX_QUEUE) this.reapRx();
        else this.reapEvents();
        if (!q.poll(q.enableCbPrepare())) break;
      }
    }
  }

  // ---- sockets (virtio_transport_common.c)

  private key(port: number, peer: number): string {
    return `${port}:${peer}`;
  }

  socket(port: number, peer: number): GuestSocket | undefined {
    return this.sockets.get(this.key(port, peer));
  }

  private send(s: GuestSocket, op: number, len = 0, flags = 0, data?: Uint8Array): boolean {
    return this.sendRaw(streamHeader(s, s, op, len, flags), data);
  }

  /** The guest program connects to host port `peerPort`. */
  connect(peerPort: number): GuestSocket {
    const s = new GuestSocket(this.cid, this.nextPort++, peerPort, this.options.sockBufAlloc);
    this.sockets.set(this.key(s.port, peerPort), s);
    this.send(s, V.VSOCK_OP_REQUEST);
    return s;
  }

  write(s: GuestSocket, bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    s.pending.push(bytes);
    s.pendingBytes += bytes.length;
  }

  /** The guest program reads up to `max` bytes into `s.received`; credit returns to the host as it reads. */
  read(s: GuestSocket, max = Infinity): number {
    return this.consume(s, max, s.received);
  }

  /** Like `read`, but hands the bytes back instead of keeping them in `received` (echo loops). */
  take(s: GuestSocket, max = Infinity): Uint8Array[] {
    const out: Uint8Array[] = [];
    this.consume(s, max, out);
    return out;
  }

  private consume(s: GuestSocket, max: number, into: Uint8Array[]): number {
    let n = 0;
    while (s.unread.length > 0 && n < max) {
      const c = s.unread[0]!;
      const take = Math.min(c.length, max - n);
      into.push(c.subarray(0, take));
      if (take === c.length) s.unread.shift();
      else s.unread[0] = c.subarray(take);
      n += take;
    }
    s.unreadBytes -= n;
    s.receivedBytes += n;
    s.countConsumed(n);
    // After virtio_transport_stream_do_dequeue, not the same: we tell the peer when its view
    // of our room (buf_alloc - (rx_cnt - the fwd_cnt we last sent)) is low. Linux computes
    // buf_alloc - (fwd_cnt - last_fwd_cnt) and also sends one when the unread bytes fall below
    // SO_RCVLOWAT (default 1: whenever a read empties the queue).
    if (n > 0 && s.state === "established" && s.freeAsPeerKnows() < this.options.creditUpdateBelow)
      this.send(s, V.VSOCK_OP_CREDIT_UPDATE);
    return n;
  }

  /** SHUTDOWN with `flags` once the pending data has gone. */
  shutdown(s: GuestSocket, flags: number): void {
    s.wantShutdown |= flags;
  }

  /** RW packets for pending data within the peer's credit, then due shutdowns. */
  flush(): void {
    for (const s of this.sockets.values()) {
      if (s.state !== "established" || s.reset) continue;
      while (s.pendingBytes > 0 && (s.sentShutdown & V.VSOCK_FLAGS_SHUTDOWN_SEND) === 0) {
        const c = s.pending[0]!;
        const n = Math.min(s.peerCredit(), this.options.txMaxData, c.length);
        if (n <= 0) break;
        if (!this.send(s, V.VSOCK_OP_RW, n, 0, c.subarray(0, n))) break;
        if (n === c.length) s.pending.shift();
        else s.pending[0] = c.subarray(n);
        s.pendingBytes -= n;
        s.countSent(n);
      }
      const due = s.wantShutdown & ~s.sentShutdown;
      if (due !== 0 && s.pendingBytes === 0 && this.send(s, V.VSOCK_OP_SHUTDOWN, 0, s.wantShutdown))
        s.sentShutdown |= due;
    }
  }

  private handle(h: VsockHeader, data: Uint8Array): void {
    if (h.dstCid !== this.cid || h.srcCid !== V.VSOCK_HOST_CID) return;
    let s = this.socket(h.dstPort, h.srcPort);
    if (s === undefined) {
      if (h.op === V.VSOCK_OP_REQUEST && this.listening.has(h.dstPort)) {
        s = new GuestSocket(this.cid, h.dstPort, h.srcPort, this.options.sockBufAlloc);
        s.state = "established";
        s.fromPeer(h.bufAlloc, h.fwdCnt);
        this.sockets.set(this.key(s.port, s.peerPort), s);
        this.send(s, V.VSOCK_OP_RESPONSE);
      } else if (h.op !== V.VSOCK_OP_RST && this.options.rstStrays) {
        this.send(new GuestSocket(this.cid, h.dstPort, h.srcPort, 0), V.VSOCK_OP_RST);
      }
      return;
    }
    s.fromPeer(h.bufAlloc, h.fwdCnt);
    switch (h.op) {
      case V.VSOCK_OP_RESPONSE:
        if (s.state === "connecting") s.state = "established";
        break;
      case V.VSOCK_OP_RW:
        s.unread.push(data);
        s.unreadBytes += data.length;
        s.countReceived(data.length);
        s.maxInFlight = Math.max(s.maxInFlight, s.unconsumed());
        break;
      case V.VSOCK_OP_CREDIT_REQUEST:
        this.send(s, V.VSOCK_OP_CREDIT_UPDATE);
        break;
      case V.VSOCK_OP_SHUTDOWN: {
        const both = V.VSOCK_FLAGS_SHUTDOWN_RCV | V.VSOCK_FLAGS_SHUTDOWN_SEND;
        s.peerShutdown |= h.flags & both;
        if (s.peerShutdown === both) {
          // Linux answers a full shutdown with RST.
          this.send(s, V.VSOCK_OP_RST);
          s.state = "closed";
        }
        break;
      }
      case V.VSOCK_OP_RST:
        s.state = "closed";
        s.reset = true;
        break;
      default:
        break;
    }
  }

  // ---- driving it

  /** Rounds of flush, kick, device pass, interrupt handlers until nothing moves (or `limit`); the rounds run. */
  pump(limit = 16): number {
    let round = 0;
    while (round < limit) {
      round++;
      const before = this.sent + this.receivedPackets;
      this.flush();
      if (this.queues[TX_QUEUE].unpublished > 0) this.publishKick(TX_QUEUE);
      this.deviceRun();
      this.guestInterrupts();
      if (this.sent + this.receivedPackets === before && !this.device.hasPendingRx()) break;
    }
    this.probe.settled();
    return round;
  }

  /** Publishes and kicks TX, lets the device take it, and reclaims. */
  kickTx(): void {
    if (this.queues[TX_QUEUE].unpublished > 0) this.publishKick(TX_QUEUE);
    if (this.kicked[TX_QUEUE]) {
      this.kicked[TX_QUEUE] = false;
      this.pass(TX_QUEUE, () => this.device.processTx(this.time()));
    }
    this.guestInterrupts();
  }

  /** Lets the device fill RX buffers and handles what it delivered; returns those packets. */
  pollRx(): ReceivedPacket[] {
    const got: ReceivedPacket[] = [];
    this.inbox = got;
    try {
      this.kicked[RX_QUEUE] = false;
      this.pass(RX_QUEUE, () => this.device.processRx(this.time()));
      this.guestInterrupts();
    } finally {
      this.inbox = null;
    }
    return got;
  }
}
