/**
 * Tests written to kill mutants that survived or went uncovered in `npm run mutate -- packed`
 * (impl/queue/packed-chain.ts): the cursor's getters, hasNext, the readable/writable
 * cursors and `lengths` over chains that mix directions, an empty chain, a chain left by a
 * refused pop, a walk that has ended, and one chain object reused for a bigger queue.
 */
import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import { VIRTQ_DESC_F_AVAIL } from "../../wire/packed.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";
import { newChainLengths } from "./descriptor-chain.ts";
import { PackedDescriptorChain } from "./packed-chain.ts";
import { PackedDriver } from "./packed-driver.ts";
import { PackedQueue } from "./packed-queue.ts";

const NEXT = VIRTQ_DESC_F_NEXT;
const WRITE = VIRTQ_DESC_F_WRITE;
const INDIRECT = VIRTQ_DESC_F_INDIRECT;
const AVAIL = VIRTQ_DESC_F_AVAIL;

interface Seg {
  readonly addr: number;
  readonly len: number;
  readonly write: boolean;
}

const rig = (size: number, m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x10000) }])) => {
  const drv = PackedDriver.at(m, size, 0x100);
  const q = new PackedQueue(size);
  q.configure({ size, ready: true, ...drv.layout });
  if (!q.initialize(m).ok) throw new Error("queue refused");
  return { m, drv, q };
};

/** Writes `segs` as one chain from slot `at` (wrap counter 1) with buffer id `id`, in that order. */
const writeChain = (drv: PackedDriver, at: number, id: number, segs: readonly Seg[]): void => {
  segs.forEach((s, i) =>
    drv.writeSlot(at + i, {
      addr: s.addr,
      len: s.len,
      id,
      flags: AVAIL | (s.write ? WRITE : 0) | (i + 1 < segs.length ? NEXT : 0),
    }),
  );
};

// Both orders of directions, each ending in the other direction from where it starts.
const W_FIRST: readonly Seg[] = [
  { addr: 0x5000, len: 16, write: true },
  { addr: 0x4000, len: 8, write: false },
  { addr: 0x7000, len: 32, write: true },
  { addr: 0x6000, len: 4, write: false },
];
const R_FIRST: readonly Seg[] = [
  { addr: 0x4000, len: 8, write: false },
  { addr: 0x5000, len: 16, write: true },
  { addr: 0x6000, len: 4, write: false },
  { addr: 0x7000, len: 32, write: true },
];

const popped = (segs: readonly Seg[]): PackedDescriptorChain => {
  const { m, drv, q } = rig(8);
  writeChain(drv, 0, 3, segs);
  const c = new PackedDescriptorChain(m);
  expect(q.popInto(c)).toBe(true);
  return c;
};

/** The addrs a direction's cursor visits. */
const visit = (c: PackedDescriptorChain, write: boolean): number[] => {
  const out: number[] = [];
  if (write) for (let ok = c.rewindWritable(); ok; ok = c.advanceWritable()) out.push(c.addr);
  else for (let ok = c.rewindReadable(); ok; ok = c.advanceReadable()) out.push(c.addr);
  return out;
};

describe("the packed chain's cursor [PVQ-DESC-LAYOUT PVQ-CHAIN-NEXT PVQ-BUFFER-ID PVQ-LEN-U32]", () => {
  it("yields each ring descriptor's addr, len, direction and running total; hasNext while NEXT is followed", () => {
    const c = popped(R_FIRST);
    expect([c.headIndex, c.bufferId, c.slots]).toEqual([3, 3, 4]);
    const seen: unknown[] = [];
    for (let ok = c.rewind(); ok; ok = c.advance())
      seen.push([c.index, c.addr, c.len, c.isWriteOnly(), c.hasNext(), c.totalLength]);
    expect(seen).toEqual([
      [0, 0x4000, 8, false, true, 8],
      [1, 0x5000, 16, true, true, 24],
      [2, 0x6000, 4, false, true, 28],
      [3, 0x7000, 32, true, false, 60],
    ]);
    expect(c.end).toBeNull();
  });

  // Each direction is walked first on the chain that ends in the other direction.
  for (const [segs, write] of [
    [W_FIRST, false],
    [R_FIRST, true],
    [W_FIRST, true],
    [R_FIRST, false],
  ] as const)
    it(`the ${write ? "writable" : "readable"} cursor visits exactly those descriptors, from a chain starting ${segs[0]!.write ? "writable" : "readable"}`, () => {
      const c = popped(segs);
      expect(visit(c, write)).toEqual(segs.filter((s) => s.write === write).map((s) => s.addr));
    });

  for (const segs of [W_FIRST, R_FIRST])
    it(`lengths counts bytes and descriptors by direction (${segs[0]!.write ? "writable" : "readable"} first)`, () => {
      const out = popped(segs).lengths(newChainLengths());
      expect(out).toEqual({ readableBytes: 12, writableBytes: 48, readableCount: 2, writableCount: 2 });
    });

  it("an indirect table's entries have no next, whatever their NEXT bit [PVQ-INDIRECT]", () => {
    const { m, drv, q } = rig(8);
    drv.writeSlot(0, { addr: 0x4000, len: 4, id: 0, flags: NEXT }, 0x3000);
    drv.writeSlot(1, { addr: 0x5000, len: 8, id: 0, flags: WRITE | NEXT }, 0x3000);
    drv.writeSlot(0, { addr: 0x3000, len: 32, id: 2, flags: AVAIL | INDIRECT });
    const c = new PackedDescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    const seen: unknown[] = [];
    for (let ok = c.rewind(); ok; ok = c.advance())
      seen.push([c.indirect, c.addr, c.isWriteOnly(), c.hasNext()]);
    expect(seen).toEqual([
      [true, 0x4000, false, false],
      [true, 0x5000, true, false],
    ]);
  });

  it("after a chain of `size` descriptors ends ChainTtlExpired, its last one has NEXT but no next [PVQ-CHAIN-LIMIT]", () => {
    const { m, drv, q } = rig(2);
    for (let i = 0; i < 2; i++) drv.writeSlot(i, { addr: 0x4000, len: 1, id: 1, flags: AVAIL | NEXT });
    const c = new PackedDescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    expect(c.rewind()).toBe(true);
    expect(c.hasNext()).toBe(true);
    expect(c.advance()).toBe(true);
    expect(c.hasNext()).toBe(true);
    expect(c.advance()).toBe(false);
    expect(c.end).toEqual({ _tag: "ChainTtlExpired", limit: 2 });
    expect([c.flags & NEXT, c.hasNext()]).toEqual([NEXT, false]);
  });
});

describe("chains that yield nothing [PVQ-INDIRECT-LEN PVQ-POP-ID]", () => {
  it("a new chain is empty: no slots, nothing to walk, at a new queue's position (0, wrap 1)", () => {
    const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x100) }]);
    const c = new PackedDescriptorChain(m);
    expect(c.memory).toBe(m);
    expect([c.slots, c.headSlot, c.headWrap, c.indirect, c.hasNext(), c.end]).toEqual([
      0,
      0,
      true,
      false,
      false,
      null,
    ]);
    expect(c.rewind()).toBe(false);
    expect(c.end).toBeNull();
  });

  it("once the walk has ended (a bad indirect table len), advance stays false and the end stays", () => {
    const { m, drv, q } = rig(4);
    drv.writeSlot(0, { addr: 0x3000, len: 0, id: 1, flags: AVAIL | INDIRECT });
    const c = new PackedDescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    const end = { _tag: "InvalidIndirectDescriptorTable", len: 0 };
    expect(c.rewind()).toBe(false);
    expect(c.end).toEqual(end);
    expect(c.advance()).toBe(false);
    expect(c.advance()).toBe(false);
    expect(c.end).toEqual(end);
  });

  it("a chain whose pop was refused is empty, whatever the refused descriptor held", () => {
    const { m, drv, q } = rig(4);
    const c = new PackedDescriptorChain(m);
    // First a good indirect chain, then a refused one (id >= size) whose descriptor is an
    // indirect one with a bad len: the chain must not walk what the refused pop read.
    drv.writeSlot(0, { addr: 0x4000, len: 4, id: 0, flags: 0 }, 0x3000);
    drv.writeSlot(0, { addr: 0x3000, len: 16, id: 1, flags: AVAIL | INDIRECT });
    expect(q.popInto(c)).toBe(true);
    expect(c.rewind()).toBe(true);
    drv.writeSlot(1, { addr: 0x3000, len: 0, id: 9, flags: AVAIL | INDIRECT });
    expect(q.popInto(c)).toBe(false);
    expect(q.lastError).toEqual({ _tag: "InvalidBufferId", id: 9, size: 4 });
    expect(c.slots).toBe(0);
    expect(c.rewind()).toBe(false);
    expect(c.end).toBeNull();
    expect(c.advance()).toBe(false);
  });
});

describe("one chain object serves queues of any size [PVQ-CHAIN-NEXT]", () => {
  it("a chain first used with a queue of 1 slot then walks a 3-descriptor chain of a bigger queue", () => {
    const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x10000) }]);
    const c = new PackedDescriptorChain(m);
    // Every pop takes the general path (a recorder is set), so the chain grows where it prepares.
    m.recorder = () => {};
    const one = rig(1, m);
    one.drv.writeSlot(0, { addr: 0x4000, len: 4, id: 0, flags: AVAIL });
    expect(one.q.popInto(c)).toBe(true);
    const four = rig(4, m);
    writeChain(four.drv, 0, 2, R_FIRST.slice(0, 3));
    expect(four.q.popInto(c)).toBe(true);
    const seen: number[][] = [];
    for (let ok = c.rewind(); ok; ok = c.advance()) seen.push([c.index, c.addr, c.len]);
    expect(seen).toEqual([
      [0, 0x4000, 8],
      [1, 0x5000, 16],
      [2, 0x6000, 4],
    ]);
    expect([c.bufferId, c.end]).toEqual([2, null]);
  });
});
