/**
 * The split virtqueue and its descriptor chains, the reference model
 * (VIRTIO 1.2 §2.7, Firecracker `queue.rs`, rust-vmm `virtio-queue`).
 *
 * Pure functions over immutable data: every operation takes a `SpecQueue` and a
 * `SpecMemory` and returns the new queue, the new memory (when it writes) and its result.
 * Addresses are exact `bigint`s. Where Firecracker and rust-vmm differ, the rule's source
 * says which one this model follows (impl/queue/README.md lists every such choice).
 */
import { readBytes, type MemoryError, type SpecMemory } from "./memory.ts";
import { rule } from "./result.ts";

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
/** avail.flags bit: the driver asks for no used-buffer notifications (no EVENT_IDX). */
export const VRING_AVAIL_F_NO_INTERRUPT = 1;
/** used.flags bit: the device asks for no available-buffer notifications (no EVENT_IDX). */
export const VRING_USED_F_NO_NOTIFY = 1;
/** The largest queue size VIRTIO allows for a split ring. */
export const MAX_QUEUE_SIZE = 32768;
/** The most entries an indirect table may have (rust-vmm: the table size must fit a u16). */
export const MAX_INDIRECT_ENTRIES = 0xffff;
/** The most bytes a chain may describe in total (rust-vmm: the sum must fit a u32). */
export const MAX_CHAIN_BYTES = 0xffff_ffff;

export const RULES = [
  // Descriptors and chains.
  rule(
    "CHAIN-DESC-LAYOUT",
    "VIRTIO 1.2 §2.7.5",
    "A descriptor is 16 little-endian bytes: addr u64 @0, len u32 @8, flags u16 @12, next u16 @14; entry i of a table lies at table + 16*i.",
  ),
  rule(
    "CHAIN-CHECKED-NEW",
    "Firecracker queue.rs DescriptorChain::checked_new (+ rust-vmm: NEXT beside INDIRECT ignored)",
    "A head is refused (none) exactly when index >= size, its 16-byte entry is not inside one memory region, or it has NEXT without INDIRECT and next >= size.",
  ),
  rule(
    "CHAIN-TTL",
    "Firecracker queue.rs ttl / rust-vmm chain.rs ttl",
    "A walk yields at most `size` descriptors of one table (ttl starts at the table's size and loses one per NEXT hop), so a looping chain ends, with ChainTtlExpired when a NEXT is left unfollowed.",
  ),
  rule(
    "CHAIN-NEXT-RANGE",
    "rust-vmm chain.rs DescriptorChain::next",
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
    "VIRTIO 1.2 §2.7.5.3.1; rust-vmm chain.rs switch_to_indirect_table",
    "An indirect table's len is a non-zero multiple of 16 with at most 65535 entries; otherwise the walk ends with InvalidIndirectDescriptorTable.",
  ),
  rule(
    "CHAIN-INDIRECT-NESTED",
    "VIRTIO 1.2 §2.7.5.3.1; rust-vmm chain.rs",
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

/** Reads the raw entry `index` of the table at `table` (CHAIN-DESC-LAYOUT). */
export const readDescriptor = (
  mem: SpecMemory,
  table: bigint,
  index: number,
  indirect: boolean,
):
  | { readonly ok: true; readonly value: SpecDescriptor }
  | { readonly ok: false; readonly error: MemoryError } => {
  const bytes = readBytes(mem, table + 16n * BigInt(index), 16);
  if (!bytes.ok) return bytes;
  const b = bytes.value;
  let addr = 0n;
  for (let i = 7; i >= 0; i--) addr = (addr << 8n) | BigInt(b[i]!);
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
  if (index >= queueSize) return undefined;
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
 * It does not apply CHAIN-CHECKED-NEW: call `checkedNew` first for a popped head.
 */
export const walkChain = (mem: SpecMemory, descTable: bigint, queueSize: number, head: number): SpecWalk => {
  const descriptors: SpecDescriptor[] = [];
  let table = descTable;
  let size = queueSize;
  let next = head;
  let ttl = queueSize;
  let indirect = false;
  let total = 0;
  const stop = (end: ChainError | null): SpecWalk => ({ descriptors, end });
  for (;;) {
    if (next >= size) return stop({ _tag: "InvalidDescriptorIndex", index: next, size });
    const read = readDescriptor(mem, table, next, indirect);
    if (!read.ok) return stop(read.error);
    const d = read.value;
    if ((d.flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
      if (indirect) return stop({ _tag: "InvalidIndirectDescriptor", index: d.index });
      if (d.len === 0 || d.len % 16 !== 0 || d.len / 16 > MAX_INDIRECT_ENTRIES) {
        return stop({ _tag: "InvalidIndirectDescriptorTable", len: d.len });
      }
      table = d.addr;
      size = d.len / 16;
      next = 0;
      ttl = size;
      indirect = true;
      continue;
    }
    if (total + d.len > MAX_CHAIN_BYTES) {
      return stop({ _tag: "DescriptorChainOverflow", index: d.index, len: d.len });
    }
    total += d.len;
    descriptors.push(d);
    if ((d.flags & VIRTQ_DESC_F_NEXT) === 0) return stop(null);
    ttl -= 1;
    if (ttl === 0) return stop({ _tag: "ChainTtlExpired", limit: size });
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
