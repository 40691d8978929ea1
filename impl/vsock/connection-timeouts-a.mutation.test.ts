/**
 * Tests written to kill mutants of impl/vsock/connection.ts that Stryker reported as Timeout
 * but that, re-checked alone, no test failed: ByteQueue.take with a limit (a range longer
 * than, or exactly, the limit; the pushed chunk itself when a range is whole), drainTo on a
 * queue it empties and with a writer that takes fewer bytes than offered, clear; a
 * guest-initiated connection not yet accepted, one not tracing, and a second reset.
 */
import { describe, expect, it } from "vitest";
import {
  ByteQueue,
  DEFAULT_CONN_OPTIONS,
  VsockConnection,
  type ByteWriter,
  type ConnListener,
} from "./connection.ts";
import { VSOCK_OP_RESPONSE, VSOCK_OP_RST } from "../../wire/vsock.ts";
import { VsockPacket } from "./packet.ts";

/** A writer with room for `room` bytes in all, recording each call's (from, to, at). */
const writer = (room: number): ByteWriter & { calls: [number, number, number][]; got: number[] } => {
  const w = {
    calls: [] as [number, number, number][],
    got: [] as number[],
    writeDataFrom(src: Uint8Array, from: number, to: number, at: number): number {
      w.calls.push([from, to, at]);
      // Never loop forever under a mutant that keeps calling a full writer.
      if (w.calls.length > 8) throw new Error("writer called again after it was full");
      const n = Math.max(0, Math.min(to - from, room - w.got.length));
      for (let i = 0; i < n; i++) w.got.push(src[from + i]!);
      return n;
    },
  };
  return w;
};

const chunk = (first: number, n: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (first + i) & 0xff);

describe("ByteQueue.take with a limit", () => {
  it("a range longer than the limit gives the limit's bytes and keeps the rest [VSOCK-E2E]", () => {
    const q = new ByteQueue();
    q.push(chunk(0, 10));
    expect(Array.from(q.take(4)!)).toEqual([0, 1, 2, 3]);
    expect(q.length).toBe(6);
    expect(Array.from(q.take()!)).toEqual([4, 5, 6, 7, 8, 9]);
    expect(q.take()).toBeNull();
  });

  it("a range exactly as long as the limit is taken whole: the next take gives the next range [VSOCK-E2E]", () => {
    const q = new ByteQueue();
    q.push(chunk(0, 4));
    q.push(chunk(100, 3));
    expect(Array.from(q.take(4)!)).toEqual([0, 1, 2, 3]);
    expect(q.length).toBe(3);
    expect(Array.from(q.take(4)!)).toEqual([100, 101, 102]);
    expect(q.take(4)).toBeNull();
  });

  it("a whole pushed chunk comes back as itself, not a copy or a new view [VSOCK-E2E]", () => {
    const q = new ByteQueue();
    const a = chunk(0, 8);
    q.push(a);
    expect(q.take(8)).toBe(a);
  });
});

describe("ByteQueue.clear", () => {
  it("a cleared queue is empty and queues later bytes as a new queue does [VSOCK-E2E]", () => {
    const q = new ByteQueue();
    q.push(chunk(0, 5));
    q.push(chunk(10, 5));
    expect(Array.from(q.take(2)!)).toEqual([0, 1]);
    q.clear();
    expect(q.length).toBe(0);
    expect(q.take()).toBeNull();
    q.push(chunk(20, 3));
    q.push(chunk(30, 2));
    expect(q.length).toBe(5);
    expect(Array.from(q.take()!)).toEqual([20, 21, 22]);
    expect(Array.from(q.take()!)).toEqual([30, 31]);
    expect(q.take()).toBeNull();
  });
});

describe("ByteQueue's lists", () => {
  it("a queue read to the end holds no reference to the chunks it gave back [VSOCK-E2E]", () => {
    const q = new ByteQueue();
    const chunks = [chunk(0, 4), chunk(10, 4), chunk(20, 4)];
    for (const c of chunks) q.push(c);
    for (const c of chunks) expect(q.take()).toBe(c);
    expect(q.take()).toBeNull();
    // The private lists, read by name: a taken chunk (guest bytes, a slab) must not stay
    // reachable from a connection's idle queue.
    expect(q["bufs"]).toEqual([]);
    expect(q["starts"]).toEqual([]);
    expect(q["ends"]).toEqual([]);
  });
});

describe("ByteQueue.drainTo", () => {
  it("stops once the queue is empty: the writer is called once per range, never past the last [VSOCK-E2E]", () => {
    const q = new ByteQueue();
    q.push(chunk(0, 5));
    const w = writer(100);
    expect(q.drainTo(10, w)).toBe(5);
    expect(w.calls).toEqual([[0, 5, 0]]);
    expect(q.drainTo(10, w)).toBe(0);
    expect(w.calls.length).toBe(1);
    // The emptied queue still queues and gives back later bytes as they were.
    q.push(chunk(50, 3));
    expect(Array.from(q.take()!)).toEqual([50, 51, 52]);
  });

  it("stops at a writer that took fewer bytes than offered and keeps the rest queued [VSOCK-CREDIT-LIMIT]", () => {
    const q = new ByteQueue();
    q.push(chunk(0, 6));
    q.push(chunk(10, 6));
    const w = writer(8);
    expect(q.drainTo(12, w)).toBe(8);
    expect(w.calls).toEqual([
      [0, 6, 0],
      [0, 6, 6],
    ]);
    expect(w.got).toEqual([0, 1, 2, 3, 4, 5, 10, 11]);
    expect(q.length).toBe(4);
    expect(Array.from(q.take()!)).toEqual([12, 13, 14, 15]);
  });
});

const quiet: ConnListener = {
  pendingRx: () => undefined,
  established: () => undefined,
  hostData: () => undefined,
};

describe("VsockConnection", () => {
  it("a guest-initiated connection has nothing for the guest until the host accepts it [VSOCK-CONN-HANDSHAKE]", () => {
    const c = new VsockConnection(1024, 2048, 3n, "guest", DEFAULT_CONN_OPTIONS, quiet, 0);
    expect(c.state).toBe("PeerInit");
    expect(c.hasPendingRx()).toBe(false);
    expect(c.toGuest(new VsockPacket())).toBe(0);
  });

  it("a connection not tracing changes state all the same [VSOCK-CONN-HANDSHAKE]", () => {
    const c = new VsockConnection(1024, 2048, 3n, "guest", DEFAULT_CONN_OPTIONS, quiet, 0);
    c.accept();
    const pkt = new VsockPacket();
    expect(c.toGuest(pkt)).toBeGreaterThan(0);
    expect(pkt.header.op()).toBe(VSOCK_OP_RESPONSE);
    expect(c.state).toBe("Established");
    expect(c.trace).toBeNull();
  });

  it("a second reset changes nothing: no second RST, the first reason kept [VSOCK-CONN-RST]", () => {
    let rx = 0;
    const l: ConnListener = { ...quiet, pendingRx: () => void rx++ };
    const c = new VsockConnection(1024, 2048, 3n, "guest", DEFAULT_CONN_OPTIONS, l, 0, true);
    c.kill("Timeout", true);
    const pkt = new VsockPacket();
    expect(c.toGuest(pkt)).toBeGreaterThan(0);
    expect(pkt.header.op()).toBe(VSOCK_OP_RST);
    expect(rx).toBe(1);
    c.kill("LocalShutdown", true);
    expect(c.resetReason).toBe("Timeout");
    expect(c.trace!.length).toBe(1);
    expect(rx).toBe(1);
    expect(c.hasPendingRx()).toBe(false);
    expect(c.toGuest(pkt)).toBe(0);
  });
});
