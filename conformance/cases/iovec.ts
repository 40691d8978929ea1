/** IoVec cases (IOV-*), with spec/iovec.ts over spec/queue.ts walks as the oracle. */
import fc from "fast-check";
import type { SpecMemory } from "../../spec/memory.ts";
import { createMemory } from "../../spec/memory.ts";
import { appendChain, emptyIoVecMut, loadReadable, readAt, writeAt } from "../../spec/iovec.ts";
import type { SpecIoVecMut } from "../../spec/iovec.ts";
import type { Json, Outcome } from "../protocol.ts";
import { canonical, toHex, u64 } from "../protocol.ts";
import type { ChainTableInput, RawDescriptor } from "./chain.ts";
import {
  BUFFER_AREA,
  CHAIN_REGION,
  REGION_END,
  chainTableArb,
  driverOrderedTable,
  driverValid,
  encodeDescriptors,
  setupTables,
  specWalk,
  tableAddr,
  writeStep,
} from "./chain.ts";
import { readBackSteps } from "./memory.ts";
import type { Step } from "./types.ts";
import { defineCase, expectErr, expectOk, expectSafe, step } from "./types.ts";
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";

/** Fills the buffer area with a pattern so reads have something to return. */
const fillBuffers = (mem: SpecMemory, seed: number): { step: Step; mem: SpecMemory } => {
  const bytes = new Uint8Array(Number(REGION_END - BUFFER_AREA));
  for (let i = 0; i < bytes.length; i++) bytes[i] = (Math.imul(i + 1, seed | 1) >>> 7) & 0xff;
  return writeStep(mem, BUFFER_AREA, bytes);
};

/** A table whose descriptors are mostly all-readable or all-writable chains (else reads and writes just fail). */
const iovTableArb = chainTableArb({ bigLen: false, nested: false, indirect: true }).chain((t) =>
  fc.constantFrom("read", "write", "mixed").map((mode) => ({
    ...t,
    table: t.table.map((d) =>
      mode === "mixed"
        ? d
        : { ...d, flags: mode === "write" ? d.flags | VIRTQ_DESC_F_WRITE : d.flags & ~VIRTQ_DESC_F_WRITE },
    ),
    indirect: {
      ...t.indirect,
      entries: t.indirect.entries.map((d) =>
        mode === "mixed"
          ? d
          : { ...d, flags: mode === "write" ? d.flags | VIRTQ_DESC_F_WRITE : d.flags & ~VIRTQ_DESC_F_WRITE },
      ),
    },
  })),
);

const chainArgs = (input: ChainTableInput, head: number) => ({
  descTable: u64(tableAddr(input)),
  queueSize: input.size,
  head,
});

interface ReadInput {
  readonly table: ChainTableInput;
  readonly seed: number;
  readonly reads: readonly { readonly head: number; readonly offset: number; readonly len: number }[];
}

const readArb: fc.Arbitrary<ReadInput> = iovTableArb.chain((table) =>
  fc.record({
    table: fc.constant(table),
    seed: fc.integer(),
    reads: fc.array(
      fc.record({
        head: fc.nat(table.size - 1),
        offset: fc.integer({ min: 0, max: 200 }),
        len: fc.integer({ min: 0, max: 200 }),
      }),
      { minLength: 1, maxLength: 6 },
    ),
  }),
);

/** The outcome of reading `descriptors` as one buffer (spec/iovec.ts loadReadable + readAt). */
const readOutcome = (
  mem: SpecMemory,
  descriptors: Parameters<typeof loadReadable>[1],
  offset: number,
  len: number,
): Outcome => {
  const iov = loadReadable(mem, descriptors);
  if (!iov.ok) return { ok: false, error: { _tag: iov.error._tag } };
  const got = readAt(mem, iov.value, offset, len, { capacity: len, steps: [] });
  return { ok: true, value: { length: iov.value.len, data: toHex(got.taken) } };
};

/** A zero-length descriptor needs no memory in rust-vmm (get_slices of 0 bytes is empty). */
const zeroLen = (d: { readonly len: number }): boolean => d.len === 0;

const readSteps = (raw: ReadInput): Step[] => {
  const input = { ...raw, table: driverOrderedTable(raw.table) };
  const s = setupTables(input.table);
  const f = fillBuffers(s.mem, input.seed);
  const mem = f.mem;
  const steps = [...s.steps, f.step];
  const table = tableAddr(input.table);
  for (const r of input.reads) {
    const args = { ...chainArgs(input.table, r.head), offset: r.offset, len: r.len };
    if (!driverValid(mem, table, input.table.size, r.head)) {
      // A chain that breaks a driver MUST: any answer but a crash.
      steps.push(step("iovec.read", args, expectSafe()));
      continue;
    }
    const w0 = specWalk(mem, table, input.table.size, r.head);
    if (w0 !== undefined) {
      // Firecracker IoVecBuffer refuses a chain with a device-writable descriptor
      // (WriteOnlyDescriptor) and a zero-length descriptor outside memory; rust-vmm's
      // descriptor_utils.rs Reader reads desc_chain.readable() only and maps 0 bytes as
      // nothing. VIRTIO 1.2 §2.7.5.1: a device SHOULD NOT read a device-writable buffer.
      const fcOut = readOutcome(mem, w0.descriptors, r.offset, r.len);
      const rvOut = readOutcome(
        mem,
        w0.descriptors.filter((d) => (d.flags & VIRTQ_DESC_F_WRITE) === 0 && !zeroLen(d)),
        r.offset,
        r.len,
      );
      if (canonical(fcOut as unknown as Json) !== canonical(rvOut as unknown as Json)) {
        steps.push(
          step(
            "iovec.read",
            args,
            { profiles: { firecracker: fcOut, "rust-vmm": rvOut, "cloud-hypervisor": rvOut } },
            ["IOV-LOAD-WRITE-ONLY"],
          ),
        );
        continue;
      }
    }
    const w = specWalk(mem, table, input.table.size, r.head);
    if (w === undefined) {
      steps.push(
        step(
          "iovec.read",
          { ...chainArgs(input.table, r.head), offset: r.offset, len: r.len },
          expectErr("HeadRefused"),
        ),
      );
      continue;
    }
    const iov = loadReadable(mem, w.descriptors);
    if (!iov.ok) {
      steps.push(
        step(
          "iovec.read",
          { ...chainArgs(input.table, r.head), offset: r.offset, len: r.len },
          expectErr(iov.error._tag),
        ),
      );
      continue;
    }
    const got = readAt(mem, iov.value, r.offset, r.len, { capacity: r.len, steps: [] });
    steps.push(
      step(
        "iovec.read",
        { ...chainArgs(input.table, r.head), offset: r.offset, len: r.len },
        expectOk({ length: iov.value.len, data: toHex(got.taken) }),
      ),
    );
  }
  return steps;
};

interface WriteInput {
  readonly table: ChainTableInput;
  readonly seed: number;
  readonly heads: readonly number[];
  readonly capacity: number;
  readonly offset: number;
  readonly data: Uint8Array;
}

const writeArb: fc.Arbitrary<WriteInput> = iovTableArb.chain((table) =>
  fc.record({
    table: fc.constant(table),
    seed: fc.integer(),
    heads: fc.array(fc.nat(table.size - 1), { minLength: 1, maxLength: 3 }),
    capacity: fc.oneof(fc.constant(256), fc.integer({ min: 1, max: 8 })),
    offset: fc.integer({ min: 0, max: 100 }),
    data: fc.uint8Array({ minLength: 0, maxLength: 200 }),
  }),
);

/** The expected outcome of iovec.write and the memory after it. */
const specWrite = (
  mem: SpecMemory,
  chains: readonly { table: bigint; size: number; head: number }[],
  capacity: number,
  offset: number,
  data: Uint8Array,
): { expect: Step["expect"]; mem: SpecMemory } => {
  let state: SpecIoVecMut = emptyIoVecMut(capacity);
  const parsed: Json[] = [];
  for (const c of chains) {
    const w = specWalk(mem, c.table, c.size, c.head);
    if (w === undefined) return { expect: expectErr("HeadRefused"), mem };
    const r = appendChain(state, mem, c.head, w.descriptors);
    if (!r.ok) return { expect: expectErr(r.error._tag), mem };
    state = r.value.state;
    parsed.push({
      headIndex: r.value.parsed.headIndex,
      length: r.value.parsed.length,
      nrIovecs: r.value.parsed.nrIovecs,
    });
  }
  const out = writeAt(mem, state, offset, data.length, { data, steps: [] });
  const written = out.result.ok ? out.result.value : 0;
  return { expect: expectOk({ length: state.len, written, parsed }), mem: out.memory };
};

const writeSteps = (input: WriteInput): Step[] => {
  const s = setupTables(input.table);
  const f = fillBuffers(s.mem, input.seed);
  const table = tableAddr(input.table);
  const chains = input.heads.map((head) => ({ table, size: input.table.size, head }));
  const w = specWrite(f.mem, chains, input.capacity, input.offset, input.data);
  const args = {
    chains: input.heads.map((h) => chainArgs(input.table, h)),
    capacity: input.capacity,
    offset: input.offset,
    data: toHex(input.data),
  };
  // A chain with a device-readable descriptor (or one that breaks a driver MUST): Firecracker
  // refuses it (ReadOnlyDescriptor), rust-vmm's Writer writes its writable descriptors only.
  // Either is safe; what is checked is that no byte outside the writable buffers changed.
  const walks = input.heads.map((h) => specWalk(f.mem, table, input.table.size, h));
  const plain = input.heads.every(
    (h, i) =>
      driverValid(f.mem, table, input.table.size, h) &&
      (walks[i]?.descriptors ?? []).every((d) => (d.flags & VIRTQ_DESC_F_WRITE) !== 0 && !zeroLen(d)),
  );
  if (!plain) {
    const holes = walks.flatMap((wk) =>
      (wk?.descriptors ?? [])
        .filter((d) => (d.flags & VIRTQ_DESC_F_WRITE) !== 0)
        .map((d) => [d.addr, d.len] as const),
    );
    return [...s.steps, f.step, step("iovec.write", args, expectSafe()), ...readBackSteps(f.mem, holes)];
  }
  return [
    ...s.steps,
    f.step,
    step("iovec.write", args, w.expect),
    // Nothing outside the writable buffers changed (no write into a readable descriptor).
    ...readBackSteps(w.mem),
  ];
};

/** IOV-LEN-U32 across chains: 16 MiB of memory, descriptors that all cover it, two chains of `per` each. */
interface OverflowInput {
  readonly per: number;
  readonly extra: number;
}

const BIG = { base: 0x100_0000n, size: 0x100_0000 };

const overflowSteps = (input: OverflowInput): Step[] => {
  const regions = [
    { base: CHAIN_REGION.base, bytes: new Uint8Array(CHAIN_REGION.size) },
    { base: BIG.base, bytes: new Uint8Array(BIG.size) },
  ];
  const m = createMemory(regions);
  if (!m.ok) throw new Error("overflow layout");
  const n = 2 * input.per;
  const ds: RawDescriptor[] = Array.from({ length: n }, (_, i) => ({
    addr: BIG.base,
    len: i === n - 1 ? BIG.size - input.extra : BIG.size,
    flags: VIRTQ_DESC_F_WRITE | ((i + 1) % input.per !== 0 ? VIRTQ_DESC_F_NEXT : 0),
    next: i + 1,
  }));
  const table = CHAIN_REGION.base;
  const w = writeStep(m.value, table, encodeDescriptors(ds));
  const chains = [0, input.per].map((head) => ({ table, size: n, head }));
  // The buffers overlap, so the expected memory is computed only when the write is refused.
  const sw = specWrite(w.mem, chains, 256, 0, new Uint8Array(4));
  return [
    step(
      "memory.create",
      {
        regions: [
          { base: u64(CHAIN_REGION.base), size: CHAIN_REGION.size },
          { base: u64(BIG.base), size: BIG.size },
        ],
      },
      expectOk(null),
    ),
    w.step,
    step(
      "iovec.write",
      {
        chains: chains.map((c) => ({ descTable: u64(c.table), queueSize: c.size, head: c.head })),
        capacity: 256,
        offset: 0,
        data: "01020304",
      },
      sw.expect,
    ),
  ];
};

export const iovecCases = [
  defineCase<ReadInput>({
    id: "iovec.read",
    title:
      "reading a readable chain at an offset returns min(len, length - offset) bytes in chain order; writable or outside-memory descriptors are errors",
    rules: [
      "IOV-READ-LEN",
      "IOV-LOAD-WRITE-ONLY",
      "IOV-SEG-MEMORY",
      "IOV-OVERLAP-ORDER",
      "IOV-CHAIN-END",
      "IOV-CHECK-ORDER",
    ],
    setupRules: ["IOV-READ-LEN", "IOV-SEG-MEMORY", "IOV-OVERLAP-ORDER", "IOV-CHAIN-END", "IOV-CHECK-ORDER"],
    level: "must",
    ops: ["memory.create", "memory.write", "iovec.read"],
    arb: readArb,
    examples: [
      {
        // Readable then writable: Firecracker refuses the read, rust-vmm reads the readable part.
        table: {
          size: 2,
          tableOffset: 0,
          table: [
            { addr: BUFFER_AREA, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 1 },
            { addr: BUFFER_AREA + 64n, len: 8, flags: VIRTQ_DESC_F_WRITE, next: 0 },
          ],
          indirect: { offset: 0, entries: [{ addr: BUFFER_AREA, len: 0, flags: 0, next: 0 }], badLen: null },
        },
        seed: 3,
        reads: [{ head: 0, offset: 2, len: 16 }],
      },
    ],
    steps: readSteps,
    numRuns: 30,
  }),
  defineCase<WriteInput>({
    id: "iovec.write",
    title:
      "writing writable chains fills min(n, length - offset) bytes in chain order and changes nothing else",
    rules: [
      "IOV-WRITE-LEN",
      "IOV-MUT-READ-ONLY",
      "IOV-SEG-MEMORY",
      "IOV-DEQUE-CAPACITY",
      "IOV-APPEND-RESULT",
      "IOV-OVERLAP-ORDER",
    ],
    level: "safety",
    ops: ["memory.create", "memory.write", "memory.read", "iovec.write"],
    arb: writeArb,
    examples: [
      {
        // A readable descriptor before a writable one: nothing may land in the readable one.
        table: {
          size: 2,
          tableOffset: 0,
          table: [
            { addr: BUFFER_AREA, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 1 },
            { addr: BUFFER_AREA + 64n, len: 8, flags: VIRTQ_DESC_F_WRITE, next: 0 },
          ],
          indirect: { offset: 0, entries: [{ addr: BUFFER_AREA, len: 0, flags: 0, next: 0 }], badLen: null },
        },
        seed: 5,
        heads: [0],
        capacity: 256,
        offset: 0,
        data: new Uint8Array(16).fill(0xab),
      },
    ],
    steps: writeSteps,
    numRuns: 30,
  }),
  defineCase<OverflowInput>({
    id: "iovec.len-u32",
    title:
      "chains appended to one writable buffer never total more than 2^32 - 1 bytes (OverflowedDescriptor)",
    rules: ["IOV-LEN-U32"],
    level: "safety",
    ops: ["memory.create", "memory.write", "iovec.write"],
    arb: fc.record({ per: fc.constant(128), extra: fc.integer({ min: 0, max: 2 }) }),
    examples: [
      { per: 128, extra: 0 },
      { per: 128, extra: 1 },
    ],
    steps: overflowSteps,
    numRuns: 2,
  }),
];
