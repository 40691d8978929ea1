import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import { checkedNew as specCheckedNew, walkChain, splitChain, type ChainError } from "../../spec/queue.ts";
import {
  DESC_SIZE,
  MAX_INDIRECT_ENTRIES,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from "../../wire/split.ts";
import { DescriptorChain, newChainLengths } from "./descriptor-chain.ts";
import { SplitDriver } from "./split-driver.ts";
import { SplitQueue } from "./split-queue.ts";

const NEXT = VIRTQ_DESC_F_NEXT;
const WRITE = VIRTQ_DESC_F_WRITE;
const INDIRECT = VIRTQ_DESC_F_INDIRECT;

interface Walked {
  descriptors: { index: number; addr: bigint; len: number; flags: number; next: number; indirect: boolean }[];
  end: ChainError | null;
}

/** The impl's walk in the spec's shape, so the two compare with toEqual. */
const walk = (c: DescriptorChain): Walked => {
  const descriptors: Walked["descriptors"] = [];
  for (let ok = c.rewind(); ok; ok = c.advance()) {
    descriptors.push({
      index: c.index,
      addr: c.addrBig(),
      len: c.len,
      flags: c.flags,
      next: c.next,
      indirect: c.indirect,
    });
  }
  return { descriptors, end: c.end };
};

/** Walks with impl and spec and checks they agree; returns the impl's walk. */
const both = (m: GuestMemory, table: number, size: number, head: number): Walked => {
  const c = DescriptorChain.checkedNew(m, table, size, head);
  const spec = m.toSpecMemory(true);
  expect(c === undefined).toBe(specCheckedNew(spec, BigInt(table), size, head) === undefined);
  if (c === undefined) throw new Error("head refused");
  const w = walk(c);
  expect(w).toEqual(walkChain(spec, BigInt(table), size, head));
  return w;
};

const mem64k = (): GuestMemory => GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x10000) }]);

describe("DescriptorChain", () => {
  it("checkedNew refuses index >= size, an unreadable table, and NEXT out of range [CHAIN-CHECKED-NEW]", () => {
    // Firecracker test_checked_new_descriptor_chain, with two regions.
    const m = GuestMemory.of([
      { base: 0, bytes: new Uint8Array(0x10000) },
      { base: 0x20000, bytes: new Uint8Array(0x2000) },
    ]);
    const q = SplitDriver.at(m, 16, 0);
    const t = q.layout.descTable;
    const spec = (i: number, table = t): boolean =>
      specCheckedNew(m.toSpecMemory(true), BigInt(table), 16, i) !== undefined;
    expect(DescriptorChain.checkedNew(m, t, 16, 16)).toBeUndefined();
    expect(spec(16)).toBe(false);
    expect(DescriptorChain.checkedNew(m, 0x00ff_ffff_ffff, 16, 0)).toBeUndefined();
    expect(spec(0, 0x00ff_ffff_ffff)).toBe(false);
    q.writeDescriptor(0, { addr: 0x1000, len: 0x1000, flags: NEXT, next: 16 });
    expect(DescriptorChain.checkedNew(m, t, 16, 0)).toBeUndefined();
    expect(spec(0)).toBe(false);
    q.writeDescriptor(0, { addr: 0x1000, len: 0x1000, flags: NEXT, next: 1 });
    q.writeDescriptor(1, { addr: 0x2000, len: 0x1000, flags: 0, next: 0 });
    const c = DescriptorChain.checkedNew(m, t, 16, 0)!;
    expect(c.memory).toBe(m);
    expect([c.headIndex, c.index, c.addr, c.len, c.flags, c.next]).toEqual([0, 0, 0x1000, 0x1000, NEXT, 1]);
    expect(c.hasNext()).toBe(true);
    expect(c.advance()).toBe(true);
    expect([c.index, c.addr, c.hasNext()]).toEqual([1, 0x2000, false]);
    expect(c.advance()).toBe(false);
    expect(c.end).toBeNull();
  });

  it("NEXT beside INDIRECT at the head is not a refusal [CHAIN-CHECKED-NEW CHAIN-INDIRECT]", () => {
    const m = mem64k();
    const q = SplitDriver.at(m, 16, 0);
    q.writeDescriptor(0, { addr: 0x7000, len: 16, flags: INDIRECT | NEXT, next: 999 });
    q.writeDescriptor(0, { addr: 0x1000, len: 8, flags: 0, next: 0 }, 0x7000);
    const w = both(m, q.layout.descTable, 16, 0);
    expect(w.descriptors.map((d) => [d.addr, d.indirect])).toEqual([[0x1000n, true]]);
    expect(w.end).toBeNull();
  });

  it("a chain using every table entry ends after size descriptors [CHAIN-TTL]", () => {
    // rust-vmm test_ttl_wrap_around.
    const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x100000) }]);
    const q = SplitDriver.at(m, 16, 0);
    for (let i = 0; i < 15; i++)
      q.writeDescriptor(i, { addr: 0x1000 * (i + 1), len: 0x1000, flags: NEXT, next: i + 1 });
    q.writeDescriptor(15, { addr: 0x10000, len: 0x1000, flags: 0, next: 0 });
    const w = both(m, q.layout.descTable, 16, 0);
    expect(w.descriptors).toHaveLength(16);
    expect(w.end).toBeNull();
  });

  it("a loop ends after size descriptors with ChainTtlExpired [CHAIN-TTL]", () => {
    const m = mem64k();
    const q = SplitDriver.at(m, 8, 0);
    q.writeDescriptor(0, { addr: 0x1000, len: 1, flags: NEXT, next: 1 });
    q.writeDescriptor(1, { addr: 0x2000, len: 1, flags: NEXT, next: 0 });
    const w = both(m, q.layout.descTable, 8, 0);
    expect(w.descriptors.map((d) => d.index)).toEqual([0, 1, 0, 1, 0, 1, 0, 1]);
    expect(w.end).toEqual({ _tag: "ChainTtlExpired", limit: 8 });
  });

  it("a size-1 queue whose head has NEXT to itself yields it once [CHAIN-TTL CHAIN-CHECKED-NEW]", () => {
    const m = mem64k();
    const q = SplitDriver.at(m, 1, 0);
    q.writeDescriptor(0, { addr: 0x1000, len: 4, flags: NEXT, next: 0 });
    const w = both(m, q.layout.descTable, 1, 0);
    expect(w.descriptors).toHaveLength(1);
    expect(w.end).toEqual({ _tag: "ChainTtlExpired", limit: 1 });
  });

  it("a later descriptor with next out of range is yielded, then the walk ends [CHAIN-NEXT-RANGE]", () => {
    // rust-vmm test_checked_new_descriptor_chain: the out-of-range next is seen only when followed.
    const m = mem64k();
    const q = SplitDriver.at(m, 16, 0);
    q.writeDescriptor(0, { addr: 0x1000, len: 1, flags: NEXT, next: 1 });
    q.writeDescriptor(1, { addr: 0x2000, len: 1, flags: NEXT, next: 16 });
    const w = both(m, q.layout.descTable, 16, 0);
    expect(w.descriptors).toHaveLength(2);
    expect(w.end).toEqual({ _tag: "InvalidDescriptorIndex", index: 16, size: 16 });
  });

  it("an indirect table after a normal descriptor: NEXT beside INDIRECT is ignored [CHAIN-INDIRECT]", () => {
    // rust-vmm test_new_from_indirect_descriptor.
    const m = mem64k();
    const q = SplitDriver.at(m, 16, 0);
    q.writeDescriptor(0, { addr: 0x6000, len: 0x1000, flags: NEXT, next: 1 });
    q.writeDescriptor(1, { addr: 0x7000, len: 0x40, flags: INDIRECT | NEXT | WRITE, next: 2 });
    q.writeDescriptor(2, { addr: 0x8000, len: 0x1000, flags: 0, next: 0 });
    for (let i = 0; i < 4; i++) {
      q.writeDescriptor(
        i,
        { addr: 0x1000 * i, len: 0x1000, flags: i < 3 ? NEXT : 0, next: i < 3 ? i + 1 : 0 },
        0x7000,
      );
    }
    const w = both(m, q.layout.descTable, 16, 0);
    expect(w.descriptors.map((d) => [d.index, d.indirect])).toEqual([
      [0, false],
      [0, true],
      [1, true],
      [2, true],
      [3, true],
    ]);
    expect(w.end).toBeNull();
  });

  it("an indirect table at an unaligned address is walked [CHAIN-INDIRECT-UNALIGNED]", () => {
    // rust-vmm test_indirect_descriptor_address_noaligned (PR 220).
    const m = mem64k();
    const q = SplitDriver.at(m, 16, 0);
    const head = q.addChain(
      [
        { addr: 0x1000, len: 0x1000 },
        { addr: 0x2000, len: 0x1000, write: true },
      ],
      { indirectTable: 0x7001 },
    )!;
    const w = both(m, q.layout.descTable, 16, head);
    expect(w.descriptors.map((d) => d.addr)).toEqual([0x1000n, 0x2000n]);
  });

  it("indirect table lengths: not a multiple of 16, zero, or more than 65535 entries [CHAIN-INDIRECT-LEN]", () => {
    const m = mem64k();
    const q = SplitDriver.at(m, 16, 0);
    for (const len of [0, 1, 17, (MAX_INDIRECT_ENTRIES + 1) * DESC_SIZE, 0xffff_fff0]) {
      q.writeDescriptor(0, { addr: 0x7000, len, flags: INDIRECT, next: 0 });
      const w = both(m, q.layout.descTable, 16, 0);
      expect(w.descriptors).toHaveLength(0);
      expect(w.end).toEqual({ _tag: "InvalidIndirectDescriptorTable", len });
    }
    // 65535 entries is allowed: the walk reads entry 0 (zeros: one empty descriptor, no NEXT).
    q.writeDescriptor(0, { addr: 0x8000, len: MAX_INDIRECT_ENTRIES * DESC_SIZE, flags: INDIRECT, next: 0 });
    const w = both(m, q.layout.descTable, 16, 0);
    expect([w.descriptors.length, w.end]).toEqual([1, null]);
  });

  it("an INDIRECT descriptor inside an indirect table ends the walk [CHAIN-INDIRECT-NESTED]", () => {
    const m = mem64k();
    const q = SplitDriver.at(m, 16, 0);
    q.writeDescriptor(0, { addr: 0x7000, len: 32, flags: INDIRECT, next: 0 });
    q.writeDescriptor(0, { addr: 0x1000, len: 8, flags: NEXT, next: 1 }, 0x7000);
    q.writeDescriptor(1, { addr: 0x7000, len: 32, flags: INDIRECT, next: 0 }, 0x7000);
    const w = both(m, q.layout.descTable, 16, 0);
    expect(w.descriptors).toHaveLength(1);
    expect(w.end).toEqual({ _tag: "InvalidIndirectDescriptor", index: 1 });
  });

  it("a self-referencing chain stops before its lengths pass 2^32 - 1 [CHAIN-LEN-U32 CHAIN-TTL]", () => {
    // rust-vmm PR 236: 0x8000_0000 * 2 would overflow a u32.
    const m = mem64k();
    const q = SplitDriver.at(m, 16, 0);
    q.writeDescriptor(0, { addr: 0x1000, len: 0x8000_0000, flags: NEXT, next: 0 });
    const w = both(m, q.layout.descTable, 16, 0);
    expect(w.descriptors).toHaveLength(1);
    expect(w.end).toEqual({ _tag: "DescriptorChainOverflow", index: 0, len: 0x8000_0000 });
    // Exactly 2^32 - 1 in total is allowed.
    q.writeDescriptor(0, { addr: 0x1000, len: 0xffff_fffe, flags: NEXT, next: 1 });
    q.writeDescriptor(1, { addr: 0x1000, len: 1, flags: 0, next: 0 });
    const c = DescriptorChain.checkedNew(m, q.layout.descTable, 16, 0)!;
    expect(both(m, q.layout.descTable, 16, 0).end).toBeNull();
    walk(c);
    expect(c.totalLength).toBe(0xffff_ffff);
  });

  it("an indirect table outside memory, or past 2^64, ends the walk with a memory error [CHAIN-MEMORY CHAIN-ADDR-U64]", () => {
    const m = mem64k();
    const q = SplitDriver.at(m, 16, 0);
    q.writeDescriptor(0, { addr: 0xffff_ffff_ffff_fff0n, len: 32, flags: INDIRECT, next: 0 });
    q.writeDescriptor(1, { addr: 0xfff0, len: 32, flags: INDIRECT, next: 0 }); // second entry past the end
    q.writeDescriptor(0, { addr: 0x1000, len: 8, flags: NEXT, next: 1 }, 0xfff0);
    let w = both(m, q.layout.descTable, 16, 0);
    expect(w.end).toEqual({ _tag: "InvalidGuestAddress", addr: 0xffff_ffff_ffff_fff0n, len: 16n });
    w = both(m, q.layout.descTable, 16, 1);
    expect(w.descriptors).toHaveLength(1);
    expect(w.end).toEqual({ _tag: "InvalidGuestAddress", addr: 0x10000n, len: 16n });
    // table + 16*i overflowing 2^64.
    q.writeDescriptor(2, { addr: 0xffff_ffff_ffff_fff8n, len: 32, flags: INDIRECT, next: 0 });
    expect(both(m, q.layout.descTable, 16, 2).end).toEqual({
      _tag: "GuestAddressOverflow",
      addr: 0xffff_ffff_ffff_fff8n,
      len: 16n,
    });
  });

  it("buffer addresses above 2^53 are exact through addrBig [CHAIN-ADDR-U64 CHAIN-DESC-LAYOUT]", () => {
    const m = mem64k();
    const q = SplitDriver.at(m, 4, 0);
    q.writeDescriptor(0, { addr: 0xffff_ffff_ffff_ffffn, len: 7, flags: WRITE, next: 3 });
    const c = DescriptorChain.checkedNew(m, q.layout.descTable, 4, 0)!;
    expect(c.addrBig()).toBe(0xffff_ffff_ffff_ffffn);
    expect(c.addr).toBeGreaterThanOrEqual(2 ** 53);
    expect([c.len, c.flags, c.next, c.isWriteOnly()]).toEqual([7, WRITE, 3, true]);
    expect(both(m, q.layout.descTable, 4, 0).descriptors[0]!.addr).toBe(0xffff_ffff_ffff_ffffn);
  });

  it("readable and writable descriptors are split and summed [CHAIN-RW-SPLIT]", () => {
    const m = mem64k();
    const q = SplitDriver.at(m, 16, 0);
    const head = q.addChain([
      { addr: 0x1000, len: 10 },
      { addr: 0x2000, len: 20 },
      { addr: 0x3000, len: 30, write: true },
      { addr: 0x4000, len: 40, write: true },
    ])!;
    const c = DescriptorChain.checkedNew(m, q.layout.descTable, 16, head)!;
    expect(c.lengths(newChainLengths())).toEqual({
      readableBytes: 30,
      writableBytes: 70,
      readableCount: 2,
      writableCount: 2,
    });
    const readable: number[] = [];
    for (let ok = c.rewindReadable(); ok; ok = c.advanceReadable()) readable.push(c.addr);
    const writable: number[] = [];
    for (let ok = c.rewindWritable(); ok; ok = c.advanceWritable()) writable.push(c.addr);
    expect([readable, writable]).toEqual([
      [0x1000, 0x2000],
      [0x3000, 0x4000],
    ]);
    const s = splitChain(walkChain(m.toSpecMemory(true), BigInt(q.layout.descTable), 16, head));
    expect([s.readableBytes, s.writableBytes, s.readable.length, s.writable.length]).toEqual([30, 70, 2, 2]);
  });

  it("rewind() in the middle of a walk goes back to the first descriptor, popped or set, every time [CHAIN-TTL CHAIN-RW-SPLIT]", () => {
    const m = mem64k();
    const d = SplitDriver.at(m, 8, 0);
    const lens = [1, 2, 3, 4];
    const head = d.addChain(lens.map((len, i) => ({ addr: 0x1000 * (i + 1), len, write: i >= 2 })))!;
    const q = new SplitQueue(8);
    q.configure({ size: 8, ready: true, ...d.layout });
    expect(q.initialize(m).ok).toBe(true);
    const want = walkChain(m.toSpecMemory(true), BigInt(d.layout.descTable), 8, head);
    const popped = new DescriptorChain(m);
    expect(q.popInto(popped)).toBe(true);
    const set = DescriptorChain.checkedNew(m, d.layout.descTable, 8, head)!;
    for (const c of [popped, set]) {
      // Stop after k descriptors, rewind, and walk the whole chain from there.
      for (const k of [1, 2, 3, 1]) {
        let ok = c.rewind();
        for (let n = 1; n < k; n++) ok = c.advance();
        expect([ok, c.len, c.totalLength]).toEqual([
          true,
          lens[k - 1],
          lens.slice(0, k).reduce((a, b) => a + b),
        ]);
        expect(walk(c)).toEqual(want);
      }
      expect(c.lengths(newChainLengths())).toEqual({
        readableBytes: 3,
        writableBytes: 7,
        readableCount: 2,
        writableCount: 2,
      });
    }
  });

  it("a cursor that held an indirect chain walks the popped chains after it as the spec does, rewound or left as the fast walk ended them [CHAIN-INDIRECT CHAIN-NEXT-RANGE]", () => {
    const m = mem64k();
    const d = SplitDriver.at(m, 8, 0);
    const q = new SplitQueue(8);
    q.configure({ size: 8, ready: true, ...d.layout });
    expect(q.initialize(m).ok).toBe(true);
    const spec = (head: number): ReturnType<typeof walkChain> =>
      walkChain(m.toSpecMemory(true), BigInt(d.layout.descTable), 8, head);
    const c = new DescriptorChain(m);
    // An indirect chain, popped and walked: the cursor's last descriptor was indirect.
    const ind = d.addChain([{ addr: 0x4000, len: 5 }], { indirectTable: 0x6001 })!;
    expect(q.popInto(c)).toBe(true);
    expect(walk(c)).toEqual(spec(ind));
    // A NEXT out of range after the head: the walk leaves the fast state on a main-table descriptor
    // (not an indirect one, as the cursor's last was).
    const bad = d.addChain([
      { addr: 0x5200, len: 3 },
      { addr: 0x5300, len: 4 },
    ])!;
    const second = m.regions[0]!.view.getUint16(d.layout.descTable + bad * DESC_SIZE + 14, true);
    d.writeDescriptor(second, { addr: 0x5300, len: 4, flags: NEXT, next: 8 });
    expect(q.popInto(c)).toBe(true);
    const want = spec(bad);
    expect(want.end).toEqual({ _tag: "InvalidDescriptorIndex", index: 8, size: 8 });
    expect(walk(c)).toEqual(want);
    // Popped, not walked (its cursor is fresh), then replaced by a two-descriptor chain walked
    // to its end: rewind must walk that chain again, not take the indirect one's freshness.
    d.addChain([{ addr: 0x4000, len: 5 }], { indirectTable: 0x6101 });
    const two = d.addChain([
      { addr: 0x5000, len: 1 },
      { addr: 0x5100, len: 2 },
    ])!;
    expect(q.popInto(c)).toBe(true);
    expect(q.popInto(c)).toBe(true);
    expect(walk(c)).toEqual(spec(two));
    expect(walk(c)).toEqual(spec(two));
  });

  it("a reused chain object walks the chain it was last given; size 0 refuses every head [CHAIN-CHECKED-NEW]", () => {
    const m = mem64k();
    const q = SplitDriver.at(m, 8, 0);
    const a = q.addChain([{ addr: 0x1000, len: 1 }])!;
    const b = q.addChain([
      { addr: 0x2000, len: 2 },
      { addr: 0x3000, len: 3 },
    ])!;
    const c = new DescriptorChain(m);
    expect(c.setHead(m, q.layout.descTable, 8, b)).toBe(true);
    expect(walk(c).descriptors.map((d) => d.len)).toEqual([2, 3]);
    expect(c.setHead(m, q.layout.descTable, 8, a)).toBe(true);
    expect(walk(c).descriptors.map((d) => d.len)).toEqual([1]);
    // Walking twice reads the same chain again.
    expect(walk(c).descriptors.map((d) => d.len)).toEqual([1]);
    expect(c.setHead(m, q.layout.descTable, 0, 0)).toBe(false);
    expect(c.rewind()).toBe(false);
    // Indices that are not u16 integers are refused by both, never read.
    for (const bad of [-1, 1.5, Number.NaN]) {
      expect(DescriptorChain.checkedNew(m, q.layout.descTable, 8, bad)).toBeUndefined();
      expect(specCheckedNew(m.toSpecMemory(true), BigInt(q.layout.descTable), 8, bad)).toBeUndefined();
      expect(walkChain(m.toSpecMemory(true), BigInt(q.layout.descTable), 8, bad).end?._tag).toBe(
        "InvalidDescriptorIndex",
      );
    }
  });
});
