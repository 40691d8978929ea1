/**
 * Guest memory, the implementation: regions over caller-owned bytes (any ArrayBuffer,
 * SharedArrayBuffer or Uint8Array view, e.g. one mapped from a file descriptor), never
 * copied. Same rules as spec/memory.ts (MEM-*).
 *
 * Hot paths use `locate(addr, len, write)`, which returns the index of the one region that
 * holds [addr, addr+len) or -1, and then read the region's DataView directly; the typed
 * accessors below return sentinels (-1, false, undefined) instead of allocating errors.
 * Edges that need a typed error use the `try*` methods.
 *
 * Addresses are `number`s: exact below 2^53, where every region lies (MEM-REGION-LIMIT).
 * A u64 read from guest memory above 2^53 may be rounded, but it stays >= 2^53 and so
 * outside every region; error values carry the exact `bigint` where the caller has it.
 */
import type { MemoryBuildError, MemoryError, SpecMemory } from "../../spec/memory.ts";
import { err, ok, type Result } from "../../spec/result.ts";

export type { MemoryBuildError, MemoryError } from "../../spec/memory.ts";

const LIMIT = 2 ** 53;
const U64_MAX = (1n << 64n) - 1n;

export interface GuestRegion {
  readonly base: number;
  readonly size: number;
  /** base + size, at most 2^53. */
  readonly end: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

export type RegionSource = ArrayBuffer | SharedArrayBuffer | Uint8Array;

/** Called with every range the device touches through `locate` (see properties/ bounds). */
export type AccessRecorder = (addr: number, len: number, write: boolean) => void;

export class GuestMemory {
  readonly regions: readonly GuestRegion[];
  /** When set, every `locate` call is reported to it (tests only; null on hot paths). */
  recorder: AccessRecorder | null = null;
  private last = 0;

  private constructor(regions: readonly GuestRegion[]) {
    this.regions = regions;
  }

  /** Regions are kept as given (views, not copies); sorted by base. */
  static create(
    regions: readonly { readonly base: number | bigint; readonly bytes: RegionSource }[],
  ): Result<GuestMemory, MemoryBuildError> {
    const out: GuestRegion[] = [];
    for (const r of regions) {
      const bytes = r.bytes instanceof Uint8Array ? r.bytes : new Uint8Array(r.bytes);
      const baseBig = BigInt(r.base);
      const size = bytes.length;
      if (size === 0) return err({ _tag: "EmptyRegion", base: baseBig });
      if (baseBig < 0n || baseBig + BigInt(size) > BigInt(LIMIT)) {
        return err({ _tag: "RegionOutOfRange", base: baseBig, size: BigInt(size) });
      }
      const base = Number(baseBig);
      out.push({
        base,
        size,
        end: base + size,
        bytes,
        view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      });
    }
    out.sort((a, b) => a.base - b.base);
    for (let i = 1; i < out.length; i++) {
      const prev = out[i - 1]!;
      const cur = out[i]!;
      if (prev.end > cur.base) {
        return err({ _tag: "OverlappingRegions", first: BigInt(prev.base), second: BigInt(cur.base) });
      }
    }
    return ok(new GuestMemory(out));
  }

  /**
   * The reference model's view of these regions (spec/memory.ts): with `copy`, the bytes as
   * they are now; without, the same bytes (the model never writes, so each of its reads sees
   * the current contents).
   */
  toSpecMemory(copy: boolean): SpecMemory {
    return {
      regions: this.regions.map((r) => ({
        base: BigInt(r.base),
        bytes: copy ? Uint8Array.from(r.bytes) : r.bytes,
      })),
    };
  }

  /** Like `create`, for tests and tools that build memory they know is valid. */
  static of(
    regions: readonly { readonly base: number | bigint; readonly bytes: RegionSource }[],
  ): GuestMemory {
    const m = GuestMemory.create(regions);
    if (!m.ok) throw new Error(`invalid guest memory layout: ${m.error._tag}`);
    return m.value;
  }

  /**
   * The index of the region holding all of [addr, addr+len), or -1 (MEM-RANGE-ONE-REGION).
   * A zero-length range must still start inside a region. Non-integer or negative
   * arguments give -1.
   */
  locate(addr: number, len: number, write: boolean): number {
    if (this.recorder !== null) this.recorder(addr, len, write);
    const regions = this.regions;
    let r = regions[this.last];
    // The comparisons are written so that NaN, negatives and addresses >= 2^53 all fail.
    if (
      r !== undefined &&
      addr >= r.base &&
      addr < r.end &&
      len >= 0 &&
      len <= r.end - addr &&
      // Integer checks keep both paths identical for non-integers (DataView would truncate).
      Number.isInteger(addr) &&
      Number.isInteger(len)
    ) {
      return this.last;
    }
    for (let i = 0; i < regions.length; i++) {
      r = regions[i]!;
      if (addr >= r.base && addr < r.end) {
        if (len >= 0 && len <= r.end - addr && Number.isInteger(addr) && Number.isInteger(len)) {
          this.last = i;
          return i;
        }
        return -1;
      }
    }
    return -1;
  }

  readU8(addr: number): number {
    const i = this.locate(addr, 1, false);
    if (i < 0) return -1;
    const r = this.regions[i]!;
    return r.view.getUint8(addr - r.base);
  }

  readU16(addr: number): number {
    const i = this.locate(addr, 2, false);
    if (i < 0) return -1;
    const r = this.regions[i]!;
    return r.view.getUint16(addr - r.base, true);
  }

  readU32(addr: number): number {
    const i = this.locate(addr, 4, false);
    if (i < 0) return -1;
    const r = this.regions[i]!;
    return r.view.getUint32(addr - r.base, true);
  }

  readU64(addr: number): bigint | undefined {
    const i = this.locate(addr, 8, false);
    if (i < 0) return undefined;
    const r = this.regions[i]!;
    return r.view.getBigUint64(addr - r.base, true);
  }

  writeU8(addr: number, value: number): boolean {
    const i = this.locate(addr, 1, true);
    if (i < 0) return false;
    const r = this.regions[i]!;
    r.view.setUint8(addr - r.base, value);
    return true;
  }

  writeU16(addr: number, value: number): boolean {
    const i = this.locate(addr, 2, true);
    if (i < 0) return false;
    const r = this.regions[i]!;
    r.view.setUint16(addr - r.base, value, true);
    return true;
  }

  writeU32(addr: number, value: number): boolean {
    const i = this.locate(addr, 4, true);
    if (i < 0) return false;
    const r = this.regions[i]!;
    r.view.setUint32(addr - r.base, value, true);
    return true;
  }

  writeU64(addr: number, value: bigint): boolean {
    const i = this.locate(addr, 8, true);
    if (i < 0) return false;
    const r = this.regions[i]!;
    r.view.setBigUint64(addr - r.base, BigInt.asUintN(64, value), true);
    return true;
  }

  /** Copies [addr, addr+dst.length) into dst; false (dst untouched) when out of bounds. */
  readInto(addr: number, dst: Uint8Array): boolean {
    const i = this.locate(addr, dst.length, false);
    if (i < 0) return false;
    const r = this.regions[i]!;
    const off = addr - r.base;
    dst.set(r.bytes.subarray(off, off + dst.length));
    return true;
  }

  /** Copies src to [addr, addr+src.length); false (memory untouched) when out of bounds. */
  writeFrom(addr: number, src: Uint8Array): boolean {
    const i = this.locate(addr, src.length, true);
    if (i < 0) return false;
    const r = this.regions[i]!;
    r.bytes.set(src, addr - r.base);
    return true;
  }

  /** A zero-copy view of [addr, addr+len) (MEM-ZERO-COPY), or undefined when out of bounds. */
  slice(addr: number, len: number, write = false): Uint8Array | undefined {
    const i = this.locate(addr, len, write);
    if (i < 0) return undefined;
    const r = this.regions[i]!;
    const off = addr - r.base;
    return r.bytes.subarray(off, off + len);
  }

  /** The typed error for a range `locate` rejected (MEM-ADDR-U64, MEM-RANGE-ONE-REGION). */
  static rangeError(addr: bigint, len: bigint): MemoryError {
    if (addr < 0n || len < 0n || addr > U64_MAX || addr + len > U64_MAX + 1n) {
      return { _tag: "GuestAddressOverflow", addr, len };
    }
    return { _tag: "InvalidGuestAddress", addr, len };
  }

  /** Checked access with an exact u64 address, for edges (conformance, tools). */
  tryLocate(
    addr: bigint,
    len: bigint,
    write: boolean,
  ): Result<{ region: GuestRegion; offset: number }, MemoryError> {
    if (addr < 0n || len < 0n || addr > U64_MAX || addr + len > U64_MAX + 1n || addr >= BigInt(LIMIT)) {
      return err(GuestMemory.rangeError(addr, len));
    }
    if (len > BigInt(LIMIT)) return err(GuestMemory.rangeError(addr, len));
    const i = this.locate(Number(addr), Number(len), write);
    if (i < 0) return err(GuestMemory.rangeError(addr, len));
    const region = this.regions[i]!;
    return ok({ region, offset: Number(addr) - region.base });
  }

  tryRead(addr: bigint, len: number): Result<Uint8Array, MemoryError> {
    const at = this.tryLocate(addr, BigInt(len), false);
    if (!at.ok) return at;
    return ok(at.value.region.bytes.slice(at.value.offset, at.value.offset + len));
  }

  tryWrite(addr: bigint, data: Uint8Array): Result<void, MemoryError> {
    const at = this.tryLocate(addr, BigInt(data.length), true);
    if (!at.ok) return at;
    at.value.region.bytes.set(data, at.value.offset);
    return ok(undefined);
  }
}

/** Joins a u64 read as two u32 halves into a number: exact below 2^53, >= 2^53 otherwise. */
export const u64ToNumber = (lo: number, hi: number): number => hi * 0x1_0000_0000 + lo;

/** The exact bigint of a u64 read as two u32 halves. */
export const u64ToBigInt = (lo: number, hi: number): bigint => (BigInt(hi) << 32n) | BigInt(lo);
