/**
 * The split virtqueue and its descriptor chains, the reference model
 * (VIRTIO 1.2 §2.7, Firecracker `queue.rs`, rust-vmm `virtio-queue`).
 *
 * Pure functions over immutable data: every operation takes a `SpecQueue` and a
 * `SpecMemory` and returns the new queue, the new memory (when it writes) and its result.
 * Addresses are exact `bigint`s. Where Firecracker and rust-vmm differ, the rule's source
 * says which one this model follows (impl/queue/README.md lists every such choice).
 */
import {
  locate,
  readInto,
  readU16At,
  u64Of,
  writeU16At,
  writeU64At,
  type MemoryError,
  type SpecMemory,
} from "./memory.ts";
import { err, ok, rule, type Result } from "./result.ts";

import {
  MAX_CHAIN_BYTES,
  MAX_INDIRECT_ENTRIES,
  MAX_QUEUE_SIZE,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_USED_F_NO_NOTIFY,
  vringNeedEvent,
} from "../wire/split.ts";

// The model reads descriptors and ring fields byte by byte itself (CHAIN-DESC-LAYOUT,
// VQ-LAYOUT: `readDescriptor` and the *Addr helpers below); the names and limits come from
// the wire vocabulary.

const CHAIN_RULES = [
  // Descriptors and chains.
  rule(
    "CHAIN-DESC-LAYOUT",
    "VIRTIO 1.2 §2.7.5",
    "A descriptor is 16 little-endian bytes: addr u64 @0, len u32 @8, flags u16 @12, next u16 @14; entry i of a table lies at table + 16*i.",
  ),
  rule(
    "CHAIN-CHECKED-NEW",
    "PROFILE (a VMM's choice): Firecracker queue.rs DescriptorChain::checked_new refuses; rust-vmm virtio-queue never refuses a head (queue.rs AvailIter::next builds DescriptorChain::new for any head_index; chain.rs DescriptorChain::next yields nothing when next_index >= queue_size)",
    "This model follows Firecracker: a head is refused (none) exactly when index >= size, its 16-byte entry is not inside one memory region, or it has NEXT without INDIRECT and next >= size. A head >= size or a NEXT out of range is a driver's fault (VIRTIO 1.2 §2.7.5.2), so either answer is right.",
  ),
  rule(
    "CHAIN-TTL",
    "Firecracker queue.rs ttl / rust-vmm chain.rs ttl",
    "A walk yields at most `size` descriptors of one table (ttl starts at the table's size and loses one per NEXT hop), so a looping chain ends, with ChainTtlExpired when a NEXT is left unfollowed.",
  ),
  rule(
    "CHAIN-NEXT-RANGE",
    "PROFILE: rust-vmm virtio-queue chain.rs DescriptorChain::next (`next_index >= queue_size` ends the walk after the descriptor); Firecracker drops the descriptor",
    "A descriptor whose NEXT points at an index >= the table's size is yielded and the walk then ends with InvalidDescriptorIndex.",
  ),
  rule(
    "CHAIN-MEMORY",
    "rust-vmm chain.rs (read_obj failure ends the walk)",
    "A descriptor entry not wholly inside one memory region ends the walk with the memory error (InvalidGuestAddress or GuestAddressOverflow).",
  ),
  rule(
    "CHAIN-INDIRECT",
    "VIRTIO 1.2 §2.7.5.3; rust-vmm chain.rs switch_to_indirect_table",
    "A descriptor with INDIRECT is not yielded: the walk continues at entry 0 of the table it points to, with ttl = the table's entry count; its NEXT and WRITE flags are ignored and the outer chain is not resumed.",
  ),
  rule(
    "CHAIN-INDIRECT-LEN",
    "SAFETY: the table len is a driver MUST (VIRTIO 1.2 §2.7.5.3.1), so the device's answer is open; this model follows rust-vmm chain.rs switch_to_indirect_table",
    "An indirect table's len is a non-zero multiple of 16 with at most 65535 entries; otherwise the walk ends with InvalidIndirectDescriptorTable.",
  ),
  rule(
    "CHAIN-INDIRECT-NESTED",
    "SAFETY: no INDIRECT inside an indirect table is a driver MUST (VIRTIO 1.2 §2.7.5.3.1), so the device's answer is open (a hang is the failure); this model follows rust-vmm chain.rs",
    "A descriptor with INDIRECT inside an indirect table ends the walk with InvalidIndirectDescriptor.",
  ),
  rule(
    "CHAIN-INDIRECT-UNALIGNED",
    "rust-vmm vm-virtio PR 220",
    "An indirect table's address needs no alignment.",
  ),
  rule(
    "CHAIN-LEN-U32",
    "VIRTIO 1.2 §2.7.5.2; rust-vmm vm-virtio PR 236",
    "The lengths of the yielded descriptors sum to at most 2^32 - 1; the descriptor that would pass it is not yielded and the walk ends with DescriptorChainOverflow.",
  ),
  rule(
    "CHAIN-RW-SPLIT",
    "VIRTIO 1.2 §2.7.5; rust-vmm chain.rs readable()/writable()",
    "A yielded descriptor is device-writable iff it has WRITE; the readable and writable byte totals are the sums over each kind.",
  ),
  rule(
    "CHAIN-ADDR-U64",
    "VIRTIO 1.2 §2.7.5",
    "A descriptor's addr is an exact u64; addresses above 2^53 are outside memory, never rounded into it.",
  ),
] as const;

/** One descriptor of a walked chain. `index` is its index in the table it was read from. */
export interface SpecDescriptor {
  readonly index: number;
  readonly addr: bigint;
  readonly len: number;
  readonly flags: number;
  readonly next: number;
  /** True when it was read from an indirect table (CHAIN-INDIRECT). */
  readonly indirect: boolean;
}

/** Why a walk stopped before a descriptor without NEXT. */
export type ChainError =
  | { readonly _tag: "InvalidDescriptorIndex"; readonly index: number; readonly size: number }
  | { readonly _tag: "ChainTtlExpired"; readonly limit: number }
  | { readonly _tag: "InvalidIndirectDescriptor"; readonly index: number }
  | { readonly _tag: "InvalidIndirectDescriptorTable"; readonly len: number }
  | { readonly _tag: "DescriptorChainOverflow"; readonly index: number; readonly len: number }
  | MemoryError;

export interface SpecWalk {
  readonly descriptors: readonly SpecDescriptor[];
  readonly end: ChainError | null;
}

/** Where readDescriptor reads an entry's 16 bytes; taken apart before it returns. */
const entry = new Uint8Array(16);

/** Reads the raw entry `index` of the table at `table` (CHAIN-DESC-LAYOUT). */
export const readDescriptor = (
  mem: SpecMemory,
  table: bigint,
  index: number,
  indirect: boolean,
):
  | { readonly ok: true; readonly value: SpecDescriptor }
  | { readonly ok: false; readonly error: MemoryError } => {
  // Entry i is at table + 16 * i. For a non-negative safe index the offset 16 * i is exact (a
  // power of two times it) and goes to memory beside the table's address, no bigint sum; any
  // other index takes the bigint product (16 * 2^1020 is Infinity).
  const read =
    index >= 0 && Number.isSafeInteger(index) && Number.isSafeInteger(16 * index)
      ? readInto(mem, table, 16 * index, entry)
      : readInto(mem, table + 16n * BigInt(index), 0, entry);
  if (!read.ok) return read;
  const b = entry;
  const addr = u64Of(
    (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0,
    (b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24)) >>> 0,
  );
  const len = (b[8]! | (b[9]! << 8) | (b[10]! << 16) | (b[11]! << 24)) >>> 0;
  const flags = b[12]! | (b[13]! << 8);
  const next = b[14]! | (b[15]! << 8);
  return { ok: true, value: { index, addr, len, flags, next, indirect } };
};

/** CHAIN-CHECKED-NEW: the head entry, or undefined when the head is refused. */
export const checkedNew = (
  mem: SpecMemory,
  descTable: bigint,
  queueSize: number,
  index: number,
): SpecDescriptor | undefined => {
  if (!Number.isInteger(index) || index < 0 || index >= queueSize) return undefined;
  const d = readDescriptor(mem, descTable, index, false);
  if (!d.ok) return undefined;
  const f = d.value.flags;
  if ((f & VIRTQ_DESC_F_INDIRECT) === 0 && (f & VIRTQ_DESC_F_NEXT) !== 0 && d.value.next >= queueSize) {
    return undefined;
  }
  return d.value;
};

/**
 * Walks the chain whose head is entry `head` of the table at `descTable`
 * (CHAIN-TTL, CHAIN-NEXT-RANGE, CHAIN-MEMORY, CHAIN-INDIRECT*, CHAIN-LEN-U32).
 * It does not apply CHAIN-CHECKED-NEW: call `checkedNew` first for a popped head, and pass
 * what it read as `first` (that entry of this memory), so the walk does not read it again.
 */
export const walkChain = (
  mem: SpecMemory,
  descTable: bigint,
  queueSize: number,
  head: number,
  first?: SpecDescriptor,
): SpecWalk => {
  const descriptors: SpecDescriptor[] = [];
  let table = descTable;
  let size = queueSize;
  let next = head;
  let ttl = queueSize;
  let indirect = false;
  let total = 0;
  for (;;) {
    if (!Number.isInteger(next) || next < 0 || next >= size) {
      return { descriptors, end: { _tag: "InvalidDescriptorIndex", index: next, size } };
    }
    let d: SpecDescriptor;
    if (first !== undefined) {
      d = first;
      first = undefined;
    } else {
      const read = readDescriptor(mem, table, next, indirect);
      if (!read.ok) return { descriptors, end: read.error };
      d = read.value;
    }
    if ((d.flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
      if (indirect) return { descriptors, end: { _tag: "InvalidIndirectDescriptor", index: d.index } };
      if (d.len === 0 || d.len % 16 !== 0 || d.len / 16 > MAX_INDIRECT_ENTRIES) {
        return { descriptors, end: { _tag: "InvalidIndirectDescriptorTable", len: d.len } };
      }
      table = d.addr;
      size = d.len / 16;
      next = 0;
      ttl = size;
      indirect = true;
      continue;
    }
    if (total + d.len > MAX_CHAIN_BYTES) {
      return { descriptors, end: { _tag: "DescriptorChainOverflow", index: d.index, len: d.len } };
    }
    total += d.len;
    descriptors.push(d);
    if ((d.flags & VIRTQ_DESC_F_NEXT) === 0) return { descriptors, end: null };
    ttl -= 1;
    if (ttl === 0) return { descriptors, end: { _tag: "ChainTtlExpired", limit: size } };
    next = d.next;
  }
};

export interface SpecChainSplit {
  readonly readable: readonly SpecDescriptor[];
  readonly writable: readonly SpecDescriptor[];
  readonly readableBytes: number;
  readonly writableBytes: number;
}

/** CHAIN-RW-SPLIT. */
export const splitChain = (walk: SpecWalk): SpecChainSplit => {
  const readable = walk.descriptors.filter((d) => (d.flags & VIRTQ_DESC_F_WRITE) === 0);
  const writable = walk.descriptors.filter((d) => (d.flags & VIRTQ_DESC_F_WRITE) !== 0);
  const sum = (ds: readonly SpecDescriptor[]): number => ds.reduce((a, d) => a + d.len, 0);
  return { readable, writable, readableBytes: sum(readable), writableBytes: sum(writable) };
};

// ---------------------------------------------------------------------------------------
// The split queue.

const VQ_RULES = [
  rule(
    "VQ-LAYOUT",
    "VIRTIO 1.2 §2.7.6, §2.7.8",
    "Avail ring: flags @0, idx @2, ring[u16] @4, used_event @4+2*size (6+2*size bytes). Used ring: flags @0, idx @2, ring[{id u32, len u32}] @4, avail_event @4+8*size (6+8*size bytes). Little-endian.",
  ),
  rule(
    "VQ-MAX-SIZE",
    "rust-vmm queue.rs Queue::new (InvalidMaxSize)",
    "A device's max size is a power of two in 1..=32768; a queue starts with size = max size, not ready, addresses 0.",
  ),
  rule(
    "VQ-INIT-READY",
    "Firecracker queue.rs is_valid; rust-vmm QueueNotReady",
    "initialize on a queue the driver has not marked ready is NotReady.",
  ),
  rule(
    "VQ-INIT-SIZE",
    "Firecracker queue.rs is_valid; VIRTIO 1.2 §2.7",
    "initialize with size 0, not a power of two, above max size or above 32768 is InvalidSize.",
  ),
  rule(
    "VQ-INIT-ALIGN",
    "VIRTIO 1.2 §2.7 (table 16, avail 2, used 4); Firecracker queue.rs is_valid",
    "initialize with a misaligned ring is InvalidDescTableAlign (16), InvalidAvailRingAlign (2) or InvalidUsedRingAlign (4).",
  ),
  rule(
    "VQ-INIT-MEMORY",
    "Firecracker queue.rs is_valid / initialize (get_slice of each ring)",
    "initialize with a ring not wholly inside one memory region is RingOutOfMemory naming the ring; so every later ring access is in bounds.",
  ),
  rule(
    "VQ-INIT-ORDER",
    "Firecracker queue.rs is_valid",
    "initialize checks in this order: ready, size, table align, avail align, used align, table memory, avail memory, used memory; the first failure is the result.",
  ),
  rule(
    "VQ-INACTIVE",
    "rust-vmm vm-virtio PR 225, PR 173",
    "Until initialize succeeds (and again after reset or a configuration change) no operation touches memory: pop, addUsed, publishUsed, tryEnableNotification and the event accessors are NotReady, len is 0, prepareKick is false; so size 0 is never divided by.",
  ),
  rule(
    "VQ-SIZE-ZERO",
    "rust-vmm vm-virtio PR 173",
    "A queue of size 0 never becomes active, so no ring index is ever taken modulo 0.",
  ),
  rule(
    "VQ-LEN",
    "Firecracker queue.rs len / is_empty",
    "len = (avail.idx - next_avail) mod 2^16; isEmpty iff len == 0.",
  ),
  rule(
    "VQ-POP-AVAIL-IDX",
    "Firecracker queue.rs pop (panics); rust-vmm InvalidAvailRingIndex (PR 196)",
    "pop with len > size is InvalidAvailIdx {len, size} and changes nothing.",
  ),
  rule("VQ-POP-EMPTY", "Firecracker queue.rs pop", "pop with len == 0 gives none and changes nothing."),
  rule(
    "VQ-POP-HEAD",
    "PROFILE: Firecracker queue.rs do_pop_unchecked (refuses, no advance); rust-vmm virtio-queue queue.rs AvailIter::next (advances, pops the head as a chain whatever it is)",
    "pop reads the head at avail.ring[next_avail % size]; this model (Firecracker) gives none for a head refused by CHAIN-CHECKED-NEW and does not advance next_avail.",
  ),
  rule(
    "VQ-POP-ADVANCE",
    "Firecracker queue.rs do_pop_unchecked",
    "A successful pop gives the chain and advances next_avail by exactly 1 (mod 2^16); it writes no memory.",
  ),
  rule("VQ-UNDO-POP", "Firecracker queue.rs undo_pop", "undoPop moves next_avail back by 1 (mod 2^16)."),
  rule(
    "VQ-ADD-USED-INDEX",
    "PROFILE (both agree): Firecracker queue.rs add_used (DescIndexOutOfBounds); rust-vmm virtio-queue queue.rs add_used (InvalidDescriptorIndex). The id is the device's own input, not the guest's",
    "addUsed with index >= size is DescIndexOutOfBounds {index}: no memory written, no state changed.",
  ),
  rule(
    "VQ-ADD-USED",
    "VIRTIO 1.2 §2.7.8 (used ring layout; the device MUST set len before updating used idx, §2.7.8.1); Firecracker queue.rs add_used",
    "addUsed writes {id: index, len} to used.ring[next_used % size] and advances next_used and num_added by 1 (mod 2^16). Whether it also writes used.idx is VQ-PUBLISH-USED.",
  ),
  rule(
    "VQ-PUBLISH-USED",
    "MUST after publish: used.idx = next_used (VIRTIO 1.2 §2.7.8). PROFILE before it: Firecracker queue.rs advance_used_ring_idx publishes as its own step; rust-vmm virtio-queue queue.rs add_used stores next_used into used.idx itself (its publish is a no-op)",
    "publishUsed writes used.idx = next_used, as its own step after the used entries (this model: Firecracker).",
  ),
  rule(
    "VQ-EVENT-IDX",
    "Firecracker queue.rs enable_notif_suppression; VIRTIO 1.2 §2.7.10",
    "enableNotifSuppression turns on EVENT_IDX notification suppression (VIRTIO_F_EVENT_IDX negotiated).",
  ),
  rule(
    "VQ-PREPARE-KICK",
    "Firecracker queue.rs prepare_kick; Linux vring_need_event; VIRTIO 1.2 §2.7.10",
    "With EVENT_IDX, prepareKick = (u16)(next_used - used_event - 1) < (u16)(num_added), i.e. used_event in [next_used - num_added, next_used - 1], and resets num_added; without it, true.",
  ),
  rule(
    "VQ-NO-INTERRUPT",
    "PROFILE: VIRTIO 1.2 §2.7.7.2 (with flags 1 the device SHOULD NOT notify; with flags 0 it MUST, which is VQ-PREPARE-KICK). Firecracker prepare_kick and rust-vmm queue.rs needs_notification ('VRING_AVAIL_F_NO_INTERRUPT flag isn't supported yet') notify; QEMU virtio_should_notify does not",
    "Without EVENT_IDX, prepareKick(true) honours the driver's avail.flags NO_INTERRUPT bit (false when set); prepareKick() ignores it as Firecracker does (a SHOULD NOT).",
  ),
  rule(
    "VQ-TRY-ENABLE-NOTIFICATION",
    "Firecracker queue.rs try_enable_notification",
    "Without EVENT_IDX: true (clearing VRING_USED_F_NO_NOTIFY if set). With it: len > size is InvalidAvailIdx; len != 0 is false; len == 0 writes avail_event = next_avail and is next_avail == avail.idx.",
  ),
  rule(
    "VQ-POP-OR-ENABLE",
    "Firecracker queue.rs pop_or_enable_notification",
    "Without EVENT_IDX it is pop; with it, tryEnableNotification first: true gives none, an error is that error, false pops.",
  ),
  rule(
    "VQ-NO-NOTIFY",
    "rust-vmm queue.rs set_notification (VRING_USED_F_NO_NOTIFY); VIRTIO 1.2 §2.7.10",
    "disableNotification: without EVENT_IDX writes used.flags = NO_NOTIFY, with it writes nothing. enableNotification: without EVENT_IDX writes used.flags = 0, with it writes avail_event = next_avail; it returns avail.idx != next_avail (chains already waiting).",
  ),
  rule(
    "VQ-EVENT-FIELDS",
    "Firecracker queue.rs used_event / set_used_ring_avail_event",
    "usedEvent reads avail.used_event; setAvailEvent writes used.avail_event, and availEvent reads back what was written.",
  ),
  rule(
    "VQ-RESET",
    "rust-vmm queue.rs reset; vm-virtio PR 225",
    "reset: not ready, inactive, size = max size, addresses 0, next_avail = next_used = num_added = 0, EVENT_IDX off; it writes no memory, and no later operation reads the old rings until initialize succeeds again.",
  ),
  rule(
    "VQ-DEVICE-ACCESS",
    "VIRTIO 1.2 §2.7 (device-writable used ring); Kani's implicit bounds checks",
    "The device writes only the used ring; pop reads only avail.idx, the avail slot, and the popped chain's descriptor entries (including its indirect table).",
  ),
  rule(
    "VQ-GUEST-INPUT",
    "virtio-lab (hostile guest); Kani's implicit no-panic checks",
    "No queue operation throws on any ring or descriptor contents; every failure is a typed error, and the queue keeps serving the next well-formed chain.",
  ),
] as const;

export const RULES = [...CHAIN_RULES, ...VQ_RULES] as const;

/** Errors of queue operations (chains end with `ChainError` instead). */
export type QueueError =
  | { readonly _tag: "NotReady" }
  | { readonly _tag: "InvalidSize"; readonly size: number; readonly maxSize: number }
  | { readonly _tag: "InvalidDescTableAlign"; readonly addr: bigint }
  | { readonly _tag: "InvalidAvailRingAlign"; readonly addr: bigint }
  | { readonly _tag: "InvalidUsedRingAlign"; readonly addr: bigint }
  | {
      readonly _tag: "RingOutOfMemory";
      readonly ring: "descTable" | "availRing" | "usedRing";
      readonly addr: bigint;
      readonly len: bigint;
    }
  | { readonly _tag: "InvalidAvailIdx"; readonly len: number; readonly size: number }
  | { readonly _tag: "DescIndexOutOfBounds"; readonly index: number };

/**
 * The queue's state. The configuration (`size`, `ready`, addresses) is what the driver
 * wrote through the transport; `active` says initialize accepted it.
 */
export interface SpecQueue {
  readonly maxSize: number;
  readonly size: number;
  readonly ready: boolean;
  readonly descTable: bigint;
  readonly availRing: bigint;
  readonly usedRing: bigint;
  readonly eventIdx: boolean;
  readonly active: boolean;
  readonly nextAvail: number;
  readonly nextUsed: number;
  readonly numAdded: number;
}

/** What every queue operation returns: the new state, the new memory and its result. */
export interface Step<T> {
  readonly queue: SpecQueue;
  readonly memory: SpecMemory;
  readonly result: T;
}

/** A popped chain: its head and the walk of its descriptors at the time of the pop. */
export interface SpecPopped {
  readonly head: number;
  readonly walk: SpecWalk;
}

const NOT_READY: QueueError = { _tag: "NotReady" };
const u16 = (x: number): number => x & 0xffff;
const isPow2 = (x: number): boolean => x > 0 && (x & (x - 1)) === 0;

/** VQ-MAX-SIZE: undefined when `maxSize` is not a power of two in 1..=32768. */
export const newQueue = (maxSize: number): SpecQueue | undefined =>
  Number.isInteger(maxSize) && isPow2(maxSize) && maxSize <= MAX_QUEUE_SIZE
    ? {
        maxSize,
        size: maxSize,
        ready: false,
        descTable: 0n,
        availRing: 0n,
        usedRing: 0n,
        eventIdx: false,
        active: false,
        nextAvail: 0,
        nextUsed: 0,
        numAdded: 0,
      }
    : undefined;

export interface QueueConfig {
  readonly size?: number;
  readonly ready?: boolean;
  readonly descTable?: bigint;
  readonly availRing?: bigint;
  readonly usedRing?: bigint;
}

/** The driver writes configuration; the queue is inactive until initialized again (VQ-INACTIVE). */
export const configure = (q: SpecQueue, c: QueueConfig): SpecQueue => ({
  ...q,
  // Field by field, so an explicitly undefined field keeps its value (as the impl does).
  size: c.size ?? q.size,
  ready: c.ready ?? q.ready,
  descTable: c.descTable ?? q.descTable,
  availRing: c.availRing ?? q.availRing,
  usedRing: c.usedRing ?? q.usedRing,
  active: false,
});

/**
 * q with these ring positions. Every field is listed, so each state the operations make has
 * one shape (a spread with the positions after it costs several times more in V8).
 */
const withPositions = (q: SpecQueue, nextAvail: number, nextUsed: number, numAdded: number): SpecQueue => ({
  maxSize: q.maxSize,
  size: q.size,
  ready: q.ready,
  descTable: q.descTable,
  availRing: q.availRing,
  usedRing: q.usedRing,
  eventIdx: q.eventIdx,
  active: q.active,
  nextAvail,
  nextUsed,
  numAdded,
});

/** Firecracker's restore path: the positions a device sets directly (tests and snapshots). */
export const setPositions = (
  q: SpecQueue,
  p: { readonly nextAvail?: number; readonly nextUsed?: number; readonly numAdded?: number },
): SpecQueue =>
  withPositions(
    q,
    u16(p.nextAvail ?? q.nextAvail),
    u16(p.nextUsed ?? q.nextUsed),
    u16(p.numAdded ?? q.numAdded),
  );

/** VQ-EVENT-IDX. */
export const enableNotifSuppression = (q: SpecQueue): SpecQueue => ({ ...q, eventIdx: true });

export const descTableBytes = (size: number): bigint => 16n * BigInt(size);
export const availRingBytes = (size: number): bigint => 6n + 2n * BigInt(size);
export const usedRingBytes = (size: number): bigint => 6n + 8n * BigInt(size);

/** VQ-INIT-READY, VQ-INIT-SIZE, VQ-INIT-ALIGN, VQ-INIT-MEMORY, VQ-INIT-ORDER. */
export const validate = (q: SpecQueue, mem: SpecMemory): QueueError | null => {
  if (!q.ready) return NOT_READY;
  if (!Number.isInteger(q.size) || !isPow2(q.size) || q.size > q.maxSize || q.size > MAX_QUEUE_SIZE) {
    return { _tag: "InvalidSize", size: q.size, maxSize: q.maxSize };
  }
  if ((q.descTable & 15n) !== 0n) return { _tag: "InvalidDescTableAlign", addr: q.descTable };
  if ((q.availRing & 1n) !== 0n) return { _tag: "InvalidAvailRingAlign", addr: q.availRing };
  if ((q.usedRing & 3n) !== 0n) return { _tag: "InvalidUsedRingAlign", addr: q.usedRing };
  const rings = [
    ["descTable", q.descTable, descTableBytes(q.size)],
    ["availRing", q.availRing, availRingBytes(q.size)],
    ["usedRing", q.usedRing, usedRingBytes(q.size)],
  ] as const;
  for (const [ring, addr, len] of rings) {
    if (!locate(mem, addr, len).ok) return { _tag: "RingOutOfMemory", ring, addr, len };
  }
  return null;
};

export const initialize = (q: SpecQueue, mem: SpecMemory): Step<Result<void, QueueError>> => {
  const e = validate(q, mem);
  if (e !== null) return { queue: { ...q, active: false }, memory: mem, result: err(e) };
  return { queue: { ...q, active: true }, memory: mem, result: ok(undefined) };
};

/** VQ-RESET. */
export const reset = (q: SpecQueue): SpecQueue => newQueue(q.maxSize)!;

// Ring accesses of an active queue are in bounds (VQ-INIT-MEMORY); a failure here means the
// caller passed memory other than the one the queue was initialized with. A ring field is
// read and written as its ring's address and the field's offset in it (below).
const mustRead16 = (mem: SpecMemory, ring: bigint, at: number): number => {
  const r = readU16At(mem, ring, at);
  if (!r.ok)
    throw new Error(
      `spec/queue: ring read outside memory at ${ring + BigInt(at)}: wrong memory for this queue`,
    );
  return r.value;
};
const mustWrite = (r: Result<SpecMemory, MemoryError>): SpecMemory => {
  if (!r.ok) throw new Error(`spec/queue: ring write outside memory: wrong memory for this queue`);
  return r.value;
};

// VQ-LAYOUT as the model reads it: each field's offset in its ring, and its address
// (properties/wire.test.ts ties the addresses to wire/split.ts).
const FLAGS_AT = 0;
const IDX_AT = 2;
const availSlotAt = (q: SpecQueue, slot: number): number => 4 + 2 * (slot % q.size);
const usedEventAt = (q: SpecQueue): number => 4 + 2 * q.size;
const usedSlotAt = (q: SpecQueue, slot: number): number => 4 + 8 * (slot % q.size);
const availEventAt = (q: SpecQueue): number => 4 + 8 * q.size;
export const availIdxAddr = (q: SpecQueue): bigint => q.availRing + BigInt(IDX_AT);
export const availSlotAddr = (q: SpecQueue, slot: number): bigint =>
  q.availRing + BigInt(availSlotAt(q, slot));
export const usedEventAddr = (q: SpecQueue): bigint => q.availRing + BigInt(usedEventAt(q));
export const usedIdxAddr = (q: SpecQueue): bigint => q.usedRing + BigInt(IDX_AT);
export const usedSlotAddr = (q: SpecQueue, slot: number): bigint => q.usedRing + BigInt(usedSlotAt(q, slot));
export const availEventAddr = (q: SpecQueue): bigint => q.usedRing + BigInt(availEventAt(q));

/** avail.idx as the driver wrote it; 0 for an inactive queue (VQ-INACTIVE). */
export const availIdx = (q: SpecQueue, mem: SpecMemory): number =>
  q.active ? mustRead16(mem, q.availRing, IDX_AT) : 0;

/** avail.ring[slot] for slot < size; -1 when inactive or slot out of range. */
export const readAvailRing = (q: SpecQueue, mem: SpecMemory, slot: number): number =>
  q.active && slot >>> 0 === slot && slot < q.size ? mustRead16(mem, q.availRing, availSlotAt(q, slot)) : -1;

/** VQ-LEN. */
export const len = (q: SpecQueue, mem: SpecMemory): number =>
  q.active ? u16(availIdx(q, mem) - q.nextAvail) : 0;

export const isEmpty = (q: SpecQueue, mem: SpecMemory): boolean => len(q, mem) === 0;

/** VQ-POP-AVAIL-IDX, VQ-POP-EMPTY, VQ-POP-HEAD, VQ-POP-ADVANCE. */
export const pop = (q: SpecQueue, mem: SpecMemory): Step<Result<SpecPopped | null, QueueError>> => {
  if (!q.active) return { queue: q, memory: mem, result: err(NOT_READY) };
  const n = len(q, mem);
  if (n > q.size)
    return { queue: q, memory: mem, result: err({ _tag: "InvalidAvailIdx", len: n, size: q.size }) };
  if (n === 0) return { queue: q, memory: mem, result: ok(null) };
  const head = mustRead16(mem, q.availRing, availSlotAt(q, q.nextAvail));
  const first = checkedNew(mem, q.descTable, q.size, head);
  if (first === undefined) return { queue: q, memory: mem, result: ok(null) };
  return {
    queue: withPositions(q, u16(q.nextAvail + 1), q.nextUsed, q.numAdded),
    memory: mem,
    result: ok({ head, walk: walkChain(mem, q.descTable, q.size, head, first) }),
  };
};

/** VQ-UNDO-POP. */
export const undoPop = (q: SpecQueue): SpecQueue =>
  withPositions(q, u16(q.nextAvail - 1), q.nextUsed, q.numAdded);

/** VQ-ADD-USED-INDEX, VQ-ADD-USED. */
export const addUsed = (
  q: SpecQueue,
  mem: SpecMemory,
  index: number,
  length: number,
): Step<Result<void, QueueError>> => {
  if (!q.active) return { queue: q, memory: mem, result: err(NOT_READY) };
  if (index >>> 0 !== index || index >= q.size) {
    return { queue: q, memory: mem, result: err({ _tag: "DescIndexOutOfBounds", index }) };
  }
  // The element {id u32, len u32}, little-endian: one u64 with the id in its low half.
  const m = mustWrite(writeU64At(mem, q.usedRing, usedSlotAt(q, q.nextUsed), index, length >>> 0));
  return {
    queue: withPositions(q, q.nextAvail, u16(q.nextUsed + 1), u16(q.numAdded + 1)),
    memory: m,
    result: ok(undefined),
  };
};

/** VQ-PUBLISH-USED. */
export const publishUsed = (q: SpecQueue, mem: SpecMemory): Step<Result<void, QueueError>> => {
  if (!q.active) return { queue: q, memory: mem, result: err(NOT_READY) };
  return {
    queue: q,
    memory: mustWrite(writeU16At(mem, q.usedRing, IDX_AT, q.nextUsed)),
    result: ok(undefined),
  };
};

/** VQ-EVENT-FIELDS: avail.used_event. */
export const usedEvent = (q: SpecQueue, mem: SpecMemory): Result<number, QueueError> =>
  q.active ? ok(mustRead16(mem, q.availRing, usedEventAt(q))) : err(NOT_READY);

/** VQ-EVENT-FIELDS: used.avail_event as last written. */
export const availEvent = (q: SpecQueue, mem: SpecMemory): Result<number, QueueError> =>
  q.active ? ok(mustRead16(mem, q.usedRing, availEventAt(q))) : err(NOT_READY);

/** VQ-EVENT-FIELDS: writes used.avail_event. */
export const setAvailEvent = (q: SpecQueue, mem: SpecMemory, v: number): Step<Result<void, QueueError>> =>
  q.active
    ? {
        queue: q,
        memory: mustWrite(writeU16At(mem, q.usedRing, availEventAt(q), u16(v))),
        result: ok(undefined),
      }
    : { queue: q, memory: mem, result: err(NOT_READY) };

/** VQ-PREPARE-KICK, VQ-NO-INTERRUPT. */
export const prepareKick = (q: SpecQueue, mem: SpecMemory, honourNoInterrupt = false): Step<boolean> => {
  if (!q.active) return { queue: q, memory: mem, result: false };
  if (!q.eventIdx) {
    const flags = honourNoInterrupt ? mustRead16(mem, q.availRing, FLAGS_AT) : 0;
    return { queue: q, memory: mem, result: (flags & VRING_AVAIL_F_NO_INTERRUPT) === 0 };
  }
  const event = mustRead16(mem, q.availRing, usedEventAt(q));
  const result = vringNeedEvent(event, q.nextUsed, u16(q.nextUsed - q.numAdded));
  return { queue: withPositions(q, q.nextAvail, q.nextUsed, 0), memory: mem, result };
};

/** VQ-TRY-ENABLE-NOTIFICATION. */
export const tryEnableNotification = (q: SpecQueue, mem: SpecMemory): Step<Result<boolean, QueueError>> => {
  if (!q.active) return { queue: q, memory: mem, result: err(NOT_READY) };
  if (!q.eventIdx) {
    const flags = mustRead16(mem, q.usedRing, FLAGS_AT);
    const m =
      (flags & VRING_USED_F_NO_NOTIFY) !== 0 ? mustWrite(writeU16At(mem, q.usedRing, FLAGS_AT, 0)) : mem;
    return { queue: q, memory: m, result: ok(true) };
  }
  const n = len(q, mem);
  if (n !== 0) {
    if (n > q.size)
      return { queue: q, memory: mem, result: err({ _tag: "InvalidAvailIdx", len: n, size: q.size }) };
    return { queue: q, memory: mem, result: ok(false) };
  }
  const m = mustWrite(writeU16At(mem, q.usedRing, availEventAt(q), q.nextAvail));
  return { queue: q, memory: m, result: ok(q.nextAvail === availIdx(q, m)) };
};

/** VQ-POP-OR-ENABLE. */
export const popOrEnableNotification = (
  q: SpecQueue,
  mem: SpecMemory,
): Step<Result<SpecPopped | null, QueueError>> => {
  if (!q.active) return { queue: q, memory: mem, result: err(NOT_READY) };
  if (!q.eventIdx) return pop(q, mem);
  const t = tryEnableNotification(q, mem);
  if (!t.result.ok) return { queue: t.queue, memory: t.memory, result: t.result };
  if (t.result.value) return { queue: t.queue, memory: t.memory, result: ok(null) };
  return pop(t.queue, t.memory);
};

/** VQ-NO-NOTIFY: the device asks the driver not to kick. */
export const disableNotification = (q: SpecQueue, mem: SpecMemory): Step<Result<void, QueueError>> => {
  if (!q.active) return { queue: q, memory: mem, result: err(NOT_READY) };
  if (q.eventIdx) return { queue: q, memory: mem, result: ok(undefined) };
  return {
    queue: q,
    memory: mustWrite(writeU16At(mem, q.usedRing, FLAGS_AT, VRING_USED_F_NO_NOTIFY)),
    result: ok(undefined),
  };
};

/** VQ-NO-NOTIFY: the device asks for kicks again; the result is whether chains are already waiting (rust-vmm). */
export const enableNotification = (q: SpecQueue, mem: SpecMemory): Step<Result<boolean, QueueError>> => {
  if (!q.active) return { queue: q, memory: mem, result: err(NOT_READY) };
  const m = q.eventIdx
    ? mustWrite(writeU16At(mem, q.usedRing, availEventAt(q), q.nextAvail))
    : mustWrite(writeU16At(mem, q.usedRing, FLAGS_AT, 0));
  return { queue: q, memory: m, result: ok(availIdx(q, m) !== q.nextAvail) };
};
