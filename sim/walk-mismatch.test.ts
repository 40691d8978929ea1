/**
 * walkMismatch: the one comparison of a popped chain with the model's walk (queue-shadow,
 * ring-watch); checkChain: the chain, the model's walk and the driver's record together.
 */
import { describe, expect, it } from "vitest";
import { GuestMemory } from "../impl/memory/guest-memory.ts";
import { DescriptorChain } from "../impl/queue/descriptor-chain.ts";
import { SplitDriver } from "../impl/queue/split-driver.ts";
import { SplitQueue } from "../impl/queue/split-queue.ts";
import type { GuestBuffer, GuestSegment } from "../impl/queue/guest-queue.ts";
import { walkChain, type SpecDescriptor, type SpecWalk } from "../spec/queue.ts";
import { VIRTQ_DESC_F_WRITE } from "../wire/split.ts";
import { SimContext, SimViolation } from "./engine.ts";
import { checkChain, specMemoryOf, walkMismatch } from "./oracle.ts";

const popped = (
  beforePop: (m: GuestMemory, desc: number) => void = () => {},
): { chain: DescriptorChain; head: number; m: GuestMemory; table: bigint; drv: SplitDriver } => {
  const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x10000) }]);
  const drv = SplitDriver.at(m, 16, 0);
  const q = new SplitQueue(16);
  q.configure({
    size: 16,
    ready: true,
    descTable: drv.layout.descTable,
    availRing: drv.layout.availRing,
    usedRing: drv.layout.usedRing,
  });
  expect(q.initialize(m).ok).toBe(true);
  const head = drv.addChain([
    { addr: 0x4000, len: 64 },
    { addr: 0x5000, len: 128, write: true },
    { addr: 0x6000, len: 32, write: true },
  ])!;
  beforePop(m, drv.layout.descTable + 16 * head);
  const chain = new DescriptorChain(m);
  expect(q.popInto(chain)).toBe(true);
  return { chain, head, m, table: BigInt(drv.layout.descTable), drv };
};

describe("walkMismatch [SIM-QUEUE-REFINES]", () => {
  it("is undefined when the device's chain is the model's walk, and leaves the cursor rewound", () => {
    const { chain, head, m, table } = popped();
    expect(walkMismatch(chain, head, walkChain(specMemoryOf(m), table, 16, head))).toBeUndefined();
    expect(chain.len).toBe(64);
  });

  it("names the counts when the walks differ in length, and a differing descriptor", () => {
    const { chain, head, m, table } = popped();
    const walk = walkChain(specMemoryOf(m), table, 16, head);
    const shorter = { ...walk, descriptors: walk.descriptors.slice(0, 2) };
    expect(walkMismatch(chain, head, shorter)).toBe(
      `head ${head}: device walked 3 descriptors (end null), reference 2 (end null)`,
    );
    const other = {
      ...walk,
      descriptors: walk.descriptors.map((d, i) => (i === 1 ? { ...d, len: 129 } : d)),
    };
    expect(walkMismatch(chain, head, other)).toBe(
      `head ${head}: device walked 3 descriptors (end null), reference 3 (end null)`,
    );
  });

  it("compares addresses exactly, above 2^53 too (where a number rounds)", () => {
    const moved = (walk: SpecWalk, addr: bigint): SpecWalk => ({
      ...walk,
      descriptors: walk.descriptors.map((d, i) => (i === 0 ? { ...d, addr } : d)),
    });
    const low = popped();
    const walk = walkChain(specMemoryOf(low.m), low.table, 16, low.head);
    expect(walkMismatch(low.chain, low.head, moved(walk, 0x4001n))).toMatch(/device walked 3 descriptors/);
    // Descriptor 0 at 2^53 + 1: the cursor's number reads 2^53, its u64 is exact.
    const { chain, head, m, table } = popped((mem, at) => {
      mem.writeU32(at, 1);
      mem.writeU32(at + 4, 0x200000);
    });
    const high = walkChain(specMemoryOf(m), table, 16, head);
    expect(high.descriptors[0]!.addr).toBe(2n ** 53n + 1n);
    expect(chain.addr).toBe(2 ** 53);
    expect(walkMismatch(chain, head, high)).toBeUndefined();
    expect(walkMismatch(chain, head, moved(high, 2n ** 53n))).toMatch(/device walked 3 descriptors/);
  });

  it("catches a cursor whose u64 and number addresses disagree, below 2^53 and above", () => {
    // Below 2^53: the number is right, the u64 (CHAIN-ADDR-U64, what the device's errors name) is off by 4 GiB.
    const low = popped();
    const lowWalk = walkChain(specMemoryOf(low.m), low.table, 16, low.head);
    const lowBig = low.chain.addrBig.bind(low.chain);
    low.chain.addrBig = () => lowBig() + 0x1_0000_0000n;
    expect(walkMismatch(low.chain, low.head, lowWalk)).toMatch(/device walked 3 descriptors/);
    // Above 2^53: the u64 is right, the number the device locates with has lost its high word.
    const high = popped((mem, at) => {
      mem.writeU32(at, 0x4000);
      mem.writeU32(at + 4, 0x200000);
    });
    const highWalk = walkChain(specMemoryOf(high.m), high.table, 16, high.head);
    expect(highWalk.descriptors[0]!.addr).toBe(2n ** 53n + 0x4000n);
    Object.defineProperty(high.chain, "addr", { get: () => Number(high.chain.addrBig() & 0xffff_ffffn) });
    expect(high.chain.addr).toBe(0x4000);
    expect(walkMismatch(high.chain, high.head, highWalk)).toMatch(/device walked 3 descriptors/);
  });
});

describe("checkChain [SIM-CHAIN-MATCH]", () => {
  /** The rule checkChain stops the run with, or "agree". */
  const verdict = (f: () => void): string => {
    try {
      f();
      return "agree";
    } catch (e) {
      if (e instanceof SimViolation) return e.rule;
      throw e;
    }
  };
  const ctx = (): SimContext => new SimContext({ seed: 1, steps: 0, faults: 0, oracle: true, trace: false });

  it("passes when device, driver and reference agree, and names all three when one differs", () => {
    const { chain, head, m, table, drv } = popped();
    const buf = drv.inFlightAt(head)!;
    const walk = walkChain(specMemoryOf(m), table, 16, head);
    expect(verdict(() => checkChain(ctx(), chain, buf, walk))).toBe("agree");
    expect(verdict(() => checkChain(ctx(), chain, buf, undefined))).toBe("agree");
    expect(chain.len).toBe(64);
    const segs = (i: number, f: (s: GuestSegment) => GuestSegment): GuestBuffer => ({
      ...buf,
      segments: buf.segments.map((s, k) => (k === i ? f(s) : s)),
    });
    const ref = (i: number, f: (d: SpecDescriptor) => SpecDescriptor): SpecWalk => ({
      ...walk,
      descriptors: walk.descriptors.map((d, k) => (k === i ? f(d) : d)),
    });
    const cases: (() => void)[] = [
      () =>
        checkChain(
          ctx(),
          chain,
          segs(1, (s) => ({ ...s, len: s.len + 1 })),
          walk,
        ),
      () =>
        checkChain(
          ctx(),
          chain,
          segs(2, (s) => ({ ...s, write: false })),
          undefined,
        ),
      () => checkChain(ctx(), chain, { ...buf, segments: buf.segments.slice(0, 2) }, undefined),
      () =>
        checkChain(
          ctx(),
          chain,
          buf,
          ref(0, (d) => ({ ...d, addr: d.addr + 1n })),
        ),
      () =>
        checkChain(
          ctx(),
          chain,
          buf,
          ref(1, (d) => ({ ...d, flags: d.flags & ~VIRTQ_DESC_F_WRITE })),
        ),
      () =>
        checkChain(
          ctx(),
          chain,
          buf,
          ref(2, (d) => ({ ...d, addr: d.addr + 2n ** 53n })),
        ),
      () => checkChain(ctx(), chain, buf, { ...walk, end: { _tag: "ChainTtlExpired" } }),
    ];
    for (const f of cases) expect(verdict(f)).toBe("SIM-CHAIN-MATCH");
    let message = "";
    try {
      checkChain(
        ctx(),
        chain,
        segs(1, (s) => ({ ...s, len: 129 })),
        walk,
      );
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toBe(
      `id ${head} (seq ${buf.seq}): driver made [r:16384+64,w:20480+129,w:24576+32], device walked [r:16384+64,w:20480+128,w:24576+32], reference walked [r:16384+64,w:20480+128,w:24576+32]`,
    );
  });
});
