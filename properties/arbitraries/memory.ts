/**
 * Shared fast-check arbitraries for guest memory: region layouts, u64 guest addresses
 * biased towards the interesting edges, and helpers that build the same memory in
 * impl/ (`GuestMemory`) and spec/ (`SpecMemory`).
 *
 * Layouts are plain data (`{ base, size }[]`, sorted, disjoint, non-empty, below 2^53) so
 * any subject can place its own structures in them; contents are filled from a seed with a
 * cheap PRNG so that large regions (a 32768-entry queue needs ~800 KiB) cost no shrinking.
 *
 *   import { layoutArb, addressArb, buildMemories } from "./arbitraries/memory.ts";
 *   fc.property(layoutArb(), fc.integer(), (layout, seed) => {
 *     const { impl, spec } = buildMemories(layout, seed);
 *   })
 */
import fc from "fast-check";
import { GuestMemory } from "../../impl/memory/guest-memory.ts";
import { createMemory, type SpecMemory } from "../../spec/memory.ts";

export const U64_MAX = (1n << 64n) - 1n;
/** Every region lies below this (MEM-REGION-LIMIT). */
export const ADDRESS_LIMIT = 2 ** 53;

export interface RegionLayout {
  /** Guest base address (exact: below 2^53). */
  readonly base: number;
  /** Bytes, at least 1. */
  readonly size: number;
}

/** Sorted by base, disjoint, non-empty, every region below 2^53. */
export type MemoryLayout = readonly RegionLayout[];

export interface LayoutOptions {
  /** At least 1 region; default 1. */
  readonly minRegions?: number;
  /** Default 4. */
  readonly maxRegions?: number;
  /** Largest region in bytes; default 4096. */
  readonly maxRegionSize?: number;
  /** Largest gap between regions; default 4096. A gap of 0 (adjacent regions) is always possible. */
  readonly maxGap?: number;
}

/**
 * Where the first region starts: at 0, low, anywhere below 2^52, or so that the last
 * region ends exactly at 2^53 (the highest memory an implementation with number
 * addresses may hold).
 */
type Anchor = { readonly kind: "at"; readonly base: number } | { readonly kind: "top" };

const anchorArb: fc.Arbitrary<Anchor> = fc.oneof(
  fc.constant<Anchor>({ kind: "at", base: 0 }),
  fc.integer({ min: 0, max: 0x10000 }).map((base): Anchor => ({ kind: "at", base })),
  fc.integer({ min: 0, max: 2 ** 52 }).map((base): Anchor => ({ kind: "at", base })),
  fc.constant<Anchor>({ kind: "top" }),
);

/** A memory layout: several regions, sometimes adjacent, sometimes ending at 2^53. */
export const layoutArb = (options: LayoutOptions = {}): fc.Arbitrary<MemoryLayout> => {
  const maxSize = options.maxRegionSize ?? 4096;
  const maxGap = options.maxGap ?? 4096;
  const segment = fc.record({
    gap: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: maxGap })),
    size: fc.oneof(fc.integer({ min: 1, max: 32 }), fc.integer({ min: 1, max: maxSize })),
  });
  return fc
    .tuple(
      anchorArb,
      fc.array(segment, { minLength: options.minRegions ?? 1, maxLength: options.maxRegions ?? 4 }),
    )
    .map(([anchor, segments]) => layoutFrom(anchor, segments));
};

const layoutFrom = (anchor: Anchor, segments: readonly { gap: number; size: number }[]): MemoryLayout => {
  let span = 0;
  for (const [i, s] of segments.entries()) span += (i === 0 ? 0 : s.gap) + s.size;
  let at = anchor.kind === "top" ? ADDRESS_LIMIT - span : Math.min(anchor.base, ADDRESS_LIMIT - span);
  const out: RegionLayout[] = [];
  for (const [i, s] of segments.entries()) {
    if (i > 0) at += s.gap;
    out.push({ base: at, size: s.size });
    at += s.size;
  }
  return out;
};

/** A deterministic byte stream (xorshift32): large regions without fast-check shrinking them. */
export const fillBytes = (bytes: Uint8Array, seed: number): void => {
  let x = seed | 0 || 0x9e3779b9;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
};

/**
 * One region's bytes for each entry of the layout, filled from `seed` (zeros when undefined).
 * With a seed, about one region in four starts 1 or 3 bytes into its ArrayBuffer, so that code
 * reading guest memory through word-sized typed arrays meets host buffers whose guest-aligned
 * addresses are not host-aligned (the descriptor walk's fast path needs a 4-byte boundary).
 */
export const layoutBytes = (layout: MemoryLayout, seed?: number): Uint8Array[] =>
  layout.map((r, i) => {
    const h = seed === undefined ? 0 : (seed ^ Math.imul(i + 1, 0x85ebca6b)) | 0;
    const skew = (h >>> 8) % 4 === 1 ? 1 + (h & 2) : 0;
    const bytes = new Uint8Array(new ArrayBuffer(r.size + skew), skew, r.size);
    if (seed !== undefined) fillBytes(bytes, h);
    return bytes;
  });

/** The same layout and contents as impl/ memory (over `bytes`, not copied) and spec/ memory. */
export const buildMemories = (
  layout: MemoryLayout,
  seed?: number,
): { impl: GuestMemory; spec: SpecMemory; bytes: Uint8Array[] } => {
  const bytes = layoutBytes(layout, seed);
  const regions = layout.map((r, i) => ({ base: r.base, bytes: bytes[i]! }));
  const impl = GuestMemory.of(regions);
  const spec = createMemory(regions.map((r) => ({ base: BigInt(r.base), bytes: r.bytes })));
  if (!spec.ok) throw new Error(`layoutArb produced an invalid layout: ${spec.error._tag}`);
  return { impl, spec: spec.value, bytes };
};

/** Whether [addr, addr+len) lies inside one region of the layout (MEM-RANGE-ONE-REGION, by hand). */
export const inLayout = (layout: MemoryLayout, addr: bigint, len: bigint): boolean =>
  layout.some((r) => {
    const base = BigInt(r.base);
    const end = base + BigInt(r.size);
    return base <= addr && addr < end && len <= end - addr && len >= 0n;
  });

/**
 * A u64 guest address for this layout, biased to edges: inside or just around a region,
 * at a region's end, around 2^53, near 2^64, or anything at all.
 */
export const addressArb = (layout: MemoryLayout): fc.Arbitrary<bigint> => {
  const n = layout.length;
  const region = fc.integer({ min: 0, max: n - 1 });
  return fc.oneof(
    { weight: 4, arbitrary: region.chain((i) => around(layout[i]!)) },
    { weight: 2, arbitrary: region.chain((i) => nearEnd(layout[i]!)) },
    { weight: 1, arbitrary: fc.bigInt({ min: (1n << 53n) - 16n, max: (1n << 53n) + 16n }) },
    { weight: 1, arbitrary: fc.bigInt({ min: U64_MAX - 64n, max: U64_MAX }) },
    { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: U64_MAX }) },
  );
};

const around = (r: RegionLayout): fc.Arbitrary<bigint> =>
  fc.integer({ min: -16, max: r.size + 16 }).map((d) => {
    const a = BigInt(r.base) + BigInt(d);
    return a < 0n ? 0n : a;
  });

const nearEnd = (r: RegionLayout): fc.Arbitrary<bigint> =>
  fc.integer({ min: 0, max: 16 }).map((k) => {
    const a = BigInt(r.base + r.size) - BigInt(k);
    return a < 0n ? 0n : a;
  });

/** An access length: usually small, sometimes exactly a region's size, sometimes huge (u64). */
export const lengthArb = (layout: MemoryLayout): fc.Arbitrary<bigint> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 0, max: 24 }).map(BigInt) },
    { weight: 1, arbitrary: fc.constantFrom(...layout.map((r) => BigInt(r.size))) },
    { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: U64_MAX }) },
  );

/** One access a memory's recorder saw: guest address, length, write. */
export type Access = readonly [addr: number, len: number, write: boolean];

/** The accesses `f` makes through `m`, as its recorder sees them (the recorder is removed after). */
export const accessesOf = (m: GuestMemory, f: () => unknown): Access[] => {
  const seen: Access[] = [];
  m.recorder = (addr, len, write) => seen.push([addr, len, write]);
  try {
    f();
  } finally {
    m.recorder = null;
  }
  return seen;
};
