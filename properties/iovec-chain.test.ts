/**
 * IoVec buffers loaded from real descriptor chains (impl/queue's DescriptorChain, laid out by
 * the QueueDriver, direct or through an indirect table, sometimes with hostile descriptors)
 * agree with the spec applied to spec/queue.ts's walk of the same memory: same buffer or
 * same error, same bytes.
 */
import fc from "fast-check";
import { describe, expect } from "vitest";
import { property } from "./harness.ts";
import { buildMemories, type MemoryLayout } from "./arbitraries/memory.ts";
import { DescriptorChain } from "../impl/queue/descriptor-chain.ts";
import { VIRTQ_DESC_F_NEXT } from "../wire/split.ts";
import { SplitDriver } from "../impl/queue/split-driver.ts";
import { walkChain } from "../spec/queue.ts";
import * as spec from "../spec/iovec.ts";
import { IoVecBuffer, IoVecBufferMut } from "../impl/iovec/iovec.ts";

const QUEUE_BASE = 0;
const QUEUE_REGION = 0x10000;
const INDIRECT_AT = 0x8003; // unaligned on purpose (CHAIN-INDIRECT-UNALIGNED)
const DATA_BASE = 0x100000;

interface Buf {
  readonly region: number;
  readonly at: number;
  readonly len: number;
  readonly write: boolean;
}

const bufArb: fc.Arbitrary<Buf> = fc.record({
  region: fc.nat(),
  at: fc.nat(),
  len: fc.oneof(fc.nat({ max: 64 }), fc.nat()),
  write: fc.boolean(),
});

/** The queue's region, then 1..3 data regions of up to 64 KiB. */
const layoutArb: fc.Arbitrary<MemoryLayout> = fc
  .array(fc.integer({ min: 1, max: 64 * 1024 }), { minLength: 1, maxLength: 3 })
  .map((sizes) => [
    { base: QUEUE_BASE, size: QUEUE_REGION },
    ...sizes.map((size, i) => ({ base: DATA_BASE * (i + 1), size })),
  ]);

const place = (
  layout: MemoryLayout,
  b: Buf,
  hostile: boolean,
): { addr: number; len: number; write: boolean } => {
  const r = layout[1 + (b.region % (layout.length - 1))]!;
  const off = b.at % r.size;
  // A hostile buffer may run past its region's end; a good one stays inside.
  const len = hostile ? b.len % (2 * r.size) : b.len % (r.size - off + 1);
  return { addr: r.base + off, len, write: b.write };
};

describe("iovec: loading real descriptor chains", () => {
  property(
    "IoVecBuffer and IoVecBufferMut from a DescriptorChain equal the spec over walkChain",
    [
      "IOV-LOAD-WRITE-ONLY",
      "IOV-MUT-READ-ONLY",
      "IOV-SEG-MEMORY",
      "IOV-CHAIN-END",
      "IOV-APPEND-RESULT",
      "IOV-LOAD-CLEAR",
    ],
    fc.property(
      layoutArb,
      fc.integer(),
      fc.array(bufArb, { minLength: 1, maxLength: 24 }),
      fc.boolean(),
      fc.boolean(),
      fc.option(fc.nat({ max: 40 }), { freq: 3 }),
      fc.constantFrom(8, 16, 32),
      fc.constantFrom("one-way", "one-way", "mixed", "hostile"),
      (layout, seed, bufs, writable, indirect, breakAt, size, mode) => {
        const { impl } = buildMemories(layout, seed);
        const drv = SplitDriver.at(impl, size, QUEUE_BASE);
        // Mostly one direction, as devices expect; sometimes mixed or partly outside memory.
        const mixed = mode === "mixed";
        const hostile = mode === "hostile";
        const buffers = bufs.map((b) => place(layout, { ...b, write: mixed ? b.write : writable }, hostile));
        if (!indirect && buffers.length > size) buffers.length = size;
        const head = drv.addChain(buffers, indirect ? { indirectTable: INDIRECT_AT } : {});
        if (head === undefined) return false;
        if (breakAt !== null && !indirect) {
          // A hostile guest rewrites one link to point outside the table (CHAIN-NEXT-RANGE).
          const i = breakAt % size;
          const d = drv.readDescriptor(i);
          drv.writeDescriptor(i, { ...d, flags: d.flags | VIRTQ_DESC_F_NEXT, next: size + breakAt });
        }
        // The spec sees the memory after the driver wrote the rings.
        const specNow = impl.toSpecMemory(true);
        const walk = walkChain(specNow, BigInt(drv.layout.descTable), size, head);

        const chain = DescriptorChain.checkedNew(impl, drv.layout.descTable, size, head);
        // A broken head is refused by the queue (CHAIN-CHECKED-NEW): no chain to load.
        if (chain === undefined) return breakAt !== null;
        const ro = IoVecBuffer.fromChain(impl, chain);
        const wantRo = spec.loadReadable(specNow, walk.descriptors);
        if (wantRo.ok) {
          expect(ro.ok).toBe(true);
          if (ro.ok) {
            expect([ro.value.len, ro.value.segmentCount]).toEqual([
              wantRo.value.len,
              wantRo.value.segments.length,
            ]);
            const all = new Uint8Array(ro.value.len);
            expect(ro.value.readInto(all, 0)).toBe(all.length);
            expect(Buffer.compare(all, spec.contents(specNow, wantRo.value))).toBe(0);
          }
        } else {
          expect(ro).toEqual(wantRo);
        }

        const rw = new IoVecBufferMut();
        const got = rw.appendChain(impl, chain);
        const want = spec.appendChain(spec.emptyIoVecMut(), specNow, head, walk.descriptors);
        expect(got).toEqual(want.ok ? { ok: true, value: want.value.parsed } : want);
        // IOV-LOAD-CLEAR: load drops what the buffer held, then appends the chain again.
        const held = want.ok ? want.value.state : spec.emptyIoVecMut();
        const reload = rw.load(impl, chain);
        const wantReload = spec.loadWritable(held, specNow, head, walk.descriptors);
        if (wantReload.ok) {
          expect(reload.ok).toBe(true);
          expect([rw.len, rw.segmentCount]).toEqual([wantReload.value.len, wantReload.value.segments.length]);
        } else expect(reload).toEqual(wantReload);
        return true;
      },
    ),
    { numRuns: 300 },
  );
});
