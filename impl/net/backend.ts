/**
 * Host-side network backends (squib `NetBackend`), as an Effect service.
 *
 * The device hands a backend one packet at a time as guest-memory segments, valid only
 * during the call: a TX packet is the chain's readable bytes (virtio_net_hdr first, then
 * the frame); an RX buffer is the writable bytes of one or more chains. A backend that
 * speaks virtio_net_hdr itself (a TAP with IFF_VNET_HDR) moves whole packets with one
 * writev/readv over those segments (TAP-WRITEV, TAP-READV); a frame backend (loopback,
 * capturing) copies only the frame and lets the device write the header (NET-RX-HDR).
 * Everything here is synchronous and allocation-free per frame (frames kept for RX live in
 * one byte ring); waiting is the one Effect (`waitReadable`).
 */
import { Context, type Effect, Latch, Layer } from "effect";

/** Guest-memory segments in order, each a live view of guest memory (what impl/iovec buffers give). */
export interface GuestSegments {
  readonly segmentCount: number;
  segment(i: number): Uint8Array | undefined;
}

/** One TX chain's readable part: `headerLength` header bytes, then `frameLength` frame bytes. */
export interface TxPacket extends GuestSegments {
  readonly headerLength: number;
  readonly frameLength: number;
  /**
   * Copies frame bytes [at, at + n) into dst[into, into + n) (into 0 and n the rest of dst by
   * default; n clipped to the room after `into`); returns the count copied.
   */
  copyFrame(dst: Uint8Array, at: number, n?: number, into?: number): number;
}

/** The writable bytes offered for one RX packet (header at offset 0). */
export interface RxBuffer extends GuestSegments {
  readonly headerLength: number;
  /** Writable bytes in all. */
  readonly capacity: number;
  /** Writes src[from, to) at packet offset `at`; returns the count written (clipped to capacity). */
  write(src: Uint8Array, from: number, to: number, at: number): number;
}

export interface NetBackendStats {
  sent: number;
  received: number;
  /** Frames the backend could not keep (its bounded queue was full: NET-RX-PENDING-BOUND). */
  dropped: number;
  /** send/receive failures (e.g. writev errors). */
  errors: number;
}

export interface NetBackendShape {
  readonly name: string;
  /**
   * true: packets cross with their virtio_net_hdr (the backend writes it on RX);
   * false: only frames cross and the device writes the header.
   */
  readonly carriesHeader: boolean;
  /** Called when the driver's features are known: header length and the acked bits (TAP-VNET-HDR-SZ, TAP-OFFLOAD). */
  configure(headerLength: 10 | 12, acked: bigint): boolean;
  /** TX: >= 0 on success, < 0 (a negative errno) on failure; the device counts failures. */
  send(packet: TxPacket): number;
  /**
   * RX: moves the next frame into `dst`. Returns -1 when none is ready, otherwise the
   * packet bytes written (header included when `carriesHeader`, frame only otherwise).
   * A frame longer than the room is truncated and consumed.
   */
  receive(dst: RxBuffer): number;
  /** Frames known to be waiting, when the backend can tell (a TAP cannot: undefined). */
  readonly pending?: number;
  /** Completes when `receive` may have a frame (never busy-polls: TAP-WAIT). */
  readonly waitReadable: Effect.Effect<void>;
  readonly stats: NetBackendStats;
}

/** The NetBackend service: one per device. */
export class NetBackend extends Context.Service<NetBackend, NetBackendShape>()("virtio-lab/NetBackend") {}

/**
 * Frames queued in memory, bounded (NET-RX-PENDING-BOUND); `waitReadable` passes while one is
 * queued. The frames lie end to end in one byte ring (a frame never wraps: one that does not
 * fit before the end starts again at 0), grown on demand up to `limit` frames of
 * `frameCapacity` bytes. A frame is read only over the bytes written for it, so nothing of
 * an earlier frame can show through, and every copy in and out has the same host array on
 * its side (which small copies cache).
 */
class FrameQueue {
  private store = new Uint8Array(0);
  /** Where each queued frame starts in `store`, and its length, by ring slot. */
  private readonly offs: Float64Array;
  private readonly lens: Float64Array;
  private head = 0;
  private count = 0;
  /** Where the next frame goes when it fits there (just after the newest frame). */
  private tail = 0;
  /** Open exactly while a frame is queued. */
  private readonly readable = Latch.makeUnsafe(false);

  constructor(
    readonly frameCapacity: number,
    readonly limit: number,
  ) {
    this.offs = new Float64Array(limit);
    this.lens = new Float64Array(limit);
  }

  get length(): number {
    return this.count;
  }

  /** Bytes the ring holds now (grows with the traffic, never past limit × frameCapacity). */
  get storeBytes(): number {
    return this.store.length;
  }

  /** Copies a TX packet's frame in; false when the queue is full or the frame too large. */
  pushPacket(p: TxPacket): boolean {
    const n = p.frameLength;
    if (this.count === this.limit || n > this.frameCapacity) return false;
    const at = this.room(n);
    this.enqueue(at, p.copyFrame(this.store, 0, n, at));
    return true;
  }

  pushBytes(bytes: Uint8Array): boolean {
    const n = bytes.length;
    if (this.count === this.limit || n > this.frameCapacity) return false;
    const at = this.room(n);
    this.store.set(bytes, at);
    this.enqueue(at, n);
    return true;
  }

  /** Where `n` more bytes fit after the queued frames, growing the ring when they do not. */
  private room(n: number): number {
    if (this.count === 0) this.tail = 0;
    const first = this.count === 0 ? 0 : this.offs[this.head]!;
    if (this.count === 0 || this.tail > first) {
      // Not wrapped: after the newest frame, else from the start up to the oldest.
      if (this.store.length - this.tail >= n) return this.tail;
      if (first >= n) return 0;
    } else if (first - this.tail >= n) return this.tail;
    return this.grow(n);
  }

  /** A larger ring with the queued frames moved to its start, in order; where `n` bytes go. */
  private grow(n: number): number {
    const max = this.limit * this.frameCapacity;
    let size = this.store.length * 2 || 64 * 1024;
    let live = 0;
    for (let k = 0; k < this.count; k++) live += this.lens[(this.head + k) % this.limit]!;
    while (size < live + n && size < max) size *= 2;
    const next = new Uint8Array(size < max ? size : max);
    let at = 0;
    for (let k = 0; k < this.count; k++) {
      const slot = (this.head + k) % this.limit;
      const off = this.offs[slot]!;
      const len = this.lens[slot]!;
      next.set(this.store.subarray(off, off + len), at);
      this.offs[slot] = at;
      at += len;
    }
    this.store = next;
    return at;
  }

  private enqueue(at: number, n: number): void {
    const slot = (this.head + this.count) % this.limit;
    this.offs[slot] = at;
    this.lens[slot] = n;
    this.tail = at + n;
    this.count++;
    this.readable.openUnsafe();
  }

  /** Writes the oldest frame into dst after its header; -1 when empty. */
  popInto(dst: RxBuffer): number {
    if (this.count === 0) return -1;
    const off = this.offs[this.head]!;
    const len = this.lens[this.head]!;
    this.head = (this.head + 1) % this.limit;
    this.count--;
    if (this.count === 0) this.readable.closeUnsafe();
    return len === 0 ? 0 : dst.write(this.store, off, off + len, dst.headerLength);
  }

  readonly waitReadable: Effect.Effect<void> = this.readable.await;
}

export interface FrameBackendOptions {
  /** Largest frame kept (bytes). */
  readonly frameCapacity?: number;
  /** Frames waiting for the guest before new ones are dropped (NET-RX-PENDING-BOUND). */
  readonly queueLimit?: number;
}

const DEFAULT_FRAME_CAPACITY = 65550;

/** NET-BACKEND-LOOPBACK: what the guest sends it receives, in order. */
export class LoopbackBackend implements NetBackendShape {
  readonly name = "loopback";
  readonly carriesHeader = false;
  readonly stats: NetBackendStats = { sent: 0, received: 0, dropped: 0, errors: 0 };
  private readonly queue: FrameQueue;

  constructor(opts: FrameBackendOptions = {}) {
    const limit = opts.queueLimit ?? 256;
    this.queue = new FrameQueue(opts.frameCapacity ?? DEFAULT_FRAME_CAPACITY, limit);
    this.waitReadable = this.queue.waitReadable;
  }

  readonly waitReadable: Effect.Effect<void>;

  get pending(): number {
    return this.queue.length;
  }

  configure(): boolean {
    return true;
  }

  send(p: TxPacket): number {
    this.stats.sent++;
    if (!this.queue.pushPacket(p)) this.stats.dropped++;
    return 0;
  }

  receive(dst: RxBuffer): number {
    const n = this.queue.popInto(dst);
    if (n >= 0) this.stats.received++;
    return n;
  }
}

/**
 * Records every frame sent (copies) and delivers frames a test injects: the one-way sink
 * of squib's tests, plus an RX source.
 */
export class CapturingBackend implements NetBackendShape {
  readonly name = "capturing";
  readonly carriesHeader = false;
  readonly stats: NetBackendStats = { sent: 0, received: 0, dropped: 0, errors: 0 };
  readonly sent: Uint8Array[] = [];
  /** When set, `send` fails with this negative errno (fault injection). */
  failSendWith: number | null = null;
  private readonly queue: FrameQueue;
  headerLength: 10 | 12 | undefined;
  acked: bigint | undefined;

  constructor(opts: FrameBackendOptions = {}) {
    const limit = opts.queueLimit ?? 256;
    this.queue = new FrameQueue(opts.frameCapacity ?? DEFAULT_FRAME_CAPACITY, limit);
    this.waitReadable = this.queue.waitReadable;
  }

  readonly waitReadable: Effect.Effect<void>;

  configure(headerLength: 10 | 12, acked: bigint): boolean {
    this.headerLength = headerLength;
    this.acked = acked;
    return true;
  }

  /** Queues a frame for the guest; false (and counted) when the queue is full. */
  inject(frame: Uint8Array): boolean {
    if (this.queue.pushBytes(frame)) return true;
    this.stats.dropped++;
    return false;
  }

  get pending(): number {
    return this.queue.length;
  }

  send(p: TxPacket): number {
    if (this.failSendWith !== null) {
      this.stats.errors++;
      return this.failSendWith;
    }
    const copy = new Uint8Array(p.frameLength);
    p.copyFrame(copy, 0);
    this.sent.push(copy);
    this.stats.sent++;
    return 0;
  }

  receive(dst: RxBuffer): number {
    const n = this.queue.popInto(dst);
    if (n >= 0) this.stats.received++;
    return n;
  }
}

export const CapturingLayer = (backend: CapturingBackend): Layer.Layer<NetBackend> =>
  Layer.succeed(NetBackend, backend);
