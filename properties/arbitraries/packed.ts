/**
 * Helpers for properties and tests of the packed virtqueue: the implementation's chains and
 * pop results in the reference model's shapes (so they compare with `toEqual` or `same`),
 * and raw packed descriptors a hostile driver might write.
 */
import fc from "fast-check";
import type { PackedDescriptorChain } from "../../impl/queue/packed-chain.ts";
import type * as P from "../../spec/packed-queue.ts";
import type { Result } from "../../spec/result.ts";
import { ADDRESS_LIMIT, U64_MAX, type MemoryLayout, type RegionLayout } from "./memory.ts";
import {
  EVENT_AREA_ALIGN,
  EVENT_AREA_SIZE,
  PACKED_RING_ALIGN,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_USED,
  packedRingBytes,
} from "../../wire/packed.ts";

/** Walks `chain` from its first data descriptor to its end, in the spec's `SpecPackedWalk` shape. */
export const packedWalk = (chain: PackedDescriptorChain): P.SpecPackedWalk => {
  const descriptors: P.SpecPackedDescriptor[] = [];
  for (let ok = chain.rewind(); ok; ok = chain.advance()) {
    descriptors.push({
      index: chain.index,
      addr: chain.addrBig(),
      len: chain.len,
      id: chain.id,
      flags: chain.flags,
      indirect: chain.indirect,
    });
  }
  return { descriptors, end: chain.end };
};

/** A popped chain in the spec's `SpecPackedPopped` shape. */
export const packedPopped = (c: PackedDescriptorChain): P.SpecPackedPopped => ({
  id: c.bufferId,
  head: c.headSlot,
  wrap: c.headWrap,
  slots: c.slots,
  walk: packedWalk(c),
});

/** An impl pop result in the spec's shape. */
export const packedPopView = (
  r: Result<PackedDescriptorChain | null, P.PackedQueueError>,
): Result<P.SpecPackedPopped | null, P.PackedQueueError> =>
  r.ok ? { ok: true, value: r.value === null ? null : packedPopped(r.value) } : r;

/** A raw 16-byte packed descriptor (PVQ-DESC-LAYOUT). */
export interface RawPackedDescriptor {
  readonly addr: bigint;
  readonly len: number;
  readonly id: number;
  readonly flags: number;
}

export const encodePacked = (d: RawPackedDescriptor): Uint8Array => {
  const out = new Uint8Array(16);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, BigInt.asUintN(64, d.addr), true);
  v.setUint32(8, d.len >>> 0, true);
  v.setUint16(12, d.id & 0xffff, true);
  v.setUint16(14, d.flags & 0xffff, true);
  return out;
};

/**
 * A descriptor as a hostile driver might write it for a ring of `size`: ids mostly in range,
 * flags mostly the defined bits in any AVAIL/USED combination, len anything (multiples of 16
 * for indirect tables), addr in `data` or anywhere.
 */
export const rawPackedArb = (
  size: number,
  data: readonly RegionLayout[],
): fc.Arbitrary<RawPackedDescriptor> =>
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
      fc.integer({ min: 1, max: 16 }).map(packedRingBytes),
      fc.constantFrom(0xffff_ffff, 0x8000_0000, 0xffff0, 0x10_0000),
      fc.nat(0xffff_ffff),
    ),
    id: fc.oneof(
      { weight: 4, arbitrary: fc.nat(Math.max(0, size - 1)) },
      { weight: 1, arbitrary: fc.nat(0xffff) },
    ),
    flags: fc.oneof(
      {
        weight: 4,
        arbitrary: fc
          .tuple(fc.nat(7), fc.boolean(), fc.boolean())
          .map(([low, a, u]) => low | (a ? VIRTQ_DESC_F_AVAIL : 0) | (u ? VIRTQ_DESC_F_USED : 0)),
      },
      { weight: 1, arbitrary: fc.nat(0xffff) },
    ),
  });

/** A packed queue whose ring and two event areas lie inside memory, aligned (§2.8.10.1). */
export interface PackedPlacement {
  readonly layout: MemoryLayout;
  readonly size: number;
  /** The ring (16-aligned, 16*size bytes). */
  readonly descTable: number;
  /** Driver Area and Device Area (4-aligned, 4 bytes each). */
  readonly availRing: number;
  readonly usedRing: number;
  /** Regions holding no ring: room for buffers and indirect tables. */
  readonly data: readonly RegionLayout[];
}

/**
 * Any queue size 1..maxSize (mostly tiny, so the wrap counters cross often; not only powers
 * of two), the areas beside the ring or in a region of their own, 1-3 data regions, the
 * first region at 0, anywhere, or ending near 2^53.
 */
export const packedPlacementArb = (
  opts: { readonly maxSize?: number; readonly maxDataSize?: number } = {},
): fc.Arbitrary<PackedPlacement> =>
  fc
    .record({
      size: fc.oneof(
        { weight: 5, arbitrary: fc.integer({ min: 1, max: 6 }) },
        { weight: 2, arbitrary: fc.integer({ min: 1, max: 64 }) },
        { weight: 1, arbitrary: fc.integer({ min: 1, max: opts.maxSize ?? 32768 }) },
      ),
      together: fc.boolean(),
      pad: fc.tuple(fc.nat(4), fc.nat(4), fc.nat(4), fc.nat(15)),
      data: fc.array(fc.integer({ min: 16, max: opts.maxDataSize ?? 8192 }), { minLength: 1, maxLength: 3 }),
      gaps: fc.array(fc.oneof(fc.constant(0), fc.nat(64)), { minLength: 5, maxLength: 5 }),
      anchor: fc.oneof(
        fc.constant(0),
        fc.nat(2 ** 36).map((x) => x * 16),
        fc.constant(-1),
      ),
    })
    .map((r): PackedPlacement => {
      const ringAt = PACKED_RING_ALIGN * r.pad[0];
      let areasAt = ringAt + packedRingBytes(r.size);
      // Driver Area, a gap, Device Area: each area 4-aligned and 4 bytes.
      const areas = EVENT_AREA_ALIGN * r.pad[1] + 2 * EVENT_AREA_SIZE + EVENT_AREA_ALIGN * r.pad[2];
      const sizes: number[] = [];
      if (r.together) sizes.push(areasAt + areas + r.pad[3]);
      else {
        sizes.push(areasAt + r.pad[3]);
        areasAt = 0;
        sizes.push(areas);
      }
      sizes.push(...r.data);
      let span = 0;
      for (const [i, s] of sizes.entries())
        span = Math.ceil(span / 16) * 16 + (i === 0 ? 0 : 16 * r.gaps[i]!) + s;
      let at =
        r.anchor === -1
          ? Math.floor((ADDRESS_LIMIT - span) / 16) * 16
          : Math.min(r.anchor, ADDRESS_LIMIT - span - 16);
      const layout: RegionLayout[] = [];
      for (const [i, s] of sizes.entries()) {
        at = Math.ceil(at / 16) * 16 + (i === 0 ? 0 : 16 * r.gaps[i]!);
        layout.push({ base: at, size: s });
        at += s;
      }
      const areaRegion = layout[r.together ? 0 : 1]!;
      const driver = areaRegion.base + areasAt + EVENT_AREA_ALIGN * r.pad[1];
      return {
        layout,
        size: r.size,
        descTable: layout[0]!.base + ringAt,
        availRing: driver,
        usedRing: driver + EVENT_AREA_SIZE + EVENT_AREA_ALIGN * r.pad[2],
        data: layout.slice(r.together ? 1 : 2),
      };
    });
