/**
 * Shared fast-check arbitraries for split virtqueues: queue sizes, ring placements (well
 * formed, or anywhere at all as a hostile driver may program them), raw descriptors and
 * chain shapes. Plain data plus small helpers; nothing here depends on SplitQueue, so
 * any subject (iovec, vsock, net) can lay out queues with them.
 *
 * Split-ring sizes and alignments come from wire/split.ts (CHAIN-DESC-LAYOUT, VQ-LAYOUT).
 *
 *   fc.property(queuePlacementArb({ maxSize: 32768 }), fc.integer(), (q, seed) => {
 *     const { impl, spec } = buildMemories(q.layout, seed);   // from ./memory.ts
 *     // q.descTable, q.availRing, q.usedRing, q.size; q.data: regions for buffers
 *   })
 */
import fc from "fast-check";
import {
  AVAIL_RING_ALIGN,
  DESC_SIZE,
  DESC_TABLE_ALIGN,
  MAX_QUEUE_SIZE,
  USED_RING_ALIGN,
  availRingBytes,
  descTableBytes,
  usedRingBytes,
} from "../../wire/split.ts";
import { ADDRESS_LIMIT, U64_MAX, type MemoryLayout, type RegionLayout } from "./memory.ts";

/** Bytes of each ring for a queue of `size` entries. */
export const ringBytes = (size: number): { desc: number; avail: number; used: number } => ({
  desc: descTableBytes(size),
  avail: availRingBytes(size),
  used: usedRingBytes(size),
});

const RING_ALIGN = { desc: DESC_TABLE_ALIGN, avail: AVAIL_RING_ALIGN, used: USED_RING_ALIGN } as const;

/**
 * A power of two in 1..=max: mostly small (cheap, and where wrap-around happens often),
 * sometimes any size up to `max` (32768 by default).
 */
export const queueSizeArb = (max = MAX_QUEUE_SIZE): fc.Arbitrary<number> => {
  const maxLog = Math.floor(Math.log2(max));
  return fc
    .oneof(
      { weight: 6, arbitrary: fc.integer({ min: 0, max: Math.min(maxLog, 4) }) },
      { weight: 3, arbitrary: fc.integer({ min: 0, max: Math.min(maxLog, 8) }) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: maxLog }) },
    )
    .map((log) => 2 ** log);
};

/** Any u16 the driver might write as a queue size, biased to the edges. */
export const anyQueueSizeArb: fc.Arbitrary<number> = fc.oneof(
  queueSizeArb(),
  fc.constantFrom(0, 3, 255, 257, 32767, 65535, 65536),
  fc.integer({ min: 0, max: 0xffff }),
);

/** A queue whose three rings lie wholly inside memory, correctly aligned. */
export interface QueuePlacement {
  readonly layout: MemoryLayout;
  readonly size: number;
  readonly descTable: number;
  readonly availRing: number;
  readonly usedRing: number;
  /** Regions holding no ring: room for buffers and indirect tables. */
  readonly data: readonly RegionLayout[];
}

export interface QueuePlacementOptions {
  /** Largest queue size; default 32768. */
  readonly maxSize?: number;
  /** Smallest queue size; default 1. */
  readonly minSize?: number;
  /** How many regions for buffers (besides the rings'); default 1..3. */
  readonly minDataRegions?: number;
  readonly maxDataRegions?: number;
  /** Largest data region; default 64 KiB. */
  readonly maxDataSize?: number;
}

type Packing = "one" | "separate" | "descApart";

/**
 * Rings placed in one region, each in its own, or the descriptor table apart from the two
 * rings; regions in any order in the address space, sometimes adjacent, the first at 0, at
 * 512 (Firecracker's proof memory), anywhere, or so that the last ends at 2^53.
 */
export const queuePlacementArb = (options: QueuePlacementOptions = {}): fc.Arbitrary<QueuePlacement> => {
  const maxSize = options.maxSize ?? MAX_QUEUE_SIZE;
  const minSize = options.minSize ?? 1;
  return fc
    .record({
      size: queueSizeArb(maxSize).filter((s) => s >= minSize),
      packing: fc.constantFrom<Packing>("one", "separate", "descApart"),
      // Padding before each ring in units of its alignment, and after the last one in bytes.
      pad: fc.tuple(fc.nat(6), fc.nat(6), fc.nat(6), fc.nat(15)),
      data: fc.array(fc.integer({ min: 16, max: options.maxDataSize ?? 65536 }), {
        minLength: options.minDataRegions ?? 1,
        maxLength: options.maxDataRegions ?? 3,
      }),
      // Gaps between regions in 16-byte units; 0 makes them adjacent.
      gaps: fc.array(fc.oneof(fc.constant(0), fc.nat(256)), { minLength: 6, maxLength: 6 }),
      anchor: fc.oneof(
        fc.constant(0),
        fc.constant(512),
        fc.nat(2 ** 36).map((x) => x * 16),
        fc.constant(-1), // top: end at 2^53
      ),
      order: fc.nat(720),
    })
    .filter((r) => r.size >= minSize)
    .map(build);
};

interface Placed {
  readonly size: number;
  readonly rings: { kind: "desc" | "avail" | "used"; offset: number }[];
}

const build = (r: {
  size: number;
  packing: Packing;
  pad: [number, number, number, number];
  data: number[];
  gaps: number[];
  anchor: number;
  order: number;
}): QueuePlacement => {
  const bytes = ringBytes(r.size);
  const kinds = ["desc", "avail", "used"] as const;
  const groups: (readonly ("desc" | "avail" | "used")[])[] =
    r.packing === "one"
      ? [kinds]
      : r.packing === "separate"
        ? [["desc"], ["avail"], ["used"]]
        : [["desc"], ["avail", "used"]];
  // Lay out each ring region's contents from offset 0 (region bases are 16-aligned).
  const ringRegions: Placed[] = groups.map((g) => {
    let at = 0;
    const rings: Placed["rings"] = [];
    for (const kind of g) {
      const align = RING_ALIGN[kind];
      at = Math.ceil(at / align) * align + r.pad[kinds.indexOf(kind)]! * align;
      rings.push({ kind, offset: at });
      at += bytes[kind];
    }
    return { size: at + r.pad[3], rings };
  });
  const all: (Placed | { size: number; rings: null })[] = [
    ...ringRegions,
    ...r.data.map((size) => ({ size, rings: null })),
  ];
  // A permutation of the regions picked by `order` (a Lehmer code, good enough for <= 6).
  const pool = all.slice();
  const ordered: typeof all = [];
  let code = r.order;
  while (pool.length > 0) {
    const k = code % pool.length;
    code = Math.floor(code / pool.length);
    ordered.push(pool.splice(k, 1)[0]!);
  }
  let span = 0;
  for (const [i, reg] of ordered.entries())
    span = roundUp16(span) + (i === 0 ? 0 : r.gaps[i]! * 16) + reg.size;
  const start =
    r.anchor === -1
      ? Math.floor((ADDRESS_LIMIT - span) / 16) * 16
      : Math.min(r.anchor, ADDRESS_LIMIT - span - 16);
  // Rounding the top anchor down may leave the last region a few bytes short of 2^53; fine.
  let at = start;
  const layout: RegionLayout[] = [];
  const data: RegionLayout[] = [];
  const ringAt = { desc: 0, avail: 0, used: 0 };
  for (const [i, reg] of ordered.entries()) {
    at = roundUp16(at) + (i === 0 ? 0 : r.gaps[i]! * 16);
    const region = { base: at, size: reg.size };
    layout.push(region);
    if (reg.rings === null) data.push(region);
    else for (const ring of reg.rings) ringAt[ring.kind] = at + ring.offset;
    at += reg.size;
  }
  return {
    layout,
    size: r.size,
    descTable: ringAt.desc,
    availRing: ringAt.avail,
    usedRing: ringAt.used,
    data,
  };
};

const roundUp16 = (x: number): number => Math.ceil(x / 16) * 16;

/**
 * A ring address a hostile (or buggy) driver might program for a ring of `bytes` bytes
 * needing `align`: aligned inside a region, unaligned, straddling a region's end or two
 * adjacent regions, just below memory, around 2^53, near 2^64 (so the end overflows), or
 * any u64.
 */
export const ringAddressArb = (layout: MemoryLayout, bytes: number, align: number): fc.Arbitrary<bigint> => {
  const region = fc.integer({ min: 0, max: layout.length - 1 }).map((i) => layout[i]!);
  return fc.oneof(
    {
      weight: 4,
      arbitrary: region.chain((r) =>
        fc.integer({ min: 0, max: Math.max(0, Math.floor((r.size - bytes) / align)) }).map((k) => {
          const a = Math.ceil(r.base / align) * align + k * align;
          return BigInt(a);
        }),
      ),
    },
    {
      weight: 2,
      arbitrary: region.chain((r) =>
        fc.integer({ min: -bytes - 8, max: r.size + 8 }).map((d) => clampU64(BigInt(r.base) + BigInt(d))),
      ),
    },
    { weight: 1, arbitrary: region.map((r) => clampU64(BigInt(r.base + r.size - bytes + align))) },
    { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 0x1_0000n }) },
    {
      weight: 1,
      arbitrary: fc.bigInt({
        min: BigInt(ADDRESS_LIMIT) - BigInt(bytes) - 32n,
        max: BigInt(ADDRESS_LIMIT) + 32n,
      }),
    },
    { weight: 1, arbitrary: fc.bigInt({ min: U64_MAX - BigInt(bytes) - 32n, max: U64_MAX }) },
    { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: U64_MAX }) },
  );
};

const clampU64 = (x: bigint): bigint => (x < 0n ? 0n : x > U64_MAX ? U64_MAX : x);

/** Three ring addresses for a queue of `size`, each from `ringAddressArb`. */
export const anyRingsArb = (
  layout: MemoryLayout,
  size: number,
): fc.Arbitrary<{ descTable: bigint; availRing: bigint; usedRing: bigint }> => {
  const b = ringBytes(size);
  return fc.record({
    descTable: ringAddressArb(layout, b.desc, DESC_TABLE_ALIGN),
    availRing: ringAddressArb(layout, b.avail, AVAIL_RING_ALIGN),
    usedRing: ringAddressArb(layout, b.used, USED_RING_ALIGN),
  });
};

/** A raw 16-byte descriptor entry (CHAIN-DESC-LAYOUT). */
export interface RawDescriptor {
  readonly addr: bigint;
  readonly len: number;
  readonly flags: number;
  readonly next: number;
}

/**
 * A descriptor as a hostile driver might write it for a table of `tableSize` entries:
 * next mostly in range, flags mostly the three defined bits, len anything from 0 to
 * 2^32-1 (multiples of 16 for indirect tables), addr in `data` or anywhere.
 */
export const rawDescriptorArb = (
  tableSize: number,
  data: readonly RegionLayout[],
): fc.Arbitrary<RawDescriptor> =>
  fc.record({
    addr: fc.oneof(
      {
        weight: 3,
        arbitrary:
          data.length === 0
            ? fc.bigInt({ min: 0n, max: 0xffffn })
            : fc
                .integer({ min: 0, max: data.length - 1 })
                .chain((i) =>
                  fc.integer({ min: 0, max: data[i]!.size - 1 }).map((o) => BigInt(data[i]!.base + o)),
                ),
      },
      { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: U64_MAX }) },
    ),
    len: fc.oneof(
      fc.integer({ min: 0, max: 64 }),
      fc.integer({ min: 1, max: 16 }).map((n) => n * DESC_SIZE),
      fc.constantFrom(0xffff_ffff, 0x8000_0000, 0xffff0, 0x10_0000),
      fc.nat(0xffff_ffff),
    ),
    flags: fc.oneof({ weight: 4, arbitrary: fc.nat(7) }, { weight: 1, arbitrary: fc.nat(0xffff) }),
    next: fc.oneof(
      { weight: 4, arbitrary: fc.nat(Math.max(0, tableSize - 1)) },
      { weight: 1, arbitrary: fc.nat(0xffff) },
    ),
  });

/** One buffer of a chain as a driver adds it. */
export interface BufferSpec {
  readonly addr: number;
  readonly len: number;
  readonly write: boolean;
}

/**
 * A well-formed chain's buffers (1..maxDescriptors), readable ones first as VIRTIO asks,
 * each inside one of the `data` regions; total length below 2^32.
 */
export const chainBuffersArb = (
  data: readonly RegionLayout[],
  maxDescriptors = 4,
): fc.Arbitrary<readonly BufferSpec[]> =>
  fc
    .array(
      fc.record({
        region: fc.nat(data.length - 1),
        at: fc.double({ min: 0, max: 1, noNaN: true }),
        len: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 4096 })),
        write: fc.boolean(),
      }),
      { minLength: 1, maxLength: maxDescriptors },
    )
    .map((bs) =>
      bs
        .map((b) => {
          const r = data[b.region]!;
          const len = Math.min(b.len, r.size);
          const off = Math.floor(b.at * (r.size - len));
          return { addr: r.base + off, len, write: b.write };
        })
        .sort((a, b) => Number(a.write) - Number(b.write)),
    );
