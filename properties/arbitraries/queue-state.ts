/**
 * An initialized split queue in an arbitrary state, the way Firecracker's Kani
 * `ProofContext` builds one: a valid placement in memory of several regions, memory of
 * arbitrary contents, arbitrary next_avail / next_used / num_added, EVENT_IDX on or off.
 * Built twice from the same data: `SplitQueue` over `GuestMemory` (impl/) and `SpecQueue`
 * over `SpecMemory` (spec/), so properties can compare them step by step.
 *
 *   fc.property(queueStateArb(), (s) => {
 *     const { impl, mem, spec, specMem, rings } = buildQueueState(s);
 *   })
 */
import fc from "fast-check";
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import type { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import { SplitQueue } from "../../impl/queue/split-queue.ts";
import * as S from "../../spec/queue.ts";
import type { SpecMemory } from "../../spec/memory.ts";
import type { Result } from "../../spec/result.ts";
import {
  AVAIL_IDX,
  DESC_FLAGS,
  DESC_LEN,
  VIRTQ_DESC_F_INDIRECT,
  availRingBytes,
  availSlotOffset,
  descOffset,
  descTableBytes,
  encodeDescriptor,
  usedRingBytes,
} from "../../wire/split.ts";
import { buildMemories, inLayout } from "./memory.ts";
import {
  queuePlacementArb,
  rawDescriptorArb,
  type QueuePlacement,
  type QueuePlacementOptions,
  type RawDescriptor,
} from "./queue.ts";
import { walkImpl } from "./chain.ts";

export interface QueueState {
  readonly placement: QueuePlacement;
  /** Seed of the memory's random contents. */
  readonly seed: number;
  /** The device's max size: a power of two >= size. */
  readonly maxSize: number;
  readonly eventIdx: boolean;
  readonly nextAvail: number;
  readonly nextUsed: number;
  readonly numAdded: number;
  /**
   * When set, avail.idx is written as next_avail + ahead (so len = ahead); otherwise it keeps
   * its random value (len is then usually > size: a hostile driver).
   */
  readonly ahead: number | undefined;
  /** Heads written to the avail slots from next_avail on (mostly valid indices). */
  readonly heads: readonly number[];
  /** Descriptor entries planted over the random table: [index, entry]. */
  readonly planted: readonly (readonly [number, RawDescriptor])[];
}

export interface QueueStateOptions extends QueuePlacementOptions {
  /** Probability-like weight of writing a sane avail.idx (len <= size); default 3 of 4. */
  readonly saneAvailIdx?: boolean;
}

const u16 = fc.nat(0xffff);

export const queueStateArb = (options: QueueStateOptions = {}): fc.Arbitrary<QueueState> =>
  queuePlacementArb(options).chain((placement) => {
    const size = placement.size;
    const maxLog = Math.log2(size);
    return fc.record({
      placement: fc.constant(placement),
      seed: fc.integer(),
      maxSize: fc.integer({ min: maxLog, max: 15 }).map((l) => 2 ** l),
      eventIdx: fc.boolean(),
      nextAvail: fc.oneof(u16, fc.constantFrom(0, 0xffff, 0xfffe)),
      nextUsed: fc.oneof(u16, fc.constantFrom(0, 0xffff, 0xfffe)),
      numAdded: fc.oneof(fc.nat(Math.min(size, 8)), u16),
      ahead:
        options.saneAvailIdx === false
          ? fc.constant(undefined)
          : fc.oneof(
              { weight: 3, arbitrary: fc.oneof(fc.nat(Math.min(size, 4)), fc.nat(size)) },
              { weight: 1, arbitrary: fc.constant(undefined) },
            ),
      heads: fc.array(fc.oneof({ weight: 4, arbitrary: fc.nat(size - 1) }, { weight: 1, arbitrary: u16 }), {
        maxLength: Math.min(size, 6),
      }),
      planted: fc.array(fc.tuple(fc.nat(size - 1), rawDescriptorArb(size, placement.data)), { maxLength: 8 }),
    });
  });

/** A built queue state: the implementation and the model side by side. */
export interface BuiltQueue {
  readonly mem: GuestMemory;
  readonly impl: SplitQueue;
  specMem: SpecMemory;
  spec: S.SpecQueue;
  readonly placement: QueuePlacement;
  readonly rings: RingRanges;
}

/** Where each ring lies: [start, end) as numbers. */
export interface RingRanges {
  readonly desc: readonly [number, number];
  readonly avail: readonly [number, number];
  readonly used: readonly [number, number];
}

export const ringRanges = (p: {
  descTable: number;
  availRing: number;
  usedRing: number;
  size: number;
}): RingRanges => ({
  desc: [p.descTable, p.descTable + descTableBytes(p.size)],
  avail: [p.availRing, p.availRing + availRingBytes(p.size)],
  used: [p.usedRing, p.usedRing + usedRingBytes(p.size)],
});

/** Writes the arbitrary parts of `s` into memory and builds both queues, initialized. */
export const buildQueueState = (s: QueueState): BuiltQueue => {
  const p = s.placement;
  const { impl: mem } = buildMemories(p.layout, s.seed);
  for (const [i, d] of s.planted) mem.tryWrite(BigInt(p.descTable + descOffset(i)), encodeDescriptor(d));
  s.heads.forEach((h, k) => mem.writeU16(p.availRing + availSlotOffset((s.nextAvail + k) % p.size), h));
  if (s.ahead !== undefined) mem.writeU16(p.availRing + AVAIL_IDX, (s.nextAvail + s.ahead) & 0xffff);
  const impl = new SplitQueue(s.maxSize);
  const config = {
    size: p.size,
    ready: true,
    descTable: p.descTable,
    availRing: p.availRing,
    usedRing: p.usedRing,
  };
  impl.configure(config);
  const positions = { nextAvail: s.nextAvail, nextUsed: s.nextUsed, numAdded: s.numAdded };
  impl.setPositions(positions);
  if (s.eventIdx) impl.enableNotifSuppression();
  const init = impl.initialize(mem);
  if (!init.ok) throw new Error(`queueStateArb built an invalid queue: ${init.error._tag}`);
  let spec = S.newQueue(s.maxSize)!;
  spec = S.configure(spec, {
    size: p.size,
    ready: true,
    descTable: BigInt(p.descTable),
    availRing: BigInt(p.availRing),
    usedRing: BigInt(p.usedRing),
  });
  spec = S.setPositions(spec, positions);
  if (s.eventIdx) spec = S.enableNotifSuppression(spec);
  const specMem = mem.toSpecMemory(true);
  const sInit = S.initialize(spec, specMem);
  if (!sInit.result.ok) throw new Error(`spec refused a valid queue: ${sInit.result.error._tag}`);
  return { mem, impl, spec: sInit.queue, specMem, placement: p, rings: ringRanges(p) };
};

/** Whether impl memory and spec memory hold the same bytes (native compare: large memories are cheap). */
export const sameMemory = (mem: GuestMemory, spec: SpecMemory): boolean =>
  mem.regions.length === spec.regions.length &&
  mem.regions.every((r, i) => {
    const b = spec.regions[i]!.bytes;
    return (
      b.length === r.bytes.length &&
      Buffer.from(b.buffer, b.byteOffset, b.length).equals(
        Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.length),
      )
    );
  });

/** A copy of every region's bytes, to check later that nothing was written. */
export const snapshotOf = (mem: GuestMemory): Uint8Array[] =>
  mem.regions.map((r) => Uint8Array.from(r.bytes));

/** The byte offsets (region, offset) where `mem` differs from `before`. */
export const changedBytes = (mem: GuestMemory, before: readonly Uint8Array[]): { addr: number }[] => {
  const out: { addr: number }[] = [];
  mem.regions.forEach((r, i) => {
    const b = before[i]!;
    for (let k = 0; k < b.length; k++) if (b[k] !== r.bytes[k]) out.push({ addr: r.base + k });
  });
  return out;
};

/** One access the device made, as the memory recorder saw it. */
export interface Access {
  readonly addr: number;
  readonly len: number;
  readonly write: boolean;
}

/** Runs `f` with a recorder on `mem`; returns f's result and every access it made. */
export const recording = <T>(mem: GuestMemory, f: () => T): { result: T; accesses: Access[] } => {
  const accesses: Access[] = [];
  const prev = mem.recorder;
  mem.recorder = (addr, len, write) => accesses.push({ addr, len, write });
  try {
    return { result: f(), accesses };
  } finally {
    mem.recorder = prev;
  }
};

/** Whether [addr, addr+len) is inside [range[0], range[1]). */
export const inRange = (range: readonly [number, number], addr: number, len: number): boolean =>
  addr >= range[0] && len >= 0 && addr + len <= range[1];

/** Whether an access lies inside one memory region of the layout. */
export const inMemory = (p: QueuePlacement, a: Access): boolean =>
  inLayout(p.layout, BigInt(a.addr), BigInt(a.len));

/** A popped chain in the spec's `SpecPopped` shape (walks it to its end). */
export const poppedOf = (c: DescriptorChain): S.SpecPopped => ({ head: c.headIndex, walk: walkImpl(c) });

/** An impl pop result in the spec's shape. */
export const popView = (
  r: Result<DescriptorChain | null, S.QueueError>,
): Result<S.SpecPopped | null, S.QueueError> =>
  r.ok ? { ok: true, value: r.value === null ? null : poppedOf(r.value) } : r;

/**
 * Whether an access lies inside an indirect table that some entry of the queue's descriptor
 * table points at (an INDIRECT descriptor's [addr, addr+len)): where a chain walk may read
 * besides the queue's own table (CHAIN-INDIRECT). Scans the table, so call it only for
 * accesses outside the rings.
 */
export const inIndirectTable = (mem: GuestMemory, p: QueuePlacement, a: Access): boolean => {
  const start = BigInt(a.addr);
  const end = start + BigInt(a.len);
  for (let i = 0; i < p.size; i++) {
    const at = p.descTable + descOffset(i);
    const flags = mem.readU16(at + DESC_FLAGS);
    if ((flags & VIRTQ_DESC_F_INDIRECT) === 0) continue;
    const addr = mem.readU64(at)!;
    const len = BigInt(mem.readU32(at + DESC_LEN));
    if (addr <= start && end <= addr + len) return true;
  }
  return false;
};
