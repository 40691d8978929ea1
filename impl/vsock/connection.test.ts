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

describe("Slab reuse", () => {
  it("a slab whose bytes all came back is written again; one with a view out is not [VSOCK-E2E]", () => {
    const slab = new Slab(16, 2);
    const q = new ByteQueue();
    q.appendFrom(slab, 10, reader(0));
    const a = q.take()!;
    slab.release(a);
    // Nothing of the current slab is out: the next bytes start it again.
    q.appendFrom(slab, 4, reader(50));
    const b = q.take()!;
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteOffset).toBe(0);
    // b is held: the slab fills up and a new one starts; b keeps its bytes.
    q.appendFrom(slab, 12, reader(60));
    q.appendFrom(slab, 8, reader(80));
    const c = q.take()!;
    const d = q.take()!;
    expect(d.buffer).not.toBe(b.buffer);
    expect(Array.from(b)).toEqual([50, 51, 52, 53]);
    // Once the retired slab's views are all back it is reused instead of a new allocation.
    slab.release(b);
    slab.release(c);
    q.appendFrom(slab, 16, reader(0)); // does not fit beside d: the retired slab comes back
    expect(q.take()!.buffer).toBe(a.buffer);
    expect(Array.from(d)).toEqual(Array.from({ length: 8 }, (_, i) => 80 + i));
  });

  it("bytes not yet given back are never overwritten, whatever order views come back in [VSOCK-E2E]", () => {
    // A small slab and a seeded walk: appends of every size, takes of any length, releases in
    // any order; after every step each view still held reads as it was written.
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const slab = new Slab(64, 3);
    const q = new ByteQueue();
    // The stream's byte k is k & 0xff (reader counts up): a view taken at stream offset `at`
    // must read at, at + 1, ... for as long as it is held.
    const held: { view: Uint8Array; at: number }[] = [];
    let appended = 0;
    let taken = 0;
    let bad = 0;
    for (let step = 0; step < 4000; step++) {
      const what = rand(3);
      // Appends while the backlog is short, so views come from the current slab as well as retired ones.
      if (what === 0 && q.length < 96) {
        const n = 1 + rand(80);
        q.appendFrom(slab, n, reader(appended));
        appended += n;
      } else if (what !== 2 && q.length > 0) {
        const view = q.take(1 + rand(70))!;
        held.push({ view, at: taken });
        taken += view.length;
      } else if (held.length > 0) {
        // Mostly in order (as a socket's writes complete), sometimes out of order.
        const [h] = held.splice(rand(4) === 0 ? rand(held.length) : 0, 1);
        slab.release(h!.view);
      }
      for (const h of held)
        for (let i = 0; i < h.view.length; i++) if (h.view[i] !== ((h.at + i) & 0xff)) bad++;
    }
    expect(taken).toBeGreaterThan(10_000);
    expect(bad).toBe(0);
  });
});
