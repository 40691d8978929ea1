/**
 * Tests written to kill mutants that survived `npm run mutate -- impl/vsock/connection.ts`
 * outside fromGuest: the slab's default size, its free list (what goes on it, how many it
 * keeps, views it never handed out), ByteQueue's empty pushes and appends, queues sharing a
 * slab, the compaction of a long queue, and a connection's trace, hostReadClosed,
 * releaseToHost, host close after a peer shutdown, the shutdown timeout, and
 * hasPendingRx / toGuest agreeing when the guest gives no credit.
 */
import { describe, expect, it } from "vitest";
import { encodeHeader, nextState, type VsockHeader } from "../../spec/vsock.ts";
import {
  VSOCK_FLAGS_SHUTDOWN_RCV,
  VSOCK_FLAGS_SHUTDOWN_SEND,
  VSOCK_HOST_CID,
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_OP_SHUTDOWN,
  VSOCK_TYPE_STREAM,
} from "../../wire/vsock.ts";
import {
  ByteQueue,
  DEFAULT_CONN_OPTIONS,
  Slab,
  VsockConnection,
  type ByteReader,
  type ConnListener,
} from "./connection.ts";
import { VsockHeaderView } from "./header.ts";
import { VsockPacket } from "./packet.ts";

/** A reader whose byte i is `(first + i) & 0xff`. */
const reader = (first: number): ByteReader => ({
  readDataInto(dst, from, to) {
    for (let i = from; i < to; i++) dst[i] = (first + i - from) & 0xff;
    return to - from;
  },
});

/** A slab whose bytes not yet reserved read 0xee, as uninitialised memory may. */
class DirtySlab extends Slab {
  override reserve(n: number): Uint8Array {
    const b = super.reserve(n);
    b.fill(0xee, this.at + n);
    return b;
  }
}

/** Everything left in `q`, one `take()` per range. */
const takeAll = (q: ByteQueue): Uint8Array[] => {
  const out: Uint8Array[] = [];
  for (let v = q.take(); v !== null; v = q.take()) out.push(v);
  return out;
};
const bytesOf = (views: readonly Uint8Array[]): number[] => views.flatMap((v) => Array.from(v));
const counting = (first: number, n: number): number[] =>
  Array.from({ length: n }, (_, i) => (first + i) & 0xff);

describe("Slab", () => {
  it("a default slab holds 64 KiB: 64 packets of 1 KiB come out as one range [VSOCK-E2E]", () => {
    const slab = new Slab();
    const q = new ByteQueue();
    for (let k = 0; k < 64; k++) q.appendFrom(slab, 1024, reader(k * 1024));
    const one = q.take()!;
    expect(one.length).toBe(64 * 1024);
    let wrong = 0;
    for (let i = 0; i < one.length; i++) if (one[i] !== (i & 0xff)) wrong++;
    expect(wrong).toBe(0);
    expect(q.take()).toBeNull();
  });

  it("a slab with nothing out, replaced by a larger reservation, is reused for the next one [VSOCK-E2E]", () => {
    const slab = new Slab(16, 2);
    const a = slab.reserve(8);
    slab.release(a.subarray(slab.at, slab.at + 8));
    const big = slab.reserve(32); // larger than a slab: a buffer of its own; a is free
    expect(big).not.toBe(a);
    expect(big.length).toBe(32);
    expect(slab.reserve(8)).toBe(a); // big is full and held: a comes back from the free list
    expect(slab.at).toBe(0);
  });

  it("keeps at most `keep` free slabs; the first given back is reused first [VSOCK-E2E]", () => {
    const slab = new Slab(16, 1);
    const a = slab.reserve(16);
    const b = slab.reserve(16);
    const c = slab.reserve(16);
    expect(new Set([a, b, c]).size).toBe(3);
    slab.release(a); // a retired slab all of whose bytes came back: kept
    slab.release(b); // the free list is full (keep = 1): b is left to the collector
    expect(slab.reserve(16)).toBe(a); // c is full: a comes back
    const d = slab.reserve(16);
    expect(d).not.toBe(b);
    expect(d).not.toBe(a);
    expect(d).not.toBe(c);
  });

  it("a view it never handed out, or one given back twice, is ignored [VSOCK-HOSTILE]", () => {
    const slab = new Slab(16, 2);
    const a = slab.reserve(16);
    const b = slab.reserve(8); // a is retired with its 16 bytes out
    b.set(counting(40, 8));
    expect(() => slab.release(new Uint8Array(4))).not.toThrow();
    slab.release(a);
    expect(() => slab.release(a)).not.toThrow();
    // b is still out: the current slab goes on after it.
    slab.reserve(4);
    expect(slab.at).toBe(8);
    expect(Array.from(b.subarray(0, 8))).toEqual(counting(40, 8));
  });
});

describe("ByteQueue edge cases", () => {
  it("an empty chunk pushed queues nothing [VSOCK-E2E]", () => {
    const q = new ByteQueue();
    q.push(new Uint8Array(0));
    expect(q.take()).toBeNull();
    q.push(new Uint8Array(0));
    q.push(Uint8Array.of(1, 2));
    expect(q.length).toBe(2);
    expect(takeAll(q).map((v) => Array.from(v))).toEqual([[1, 2]]);
  });

  it("an append of zero or a negative count queues nothing and reserves nothing [VSOCK-E2E]", () => {
    const q = new ByteQueue();
    const slab = new Slab(16);
    q.appendFrom(slab, 0, reader(0));
    q.appendFrom(slab, -3, reader(0));
    expect(q.length).toBe(0);
    expect(q.take()).toBeNull();
    q.appendFrom(slab, 0, null);
    q.appendFrom(slab, 5, reader(7));
    expect(slab.at).toBe(0);
    expect(q.length).toBe(5);
    expect(takeAll(q).map((v) => Array.from(v))).toEqual([counting(7, 5)]);
  });

  it("queues sharing a slab (connections of one muxer) never get each other's bytes [VSOCK-E2E]", () => {
    const slab = new DirtySlab(16);
    const q1 = new ByteQueue();
    const q2 = new ByteQueue();
    q1.appendFrom(slab, 10, reader(0)); // slab A [0, 10)
    q2.appendFrom(slab, 8, reader(100)); // A has 6 left: slab B [0, 8)
    q2.appendFrom(slab, 2, reader(108)); // B [8, 10): q1's range in A also ends at 10
    q1.appendFrom(slab, 3, reader(10)); // B [10, 13)
    const got1 = takeAll(q1);
    expect(got1.map((v) => v.length)).toEqual([10, 3]);
    expect(bytesOf(got1)).toEqual(counting(0, 13));
    expect(bytesOf(takeAll(q2))).toEqual(counting(100, 10));
  });

  it("a long queue read range by range keeps every range's bytes (buffer, start and end) [VSOCK-E2E]", () => {
    // Two queues appending one byte at a time in turn: each range of q1 is a single byte,
    // at its own offset, across 13 slabs; taking 70 of its 100 ranges compacts its lists.
    const slab = new Slab(16);
    const q1 = new ByteQueue();
    const q2 = new ByteQueue();
    for (let k = 0; k < 100; k++) {
      q1.appendFrom(slab, 1, reader(k));
      q2.appendFrom(slab, 1, reader(200 + k));
    }
    const first: Uint8Array[] = [];
    for (let k = 0; k < 70; k++) first.push(q1.take()!);
    expect(bytesOf(first)).toEqual(counting(0, 70));
    expect(q1.length).toBe(30);
    q1.appendFrom(slab, 1, reader(100));
    const rest: number[] = [];
    const n = q1.drainTo(20, {
      writeDataFrom(src, from, to, at) {
        for (let i = from; i < to; i++) rest[at + i - from] = src[i]!;
        return to - from;
      },
    });
    expect(n).toBe(20);
    expect(rest).toEqual(counting(70, 20));
    expect(bytesOf(takeAll(q1))).toEqual(counting(90, 11));
    expect(bytesOf(takeAll(q2))).toEqual(counting(200, 100));
  });
});

// ---------------------------------------------------------------------------------------------
// Connections

const GUEST_CID = 3n;
const LOCAL_PORT = 1024;
const PEER_PORT = 5000;

/** A listener counting its calls. */
const listener = (): ConnListener & { rx: number; data: number } => {
  const l = {
    rx: 0,
    data: 0,
    pendingRx: () => void l.rx++,
    established: () => undefined,
    hostData: () => void l.data++,
  };
  return l;
};

/** A guest packet's header for the connection, with the guest's credit. */
const fromGuest = (op: number, more: Partial<VsockHeader> = {}): VsockHeaderView => {
  const h: VsockHeader = {
    srcCid: GUEST_CID,
    dstCid: BigInt(VSOCK_HOST_CID),
    srcPort: PEER_PORT,
    dstPort: LOCAL_PORT,
    len: 0,
    type: VSOCK_TYPE_STREAM,
    op,
    flags: 0,
    bufAlloc: 64 * 1024,
    fwdCnt: 0,
    ...more,
  };
  const bytes = encodeHeader(h);
  return new VsockHeaderView(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0);
};

/** A guest-initiated connection, accepted (RESPONSE sent), with the guest's buf_alloc. */
const open = (
  guestBufAlloc: number,
  slab = new Slab(),
): { c: VsockConnection; l: ReturnType<typeof listener>; pkt: VsockPacket } => {
  const l = listener();
  const c = new VsockConnection(
    LOCAL_PORT,
    PEER_PORT,
    GUEST_CID,
    "guest",
    DEFAULT_CONN_OPTIONS,
    l,
    0,
    true,
    slab,
  );
  c.fromPeer(guestBufAlloc, 0);
  c.accept();
  const pkt = new VsockPacket();
  expect(c.toGuest(pkt)).toBeGreaterThan(0);
  expect(pkt.header.op()).toBe(VSOCK_OP_RESPONSE);
  expect(c.state).toBe("Established");
  return { c, l, pkt };
};

/** The ops of the packets toGuest writes while hasPendingRx says there is one, checking each does. */
const drain = (c: VsockConnection, pkt: VsockPacket): number[] => {
  const ops: number[] = [];
  for (let guard = 0; c.hasPendingRx() && guard < 16; guard++) {
    expect(c.toGuest(pkt)).toBeGreaterThan(0);
    ops.push(pkt.header.op());
  }
  expect(c.hasPendingRx()).toBe(false);
  expect(c.toGuest(pkt)).toBe(0);
  return ops;
};

/** Every traced transition is one the spec's state machine makes. */
const traceFollowsSpec = (c: VsockConnection): void => {
  expect(c.trace).not.toBeNull();
  for (const t of c.trace!) expect({ ...t, to: nextState(t.from, t.event) }).toEqual(t);
};

describe("VsockConnection", () => {
  it("records transitions only when asked to trace [VSOCK-CONN-HANDSHAKE]", () => {
    const quiet = new VsockConnection(1, 2, GUEST_CID, "host", DEFAULT_CONN_OPTIONS, listener(), 0);
    expect(quiet.trace).toBeNull();
    const traced = new VsockConnection(1, 2, GUEST_CID, "host", DEFAULT_CONN_OPTIONS, listener(), 0, true);
    expect(traced.trace).toEqual([]);
  });

  it("the host's read side closes only once the guest's bytes before its SHUTDOWN(SEND) are taken [VSOCK-CONN-SHUTDOWN]", () => {
    const { c } = open(64 * 1024);
    c.fromGuest(fromGuest(VSOCK_OP_RW, { len: 5 }), null);
    c.fromGuest(fromGuest(VSOCK_OP_SHUTDOWN, { flags: VSOCK_FLAGS_SHUTDOWN_SEND }), null);
    expect(c.state).toBe("PeerClosed");
    expect(c.hostReadClosed).toBe(false);
    expect(c.takeToHost()!.length).toBe(5);
    expect(c.hostReadClosed).toBe(true);
  });

  it("a view given back with releaseToHost is written again by the next guest bytes [VSOCK-E2E]", () => {
    const slab = new Slab(64);
    const { c } = open(64 * 1024, slab);
    c.fromGuest(fromGuest(VSOCK_OP_RW, { len: 10 }), null);
    const v = c.takeToHost()!;
    c.forwarded(v.length);
    c.releaseToHost(v);
    c.fromGuest(fromGuest(VSOCK_OP_RW, { len: 10 }), null);
    const w = c.takeToHost()!;
    expect(w.buffer).toBe(v.buffer);
    expect(w.byteOffset).toBe(v.byteOffset);
  });

  it("a host close after the guest's SHUTDOWN ends the connection with RST, as LocalShutdown [VSOCK-CONN-SHUTDOWN]", () => {
    const { c, pkt } = open(64 * 1024);
    c.fromGuest(fromGuest(VSOCK_OP_SHUTDOWN, { flags: VSOCK_FLAGS_SHUTDOWN_RCV }), null);
    expect(c.state).toBe("PeerClosed");
    c.hostClose(100);
    expect(c.state).toBe("Killed");
    expect(c.resetReason).toBe("LocalShutdown");
    traceFollowsSpec(c);
    expect(drain(c, pkt)).toEqual([VSOCK_OP_RST]);
  });

  it("a host close waits shutdownTimeoutMs for the guest's RST, then resets it [VSOCK-CONN-TIMEOUT]", () => {
    const { c, pkt } = open(64 * 1024);
    c.hostClose(1000);
    expect(c.state).toBe("LocalClosed");
    expect(drain(c, pkt)).toEqual([VSOCK_OP_SHUTDOWN]);
    expect(pkt.header.flags()).toBe(VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND);
    c.tick(1000 + DEFAULT_CONN_OPTIONS.shutdownTimeoutMs - 1);
    expect(c.state).toBe("LocalClosed");
    c.tick(1000 + DEFAULT_CONN_OPTIONS.shutdownTimeoutMs);
    expect(c.state).toBe("Killed");
    expect(c.resetReason).toBe("Timeout");
    traceFollowsSpec(c);
    expect(drain(c, pkt)).toEqual([VSOCK_OP_RST]);
  });

  it("with no credit from the guest and nothing to send, no packet goes out [VSOCK-CREDIT-LIMIT VSOCK-CREDIT-UPDATE]", () => {
    const { c, pkt } = open(0);
    expect(drain(c, pkt)).toEqual([]);
    // The guest's next header grants nothing: still nothing to say.
    c.fromGuest(fromGuest(VSOCK_OP_CREDIT_UPDATE, { bufAlloc: 0 }), null);
    expect(drain(c, pkt)).toEqual([]);
  });

  it("host bytes and EOF blocked on credit: one CREDIT_REQUEST, then nothing pending [VSOCK-CREDIT-LIMIT VSOCK-CREDIT-UPDATE]", () => {
    const { c, pkt } = open(0);
    c.hostWrite(new Uint8Array(10));
    c.hostShutdown();
    expect(drain(c, pkt)).toEqual([VSOCK_OP_CREDIT_REQUEST]);
    // The guest grants credit: the bytes are pending again.
    c.fromGuest(fromGuest(VSOCK_OP_CREDIT_UPDATE, { bufAlloc: 64 * 1024 }), null);
    expect(c.hasPendingRx()).toBe(true);
    expect(c.fromHost.length).toBe(10);
  });
});
