/**
 * Tests written to kill mutants that survived `npm run mutate -- impl/queue/descriptor-chain.ts`:
 * a cursor reused across pops (a refused head, a one-descriptor chain after a longer one or after
 * one that yields nothing), the queue binding, heads at exactly the table size, `hasNext` where
 * the walk will not follow NEXT, a NEXT of exactly the size after the head, walking a chain
 * twice, and the recorder seeing every descriptor entry each walk reads.
 */
import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import { walkChain, type SpecWalk } from "../../spec/queue.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";
import { DescriptorChain, newChainLengths } from "./descriptor-chain.ts";
import { SplitDriver } from "./split-driver.ts";
import { PopStatus, SplitQueue } from "./split-queue.ts";

const SIZE = 16;
const NEXT = VIRTQ_DESC_F_NEXT;

/** An active queue of SIZE at 0x1000 in 64 KiB, every descriptor entry filled with distinct bytes. */
const rig = (): { m: GuestMemory; d: SplitDriver; q: SplitQueue; table: number } => {
  const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x10000) }]);
  const d = SplitDriver.at(m, SIZE, 0x1000);
  for (let i = 0; i < SIZE; i++)
    d.writeDescriptor(i, { addr: 0x1234_5678 + i * 0x1_0001, len: 0x11 + i, flags: 0, next: 0 });
  const q = new SplitQueue(SIZE);
  q.configure({ size: SIZE, ready: true, ...d.layout });
  if (!q.initialize(m).ok) throw new Error("queue refused");
  return { m, d, q, table: d.layout.descTable };
};
/** Puts `head` in the next avail slot and publishes it. */
const offer = (d: SplitDriver, head: number): void => {
  d.pushAvail(head);
  d.publish();
};
/** Writes a chain through the given entries (each with NEXT to the one after). */
const link = (d: SplitDriver, entries: readonly number[], lastFlags = 0, lastNext = 0): void => {
  entries.forEach((e, i) => {
    const last = i === entries.length - 1;
    d.writeDescriptor(e, {
      addr: 0x8000 + e * 0x100,
      len: 0x20 + e,
      flags: last ? lastFlags : NEXT,
      next: last ? lastNext : entries[i + 1]!,
    });
  });
};
/** The impl's walk in the spec's shape. */
const walk = (c: DescriptorChain): SpecWalk => {
  const descriptors: SpecWalk["descriptors"][number][] = [];
  for (let ok = c.rewind(); ok; ok = c.advance())
    descriptors.push({
      index: c.index,
      addr: c.addrBig(),
      len: c.len,
      flags: c.flags,
      next: c.next,
      indirect: c.indirect,
    });
  return { descriptors, end: c.end };
};
const specWalk = (m: GuestMemory, table: number, head: number): SpecWalk =>
  walkChain(m.toSpecMemory(true), BigInt(table), SIZE, head);

describe("an unloaded chain and fresh lengths [CHAIN-RW-SPLIT]", () => {
  it("a new chain is on its memory, yields nothing, and is bound to no queue", () => {
    const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(64) }]);
    const c = new DescriptorChain(m);
    expect(c.memory).toBe(m);
    expect([c.indirect, c.hasNext(), c.totalLength, c.end, c.boundTo]).toEqual([false, false, 0, null, null]);
    expect(c.rewind()).toBe(false);
    expect(c.advance()).toBe(false);
  });

  it("newChainLengths starts every count at zero", () => {
    expect(newChainLengths()).toEqual({
      readableBytes: 0,
      writableBytes: 0,
      readableCount: 0,
      writableCount: 0,
    });
  });
});

describe("the queue binding [VQ-INIT-MEMORY]", () => {
  it("chains popped from one activation share its binding; setHead and a new activation drop it", () => {
    const { m, d, q, table } = rig();
    link(d, [3]);
    link(d, [4]);
    offer(d, 3);
    offer(d, 4);
    const a = new DescriptorChain(m);
    const b = new DescriptorChain(m);
    expect(q.popInto(a) && q.popInto(b)).toBe(true);
    expect(typeof a.boundTo).toBe("object");
    expect(a.boundTo).not.toBeNull();
    expect(b.boundTo).toBe(a.boundTo);
    const first = a.boundTo;
    expect(a.setHead(m, table, SIZE, 3)).toBe(true);
    expect(a.boundTo).toBeNull();
    if (!q.initialize(m).ok) throw new Error("queue refused");
    q.setPositions({ nextAvail: 0 });
    expect(q.popInto(b)).toBe(true);
    expect(b.boundTo).not.toBe(first);
    expect(typeof b.boundTo).toBe("object");
    expect(walk(b)).toEqual(specWalk(m, table, 3));
  });
});

describe("heads refused at the edge of the table [VQ-POP-HEAD CHAIN-CHECKED-NEW]", () => {
  for (const recording of [false, true])
    it(`a head equal to the size is refused and next_avail stays (${recording ? "with" : "without"} a recorder)`, () => {
      const { m, d, q } = rig();
      if (recording) m.recorder = () => {};
      offer(d, SIZE);
      const c = new DescriptorChain(m);
      expect(q.popInto(c)).toBe(false);
      expect(q.lastPop).toBe(PopStatus.InvalidHead);
      expect(q.nextAvail).toBe(0);
      expect(c.rewind()).toBe(false);
    });

  it("a cursor that held a chain walks a refused head as setHead leaves a new cursor (one descriptor, several, unwalked)", () => {
    for (const [held, refused] of [
      [[2], SIZE],
      [[2, 5, 7], SIZE],
      [[2, 5], 6], // head 6 has NEXT out of range
    ] as const) {
      const { m, d, q, table } = rig();
      link(d, held);
      d.writeDescriptor(6, { addr: 0x9000, len: 8, flags: NEXT, next: SIZE });
      offer(d, held[0]);
      offer(d, refused);
      const c = new DescriptorChain(m);
      expect(q.popInto(c)).toBe(true);
      expect(q.popInto(c)).toBe(false);
      expect(q.lastPop).toBe(PopStatus.InvalidHead);
      const fresh = new DescriptorChain(m);
      expect(fresh.setHead(m, table, SIZE, refused)).toBe(false);
      const want = walk(fresh);
      expect(want.descriptors).toHaveLength(refused === SIZE ? 0 : 1);
      expect(walk(c)).toEqual(want);
    }
  });

  it("setHead refusing a head leaves a cursor that reads nothing and reports no walk error", () => {
    const { m, table } = rig();
    for (const head of [SIZE, SIZE + 1, -1, 1.5, 2 ** 32]) {
      const c = new DescriptorChain(m);
      expect(c.setHead(m, table + 0x100, SIZE, head)).toBe(false);
      const seen: number[] = [];
      m.recorder = (addr) => seen.push(addr);
      expect([c.rewind(), c.advance(), c.end]).toEqual([false, false, null]);
      m.recorder = null;
      expect(seen).toEqual([]);
    }
  });
});

describe("hasNext says whether advance() will follow NEXT [CHAIN-TTL CHAIN-NEXT-RANGE]", () => {
  it("false on the last descriptor of a loop once the ttl is spent", () => {
    const { m, d, q } = rig();
    d.writeDescriptor(0, { addr: 0x8000, len: 1, flags: NEXT, next: 1 });
    d.writeDescriptor(1, { addr: 0x8100, len: 1, flags: NEXT, next: 0 });
    offer(d, 0);
    const c = new DescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    const hasNext: boolean[] = [];
    for (let ok = c.rewind(); ok; ok = c.advance()) hasNext.push(c.hasNext());
    expect(hasNext).toEqual([...Array<boolean>(SIZE - 1).fill(true), false]);
    expect(c.end).toEqual({ _tag: "ChainTtlExpired", limit: SIZE });
    expect(c.hasNext()).toBe(false);
  });

  it("false once the walk ended on a NEXT out of range", () => {
    const { m, d, q } = rig();
    link(d, [0, 1], NEXT, SIZE + 3);
    offer(d, 0);
    const c = new DescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    expect([c.rewind(), c.hasNext(), c.advance(), c.hasNext(), c.advance()]).toEqual([
      true,
      true,
      true,
      true,
      false,
    ]);
    expect([c.index, c.flags & NEXT, c.hasNext()]).toEqual([1, NEXT, false]);
  });

  it("false on a one-descriptor chain popped into a cursor that held an unwalked longer chain", () => {
    const { m, d, q } = rig();
    link(d, [1, 2, 3]);
    link(d, [4]);
    offer(d, 1);
    offer(d, 4);
    const c = new DescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    expect(c.hasNext()).toBe(true);
    expect(q.popInto(c)).toBe(true);
    expect(c.hasNext()).toBe(false);
    expect(walk(c)).toEqual(specWalk(m, d.layout.descTable, 4));
  });
});

describe("a cursor reused across pops walks each chain as the spec does, every time [CHAIN-CHECKED-NEW CHAIN-INDIRECT-LEN]", () => {
  it("a one-descriptor chain after a chain that yielded nothing, walked twice", () => {
    const { m, d, q, table } = rig();
    d.writeDescriptor(0, { addr: 0x9000, len: 0, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    link(d, [5], VIRTQ_DESC_F_WRITE);
    offer(d, 0);
    const c = new DescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    expect(walk(c)).toEqual(specWalk(m, table, 0));
    expect(walk(c).end).toEqual({ _tag: "InvalidIndirectDescriptorTable", len: 0 });
    // Popped but not walked: the one-descriptor chain replaces it.
    offer(d, 0);
    offer(d, 5);
    expect(q.popInto(c)).toBe(true);
    expect(q.popInto(c)).toBe(true);
    const want = specWalk(m, table, 5);
    expect(want.descriptors).toHaveLength(1);
    expect(walk(c)).toEqual(want);
    expect(walk(c)).toEqual(want);
  });

  it("a chain of scattered entries walked twice reads the same descriptors both times", () => {
    const { m, d, q, table } = rig();
    link(d, [5, 9, 2, 14], VIRTQ_DESC_F_WRITE);
    offer(d, 5);
    const c = new DescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    const want = specWalk(m, table, 5);
    expect(want.descriptors.map((x) => x.index)).toEqual([5, 9, 2, 14]);
    expect(walk(c)).toEqual(want);
    expect(walk(c)).toEqual(want);
  });

  it("a NEXT equal to the size after the head ends the walk with InvalidDescriptorIndex [CHAIN-NEXT-RANGE]", () => {
    const { m, d, q, table } = rig();
    link(d, [3, 4], NEXT, SIZE);
    offer(d, 3);
    const c = new DescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    const want = specWalk(m, table, 3);
    expect(want.end).toEqual({ _tag: "InvalidDescriptorIndex", index: SIZE, size: SIZE });
    expect(walk(c)).toEqual(want);
    expect(walk(c)).toEqual(want);
  });
});

describe("the recorder sees every descriptor entry a walk reads [VQ-DEVICE-ACCESS]", () => {
  it("pop and two walks of a chain report its entries, in order, each walk", () => {
    for (const entries of [[7], [7, 3, 11]]) {
      const { m, d, q, table } = rig();
      link(d, entries);
      offer(d, entries[0]!);
      const reads: number[] = [];
      m.recorder = (addr, len, write) => {
        if (addr >= table && addr < table + 16 * SIZE) {
          expect([len, write]).toEqual([16, false]);
          reads.push((addr - table) / 16);
        }
      };
      const c = new DescriptorChain(m);
      expect(q.popInto(c)).toBe(true);
      walk(c);
      expect(reads).toEqual(entries);
      reads.length = 0;
      walk(c);
      expect(reads).toEqual(entries);
    }
  });
});

describe("the cursor after an indirect chain [CHAIN-INDIRECT]", () => {
  it("a walk stopped by a NEXT outside its indirect table leaves the cursor on the last descriptor, still indirect [CHAIN-NEXT-RANGE]", () => {
    const { m, d, q, table } = rig();
    d.writeDescriptor(4, { addr: 0x9000, len: 32, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    d.writeDescriptor(0, { addr: 0xa000, len: 8, flags: NEXT, next: 5 }, 0x9000);
    offer(d, 4);
    const c = new DescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    expect(c.advance()).toBe(false);
    expect(c.end).toEqual({ _tag: "InvalidDescriptorIndex", index: 5, size: 2 });
    expect([c.index, c.addr, c.indirect]).toEqual([0, 0xa000, true]);
    expect(walk(c)).toEqual(specWalk(m, table, 4));
  });

  it("a chain popped into a cursor that held an unwalked indirect chain: no descriptor is indirect, and rewind mid-walk goes back to its head", () => {
    const { m, d, q, table } = rig();
    d.writeDescriptor(5, { addr: 0x9000, len: 32, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    d.writeDescriptor(0, { addr: 0xa000, len: 8, flags: NEXT, next: 1 }, 0x9000);
    d.writeDescriptor(1, { addr: 0xa100, len: 8, flags: 0, next: 0 }, 0x9000);
    link(d, [3, 2, 0]);
    offer(d, 5);
    offer(d, 3);
    const c = new DescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    expect([c.index, c.indirect]).toEqual([0, true]);
    expect(q.popInto(c)).toBe(true);
    expect(c.advance()).toBe(true);
    // On entry 2, whose NEXT is entry 0.
    expect([c.index, c.indirect, c.next]).toEqual([2, false, 0]);
    expect(c.rewind()).toBe(true);
    expect(c.index).toBe(3);
    expect(c.advance() && c.advance()).toBe(true);
    expect([c.index, c.indirect]).toEqual([0, false]);
    expect(walk(c)).toEqual(specWalk(m, table, 3));
  });

  it("in a size-1 queue, an indirect head with an empty table yields nothing after a head with NEXT was popped and not walked [CHAIN-INDIRECT-LEN CHAIN-TTL]", () => {
    const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x10000) }]);
    const d = SplitDriver.at(m, 1, 0x1000);
    const q = new SplitQueue(1);
    q.configure({ size: 1, ready: true, ...d.layout });
    if (!q.initialize(m).ok) throw new Error("queue refused");
    d.writeDescriptor(0, { addr: 0x8000, len: 4, flags: NEXT, next: 0 });
    offer(d, 0);
    const c = new DescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    d.writeDescriptor(0, { addr: 0x9000, len: 0, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    offer(d, 0);
    expect(q.popInto(c)).toBe(true);
    expect(c.rewind()).toBe(false);
    expect(c.end).toEqual({ _tag: "InvalidIndirectDescriptorTable", len: 0 });
    expect(walk(c)).toEqual(walkChain(m.toSpecMemory(true), BigInt(d.layout.descTable), 1, 0));
  });
});

describe("a one-descriptor chain after its walk ended [CHAIN-TTL]", () => {
  it("advance() stays false and hasNext() false; index and totalLength still answer for its descriptor", () => {
    const { m, d, q, table } = rig();
    link(d, [1, 7, 3]);
    link(d, [4]);
    offer(d, 1);
    offer(d, 4);
    const c = new DescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    expect(walk(c).descriptors).toHaveLength(3);
    expect(q.popInto(c)).toBe(true);
    expect(c.advance()).toBe(false);
    expect([c.advance(), c.hasNext(), c.index, c.totalLength, c.end]).toEqual([
      false,
      false,
      4,
      0x20 + 4,
      null,
    ]);
    expect(walk(c)).toEqual(specWalk(m, table, 4));
  });
});
