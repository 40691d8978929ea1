/**
 * The packed virtqueue, the reference model (VIRTIO 1.2 §2.8, negotiated with
 * VIRTIO_F_RING_PACKED).
 *
 * One ring of 16-byte descriptors is both the available and the used ring: the driver marks
 * a descriptor available by setting its AVAIL bit to its ring wrap counter and USED to the
 * inverse, the device marks one used by setting both to its own counter. A chain is the
 * descriptor at the device's position and the ring slots after it while NEXT is set; it is
 * completed with one used descriptor carrying its buffer id, written at the device's used
 * position, which then skips the chain's slot count. Two 4-byte event suppression
 * structures (off_wrap, flags) say when each side wants a notification.
 *
 * Pure functions over immutable data, as spec/queue.ts: every operation takes a
 * `SpecPackedQueue` and a `SpecMemory` and returns `Step<T>` (new queue, new memory, result).
 * Addresses are exact `bigint`s. The queue's three addresses keep the split ring's register
 * names so a transport programs either ring the same way: `descTable` is the Descriptor Area
 * (the ring), `availRing` the Driver Area (driver event suppression, read by the device) and
 * `usedRing` the Device Area (device event suppression, written by the device).
 */
import { locate, readBytes, readInto, u64Of, writeU16At, writeU32At, type SpecMemory } from "./memory.ts";
import { type ChainError } from "./queue.ts";
import {
  MAX_PACKED_QUEUE_SIZE,
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  RING_EVENT_WRAP,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_USED,
} from "../wire/packed.ts";
import { err, ok, rule, type Result } from "./result.ts";

import {
  MAX_CHAIN_BYTES,
  MAX_INDIRECT_ENTRIES,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  vringNeedEvent,
} from "../wire/split.ts";

export type { ChainError } from "./queue.ts";
// The descriptor uses the split ring's NEXT, WRITE and INDIRECT bits (§2.8.13); the packed
// ring's flag bits, event suppression values and size bound are wire/packed.ts's.

export const RULES = [
  rule(
    "PVQ-DESC-LAYOUT",
    "VIRTIO 1.2 §2.8.13",
    "A packed descriptor is 16 little-endian bytes: addr u64 @0, len u32 @8, id u16 @12, flags u16 @14; ring slot i lies at the Descriptor Area + 16*i, and indirect tables hold the same 16-byte descriptors.",
  ),
  rule(
    "PVQ-EVENT-LAYOUT",
    "VIRTIO 1.2 §2.8.14",
    "An event suppression structure is 4 bytes: off_wrap u16 @0 (descriptor offset in bits 0-14, wrap counter in bit 15) and flags u16 @2 whose bits 0-1 are ENABLE 0, DISABLE 1, DESC 2 (3 reserved).",
  ),
  rule(
    "PVQ-MAX-SIZE",
    "VIRTIO 1.2 §2.8, §2.8.10.1",
    "A device's max size is an integer in 1..=32768 (a packed queue size need not be a power of two); a queue starts with size = max size, not ready, addresses 0, positions 0 and both wrap counters 1.",
  ),
  rule(
    "PVQ-INIT-READY",
    "VIRTIO 1.2 §2.8; Firecracker queue.rs is_valid (as VQ-INIT-READY)",
    "initialize on a queue the driver has not marked ready is NotReady.",
  ),
  rule(
    "PVQ-INIT-SIZE",
    "VIRTIO 1.2 §2.8, §2.8.10.1",
    "initialize with a size that is not an integer in 1..=32768 or exceeds the max size is InvalidSize.",
  ),
  rule(
    "PVQ-INIT-ALIGN",
    "VIRTIO 1.2 §2.8.10.1, §2.8.11",
    "initialize with a Descriptor Area not 16-aligned is InvalidDescRingAlign; a Driver or Device Area not 4-aligned is InvalidDriverAreaAlign / InvalidDeviceAreaAlign.",
  ),
  rule(
    "PVQ-INIT-MEMORY",
    "VIRTIO 1.2 §2.8.10.1; Firecracker queue.rs is_valid (as VQ-INIT-MEMORY)",
    "initialize with the ring (16*size bytes) or an area (4 bytes) not wholly inside one memory region is RingOutOfMemory naming it; so every later ring and area access is in bounds.",
  ),
  rule(
    "PVQ-INIT-ORDER",
    "virtio-lab (the order of VQ-INIT-ORDER)",
    "initialize checks ready, size, ring align, driver area align, device area align, ring memory, driver area memory, device area memory in this order; the first failure is the result.",
  ),
  rule(
    "PVQ-INIT-FRESH",
    "virtio-lab (a newly activated ring has nothing outstanding)",
    "A successful initialize starts with no buffer in flight and no used descriptor unpublished; the positions are kept when their slots lie in the ring (a restore) and become (0, 1) otherwise.",
  ),
  rule(
    "PVQ-INACTIVE",
    "rust-vmm vm-virtio PR 225 (as VQ-INACTIVE)",
    "Until initialize succeeds (and again after reset or a configuration change) no operation touches memory: pop, addUsed, publishUsed and the notification operations are NotReady, isEmpty is true, prepareKick is false.",
  ),
  rule(
    "PVQ-WRAP",
    "VIRTIO 1.2 §2.8.1",
    "The device keeps two positions, each a slot and a wrap counter starting at (0, 1): next_avail (where it looks for the next available descriptor) and next_used (where it writes the next used one); moving a position past the ring's last slot continues at slot 0 with the wrap counter flipped.",
  ),
  rule(
    "PVQ-AVAIL",
    "VIRTIO 1.2 §2.8.1, §2.8.15 (device MUST NOT use a descriptor before it observes AVAIL changed)",
    "The descriptor at next_avail is available exactly when its AVAIL bit equals next_avail's wrap counter and its USED bit does not; otherwise (a zeroed ring, a used descriptor, a descriptor of another lap) pop gives none and changes nothing.",
  ),
  rule(
    "PVQ-CHAIN-NEXT",
    "VIRTIO 1.2 §2.8.6; QEMU virtqueue_packed_pop",
    "A chain is the available descriptor at next_avail and the ring slots after it (slot size-1 is followed by slot 0) while the previous one has NEXT; only the first descriptor's AVAIL/USED bits are checked, as QEMU does.",
  ),
  rule(
    "PVQ-CHAIN-LIMIT",
    "VIRTIO 1.2 §2.8.17 (a list is at most Queue Size long)",
    "A chain spans at most `size` slots: when the size-th descriptor still has NEXT the chain takes `size` slots and its walk ends with ChainTtlExpired {limit: size} after yielding them.",
  ),
  rule(
    "PVQ-BUFFER-ID",
    "VIRTIO 1.2 §2.8.6 (Buffer ID is included in the last descriptor in the list)",
    "A chain's buffer id is the id field of its last ring descriptor (the indirect descriptor for an indirect chain); the ids of the other descriptors are ignored.",
  ),
  rule(
    "PVQ-POP-ID",
    "virtio-lab, after Linux virtio_ring.c (the driver's ids are < num) and VIRTIO 1.2 §2.8.22",
    "pop refuses a chain whose buffer id is >= size (InvalidBufferId {id, size}) or is already in flight (BufferIdInUse {id}); nothing changes, so a guest that fixes the descriptor is served again.",
  ),
  rule(
    "PVQ-POP-ADVANCE",
    "VIRTIO 1.2 §2.8.6, §2.8.12 (in ring order)",
    "A successful pop gives the chain and advances next_avail by its slot count (PVQ-WRAP); the buffer is in flight with its id, first slot, wrap counter and slot count; pop writes no memory.",
  ),
  rule(
    "PVQ-INDIRECT",
    "VIRTIO 1.2 §2.8.7",
    "A first descriptor with INDIRECT makes a one-slot chain (its NEXT and WRITE are ignored) whose walk is every entry of the table at its addr, in order; in table entries only WRITE counts (NEXT, INDIRECT and id are ignored).",
  ),
  rule(
    "PVQ-INDIRECT-LEN",
    "VIRTIO 1.2 §2.8.7; rust-vmm chain.rs (as CHAIN-INDIRECT-LEN)",
    "An indirect table's len is a non-zero multiple of 16 with at most 65535 entries; otherwise the walk ends with InvalidIndirectDescriptorTable {len}. An entry outside memory ends the walk with the memory error.",
  ),
  rule(
    "PVQ-INDIRECT-IN-CHAIN",
    "VIRTIO 1.2 §2.8.19 (a driver MUST NOT put INDIRECT in a list linked by NEXT)",
    "A ring descriptor with INDIRECT after the first of a chain is not yielded: the walk ends with InvalidIndirectDescriptor {index: its slot}; the chain's slot count still follows NEXT.",
  ),
  rule(
    "PVQ-LEN-U32",
    "VIRTIO 1.2 §2.8.13; rust-vmm vm-virtio PR 236 (as CHAIN-LEN-U32)",
    "The yielded lengths sum to at most 2^32 - 1; the descriptor that would pass it is not yielded and the walk ends with DescriptorChainOverflow {index, len}.",
  ),
  rule(
    "PVQ-UNDO-POP",
    "Firecracker queue.rs undo_pop, for a ring whose pops take several slots",
    "undoPop gives back the newest buffer in flight if its slots end at next_avail: next_avail returns to its first slot and wrap counter and it is no longer in flight; otherwise nothing changes.",
  ),
  rule(
    "PVQ-ADD-USED",
    "VIRTIO 1.2 §2.8.4, §2.8.6, §2.8.12",
    "addUsed(id, len) of a buffer in flight writes len @8 and id @12 of the slot at next_used (addr is left), advances next_used by the buffer's slot count and num_added by the same; the flags wait for publishUsed. An id not in flight is BufferIdNotInFlight {id}, nothing written.",
  ),
  rule(
    "PVQ-IN-ORDER",
    "VIRTIO 1.2 §2.8.8 (VIRTIO_F_IN_ORDER)",
    "With IN_ORDER, addUsed(id, len) completes id and every buffer popped before it that is still in flight, with one used descriptor {id, len} at next_used, and advances next_used by all their slots.",
  ),
  rule(
    "PVQ-USED-FLAGS",
    "VIRTIO 1.2 §2.8.1, §2.8.3",
    "A used descriptor's flags are AVAIL and USED both equal to the wrap counter of the position it was written at, WRITE when len > 0 (data was written), and no other bit.",
  ),
  rule(
    "PVQ-PUBLISH-USED",
    "VIRTIO 1.2 §2.8.9, §2.8.21.1.1 (flags last); QEMU virtqueue_packed_flush",
    "publishUsed writes the flags of every used descriptor added since the last publish, the first of them last, so the driver never sees part of a batch; addUsed first publishes the unpublished ones when with its buffer they would span more than `size` slots (so two never share a slot).",
  ),
  rule(
    "PVQ-NOTIFY-DRIVER",
    "VIRTIO 1.2 §2.8.10, §2.8.14; Linux virtqueue_kick_prepare_packed (the same test, device side)",
    "prepareKick reads the Driver Area: flags DISABLE is false; DESC with EVENT_IDX is vring_need_event(event, next_used, next_used - num_added) over u16 with event = off, or off - size when off_wrap's wrap differs from next_used's; anything else (ENABLE, DESC without EVENT_IDX, reserved 3) is true. num_added becomes 0.",
  ),
  rule(
    "PVQ-NOTIFY-DEVICE",
    "VIRTIO 1.2 §2.8.10, §2.8.21.2; Linux virtqueue_enable_cb_prepare_packed (the same structure, driver side)",
    "disableNotification writes Device Area flags = DISABLE. enableNotification writes, with EVENT_IDX, off_wrap = next_avail | wrap << 15 then flags = DESC, without it flags = ENABLE; it returns whether a chain is already available.",
  ),
  rule(
    "PVQ-TRY-ENABLE",
    "Firecracker queue.rs try_enable_notification, for the packed ring",
    "tryEnableNotification is false (writing nothing) when a chain is available; otherwise it writes what enableNotification writes and is true unless a chain has become available.",
  ),
  rule(
    "PVQ-POP-OR-ENABLE",
    "Firecracker queue.rs pop_or_enable_notification, for the packed ring",
    "popOrEnableNotification is tryEnableNotification first: true gives none, an error is that error, false pops.",
  ),
  rule(
    "PVQ-EVENT-FIELDS",
    "VIRTIO 1.2 §2.8.14",
    "driverEvent reads the Driver Area's {offWrap, flags}; deviceEvent reads back the Device Area's.",
  ),
  rule(
    "PVQ-RESET",
    "rust-vmm queue.rs reset (as VQ-RESET)",
    "reset: the state of a new queue (not ready, inactive, size = max, addresses 0, positions (0, 1), nothing in flight or unpublished, EVENT_IDX and IN_ORDER off); it writes no memory.",
  ),
  rule(
    "PVQ-DEVICE-ACCESS",
    "VIRTIO 1.2 §2.8 (the Driver Area is read-only and the Device Area write-only for the device); §2.8.15",
    "The device reads only ring slots (the one at next_avail and the slots of the chain it pops), the popped chain's indirect table entries, the Driver Area and its own Device Area; it writes only len, id and flags of ring slots and the Device Area.",
  ),
  rule(
    "PVQ-GUEST-INPUT",
    "virtio-lab (hostile guest)",
    "No packed queue operation throws on any ring, table or event contents; every failure is a typed error, and the queue keeps serving the next well-formed chain.",
  ),
  rule(
    "PVQ-DRIVER-AVAIL",
    "VIRTIO 1.2 §2.8.21.1, §2.8.16; Linux virtqueue_add_packed",
    "The driver writes a chain's descriptors (id in each), the flags of all but the first, then the first descriptor's flags last; it makes a chain available only when the ring has room for all of it and its id is free, and flips its wrap counter when it passes the ring's end.",
  ),
  rule(
    "PVQ-DRIVER-USED",
    "VIRTIO 1.2 §2.8.22, §2.8.8; Linux virtqueue_get_buf_ctx_packed",
    "The driver reads the descriptor at its used position; it is used when AVAIL and USED both equal the driver's used wrap counter; the driver then frees the buffer id (with IN_ORDER, every older buffer too) and skips their slots.",
  ),
  rule(
    "PVQ-DRIVER-KICK",
    "VIRTIO 1.2 §2.8.10, §2.8.21.2; Linux virtqueue_kick_prepare_packed",
    "The driver notifies unless the Device Area's flags are DISABLE, or are DESC (with EVENT_IDX) and the event descriptor is not among those it made available since the last notification decision.",
  ),
] as const;

/** Errors of packed queue operations (a popped chain's walk ends with `ChainError` instead). */
export type PackedQueueError =
  | { readonly _tag: "NotReady" }
  | { readonly _tag: "InvalidSize"; readonly size: number; readonly maxSize: number }
  | { readonly _tag: "InvalidDescRingAlign"; readonly addr: bigint }
  | { readonly _tag: "InvalidDriverAreaAlign"; readonly addr: bigint }
  | { readonly _tag: "InvalidDeviceAreaAlign"; readonly addr: bigint }
  | {
      readonly _tag: "RingOutOfMemory";
      readonly ring: "descRing" | "driverArea" | "deviceArea";
      readonly addr: bigint;
      readonly len: bigint;
    }
  | { readonly _tag: "InvalidBufferId"; readonly id: number; readonly size: number }
  | { readonly _tag: "BufferIdInUse"; readonly id: number }
  | { readonly _tag: "BufferIdNotInFlight"; readonly id: number };

/** A buffer the device popped and has not completed. */
export interface InFlight {
  readonly id: number;
  /** Its first ring slot and the wrap counter there. */
  readonly head: number;
  readonly wrap: boolean;
  /** How many ring slots the chain took. */
  readonly slots: number;
}

/** A used descriptor whose id and len are written and whose flags wait for publishUsed. */
export interface PendingUsed {
  readonly slot: number;
  readonly flags: number;
}

export interface SpecPackedQueue {
  readonly maxSize: number;
  readonly size: number;
  readonly ready: boolean;
  /** Descriptor Area: the ring. */
  readonly descTable: bigint;
  /** Driver Area: driver event suppression. */
  readonly availRing: bigint;
  /** Device Area: device event suppression. */
  readonly usedRing: bigint;
  readonly eventIdx: boolean;
  readonly inOrder: boolean;
  readonly active: boolean;
  readonly nextAvail: number;
  readonly availWrap: boolean;
  readonly nextUsed: number;
  readonly usedWrap: boolean;
  /** Slots completed since the last prepareKick (u16). */
  readonly numAdded: number;
  /** In pop order. */
  readonly inFlight: readonly InFlight[];
  /** In the order they were added. */
  readonly pending: readonly PendingUsed[];
}

export interface Step<T> {
  readonly queue: SpecPackedQueue;
  readonly memory: SpecMemory;
  readonly result: T;
}

/** One descriptor of a walked chain: `index` is its ring slot, or its entry in the indirect table. */
export interface SpecPackedDescriptor {
  readonly index: number;
  readonly addr: bigint;
  readonly len: number;
  readonly id: number;
  readonly flags: number;
  readonly indirect: boolean;
}

export interface SpecPackedWalk {
  readonly descriptors: readonly SpecPackedDescriptor[];
  readonly end: ChainError | null;
}

/** A popped chain: its buffer id, first slot and wrap counter, slot count and walk. */
export interface SpecPackedPopped {
  readonly id: number;
  readonly head: number;
  readonly wrap: boolean;
  readonly slots: number;
  readonly walk: SpecPackedWalk;
}

export interface PackedConfig {
  readonly size?: number;
  readonly ready?: boolean;
  readonly descTable?: bigint;
  readonly availRing?: bigint;
  readonly usedRing?: bigint;
}

export interface EventSuppression {
  readonly offWrap: number;
  readonly flags: number;
}

const NOT_READY: PackedQueueError = { _tag: "NotReady" };
const u16 = (x: number): number => x & 0xffff;

/** PVQ-MAX-SIZE. */
export const newQueue = (maxSize: number): SpecPackedQueue | undefined =>
  Number.isInteger(maxSize) && maxSize >= 1 && maxSize <= MAX_PACKED_QUEUE_SIZE
    ? {
        maxSize,
        size: maxSize,
        ready: false,
        descTable: 0n,
        availRing: 0n,
        usedRing: 0n,
        eventIdx: false,
        inOrder: false,
        active: false,
        nextAvail: 0,
        availWrap: true,
        nextUsed: 0,
        usedWrap: true,
        numAdded: 0,
        inFlight: [],
        pending: [],
      }
    : undefined;

/** The driver writes configuration; the queue is inactive until initialized again (PVQ-INACTIVE). */
export const configure = (q: SpecPackedQueue, c: PackedConfig): SpecPackedQueue => ({
  ...q,
  size: c.size ?? q.size,
  ready: c.ready ?? q.ready,
  descTable: c.descTable ?? q.descTable,
  availRing: c.availRing ?? q.availRing,
  usedRing: c.usedRing ?? q.usedRing,
  active: false,
});

/** VIRTIO_F_RING_EVENT_IDX negotiated (the DESC event mode). */
export const enableNotifSuppression = (q: SpecPackedQueue): SpecPackedQueue => ({ ...q, eventIdx: true });

/** VIRTIO_F_IN_ORDER negotiated (PVQ-IN-ORDER). */
export const enableInOrder = (q: SpecPackedQueue): SpecPackedQueue => ({ ...q, inOrder: true });

/**
 * Positions set directly (snapshot restore, tests), taking effect at the next initialize: the
 * queue is inactive until then (PVQ-INIT-FRESH checks them against the ring).
 */
export const setPositions = (
  q: SpecPackedQueue,
  p: {
    readonly nextAvail?: number;
    readonly availWrap?: boolean;
    readonly nextUsed?: number;
    readonly usedWrap?: boolean;
    readonly numAdded?: number;
  },
): SpecPackedQueue => ({
  ...q,
  nextAvail: p.nextAvail ?? q.nextAvail,
  availWrap: p.availWrap ?? q.availWrap,
  nextUsed: p.nextUsed ?? q.nextUsed,
  usedWrap: p.usedWrap ?? q.usedWrap,
  numAdded: u16(p.numAdded ?? q.numAdded),
  active: false,
});

export const descRingBytes = (size: number): bigint => 16n * BigInt(size);
export const EVENT_AREA_BYTES = 4n;

/** PVQ-INIT-* (PVQ-INIT-FRESH is initialize's). */
export const validate = (q: SpecPackedQueue, mem: SpecMemory): PackedQueueError | null => {
  if (!q.ready) return NOT_READY;
  if (!Number.isInteger(q.size) || q.size < 1 || q.size > q.maxSize || q.size > MAX_PACKED_QUEUE_SIZE) {
    return { _tag: "InvalidSize", size: q.size, maxSize: q.maxSize };
  }
  if ((q.descTable & 15n) !== 0n) return { _tag: "InvalidDescRingAlign", addr: q.descTable };
  if ((q.availRing & 3n) !== 0n) return { _tag: "InvalidDriverAreaAlign", addr: q.availRing };
  if ((q.usedRing & 3n) !== 0n) return { _tag: "InvalidDeviceAreaAlign", addr: q.usedRing };
  const parts = [
    ["descRing", q.descTable, descRingBytes(q.size)],
    ["driverArea", q.availRing, EVENT_AREA_BYTES],
    ["deviceArea", q.usedRing, EVENT_AREA_BYTES],
  ] as const;
  for (const [ring, addr, len] of parts) {
    if (!locate(mem, addr, len).ok) return { _tag: "RingOutOfMemory", ring, addr, len };
  }
  return null;
};

export const initialize = (q: SpecPackedQueue, mem: SpecMemory): Step<Result<void, PackedQueueError>> => {
  const e = validate(q, mem);
  if (e !== null) return { queue: { ...q, active: false }, memory: mem, result: err(e) };
  const inRing = (slot: number): boolean => Number.isInteger(slot) && slot >= 0 && slot < q.size;
  const availIn = inRing(q.nextAvail);
  const usedIn = inRing(q.nextUsed);
  return {
    queue: {
      ...q,
      active: true,
      nextAvail: availIn ? q.nextAvail : 0,
      availWrap: availIn ? q.availWrap : true,
      nextUsed: usedIn ? q.nextUsed : 0,
      usedWrap: usedIn ? q.usedWrap : true,
      inFlight: [],
      pending: [],
    },
    memory: mem,
    result: ok(undefined),
  };
};

/** The fields of a state that operations change. */
type Moved = Partial<
  Pick<
    SpecPackedQueue,
    "nextAvail" | "availWrap" | "nextUsed" | "usedWrap" | "numAdded" | "inFlight" | "pending"
  >
>;

/**
 * q with the fields in `c` changed. Every field is listed, so each state the operations make
 * has one shape (a spread with fields after it costs several times more in V8).
 */
const moved = (q: SpecPackedQueue, c: Moved): SpecPackedQueue => ({
  maxSize: q.maxSize,
  size: q.size,
  ready: q.ready,
  descTable: q.descTable,
  availRing: q.availRing,
  usedRing: q.usedRing,
  eventIdx: q.eventIdx,
  inOrder: q.inOrder,
  active: q.active,
  nextAvail: c.nextAvail ?? q.nextAvail,
  availWrap: c.availWrap ?? q.availWrap,
  nextUsed: c.nextUsed ?? q.nextUsed,
  usedWrap: c.usedWrap ?? q.usedWrap,
  numAdded: c.numAdded ?? q.numAdded,
  inFlight: c.inFlight ?? q.inFlight,
  pending: c.pending ?? q.pending,
});

/** PVQ-RESET. */
export const reset = (q: SpecPackedQueue): SpecPackedQueue => newQueue(q.maxSize)!;

// Ring and area accesses of an active queue are in bounds (PVQ-INIT-MEMORY); a failure here
// means the caller passed memory other than the one the queue was initialized with.
// An access is at a ring's or area's address plus the field's offset in it.
const mustRead = (mem: SpecMemory, base: bigint, at: number, len: number): Uint8Array => {
  const out = new Uint8Array(len);
  const r = readInto(mem, base, at, out);
  if (!r.ok)
    throw new Error(
      `spec/packed-queue: read outside memory at ${base + BigInt(at)}: wrong memory for this queue`,
    );
  return out;
};
/** The little-endian u16 or u32 `value` at base + at. */
const mustWriteLe = (mem: SpecMemory, base: bigint, at: number, width: 2 | 4, value: number): SpecMemory => {
  const r = width === 2 ? writeU16At(mem, base, at, value) : writeU32At(mem, base, at, value);
  if (!r.ok)
    throw new Error(
      `spec/packed-queue: write outside memory at ${base + BigInt(at)}: wrong memory for this queue`,
    );
  return r.value;
};
const le = (b: Uint8Array, at: number, width: number): number => {
  let v = 0;
  for (let i = width - 1; i >= 0; i--) v = v * 256 + b[at + i]!;
  return v;
};

/** PVQ-DESC-LAYOUT: decodes 16 descriptor bytes. */
const decode = (b: Uint8Array, index: number, indirect: boolean): SpecPackedDescriptor => {
  const addr = u64Of(le(b, 0, 4), le(b, 4, 4));
  return { index, addr, len: le(b, 8, 4), id: le(b, 12, 2), flags: le(b, 14, 2), indirect };
};

/** Ring slot `slot` (PVQ-DESC-LAYOUT). */
export const readSlot = (q: SpecPackedQueue, mem: SpecMemory, slot: number): SpecPackedDescriptor =>
  decode(mustRead(mem, q.descTable, 16 * slot, 16), slot, false);

/** PVQ-AVAIL: flags of an available descriptor for the wrap counter `wrap`. */
export const isAvailable = (flags: number, wrap: boolean): boolean =>
  ((flags & VIRTQ_DESC_F_AVAIL) !== 0) === wrap && ((flags & VIRTQ_DESC_F_USED) !== 0) !== wrap;

/** PVQ-DRIVER-USED: flags of a used descriptor for the wrap counter `wrap`. */
export const isUsed = (flags: number, wrap: boolean): boolean =>
  ((flags & VIRTQ_DESC_F_AVAIL) !== 0) === wrap && ((flags & VIRTQ_DESC_F_USED) !== 0) === wrap;

/** PVQ-USED-FLAGS. */
export const usedFlags = (wrap: boolean, len: number): number =>
  (wrap ? VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED : 0) | (len > 0 ? VIRTQ_DESC_F_WRITE : 0);

/** PVQ-WRAP: a position moved `n` slots on. */
export const advance = (
  slot: number,
  wrap: boolean,
  n: number,
  size: number,
): { readonly slot: number; readonly wrap: boolean } => {
  let s = slot + n;
  let w = wrap;
  while (s >= size) {
    s -= size;
    w = !w;
  }
  return { slot: s, wrap: w };
};

/** PVQ-AVAIL: is the descriptor at next_avail available? False when inactive. */
export const isChainAvailable = (q: SpecPackedQueue, mem: SpecMemory): boolean =>
  q.active && isAvailable(readSlot(q, mem, q.nextAvail).flags, q.availWrap);

/** PVQ-AVAIL. */
export const isEmpty = (q: SpecPackedQueue, mem: SpecMemory): boolean => !isChainAvailable(q, mem);

/** PVQ-CHAIN-NEXT, PVQ-CHAIN-LIMIT, PVQ-BUFFER-ID: the ring descriptors of the chain at `head`. */
export const ringPart = (
  q: SpecPackedQueue,
  mem: SpecMemory,
  head: number,
): readonly SpecPackedDescriptor[] => {
  const out = [readSlot(q, mem, head)];
  if ((out[0]!.flags & VIRTQ_DESC_F_INDIRECT) !== 0) return out;
  let slot = head;
  while ((out[out.length - 1]!.flags & VIRTQ_DESC_F_NEXT) !== 0 && out.length < q.size) {
    slot = slot + 1 === q.size ? 0 : slot + 1;
    out.push(readSlot(q, mem, slot));
  }
  return out;
};

/** The walk of a chain whose ring descriptors are `ring` (PVQ-INDIRECT*, PVQ-LEN-U32, PVQ-CHAIN-LIMIT). */
export const walkChain = (
  q: SpecPackedQueue,
  mem: SpecMemory,
  ring: readonly SpecPackedDescriptor[],
): SpecPackedWalk => {
  const descriptors: SpecPackedDescriptor[] = [];
  const stop = (end: ChainError | null): SpecPackedWalk => ({ descriptors, end });
  let total = 0;
  const first = ring[0]!;
  if ((first.flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
    const len = first.len;
    if (len === 0 || len % 16 !== 0 || len / 16 > MAX_INDIRECT_ENTRIES) {
      return stop({ _tag: "InvalidIndirectDescriptorTable", len });
    }
    for (let i = 0; i < len / 16; i++) {
      const b = readBytes(mem, first.addr + 16n * BigInt(i), 16);
      if (!b.ok) return stop(b.error);
      const d = decode(b.value, i, true);
      if (total + d.len > MAX_CHAIN_BYTES) {
        return stop({ _tag: "DescriptorChainOverflow", index: i, len: d.len });
      }
      total += d.len;
      descriptors.push(d);
    }
    return stop(null);
  }
  for (const [k, d] of ring.entries()) {
    if (k > 0 && (d.flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
      return stop({ _tag: "InvalidIndirectDescriptor", index: d.index });
    }
    if (total + d.len > MAX_CHAIN_BYTES)
      return stop({ _tag: "DescriptorChainOverflow", index: d.index, len: d.len });
    total += d.len;
    descriptors.push(d);
  }
  if ((ring[ring.length - 1]!.flags & VIRTQ_DESC_F_NEXT) !== 0) {
    return stop({ _tag: "ChainTtlExpired", limit: q.size });
  }
  return stop(null);
};

const same =
  (q: SpecPackedQueue, mem: SpecMemory) =>
  <T>(result: T): Step<T> => ({ queue: q, memory: mem, result });

/** PVQ-AVAIL, PVQ-CHAIN-*, PVQ-BUFFER-ID, PVQ-POP-ID, PVQ-POP-ADVANCE. */
export const pop = (
  q: SpecPackedQueue,
  mem: SpecMemory,
): Step<Result<SpecPackedPopped | null, PackedQueueError>> => {
  const stay = same(q, mem);
  if (!q.active) return stay(err(NOT_READY));
  if (!isChainAvailable(q, mem)) return stay(ok(null));
  const ring = ringPart(q, mem, q.nextAvail);
  const id = ring[ring.length - 1]!.id;
  if (id >= q.size) return stay(err({ _tag: "InvalidBufferId", id, size: q.size }));
  if (q.inFlight.some((b) => b.id === id)) return stay(err({ _tag: "BufferIdInUse", id }));
  const slots = ring.length;
  const next = advance(q.nextAvail, q.availWrap, slots, q.size);
  const entry: InFlight = { id, head: q.nextAvail, wrap: q.availWrap, slots };
  return {
    queue: moved(q, { nextAvail: next.slot, availWrap: next.wrap, inFlight: [...q.inFlight, entry] }),
    memory: mem,
    result: ok({ id, head: q.nextAvail, wrap: q.availWrap, slots, walk: walkChain(q, mem, ring) }),
  };
};

/** PVQ-UNDO-POP. */
export const undoPop = (q: SpecPackedQueue): SpecPackedQueue => {
  if (!q.active) return q; // PVQ-INACTIVE
  const last = q.inFlight[q.inFlight.length - 1];
  if (last === undefined) return q;
  const end = advance(last.head, last.wrap, last.slots, q.size);
  if (end.slot !== q.nextAvail || end.wrap !== q.availWrap) return q;
  return moved(q, { nextAvail: last.head, availWrap: last.wrap, inFlight: q.inFlight.slice(0, -1) });
};

/** PVQ-PUBLISH-USED: the flags of the pending used descriptors, the first last. */
const writePending = (q: SpecPackedQueue, mem: SpecMemory): SpecMemory => {
  let m = mem;
  const flagsAt = (slot: number): number => 16 * slot + 14;
  for (let i = 1; i < q.pending.length; i++)
    m = mustWriteLe(m, q.descTable, flagsAt(q.pending[i]!.slot), 2, q.pending[i]!.flags);
  const first = q.pending[0];
  if (first !== undefined) m = mustWriteLe(m, q.descTable, flagsAt(first.slot), 2, first.flags);
  return m;
};

/** PVQ-ADD-USED, PVQ-IN-ORDER, PVQ-USED-FLAGS, PVQ-PUBLISH-USED (a full batch). */
export const addUsed = (
  q: SpecPackedQueue,
  mem: SpecMemory,
  id: number,
  length: number,
): Step<Result<void, PackedQueueError>> => {
  const stay = same(q, mem);
  if (!q.active) return stay(err(NOT_READY));
  const k = q.inFlight.findIndex((b) => b.id === id);
  if (k < 0) return stay(err({ _tag: "BufferIdNotInFlight", id }));
  const done = q.inOrder ? q.inFlight.slice(0, k + 1) : [q.inFlight[k]!];
  const slots = done.reduce((a, b) => a + b.slots, 0);
  let m = mem;
  let pending = q.pending;
  const first = pending[0];
  if (first !== undefined) {
    // The slots from the first unpublished used descriptor to next_used (linear positions mod 2*size).
    const linear = (slot: number, wrap: boolean): number => slot + (wrap ? 0 : q.size);
    const span =
      (linear(q.nextUsed, q.usedWrap) -
        linear(first.slot, (first.flags & VIRTQ_DESC_F_AVAIL) !== 0) +
        2 * q.size) %
      (2 * q.size);
    if (span + slots > q.size) {
      m = writePending(q, m);
      pending = [];
    }
  }
  const len = length >>> 0;
  const at = 16 * q.nextUsed;
  m = mustWriteLe(m, q.descTable, at + 8, 4, len);
  m = mustWriteLe(m, q.descTable, at + 12, 2, id);
  const next = advance(q.nextUsed, q.usedWrap, slots, q.size);
  const remaining = q.inOrder ? q.inFlight.slice(k + 1) : q.inFlight.filter((_, i) => i !== k);
  return {
    queue: moved(q, {
      nextUsed: next.slot,
      usedWrap: next.wrap,
      numAdded: u16(q.numAdded + slots),
      inFlight: remaining,
      pending: [...pending, { slot: q.nextUsed, flags: usedFlags(q.usedWrap, len) }],
    }),
    memory: m,
    result: ok(undefined),
  };
};

/** PVQ-PUBLISH-USED. */
export const publishUsed = (q: SpecPackedQueue, mem: SpecMemory): Step<Result<void, PackedQueueError>> => {
  if (!q.active) return same(q, mem)(err(NOT_READY));
  return { queue: moved(q, { pending: [] }), memory: writePending(q, mem), result: ok(undefined) };
};

const readEvent = (mem: SpecMemory, area: bigint): EventSuppression => {
  const b = mustRead(mem, area, 0, 4);
  return { offWrap: le(b, 0, 2), flags: le(b, 2, 2) };
};

/** PVQ-EVENT-FIELDS: the Driver Area. */
export const driverEvent = (
  q: SpecPackedQueue,
  mem: SpecMemory,
): Result<EventSuppression, PackedQueueError> =>
  q.active ? ok(readEvent(mem, q.availRing)) : err(NOT_READY);

/** PVQ-EVENT-FIELDS: the Device Area as last written. */
export const deviceEvent = (
  q: SpecPackedQueue,
  mem: SpecMemory,
): Result<EventSuppression, PackedQueueError> => (q.active ? ok(readEvent(mem, q.usedRing)) : err(NOT_READY));

/** The event index of off_wrap seen from a position with wrap counter `wrap` (Linux's arithmetic). */
export const eventIndex = (offWrap: number, wrap: boolean, size: number): number => {
  const off = offWrap & 0x7fff;
  return ((offWrap & RING_EVENT_WRAP) !== 0) === wrap ? off : u16(off - size);
};

/** PVQ-NOTIFY-DRIVER. */
export const prepareKick = (q: SpecPackedQueue, mem: SpecMemory): Step<boolean> => {
  if (!q.active) return same(q, mem)(false);
  const e = readEvent(mem, q.availRing);
  const mode = e.flags & 3;
  const next = moved(q, { numAdded: 0 });
  if (mode === RING_EVENT_FLAGS_DISABLE) return { queue: next, memory: mem, result: false };
  if (mode !== RING_EVENT_FLAGS_DESC || !q.eventIdx) return { queue: next, memory: mem, result: true };
  const event = eventIndex(e.offWrap, q.usedWrap, q.size);
  return {
    queue: next,
    memory: mem,
    result: vringNeedEvent(event, q.nextUsed, u16(q.nextUsed - q.numAdded)),
  };
};

/** What enableNotification writes to the Device Area (PVQ-NOTIFY-DEVICE). */
const writeEnable = (q: SpecPackedQueue, mem: SpecMemory): SpecMemory =>
  q.eventIdx
    ? mustWriteLe(
        mustWriteLe(mem, q.usedRing, 0, 2, q.nextAvail | (q.availWrap ? RING_EVENT_WRAP : 0)),
        q.usedRing,
        2,
        2,
        RING_EVENT_FLAGS_DESC,
      )
    : mustWriteLe(mem, q.usedRing, 2, 2, RING_EVENT_FLAGS_ENABLE);

/** PVQ-NOTIFY-DEVICE. */
export const disableNotification = (
  q: SpecPackedQueue,
  mem: SpecMemory,
): Step<Result<void, PackedQueueError>> =>
  q.active
    ? {
        queue: q,
        memory: mustWriteLe(mem, q.usedRing, 2, 2, RING_EVENT_FLAGS_DISABLE),
        result: ok(undefined),
      }
    : same(q, mem)(err(NOT_READY));

/** PVQ-NOTIFY-DEVICE. */
export const enableNotification = (
  q: SpecPackedQueue,
  mem: SpecMemory,
): Step<Result<boolean, PackedQueueError>> => {
  if (!q.active) return same(q, mem)(err(NOT_READY));
  const m = writeEnable(q, mem);
  return { queue: q, memory: m, result: ok(isChainAvailable(q, m)) };
};

/** PVQ-TRY-ENABLE. */
export const tryEnableNotification = (
  q: SpecPackedQueue,
  mem: SpecMemory,
): Step<Result<boolean, PackedQueueError>> => {
  if (!q.active) return same(q, mem)(err(NOT_READY));
  if (isChainAvailable(q, mem)) return same(q, mem)(ok(false));
  const m = writeEnable(q, mem);
  return { queue: q, memory: m, result: ok(!isChainAvailable(q, m)) };
};

/** PVQ-POP-OR-ENABLE. */
export const popOrEnableNotification = (
  q: SpecPackedQueue,
  mem: SpecMemory,
): Step<Result<SpecPackedPopped | null, PackedQueueError>> => {
  const t = tryEnableNotification(q, mem);
  if (!t.result.ok) return { queue: t.queue, memory: t.memory, result: t.result };
  if (t.result.value) return { queue: t.queue, memory: t.memory, result: ok(null) };
  return pop(t.queue, t.memory);
};
