/**
 * Helpers for properties and tests of the packed virtqueue: the implementation's chains and
 * pop results in the reference model's shapes (so they compare with `toEqual` or `same`),
 * and raw packed descriptors a hostile driver might write.
 */
import fc from "fast-check";
import type { PackedDescriptorChain } from "../../impl/queue/packed-chain.ts";
import type * as P from "../../spec/packed-queue.ts";
import type { Result } from "../../spec/result.ts";
import { U64_MAX, type RegionLayout } from "./memory.ts";

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
      fc.integer({ min: 1, max: 16 }).map((n) => n * 16),
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
          .map(([low, a, u]) => low | (a ? 1 << 7 : 0) | (u ? 1 << 15 : 0)),
      },
      { weight: 1, arbitrary: fc.nat(0xffff) },
    ),
  });
