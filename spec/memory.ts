/**
 * Guest memory, the reference model (vm-memory `GuestMemoryMmap` semantics).
 *
 * Memory is a list of regions, each a guest base address and bytes. Addresses are exact
 * u64 `bigint`s. A range [addr, addr + len) is valid when one region holds all of it:
 * base <= addr < base + size and len <= base + size - addr (so a zero-length range must
 * still start inside a region, as vm-memory's `get_slice` demands). The state is
 * immutable: a write returns new memory whose touched region is a copy.
 *
 * Region ends are capped at 2^53 so the implementation can use exact `number` addresses;
 * every guest address above that is outside memory, which is a typed error, never a wrong
 * access.
 */
import { err, ok, rule, type Result } from "./result.ts";

export const U64_MAX = (1n << 64n) - 1n;
/** The end of addressable memory: regions must lie wholly below this. */
export const ADDRESS_LIMIT = 1n << 53n;

export const RULES = [
  rule(
    "MEM-REGION-NONEMPTY",
    "PROFILE (a VMM's own API, not VIRTIO): vm-memory GuestRegionMmap; vm-memory region.rs from_arc_regions also refuses an empty layout (NoMemoryRegion)",
    "A region has at least one byte.",
  ),
  rule(
    "MEM-REGION-DISJOINT",
    "PROFILE (a VMM's own API): vm-memory GuestMemoryMmap::from_regions",
    "Regions do not overlap.",
  ),
  rule(
    "MEM-REGION-LIMIT",
    "virtio-lab's own limit (exact JS numbers), not a rule for others: the reference adapter answers ResourceLimit",
    "Every region lies below 2^53, so guest addresses are exact numbers in the implementation.",
  ),
  rule(
    "MEM-RANGE-ONE-REGION",
    "vm-memory GuestMemory::get_slice (one region). PROFILE for plain reads and writes: vm-memory Bytes::read/write walk get_slices across touching regions and map a zero-length access as nothing; SAFETY: a byte outside memory is never accessed",
    "An access [addr, addr+len) lies wholly inside one region; otherwise InvalidGuestAddress (this model: get_slice).",
  ),
  rule(
    "MEM-ADDR-U64",
    "vm-memory GuestAddress::checked_add",
    "A range whose address is not a u64, or whose end overflows 2^64, is GuestAddressOverflow, never a wrapped access.",
  ),
  rule("MEM-LE", "VIRTIO 1.2 §1.4", "Multi-byte fields in guest memory are little-endian."),
  rule(
    "MEM-ZERO-COPY",
    "vm-memory VolatileSlice",
    "Regions may be external memory; slices are views over it, never copies.",
  ),
] as const;

export interface SpecRegion {
  readonly base: bigint;
  readonly bytes: Uint8Array;
}

export interface SpecMemory {
  /** Sorted by base, disjoint, non-empty. */
  readonly regions: readonly SpecRegion[];
}

export type MemoryBuildError =
  | { readonly _tag: "EmptyRegion"; readonly base: bigint }
  | { readonly _tag: "OverlappingRegions"; readonly first: bigint; readonly second: bigint }
  | { readonly _tag: "RegionOutOfRange"; readonly base: bigint; readonly size: bigint };

export type MemoryError =
  | { readonly _tag: "InvalidGuestAddress"; readonly addr: bigint; readonly len: bigint }
  | { readonly _tag: "GuestAddressOverflow"; readonly addr: bigint; readonly len: bigint };

/** MEM-REGION-NONEMPTY, MEM-REGION-DISJOINT, MEM-REGION-LIMIT. The bytes are copied. */
export const createMemory = (
  regions: readonly { readonly base: bigint; readonly bytes: Uint8Array }[],
): Result<SpecMemory, MemoryBuildError> => {
  for (const r of regions) {
    if (r.bytes.length === 0) return err({ _tag: "EmptyRegion", base: r.base });
    const size = BigInt(r.bytes.length);
    if (r.base < 0n || r.base + size > ADDRESS_LIMIT)
      return err({ _tag: "RegionOutOfRange", base: r.base, size });
  }
  const sorted = [...regions].sort((a, b) => (a.base < b.base ? -1 : a.base > b.base ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (prev.base + BigInt(prev.bytes.length) > cur.base) {
      return err({ _tag: "OverlappingRegions", first: prev.base, second: cur.base });
    }
  }
  return ok({ regions: sorted.map((r) => ({ base: r.base, bytes: Uint8Array.from(r.bytes) })) });
};

/** Where a range lies: the region's index and the offset inside it. MEM-RANGE-ONE-REGION, MEM-ADDR-U64. */
export const locate = (
  mem: SpecMemory,
  addr: bigint,
  len: bigint,
): Result<{ readonly region: number; readonly offset: number }, MemoryError> => {
  if (addr < 0n || len < 0n || addr > U64_MAX || addr + len > U64_MAX + 1n) {
    return err({ _tag: "GuestAddressOverflow", addr, len });
  }
  for (let i = 0; i < mem.regions.length; i++) {
    const r = mem.regions[i]!;
    const end = r.base + BigInt(r.bytes.length);
    if (r.base <= addr && addr < end && len <= end - addr) {
      return ok({ region: i, offset: Number(addr - r.base) });
    }
  }
  return err({ _tag: "InvalidGuestAddress", addr, len });
};

/** A copy of the bytes [addr, addr+len). */
export const readBytes = (mem: SpecMemory, addr: bigint, len: number): Result<Uint8Array, MemoryError> => {
  const at = locate(mem, addr, BigInt(len));
  if (!at.ok) return at;
  return ok(mem.regions[at.value.region]!.bytes.slice(at.value.offset, at.value.offset + len));
};

/** New memory with `data` at addr; the original is unchanged. */
export const writeBytes = (
  mem: SpecMemory,
  addr: bigint,
  data: Uint8Array,
): Result<SpecMemory, MemoryError> => {
  const at = locate(mem, addr, BigInt(data.length));
  if (!at.ok) return at;
  const regions = mem.regions.map((r, i) => {
    if (i !== at.value.region) return r;
    // A copy (slice is one memcpy; Uint8Array.from walks the bytes one by one).
    const bytes = r.bytes.slice();
    bytes.set(data, at.value.offset);
    return { base: r.base, bytes };
  });
  return ok({ regions });
};

const readLe = (mem: SpecMemory, addr: bigint, width: number): Result<bigint, MemoryError> => {
  const bytes = readBytes(mem, addr, width);
  if (!bytes.ok) return bytes;
  let v = 0n;
  for (let i = width - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes.value[i]!);
  return ok(v);
};

const writeLe = (
  mem: SpecMemory,
  addr: bigint,
  width: number,
  value: bigint,
): Result<SpecMemory, MemoryError> => {
  const bytes = new Uint8Array(width);
  let v = BigInt.asUintN(width * 8, value);
  for (let i = 0; i < width; i++) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return writeBytes(mem, addr, bytes);
};

const asNumber = (r: Result<bigint, MemoryError>): Result<number, MemoryError> =>
  r.ok ? ok(Number(r.value)) : r;

export const readU8 = (mem: SpecMemory, addr: bigint): Result<number, MemoryError> =>
  asNumber(readLe(mem, addr, 1));
export const readU16 = (mem: SpecMemory, addr: bigint): Result<number, MemoryError> =>
  asNumber(readLe(mem, addr, 2));
export const readU32 = (mem: SpecMemory, addr: bigint): Result<number, MemoryError> =>
  asNumber(readLe(mem, addr, 4));
export const readU64 = (mem: SpecMemory, addr: bigint): Result<bigint, MemoryError> => readLe(mem, addr, 8);
export const writeU8 = (mem: SpecMemory, addr: bigint, v: number): Result<SpecMemory, MemoryError> =>
  writeLe(mem, addr, 1, BigInt(v));
export const writeU16 = (mem: SpecMemory, addr: bigint, v: number): Result<SpecMemory, MemoryError> =>
  writeLe(mem, addr, 2, BigInt(v));
export const writeU32 = (mem: SpecMemory, addr: bigint, v: number): Result<SpecMemory, MemoryError> =>
  writeLe(mem, addr, 4, BigInt(v));
export const writeU64 = (mem: SpecMemory, addr: bigint, v: bigint): Result<SpecMemory, MemoryError> =>
  writeLe(mem, addr, 8, v);

/** Every region's bytes, for comparing two memories. */
export const snapshot = (mem: SpecMemory): readonly { readonly base: bigint; readonly bytes: Uint8Array }[] =>
  mem.regions.map((r) => ({ base: r.base, bytes: Uint8Array.from(r.bytes) }));
