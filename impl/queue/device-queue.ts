/**
 * The device side of a virtqueue, whichever ring the driver negotiated: what net and vsock
 * (and the transports that program them) use of `SplitQueue` (VIRTIO 1.2 §2.7) and
 * `PackedQueue` (§2.8, VIRTIO_F_RING_PACKED). Both classes satisfy `DeviceQueue`
 * structurally, and both chain classes `DeviceChain`, so a device written against these runs
 * unchanged on either ring.
 *
 * A chain is bound to its ring: pop into a chain from the same `RingKind` as the queue
 * (`ring.newChain`), never a split chain into a packed queue. The two rings' chains differ in
 * what they hold (a packed chain keeps a copy of its ring descriptors, PVQ-CHAIN-NEXT), so
 * `popInto` takes the concrete class; the parameter types below are the common surface a
 * device reads through.
 *
 * `headIndex` is what `addUsed` takes back: the head descriptor's index on the split ring,
 * the buffer id on the packed ring (PVQ-BUFFER-ID).
 */
import type { Result } from "../../spec/result.ts";
import type { PackedQueueError } from "../../spec/packed-queue.ts";
import type { ChainError, QueueError } from "../../spec/queue.ts";
import type { GuestMemory } from "../memory/guest-memory.ts";
import { DescriptorChain } from "./descriptor-chain.ts";
import { PackedDescriptorChain } from "./packed-chain.ts";
import { PackedQueue } from "./packed-queue.ts";
import { SplitQueue, type PopStatus } from "./split-queue.ts";

/** VIRTIO 1.2 §6: the driver uses the packed ring layout (§2.8). */
export const VIRTIO_F_RING_PACKED = 34;
export const RING_PACKED_BIT = 1n << BigInt(VIRTIO_F_RING_PACKED);

/** What a device reads a popped chain through (DescriptorChain and PackedDescriptorChain). */
export interface DeviceChain {
  readonly memory: GuestMemory;
  /** The id `DeviceQueue.addUsed` takes for this chain. */
  readonly headIndex: number;
  /** Current descriptor: guest address (exact below 2^53), length, flags. */
  readonly addr: number;
  readonly len: number;
  readonly flags: number;
  /** Why the walk stopped early (null when it did not). */
  readonly end: ChainError | null;
  addrBig(): bigint;
  isWriteOnly(): boolean;
  hasNext(): boolean;
  rewind(): boolean;
  advance(): boolean;
  /** Over the device-readable, then the device-writable descriptors only. */
  rewindReadable(): boolean;
  advanceReadable(): boolean;
  rewindWritable(): boolean;
  advanceWritable(): boolean;
}

/** The ring addresses a transport writes (split names; on the packed ring: ring, Driver Area, Device Area). */
export interface QueueAddresses {
  readonly size?: number;
  readonly ready?: boolean;
  readonly descTable?: number | bigint;
  readonly availRing?: number | bigint;
  readonly usedRing?: number | bigint;
}

/** The device side of one virtqueue, on either ring. */
export interface DeviceQueue {
  readonly maxSize: number;
  readonly isActive: boolean;
  readonly eventIdx: boolean;
  /** Where the device looks next / writes next (on the packed ring a slot, its wrap counter apart). */
  readonly nextAvail: number;
  readonly nextUsed: number;
  /** Why the last pop gave no chain, and its error. */
  readonly lastPop: PopStatus;
  readonly lastError: QueueError | PackedQueueError | null;
  configure(c: QueueAddresses): void;
  /** Positions a transport restores before `initialize` (vhost-user SET_VRING_BASE). */
  setPositions(p: {
    readonly nextAvail?: number;
    readonly nextUsed?: number;
    readonly numAdded?: number;
  }): void;
  /** VIRTIO_F_EVENT_IDX negotiated. */
  enableNotifSuppression(): void;
  initialize(memory: GuestMemory): Result<void, QueueError | PackedQueueError>;
  reset(): void;
  /** Pops into `chain` (from this ring's `newChain`); false: `lastPop` says why. */
  popInto(chain: DeviceChain): boolean;
  popOrEnableNotificationInto(chain: DeviceChain): boolean;
  undoPop(): void;
  addUsed(id: number, len: number): Result<void, { readonly _tag: string }>;
  publishUsed(): Result<void, { readonly _tag: string }>;
  /** Must the device notify the driver of what it used since the last call? */
  prepareKick(): boolean;
  enableNotification(): Result<boolean, { readonly _tag: string }>;
  disableNotification(): Result<void, { readonly _tag: string }>;
  tryEnableNotification(): Result<boolean, { readonly _tag: string }>;
}

/** A ring layout: how to make its queues and the chains they pop into. */
export interface RingKind<Q extends DeviceQueue = DeviceQueue> {
  readonly name: "split" | "packed";
  /** Feature bits the ring needs the driver to acknowledge (VIRTIO_F_RING_PACKED for packed). */
  readonly featureBits: bigint;
  newQueue(maxSize: number): Q;
  newChain(memory: GuestMemory): DeviceChain;
  /** Gives `to` the configuration and positions of `from` (a transport's staging queue to a live one). */
  carry(from: Q, to: Q): void;
}

// The classes are checked against the interfaces here, once.
const splitQueue = (maxSize: number): SplitQueue & DeviceQueue => new SplitQueue(maxSize);
const packedQueue = (maxSize: number): PackedQueue & DeviceQueue => new PackedQueue(maxSize);
const splitChain = (memory: GuestMemory): DeviceChain => new DescriptorChain(memory);
const packedChain = (memory: GuestMemory): DeviceChain => new PackedDescriptorChain(memory);

export const SPLIT_RING: RingKind<SplitQueue> = Object.freeze({
  name: "split",
  featureBits: 0n,
  newQueue: splitQueue,
  newChain: splitChain,
  carry: (from: SplitQueue, to: SplitQueue): void => {
    const s = from.state();
    to.configure({
      size: s.size,
      ready: s.ready,
      descTable: s.descTable,
      availRing: s.availRing,
      usedRing: s.usedRing,
    });
    to.setPositions({ nextAvail: s.nextAvail, nextUsed: s.nextUsed, numAdded: s.numAdded });
  },
});

export const PACKED_RING: RingKind<PackedQueue> = Object.freeze({
  name: "packed",
  featureBits: RING_PACKED_BIT,
  newQueue: packedQueue,
  newChain: packedChain,
  carry: (from: PackedQueue, to: PackedQueue): void => {
    const s = from.state();
    to.configure({
      size: s.size,
      ready: s.ready,
      descTable: s.descTable,
      availRing: s.availRing,
      usedRing: s.usedRing,
    });
    to.setPositions({
      nextAvail: s.nextAvail,
      availWrap: s.availWrap,
      nextUsed: s.nextUsed,
      usedWrap: s.usedWrap,
      numAdded: s.numAdded,
    });
  },
});

/** The ring a name on a command line or in options stands for. */
export const ringNamed = (name: "split" | "packed"): RingKind =>
  name === "packed" ? PACKED_RING : SPLIT_RING;

/**
 * The ring a device was configured with, or the split ring when none was given. The one cast
 * lives here: a device generic in its queue type `Q` defaults `Q` to the split queue.
 */
export const ringOrSplit = <Q extends DeviceQueue>(ring: RingKind<Q> | undefined): RingKind<Q> =>
  ring ?? (SPLIT_RING as RingKind<DeviceQueue> as RingKind<Q>);
