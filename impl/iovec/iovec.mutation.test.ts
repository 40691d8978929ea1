/**
 * Tests written to kill mutants that survived `npm run mutate iovec`: segment accessors at
 * their bounds, the iovecs() list after every kind of change, sinks and sources that lie
 * about what they moved, offsets and drops that must be refused, the deque's mirror slots
 * across the wrap, the capacity check, the u32 length limit before a later bad descriptor,
 * the write-window cache, and the direction the buffers report to a memory recorder.
 */
import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import { IoVecBuffer, IoVecBufferMut, U32_MAX, type ByteSink, type ByteSource } from "./iovec.ts";
import { SegmentList, type SegmentSpec } from "./segment-list.ts";
import { SliceSink, SliceSource } from "./sinks.ts";

const memory = (size = 0x10000): { mem: GuestMemory; bytes: Uint8Array } => {
  const bytes = Uint8Array.from({ length: size }, (_, i) => (i * 7 + 3) & 0xff);
  return { mem: GuestMemory.of([{ base: 0x1000, bytes }]), bytes };
};
const segs = (write: boolean, ...ranges: [number, number][]): SegmentList =>
  new SegmentList(ranges.map(([addr, len]): SegmentSpec => ({ addr, len, write })));
const unwrap = <T, E>(r: { ok: true; value: T } | { ok: false; error: E }): T => {
  if (!r.ok) throw new Error(`unexpected error ${JSON.stringify(r.error, (_, v: unknown) => String(v))}`);
  return r.value;
};
const listed = (b: IoVecBuffer | IoVecBufferMut): number[][] =>
  b.iovecs().map((v) => [v.byteOffset, v.length]);
const expected = (b: IoVecBuffer | IoVecBufferMut): number[][] => {
  const out: number[][] = [];
  for (let i = 0; i < b.segmentCount; i++) out.push([b.segment(i)!.byteOffset, b.segment(i)!.length]);
  return out;
};

describe("segment accessors and isEmpty", () => {
  it("segment(i) and segmentAddr(i) answer only for 0 <= i < segmentCount [IOV-ZERO-COPY]", () => {
    const { mem } = memory();
    const b = unwrap(IoVecBuffer.fromChain(mem, segs(false, [0x1000, 8], [0x2000, 4])));
    expect(b.segmentAddr(0)).toBe(0x1000);
    expect(b.segmentAddr(1)).toBe(0x2000);
    for (const i of [-1, 2, 3]) {
      expect(b.segment(i)).toBeUndefined();
      expect(b.segmentAddr(i)).toBe(-1);
    }
    // A shorter load leaves old segments in slots past the count: still out of reach.
    unwrap(b.load(mem, segs(false, [0x3000, 2])));
    expect(b.segment(1)).toBeUndefined();
    expect(b.segmentAddr(1)).toBe(-1);
    // In a deque whose run starts past slot 0, index -1 is a live slot: still out of reach.
    const m = new IoVecBufferMut({ capacity: 4 });
    const front = unwrap(m.appendChain(mem, segs(true, [0x1000, 4])));
    unwrap(m.appendChain(mem, segs(true, [0x1100, 4])));
    expect(m.dropChainFront(front)).toBe(true);
    expect(m.start).toBe(1);
    expect(m.segment(-1)).toBeUndefined();
    expect(m.segmentAddr(-1)).toBe(-1);
    expect(m.segmentAddr(0)).toBe(0x1100);
  });

  it("isEmpty is true exactly when the buffer covers no bytes [IOV-LOAD-CLEAR]", () => {
    const { mem } = memory();
    const b = new IoVecBuffer();
    expect(b.isEmpty()).toBe(true);
    unwrap(b.load(mem, segs(false, [0x1000, 3])));
    expect(b.isEmpty()).toBe(false);
    unwrap(b.load(mem, segs(false, [0x1000, 0], [0x1004, 0])));
    expect(b.segmentCount).toBe(2);
    expect(b.isEmpty()).toBe(true);
    const m = new IoVecBufferMut({ capacity: 4 });
    expect(m.isEmpty()).toBe(true);
    unwrap(m.appendChain(mem, segs(true, [0x1000, 1])));
    expect(m.isEmpty()).toBe(false);
  });

  it("a buffer made with no initial slots still keeps every segment and its address [IOV-LOAD-CLEAR]", () => {
    const { mem } = memory();
    const b = new IoVecBuffer(0);
    unwrap(b.load(mem, segs(false, [0x1000, 8], [0x1100, 8], [0x1200, 8])));
    expect([0, 1, 2].map((i) => b.segmentAddr(i))).toEqual([0x1000, 0x1100, 0x1200]);
    expect(b.len).toBe(24);
  });
});

describe("iovecs() follows every change [IOV-ZERO-COPY]", () => {
  it("IoVecBuffer: after the first load, a reload and a clear", () => {
    const { mem } = memory();
    const b = new IoVecBuffer();
    unwrap(b.load(mem, segs(false, [0x1000, 8], [0x2000, 4])));
    expect(listed(b)).toEqual(expected(b));
    expect(listed(b)).toHaveLength(2);
    unwrap(b.load(mem, segs(false, [0x3000, 5])));
    expect(listed(b)).toEqual(expected(b));
    b.clear();
    expect(listed(b)).toEqual([]);
  });

  it("IoVecBufferMut: after append, drops front and back, load and clear", () => {
    const { mem } = memory();
    const m = new IoVecBufferMut({ capacity: 8 });
    const a = unwrap(m.appendChain(mem, segs(true, [0x1000, 8], [0x1100, 8])));
    expect(listed(m)).toEqual(expected(m));
    expect(listed(m)).toHaveLength(2);
    const c = unwrap(m.appendChain(mem, segs(true, [0x1200, 4])));
    expect(listed(m)).toHaveLength(3);
    expect(m.dropChainFront(a)).toBe(true);
    expect(listed(m)).toEqual(expected(m));
    expect(listed(m)).toHaveLength(1);
    expect(m.dropChainBack(c)).toBe(true);
    expect(listed(m)).toEqual([]);
    unwrap(m.load(mem, segs(true, [0x1300, 2], [0x1400, 2])));
    expect(listed(m)).toEqual(expected(m));
    m.clear();
    expect(listed(m)).toEqual([]);
    unwrap(m.appendChain(mem, segs(true, [0x1500, 6])));
    expect(listed(m)).toEqual(expected(m));
    expect(listed(m)).toHaveLength(1);
  });

  it("IoVecBufferMut: a drop, then an append, after a listing still changes the list", () => {
    const { mem } = memory();
    const front = new IoVecBufferMut({ capacity: 8 });
    const a = unwrap(front.appendChain(mem, segs(true, [0x1000, 8])));
    expect(listed(front)).toHaveLength(1);
    unwrap(front.appendChain(mem, segs(true, [0x1100, 4], [0x1200, 4])));
    expect(front.dropChainFront(a)).toBe(true);
    expect(listed(front)).toEqual(expected(front));
    expect(listed(front)).toHaveLength(2);
    const back = new IoVecBufferMut({ capacity: 8 });
    const b = unwrap(back.appendChain(mem, segs(true, [0x1000, 8])));
    expect(listed(back)).toHaveLength(1);
    expect(back.dropChainBack(b)).toBe(true);
    unwrap(back.appendChain(mem, segs(true, [0x1300, 4], [0x1400, 4])));
    expect(listed(back)).toEqual(expected(back));
    expect(listed(back)).toHaveLength(2);
  });
});

describe("transfers", () => {
  it("a read over several segments returns the sum a sink took from each [IOV-READ-LEN]", () => {
    const { mem, bytes } = memory();
    const b = unwrap(IoVecBuffer.fromChain(mem, segs(false, [0x1000, 3], [0x1010, 5], [0x1020, 2])));
    const dst = new Uint8Array(10);
    expect(b.readAt(new SliceSink(dst), 0, 10)).toBe(10);
    expect([...dst]).toEqual([
      ...bytes.subarray(0, 3),
      ...bytes.subarray(0x10, 0x15),
      ...bytes.subarray(0x20, 0x22),
    ]);
  });

  it("a write over several segments returns the sum a source gave to each [IOV-WRITE-LEN]", () => {
    const { mem, bytes } = memory();
    const m = unwrap(IoVecBufferMut.fromChain(mem, segs(true, [0x1000, 3], [0x1010, 5])));
    expect(m.writeAt(new SliceSource(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)), 0, 8)).toBe(8);
    expect([...bytes.subarray(0, 3), ...bytes.subarray(0x10, 0x15)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it("a sink or source claiming more than offered, or a negative count, is held to what moved [IOV-SHORT-TRANSFER]", () => {
    const { mem } = memory();
    const b = unwrap(IoVecBuffer.fromChain(mem, segs(false, [0x1000, 4], [0x1010, 4])));
    const greedy: ByteSink = { write: () => 1000 };
    expect(b.readAt(greedy, 0, 8)).toBe(8);
    const negative: ByteSink = { write: () => -3 };
    expect(b.readAt(negative, 0, 8)).toBe(0);
    const m = unwrap(IoVecBufferMut.fromChain(mem, segs(true, [0x1000, 4], [0x1010, 4])));
    const generous: ByteSource = { read: () => 1000 };
    expect(m.writeAt(generous, 0, 8)).toBe(8);
    const taking: ByteSource = { read: () => -3 };
    expect(m.writeAt(taking, 0, 8)).toBe(0);
  });

  it("a negative or fractional offset moves nothing through a sink or source [IOV-OFFSET]", () => {
    const { mem, bytes } = memory();
    const before = bytes.slice(0, 0x20);
    const b = unwrap(IoVecBuffer.fromChain(mem, segs(false, [0x1000, 8], [0x1010, 8])));
    const m = unwrap(IoVecBufferMut.fromChain(mem, segs(true, [0x1000, 8], [0x1010, 8])));
    for (const offset of [-1, -8, 0.5]) {
      const seen: number[] = [];
      expect(b.readAt({ write: (c) => (seen.push(c.length), c.length) }, offset, 8)).toBe(0);
      expect(seen).toEqual([]);
      expect(m.writeAt({ read: (into) => (into.fill(0xee), into.length) }, offset, 8)).toBe(0);
    }
    expect(bytes.slice(0, 0x20)).toEqual(before);
  });

  it("reads stop at the last segment: never stale slots of a longer earlier load [IOV-READ-LEN]", () => {
    const { mem } = memory();
    const b = new IoVecBuffer();
    unwrap(b.load(mem, segs(false, [0x1000, 4], [0x1010, 4], [0x1020, 4])));
    unwrap(b.load(mem, segs(false, [0x1100, 4])));
    expect(b.readAt(new SliceSink(new Uint8Array(64)), 0, 64)).toBe(4);
    expect(b.readInto(new Uint8Array(64), 0)).toBe(4);
  });

  it("reads and writes stop at the last segment of a full deque: never its mirror slot [IOV-READ-LEN IOV-WRITE-LEN]", () => {
    const { mem } = memory();
    const m = new IoVecBufferMut({ capacity: 2 });
    unwrap(m.appendChain(mem, segs(true, [0x1000, 4], [0x1010, 4])));
    expect(m.isFull()).toBe(true);
    expect(m.readAt(new SliceSink(new Uint8Array(64)), 0, 64)).toBe(8);
    expect(m.readInto(new Uint8Array(64), 0)).toBe(8);
    expect(m.writeAt(new SliceSource(new Uint8Array(64)), 0, 64)).toBe(8);
    expect(m.writeFrom(new Uint8Array(64), 0)).toBe(8);
  });

  it("a write window from one source is never reused for another source [IOV-WRITE-LEN]", () => {
    const { mem, bytes } = memory();
    const m = unwrap(IoVecBufferMut.fromChain(mem, segs(true, [0x1000, 200])));
    const a = new Uint8Array(300).fill(0xaa);
    const c = new Uint8Array(300).fill(0xcc);
    // 100 bytes from position 10 of each: more than the byte-loop size, not the whole source.
    expect(m.writeFrom(a, 0, 10, 110)).toBe(100);
    expect(bytes.subarray(0, 100).every((x) => x === 0xaa)).toBe(true);
    expect(m.writeFrom(c, 0, 10, 110)).toBe(100);
    expect(bytes.subarray(0, 100).every((x) => x === 0xcc)).toBe(true);
  });
});

describe("the deque", () => {
  it("capacity must be an integer in 1..65536 [IOV-DEQUE-CAPACITY]", () => {
    for (const capacity of [0, -1, 1.5, 65537, Number.NaN])
      expect(() => new IoVecBufferMut({ capacity })).toThrow(/capacity must be an integer in 1\.\.65536/);
    expect(new IoVecBufferMut({ capacity: 1 }).capacity).toBe(1);
    expect(new IoVecBufferMut({ capacity: 65536 }).capacity).toBe(65536);
    expect(new IoVecBufferMut().isFull()).toBe(false);
  });

  it("segments that wrap past the end of the deque read and write in chain order [IOV-DEQUE-CAPACITY IOV-OVERLAP-ORDER]", () => {
    const { mem, bytes } = memory();
    const m = new IoVecBufferMut({ capacity: 4 });
    const first = unwrap(m.appendChain(mem, segs(true, [0x1000, 4], [0x1010, 4], [0x1020, 4])));
    expect(m.dropChainFront(first)).toBe(true);
    // Now start at slot 3: the next three segments take slots 3, 4 (= 0) and 5 (= 1).
    unwrap(m.appendChain(mem, segs(true, [0x1100, 2], [0x1200, 3], [0x1300, 4])));
    expect(m.start).toBe(3);
    expect([0, 1, 2].map((i) => m.segmentAddr(i))).toEqual([0x1100, 0x1200, 0x1300]);
    expect(m.writeFrom(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9), 0)).toBe(9);
    expect([...bytes.subarray(0x100, 0x102)]).toEqual([1, 2]);
    expect([...bytes.subarray(0x200, 0x203)]).toEqual([3, 4, 5]);
    expect([...bytes.subarray(0x300, 0x304)]).toEqual([6, 7, 8, 9]);
    const dst = new Uint8Array(9);
    expect(m.readInto(dst, 0)).toBe(9);
    expect([...dst]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("drops that do not match what is held are refused and change nothing [IOV-DROP-CHAIN]", () => {
    const { mem } = memory();
    const m = new IoVecBufferMut({ capacity: 8 });
    unwrap(m.appendChain(mem, segs(true, [0x1000, 4], [0x1010, 4])));
    const bad = [
      { headIndex: 0, nrIovecs: 1.5, length: 4 },
      { headIndex: 0, nrIovecs: 1, length: 0.5 },
      { headIndex: 0, nrIovecs: -1, length: 4 },
      { headIndex: 0, nrIovecs: 1, length: -1 },
      { headIndex: 0, nrIovecs: 3, length: 4 },
      { headIndex: 0, nrIovecs: 1, length: 9 },
      { headIndex: 0, nrIovecs: Number.NaN, length: 4 },
    ];
    for (const parsed of bad) {
      expect(m.dropChainFront(parsed)).toBe(false);
      expect(m.dropChainBack(parsed)).toBe(false);
      expect([m.segmentCount, m.len, m.start]).toEqual([2, 8, 0]);
    }
  });
});

describe("the u32 length limit", () => {
  it("a chain reaching exactly u32 max loads; one byte more is OverflowedDescriptor before a later read-only descriptor [IOV-LEN-U32 IOV-CHECK-ORDER]", () => {
    const mib = 1 << 20;
    const { mem } = memory(mib);
    // 4096 segments of 1 MiB over the same guest bytes make 2^32; one byte less is u32 max.
    const ranges: [number, number][] = Array.from({ length: 4096 }, () => [0x1000, mib]);
    ranges[4095] = [0x1000, mib - 1];
    const m = new IoVecBufferMut({ capacity: 8192 });
    const r = unwrap(m.appendChain(mem, segs(true, ...ranges)));
    expect(r.length).toBe(U32_MAX);
    m.clear();
    ranges[4095] = [0x1000, mib];
    const over = new SegmentList([
      ...ranges.map(([addr, len]) => ({ addr, len, write: true })),
      { addr: 0x1000, len: 1, write: false },
    ]);
    expect(m.appendChain(mem, over)).toEqual({ ok: false, error: { _tag: "OverflowedDescriptor" } });
    expect(m.segmentCount).toBe(0);
  });
});

describe("the direction buffers report to a memory recorder", () => {
  it("a readable chain is located for reading, a writable one for writing [IOV-LOAD-WRITE-ONLY IOV-MUT-READ-ONLY]", () => {
    const { mem } = memory();
    const seen: boolean[] = [];
    mem.recorder = (_addr, _len, write) => seen.push(write);
    unwrap(IoVecBuffer.fromChain(mem, segs(false, [0x1000, 4], [0x1010, 4])));
    expect(seen).toEqual([false, false]);
    seen.length = 0;
    unwrap(IoVecBufferMut.fromChain(mem, segs(true, [0x1000, 4], [0x1010, 4])));
    expect(seen).toEqual([true, true]);
    mem.recorder = null;
  });
});

describe("sinks and sources over host arrays", () => {
  it("reset points them at another array from its start [IOV-SHORT-TRANSFER]", () => {
    const sink = new SliceSink(new Uint8Array(2));
    expect(sink.write(Uint8Array.of(1, 2, 3))).toBe(2);
    const next = new Uint8Array(4);
    expect(sink.reset(next)).toBe(sink);
    expect(sink.position).toBe(0);
    expect(sink.write(Uint8Array.of(9, 8, 7))).toBe(3);
    expect([...next]).toEqual([9, 8, 7, 0]);
    const source = new SliceSource(Uint8Array.of(1));
    expect(source.read(new Uint8Array(4))).toBe(1);
    expect(source.reset(Uint8Array.of(5, 6, 7))).toBe(source);
    expect(source.position).toBe(0);
    const into = new Uint8Array(2);
    expect(source.read(into)).toBe(2);
    expect([...into]).toEqual([5, 6]);
  });
});

describe("small word copies over a buffer that grew", () => {
  // The word view of a buffer is made once, at its length then; a length-tracking array over
  // a resizable buffer that grew reaches past it, and those bytes must still be copied.
  // Resizable buffers are ES2024 (Node 20 has them); the project's lib is older.
  type Resizable = ArrayBuffer & { resize(n: number): void };
  const Rab = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => Resizable;
  let rab: Resizable = new Rab(0, { maxByteLength: 0 });
  const grown = (): Uint8Array => {
    rab = new Rab(64, { maxByteLength: 256 });
    return new Uint8Array(rab);
  };

  it("readInto fills host bytes past the word view made before the buffer grew [IOV-READ-LEN]", () => {
    const { mem, bytes } = memory();
    const b = unwrap(IoVecBuffer.fromChain(mem, segs(false, [0x1000, 64])));
    const dst = grown();
    expect(b.readInto(dst, 0, 0, 32)).toBe(32);
    rab.resize(256);
    expect(dst.length).toBe(256);
    // Words 16..23 of dst: past the old view's 16 words, the guest side well inside its own.
    expect(b.readInto(dst, 0, 64, 96)).toBe(32);
    expect(Array.from(dst.subarray(64, 96))).toEqual(Array.from(bytes.subarray(0, 32)));
  });

  it("writeFrom takes host bytes past the word view made before the buffer grew [IOV-WRITE-LEN]", () => {
    const { mem, bytes } = memory();
    const m = new IoVecBufferMut({ capacity: 4 });
    unwrap(m.appendChain(mem, segs(true, [0x1000, 64])));
    const src = grown();
    expect(m.writeFrom(src, 0, 0, 32)).toBe(32);
    rab.resize(256);
    src.fill(0);
    for (let i = 64; i < 96; i++) src[i] = (i * 13 + 5) & 0xff;
    expect(m.writeFrom(src, 0, 64, 96)).toBe(32);
    expect(Array.from(bytes.subarray(0, 32))).toEqual(Array.from(src.subarray(64, 96)));
  });
});

describe("IoVecBufferMut.load of a chain with no segments", () => {
  it("succeeds and leaves the buffer empty, even after an earlier failure [IOV-LOAD-CLEAR]", () => {
    const { mem } = memory();
    const m = new IoVecBufferMut({ capacity: 4 });
    expect(m.load(mem, segs(false, [0x1000, 4])).ok).toBe(false);
    expect(m.load(mem, segs(true)).ok).toBe(true);
    expect(m.isEmpty()).toBe(true);
    expect(m.segmentCount).toBe(0);
  });
});
