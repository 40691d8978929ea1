/**
 * Tests written for mutants of the host side and the guest-bound side of `VsockConnection`
 * (accept, hostWrite, forwarded, hostShutdown, hostClose, hasPendingRx, toGuest) that Stryker
 * reported as Timeout but that no test killed when re-checked one by one (issue #19). Each
 * test drives the connection through its public methods and checks what the guest would get
 * (`toGuest`), what the device is told (`hasPendingRx`, the listener's `pendingRx` calls) and
 * the connection's state.
 */
import { describe, expect, it } from "vitest";
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
import { PROFILES } from "../../spec/vsock.ts";
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";
import { GuestMemory } from "../memory/guest-memory.ts";
import { ListChain } from "./chain.ts";
import { DEFAULT_CONN_OPTIONS, VsockConnection, type ConnOptions } from "./connection.ts";
import { VsockHeaderView } from "./header.ts";
import { VsockPacket } from "./packet.ts";

/** Small numbers so that a few guest bytes cross the credit-update threshold. */
const OPTIONS: ConnOptions = { ...DEFAULT_CONN_OPTIONS, bufAlloc: 100, creditUpdateThreshold: 40 };

interface Rig {
  readonly c: VsockConnection;
  /** Calls of the listener's pendingRx so far. */
  readonly rx: () => number;
}

const rig = (initiator: "host" | "guest"): Rig => {
  let rx = 0;
  const c = new VsockConnection(
    1024,
    5000,
    3n,
    initiator,
    OPTIONS,
    {
      pendingRx: () => void rx++,
      established: () => undefined,
      hostData: () => undefined,
    },
    0,
  );
  return { c, rx: () => rx };
};

/** One guest packet (no data buffer: RW bytes read as zeros), with the guest's buf_alloc. */
const send = (
  c: VsockConnection,
  op: number,
  f: { flags?: number; len?: number; bufAlloc?: number } = {},
): void =>
  c.fromGuest(
    new VsockHeaderView()
      .setOp(op)
      .setFlags(f.flags ?? 0)
      .setLen(f.len ?? 0)
      .setBufAlloc(f.bufAlloc ?? 4096)
      .setFwdCnt(0),
    null,
  );

/**
 * Everything the device sends the guest now into packets with no data room, checking at each
 * step that hasPendingRx says there is a packet exactly when toGuest writes one.
 */
const drain = (c: VsockConnection): { op: number; flags: number; fwdCnt: number }[] => {
  const out: { op: number; flags: number; fwdCnt: number }[] = [];
  const pkt = new VsockPacket();
  for (let i = 0; i < 16; i++) {
    const pending = c.hasPendingRx();
    const n = c.toGuest(pkt);
    expect(n > 0).toBe(pending);
    if (n === 0) return out;
    out.push({ op: pkt.header.op(), flags: pkt.header.flags(), fwdCnt: pkt.header.fwdCnt() });
  }
  throw new Error("more than 16 packets for the guest");
};
const opsOf = (c: VsockConnection): number[] => drain(c).map((p) => p.op);

/** A guest-initiated connection the host accepted (RESPONSE sent), with the guest's buf_alloc. */
const accepted = (bufAlloc = 4096): Rig => {
  const r = rig("guest");
  r.c.fromPeer(bufAlloc, 0); // the muxer took the guest's REQUEST
  r.c.accept();
  expect(opsOf(r.c)).toEqual([VSOCK_OP_RESPONSE]);
  expect(r.c.state).toBe("Established");
  return r;
};

describe("VsockConnection, host side", () => {
  it("accept on an open connection sends no second RESPONSE and wakes nothing [VSOCK-CONN-HANDSHAKE]", () => {
    const { c, rx } = accepted();
    const before = rx();
    c.accept();
    expect(rx()).toBe(before);
    expect(opsOf(c)).toEqual([]);
  });

  it("host bytes after the host's EOF, its close, a reset or the guest's SHUTDOWN(RCV) are dropped [VSOCK-CONN-SHUTDOWN]", () => {
    const eof = accepted();
    eof.c.hostShutdown();
    const a = eof.rx();
    eof.c.hostWrite(new Uint8Array(10));
    expect([eof.c.fromHost.length, eof.rx()]).toEqual([0, a]);

    const closed = accepted();
    closed.c.hostClose(0);
    expect(closed.c.state).toBe("LocalClosed");
    const b = closed.rx();
    closed.c.hostWrite(new Uint8Array(10));
    expect([closed.c.fromHost.length, closed.rx()]).toEqual([0, b]);

    const reset = accepted();
    send(reset.c, VSOCK_OP_RST);
    expect(reset.c.state).toBe("Killed");
    const d = reset.rx();
    reset.c.hostWrite(new Uint8Array(10));
    expect([reset.c.fromHost.length, reset.rx()]).toEqual([0, d]);

    const rcv = accepted();
    send(rcv.c, VSOCK_OP_SHUTDOWN, { flags: VSOCK_FLAGS_SHUTDOWN_RCV });
    const e = rcv.rx();
    rcv.c.hostWrite(new Uint8Array(10));
    expect([rcv.c.fromHost.length, rcv.rx()]).toEqual([0, e]);
  });

  it("host bytes before accept wait for the RESPONSE: nothing goes to the guest in PeerInit [VSOCK-CONN-HANDSHAKE]", () => {
    const { c } = rig("guest");
    c.fromPeer(0, 0);
    c.hostWrite(new Uint8Array(10));
    expect(opsOf(c)).toEqual([]);
    expect(c.fromHost.length).toBe(10);
  });

  it("host bytes before accept, with credit and an RX buffer with room, still wait for the RESPONSE [VSOCK-CONN-HANDSHAKE]", () => {
    const { c } = rig("guest");
    c.fromPeer(4096, 0);
    c.hostWrite(new Uint8Array(10));
    const rx = (): VsockPacket => {
      const pkt = new VsockPacket();
      const memory = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x1000) }]);
      const descs = [
        { addr: 0x100, len: 44, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT },
        { addr: 0x200, len: 64, flags: VIRTQ_DESC_F_WRITE },
      ];
      expect(pkt.assembleRx(new ListChain(memory, descs), PROFILES.virtio)).toBeNull();
      return pkt;
    };
    expect(c.hasPendingRx()).toBe(false);
    expect(c.toGuest(rx())).toBe(0);
    c.accept();
    const ops: number[] = [];
    for (let pkt = rx(); c.toGuest(pkt) > 0; pkt = rx()) ops.push(pkt.header.op(), pkt.header.len());
    expect(ops).toEqual([VSOCK_OP_RESPONSE, 0, VSOCK_OP_RW, 10]);
  });

  it("with credit but no data room in the packet, host bytes send nothing, not even a CREDIT_REQUEST [VSOCK-CREDIT-LIMIT]", () => {
    const { c } = accepted(4096);
    c.hostWrite(new Uint8Array(10));
    expect(c.hasPendingRx()).toBe(true);
    expect(c.toGuest(new VsockPacket())).toBe(0);
    expect(c.fromHost.length).toBe(10);
  });

  it("after the guest's SHUTDOWN(SEND) the host may still send: blocked on credit, it asks for some [VSOCK-CONN-SHUTDOWN VSOCK-CREDIT-UPDATE]", () => {
    const { c } = accepted(0);
    send(c, VSOCK_OP_SHUTDOWN, { flags: VSOCK_FLAGS_SHUTDOWN_SEND, bufAlloc: 0 });
    expect(c.state).toBe("PeerClosed");
    c.hostWrite(new Uint8Array(10));
    expect(opsOf(c)).toEqual([VSOCK_OP_CREDIT_REQUEST]);
    c.hostShutdown();
    expect(opsOf(c)).toEqual([]);
  });

  it("forwarded sends a CREDIT_UPDATE only once the guest's view of our free space is below the threshold [VSOCK-CREDIT-UPDATE]", () => {
    const at = accepted();
    send(at.c, VSOCK_OP_RW, { len: 60 });
    at.c.takeToHost();
    const before = at.rx();
    at.c.forwarded(60); // the guest thinks 100 - 60 = 40 free: not below 40
    expect(at.rx()).toBe(before);
    expect(opsOf(at.c)).toEqual([]);

    const below = accepted();
    send(below.c, VSOCK_OP_RW, { len: 61 });
    below.c.takeToHost();
    below.c.forwarded(61);
    expect(drain(below.c)).toEqual([{ op: VSOCK_OP_CREDIT_UPDATE, flags: 0, fwdCnt: 61 }]);
  });

  it("forwarded of zero or fewer bytes counts nothing and sends nothing [VSOCK-CREDIT-FREE VSOCK-CREDIT-UPDATE]", () => {
    const { c, rx } = accepted();
    send(c, VSOCK_OP_RW, { len: 61 }); // the guest thinks 39 free: below the threshold
    c.takeToHost();
    const before = rx();
    c.forwarded(0);
    c.forwarded(-1);
    expect(rx()).toBe(before);
    expect(opsOf(c)).toEqual([]);
    c.forwarded(5);
    expect(drain(c)).toEqual([{ op: VSOCK_OP_CREDIT_UPDATE, flags: 0, fwdCnt: 5 }]);
  });

  it("forwarded on a reset connection wakes nothing [VSOCK-CONN-RST]", () => {
    const { c, rx } = accepted();
    send(c, VSOCK_OP_RW, { len: 61 });
    c.takeToHost();
    send(c, VSOCK_OP_RST);
    const before = rx();
    c.forwarded(61);
    expect(rx()).toBe(before);
    expect(opsOf(c)).toEqual([]);
  });

  it("hostShutdown sends one SHUTDOWN(SEND), once, and none on a reset connection [VSOCK-CONN-SHUTDOWN]", () => {
    const { c, rx } = accepted();
    c.hostShutdown();
    expect(c.hostEof).toBe(true);
    expect(drain(c)).toEqual([{ op: VSOCK_OP_SHUTDOWN, flags: VSOCK_FLAGS_SHUTDOWN_SEND, fwdCnt: 0 }]);
    const before = rx();
    c.hostShutdown();
    expect(rx()).toBe(before);
    expect(opsOf(c)).toEqual([]);

    const reset = accepted();
    send(reset.c, VSOCK_OP_RST);
    const r = reset.rx();
    reset.c.hostShutdown();
    expect([reset.c.hostEof, reset.rx()]).toEqual([false, r]);
    expect(opsOf(reset.c)).toEqual([]);
  });
});

describe("VsockConnection, host close", () => {
  it("an orderly close (EOF, then close) sends the host's bytes' SHUTDOWN(SEND) first, then closes [VSOCK-CONN-SHUTDOWN]", () => {
    const { c } = accepted(0);
    c.hostWrite(new Uint8Array(10));
    c.hostShutdown();
    c.hostClose(500);
    expect(c.state).toBe("Established");
    expect(c.fromHost.length).toBe(10);
    expect(opsOf(c)).toEqual([VSOCK_OP_CREDIT_REQUEST]);
    // The guest reads nothing more: the close takes effect only once its bytes are out.
    expect(c.state).toBe("Established");
  });

  it("an orderly close with nothing queued: SHUTDOWN(SEND), then SHUTDOWN(RCV|SEND) and the close's deadline [VSOCK-CONN-SHUTDOWN VSOCK-CONN-TIMEOUT]", () => {
    const { c } = accepted();
    c.hostShutdown();
    c.hostClose(500);
    expect(c.state).toBe("Established");
    expect(drain(c).map((p) => [p.op, p.flags])).toEqual([
      [VSOCK_OP_SHUTDOWN, VSOCK_FLAGS_SHUTDOWN_SEND],
      [VSOCK_OP_SHUTDOWN, VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND],
    ]);
    expect(c.state).toBe("LocalClosed");
    c.tick(500 + OPTIONS.shutdownTimeoutMs - 1);
    expect(c.state).toBe("LocalClosed");
    c.tick(500 + OPTIONS.shutdownTimeoutMs);
    expect(c.resetReason).toBe("Timeout");
  });

  it("a second host close keeps the first one's deadline; a close of a reset connection does nothing [VSOCK-CONN-TIMEOUT VSOCK-CONN-RST]", () => {
    const { c, rx } = accepted();
    c.hostClose(100);
    expect(opsOf(c)).toEqual([VSOCK_OP_SHUTDOWN]);
    const before = rx();
    c.hostClose(900);
    expect([c.state, c.deadline, rx()]).toEqual(["LocalClosed", 100 + OPTIONS.shutdownTimeoutMs, before]);
    expect(opsOf(c)).toEqual([]);

    const reset = accepted();
    send(reset.c, VSOCK_OP_RST);
    const r = reset.rx();
    reset.c.hostClose(100);
    expect([reset.c.state, reset.c.resetReason, reset.c.deadline, reset.rx()]).toEqual([
      "Killed",
      "Rst",
      0,
      r,
    ]);
    expect(opsOf(reset.c)).toEqual([]);
  });

  it("a host close during the handshake resets with one RST, reason Rst [VSOCK-CONN-HANDSHAKE VSOCK-CONN-RST]", () => {
    const guest = rig("guest");
    guest.c.fromPeer(4096, 0);
    guest.c.hostClose(0);
    expect([guest.c.state, guest.c.resetReason]).toEqual(["Killed", "Rst"]);
    expect(opsOf(guest.c)).toEqual([VSOCK_OP_RST]);

    const host = rig("host");
    expect(opsOf(host.c)).toEqual([VSOCK_OP_REQUEST]);
    host.c.hostClose(0);
    expect([host.c.state, host.c.resetReason]).toEqual(["Killed", "Rst"]);
    expect(opsOf(host.c)).toEqual([VSOCK_OP_RST]);
  });

  it("a close after the guest's SHUTDOWN(SEND) resets with one RST, reason LocalShutdown [VSOCK-CONN-SHUTDOWN]", () => {
    const { c } = accepted();
    send(c, VSOCK_OP_SHUTDOWN, { flags: VSOCK_FLAGS_SHUTDOWN_SEND });
    c.hostClose(0);
    expect([c.state, c.resetReason]).toEqual(["Killed", "LocalShutdown"]);
    expect(opsOf(c)).toEqual([VSOCK_OP_RST]);
  });

  it("a reset by the guest leaves nothing to send: no RST back, no RW [VSOCK-CONN-RST]", () => {
    const { c } = accepted();
    c.hostWrite(new Uint8Array(10));
    send(c, VSOCK_OP_RST);
    expect(opsOf(c)).toEqual([]);
    expect(c.toGuest(new VsockPacket())).toBe(0);
  });
});
