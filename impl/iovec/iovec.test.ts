/**
 * Firecracker iovec.rs unit cases re-expressed, plus the cases the issue adds (errors,
 * atomic appends, short sinks, zero-copy views). Chains here are SegmentLists; the chain
 * tests in chain.test.ts load the same buffers from a real split queue.
 */
import { describe, expect, it } from "vitest";
import {
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readvSync,
  rmSync,
  writeFileSync,
  writevSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GuestMemory } from "../memory/guest-memory.ts";
import { createMemory } from "../../spec/memory.ts";
import * as spec from "../../spec/iovec.ts";
import { INTERRUPTED, IoVecBuffer, IoVecBufferMut, type ByteSink, type ByteSource } from "./iovec.ts";
import { SegmentList, type SegmentSpec } from "./segment-list.ts";
import { SliceSink, SliceSource } from "./sinks.ts";
import type { IoError } from "./iovec.ts";

/** Firecracker's default_mem: three 64 KiB regions at 0, 0x20000 and 0x40000. */
const defaultMem = (): { mem: GuestMemory; bytes: Uint8Array[] } => {
  const bytes = [new Uint8Array(0x10000), new Uint8Array(0x10000), new Uint8Array(0x10000)];
  const mem = GuestMemory.of([
    { base: 0, bytes: bytes[0]! },
    { base: 0x20000, bytes: bytes[1]! },
    { base: 0x40000, bytes: bytes[2]! },
  ]);
  return { mem, bytes };
};

/** The seed's chain: four 64-byte descriptors at 0x20000 + 64 j. */
const fourBy64 = (write: boolean): SegmentList =>
  new SegmentList(
    [0, 1, 2, 3].map((j) => ({ addr: 0x20000 + 64 * j, len: 64, write })),
    0,
  );

/** read_only_chain: bytes 0..255 at 0x20000. */
const readOnlyChain = (mem: GuestMemory): SegmentList => {
  mem.writeFrom(
    0x20000,
    Uint8Array.from({ length: 256 }, (_, i) => i),
  );
  return fourBy64(false);
};

const writeOnlyChain = (mem: GuestMemory): SegmentList => {
  mem.writeFrom(0x20000, new Uint8Array(256));
  return fourBy64(true);
};

const unwrap = <T, E>(r: { ok: true; value: T } | { ok: false; error: E }): T => {
  if (!r.ok) throw new Error(`unexpected error ${JSON.stringify(r.error, (_, v: unknown) => String(v))}`);
  return r.value;
};

const region = (mem: GuestMemory, addr: number, len: number): Uint8Array => mem.slice(addr, len)!;

describe("Firecracker iovec.rs cases", () => {
  it("test_access_mode: readable chains load as IoVecBuffer only, writable as IoVecBufferMut only [IOV-LOAD-WRITE-ONLY IOV-MUT-READ-ONLY]", () => {
    const { mem } = defaultMem();
    expect(IoVecBuffer.fromChain(mem, readOnlyChain(mem)).ok).toBe(true);
    expect(IoVecBuffer.fromChain(mem, writeOnlyChain(mem))).toEqual({
      ok: false,
      error: { _tag: "WriteOnlyDescriptor" },
    });
    expect(IoVecBufferMut.fromChain(mem, readOnlyChain(mem))).toEqual({
      ok: false,
      error: { _tag: "ReadOnlyDescriptor" },
    });
    expect(IoVecBufferMut.fromChain(mem, writeOnlyChain(mem)).ok).toBe(true);
  });

  it("test_iovec_length: four 64-byte descriptors make 256 bytes [IOV-APPEND-RESULT]", () => {
    const { mem } = defaultMem();
    const iov = unwrap(IoVecBuffer.fromChain(mem, readOnlyChain(mem)));
    expect(iov.len).toBe(4 * 64);
    expect(iov.segmentCount).toBe(4);
  });

  it("test_iovec_mut_length: appending a second chain doubles the length [IOV-APPEND-RESULT]", () => {
    const { mem } = defaultMem();
    const iov = unwrap(IoVecBufferMut.fromChain(mem, writeOnlyChain(mem)));
    expect(iov.len).toBe(4 * 64);
    const parsed = unwrap(iov.appendChain(mem, new SegmentList(writeOnlyChainSpec(), 7)));
    expect(parsed).toEqual({ headIndex: 7, length: 256, nrIovecs: 4 });
    expect(iov.len).toBe(8 * 64);
    expect(iov.segmentCount).toBe(8);
  });

  it("test_iovec_read_at: reads, exact reads, PartialBuffer and OutOfBounds [IOV-READ-LEN IOV-EXACT-PARTIAL IOV-EXACT-OOB]", () => {
    const { mem } = defaultMem();
    const iov = unwrap(IoVecBuffer.fromChain(mem, readOnlyChain(mem)));

    let buf = new Uint8Array(257);
    expect(iov.readAt(new SliceSink(buf), 0, 257)).toBe(256);
    expect([...buf.subarray(0, 256)]).toEqual(Array.from({ length: 256 }, (_, i) => i));
    expect(buf[256]).toBe(0);

    buf = new Uint8Array(5);
    expect(iov.readExactAt(buf.subarray(0, 4), 0)).toBeNull();
    expect([...buf]).toEqual([0, 1, 2, 3, 0]);
    expect(iov.readExactAt(buf, 0)).toBeNull();
    expect([...buf]).toEqual([0, 1, 2, 3, 4]);
    expect(iov.readExactAt(buf, 1)).toBeNull();
    expect([...buf]).toEqual([1, 2, 3, 4, 5]);
    expect(iov.readExactAt(buf, 60)).toBeNull();
    expect([...buf]).toEqual([60, 61, 62, 63, 64]);

    expect(iov.readAt(new SliceSink(buf), 252, 5)).toBe(4);
    expect([...buf.subarray(0, 4)]).toEqual([252, 253, 254, 255]);

    expect(iov.readExactAt(buf, 252)).toEqual({ _tag: "PartialBuffer", expected: 5, completed: 4 });
    expect(iov.readExactAt(buf, 256)).toEqual({ _tag: "OutOfBounds", addr: 256 });
  });

  it("test_iovec_mut_write_at: writes across segment boundaries, short at the end, OutOfBounds past it [IOV-WRITE-LEN IOV-EXACT-OOB]", () => {
    const { mem } = defaultMem();
    const iov = unwrap(IoVecBufferMut.fromChain(mem, writeOnlyChain(mem)));
    const buf = Uint8Array.from([0, 1, 2, 3, 4]);
    const vec = [0, 1, 2, 3].map(() => new Uint8Array(64));
    const check = (): void => {
      for (let j = 0; j < 4; j++) expect(region(mem, 0x20000 + 64 * j, 64)).toEqual(vec[j]);
    };

    for (let j = 0; j < 4; j++) expect(iov.writeAllAt(vec[j]!, 64 * j)).toBeNull();
    check();

    vec[0]!.set(buf);
    expect(iov.writeAllAt(buf.subarray(0, 3), 0)).toBeNull();
    // Only the three bytes written are in memory.
    expect([...region(mem, 0x20000, 5)]).toEqual([0, 1, 2, 0, 0]);
    expect(iov.writeAllAt(buf, 0)).toBeNull();
    check();

    vec[0]!.set(buf, 1);
    expect(iov.writeAllAt(buf, 1)).toBeNull();
    check();

    // Offset 60: four bytes in the first segment, one in the second.
    vec[0]!.set(buf.subarray(0, 4), 60);
    vec[1]![0] = 4;
    expect(iov.writeAllAt(buf, 60)).toBeNull();
    check();

    // Five bytes at 252: only four fit.
    vec[3]!.set(buf.subarray(0, 4), 60);
    expect(iov.writeAt(new SliceSource(buf), 252, buf.length)).toBe(4);
    check();
    expect(iov.writeAllAt(buf, 252)).toEqual({ _tag: "PartialBuffer", expected: 5, completed: 4 });

    // Past the end nothing is written.
    expect(iov.writeAllAt(buf, 256)).toEqual({ _tag: "OutOfBounds", addr: 256 });
    check();
  });
});

function writeOnlyChainSpec(): SegmentSpec[] {
  return [0, 1, 2, 3].map((j) => ({ addr: 0x20000 + 64 * j, len: 64, write: true }));
}

describe("loading readable chains", () => {
  it("a segment outside memory is GuestMemory with the exact address [IOV-SEG-MEMORY]", () => {
    const { mem } = defaultMem();
    // Crosses the end of the second region.
    const across = new SegmentList([{ addr: 0x2fff0, len: 32, write: false }]);
    expect(IoVecBuffer.fromChain(mem, across)).toEqual({
      ok: false,
      error: { _tag: "GuestMemory", error: { _tag: "InvalidGuestAddress", addr: 0x2fff0n, len: 32n } },
    });
    // Above 2^53 the cursor's number is rounded; the error carries the exact u64.
    const high = (1n << 53n) + 1n;
    expect(IoVecBuffer.fromChain(mem, new SegmentList([{ addr: high, len: 1, write: false }]))).toEqual({
      ok: false,
      error: { _tag: "GuestMemory", error: { _tag: "InvalidGuestAddress", addr: high, len: 1n } },
    });
    const top = (1n << 64n) - 4n;
    expect(IoVecBuffer.fromChain(mem, new SegmentList([{ addr: top, len: 8, write: false }]))).toEqual({
      ok: false,
      error: { _tag: "GuestMemory", error: { _tag: "GuestAddressOverflow", addr: top, len: 8n } },
    });
  });

  it("a total past 2^32-1 is OverflowedDescriptor, and the failed load leaves the buffer empty [IOV-LEN-U32 IOV-LOAD-CLEAR]", () => {
    const big = new Uint8Array(1 << 20);
    const mem = GuestMemory.of([{ base: 0x100000, bytes: big }]);
    const iov = new IoVecBuffer();
    expect(iov.load(mem, new SegmentList([{ addr: 0x100000, len: 16, write: false }])).ok).toBe(true);
    expect(iov.len).toBe(16);
    // 4096 overlapping 1 MiB segments make exactly 2^32 bytes: one byte too many.
    const segs = Array.from({ length: 4096 }, () => ({ addr: 0x100000, len: 1 << 20, write: false }));
    expect(iov.load(mem, new SegmentList(segs))).toEqual({
      ok: false,
      error: { _tag: "OverflowedDescriptor" },
    });
    expect(iov.len).toBe(0);
    expect(iov.segmentCount).toBe(0);
    // One byte less is exactly u32 max and loads.
    segs[4095] = { addr: 0x100000, len: (1 << 20) - 1, write: false };
    expect(iov.load(mem, new SegmentList(segs)).ok).toBe(true);
    expect(iov.len).toBe(spec.U32_MAX);
  });

  it("loading again replaces the previous chain [IOV-LOAD-CLEAR]", () => {
    const { mem } = defaultMem();
    const iov = unwrap(IoVecBuffer.fromChain(mem, readOnlyChain(mem)));
    expect(iov.load(mem, new SegmentList([{ addr: 0x40000, len: 10, write: false }])).ok).toBe(true);
    expect(iov.len).toBe(10);
    expect(iov.segmentCount).toBe(1);
    expect(iov.segmentAddr(0)).toBe(0x40000);
    // A failing load empties it.
    expect(iov.load(mem, new SegmentList([{ addr: 0x40000, len: 10, write: true }])).ok).toBe(false);
    expect(iov.len).toBe(0);
  });

  it("zero-length segments are kept but never offered to a sink [IOV-READ-LEN]", () => {
    const { mem } = defaultMem();
    mem.writeFrom(0x40000, Uint8Array.from([9, 8, 7]));
    const iov = unwrap(
      IoVecBuffer.fromChain(
        mem,
        new SegmentList([
          { addr: 0x40000, len: 0, write: false },
          { addr: 0x40000, len: 3, write: false },
          { addr: 0x40010, len: 0, write: false },
        ]),
      ),
    );
    const chunks: number[] = [];
    const sink: ByteSink = { write: (c) => (chunks.push(c.length), c.length) };
    expect(iov.readAt(sink, 0, 100)).toBe(3);
    expect(chunks).toEqual([3]);
    expect(iov.segmentCount).toBe(3);
  });
});

describe("overlapping segments", () => {
  it("reads repeat the shared bytes in chain order; writes leave the later segment's bytes [IOV-OVERLAP-ORDER]", () => {
    const { mem } = defaultMem();
    mem.writeFrom(0x40000, Uint8Array.from([1, 2, 3, 4, 5, 6]));
    const ro = unwrap(
      IoVecBuffer.fromChain(
        mem,
        new SegmentList([
          { addr: 0x40002, len: 4, write: false },
          { addr: 0x40000, len: 4, write: false },
        ]),
      ),
    );
    const out = new Uint8Array(8);
    expect(ro.readInto(out, 0)).toBe(8);
    expect([...out]).toEqual([3, 4, 5, 6, 1, 2, 3, 4]);

    const rw = unwrap(
      IoVecBufferMut.fromChain(
        mem,
        new SegmentList([
          { addr: 0x40000, len: 4, write: true },
          { addr: 0x40002, len: 4, write: true },
        ]),
      ),
    );
    expect(rw.writeAllAt(Uint8Array.from([10, 11, 12, 13, 14, 15, 16, 17]), 0)).toBeNull();
    // Bytes 2 and 3 were written twice: first 12, 13 by segment 0, then 14, 15 by segment 1.
    expect([...region(mem, 0x40000, 6)]).toEqual([10, 11, 14, 15, 16, 17]);
  });
});

describe("sinks and sources that move fewer bytes", () => {
  const setup = (): IoVecBuffer => {
    const { mem } = defaultMem();
    return unwrap(IoVecBuffer.fromChain(mem, readOnlyChain(mem)));
  };

  it("a sink taking fewer bytes than offered ends the read with the bytes taken [IOV-SHORT-TRANSFER]", () => {
    const iov = setup();
    const got: number[] = [];
    let calls = 0;
    const sink: ByteSink = {
      write: (c) => {
        calls++;
        const n = calls === 2 ? 10 : c.length;
        got.push(...c.subarray(0, n));
        return n;
      },
    };
    expect(iov.readAt(sink, 30, 1000)).toBe(34 + 10);
    expect(calls).toBe(2);
    expect(got).toEqual(Array.from({ length: 44 }, (_, i) => 30 + i));
  });

  it("Interrupted is retried; another error before any byte is returned, after some bytes the count is [IOV-IO-ERROR]", () => {
    const iov = setup();
    const failure: IoError = { _tag: "IoError", code: "EIO", message: "boom" };
    let script: (number | IoError)[] = [INTERRUPTED, INTERRUPTED, 64, failure];
    const sink: ByteSink = {
      write: (c) => {
        const s = script.shift() ?? c.length;
        return typeof s === "number" ? Math.min(s, c.length) : s;
      },
    };
    expect(iov.readAt(sink, 0, 256)).toBe(64);
    script = [failure];
    expect(iov.readAt(sink, 0, 256)).toBe(failure);
    script = [INTERRUPTED, failure];
    expect(iov.readAt(sink, 100, 5)).toBe(failure);
  });

  it("a source giving fewer bytes ends the write; its error before any byte is returned [IOV-SHORT-TRANSFER IOV-IO-ERROR]", () => {
    const { mem } = defaultMem();
    const iov = unwrap(IoVecBufferMut.fromChain(mem, writeOnlyChain(mem)));
    const failure: IoError = { _tag: "IoError", code: "EAGAIN", message: "would block" };
    let script: (number | IoError)[] = [64, INTERRUPTED, 3];
    const source: ByteSource = {
      read: (into) => {
        const s = script.shift() ?? into.length;
        if (typeof s !== "number") return s;
        const n = Math.min(s, into.length);
        into.fill(0xaa, 0, n);
        return n;
      },
    };
    expect(iov.writeAt(source, 0, 256)).toBe(67);
    expect([...region(mem, 0x20040, 4)]).toEqual([0xaa, 0xaa, 0xaa, 0]);
    script = [failure];
    expect(iov.writeAt(source, 0, 256)).toBe(failure);
  });

  it("the spec model gives the same counts and bytes for the same scripts [IOV-SHORT-TRANSFER IOV-IO-ERROR]", () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const specMem = createMemory([{ base: 0x20000n, bytes }]);
    if (!specMem.ok) throw new Error("memory");
    const iov = unwrap(
      spec.loadReadable(
        specMem.value,
        [0, 1, 2, 3].map((j) => ({ addr: 0x20000n + 64n * BigInt(j), len: 64, flags: 0 })),
      ),
    );
    const failure: IoError = { _tag: "IoError", code: "EIO", message: "boom" };
    const r = spec.readAt(specMem.value, iov, 30, 1000, {
      capacity: Infinity,
      steps: [
        { _tag: "Fail", error: INTERRUPTED },
        { _tag: "Take", max: 34 },
        { _tag: "Take", max: 10 },
      ],
    });
    expect(r.result).toEqual({ ok: true, value: 44 });
    expect([...r.taken]).toEqual(Array.from({ length: 44 }, (_, i) => 30 + i));
    const e = spec.readAt(specMem.value, iov, 0, 10, {
      capacity: 10,
      steps: [{ _tag: "Fail", error: failure }],
    });
    expect(e.result).toEqual({ ok: false, error: failure });
  });
});

describe("invalid offsets", () => {
  it("negative or fractional offsets move nothing and are OutOfBounds for the exact forms [IOV-OFFSET]", () => {
    const { mem } = defaultMem();
    const iov = unwrap(IoVecBufferMut.fromChain(mem, writeOnlyChain(mem)));
    const buf = new Uint8Array(4);
    for (const offset of [-1, 0.5, Number.NaN, 2 ** 60]) {
      expect(iov.readInto(buf, offset)).toBe(0);
      expect(iov.writeFrom(buf, offset)).toBe(0);
      expect(iov.readExactAt(buf, offset)).toEqual({ _tag: "OutOfBounds", addr: offset });
      expect(iov.writeAllAt(buf, offset)).toEqual({ _tag: "OutOfBounds", addr: offset });
    }
  });
});

describe("host ranges", () => {
  it("readInto and writeFrom copy into and out of dst[from, to) only; a range outside the array copies nothing [IOV-READ-LEN IOV-WRITE-LEN]", () => {
    const { mem } = defaultMem();
    const iov = unwrap(IoVecBufferMut.fromChain(mem, writeOnlyChain(mem)));
    const host = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(iov.writeFrom(host, 62, 2, 6)).toBe(4);
    expect([...region(mem, 0x20000 + 62, 4)]).toEqual([3, 4, 5, 6]);
    const out = new Uint8Array(8);
    expect(iov.readInto(out, 62, 3, 8)).toBe(5);
    expect([...out]).toEqual([0, 0, 0, 3, 4, 5, 6, 0]);
    expect(iov.readInto(out, 254, 0, 8)).toBe(2);
    for (const [from, to] of [
      [5, 3],
      [-1, 2],
      [0, 9],
      [0.5, 2],
    ] as const) {
      expect(iov.readInto(out, 0, from, to)).toBe(0);
      expect(iov.writeFrom(host, 0, from, to)).toBe(0);
    }
  });
});

describe("IoVecBufferMut on its ring deque", () => {
  const seg = (addr: number, len: number, write = true): SegmentSpec => ({ addr, len, write });

  it("the deque holds `capacity` segments; one more is IovDequeOverflow and changes nothing [IOV-DEQUE-CAPACITY IOV-APPEND-ATOMIC]", () => {
    const { mem } = defaultMem();
    const iov = new IoVecBufferMut({ capacity: 4 });
    unwrap(iov.appendChain(mem, new SegmentList([seg(0x40000, 8), seg(0x40010, 8), seg(0x40020, 8)], 1)));
    const before = [...iov.iovecs()];
    expect(iov.appendChain(mem, new SegmentList([seg(0x40100, 1), seg(0x40200, 1)], 2))).toEqual({
      ok: false,
      error: { _tag: "IovDequeOverflow" },
    });
    expect(iov.len).toBe(24);
    expect(iov.segmentCount).toBe(3);
    expect(iov.iovecs()).toEqual(before);
    unwrap(iov.appendChain(mem, new SegmentList([seg(0x40100, 1)], 2)));
    expect(iov.isFull()).toBe(true);
  });

  it("the default capacity is 256 [IOV-DEQUE-CAPACITY]", () => {
    const { mem } = defaultMem();
    const iov = new IoVecBufferMut();
    const segs = Array.from({ length: 257 }, (_, i) => seg(0x40000 + i, 1));
    expect(iov.appendChain(mem, new SegmentList(segs))).toEqual({
      ok: false,
      error: { _tag: "IovDequeOverflow" },
    });
    expect(iov.appendChain(mem, new SegmentList(segs.slice(0, 256))).ok).toBe(true);
    expect(iov.segmentCount).toBe(256);
  });

  it("checks run per descriptor in order: access mode, memory, room, length [IOV-CHECK-ORDER IOV-APPEND-ATOMIC]", () => {
    const { mem } = defaultMem();
    const iov = new IoVecBufferMut({ capacity: 2 });
    unwrap(iov.appendChain(mem, new SegmentList([seg(0x40000, 8)])));
    // Third descriptor would overflow the deque, but the second is outside memory first.
    expect(iov.appendChain(mem, new SegmentList([seg(0x40000, 1), seg(0x50000, 1)])).ok).toBe(false);
    expect(iov.appendChain(mem, new SegmentList([seg(0x40000, 1), seg(0x50000, 1)]))).toEqual({
      ok: false,
      error: { _tag: "GuestMemory", error: { _tag: "InvalidGuestAddress", addr: 0x50000n, len: 1n } },
    });
    // A read-only descriptor outside memory is ReadOnlyDescriptor.
    expect(iov.appendChain(mem, new SegmentList([seg(0x50000, 1, false)]))).toEqual({
      ok: false,
      error: { _tag: "ReadOnlyDescriptor" },
    });
    // Room runs out on the second descriptor, which is in memory.
    expect(iov.appendChain(mem, new SegmentList([seg(0x40000, 1), seg(0x40001, 1)]))).toEqual({
      ok: false,
      error: { _tag: "IovDequeOverflow" },
    });
    expect(iov.segmentCount).toBe(1);
    expect(iov.len).toBe(8);
  });

  it("a chain or an append past 2^32-1 bytes is OverflowedDescriptor and changes nothing [IOV-LEN-U32 IOV-APPEND-ATOMIC]", () => {
    const sixteenMiB = 1 << 24;
    const mem = GuestMemory.of([{ base: 0, bytes: new Uint8Array(sixteenMiB) }]);
    const iov = new IoVecBufferMut();
    // 255 segments of 16 MiB: 2^32 - 2^24 bytes.
    const many = Array.from({ length: 255 }, () => seg(0, sixteenMiB));
    unwrap(iov.appendChain(mem, new SegmentList(many)));
    expect(iov.len).toBe(2 ** 32 - sixteenMiB);
    // The remaining slot takes 2^24 - 1 bytes but not 2^24.
    expect(iov.appendChain(mem, new SegmentList([seg(0, sixteenMiB)]))).toEqual({
      ok: false,
      error: { _tag: "OverflowedDescriptor" },
    });
    expect(iov.len).toBe(2 ** 32 - sixteenMiB);
    expect(iov.segmentCount).toBe(255);
    unwrap(iov.appendChain(mem, new SegmentList([seg(0, sixteenMiB - 1)])));
    expect(iov.len).toBe(spec.U32_MAX);

    // Within one chain.
    const one = new IoVecBufferMut();
    expect(one.appendChain(mem, new SegmentList([...many, seg(0, sixteenMiB)]))).toEqual({
      ok: false,
      error: { _tag: "OverflowedDescriptor" },
    });
    expect(one.segmentCount).toBe(0);
    expect(one.len).toBe(0);
  });

  it("dropChainFront moves the deque start; dropChainBack undoes the last append; clear resets [IOV-DROP-CHAIN IOV-CLEAR]", () => {
    const { mem, bytes } = defaultMem();
    const iov = new IoVecBufferMut({ capacity: 4 });
    const a = unwrap(
      iov.appendChain(mem, new SegmentList([seg(0x40000, 2), seg(0x40010, 2), seg(0x40020, 2)], 0)),
    );
    expect(iov.dropChainFront(a)).toBe(true);
    expect(iov.start).toBe(3);
    expect(iov.len).toBe(0);
    // The next chain wraps around the ring: slots 3, 0, 1.
    const b = unwrap(
      iov.appendChain(mem, new SegmentList([seg(0x40100, 2), seg(0x40110, 2), seg(0x40120, 2)], 1)),
    );
    expect(b).toEqual({ headIndex: 1, length: 6, nrIovecs: 3 });
    expect(iov.writeAllAt(Uint8Array.from([1, 2, 3, 4, 5, 6]), 0)).toBeNull();
    expect([...bytes[2]!.subarray(0x100, 0x102)]).toEqual([1, 2]);
    expect([...bytes[2]!.subarray(0x110, 0x112)]).toEqual([3, 4]);
    expect([...bytes[2]!.subarray(0x120, 0x122)]).toEqual([5, 6]);
    const c = unwrap(iov.appendChain(mem, new SegmentList([seg(0x40200, 5)], 2)));
    expect(iov.dropChainBack(c)).toBe(true);
    expect(iov.len).toBe(6);
    expect(iov.segmentCount).toBe(3);
    // A drop bigger than what is held is refused.
    expect(iov.dropChainBack({ headIndex: 9, length: 7, nrIovecs: 1 })).toBe(false);
    expect(iov.dropChainFront({ headIndex: 9, length: 1, nrIovecs: 4 })).toBe(false);
    expect(iov.len).toBe(6);
    iov.clear();
    expect([iov.start, iov.len, iov.segmentCount]).toEqual([0, 0, 0]);
  });

  it("load clears, then appends [IOV-LOAD-CLEAR]", () => {
    const { mem } = defaultMem();
    const iov = unwrap(IoVecBufferMut.fromChain(mem, writeOnlyChain(mem)));
    expect(iov.load(mem, new SegmentList([seg(0x40000, 3)])).ok).toBe(true);
    expect([iov.len, iov.segmentCount, iov.segmentAddr(0)]).toEqual([3, 1, 0x40000]);
  });
});

describe("zero-copy views", () => {
  it("segments are views of guest memory, usable with writev and readv [IOV-ZERO-COPY]", () => {
    const { mem, bytes } = defaultMem();
    const ro = unwrap(IoVecBuffer.fromChain(mem, readOnlyChain(mem)));
    const views = ro.iovecs();
    expect(views.length).toBe(4);
    expect(views[1]!.buffer).toBe(bytes[1]!.buffer);
    bytes[1]![64] = 0xee; // a guest write shows through the view
    expect(views[1]![0]).toBe(0xee);
    expect(ro.iovecs()).toBe(views); // reused while the buffer is unchanged

    const dir = mkdtempSync(join(tmpdir(), "iovec-"));
    try {
      const file = join(dir, "out");
      const fd = openSync(file, "w");
      expect(writevSync(fd, [...ro.iovecs()])).toBe(256);
      closeSync(fd);
      const written = readFileSync(file);
      expect(written[64]).toBe(0xee);
      expect(written[65]).toBe(65);

      const rw = unwrap(IoVecBufferMut.fromChain(mem, new SegmentList(writeOnlyChainSpec().slice(1, 3))));
      writeFileSync(
        file,
        Uint8Array.from({ length: 200 }, (_, i) => 255 - i),
      );
      const rfd = openSync(file, "r");
      expect(readvSync(rfd, [...rw.iovecs()])).toBe(128);
      closeSync(rfd);
      expect(region(mem, 0x20040, 1)[0]).toBe(255);
      expect(region(mem, 0x200bf, 1)[0]).toBe(255 - 127);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("small copies between many host arrays", () => {
  it("host arrays at different offsets of one buffer, used in turn, each get their own bytes and nothing else changes [IOV-READ-LEN IOV-WRITE-LEN]", () => {
    // Small copies cache the host arrays they used last (word view and offset): three arrays
    // over one buffer, at different word-aligned offsets, taken in turn, must never be
    // mistaken for one another.
    const { mem, bytes } = defaultMem();
    for (let i = 0; i < 0x10000; i++) bytes[1]![i] = (i * 7 + (i >> 8) * 13 + 3) & 0xff;
    const chain = new SegmentList([{ addr: 0x20000 + 100, len: 48, write: false }]);
    const r = IoVecBuffer.fromChain(mem, chain);
    if (!r.ok) throw new Error(r.error._tag);
    const w = IoVecBufferMut.fromChain(mem, new SegmentList([{ addr: 0x40000 + 200, len: 48, write: true }]));
    if (!w.ok) throw new Error(w.error._tag);
    const host = new Uint8Array(1024);
    const arrays = [host.subarray(0, 64), host.subarray(260, 324), host.subarray(520, 584)];
    const want = Array.from(bytes[1]!.subarray(100 + 4, 100 + 44));
    for (let round = 0; round < 3; round++) {
      for (let a = 0; a < arrays.length; a++) {
        host.fill(0xee);
        expect(r.value.readInto(arrays[a]!, 4, 8, 48)).toBe(40);
        for (let b = 0; b < arrays.length; b++) {
          const got = Array.from(arrays[b]!.subarray(8, 48));
          if (b === a) expect(got).toEqual(want);
          else expect(got.every((x) => x === 0xee)).toBe(true);
        }
        // And the other way: from each host array into guest memory.
        arrays[a]!.fill(a + 1 + round * 3, 8, 48);
        bytes[2]!.fill(0, 200, 248);
        expect(w.value.writeFrom(arrays[a]!, 4, 8, 48)).toBe(40);
        expect(Array.from(bytes[2]!.subarray(204, 244)).every((x) => x === a + 1 + round * 3)).toBe(true);
        expect(bytes[2]![203]).toBe(0);
        expect(bytes[2]![244]).toBe(0);
      }
    }
  });
});
