/**
 * IoVec buffers loaded from real descriptor chains: the seed's cases through a split queue
 * (the driver lays out the chain, the device pops it), indirect tables, and chains that end
 * early.
 */
import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import { DescriptorChain } from "../queue/descriptor-chain.ts";
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";
import { SplitDriver } from "../queue/split-driver.ts";
import { SplitQueue } from "../queue/split-queue.ts";
import { walkChain } from "../../spec/queue.ts";
import { createMemory } from "../../spec/memory.ts";
import * as spec from "../../spec/iovec.ts";
import { IoVecBuffer, IoVecBufferMut } from "./iovec.ts";
import { SliceSink } from "./sinks.ts";

const QUEUE_SIZE = 16;

/** default_mem plus a queue at 0 of size 16, as Firecracker's VirtQueue::new(GuestAddress(0), m, 16). */
const setup = (): { mem: GuestMemory; drv: SplitDriver; q: SplitQueue } => {
  const mem = GuestMemory.of([
    { base: 0, bytes: new Uint8Array(0x10000) },
    { base: 0x20000, bytes: new Uint8Array(0x10000) },
    { base: 0x40000, bytes: new Uint8Array(0x10000) },
  ]);
  const drv = SplitDriver.at(mem, QUEUE_SIZE, 0);
  const q = new SplitQueue(QUEUE_SIZE);
  q.configure({
    size: QUEUE_SIZE,
    ready: true,
    descTable: drv.layout.descTable,
    availRing: drv.layout.availRing,
    usedRing: drv.layout.usedRing,
  });
  const init = q.initialize(mem);
  if (!init.ok) throw new Error(`queue: ${init.error._tag}`);
  return { mem, drv, q };
};

const pop = (q: SplitQueue): DescriptorChain => {
  const r = q.pop();
  if (!r.ok || r.value === null) throw new Error("expected a chain");
  return r.value;
};

/** The seed's chain: four 64-byte descriptors at 0x20000 + 64 j; read-only ones hold 0..255. */
const addSeedChain = (mem: GuestMemory, drv: SplitDriver, write: boolean): void => {
  mem.writeFrom(0x20000, write ? new Uint8Array(256) : Uint8Array.from({ length: 256 }, (_, i) => i));
  drv.addChain([0, 1, 2, 3].map((j) => ({ addr: 0x20000 + 64 * j, len: 64, write })));
};

describe("IoVec buffers from popped descriptor chains", () => {
  it("test_access_mode through a split queue [IOV-LOAD-WRITE-ONLY IOV-MUT-READ-ONLY]", () => {
    const { mem, drv, q } = setup();
    addSeedChain(mem, drv, false);
    expect(IoVecBuffer.fromChain(mem, pop(q)).ok).toBe(true);
    addSeedChain(mem, drv, true);
    expect(IoVecBuffer.fromChain(mem, pop(q))).toEqual({ ok: false, error: { _tag: "WriteOnlyDescriptor" } });
    addSeedChain(mem, drv, false);
    expect(IoVecBufferMut.fromChain(mem, pop(q))).toEqual({
      ok: false,
      error: { _tag: "ReadOnlyDescriptor" },
    });
    addSeedChain(mem, drv, true);
    expect(IoVecBufferMut.fromChain(mem, pop(q)).ok).toBe(true);
  });

  it("test_iovec_length, test_iovec_mut_length and the parsed head index [IOV-APPEND-RESULT]", () => {
    const { mem, drv, q } = setup();
    addSeedChain(mem, drv, false);
    const ro = IoVecBuffer.fromChain(mem, pop(q));
    expect(ro.ok && ro.value.len).toBe(256);

    addSeedChain(mem, drv, true);
    addSeedChain(mem, drv, true);
    const first = pop(q);
    const second = pop(q);
    const iov = new IoVecBufferMut();
    const a = iov.appendChain(mem, first);
    const b = iov.appendChain(mem, second);
    expect(a).toEqual({ ok: true, value: { headIndex: first.headIndex, length: 256, nrIovecs: 4 } });
    expect(b).toEqual({ ok: true, value: { headIndex: second.headIndex, length: 256, nrIovecs: 4 } });
    expect(iov.len).toBe(512);
    // The device reports the chain it used by its head index.
    expect(q.addUsed(first.headIndex, 256).ok).toBe(true);
  });

  it("test_iovec_read_at over a popped chain [IOV-READ-LEN IOV-EXACT-PARTIAL IOV-EXACT-OOB]", () => {
    const { mem, drv, q } = setup();
    addSeedChain(mem, drv, false);
    const r = IoVecBuffer.fromChain(mem, pop(q));
    if (!r.ok) throw new Error(r.error._tag);
    const iov = r.value;
    const buf = new Uint8Array(257);
    expect(iov.readAt(new SliceSink(buf), 0, 257)).toBe(256);
    expect(buf[255]).toBe(255);
    const five = new Uint8Array(5);
    expect(iov.readExactAt(five, 60)).toBeNull();
    expect([...five]).toEqual([60, 61, 62, 63, 64]);
    expect(iov.readExactAt(five, 252)).toEqual({ _tag: "PartialBuffer", expected: 5, completed: 4 });
    expect(iov.readExactAt(five, 256)).toEqual({ _tag: "OutOfBounds", addr: 256 });
  });

  it("test_iovec_mut_write_at over a popped chain: offset 60 spans two segments [IOV-WRITE-LEN]", () => {
    const { mem, drv, q } = setup();
    addSeedChain(mem, drv, true);
    const r = IoVecBufferMut.fromChain(mem, pop(q));
    if (!r.ok) throw new Error(r.error._tag);
    expect(r.value.writeAllAt(Uint8Array.from([0, 1, 2, 3, 4]), 60)).toBeNull();
    expect([...mem.slice(0x20000 + 60, 4)!]).toEqual([0, 1, 2, 3]);
    expect(mem.readU8(0x20040)).toBe(4);
    expect(r.value.writeAllAt(Uint8Array.from([9]), 256)).toEqual({ _tag: "OutOfBounds", addr: 256 });
  });

  it("a chain through an indirect table loads the table's descriptors [IOV-ZERO-COPY]", () => {
    const { mem, drv, q } = setup();
    mem.writeFrom(0x40000, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
    drv.addChain(
      [
        { addr: 0x40000, len: 3 },
        { addr: 0x40004, len: 4 },
      ],
      { indirectTable: 0x8001 },
    );
    const r = IoVecBuffer.fromChain(mem, pop(q));
    if (!r.ok) throw new Error(r.error._tag);
    expect(r.value.iovecs().map((v) => [...v])).toEqual([
      [1, 2, 3],
      [5, 6, 7, 8],
    ]);
  });

  it("a chain whose walk stops early (next out of range) is the descriptors walked [IOV-CHAIN-END]", () => {
    const { mem, drv } = setup();
    // 0 -> 1 -> 99: descriptor 1's next is outside the 16-entry table.
    drv.writeDescriptor(0, { addr: 0x40000, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 1 });
    drv.writeDescriptor(1, { addr: 0x40010, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 99 });
    const chain = DescriptorChain.checkedNew(mem, drv.layout.descTable, QUEUE_SIZE, 0);
    if (chain === undefined) throw new Error("head refused");
    const r = IoVecBuffer.fromChain(mem, chain);
    if (!r.ok) throw new Error(r.error._tag);
    expect([r.value.len, r.value.segmentCount]).toEqual([16, 2]);
    expect(chain.end).toEqual({ _tag: "InvalidDescriptorIndex", index: 99, size: QUEUE_SIZE });

    // The spec, from the spec walk of the same memory, agrees.
    const specMem = createMemory(mem.regions.map((g) => ({ base: BigInt(g.base), bytes: g.bytes })));
    if (!specMem.ok) throw new Error("memory");
    const walk = walkChain(specMem.value, BigInt(drv.layout.descTable), QUEUE_SIZE, 0);
    const want = spec.loadReadable(specMem.value, walk.descriptors);
    expect(want.ok && [want.value.len, want.value.segments.length]).toEqual([16, 2]);
  });

  it("a writable chain with a descriptor outside memory leaves the buffer as it was [IOV-SEG-MEMORY IOV-APPEND-ATOMIC]", () => {
    const { mem, drv } = setup();
    const iov = new IoVecBufferMut();
    drv.writeDescriptor(0, { addr: 0x40000, len: 8, flags: VIRTQ_DESC_F_WRITE, next: 0 });
    const good = DescriptorChain.checkedNew(mem, drv.layout.descTable, QUEUE_SIZE, 0)!;
    expect(iov.appendChain(mem, good).ok).toBe(true);
    drv.writeDescriptor(1, { addr: 0x40000, len: 8, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, next: 2 });
    drv.writeDescriptor(2, { addr: 0x1_0000_0000_0000n, len: 8, flags: VIRTQ_DESC_F_WRITE, next: 0 });
    const bad = DescriptorChain.checkedNew(mem, drv.layout.descTable, QUEUE_SIZE, 1)!;
    expect(iov.appendChain(mem, bad)).toEqual({
      ok: false,
      error: {
        _tag: "GuestMemory",
        error: { _tag: "InvalidGuestAddress", addr: 0x1_0000_0000_0000n, len: 8n },
      },
    });
    expect([iov.len, iov.segmentCount]).toEqual([8, 1]);
  });
});
