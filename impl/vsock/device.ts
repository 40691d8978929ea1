/**
 * The virtio-vsock device (VIRTIO 1.2 §5.10): rx (0), tx (1) and event (2) split queues,
 * config space with guest_cid, feature STREAM, TRANSPORT_RESET on the event queue, and a
 * muxer of connections behind it. Driven step by step: a guest driver model kicks a queue
 * and the owner calls `processTx` / `processRx` / `processEvent`, then `takeInterrupts()`
 * says which queues need an interrupt (EVENT_IDX honoured through SplitQueue.prepareKick).
 * See impl/vsock/README.md.
 */
import type { GuestMemory } from "../memory/guest-memory.ts";
import { ringOrSplit, type DeviceChain, type DeviceQueue, type RingKind } from "../queue/device-queue.ts";
import type { QueueError, SplitQueue } from "../queue/split-queue.ts";
import type { PackedQueueError } from "../../spec/packed-queue.ts";
import { err, ok, type Result } from "../../spec/result.ts";
import {
  PROFILES,
  U64_MAX,
  VIRTIO_F_VERSION_1,
  VIRTIO_VSOCK_F_STREAM,
  type VsockPacketError,
  type VsockProfileName,
} from "../../spec/vsock.ts";
import { VsockMuxer, type HostPort, type MuxerOptions } from "./muxer.ts";
import { VsockPacket } from "./packet.ts";
import { VIRTIO_VSOCK_EVENT_TRANSPORT_RESET } from "../../wire/vsock.ts";

export const RX_QUEUE = 0;
export const TX_QUEUE = 1;
export const EVENT_QUEUE = 2;
export const VIRTIO_F_EVENT_IDX = 29;

/** VSOCK-CFG-CID: CIDs a guest may not have. */
export const isReservedCid = (cid: bigint): boolean =>
  cid === 0n ||
  cid === 1n ||
  cid === 2n ||
  cid === 0xffffffffn ||
  cid === U64_MAX ||
  cid < 0n ||
  cid > U64_MAX;

/** VSOCK-FEATURES: what the device offers (VERSION_1, STREAM, EVENT_IDX). */
export const VSOCK_DEVICE_FEATURES: bigint =
  (1n << BigInt(VIRTIO_F_VERSION_1)) |
  (1n << BigInt(VIRTIO_VSOCK_F_STREAM)) |
  (1n << BigInt(VIRTIO_F_EVENT_IDX));

export type VsockDeviceError = { readonly _tag: "InvalidGuestCid"; readonly cid: bigint };

export interface VsockDeviceConfig<Q extends DeviceQueue = SplitQueue> {
  /** The ring layout of the queues (default split; PACKED_RING adds VIRTIO_F_RING_PACKED to the offer). */
  readonly ring?: RingKind<Q>;
  readonly guestCid: bigint;
  /**
   * Whose packet-layout behaviour to follow (VSOCK-PROFILE). Default "virtio": VIRTIO §2.6.4
   * forbids assuming a descriptor layout, and Linux 6.2+ guests send header and data in one
   * descriptor, which the cloud-hypervisor profile refuses.
   */
  readonly profile?: VsockProfileName;
  /** Queue max size (power of two); default 256. */
  readonly queueMaxSize?: number;
  readonly muxer?: Partial<MuxerOptions>;
}

export interface ProcessReport {
  /** Chains taken from the queue. */
  chains: number;
  /** Chains refused by packet assembly (given back with used len 0). */
  errors: number;
}

export class VsockDevice<Q extends DeviceQueue = SplitQueue> {
  readonly queues: readonly [Q, Q, Q];
  readonly muxer: VsockMuxer;
  /** VSOCK-FEATURES: VERSION_1, STREAM and EVENT_IDX. */
  readonly deviceFeatures: bigint;
  driverFeatures = 0n;
  /** Assembly errors by tag (reports, simulator). */
  readonly assemblyErrors: Record<string, number> = {};
  lastAssemblyError: VsockPacketError | null = null;
  /** RX buffers returned unused because they had no room for the data waiting. */
  unusableRxBuffers = 0;
  private interrupts = 0;
  private pendingResetEvent = false;
  private readonly chain: DeviceChain;
  private readonly pkt = new VsockPacket();
  private readonly profileName: VsockProfileName;

  private constructor(
    readonly memory: GuestMemory,
    readonly guestCid: bigint,
    config: VsockDeviceConfig<Q>,
    host: HostPort | null,
  ) {
    const size = config.queueMaxSize ?? 256;
    // Without a ring in the config Q is its default, SplitQueue (the split ring).
    const ring = ringOrSplit(config.ring);
    this.queues = [ring.newQueue(size), ring.newQueue(size), ring.newQueue(size)];
    this.deviceFeatures = VSOCK_DEVICE_FEATURES | ring.featureBits;
    this.muxer = new VsockMuxer(guestCid, host, config.muxer);
    this.chain = ring.newChain(memory);
    this.profileName = config.profile ?? "virtio";
  }

  /** VSOCK-CFG-CID: a reserved guest_cid is refused. */
  static create<Q extends DeviceQueue = SplitQueue>(
    memory: GuestMemory,
    config: VsockDeviceConfig<Q>,
    host: HostPort | null = null,
  ): Result<VsockDevice<Q>, VsockDeviceError> {
    if (isReservedCid(config.guestCid)) return err({ _tag: "InvalidGuestCid", cid: config.guestCid });
    return ok(new VsockDevice(memory, config.guestCid, config, host));
  }

  /** The 8-byte config space: guest_cid, little-endian (VSOCK-CFG-CID). */
  configSpace(): Uint8Array {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, this.guestCid, true);
    return out;
  }

  /** A driver read of config space; bytes past the end read as 0 (as the transports do). */
  readConfig(offset: number, len: number): Uint8Array {
    const cfg = this.configSpace();
    const out = new Uint8Array(Math.max(0, len));
    for (let i = 0; i < out.length; i++) out[i] = cfg[offset + i] ?? 0;
    return out;
  }

  /** The driver's accepted features, masked by what the device offers. */
  ackFeatures(features: bigint): void {
    this.driverFeatures = features & this.deviceFeatures;
  }

  /**
   * Initializes the queues (after the driver configured them); the first error, if any.
   * `queueCount` 2 leaves the event queue to the transport (vhost-user: the VMM keeps it).
   */
  activate(
    queueCount: 2 | 3 = 3,
  ): Result<void, { readonly queue: number; readonly error: QueueError | PackedQueueError }> {
    const eventIdx = (this.driverFeatures & (1n << BigInt(VIRTIO_F_EVENT_IDX))) !== 0n;
    for (let i = 0; i < queueCount; i++) {
      const q = this.queues[i]!;
      if (eventIdx) q.enableNotifSuppression();
      const r = q.initialize(this.memory);
      if (!r.ok) return err({ queue: i, error: r.error });
    }
    return ok(undefined);
  }

  private noteError(e: VsockPacketError): void {
    this.lastAssemblyError = e;
    this.assemblyErrors[e._tag] = (this.assemblyErrors[e._tag] ?? 0) + 1;
  }

  // Queues are drained with popOrEnableNotificationInto: with EVENT_IDX, an empty queue
  // writes avail_event = next_avail so the driver kicks for its next chain (VQ-POP-OR-ENABLE);
  // a plain pop would leave avail_event stale and a Linux driver would stop kicking.
  private finish(queue: number, added: number): void {
    if (added === 0) return;
    const q = this.queues[queue]!;
    q.publishUsed();
    if (q.prepareKick()) this.interrupts |= 1 << queue;
  }

  /** The driver kicked tx: every TX chain becomes a packet for the muxer, or an error; all are used with len 0. */
  processTx(now: number): ProcessReport {
    this.muxer.now = now;
    const q = this.queues[TX_QUEUE]!;
    const chain = this.chain;
    const pkt = this.pkt;
    const profile = PROFILES[this.profileName];
    const report: ProcessReport = { chains: 0, errors: 0 };
    while (q.popOrEnableNotificationInto(chain)) {
      report.chains++;
      const e = pkt.assembleTx(chain, profile);
      if (e === null) this.muxer.fromGuest(pkt);
      else {
        report.errors++;
        this.noteError(e);
      }
      q.addUsed(chain.headIndex, 0);
    }
    this.finish(TX_QUEUE, report.chains);
    return report;
  }

  /** Fills RX buffers with whatever the connections have for the guest. */
  processRx(now: number): ProcessReport {
    this.muxer.now = now;
    const q = this.queues[RX_QUEUE]!;
    const chain = this.chain;
    const pkt = this.pkt;
    const profile = PROFILES[this.profileName];
    const report: ProcessReport = { chains: 0, errors: 0 };
    let added = 0;
    while (this.muxer.hasPendingRx() && q.popOrEnableNotificationInto(chain)) {
      const e = pkt.assembleRx(chain, profile);
      if (e !== null) {
        report.chains++;
        report.errors++;
        this.noteError(e);
        q.addUsed(chain.headIndex, 0);
        added++;
        continue;
      }
      const n = this.muxer.toGuest(pkt);
      if (n === 0) {
        if (pkt.bufSize === 0) {
          // A buffer with no room for data would stall data behind it for ever: give it back
          // unused so the next well-formed chain is served (VSOCK-HOSTILE).
          report.chains++;
          this.unusableRxBuffers++;
          q.addUsed(chain.headIndex, 0);
          added++;
          continue;
        }
        q.undoPop();
        break;
      }
      report.chains++;
      q.addUsed(chain.headIndex, n);
      added++;
    }
    this.finish(RX_QUEUE, added);
    return report;
  }

  /** Timeouts on the clock (VSOCK-CONN-TIMEOUT). */
  tick(now: number): void {
    this.muxer.tick(now);
  }

  /**
   * VSOCK-EVENT-RESET: drop every connection and tell the driver with
   * VIRTIO_VSOCK_EVENT_TRANSPORT_RESET in an event buffer (now, or at the next event kick).
   */
  transportReset(): boolean {
    this.muxer.resetAll();
    this.pendingResetEvent = true;
    return this.processEvent();
  }

  /** The driver kicked the event queue: deliver a pending event; true when one was written. */
  processEvent(): boolean {
    if (!this.pendingResetEvent) return false;
    const q = this.queues[EVENT_QUEUE]!;
    const chain = this.chain;
    while (q.popOrEnableNotificationInto(chain)) {
      // The event is one le32 id in a device-writable buffer of at least 4 bytes.
      let written = false;
      if (chain.rewind() && chain.isWriteOnly() && chain.len >= 4) {
        written = this.memory.writeU32(chain.addr, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
      }
      q.addUsed(chain.headIndex, written ? 4 : 0);
      if (written) {
        this.pendingResetEvent = false;
        this.finish(EVENT_QUEUE, 1);
        return true;
      }
      this.finish(EVENT_QUEUE, 1);
    }
    return false;
  }

  /** Which queues need an interrupt since the last call (bit i = queue i); clears them. */
  takeInterrupts(): number {
    const i = this.interrupts;
    this.interrupts = 0;
    return i;
  }

  /** Something for the guest is waiting (the owner should make sure RX gets processed). */
  hasPendingRx(): boolean {
    return this.muxer.hasPendingRx();
  }
}
