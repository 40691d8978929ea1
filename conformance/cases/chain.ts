/**
 * Descriptor-chain cases (CHAIN-*), with spec/queue.ts checkedNew + walkChain as the oracle,
 * and small Firecracker / rust-vmm walk models for the profile cases (impl/queue/README.md
 * lists where those two legitimately differ).
 */
import fc from "fast-check";
import type { SpecMemory } from "../../spec/memory.ts";
import { createMemory, writeBytes } from "../../spec/memory.ts";
import {
  checkedNew,
  readDescriptor,
  walkChain,
  type SpecDescriptor,
  type SpecWalk,
} from "../../spec/queue.ts";
import type { Outcome } from "../protocol.ts";
import { toHex, u64 } from "../protocol.ts";
import type { Step } from "./types.ts";
import { acceptedWalkJson, descriptorJson } from "../walk-json.ts";
import { defineCase, expectOk, expectSafe, step } from "./types.ts";
import {
  DESC_SIZE,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  descOffset,
  descTableBytes,
  writeDescriptor,
} from "../../wire/split.ts";

export interface RawDescriptor {
  readonly addr: bigint;
  readonly len: number;
  readonly flags: number;
  readonly next: number;
}

export const encodeDescriptors = (ds: readonly RawDescriptor[]): Uint8Array => {
  const out = new Uint8Array(descTableBytes(ds.length));
  const v = new DataView(out.buffer);
  ds.forEach((d, i) => writeDescriptor(v, descOffset(i), d));
  return out;
};

/** The memory every chain case uses: one 32 KiB region at 0x10000. */
export const CHAIN_REGION = { base: 0x10000n, size: 0x8000 };
export const REGION_END = CHAIN_REGION.base + BigInt(CHAIN_REGION.size);
/** Where tables go: the main table at +0 (+ a misalignment), indirect tables at +0x2000.. */
export const TABLE_AREA = CHAIN_REGION.base;
export const INDIRECT_AREA = CHAIN_REGION.base + 0x2000n;
export const BUFFER_AREA = CHAIN_REGION.base + 0x4000n;

export const memoryCreateStep = (): Step =>
  step(
    "memory.create",
    { regions: [{ base: u64(CHAIN_REGION.base), size: CHAIN_REGION.size }] },
    expectOk(null),
  );

export const emptyChainMemory = (): SpecMemory => {
  const m = createMemory([{ base: CHAIN_REGION.base, bytes: new Uint8Array(CHAIN_REGION.size) }]);
  if (!m.ok) throw new Error("chain region");
  return m.value;
};

/** A memory.write step and the spec memory after it (which must succeed). */
export const writeStep = (
  mem: SpecMemory,
  addr: bigint,
  data: Uint8Array,
): { step: Step; mem: SpecMemory } => {
  const r = writeBytes(mem, addr, data);
  return {
    step: step(
      "memory.write",
      { addr: u64(addr), data: toHex(data) },
      r.ok ? expectOk(null) : { outcome: { ok: false, error: { _tag: r.error._tag } } },
    ),
    mem: r.ok ? r.value : mem,
  };
};

const bufAddrArb: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 6, arbitrary: fc.bigInt({ min: BUFFER_AREA, max: REGION_END - 64n }) },
  { weight: 1, arbitrary: fc.bigInt({ min: REGION_END - 8n, max: REGION_END + 8n }) },
  { weight: 1, arbitrary: fc.bigInt({ min: (1n << 64n) - 16n, max: (1n << 64n) - 1n }) },
  { weight: 1, arbitrary: fc.bigInt({ min: (1n << 53n) - 8n, max: (1n << 53n) + 8n }) },
);

/**
 * One descriptor. `nextMax` bounds `next` (exclusive) unless out-of-range nexts are allowed;
 * `indirect` allows the INDIRECT flag (its table is generated separately).
 */
const descArb = (nextMax: number, o: { indirect: boolean; bigLen: boolean }): fc.Arbitrary<RawDescriptor> =>
  fc.record({
    addr: bufAddrArb,
    len: o.bigLen
      ? fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0x7fff_fff0, max: 0xffff_ffff }))
      : fc.integer({ min: 0, max: 64 }),
    flags: fc
      .record({
        next: fc.boolean(),
        write: fc.boolean(),
        indirect: o.indirect ? fc.boolean() : fc.constant(false),
      })
      .map(
        (f) =>
          (f.next ? VIRTQ_DESC_F_NEXT : 0) |
          (f.write ? VIRTQ_DESC_F_WRITE : 0) |
          (f.indirect ? VIRTQ_DESC_F_INDIRECT : 0),
      ),
    next: fc.nat(Math.max(0, nextMax - 1)),
  });

export interface ChainTableInput {
  readonly size: number;
  /** Misalignment of the main table (checkedNew does not require alignment). */
  readonly tableOffset: number;
  readonly table: readonly RawDescriptor[];
  /** An indirect table (written at INDIRECT_AREA + offset); INDIRECT descriptors are pointed at it. */
  readonly indirect: {
    readonly offset: number;
    readonly entries: readonly RawDescriptor[];
    readonly badLen: number | null;
  };
}

const indirectArb = (o: { bigLen: boolean; nested: boolean }) =>
  fc.integer({ min: 1, max: 8 }).chain((n) =>
    fc.record({
      offset: fc.integer({ min: 0, max: 64 }),
      entries: fc.array(descArb(n, { indirect: o.nested, bigLen: o.bigLen }), { minLength: n, maxLength: n }),
      badLen: fc.option(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 200 })), { freq: 5 }),
    }),
  );

export const chainTableArb = (o: {
  bigLen: boolean;
  nested: boolean;
  indirect: boolean;
}): fc.Arbitrary<ChainTableInput> =>
  fc.integer({ min: 1, max: 16 }).chain((size) =>
    fc.record({
      size: fc.constant(size),
      tableOffset: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 15 })),
      table: fc.array(descArb(size, { indirect: o.indirect, bigLen: o.bigLen }), {
        minLength: size,
        maxLength: size,
      }),
      indirect: indirectArb(o),
    }),
  );

/** The table as written: INDIRECT descriptors point at the indirect table, with its length. */
export const tableDescriptors = (
  input: ChainTableInput,
): { main: RawDescriptor[]; indirect: RawDescriptor[]; indirectAddr: bigint } => {
  const indirectAddr = INDIRECT_AREA + BigInt(input.indirect.offset);
  const len = input.indirect.badLen ?? descTableBytes(input.indirect.entries.length);
  const fix = (d: RawDescriptor): RawDescriptor =>
    (d.flags & VIRTQ_DESC_F_INDIRECT) !== 0 ? { ...d, addr: indirectAddr, len } : d;
  return { main: input.table.map(fix), indirect: input.indirect.entries.map(fix), indirectAddr };
};

export const tableAddr = (input: ChainTableInput): bigint => TABLE_AREA + BigInt(input.tableOffset);

/** Steps that create memory and write both tables; the spec memory after them. */
export const setupTables = (input: ChainTableInput): { steps: Step[]; mem: SpecMemory } => {
  const t = tableDescriptors(input);
  let mem = emptyChainMemory();
  const a = writeStep(mem, tableAddr(input), encodeDescriptors(t.main));
  mem = a.mem;
  const b = writeStep(mem, t.indirectAddr, encodeDescriptors(t.indirect));
  mem = b.mem;
  return { steps: [memoryCreateStep(), a.step, b.step], mem };
};

/** What the spec says chain.walk answers: CHAIN-CHECKED-NEW, then the walk. */
export const specWalk = (mem: SpecMemory, table: bigint, size: number, head: number): SpecWalk | undefined =>
  checkedNew(mem, table, size, head) === undefined ? undefined : walkChain(mem, table, size, head);

/**
 * Does the chain at `head` keep every driver MUST of VIRTIO 1.2 (§2.7.4.2: device-writable
 * descriptors after every device-readable one; §2.7.5.2: no loop, at most 2^32 - 1 bytes;
 * §2.7.5.3.1: no INDIRECT beside NEXT, no INDIRECT inside an indirect table, a table len that
 * is a non-zero multiple of 16)? Only such chains are MUST-level input: what a device does with
 * a chain that breaks one is left open by VIRTIO, so those are hostile input (safety level).
 */
export const driverValid = (mem: SpecMemory, table: bigint, size: number, head: number): boolean => {
  if (head >= size) return false;
  let i = head;
  for (let hops = 0; hops < size; hops++) {
    const d = readDescriptor(mem, table, i, false);
    if (!d.ok) return false;
    if ((d.value.flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
      if ((d.value.flags & VIRTQ_DESC_F_NEXT) !== 0) return false;
      break;
    }
    if ((d.value.flags & VIRTQ_DESC_F_NEXT) === 0) break;
    i = d.value.next;
  }
  const w = walkChain(mem, table, size, head);
  if (w.end !== null) return false;
  let writable = false;
  for (const d of w.descriptors) {
    if ((d.flags & VIRTQ_DESC_F_WRITE) !== 0) writable = true;
    else if (writable) return false;
  }
  return true;
};

/**
 * The table with WRITE cleared wherever a NEXT leads to a readable descriptor (to a fixed
 * point), so that on every path writable descriptors come last (§2.7.4.2) and most heads
 * give driver-valid chains.
 */
export const writableLast = (ds: readonly RawDescriptor[]): RawDescriptor[] => {
  const out = ds.map((d) => ({ ...d }));
  for (let changed = true; changed;) {
    changed = false;
    for (const d of out) {
      const n = out[d.next];
      if (
        (d.flags & VIRTQ_DESC_F_WRITE) !== 0 &&
        (d.flags & VIRTQ_DESC_F_NEXT) !== 0 &&
        n !== undefined &&
        (n.flags & VIRTQ_DESC_F_WRITE) === 0
      ) {
        d.flags &= ~VIRTQ_DESC_F_WRITE;
        changed = true;
      }
    }
  }
  return out;
};

const walkArgs = (table: bigint, size: number, head: number) => ({
  descTable: u64(table),
  queueSize: size,
  head,
});

/**
 * Every head of the table whose chain is driver-valid (the others are hostile input: the
 * chain.hostile* cases). A head >= size is not here: what a device does with it is a VMM's
 * choice (chain.profile-head-range).
 */
const walkSteps = (input: ChainTableInput, mem: SpecMemory, table: bigint): Step[] => {
  const out: Step[] = [];
  for (let head = 0; head < input.size; head++) {
    if (!driverValid(mem, table, input.size, head)) continue;
    out.push(
      step(
        "chain.walk",
        walkArgs(table, input.size, head),
        expectOk(acceptedWalkJson(specWalk(mem, table, input.size, head))),
      ),
    );
  }
  return out;
};

/** The input with writable descriptors last on every path, in both tables. */
export const driverOrderedTable = (input: ChainTableInput): ChainTableInput => ({
  ...input,
  table: writableLast(input.table),
  indirect: { ...input.indirect, entries: writableLast(input.indirect.entries) },
});

/** Must-level tables: driver-valid chains only, every next in range, so the profiles agree. */
const mustSteps = (raw: ChainTableInput): Step[] => {
  const input = driverOrderedTable(raw);
  const s = setupTables(input);
  return [...s.steps, ...walkSteps(input, s.mem, tableAddr(input))];
};

/**
 * Hostile tables (any flags: readable after writable, INDIRECT beside NEXT, nested or
 * badly sized indirect tables, loops): VIRTIO says nothing of the answer, so any answer but
 * a crash, a hang or an internal error passes; a well-formed chain must still walk after.
 */
const hostileTableSteps = (input: ChainTableInput): Step[] => {
  const s = setupTables(input);
  const table = tableAddr(input);
  const out: Step[] = [...s.steps];
  for (let head = 0; head < input.size; head++)
    out.push(step("chain.walk", walkArgs(table, input.size, head), expectSafe()));
  return [...out, ...goodChainSteps(s.mem)];
};

/** CHAIN-TTL / keeps serving: a well-formed two-descriptor chain still walks. */
const goodChainSteps = (mem: SpecMemory): Step[] => {
  const good = INDIRECT_AREA + 0x400n;
  const ok = writeStep(
    mem,
    good,
    encodeDescriptors([
      { addr: BUFFER_AREA, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 1 },
      { addr: BUFFER_AREA + 8n, len: 8, flags: VIRTQ_DESC_F_WRITE, next: 0 },
    ]),
  );
  return [
    ok.step,
    step("chain.walk", walkArgs(good, 2, 0), expectOk(acceptedWalkJson(specWalk(ok.mem, good, 2, 0)))),
  ];
};

/** A table shifted so that its last entries lie past the end of memory, with loops. */
interface HostileInput {
  readonly base: ChainTableInput;
  /** How many entries stick out past the region's end. */
  readonly outside: number;
}

const hostileSteps = (input: HostileInput): Step[] => {
  const t = tableDescriptors(input.base);
  // Loops: every NEXT points back at entry 0 (or itself), so only the ttl ends the walk.
  const main = t.main.map((d, i) => ({ ...d, next: i === 0 ? 0 : d.next % (i + 1) }));
  const table = REGION_END - BigInt(descTableBytes(main.length - input.outside));
  let mem = emptyChainMemory();
  const inside = main.slice(0, main.length - input.outside);
  const steps: Step[] = [memoryCreateStep()];
  if (inside.length > 0) {
    const w = writeStep(mem, table, encodeDescriptors(inside));
    steps.push(w.step);
    mem = w.mem;
  }
  for (let head = 0; head < input.base.size; head++) {
    steps.push(
      step(
        "chain.walk",
        walkArgs(table, input.base.size, head),
        expectOk(acceptedWalkJson(specWalk(mem, table, input.base.size, head))),
      ),
    );
  }
  return [...steps, ...goodChainSteps(mem)];
};

// ---- profiles ---------------------------------------------------------------------------

/** Firecracker queue.rs: checked_new refuses a head or a next whose own NEXT is out of range; no indirect tables. */
export const firecrackerWalk = (
  mem: SpecMemory,
  table: bigint,
  size: number,
  head: number,
): SpecDescriptor[] | undefined => {
  const load = (i: number): SpecDescriptor | undefined => {
    if (i >= size) return undefined;
    const d = readDescriptor(mem, table, i, false);
    if (!d.ok) return undefined;
    if ((d.value.flags & VIRTQ_DESC_F_NEXT) !== 0 && d.value.next >= size) return undefined;
    return d.value;
  };
  let d = load(head);
  if (d === undefined) return undefined;
  const out = [d];
  let ttl = size;
  while ((d.flags & VIRTQ_DESC_F_NEXT) !== 0 && ttl > 1) {
    const n = load(d.next);
    if (n === undefined) break;
    ttl--;
    out.push(n);
    d = n;
  }
  return out;
};

/**
 * rust-vmm: the head is always a chain. virtio-queue queue.rs `AvailIter::next` builds
 * `DescriptorChain::new(.., head_index)` for any head and advances next_avail; chain.rs
 * `DescriptorChain::next` then yields nothing when `next_index >= queue_size` or the entry
 * cannot be read. So a head >= size is an empty chain, never a refusal; the rest of the walk
 * is spec/queue.ts walkChain.
 */
export const rustVmmWalk = (mem: SpecMemory, table: bigint, size: number, head: number): SpecDescriptor[] => [
  ...walkChain(mem, table, size, head).descriptors,
];

const profileValue = (ds: SpecDescriptor[] | undefined): Outcome =>
  ds === undefined
    ? { ok: true, value: { accepted: false } }
    : { ok: true, value: { accepted: true, descriptors: ds.map(descriptorJson) } };

const profileStep = (mem: SpecMemory, table: bigint, size: number, head: number): Step => {
  const rv = profileValue(rustVmmWalk(mem, table, size, head));
  return step("chain.walk", walkArgs(table, size, head), {
    profiles: {
      firecracker: profileValue(firecrackerWalk(mem, table, size, head)),
      "rust-vmm": rv,
      "cloud-hypervisor": rv,
    },
    keys: ["accepted", "descriptors"],
  });
};

/** Two chains that differ only where the profiles do: `bad` is the descriptor whose NEXT is out of range. */
interface ProfileChainInput {
  readonly size: number;
  readonly lens: readonly number[];
  /** Position (0 = head) of the descriptor with NEXT out of range. */
  readonly bad: number;
  readonly over: number;
}

const profileChainArb: fc.Arbitrary<ProfileChainInput> = fc.integer({ min: 2, max: 8 }).chain((size) =>
  fc.record({
    size: fc.constant(size),
    lens: fc.array(fc.integer({ min: 1, max: 32 }), { minLength: size, maxLength: size }),
    bad: fc.nat(size - 1),
    over: fc.integer({ min: 0, max: 100 }),
  }),
);

/** Entries 0..bad chained in order; entry `bad` has NEXT to size + over. */
const nextRangeSteps = (input: ProfileChainInput): Step[] => {
  const ds: RawDescriptor[] = input.lens.map((len, i) => ({
    addr: BUFFER_AREA + BigInt(64 * i),
    len,
    flags: i <= input.bad ? VIRTQ_DESC_F_NEXT : 0,
    next: i < input.bad ? i + 1 : i === input.bad ? input.size + input.over : 0,
  }));
  const w = writeStep(emptyChainMemory(), TABLE_AREA, encodeDescriptors(ds));
  return [memoryCreateStep(), w.step, profileStep(w.mem, TABLE_AREA, input.size, 0)];
};

/** A head at or past the table's size: Firecracker refuses it, rust-vmm walks an empty chain. */
const headRangeSteps = (input: { readonly size: number; readonly over: number }): Step[] => {
  const ds: RawDescriptor[] = Array.from({ length: input.size }, (_, i) => ({
    addr: BUFFER_AREA + BigInt(64 * i),
    len: 8,
    flags: 0,
    next: 0,
  }));
  const w = writeStep(emptyChainMemory(), TABLE_AREA, encodeDescriptors(ds));
  return [
    memoryCreateStep(),
    w.step,
    profileStep(w.mem, TABLE_AREA, input.size, Math.min(0xffff, input.size + input.over)),
  ];
};

const indirectProfileSteps = (input: ChainTableInput): Step[] => {
  // Head 0 refers to a well-formed indirect table of plain descriptors.
  const entries = writableLast(
    input.indirect.entries.map((d, i, all) => ({
      ...d,
      addr: BUFFER_AREA + BigInt(64 * i),
      flags: (d.flags & VIRTQ_DESC_F_WRITE) | (i + 1 < all.length ? VIRTQ_DESC_F_NEXT : 0),
      next: i + 1,
    })),
  );
  const addr = INDIRECT_AREA + BigInt(input.indirect.offset);
  let mem = emptyChainMemory();
  const a = writeStep(
    mem,
    TABLE_AREA,
    encodeDescriptors([{ addr, len: descTableBytes(entries.length), flags: VIRTQ_DESC_F_INDIRECT, next: 0 }]),
  );
  mem = a.mem;
  const b = writeStep(mem, addr, encodeDescriptors(entries));
  mem = b.mem;
  return [memoryCreateStep(), a.step, b.step, profileStep(mem, TABLE_AREA, 1, 0)];
};

const unalignedIndirectSteps = (input: ChainTableInput): Step[] => {
  const entries = writableLast(
    input.indirect.entries.map((d, i, all) => ({
      ...d,
      addr: BUFFER_AREA + BigInt(64 * i),
      flags: (d.flags & VIRTQ_DESC_F_WRITE) | (i + 1 < all.length ? VIRTQ_DESC_F_NEXT : 0),
      next: i + 1,
    })),
  );
  // Any address: rust-vmm PR 220 removed the alignment demand (CHAIN-INDIRECT-UNALIGNED).
  const addr = INDIRECT_AREA + BigInt(input.indirect.offset) + 1n;
  let mem = emptyChainMemory();
  const a = writeStep(
    mem,
    TABLE_AREA + BigInt(input.tableOffset),
    encodeDescriptors([{ addr, len: descTableBytes(entries.length), flags: VIRTQ_DESC_F_INDIRECT, next: 0 }]),
  );
  mem = a.mem;
  const b = writeStep(mem, addr, encodeDescriptors(entries));
  mem = b.mem;
  const table = TABLE_AREA + BigInt(input.tableOffset);
  return [
    memoryCreateStep(),
    a.step,
    b.step,
    step("chain.walk", walkArgs(table, 1, 0), expectOk(acceptedWalkJson(specWalk(mem, table, 1, 0)))),
  ];
};

interface BigChainInput {
  readonly lens: readonly number[];
  readonly indirect: boolean;
}

/** CHAIN-LEN-U32: lengths near 2^32 (the buffers need not be in memory for a walk). */
const bigChainSteps = (input: BigChainInput): Step[] => {
  const ds: RawDescriptor[] = input.lens.map((len, i) => ({
    addr: BUFFER_AREA,
    len,
    flags: i + 1 < input.lens.length ? VIRTQ_DESC_F_NEXT : 0,
    next: i + 1,
  }));
  let mem = emptyChainMemory();
  let size = ds.length;
  if (input.indirect) {
    const a = writeStep(
      mem,
      TABLE_AREA,
      encodeDescriptors([
        { addr: INDIRECT_AREA, len: descTableBytes(ds.length), flags: VIRTQ_DESC_F_INDIRECT, next: 0 },
      ]),
    );
    const b = writeStep(a.mem, INDIRECT_AREA, encodeDescriptors(ds));
    mem = b.mem;
    size = 1;
    return [
      memoryCreateStep(),
      a.step,
      b.step,
      step(
        "chain.walk",
        walkArgs(TABLE_AREA, size, 0),
        expectOk(acceptedWalkJson(specWalk(mem, TABLE_AREA, size, 0))),
      ),
    ];
  }
  const a = writeStep(mem, TABLE_AREA, encodeDescriptors(ds));
  mem = a.mem;
  return [
    memoryCreateStep(),
    a.step,
    step(
      "chain.walk",
      walkArgs(TABLE_AREA, size, 0),
      expectOk(acceptedWalkJson(specWalk(mem, TABLE_AREA, size, 0))),
    ),
  ];
};

const inRange = (o: { bigLen: boolean; nested: boolean; indirect: boolean }) => chainTableArb(o);

export const chainCases = [
  defineCase<ChainTableInput>({
    id: "chain.walk",
    title:
      "chain.walk yields the spec's descriptors (layout, read/write split, exact u64 addresses) and why it ended",
    rules: ["CHAIN-DESC-LAYOUT", "CHAIN-RW-SPLIT", "CHAIN-ADDR-U64"],
    level: "must",
    ops: ["memory.create", "memory.write", "chain.walk"],
    arb: inRange({ bigLen: false, nested: false, indirect: false }),
    examples: [],
    steps: mustSteps,
    numRuns: 40,
  }),
  defineCase<ChainTableInput>({
    id: "chain.indirect",
    title:
      "indirect tables (VIRTIO_F_INDIRECT_DESC): a driver-valid indirect table is walked in place of its descriptor",
    rules: ["CHAIN-INDIRECT"],
    level: "must",
    ops: ["memory.create", "memory.write", "chain.walk"],
    // Tables 16-aligned here: an unaligned one is chain.indirect-unaligned's (CHAIN-INDIRECT-UNALIGNED),
    // so a device that refuses only those fails that rule alone.
    arb: inRange({ bigLen: false, nested: false, indirect: true }).map((t) => ({
      ...t,
      indirect: { ...t.indirect, offset: t.indirect.offset & ~15, badLen: null },
    })),
    examples: [],
    steps: mustSteps,
    numRuns: 40,
  }),
  defineCase<ChainTableInput>({
    id: "chain.hostile-tables",
    title:
      "chains that break a driver MUST (readable after writable, INDIRECT beside NEXT, nested or badly sized indirect tables, loops) are answered without a crash or a hang, and a good chain still walks",
    rules: ["CHAIN-INDIRECT-LEN", "CHAIN-INDIRECT-NESTED", "VQ-GUEST-INPUT"],
    level: "safety",
    ops: ["memory.create", "memory.write", "chain.walk"],
    arb: inRange({ bigLen: false, nested: true, indirect: true }),
    examples: [
      {
        size: 1,
        tableOffset: 0,
        table: [{ addr: 0n, len: 0, flags: VIRTQ_DESC_F_INDIRECT, next: 0 }],
        // A nested indirect descriptor pointing at its own table (a hang found in the wild).
        indirect: {
          offset: 0,
          entries: [{ addr: 0n, len: DESC_SIZE, flags: VIRTQ_DESC_F_INDIRECT, next: 0 }],
          badLen: null,
        },
      },
    ],
    steps: hostileTableSteps,
    numRuns: 30,
  }),
  defineCase<HostileInput>({
    id: "chain.hostile",
    title:
      "looping chains end after at most size descriptors, tables past memory end the walk, and a good chain still walks",
    rules: ["CHAIN-TTL", "CHAIN-MEMORY"],
    level: "safety",
    ops: ["memory.create", "memory.write", "chain.walk"],
    arb: inRange({ bigLen: false, nested: false, indirect: false }).chain((base) =>
      fc.record({ base: fc.constant(base), outside: fc.nat(base.size) }),
    ),
    examples: [],
    steps: hostileSteps,
    numRuns: 30,
  }),
  defineCase<BigChainInput>({
    id: "chain.len-u32",
    title:
      "a chain never describes more than 2^32 - 1 bytes: the descriptor that would pass it is not yielded",
    rules: ["CHAIN-LEN-U32"],
    level: "safety",
    ops: ["memory.create", "memory.write", "chain.walk"],
    arb: fc.record({
      lens: fc.array(
        fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 0x7fff_fff0, max: 0xffff_ffff })),
        { minLength: 1, maxLength: 6 },
      ),
      indirect: fc.boolean(),
    }),
    examples: [
      { lens: [0xffff_ffff, 1], indirect: false },
      { lens: [0x8000_0000, 0x8000_0000], indirect: true },
    ],
    steps: bigChainSteps,
    numRuns: 30,
  }),
  defineCase<ChainTableInput>({
    id: "chain.indirect-unaligned",
    title: "an indirect table at any address walks like an aligned one",
    rules: ["CHAIN-INDIRECT-UNALIGNED"],
    level: "must",
    ops: ["memory.create", "memory.write", "chain.walk"],
    arb: inRange({ bigLen: false, nested: false, indirect: false }),
    examples: [],
    steps: unalignedIndirectSteps,
    numRuns: 20,
  }),
  defineCase<{ readonly size: number; readonly over: number }>({
    id: "chain.profile-head-range",
    title:
      "a head at or past the queue size: Firecracker refuses it (checked_new), rust-vmm walks an empty chain (DescriptorChain::new)",
    rules: ["CHAIN-CHECKED-NEW"],
    level: "profile",
    ops: ["memory.create", "memory.write", "chain.walk"],
    arb: fc.record({ size: fc.integer({ min: 1, max: 16 }), over: fc.oneof(fc.nat(3), fc.nat(0xffff)) }),
    examples: [{ size: 4, over: 0 }],
    steps: headRangeSteps,
    numRuns: 10,
  }),
  defineCase<ProfileChainInput>({
    id: "chain.profile-head-next-range",
    title:
      "a head whose NEXT is out of range: Firecracker refuses the chain, rust-vmm yields the head and stops",
    rules: ["CHAIN-CHECKED-NEW"],
    level: "profile",
    ops: ["memory.create", "memory.write", "chain.walk"],
    arb: profileChainArb.map((i) => ({ ...i, bad: 0 })),
    examples: [],
    steps: nextRangeSteps,
    numRuns: 15,
  }),
  defineCase<ProfileChainInput>({
    id: "chain.profile-later-next-range",
    title:
      "a later descriptor whose NEXT is out of range: Firecracker drops it, rust-vmm yields it and stops",
    rules: ["CHAIN-NEXT-RANGE"],
    level: "profile",
    ops: ["memory.create", "memory.write", "chain.walk"],
    arb: profileChainArb.map((i) => ({ ...i, bad: Math.max(1, i.bad) })),
    examples: [],
    steps: nextRangeSteps,
    numRuns: 15,
  }),
  defineCase<ChainTableInput>({
    id: "chain.profile-indirect",
    title: "indirect tables: rust-vmm and cloud-hypervisor walk them, Firecracker does not offer them",
    rules: ["CHAIN-INDIRECT"],
    level: "profile",
    ops: ["memory.create", "memory.write", "chain.walk"],
    arb: inRange({ bigLen: false, nested: false, indirect: false }),
    examples: [],
    steps: indirectProfileSteps,
    numRuns: 20,
  }),
];
