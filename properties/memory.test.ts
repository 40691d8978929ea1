/**
 * Guest memory: the implementation (impl/memory) refines the reference model (spec/memory)
 * on every read, write and locate, for layouts of several regions (adjacent ones, ones
 * ending at 2^53) and any u64 address; and no access ever lands outside a region.
 */
import fc from "fast-check";
import { describe } from "vitest";
import { GuestMemory } from "../impl/memory/guest-memory.ts";
import * as S from "../spec/memory.ts";
import type { SpecMemory } from "../spec/memory.ts";
import { property } from "./harness.ts";
import {
  addressArb,
  buildMemories,
  fillBytes,
  inLayout,
  lengthArb,
  layoutArb,
  type MemoryLayout,
} from "./arbitraries/memory.ts";

type Width = 1 | 2 | 4 | 8;

type MemOp =
  | { readonly kind: "read"; readonly width: Width; readonly addr: bigint }
  | { readonly kind: "write"; readonly width: Width; readonly addr: bigint; readonly value: bigint }
  | { readonly kind: "readBytes"; readonly addr: bigint; readonly len: number }
  | { readonly kind: "writeBytes"; readonly addr: bigint; readonly data: Uint8Array }
  | { readonly kind: "sliceWrite"; readonly addr: bigint; readonly data: Uint8Array }
  | { readonly kind: "locate"; readonly addr: bigint; readonly len: bigint };

const widthArb = fc.constantFrom<Width>(1, 2, 4, 8);

const opArb = (layout: MemoryLayout): fc.Arbitrary<MemOp> => {
  const addr = addressArb(layout);
  const data = fc.uint8Array({ maxLength: 24 });
  return fc.oneof(
    fc.record({ kind: fc.constant("read" as const), width: widthArb, addr }),
    fc.record({
      kind: fc.constant("write" as const),
      width: widthArb,
      addr,
      value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    }),
    fc.record({ kind: fc.constant("readBytes" as const), addr, len: fc.integer({ min: 0, max: 40 }) }),
    fc.record({ kind: fc.constant("writeBytes" as const), addr, data }),
    fc.record({ kind: fc.constant("sliceWrite" as const), addr, data }),
    fc.record({ kind: fc.constant("locate" as const), addr, len: lengthArb(layout) }),
  );
};

const scenarioArb = layoutArb({ maxRegions: 5, maxRegionSize: 512, maxGap: 64 }).chain((layout) =>
  fc.record({
    layout: fc.constant(layout),
    seed: fc.integer(),
    ops: fc.array(opArb(layout), { minLength: 1, maxLength: 40 }),
  }),
);

const implRead = (m: GuestMemory, width: Width, addr: number): bigint | undefined => {
  switch (width) {
    case 1: {
      const v = m.readU8(addr);
      return v < 0 ? undefined : BigInt(v);
    }
    case 2: {
      const v = m.readU16(addr);
      return v < 0 ? undefined : BigInt(v);
    }
    case 4: {
      const v = m.readU32(addr);
      return v < 0 ? undefined : BigInt(v);
    }
    case 8:
      return m.readU64(addr);
  }
};

const implWrite = (m: GuestMemory, width: Width, addr: number, value: bigint): boolean => {
  const v = BigInt.asUintN(width * 8, value);
  switch (width) {
    case 1:
      return m.writeU8(addr, Number(v));
    case 2:
      return m.writeU16(addr, Number(v));
    case 4:
      return m.writeU32(addr, Number(v));
    case 8:
      return m.writeU64(addr, v);
  }
};

const specRead = (m: SpecMemory, width: Width, addr: bigint): S.MemoryError | bigint => {
  const r =
    width === 1
      ? S.readU8(m, addr)
      : width === 2
        ? S.readU16(m, addr)
        : width === 4
          ? S.readU32(m, addr)
          : S.readU64(m, addr);
  return r.ok ? BigInt(r.value) : r.error;
};

const specWrite = (m: SpecMemory, width: Width, addr: bigint, value: bigint) => {
  const v = BigInt.asUintN(width * 8, value);
  return width === 1
    ? S.writeU8(m, addr, Number(v))
    : width === 2
      ? S.writeU16(m, addr, Number(v))
      : width === 4
        ? S.writeU32(m, addr, Number(v))
        : S.writeU64(m, addr, v);
};

const fail = (what: string): never => {
  throw new Error(what);
};

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

const sameMemory = (impl: GuestMemory, spec: SpecMemory): boolean =>
  impl.regions.length === spec.regions.length &&
  impl.regions.every((r, i) => {
    const s = spec.regions[i]!;
    return BigInt(r.base) === s.base && sameBytes(r.bytes, s.bytes);
  });

/** Runs one operation on both memories, compares results; returns the new spec memory. */
const step = (impl: GuestMemory, spec: SpecMemory, op: MemOp): SpecMemory => {
  // The implementation takes addresses as numbers: exact below 2^53, rounded (but >= 2^53) above.
  const n = Number(op.addr);
  switch (op.kind) {
    case "read": {
      const got = implRead(impl, op.width, n);
      const want = specRead(spec, op.width, op.addr);
      if (typeof want === "bigint" ? got !== want : got !== undefined)
        fail(`read u${op.width * 8} @${op.addr}: impl ${got}, spec ${String(want)}`);
      return spec;
    }
    case "write": {
      const okImpl = implWrite(impl, op.width, n, op.value);
      const next = specWrite(spec, op.width, op.addr, op.value);
      if (okImpl !== next.ok) fail(`write u${op.width * 8} @${op.addr}: impl ${okImpl}, spec ${next.ok}`);
      return next.ok ? next.value : spec;
    }
    case "readBytes": {
      const want = S.readBytes(spec, op.addr, op.len);
      const got = impl.tryRead(op.addr, op.len);
      if (got.ok !== want.ok) fail(`tryRead @${op.addr}+${op.len}: ok ${got.ok} vs ${want.ok}`);
      if (got.ok && want.ok && !sameBytes(got.value, want.value)) fail(`tryRead @${op.addr}: bytes differ`);
      if (!got.ok && !want.ok && JSON.stringify(got.error, big) !== JSON.stringify(want.error, big))
        fail(`tryRead error ${JSON.stringify(got.error, big)} vs ${JSON.stringify(want.error, big)}`);
      // The sentinel form agrees with the checked form.
      const dst = new Uint8Array(op.len);
      if (impl.readInto(n, dst) !== want.ok) fail(`readInto @${op.addr} disagrees`);
      if (want.ok && !sameBytes(dst, want.value)) fail(`readInto @${op.addr}: bytes differ`);
      return spec;
    }
    case "writeBytes": {
      const next = S.writeBytes(spec, op.addr, op.data);
      const got = impl.tryWrite(op.addr, op.data);
      if (got.ok !== next.ok) fail(`tryWrite @${op.addr}: ok ${got.ok} vs ${next.ok}`);
      if (!got.ok && !next.ok && JSON.stringify(got.error, big) !== JSON.stringify(next.error, big))
        fail(`tryWrite error ${JSON.stringify(got.error, big)} vs ${JSON.stringify(next.error, big)}`);
      return next.ok ? next.value : spec;
    }
    case "sliceWrite": {
      // A write through a zero-copy slice is a write to guest memory (MEM-ZERO-COPY).
      const next = S.writeBytes(spec, op.addr, op.data);
      const view = impl.slice(n, op.data.length, true);
      if ((view !== undefined) !== next.ok)
        fail(`slice @${op.addr}+${op.data.length}: ${view !== undefined}`);
      view?.set(op.data);
      return next.ok ? next.value : spec;
    }
    case "locate": {
      const want = S.locate(spec, op.addr, op.len);
      const got = impl.tryLocate(op.addr, op.len, false);
      const idx = impl.locate(n, Number(op.len), false);
      if (got.ok !== want.ok) fail(`tryLocate @${op.addr}+${op.len}: ok ${got.ok} vs ${want.ok}`);
      if (want.ok) {
        if (idx !== want.value.region) fail(`locate @${op.addr}: region ${idx} vs ${want.value.region}`);
        if (
          got.ok &&
          (got.value.region !== impl.regions[want.value.region] || got.value.offset !== want.value.offset)
        )
          fail(`tryLocate @${op.addr}: wrong region or offset`);
      } else {
        if (idx !== -1) fail(`locate @${op.addr}+${op.len}: region ${idx}, spec refuses`);
        if (!got.ok && JSON.stringify(got.error, big) !== JSON.stringify(want.error, big))
          fail(`tryLocate error ${JSON.stringify(got.error, big)} vs ${JSON.stringify(want.error, big)}`);
      }
      return spec;
    }
  }
};

const big = (_k: string, v: unknown): unknown => (typeof v === "bigint" ? `${v}n` : v);

describe("guest memory properties", () => {
  property(
    "memoryImplRefinesSpec",
    ["MEM-RANGE-ONE-REGION", "MEM-ADDR-U64", "MEM-LE", "MEM-REGION-LIMIT"],
    fc.property(scenarioArb, ({ layout, seed, ops }) => {
      const { impl } = buildMemories(layout, seed);
      let spec = buildMemories(layout, seed).spec;
      for (const op of ops) {
        spec = step(impl, spec, op);
        if (!sameMemory(impl, spec)) fail(`memory differs after ${op.kind} @${op.addr}`);
      }
    }),
    { numRuns: 500 },
  );

  property(
    "memoryLocateAgreesWithLayout",
    ["MEM-RANGE-ONE-REGION", "MEM-ADDR-U64"],
    fc.property(
      layoutArb({ maxRegions: 6 }).chain((layout) =>
        fc.tuple(
          fc.constant(layout),
          fc.array(fc.tuple(addressArb(layout), lengthArb(layout)), { maxLength: 30 }),
        ),
      ),
      ([layout, ranges]) => {
        const { impl } = buildMemories(layout);
        for (const [addr, len] of ranges) {
          const expected = inLayout(layout, addr, len);
          const got = impl.tryLocate(addr, len, false);
          if (got.ok !== expected) fail(`tryLocate @${addr}+${len}: ${got.ok}, layout says ${expected}`);
          // Overflow past 2^64 is its own error, whatever the layout (MEM-ADDR-U64).
          const overflows = addr + len > 1n << 64n;
          if (!got.ok && (got.error._tag === "GuestAddressOverflow") !== overflows)
            fail(`tryLocate @${addr}+${len}: ${got.error._tag}`);
          if (impl.locate(Number(addr), Number(len), true) >= 0 !== expected)
            fail(`locate @${addr}+${len} disagrees with the layout`);
        }
      },
    ),
    { numRuns: 500 },
  );

  /**
   * Regions are windows into one caller-owned buffer with guard bytes around each. After any
   * sequence of accesses the guards are intact (nothing written outside a region), every
   * range `locate` accepts lies inside the region it names, and the caller's buffer holds
   * exactly what the reference model says (external memory used in place).
   */
  property(
    "noAccessOutsideRegions",
    ["MEM-RANGE-ONE-REGION", "MEM-ZERO-COPY", "MEM-REGION-DISJOINT"],
    fc.property(scenarioArb, ({ layout, seed, ops }) => {
      const guard = 16;
      let total = 0;
      const offsets = layout.map((r) => {
        const at = total + guard;
        total = at + r.size;
        return at;
      });
      total += guard;
      const backing = new Uint8Array(total);
      fillBytes(backing, seed);
      const pristine = Uint8Array.from(backing);
      const impl = GuestMemory.of(
        layout.map((r, i) => ({ base: r.base, bytes: backing.subarray(offsets[i]!, offsets[i]! + r.size) })),
      );
      const specBuilt = S.createMemory(
        layout.map((r, i) => ({
          base: BigInt(r.base),
          bytes: backing.slice(offsets[i]!, offsets[i]! + r.size),
        })),
      );
      if (!specBuilt.ok) return fail("layout rejected by spec");
      let spec = specBuilt.value;
      const locate = impl.locate.bind(impl);
      impl.locate = (addr: number, len: number, write: boolean): number => {
        const i = locate(addr, len, write);
        if (i >= 0) {
          const r = impl.regions[i]!;
          if (!(
            addr >= r.base &&
            len >= 0 &&
            addr + len <= r.end &&
            Number.isInteger(addr) &&
            Number.isInteger(len)
          ))
            fail(`locate(${addr}, ${len}) named region ${i} [${r.base}, ${r.end}) which does not hold it`);
        }
        return i;
      };
      for (const op of ops) spec = step(impl, spec, op);
      let at = 0;
      for (const [i, r] of layout.entries()) {
        const start = offsets[i]!;
        if (!sameBytes(backing.subarray(at, start), pristine.subarray(at, start)))
          fail(`bytes before region ${i} (base ${r.base}) were written`);
        if (!sameBytes(backing.subarray(start, start + r.size), spec.regions[i]!.bytes))
          fail(`region ${i} in the caller's buffer differs from the model`);
        at = start + r.size;
      }
      if (!sameBytes(backing.subarray(at), pristine.subarray(at)))
        fail("bytes after the last region were written");
    }),
    { numRuns: 500 },
  );

  property(
    "memoryBuildAgreesWithSpec",
    ["MEM-REGION-NONEMPTY", "MEM-REGION-DISJOINT", "MEM-REGION-LIMIT"],
    fc.property(
      fc.oneof(
        // Anywhere, including bases that are not u64 or end past 2^53.
        fc.array(
          fc.record({
            base: fc.oneof(
              fc.bigInt({ min: 0n, max: 256n }),
              fc.bigInt({ min: (1n << 53n) - 64n, max: (1n << 53n) + 8n }),
              fc.bigInt({ min: -4n, max: (1n << 64n) - 1n }),
            ),
            size: fc.integer({ min: 0, max: 64 }),
          }),
          { maxLength: 5 },
        ),
        // Each region a few bytes before, at or after the end of the previous one, then shuffled.
        fc
          .tuple(
            fc.bigInt({ min: 0n, max: 1n << 52n }),
            fc.array(
              fc.record({ delta: fc.integer({ min: -3, max: 3 }), size: fc.integer({ min: 0, max: 8 }) }),
              {
                minLength: 2,
                maxLength: 5,
              },
            ),
          )
          .chain(([start, segments]) => {
            let at = start;
            const regions = segments.map((s) => {
              const base = at + BigInt(s.delta) < 0n ? 0n : at + BigInt(s.delta);
              at = base + BigInt(s.size);
              return { base, size: s.size };
            });
            return fc.shuffledSubarray(regions, { minLength: regions.length });
          }),
      ),
      (regions) => {
        const input = regions.map((r) => ({ base: r.base, bytes: new Uint8Array(r.size) }));
        const got = GuestMemory.create(input);
        const want = S.createMemory(input);
        if (got.ok !== want.ok) fail(`create: impl ${got.ok}, spec ${want.ok}`);
        if (!got.ok && !want.ok && JSON.stringify(got.error, big) !== JSON.stringify(want.error, big))
          fail(`create error ${JSON.stringify(got.error, big)} vs ${JSON.stringify(want.error, big)}`);
        if (got.ok && want.ok) {
          if (got.value.regions.some((r, i) => BigInt(r.base) !== want.value.regions[i]!.base))
            fail("regions sorted differently");
          // Built over the caller's bytes, not copies (MEM-ZERO-COPY).
          for (const r of got.value.regions)
            if (!input.some((x) => x.bytes === r.bytes)) fail("a region was copied");
        }
      },
    ),
    { numRuns: 500 },
  );
});
