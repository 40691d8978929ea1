import { describe, expect, it } from "vitest";
import { ByteQueue, Slab, type ByteReader, type ByteWriter } from "./connection.ts";

/** A reader that yields `have` bytes counting up from `first` (fewer than asked when short). */
const reader = (first: number, have = Infinity): ByteReader => ({
  readDataInto(dst, from, to) {
    const n = Math.min(to - from, have);
    for (let i = 0; i < n; i++) dst[from + i] = (first + i) & 0xff;
    return n;
  },
});

/** A slab that dirties every range it reserves, as uninitialised memory may be. */
class DirtySlab extends Slab {
  override reserve(n: number): Uint8Array {
    const b = super.reserve(n);
    b.fill(0xee, this.at, this.at + n);
    return b;
  }
}

describe("ByteQueue over a shared slab", () => {
  it("packets appended one after another come out as one range, in order [VSOCK-E2E]", () => {
    const q = new ByteQueue();
    const slab = new Slab(64);
    q.appendFrom(slab, 10, reader(0));
    q.appendFrom(slab, 10, reader(10));
    expect(q.length).toBe(20);
    const out = q.take()!;
    expect(Array.from(out)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(q.take()).toBeNull();
  });

  it("bytes already taken stay as they were while more are appended and new slabs start [VSOCK-E2E]", () => {
    const q = new ByteQueue();
    const slab = new Slab(16);
    q.appendFrom(slab, 12, reader(0));
    const first = q.take()!;
    q.appendFrom(slab, 4, reader(100)); // fills the slab
    q.appendFrom(slab, 8, reader(200)); // a new slab
    expect(Array.from(first)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(Array.from(q.take()!)).toEqual([100, 101, 102, 103]);
    expect(Array.from(q.take()!)).toEqual(Array.from({ length: 8 }, (_, i) => 200 + i));
  });

  it("a source with fewer bytes than announced leaves zeros, never old memory [VSOCK-BOUNDS]", () => {
    const q = new ByteQueue();
    const slab = new DirtySlab(64);
    q.appendFrom(slab, 8, reader(1, 3));
    q.appendFrom(slab, 4, null);
    expect(Array.from(q.take()!)).toEqual([1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it("drainTo moves whole and partial ranges and keeps the rest queued [VSOCK-CREDIT-LIMIT]", () => {
    const q = new ByteQueue();
    q.push(Uint8Array.of(1, 2, 3));
    q.push(Uint8Array.of(4, 5, 6, 7));
    const got: number[] = [];
    const sink: ByteWriter = {
      writeDataFrom(src, from, to, at) {
        for (let i = from; i < to; i++) got[at + i - from] = src[i]!;
        return to - from;
      },
    };
    expect(q.drainTo(5, sink)).toBe(5);
    expect(got).toEqual([1, 2, 3, 4, 5]);
    expect(q.length).toBe(2);
    expect(Array.from(q.take()!)).toEqual([6, 7]);
  });
});
