/**
 * The reference model's memory is persistent: a write records itself over the memory it
 * was given (spec/memory.ts shares the unwritten bytes), so every version must still read
 * as it did, however many writes were stacked on it, folded into copies, or assembled by
 * reading `.bytes`; and `firstDifference` against the live bytes below must find exactly
 * the first byte a naive comparison finds.
 */
import fc from "fast-check";
import { describe } from "vitest";
import * as S from "../spec/memory.ts";
import type { SpecMemory } from "../spec/memory.ts";
import { property } from "./harness.ts";

type Op =
  | { readonly kind: "bytes"; readonly at: number; readonly data: Uint8Array }
  | { readonly kind: "u16" | "u32"; readonly at: number; readonly value: number }
  | { readonly kind: "u64"; readonly at: number; readonly value: bigint }
  /** Read `.bytes` of the newest version (assembles it). */
  | { readonly kind: "flatten" }
  /** Go on from an older version (branching). */
  | { readonly kind: "back"; readonly to: number };

const BASE = 0x1000n;

const opArb = (size: number): fc.Arbitrary<Op> => {
  const at = fc.integer({ min: 0, max: size - 1 });
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant("bytes" as const),
        at,
        data: fc.uint8Array({ maxLength: 40 }),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constantFrom("u16" as const, "u32" as const),
        at,
        value: fc.integer({ min: -1, max: 0xffffffff }),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("u64" as const),
        at,
        value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: "flatten" as const }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("back" as const), to: fc.nat() }) },
  );
};

const caseArb = fc.integer({ min: 1, max: 700 }).chain((size) =>
  fc.record({
    size: fc.constant(size),
    init: fc.uint8Array({ minLength: size, maxLength: size }),
    ops: fc.array(opArb(size), { minLength: 1, maxLength: 120 }),
  }),
);

/** The little-endian bytes of value, `width` of them (mod 2^(8 width)). */
const le = (value: bigint, width: number): Uint8Array => {
  const out = new Uint8Array(width);
  let v = BigInt.asUintN(8 * width, value);
  for (let i = 0; i < width; i++, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
};

const naiveFirst = (a: Uint8Array, b: Uint8Array): number => {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
};

const fail = (what: string): never => {
  throw new Error(what);
};

describe("spec memory: persistent writes", () => {
  property(
    "memoryVersionsPersist",
    ["MEM-IMMUTABLE", "MEM-LE"],
    fc.property(caseArb, ({ size, init, ops }) => {
      // The live bytes the first version is a view of, as the oracle's model is.
      const live = init.slice();
      const versions: { mem: SpecMemory; want: Uint8Array }[] = [
        { mem: { regions: [{ base: BASE, bytes: live }] }, want: init.slice() },
      ];
      let cur = 0;
      for (const op of ops) {
        const v = versions[cur]!;
        if (op.kind === "flatten") {
          void v.mem.regions[0]!.bytes;
          continue;
        }
        if (op.kind === "back") {
          cur = op.to % versions.length;
          continue;
        }
        const width =
          op.kind === "bytes" ? op.data.length : op.kind === "u16" ? 2 : op.kind === "u32" ? 4 : 8;
        const data =
          op.kind === "bytes"
            ? op.data
            : le(typeof op.value === "bigint" ? op.value : BigInt(op.value), width);
        const addr = BASE + BigInt(op.at);
        const r =
          op.kind === "bytes"
            ? S.writeBytes(v.mem, addr, op.data)
            : op.kind === "u16"
              ? S.writeU16(v.mem, addr, op.value)
              : op.kind === "u32"
                ? S.writeU32(v.mem, addr, op.value)
                : S.writeU64(v.mem, addr, BigInt(op.value));
        const fits = op.at + width <= size;
        if (r.ok !== fits) fail(`write ${width} bytes at ${op.at} of ${size}: ok ${r.ok}`);
        if (!r.ok) continue;
        const want = v.want.slice();
        want.set(data, op.at);
        if (op.kind === "bytes") op.data.fill(0xa5); // the caller's array is not the memory's
        versions.push({ mem: r.value, want });
        cur = versions.length - 1;
        // Every version, old ones included, reads as written (whole, and word by word).
        for (const [i, x] of versions.entries()) {
          const got = S.readBytes(x.mem, BASE, size);
          if (!got.ok) return fail(`version ${i}: whole read refused`);
          const k = naiveFirst(got.value, x.want);
          if (k >= 0) fail(`version ${i}: byte ${k} reads ${got.value[k]}, want ${x.want[k]}`);
          const d = S.firstDifference(x.mem.regions[0]!, live);
          if (d !== naiveFirst(x.want, live))
            fail(`version ${i}: firstDifference ${d}, naive ${naiveFirst(x.want, live)}`);
          const w = Math.min(8, size);
          const at = op.at % (size - w + 1);
          const word = S.readU64(x.mem, BASE + BigInt(at));
          if (w === 8) {
            let want64 = 0n;
            for (let b = 7; b >= 0; b--) want64 = (want64 << 8n) | BigInt(x.want[at + b]!);
            if (!word.ok || word.value !== want64)
              fail(`version ${i}: u64 at ${at} reads ${word.ok ? word.value : "error"}, want ${want64}`);
          }
        }
      }
      // The live bytes were never written.
      if (naiveFirst(live, init) >= 0) fail("a write reached the bytes below");
    }),
    { numRuns: 150 },
  );
});
