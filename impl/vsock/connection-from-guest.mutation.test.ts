/**
 * Tests written to kill mutants of `VsockConnection.fromGuest` that survived `npm run mutate --
 * impl/vsock/connection.ts`: what the device does with each guest packet on a connection. An
 * op the state does not allow (anything but RST/RESPONSE during the handshake, RESPONSE once
 * open, REQUEST on an open connection, RW after the guest's SHUTDOWN(SEND)) is a reset named
 * "Unexpected" with one RST to the guest; a guest RST gets none back; SHUTDOWN with no flag
 * changes nothing, RCV drops the host's queued bytes, SEND tells the host (EOF); after the host
 * closed, guest bytes are dropped but counted consumed, and a one-flag SHUTDOWN ends it. Every
 * state change is checked against the spec's state machine (`nextState`). The last group also
 * kills, in bounded time, mutants Stryker reported as timeouts: packets after a reset, an empty
 * RW, CREDIT_REQUEST's answer, when the device asks for credit again, and when the RX round is
 * woken.
 */
import { describe, expect, it } from "vitest";
import { nextState, type ConnEvent } from "../../spec/vsock.ts";
import {
  VSOCK_FLAGS_SHUTDOWN_RCV,
  VSOCK_FLAGS_SHUTDOWN_SEND,
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_OP_SHUTDOWN,
} from "../../wire/vsock.ts";
import { DEFAULT_CONN_OPTIONS, VsockConnection, type ConnListener } from "./connection.ts";
import { VsockHeaderView } from "./header.ts";
import { VsockPacket } from "./packet.ts";

/** Our buf_alloc: small, so a few packets would overrun it. */
const BUF = 1024;
const OPTIONS = { ...DEFAULT_CONN_OPTIONS, bufAlloc: BUF, creditUpdateThreshold: 0 };

interface Rig {
  readonly conn: VsockConnection;
  /** Calls of each listener method so far. */
  readonly calls: { pendingRx: number; established: number; hostData: number };
}

/** A traced connection in LocalInit (host-initiated) or PeerInit (guest-initiated). */
const rig = (initiator: "host" | "guest"): Rig => {
  const calls = { pendingRx: 0, established: 0, hostData: 0 };
  const listener: ConnListener = {
    pendingRx: () => void calls.pendingRx++,
    established: () => void calls.established++,
    hostData: () => void calls.hostData++,
  };
  return { conn: new VsockConnection(1024, 5000, 3n, initiator, OPTIONS, listener, 0, true), calls };
};

interface Fields {
  readonly flags?: number;
  readonly len?: number;
  /** The guest's buf_alloc (0: the device may send it nothing). */
  readonly bufAlloc?: number;
}

/** One guest packet of `op` on the connection (no data buffer: RW bytes read as zeros). */
const send = (conn: VsockConnection, op: number, f: Fields = {}): void => {
  const hdr = new VsockHeaderView()
    .setOp(op)
    .setFlags(f.flags ?? 0)
    .setLen(f.len ?? 0)
    .setBufAlloc(f.bufAlloc ?? 4096)
    .setFwdCnt(0);
  conn.fromGuest(hdr, null);
};

/** The ops of everything the device sends the guest now (control packets: no data room). */
const drain = (conn: VsockConnection): { op: number; fwdCnt: number }[] => {
  const out: { op: number; fwdCnt: number }[] = [];
  const pkt = new VsockPacket();
  for (let i = 0; i < 16; i++) {
    if (conn.toGuest(pkt) === 0) break;
    out.push({ op: pkt.header.op(), fwdCnt: pkt.header.fwdCnt() });
  }
  return out;
};

/** A host-initiated connection the guest accepted (its REQUEST already sent). */
const established = (): Rig => {
  const r = rig("host");
  expect(drain(r.conn).map((p) => p.op)).toEqual([VSOCK_OP_REQUEST]);
  send(r.conn, VSOCK_OP_RESPONSE);
  expect(r.conn.state).toBe("Established");
  return r;
};

/** Every recorded state change is one the spec's state machine allows. */
const expectSpecTransitions = (conn: VsockConnection): void => {
  for (const t of conn.trace!) expect({ ...t, to: nextState(t.from, t.event) }).toEqual(t);
};

/** The connection was reset for `reason`, and the guest gets exactly one RST, then nothing. */
const expectResetWithRst = (conn: VsockConnection, reason: ConnEvent): void => {
  expect(conn.state).toBe("Killed");
  expect(conn.resetReason).toBe(reason);
  expect(conn.trace!.at(-1)?.event).toBe(reason);
  expectSpecTransitions(conn);
  expect(drain(conn).map((p) => p.op)).toEqual([VSOCK_OP_RST]);
};

const OP_NAMES: Record<number, string> = {
  [VSOCK_OP_RW]: "RW",
  [VSOCK_OP_CREDIT_UPDATE]: "CREDIT_UPDATE",
  [VSOCK_OP_CREDIT_REQUEST]: "CREDIT_REQUEST",
  [VSOCK_OP_SHUTDOWN]: "SHUTDOWN",
};

describe("VsockConnection.fromGuest: ops the state does not allow", () => {
  for (const initiator of ["host", "guest"] as const) {
    const state = initiator === "host" ? "LocalInit" : "PeerInit";
    for (const op of [VSOCK_OP_RW, VSOCK_OP_CREDIT_UPDATE, VSOCK_OP_CREDIT_REQUEST, VSOCK_OP_SHUTDOWN]) {
      it(`${OP_NAMES[op]} in ${state} resets the connection with one RST [VSOCK-CONN-UNKNOWN VSOCK-CONN-HANDSHAKE]`, () => {
        const { conn } = rig(initiator);
        expect(conn.state).toBe(state);
        send(conn, op, { flags: VSOCK_FLAGS_SHUTDOWN_SEND, len: 8 });
        expectResetWithRst(conn, "Unexpected");
      });
    }
  }

  it("RESPONSE on an open connection resets it with one RST [VSOCK-CONN-UNKNOWN VSOCK-CONN-HANDSHAKE]", () => {
    const { conn, calls } = established();
    expect(calls.established).toBe(1);
    send(conn, VSOCK_OP_RESPONSE);
    expect(calls.established).toBe(1);
    expectResetWithRst(conn, "Unexpected");
  });

  it("REQUEST on an open connection resets it with one RST [VSOCK-CONN-UNKNOWN]", () => {
    const { conn } = established();
    send(conn, VSOCK_OP_REQUEST);
    expectResetWithRst(conn, "Unexpected");
  });

  it("RW after the guest's SHUTDOWN(SEND) resets the connection with one RST, its bytes not delivered [VSOCK-CONN-UNKNOWN VSOCK-CONN-SHUTDOWN]", () => {
    const { conn } = established();
    send(conn, VSOCK_OP_SHUTDOWN, { flags: VSOCK_FLAGS_SHUTDOWN_SEND });
    expect(conn.state).toBe("PeerClosed");
    send(conn, VSOCK_OP_RW, { len: 16 });
    expect(conn.toHost.length).toBe(0);
    expectResetWithRst(conn, "Unexpected");
  });
});

describe("VsockConnection.fromGuest: RST and SHUTDOWN", () => {
  it("a guest RST ends the connection and is not answered with an RST [VSOCK-CONN-RST]", () => {
    const { conn } = established();
    send(conn, VSOCK_OP_RST);
    expect(conn.state).toBe("Killed");
    expect(conn.resetReason).toBe("Rst");
    expectSpecTransitions(conn);
    expect(conn.hasPendingRx()).toBe(false);
    expect(drain(conn)).toEqual([]);
  });

  it("SHUTDOWN with neither RCV nor SEND shuts nothing: the connection stays open [VSOCK-CONN-SHUTDOWN]", () => {
    const { conn, calls } = established();
    const traced = conn.trace!.length;
    send(conn, VSOCK_OP_SHUTDOWN, { flags: 0x4 });
    expect(conn.state).toBe("Established");
    expect(conn.trace!.length).toBe(traced);
    expect(conn.peerShutdown).toBe(0);
    expect(calls.hostData).toBe(0);
    // Still open for the host: its close is an orderly LocalShutdown, not the end of a peer-closed one.
    conn.hostClose(1);
    expect(conn.state).toBe("LocalClosed");
    expectSpecTransitions(conn);
  });

  it("SHUTDOWN(RCV) drops the host bytes still queued for the guest, and does not tell the host of an EOF [VSOCK-CONN-SHUTDOWN]", () => {
    const { conn, calls } = established();
    // The guest advertised no buffer: the host's bytes wait.
    send(conn, VSOCK_OP_CREDIT_UPDATE, { bufAlloc: 0 });
    conn.hostWrite(new Uint8Array(100).fill(7));
    expect(conn.fromHost.length).toBe(100);
    send(conn, VSOCK_OP_SHUTDOWN, { flags: VSOCK_FLAGS_SHUTDOWN_RCV, bufAlloc: 0 });
    expect(conn.state).toBe("PeerClosed");
    expectSpecTransitions(conn);
    expect(conn.fromHost.length).toBe(0);
    // Nothing left to send, so no CREDIT_REQUEST for it either.
    expect(drain(conn)).toEqual([]);
    expect(calls.hostData).toBe(0);
    expect(conn.hostReadClosed).toBe(false);
  });

  it("SHUTDOWN(SEND) tells the host, which then reads an EOF [VSOCK-CONN-SHUTDOWN]", () => {
    const { conn, calls } = established();
    expect(conn.hostReadClosed).toBe(false);
    send(conn, VSOCK_OP_SHUTDOWN, { flags: VSOCK_FLAGS_SHUTDOWN_SEND });
    expect(conn.state).toBe("PeerClosed");
    expectSpecTransitions(conn);
    expect(calls.hostData).toBe(1);
    expect(conn.hostReadClosed).toBe(true);
  });
});

describe("VsockConnection.fromGuest after the host closed (LocalClosed)", () => {
  /** An established connection the host closed; its SHUTDOWN(RCV|SEND) to the guest is sent. */
  const localClosed = (): Rig => {
    const r = established();
    r.conn.hostClose(1);
    expect(r.conn.state).toBe("LocalClosed");
    expect(drain(r.conn).map((p) => p.op)).toEqual([VSOCK_OP_SHUTDOWN]);
    return r;
  };

  it("guest bytes are dropped but counted consumed: several buf_allocs in never overrun [VSOCK-CREDIT-OVERRUN VSOCK-CREDIT-FREE]", () => {
    const { conn, calls } = localClosed();
    for (let i = 0; i < 4; i++) send(conn, VSOCK_OP_RW, { len: BUF / 2 });
    expect(conn.state).toBe("LocalClosed");
    expect(conn.toHost.length).toBe(0);
    expect(calls.hostData).toBe(0);
    expect(conn.rxCnt).toBe(2 * BUF);
    expect(conn.fwdCnt).toBe(2 * BUF);
    expect(conn.unconsumed()).toBe(0);
  });

  for (const flags of [VSOCK_FLAGS_SHUTDOWN_RCV, VSOCK_FLAGS_SHUTDOWN_SEND]) {
    it(`a guest SHUTDOWN with one flag (${flags}) ends it with one RST [VSOCK-CONN-SHUTDOWN]`, () => {
      const { conn } = localClosed();
      send(conn, VSOCK_OP_SHUTDOWN, { flags });
      expectResetWithRst(conn, "PeerShutdown");
    });
  }
});

describe("VsockConnection.fromGuest: credit and wake-ups", () => {
  it("a reset connection ignores every later guest packet: no bytes for the host, nothing for the guest [VSOCK-CONN-RST]", () => {
    const { conn, calls } = established();
    send(conn, VSOCK_OP_RST);
    const before = { ...calls };
    send(conn, VSOCK_OP_RW, { len: 10 });
    send(conn, VSOCK_OP_CREDIT_REQUEST);
    expect(conn.rxCnt).toBe(0);
    expect(conn.toHost.length).toBe(0);
    expect(calls).toEqual(before);
    expect(drain(conn)).toEqual([]);
  });

  it("an RW with no bytes carries only credit: nothing for the host [VSOCK-CREDIT-FREE]", () => {
    const { conn, calls } = established();
    send(conn, VSOCK_OP_RW, { len: 0 });
    expect(conn.state).toBe("Established");
    expect(calls.hostData).toBe(0);
    expect(conn.toHost.length).toBe(0);
  });

  it("CREDIT_REQUEST is answered with a CREDIT_UPDATE, the connection put on the RX round [VSOCK-CREDIT-UPDATE]", () => {
    const { conn, calls } = established();
    const woken = calls.pendingRx;
    send(conn, VSOCK_OP_CREDIT_REQUEST);
    expect(calls.pendingRx).toBe(woken + 1);
    expect(drain(conn).map((p) => p.op)).toEqual([VSOCK_OP_CREDIT_UPDATE]);
  });

  it("a packet that changes nothing for the guest does not wake the RX round [VSOCK-CREDIT-UPDATE]", () => {
    const { conn, calls } = established();
    const woken = calls.pendingRx;
    send(conn, VSOCK_OP_CREDIT_UPDATE);
    expect(calls.pendingRx).toBe(woken);
    expect(drain(conn)).toEqual([]);
  });

  it("blocked on credit, the device asks once, and again only after the guest granted some [VSOCK-CREDIT-UPDATE VSOCK-CREDIT-LIMIT]", () => {
    const { conn } = established();
    send(conn, VSOCK_OP_CREDIT_UPDATE, { bufAlloc: 0 });
    conn.hostWrite(new Uint8Array(100).fill(9));
    expect(drain(conn).map((p) => p.op)).toEqual([VSOCK_OP_CREDIT_REQUEST]);
    // An update that grants nothing is not answered with another request (no ping-pong).
    send(conn, VSOCK_OP_CREDIT_UPDATE, { bufAlloc: 0 });
    expect(drain(conn)).toEqual([]);
    // Credit granted (these packets have no data room, so none is used), then taken back.
    send(conn, VSOCK_OP_CREDIT_UPDATE, { bufAlloc: 50 });
    expect(drain(conn)).toEqual([]);
    send(conn, VSOCK_OP_CREDIT_UPDATE, { bufAlloc: 0 });
    expect(drain(conn).map((p) => p.op)).toEqual([VSOCK_OP_CREDIT_REQUEST]);
    expect(conn.fromHost.length).toBe(100);
  });
});
