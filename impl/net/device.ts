/**
 * The virtio-net device (VIRTIO 1.2 §5.1; squib `net.rs`): queue 0 receives, queue 1
 * transmits (NET-QUEUES).
 *
 * Driving it, step by step (what the simulator does; README.md shows it in full):
 *   1. the driver reads `offeredFeatures`, calls `ackFeatures(acked)` and reads config
 *      space with `readConfig`;
 *   2. it lays out the rings and configures `queues[0]`/`queues[1]` (`SplitQueue.configure`);
 *   3. `activate(memory, signal)` initializes both queues and tells the backend the
 *      header length and features; `signal(queueIndex)` is the interrupt line;
 *   4. per kick of queue 1: `processTx` (an Effect; `processTxNow()` is the same, plain);
 *      per kick of queue 0, or when the backend has frames: `processRx` / `processRxNow()`.
 *      `run` is the background loop (wait for the backend, then processRx) to fork in a scope.
 * Each step returns how many chains it completed; it calls `signal` at most once, and only
 * when the queue's EVENT_IDX state says the driver wants it (NET-NOTIFY).
 *
 * Hot paths allocate nothing per chain: one reused DescriptorChain, IoVecBuffer and
 * IoVecBufferMut, and fixed scratch arrays. Guest input never throws: every broken chain
 * is completed, counted, and the next one is served (NET-HOSTILE).
 */
import { Effect, Latch, Option, type Scope } from "effect";
import {
  maxFrameLength,
  type ConfigError,
  type FeatureError,
  type NetConfig,
  type TxDrop,
} from "../../spec/net.ts";
import type { PackedQueueError } from "../../spec/packed-queue.ts";
import type { QueueError } from "../../spec/queue.ts";
import { err, ok, type Result } from "../../spec/result.ts";
import { IoVecBuffer, IoVecBufferMut, type ChainCursor } from "../iovec/iovec.ts";
import { VIRTIO_ID_NET, type VirtioDevice } from "../device/virtio-device.ts";
import type { GuestMemory } from "../memory/guest-memory.ts";
import { ringOrSplit, type DeviceChain, type DeviceQueue, type RingKind } from "../queue/device-queue.ts";
import { PopStatus, type SplitQueue } from "../queue/split-queue.ts";
import { NetBackend, type NetBackendShape, type RxBuffer, type TxPacket } from "./backend.ts";
import { CONFIG_SIZE as NET_CONFIG_SIZE, NetConfigSpace, checkConfig } from "./config.ts";
import { F, checkAck, hasFeature, netHeaderLength, offeredFeatures } from "./features.ts";
import { NUM_BUFFERS_OFFSET } from "./header.ts";
import {
  CLAIM_HEAD_BYTES,
  FrameInterceptor,
  noInterceptor,
  type FrameInterceptorShape,
} from "./interceptor.ts";

const ZERO_BYTE = new Uint8Array(1);

export const RX_QUEUE = 0;
export const TX_QUEUE = 1;
export const QUEUE_MAX_SIZE = 256;

export interface NetDeviceOptions<Q extends DeviceQueue = SplitQueue> extends NetConfig {
  /** Largest queue size the device accepts (a power of two). */
  readonly queueMaxSize?: number;
  /** Segments an RX packet may span (IoVecBufferMut capacity). */
  readonly rxSegments?: number;
  /** The ring layout of both queues (default split; PACKED_RING offers VIRTIO_F_RING_PACKED and needs it acked). */
  readonly ring?: RingKind<Q>;
}

/** A packed-ring device whose driver did not acknowledge VIRTIO_F_RING_PACKED (VIRTIO 1.2 §2.2.1: FEATURES_OK fails). */
export type RingNotAcked = { readonly _tag: "RingNotAcked"; readonly ring: string };

export interface NetStats {
  txFrames: number;
  txBytes: number;
  txIntercepted: number;
  /** NET-TX-SHORT */
  txTooShort: number;
  /** NET-TX-MAX */
  txTooLong: number;
  /** NET-TX-CHAIN-ERROR */
  txChainErrors: number;
  txBackendErrors: number;
  rxFrames: number;
  rxBytes: number;
  rxInjected: number;
  /** RX chains that could not take a packet (broken, outside memory, readable-only). */
  rxChainErrors: number;
  /** RX passes that stopped because the guest had too few buffers (frames wait). */
  rxNoBuffers: number;
  /** RX passes run (kicks and backend wake-ups). */
  rxPasses: number;
  /** Pops refused by the queue (invalid head, avail idx) (VQ-*). */
  queueErrors: number;
  interrupts: [number, number];
}

export type DeviceConfigError =
  ConfigError | { readonly _tag: "CsumNeedsHeaderBackend"; readonly backend: string };

export type ActivateError =
  | { readonly _tag: "QueueInit"; readonly queue: number; readonly error: QueueError | PackedQueueError }
  | { readonly _tag: "BackendConfigure"; readonly backend: string };

const newStats = (): NetStats => ({
  txFrames: 0,
  txBytes: 0,
  txIntercepted: 0,
  txTooShort: 0,
  txTooLong: 0,
  txChainErrors: 0,
  txBackendErrors: 0,
  rxFrames: 0,
  rxBytes: 0,
  rxInjected: 0,
  rxChainErrors: 0,
  rxNoBuffers: 0,
  rxPasses: 0,
  queueErrors: 0,
  interrupts: [0, 0],
});

/** The readable or writable descriptors of a chain, as the cursor impl/iovec loads from. */
class ChainPart implements ChainCursor {
  constructor(
    private readonly chain: DeviceChain,
    private readonly writable: boolean,
  ) {}
  get headIndex(): number {
    return this.chain.headIndex;
  }
  get addr(): number {
    return this.chain.addr;
  }
  get len(): number {
    return this.chain.len;
  }
  addrBig(): bigint {
    return this.chain.addrBig();
  }
  isWriteOnly(): boolean {
    return this.chain.isWriteOnly();
  }
  rewind(): boolean {
    return this.writable ? this.chain.rewindWritable() : this.chain.rewindReadable();
  }
  advance(): boolean {
    return this.writable ? this.chain.advanceWritable() : this.chain.advanceReadable();
  }
}

/** The TX chain being processed, as the backend sees it (NET-TX-HDR-STRIP). */
class TxView implements TxPacket {
  headerLength = 12;
  frameLength = 0;
  constructor(private readonly buf: IoVecBuffer) {}
  get segmentCount(): number {
    return this.buf.segmentCount;
  }
  segment(i: number): Uint8Array | undefined {
    return this.buf.segment(i);
  }
  copyFrame(dst: Uint8Array, at: number, n = dst.length, into = 0): number {
    if (!(at >= 0 && n >= 0)) return 0;
    // A bad `into` (negative, past dst) makes an empty or invalid range: readInto moves nothing.
    const room = dst.length - into;
    return this.buf.readInto(dst, this.headerLength + at, into, into + (n < room ? n : room));
  }
}

/** The writable room for one RX packet (NET-RX-WRITABLE-ONLY: only writable descriptors are in it). */
class RxView implements RxBuffer {
  headerLength = 12;
  constructor(private readonly buf: IoVecBufferMut) {}
  get capacity(): number {
    return this.buf.len;
  }
  get segmentCount(): number {
    return this.buf.segmentCount;
  }
  segment(i: number): Uint8Array | undefined {
    return this.buf.segment(i);
  }
  write(src: Uint8Array, from: number, to: number, at: number): number {
    if (!(from >= 0 && to <= src.length && from < to && at >= 0)) return 0;
    return this.buf.writeFrom(src, at, from, to); // the range is passed on: no view per call
  }
}

/** The driver acked features after the device was activated (NET-FEAT-LOCKED). */
export type FeaturesLocked = { readonly _tag: "FeaturesLocked" };

export class NetDevice<Q extends DeviceQueue = SplitQueue> implements VirtioDevice<Q> {
  readonly deviceId = VIRTIO_ID_NET;
  readonly name = "net";
  readonly configSize = NET_CONFIG_SIZE;
  readonly queues: readonly [Q, Q];
  readonly configSpace: NetConfigSpace;
  readonly offeredFeatures: bigint;
  readonly maxFrame: number;
  readonly stats: NetStats = newStats();
  /** Why the last dropped TX chain was dropped (typed, NET-TX-*), for reports and tests. */
  lastTxDrop: TxDrop | null = null;
  /** The last queue error a pop reported. */
  lastQueueError: QueueError | PackedQueueError | null = null;

  private acked = 0n;
  private hdrLen: 10 | 12 = 12;
  private mergeable = false;
  private guestCsum = false;
  private memory: GuestMemory | null = null;
  private signal: (queue: number) => void = () => {};

  private readonly ring: RingKind<Q>;
  private chainObj: DeviceChain | null = null;
  /**
   * TX has its own chain: a backend that hands a frame to a waiting RX loop (loopback) may
   * run RX synchronously inside `send`, which would rebind a shared chain under TX.
   */
  private txChainObj: DeviceChain | null = null;
  private readonly txBuf = new IoVecBuffer(16);
  private readonly rxBuf: IoVecBufferMut;
  private readonly tx: TxView;
  private readonly rx: RxView;
  private readonly head = new Uint8Array(CLAIM_HEAD_BYTES);
  private readonly headViews: Uint8Array[];
  private readonly hdr = new Uint8Array(12);
  private readonly numBuffers = new Uint8Array(2);
  private readonly mrgHeads: Uint32Array;
  private readonly mrgLens: Float64Array;

  constructor(
    readonly config: NetDeviceOptions<Q>,
    readonly backend: NetBackendShape,
    readonly interceptor: FrameInterceptorShape = noInterceptor,
  ) {
    const max = config.queueMaxSize ?? QUEUE_MAX_SIZE;
    // Without a ring in the options Q is its default, SplitQueue (the split ring).
    this.ring = ringOrSplit(config.ring);
    this.queues = [this.ring.newQueue(max), this.ring.newQueue(max)];
    this.configSpace = new NetConfigSpace(config);
    this.offeredFeatures = offeredFeatures(config) | this.ring.featureBits;
    this.maxFrame = maxFrameLength(config);
    this.rxBuf = new IoVecBufferMut({ capacity: config.rxSegments ?? 256 });
    this.tx = new TxView(this.txBuf);
    this.rx = new RxView(this.rxBuf);
    this.headViews = Array.from({ length: CLAIM_HEAD_BYTES + 1 }, (_, n) => this.head.subarray(0, n));
    this.mrgHeads = new Uint32Array(max);
    this.mrgLens = new Float64Array(max);
  }

  /**
   * NET-CFG-MTU, NET-CFG-MAC, NET-CSUM-PASSTHROUGH: a device for a valid configuration, on
   * the NetBackend service (and the FrameInterceptor service when one is provided).
   */
  static make<Q extends DeviceQueue = SplitQueue>(
    config: NetDeviceOptions<Q>,
  ): Effect.Effect<NetDevice<Q>, DeviceConfigError, NetBackend> {
    return Effect.gen(function* () {
      const checked = checkConfig(config);
      if (!checked.ok) return yield* Effect.fail(checked.error);
      const backend = yield* NetBackend;
      if (config.csum === true && !backend.carriesHeader) {
        return yield* Effect.fail({ _tag: "CsumNeedsHeaderBackend" as const, backend: backend.name });
      }
      const interceptor = yield* Effect.serviceOption(FrameInterceptor);
      return new NetDevice(
        config,
        backend,
        Option.getOrElse(interceptor, () => noInterceptor),
      );
    });
  }

  /**
   * TAP-SCOPE: the device as a Scope resource: built like `make`, reset when the scope
   * closes (after the run loop forked with `start` in the same scope has stopped).
   */
  static scoped<Q extends DeviceQueue = SplitQueue>(
    config: NetDeviceOptions<Q>,
  ): Effect.Effect<NetDevice<Q>, DeviceConfigError, NetBackend | Scope.Scope> {
    return Effect.acquireRelease(NetDevice.make(config), (dev) => Effect.sync(() => dev.reset()));
  }

  // ---- negotiation and config space

  get ackedFeatures(): bigint {
    return this.acked;
  }

  get headerLength(): 10 | 12 {
    return this.hdrLen;
  }

  /** NET-FEAT-ACK-SUBSET, NET-FEAT-DEPS, NET-FEAT-RECORD. */
  ackFeatures(acked: bigint): Result<bigint, FeatureError | FeaturesLocked | RingNotAcked> {
    // NET-FEAT-LOCKED: features are settled before the device goes live (VIRTIO 1.2
    // §3.1.1, FEATURES_OK then DRIVER_OK); a later ack would change the header length under
    // the queues and the backend (e.g. a TAP's vnet header size).
    if (this.memory !== null) return err({ _tag: "FeaturesLocked" });
    const r = checkAck(this.offeredFeatures, acked);
    if (!r.ok) return r;
    if ((acked & this.ring.featureBits) !== this.ring.featureBits)
      return err({ _tag: "RingNotAcked", ring: this.ring.name });
    this.acked = acked;
    this.hdrLen = netHeaderLength(acked);
    this.mergeable = hasFeature(acked, F.MRG_RXBUF);
    this.guestCsum = hasFeature(acked, F.GUEST_CSUM);
    return r;
  }

  readConfig(offset: number, data: Uint8Array): void {
    this.configSpace.read(offset, data);
  }

  writeConfig(offset: number, data: Uint8Array): void {
    this.configSpace.write(offset, data);
  }

  /** Initializes both queues against `memory`; `signal(q)` raises queue q's interrupt. */
  activate(memory: GuestMemory, signal: (queue: number) => void): Result<void, ActivateError> {
    const eventIdx = hasFeature(this.acked, F.RING_EVENT_IDX);
    for (let q = 0; q < 2; q++) {
      const queue = this.queues[q]!;
      if (eventIdx) queue.enableNotifSuppression();
      const r = queue.initialize(memory);
      if (!r.ok) return err({ _tag: "QueueInit", queue: q, error: r.error });
    }
    if (!this.backend.configure(this.hdrLen, this.acked)) {
      return err({ _tag: "BackendConfigure", backend: this.backend.name });
    }
    this.memory = memory;
    this.signal = signal;
    this.chainObj = this.ring.newChain(memory);
    this.txChainObj = this.ring.newChain(memory);
    // The parts read through the chains of this activation (a re-activation makes new ones).
    this.txPart = null;
    this.rxPart = null;
    this.tx.headerLength = this.hdrLen;
    this.rx.headerLength = this.hdrLen;
    return ok(undefined);
  }

  /**
   * Device reset (VIRTIO 1.2 §2.4): queues back to their initial state, guest memory and
   * the interrupt line dropped, acked features cleared; a waiting run loop is released.
   */
  reset(): void {
    for (const q of this.queues) q.reset();
    this.memory = null;
    this.chainObj = null;
    this.txChainObj = null;
    this.signal = () => {};
    this.acked = 0n;
    this.hdrLen = 12;
    this.mergeable = false;
    this.guestCsum = false;
    this.starved = false;
    this.wakeKickWaiters();
  }

  get isActive(): boolean {
    return this.memory !== null;
  }

  private notify(q: number): void {
    const queue = this.queues[q]!;
    if (queue.publishUsed().ok && queue.prepareKick()) {
      this.stats.interrupts[q]!++;
      this.signal(q);
    }
  }

  private popFailed(queue: DeviceQueue): void {
    if (queue.lastPop === PopStatus.Error || queue.lastPop === PopStatus.InvalidHead) {
      this.stats.queueErrors++;
      this.lastQueueError = queue.lastError;
    }
  }

  // ---- TX

  /** Processes every available TX chain; returns how many were completed. */
  processTxNow(): number {
    const memory = this.memory;
    const chain = this.txChainObj;
    if (memory === null || chain === null) return 0;
    const queue = this.queues[TX_QUEUE]!;
    const part = this.txPart ?? (this.txPart = new ChainPart(chain, false));
    let done = 0;
    while (queue.popOrEnableNotificationInto(chain)) {
      this.txOne(memory, chain, part);
      queue.addUsed(chain.headIndex, 0); // NET-TX-USED-LEN
      done++;
    }
    this.popFailed(queue);
    if (done > 0) this.notify(TX_QUEUE);
    return done;
  }
  private txPart: ChainPart | null = null;

  private txOne(memory: GuestMemory, chain: DeviceChain, part: ChainPart): void {
    const buf = this.txBuf;
    const loaded = buf.load(memory, part); // NET-TX-GATHER: readable descriptors only
    if (!loaded.ok || chain.end !== null) {
      this.stats.txChainErrors++;
      this.lastTxDrop = { _tag: "TxChainError", reason: loaded.ok ? chain.end!._tag : loaded.error._tag };
      return;
    }
    const hdrLen = this.hdrLen;
    const total = buf.len;
    if (total <= hdrLen) {
      this.stats.txTooShort++;
      this.lastTxDrop = { _tag: "TxFrameTooShort", readable: total, headerLength: hdrLen };
      return;
    }
    const frameLength = total - hdrLen;
    if (frameLength > this.maxFrame) {
      this.stats.txTooLong++;
      this.lastTxDrop = { _tag: "TxFrameTooLong", length: frameLength, max: this.maxFrame };
      return;
    }
    const tx = this.tx;
    tx.frameLength = frameLength;
    // NET-TX-INTERCEPT: the interceptor sees the Ethernet (+ARP) head first, uncopied.
    if (this.interceptor !== noInterceptor && this.claimed(buf, hdrLen, frameLength)) {
      const frame = new Uint8Array(frameLength);
      buf.readInto(frame, hdrLen);
      this.interceptor.take(frame);
      this.stats.txIntercepted++;
      // Its reply is RX traffic the backend will never signal: wake the run loop.
      this.wakeKickWaiters();
      return;
    }
    if (this.backend.send(tx) < 0) {
      this.stats.txBackendErrors++;
      return;
    }
    this.stats.txFrames++;
    this.stats.txBytes += frameLength;
  }

  private claimed(buf: IoVecBuffer, hdrLen: number, frameLength: number): boolean {
    const headLen = frameLength < CLAIM_HEAD_BYTES ? frameLength : CLAIM_HEAD_BYTES;
    const head = this.headViews[headLen]!;
    buf.readInto(head, hdrLen);
    return this.interceptor.claims(head, frameLength);
  }

  // ---- RX

  /**
   * Moves frames (the interceptor's first, then the backend's: NET-RX-ORDER) into the
   * guest's RX chains until either runs out; returns the chains completed.
   */
  processRxNow(): number {
    // A kick (or any caller but the run loop) may have brought buffers: wake the loop.
    this.wakeKickWaiters();
    return this.deliverRx();
  }

  private deliverRx(): number {
    const memory = this.memory;
    const chain = this.chainObj;
    if (memory === null || chain === null) return 0;
    this.stats.rxPasses++;
    this.starved = false;
    const done = this.mergeable ? this.rxMergeable(memory, chain) : this.rxSingle(memory, chain);
    if (done > 0) this.notify(RX_QUEUE);
    return done;
  }

  /**
   * True when the last RX pass stopped for want of guest buffers: the run loop then waits
   * for the next RX kick instead of the backend, which may stay readable (TAP-WAIT: no
   * spinning while the guest is slow).
   */
  private starved = false;
  private rxPart: ChainPart | null = null;
  /** Kept closed: opening it wakes every fiber waiting for a kick, and it closes again. */
  private readonly kicked = Latch.makeUnsafe(false);

  /**
   * Set when the run loop starts a wait that includes a kick (`waitForRx`), cleared by the
   * wake-up: a kick with nobody waiting then costs nothing (opening the latch allocates).
   */
  private kickAwaited = false;

  private wakeKickWaiters(): void {
    if (!this.kickAwaited) return;
    this.kickAwaited = false;
    this.kicked.openUnsafe();
    this.kicked.closeUnsafe();
  }

  private readonly waitKick: Effect.Effect<void> = this.kicked.await;

  private rxSingle(memory: GuestMemory, chain: DeviceChain): number {
    const queue = this.queues[RX_QUEUE]!;
    const part = this.rxPart ?? (this.rxPart = new ChainPart(chain, true));
    const buf = this.rxBuf;
    let done = 0;
    for (;;) {
      if (!queue.popOrEnableNotificationInto(chain)) {
        this.popFailed(queue);
        this.starved = true;
        if (queue.lastPop === PopStatus.Empty && this.hasFrames()) this.stats.rxNoBuffers++;
        break;
      }
      const loaded = buf.load(memory, part);
      if (!loaded.ok || chain.end !== null || buf.len === 0) {
        // NET-HOSTILE: a broken RX chain is given back empty; no frame is lost.
        // NET-RX-NO-ROOM: so is one with no writable byte (e.g. a read-only buffer), which
        // would otherwise take a frame and write none of it.
        buf.clear();
        queue.addUsed(chain.headIndex, 0);
        this.stats.rxChainErrors++;
        done++;
        continue;
      }
      const used = this.receiveOne(1);
      if (used < 0) {
        queue.undoPop();
        break;
      }
      queue.addUsed(chain.headIndex, used);
      done++;
    }
    return done;
  }

  /** Whether a frame is known to be waiting (interceptor) — backends are asked by receiving. */
  private hasFrames(): boolean {
    return (this.interceptor.pendingRx ?? 0) > 0 || (this.backend.pending ?? 0) > 0;
  }

  /**
   * Writes one packet into `rxBuf`: header + frame. Returns the bytes written (the used
   * length, NET-RX-USED-LEN) or -1 when no frame was waiting.
   */
  private receiveOne(numBuffers: number): number {
    const rx = this.rx;
    const hdrLen = this.hdrLen;
    const cap = rx.capacity;
    const injected = this.interceptor.nextRx();
    let used: number;
    if (injected !== undefined) {
      const frameWritten = rx.write(injected, 0, injected.length, hdrLen);
      used = (cap < hdrLen ? cap : hdrLen) + frameWritten;
      this.writeHeader(numBuffers);
      this.stats.rxInjected++;
    } else {
      const n = this.backend.receive(rx);
      if (n < 0) return -1;
      if (this.backend.carriesHeader) {
        used = n;
        // The kernel fills the 10-byte part; num_buffers is the device's (NET-RX-HDR).
        if (hdrLen === 12) this.writeNumBuffers(numBuffers);
        // NET-RX-FLAGS: a TAP may mark DATA_VALID; without GUEST_CSUM flags must be 0.
        if (!this.guestCsum && cap > 0) this.rx.write(ZERO_BYTE, 0, 1, 0);
      } else {
        used = (cap < hdrLen ? cap : hdrLen) + n;
        this.writeHeader(numBuffers);
      }
    }
    this.stats.rxFrames++;
    this.stats.rxBytes += used;
    return used;
  }

  /**
   * NET-RX-HDR: flags 0, gso NONE, num_buffers; clipped to the room. Written from the
   * scratch header through the buffer (a small copy, no view of the segment).
   */
  private writeHeader(numBuffers: number): void {
    const h = this.hdr; // bytes 0..9 stay 0; only num_buffers changes
    h[NUM_BUFFERS_OFFSET] = numBuffers & 0xff;
    h[NUM_BUFFERS_OFFSET + 1] = numBuffers >>> 8;
    this.rx.write(h, 0, this.hdrLen, 0);
  }

  private writeNumBuffers(numBuffers: number): void {
    const b = this.numBuffers;
    b[0] = numBuffers & 0xff;
    b[1] = numBuffers >>> 8;
    this.rx.write(b, 0, 2, NUM_BUFFERS_OFFSET);
  }

  /** NET-RX-MRG: one packet over as many chains as it needs. */
  private rxMergeable(memory: GuestMemory, chain: DeviceChain): number {
    const queue = this.queues[RX_QUEUE]!;
    const part = this.rxPart ?? (this.rxPart = new ChainPart(chain, true));
    const buf = this.rxBuf;
    const need = this.hdrLen + this.maxFrame;
    const heads = this.mrgHeads;
    const lens = this.mrgLens;
    let done = 0;
    for (;;) {
      buf.clear();
      let taken = 0;
      while (buf.len < need) {
        if (!queue.popOrEnableNotificationInto(chain)) {
          this.popFailed(queue);
          break;
        }
        const before = buf.len;
        const appended = buf.appendChain(memory, part);
        // NET-RX-NO-ROOM: a chain with no writable byte counts as broken here too.
        if (!appended.ok || chain.end !== null || buf.len === before) {
          // NET-HOSTILE: the broken chain, and those gathered before it (they cannot be
          // given back without it), are returned empty; no frame is lost.
          for (let k = 0; k < taken; k++) queue.addUsed(heads[k]!, 0);
          queue.addUsed(chain.headIndex, 0);
          this.stats.rxChainErrors++;
          done += taken + 1;
          taken = 0;
          buf.clear();
          continue;
        }
        heads[taken] = chain.headIndex;
        lens[taken] = buf.len - before;
        taken++;
        if (taken === heads.length) break;
      }
      if (buf.len < need) {
        // Too little room for a whole frame (the ring ran out, or every slot of it was
        // taken): give the chains back, the frame waits.
        for (let k = 0; k < taken; k++) queue.undoPop();
        this.starved = true;
        if (this.hasFrames()) this.stats.rxNoBuffers++;
        break;
      }
      const used = this.receiveOne(0);
      if (used < 0) {
        for (let k = 0; k < taken; k++) queue.undoPop();
        break;
      }
      let start = 0;
      let count = 0;
      for (let k = 0; k < taken; k++) {
        if (k > 0 && start >= used) break;
        const cap = lens[k]!;
        const n = used - start < cap ? used - start : cap;
        queue.addUsed(heads[k]!, n > 0 ? n : 0);
        start += cap;
        count++;
      }
      for (let k = count; k < taken; k++) queue.undoPop();
      this.writeNumBuffers(count);
      done += count;
    }
    buf.clear();
    return done;
  }

  /** VirtioDevice: a kick of queue `q` (RX_QUEUE or TX_QUEUE); other indexes do nothing. */
  processQueue(q: number): number {
    return q === TX_QUEUE ? this.processTxNow() : q === RX_QUEUE ? this.processRxNow() : 0;
  }

  // ---- Effect edges

  /** Per kick of the TX queue. */
  readonly processTx: Effect.Effect<number> = Effect.sync(() => this.processTxNow());
  /** Per kick of the RX queue, or when the backend has frames. */
  readonly processRx: Effect.Effect<number> = Effect.sync(() => this.processRxNow());

  /**
   * The backend-driven RX loop: wait for the backend (or, when the guest ran out of RX
   * buffers, for its next RX kick), then deliver. Never spins. Fork it in a scope.
   */
  readonly run: Effect.Effect<never> = Effect.forever(
    Effect.flatMap(
      Effect.suspend(() => this.waitForRx()),
      () => Effect.sync(() => this.deliverRx()),
    ),
  );

  /**
   * What the run loop waits for. Starved: the next RX kick. Otherwise the backend, and, with
   * an interceptor, also its replies (TX wakes the loop when it hands one a frame). Replies
   * already queued are delivered at once: a pass then either delivers one or finds the
   * guest out of buffers (starved), so this cannot spin.
   */
  private waitForRx(): Effect.Effect<void> {
    if (this.starved) {
      this.kickAwaited = true;
      return this.waitKick;
    }
    if (this.interceptor === noInterceptor) return this.backend.waitReadable;
    if (this.memory !== null && (this.interceptor.pendingRx ?? 0) > 0) return Effect.void;
    this.kickAwaited = true;
    return Effect.race(this.backend.waitReadable, this.waitKick);
  }

  /** Forks `run` into the current scope (interrupted when the scope closes). */
  readonly start: Effect.Effect<void, never, Scope.Scope> = Effect.asVoid(Effect.forkScoped(this.run));
}
