/** Guest-memory cases (MEM-*), with spec/memory.ts as the oracle. */
import fc from "fast-check";
import {
  ADDRESS_LIMIT,
  U64_MAX,
  createMemory,
  readBytes,
  writeBytes,
  type SpecMemory,
} from "../../spec/memory.ts";
import { toHex, u64 } from "../protocol.ts";
import type { Expect, Step } from "./types.ts";
import { defineCase, expectErr, expectOk, step } from "./types.ts";

export interface RegionInput {
  readonly base: bigint;
  readonly size: number;
}

/** Disjoint regions: gaps (possibly 0, so regions touch) and sizes; optionally one just under 2^53. */
export const layoutArb: fc.Arbitrary<readonly RegionInput[]> = fc
  .record({
    first: fc.bigInt({ min: 0n, max: 0x10000n }),
    parts: fc.array(
      fc.record({
        gap: fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: 4096n })),
        size: fc.integer({ min: 1, max: 512 }),
      }),
      {
        minLength: 1,
        maxLength: 3,
      },
    ),
    high: fc.option(fc.integer({ min: 1, max: 256 }), { freq: 4 }),
  })
  .map(({ first, parts, high }) => {
    const out: RegionInput[] = [];
    let at = first;
    for (const p of parts) {
      at += out.length === 0 ? 0n : p.gap;
      out.push({ base: at, size: p.size });
      at += BigInt(p.size);
    }
    if (high !== null) out.push({ base: ADDRESS_LIMIT - BigInt(high), size: high });
    return out;
  });

export const createArgs = (regions: readonly RegionInput[]) => ({
  regions: regions.map((r) => ({ base: u64(r.base), size: r.size })),
});

/** The spec memory for a layout known to be valid. */
export const specMemory = (regions: readonly RegionInput[]): SpecMemory => {
  const m = createMemory(regions.map((r) => ({ base: r.base, bytes: new Uint8Array(r.size) })));
  if (!m.ok) throw new Error(`invalid layout in a case generator: ${m.error._tag}`);
  return m.value;
};

/** An address near a region edge, or a far one (above 2^53, near 2^64). */
const addrArb = (regions: readonly RegionInput[]): fc.Arbitrary<bigint> =>
  fc.oneof(
    {
      weight: 8,
      arbitrary: fc
        .tuple(fc.nat(regions.length - 1), fc.integer({ min: -8, max: 8 }), fc.boolean())
        .map(([i, d, end]) => {
          const r = regions[i]!;
          const a = (end ? r.base + BigInt(r.size) : r.base) + BigInt(d);
          return a < 0n ? 0n : a;
        }),
    },
    { weight: 1, arbitrary: fc.bigInt({ min: U64_MAX - 16n, max: U64_MAX }) },
    { weight: 1, arbitrary: fc.bigInt({ min: ADDRESS_LIMIT - 8n, max: ADDRESS_LIMIT + 8n }) },
  );

type MemOp =
  | { readonly kind: "read"; readonly addr: bigint; readonly len: number }
  | { readonly kind: "write"; readonly addr: bigint; readonly data: Uint8Array };

const memOpArb = (regions: readonly RegionInput[]): fc.Arbitrary<MemOp> =>
  fc.oneof(
    fc.record({
      kind: fc.constant("read" as const),
      addr: addrArb(regions),
      len: fc.integer({ min: 0, max: 24 }),
    }),
    fc.record({
      kind: fc.constant("write" as const),
      addr: addrArb(regions),
      data: fc.uint8Array({ minLength: 0, maxLength: 24 }),
    }),
  );

interface AccessInput {
  readonly regions: readonly RegionInput[];
  readonly ops: readonly MemOp[];
}

const accessArb: fc.Arbitrary<AccessInput> = layoutArb.chain((regions) =>
  fc.record({
    regions: fc.constant(regions),
    ops: fc.array(memOpArb(regions), { minLength: 1, maxLength: 12 }),
  }),
);

const tagOf = (e: { readonly _tag: string }): Expect => expectErr(e._tag);

/**
 * After a sequence of accesses, every region reads back as the spec says (nothing written
 * outside), except the `holes` ([addr, len]: bytes whose value is a VMM's choice, checked by
 * their own step).
 */
export const readBackSteps = (
  mem: SpecMemory,
  holes: readonly (readonly [bigint, number])[] = [],
): Step[] => {
  const out: Step[] = [];
  for (const r of mem.regions) {
    const end = r.base + BigInt(r.bytes.length);
    let at = r.base;
    const cuts = holes
      .filter(([a, n]) => a < end && a + BigInt(n) > r.base)
      .sort((x, y) => (x[0] < y[0] ? -1 : 1));
    for (const [a, n] of [...cuts, [end, 0] as const]) {
      if (a > at) {
        const data = r.bytes.subarray(Number(at - r.base), Number(a - r.base));
        out.push(step("memory.read", { addr: u64(at), len: data.length }, expectOk({ data: toHex(data) })));
      }
      const next = a + BigInt(n);
      if (next > at) at = next;
    }
  }
  return out;
};

const accessSteps = (input: AccessInput): Step[] => {
  let mem = specMemory(input.regions);
  const steps: Step[] = [step("memory.create", createArgs(input.regions), expectOk(null))];
  for (const op of input.ops) {
    if (op.kind === "read") {
      const r = readBytes(mem, op.addr, op.len);
      steps.push(
        step(
          "memory.read",
          { addr: u64(op.addr), len: op.len },
          r.ok ? expectOk({ data: toHex(r.value) }) : tagOf(r.error),
        ),
      );
    } else {
      const r = writeBytes(mem, op.addr, op.data);
      if (r.ok) mem = r.value;
      steps.push(
        step(
          "memory.write",
          { addr: u64(op.addr), data: toHex(op.data) },
          r.ok ? expectOk(null) : tagOf(r.error),
        ),
      );
    }
  }
  return [...steps, ...readBackSteps(mem)];
};

const createLayoutArb: fc.Arbitrary<readonly RegionInput[]> = fc.array(
  fc.record({
    base: fc.oneof(
      fc.bigInt({ min: 0n, max: 0x2000n }),
      fc.bigInt({ min: ADDRESS_LIMIT - 0x100n, max: U64_MAX }),
    ),
    size: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 0x1000 })),
  }),
  { minLength: 0, maxLength: 4 },
);

const createSteps = (regions: readonly RegionInput[]): Step[] => {
  const m = createMemory(regions.map((r) => ({ base: r.base, bytes: new Uint8Array(r.size) })));
  return [step("memory.create", createArgs(regions), m.ok ? expectOk(null) : tagOf(m.error))];
};

export const memoryCases = [
  defineCase<readonly RegionInput[]>({
    id: "memory.create",
    title: "a layout is accepted exactly when its regions are non-empty, disjoint and below 2^53",
    rules: ["MEM-REGION-NONEMPTY", "MEM-REGION-DISJOINT", "MEM-REGION-LIMIT"],
    level: "must",
    ops: ["memory.create"],
    arb: createLayoutArb,
    examples: [
      [{ base: 0n, size: 0 }],
      [
        { base: 0n, size: 16 },
        { base: 8n, size: 16 },
      ],
      [{ base: ADDRESS_LIMIT - 1n, size: 2 }],
    ],
    steps: createSteps,
    numRuns: 60,
  }),
  defineCase<AccessInput>({
    id: "memory.access",
    title:
      "reads and writes touch exactly [addr, addr+len) inside one region; others are errors and change nothing",
    rules: ["MEM-RANGE-ONE-REGION", "MEM-ADDR-U64"],
    level: "safety",
    ops: ["memory.create", "memory.read", "memory.write"],
    arb: accessArb,
    examples: [
      {
        regions: [
          { base: 0x1000n, size: 16 },
          { base: 0x1010n, size: 16 },
        ],
        ops: [
          { kind: "write", addr: 0x100cn, data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) },
          { kind: "read", addr: U64_MAX, len: 2 },
          { kind: "read", addr: 0x1010n, len: 16 },
          { kind: "read", addr: 0x1020n, len: 0 },
        ],
      },
    ],
    steps: accessSteps,
    numRuns: 60,
  }),
];
