import { describe, expect, it } from "vitest";
import { CapturingBackend, LoopbackBackend, type RxBuffer, type TxPacket } from "./backend.ts";

/** A TX packet over a plain frame (no header), as the device's TxView presents one. */
const txOf = (frame: Uint8Array): TxPacket => ({
  headerLength: 12,
  frameLength: frame.length,
  segmentCount: 1,
  segment: (i) => (i === 0 ? frame : undefined),
  copyFrame(dst, at, n = dst.length, into = 0) {
    const room = dst.length - into;
    const count = Math.max(0, Math.min(n, room, frame.length - at));
    if (into < 0 || at < 0 || count === 0) return 0;
    dst.set(frame.subarray(at, at + count), into);
    return count;
  },
});

/** An RX buffer of `capacity` bytes; the frame lands after a 12-byte header. */
const rxOf = (capacity: number): { buf: RxBuffer; bytes: Uint8Array } => {
  const bytes = new Uint8Array(capacity).fill(0xee);
  return {
    bytes,
    buf: {
      headerLength: 12,
      capacity,
      segmentCount: 1,
      segment: (i) => (i === 0 ? bytes : undefined),
      write(src, from, to, at) {
        const n = Math.max(0, Math.min(to - from, capacity - at));
        bytes.set(src.subarray(from, from + n), at);
        return n;
      },
    },
  };
};

describe("the frame backends' queue (one byte ring)", () => {
  it("frames of every size come out whole and in order through wraps and growth; beyond the bound they are dropped [NET-BACKEND-LOOPBACK NET-RX-PENDING-BOUND]", () => {
    const capacity = 100;
    const limit = 8;
    const lo = new LoopbackBackend({ frameCapacity: capacity, queueLimit: limit });
    let seed = 7;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const model: Uint8Array[] = [];
    let made = 0;
    let dropped = 0;
    for (let step = 0; step < 5000; step++) {
      // Mostly pushes of large frames: the ring stays nearly full, so frames wrap into tight
      // gaps and the ring is compacted when its free bytes are split; sometimes a small one.
      if (rand(5) < 4) {
        const len = rand(4) === 0 ? 1 + rand(capacity) : capacity / 2 + rand(capacity / 2 + 1);
        const frame = Uint8Array.from({ length: len }, (_, i) => (made * 31 + i * 7) & 0xff);
        made++;
        lo.send(txOf(frame));
        if (model.length < limit) model.push(frame);
        else dropped++;
      } else {
        const { buf, bytes } = rxOf(12 + capacity + 8);
        const n = lo.receive(buf);
        const want = model.shift();
        if (want === undefined) {
          expect(n).toBe(-1);
          continue;
        }
        expect(n).toBe(want.length);
        expect(bytes.subarray(12, 12 + n)).toEqual(want);
        // Nothing past the frame is written: no byte of another frame shows through.
        expect(bytes.subarray(12 + n).every((x) => x === 0xee)).toBe(true);
      }
      expect(lo.pending).toBe(model.length);
    }
    expect(dropped).toBeGreaterThan(0);
    expect(lo.stats.dropped).toBe(dropped);
  });

  it("frames larger than the capacity are refused; a frame whose RX room is short is truncated and consumed [NET-RX-PENDING-BOUND]", () => {
    const cap = new CapturingBackend({ frameCapacity: 64, queueLimit: 4 });
    expect(cap.inject(new Uint8Array(65))).toBe(false);
    expect(cap.inject(Uint8Array.from({ length: 64 }, (_, i) => i))).toBe(true);
    expect(cap.inject(Uint8Array.of(9, 9))).toBe(true);
    const { buf, bytes } = rxOf(12 + 10);
    expect(cap.receive(buf)).toBe(10);
    expect(Array.from(bytes.subarray(12))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const next = rxOf(12 + 10);
    expect(cap.receive(next.buf)).toBe(2);
    expect(Array.from(next.bytes.subarray(12, 14))).toEqual([9, 9]);
    expect(cap.receive(rxOf(20).buf)).toBe(-1);
  });

  it("a ring that wraps and then runs out of room grows with the waiting frames kept whole, in order [NET-BACKEND-LOOPBACK]", () => {
    // The ring starts at 64 KiB: 32 frames of 2000 bytes nearly fill it, two leave, two more
    // wrap to the start into the room they left, and the next no longer fits anywhere.
    const lo = new LoopbackBackend({ queueLimit: 256 });
    const frameOf = (k: number): Uint8Array =>
      Uint8Array.from({ length: 2000 }, (_, i) => (k * 13 + i * 5) & 0xff);
    const want: number[] = [];
    const push = (k: number): void => {
      lo.send(txOf(frameOf(k)));
      want.push(k);
    };
    const pop = (): void => {
      const { buf, bytes } = rxOf(12 + 2000);
      expect(lo.receive(buf)).toBe(2000);
      expect(bytes.subarray(12)).toEqual(frameOf(want.shift()!));
    };
    for (let k = 0; k < 32; k++) push(k);
    pop();
    pop();
    push(32); // wraps to the start
    push(33); // fills the room the two left
    push(34); // fits nowhere: the ring grows
    for (let k = 35; k < 100; k++) push(k);
    expect(lo.pending).toBe(98);
    while (want.length > 0) pop();
    expect(lo.stats.dropped).toBe(0);
  });
});
