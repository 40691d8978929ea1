/**
 * Guest memory, the reference model (vm-memory `GuestMemoryMmap` semantics).
 *
 * Memory is a list of regions, each a guest base address and bytes. Addresses are exact
 * u64 `bigint`s. A range [addr, addr + len) is valid when one region holds all of it:
 * base <= addr < base + size and len <= base + size - addr (so a zero-length range must
 * still start inside a region, as vm-memory's `get_slice` demands). The state is
 * immutable: a write returns new memory whose touched region is new. That region is
 * persistent (it shares bytes with the one before it): it records the write (where, and
 * the bytes) over the region it came from, so a write costs the bytes it writes, not the
 * region's size. Byte k of such a region is the newest recorded write's byte at k, else
 * the byte of the region below. Every MAX_DEPTH writes the record is folded into one
 * fresh copy, so reads stay short.
 *
 * Region ends are capped at 2^53 so the implementation can use exact `number` addresses;
 * every guest address above that is outside memory, which is a typed error, never a wrong
 * access.
 */
import { err, ok, rule, type Err, type Result } from "./result.ts";

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
    "MEM-IMMUTABLE",
    "virtio-lab's reference model (pure functions over immutable state), not a rule for others",
    "A write returns new memory; the memory it was given, and every memory before it, read the same after the write as before.",
  ),
  rule(
    "MEM-ZERO-COPY",
    "vm-memory VolatileSlice",
    "Regions may be external memory; slices are views over it, never copies.",
  ),
] as const;

export interface SpecRegion {
  readonly base: bigint;
  /** The region's contents (of a region a write made: assembled on first use, then kept). */
  readonly bytes: Uint8Array;
}

/** Writes recorded over a region before they are folded into one copy. */
const MAX_DEPTH = 32;

/**
 * A region a write made: `data` at `offset` over the region `below` (never changed here);
 * `data` is a byte array, or for a write of a few bytes a plain array of them (cheaper to make).
 * Once its bytes are asked for, they are assembled into `flat`, which then answers alone.
 */
class WrittenRegion implements SpecRegion {
  readonly base: bigint;
  readonly size: number;
  readonly below: SpecRegion;
  readonly offset: number;
  readonly data: Uint8Array | readonly number[];
  /** Writes between this one and the plain region at the bottom (1 for the first). */
  readonly depth: number;
  flat: Uint8Array | null = null;

  constructor(below: SpecRegion, offset: number, data: Uint8Array | readonly number[]) {
    this.base = below.base;
    this.size = sizeOf(below);
    this.below = below;
    this.offset = offset;
    this.data = data;
    this.depth = below instanceof WrittenRegion && below.flat === null ? below.depth + 1 : 1;
  }

  get bytes(): Uint8Array {
    if (this.flat === null) {
      const flat = new Uint8Array(this.size);
      copyOut(this.below, 0, flat);
      flat.set(this.data, this.offset);
      this.flat = flat;
    }
    return this.flat;
  }
}

/** Bytes in region r, without assembling a written region. */
const sizeOf = (r: SpecRegion): number => (r instanceof WrittenRegion ? r.size : r.bytes.length);

/** Byte k of region r (k inside it). */
const byteAt = (r: SpecRegion, k: number): number => {
  for (;;) {
    if (!(r instanceof WrittenRegion)) return r.bytes[k]!;
    if (r.flat !== null) return r.flat[k]!;
    if (k >= r.offset && k < r.offset + r.data.length) return r.data[k - r.offset]!;
    r = r.below;
  }
};

/** Region r's bytes when they are one array (a plain region, or a written one assembled), else null. */
const flatBytes = (r: SpecRegion): Uint8Array | null => (r instanceof WrittenRegion ? r.flat : r.bytes);

/** Copies region bytes [offset, offset + out.length) into out. */
const copyOut = (r: SpecRegion, offset: number, out: Uint8Array): void => {
  const flat = flatBytes(r);
  // A few bytes one by one (a view to copy from costs more).
  if (flat !== null) {
    if (out.length <= 32) for (let i = 0; i < out.length; i++) out[i] = flat[offset + i]!;
    else out.set(flat.subarray(offset, offset + out.length));
    return;
  }
  // Only a written region, not assembled yet, has no one array.
  const w = r as WrittenRegion;
  if (out.length <= 32) for (let i = 0; i < out.length; i++) out[i] = byteAt(w, offset + i);
  else {
    // The bytes below, then this write's part of the range over them.
    copyOut(w.below, offset, out);
    const lo = Math.max(offset, w.offset);
    const hi = Math.min(offset + out.length, w.offset + w.data.length);
    for (let k = lo; k < hi; k++) out[k - offset] = w.data[k - w.offset]!;
  }
};

/**
 * The first offset where region r's contents differ from `bytes` (as long as r), or -1
 * when they are equal. When r is writes recorded over `bytes` itself (the oracle's model
 * over the live guest memory), only the bytes those writes cover are compared: the rest
 * is `bytes`.
 */
export const firstDifference = (r: SpecRegion, bytes: Uint8Array): number => {
  if (sizeOf(r) !== bytes.length) return Math.min(sizeOf(r), bytes.length);
  let bottom = r;
  while (bottom instanceof WrittenRegion && bottom.flat === null) bottom = bottom.below;
  if (bottom.bytes === bytes) {
    let diff = -1;
    for (let w = r; w instanceof WrittenRegion && w.flat === null; w = w.below)
      for (let k = w.offset; k < w.offset + w.data.length; k++)
        if (byteAt(r, k) !== bytes[k] && (diff < 0 || k < diff)) diff = k;
    return diff;
  }
  const flat = r.bytes;
  const view = (a: Uint8Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  if (view(flat).equals(view(bytes))) return -1;
  let k = 0;
  while (flat[k] === bytes[k]) k++;
  return k;
};

/**
 * Visits each write recorded in region r above region `below` (r made from `below` by writes;
 * newest first) with its offset in the region and its length. The oracle uses it to know
 * which bytes one step of the model wrote.
 */
export const eachWrite = (
  r: SpecRegion,
  below: SpecRegion,
  visit: (offset: number, len: number) => void,
): void => {
  for (let w = r; w !== below && w instanceof WrittenRegion; w = w.below) visit(w.offset, w.data.length);
};

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
  const i = len >= 0n && len < 2n ** 53n ? find(mem, addr, 0, Number(len)) : findBig(mem, addr, len);
  return i < 0 ? missed(i, addr, len) : ok({ region: i, offset: foundOffset });
};

const OVERFLOW = -2;
const OUTSIDE = -1;

const missed = (i: number, addr: bigint, len: bigint): Err<MemoryError> =>
  err({ _tag: i === OVERFLOW ? "GuestAddressOverflow" : "InvalidGuestAddress", addr, len });

/** Where in its region the range the last successful `find` found starts. */
let foundOffset = 0;

/**
 * The range [base + at, base + at + len), `at` and `len` non-negative safe integers: the
 * region's index (the offset in foundOffset), OVERFLOW or OUTSIDE.
 */
const find = (mem: SpecMemory, base: bigint, at: number, len: number): number => {
  // In exact numbers when the range starts below 2^53 (no bigint arithmetic): Number() of a
  // bigint in [0, 2^53) is exact, and of one at or above 2^53 is at least 2^53 (rounding is
  // monotonic), so a < 2^53 holds exactly when base + at < 2^53, and then a is exact.
  const n = Number(base);
  const a = n + at;
  if (n < 0 || a >= 2 ** 53) return findBig(mem, base + BigInt(at), BigInt(len));
  const b = boundsOf(mem.regions);
  if (!b.exact) return findBig(mem, base + BigInt(at), BigInt(len));
  // Every region's base and end are integers <= 2^53, so a < end and len <= end - a are exact.
  for (let i = 0; i < b.base.length; i++) {
    const end = b.end[i]!;
    if (b.base[i]! <= a && a < end && len <= end - a) {
      foundOffset = a - b.base[i]!;
      return i;
    }
  }
  return OUTSIDE;
};

/** The regions' bases and ends as numbers, exact when every region lies below 2^53. */
interface Bounds {
  readonly base: readonly number[];
  readonly end: readonly number[];
  readonly exact: boolean;
}

/**
 * A region list never changes (memories are immutable), so its bounds are worked out once:
 * `searched` are those of the last list measured (reads of the same memory one after
 * another convert no bigint base), `written` those of the last list a write made, the same
 * as the list it was written over (a write keeps every base and size).
 */
let searched: readonly SpecRegion[] = [];
let searchedBounds: Bounds = { base: [], end: [], exact: true };
let written = searched;
let writtenBounds = searchedBounds;

const boundsOf = (regions: readonly SpecRegion[]): Bounds => {
  if (regions === searched) return searchedBounds;
  if (regions === written) return writtenBounds;
  const base: number[] = [];
  const end: number[] = [];
  let exact = true;
  for (const r of regions) {
    base.push(Number(r.base));
    end.push(Number(r.base) + sizeOf(r));
    if (r.base < 0n || r.base + BigInt(sizeOf(r)) > ADDRESS_LIMIT) exact = false;
  }
  searched = regions;
  searchedBounds = { base, end, exact };
  return searchedBounds;
};

const findBig = (mem: SpecMemory, addr: bigint, len: bigint): number => {
  if (addr < 0n || len < 0n) return OVERFLOW;
  if (addr > U64_MAX || addr + len > U64_MAX + 1n) return OVERFLOW;
  for (let i = 0; i < mem.regions.length; i++) {
    const r = mem.regions[i]!;
    const end = r.base + BigInt(sizeOf(r));
    if (r.base <= addr && addr < end && len <= end - addr) {
      foundOffset = Number(addr - r.base);
      return i;
    }
  }
  return OUTSIDE;
};

/** A copy of the bytes [addr, addr+len). */
export const readBytes = (mem: SpecMemory, addr: bigint, len: number): Result<Uint8Array, MemoryError> => {
  if (len < 0) return missed(OVERFLOW, addr, BigInt(len));
  const out = new Uint8Array(len);
  const r = readInto(mem, addr, 0, out);
  return r.ok ? ok(out) : r;
};

const DONE: Result<void, never> = ok(undefined);

/**
 * Reads the bytes [base + at, base + at + out.length) into `out` (vm-memory `read_slice`):
 * readBytes without a new array, for a caller that takes the bytes apart at once. `at` is
 * a non-negative safe integer; on an error `out` is unchanged.
 */
export const readInto = (
  mem: SpecMemory,
  base: bigint,
  at: number,
  out: Uint8Array,
): Result<void, MemoryError> => {
  const i = find(mem, base, at, out.length);
  if (i < 0) return missed(i, base + BigInt(at), BigInt(out.length));
  copyOut(mem.regions[i]!, foundOffset, out);
  return DONE;
};

/** New memory with `data` at addr; the original is unchanged. */
export const writeBytes = (
  mem: SpecMemory,
  addr: bigint,
  data: Uint8Array,
): Result<SpecMemory, MemoryError> => {
  const i = find(mem, addr, 0, data.length);
  if (i < 0) return missed(i, addr, BigInt(data.length));
  return ok(recordWrite(mem, i, foundOffset, data.slice()));
};

/** The memory with `data` (now owned by it) at `offset` of region `index`. */
const recordWrite = (
  mem: SpecMemory,
  index: number,
  offset: number,
  data: Uint8Array | readonly number[],
): SpecMemory => {
  const regions = mem.regions.slice();
  const r = regions[index]!;
  const w = new WrittenRegion(r, offset, data);
  // Fold a long record into one copy (reads walk the record).
  if (w.depth >= MAX_DEPTH) regions[index] = { base: r.base, bytes: w.bytes };
  else regions[index] = w;
  writtenBounds = boundsOf(mem.regions);
  written = regions;
  return { regions };
};

/** The little-endian number of `width` <= 4 bytes at offset o of region r. */
const leAt = (r: SpecRegion, o: number, width: number): number => {
  const flat = flatBytes(r);
  let v = 0;
  if (flat !== null) for (let k = width - 1; k >= 0; k--) v = v * 256 + flat[o + k]!;
  else for (let k = width - 1; k >= 0; k--) v = v * 256 + byteAt(r, o + k);
  return v;
};

/** The little-endian number of `width` <= 4 bytes at base + at. */
const readLeNumber = (
  mem: SpecMemory,
  base: bigint,
  at: number,
  width: number,
): Result<number, MemoryError> => {
  const i = find(mem, base, at, width);
  if (i < 0) return missed(i, base + BigInt(at), BigInt(width));
  return ok(leAt(mem.regions[i]!, foundOffset, width));
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

/**
 * writeLe at base + at of `width` <= 8 bytes: the number `lo` (taken mod 2^32, or mod
 * 2^(8 width) when narrower, as writeLe does) in the first four, then `hi` (mod 2^32).
 */
const writeLeNumber = (
  mem: SpecMemory,
  base: bigint,
  at: number,
  width: number,
  lo: number,
  hi = 0,
): Result<SpecMemory, MemoryError> => {
  const i = find(mem, base, at, width);
  if (i < 0) return missed(i, base + BigInt(at), BigInt(width));
  const o = foundOffset;
  const bytes = new Array<number>(width);
  for (let k = 0; k < width; k++) bytes[k] = ((k < 4 ? lo : hi) >>> (8 * (k & 3))) & 0xff;
  return ok(recordWrite(mem, i, o, bytes));
};

export const readU8 = (mem: SpecMemory, addr: bigint): Result<number, MemoryError> =>
  readLeNumber(mem, addr, 0, 1);
export const readU16 = (mem: SpecMemory, addr: bigint): Result<number, MemoryError> =>
  readLeNumber(mem, addr, 0, 2);
export const readU32 = (mem: SpecMemory, addr: bigint): Result<number, MemoryError> =>
  readLeNumber(mem, addr, 0, 4);
/** readU16 of base + at (`at` a non-negative safe integer): a field at a known offset, no bigint sum. */
export const readU16At = (mem: SpecMemory, base: bigint, at: number): Result<number, MemoryError> =>
  readLeNumber(mem, base, at, 2);
/** Two u32 halves, low first (a bigint only for the answer). */
export const readU64 = (mem: SpecMemory, addr: bigint): Result<bigint, MemoryError> => {
  const i = find(mem, addr, 0, 8);
  if (i < 0) return missed(i, addr, 8n);
  const r = mem.regions[i]!;
  return ok(u64Of(leAt(r, foundOffset, 4), leAt(r, foundOffset + 4, 4)));
};

/** The u64 hi * 2^32 + lo of two u32s, exactly (one number while it stays below 2^53). */
export const u64Of = (lo: number, hi: number): bigint =>
  hi < 0x200000 ? BigInt(hi * 0x100000000 + lo) : (BigInt(hi) << 32n) | BigInt(lo);

export const writeU8 = (mem: SpecMemory, addr: bigint, v: number): Result<SpecMemory, MemoryError> =>
  writeLe(mem, addr, 1, BigInt(v));
export const writeU16 = (mem: SpecMemory, addr: bigint, v: number): Result<SpecMemory, MemoryError> =>
  Number.isSafeInteger(v) ? writeLeNumber(mem, addr, 0, 2, v) : writeLe(mem, addr, 2, BigInt(v));
export const writeU32 = (mem: SpecMemory, addr: bigint, v: number): Result<SpecMemory, MemoryError> =>
  Number.isSafeInteger(v) ? writeLeNumber(mem, addr, 0, 4, v) : writeLe(mem, addr, 4, BigInt(v));
export const writeU64 = (mem: SpecMemory, addr: bigint, v: bigint): Result<SpecMemory, MemoryError> =>
  writeLe(mem, addr, 8, v);
/** writeU16 / writeU32 of base + at (`at` a non-negative safe integer), for a value that is a safe integer. */
export const writeU16At = (
  mem: SpecMemory,
  base: bigint,
  at: number,
  v: number,
): Result<SpecMemory, MemoryError> => writeLeNumber(mem, base, at, 2, v);
export const writeU32At = (
  mem: SpecMemory,
  base: bigint,
  at: number,
  v: number,
): Result<SpecMemory, MemoryError> => writeLeNumber(mem, base, at, 4, v);
/** The u64 hi * 2^32 + lo (two u32 numbers, as u64Of takes them) at base + at. */
export const writeU64At = (
  mem: SpecMemory,
  base: bigint,
  at: number,
  lo: number,
  hi: number,
): Result<SpecMemory, MemoryError> => writeLeNumber(mem, base, at, 8, lo, hi);

/** Every region's bytes, for comparing two memories. */
export const snapshot = (mem: SpecMemory): readonly { readonly base: bigint; readonly bytes: Uint8Array }[] =>
  mem.regions.map((r) => ({ base: r.base, bytes: Uint8Array.from(r.bytes) }));
