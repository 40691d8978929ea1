/** walkMismatch: the one comparison of a popped chain with the model's walk (queue-shadow, ring-watch). */
import { describe, expect, it } from "vitest";
import { GuestMemory } from "../impl/memory/guest-memory.ts";
import { DescriptorChain } from "../impl/queue/descriptor-chain.ts";
import { SplitDriver } from "../impl/queue/split-driver.ts";
import { SplitQueue } from "../impl/queue/split-queue.ts";
import { walkChain, type SpecWalk } from "../spec/queue.ts";
import { specMemoryOf, walkMismatch } from "./oracle.ts";

const popped = (
  beforePop: (m: GuestMemory, desc: number) => void = () => {},
): { chain: DescriptorChain; head: number; m: GuestMemory; table: bigint } => {
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
  return { chain, head, m, table: BigInt(drv.layout.descTable) };
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
});
