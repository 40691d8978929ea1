/**
 * rust-vmm virtio-queue's historic bugs, each a named property over random queues:
 * availIdxFarAhead (PR 196), sizeZero (PR 173), popAfterReset (PR 225),
 * selfReferencingDescriptorOver4GiB (PR 236), unalignedIndirectTableAccepted (PR 220).
 */
import fc from "fast-check";
import { describe } from "vitest";
import { DescriptorChain, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT } from "../impl/queue/descriptor-chain.ts";
import { QueueDriver } from "../impl/queue/driver.ts";
import { MAX_CHAIN_BYTES, walkChain, type ChainError } from "../spec/queue.ts";
import { property } from "./harness.ts";
import { buildMemories } from "./arbitraries/memory.ts";
import { chainBuffersArb, encodeDescriptor, queuePlacementArb } from "./arbitraries/queue.ts";
import { same, show, specOf, walkImpl } from "./arbitraries/chain.ts";

const fail = (what: string): never => {
  throw new Error(what);
};

describe("rust-vmm regressions", () => {
  /**
   * PR 236: a descriptor whose NEXT points at itself, with a large len, made the chain's
   * total length overflow a u32. The walk now yields at most min(ttl, floor((2^32-1)/len))
   * copies of it and ends with DescriptorChainOverflow when the byte cap comes first,
   * ChainTtlExpired otherwise; directly in the queue's table or inside an indirect table.
   */
  property(
    "selfReferencingDescriptorOver4GiB",
    ["CHAIN-LEN-U32", "CHAIN-TTL", "CHAIN-INDIRECT"],
    fc.property(
      queuePlacementArb().chain((q) =>
        fc.record({
          q: fc.constant(q),
          seed: fc.integer(),
          index: fc.nat(q.size - 1),
          len: fc.oneof(
            fc.constantFrom(0x8000_0000, 0xffff_ffff, 0x1_0000, 0x2_0000, 0x1000_0000),
            fc.integer({ min: 1, max: 0xffff_ffff }),
            fc.integer({ min: 0x1_0000, max: 0x10_0000 }),
          ),
          addr: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
          flags: fc.constantFrom(VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_NEXT | 2),
          // Through an indirect table of `entries` entries whose entry 0 refers to itself.
          indirect: fc.option(fc.record({ entries: fc.integer({ min: 1, max: 64 }), at: fc.nat() }), {
            nil: undefined,
          }),
        }),
      ),
      ({ q, seed, index, len, addr, flags, indirect }) => {
        const { impl } = buildMemories(q.layout, seed);
        const table = BigInt(q.descTable);
        let ttl = q.size;
        let selfIndex = index;
        if (indirect === undefined) {
          impl.tryWrite(table + 16n * BigInt(index), encodeDescriptor({ addr, len, flags, next: index }));
        } else {
          const region = q.data.find((r) => r.size >= 16 * indirect.entries);
          fc.pre(region !== undefined);
          const at = region!.base + (indirect.at % (region!.size - 16 * indirect.entries + 1));
          impl.tryWrite(BigInt(at), encodeDescriptor({ addr, len, flags, next: 0 }));
          impl.tryWrite(
            table + 16n * BigInt(index),
            encodeDescriptor({
              addr: BigInt(at),
              len: 16 * indirect.entries,
              flags: VIRTQ_DESC_F_INDIRECT,
              next: 0,
            }),
          );
          ttl = indirect.entries;
          selfIndex = 0;
        }
        const chain = DescriptorChain.checkedNew(impl, q.descTable, q.size, index);
        if (chain === undefined) return fail("a self-referencing head was refused");
        const walked = walkImpl(chain);
        const byCap = Math.floor(MAX_CHAIN_BYTES / len);
        const count = Math.min(ttl, byCap);
        const end: ChainError =
          byCap < ttl
            ? { _tag: "DescriptorChainOverflow", index: selfIndex, len }
            : { _tag: "ChainTtlExpired", limit: ttl };
        if (walked.descriptors.length !== count)
          fail(`${walked.descriptors.length} descriptors, expected ${count}`);
        if (!same(walked.end, end)) fail(`ended ${show(walked.end)}, expected ${show(end)}`);
        if (walked.descriptors.some((d) => d.index !== selfIndex || d.len !== len || d.addr !== addr))
          fail("a yielded descriptor is not the self-referencing one");
        if (chain.totalLength !== count * len || chain.totalLength > MAX_CHAIN_BYTES)
          fail("total length wrong");
        if (!same(walked, walkChain(specOf(impl), table, q.size, index))) fail("impl and spec walks differ");
      },
    ),
    { numRuns: 200 },
  );

  /**
   * PR 220: an indirect table need not be 16-aligned. A chain added through a table at any
   * address (mostly unaligned) walks to exactly the buffers the driver put there.
   */
  property(
    "unalignedIndirectTableAccepted",
    ["CHAIN-INDIRECT-UNALIGNED", "CHAIN-INDIRECT"],
    fc.property(
      queuePlacementArb().chain((q) =>
        fc.record({
          q: fc.constant(q),
          seed: fc.integer(),
          buffers: chainBuffersArb(q.data, 8),
          region: fc.nat(q.data.length - 1),
          slot: fc.nat(),
          misalign: fc.integer({ min: 0, max: 15 }),
        }),
      ),
      ({ q, seed, buffers, region, slot, misalign }) => {
        const { impl } = buildMemories(q.layout, seed);
        const r = q.data[region]!;
        const bytes = 16 * buffers.length;
        fc.pre(r.size >= bytes + 16);
        const at = r.base + 16 * (slot % Math.floor((r.size - bytes) / 16)) + misalign;
        const driver = new QueueDriver(impl, q.size, q);
        const head = driver.addChain(
          buffers.map((b) => ({ addr: b.addr, len: b.len, write: b.write })),
          { indirectTable: at },
        );
        if (head === undefined) return fail("driver refused the chain");
        const chain = DescriptorChain.checkedNew(impl, q.descTable, q.size, head);
        if (chain === undefined) return fail(`head with an indirect table at ${at} refused`);
        const walked = walkImpl(chain);
        if (walked.end !== null) fail(`walk ended with ${show(walked.end)}`);
        const got = walked.descriptors.map((d) => ({
          addr: Number(d.addr),
          len: d.len,
          write: (d.flags & 2) !== 0,
        }));
        if (!same(got, buffers)) fail(`walked ${show(got)}, driver added ${show(buffers)}`);
        if (walked.descriptors.some((d) => !d.indirect)) fail("a descriptor not marked indirect");
      },
    ),
    { numRuns: 200 },
  );
});
