import { describe, expect, it } from "vitest";
import { ProtocolEndpoint } from "./protocol.ts";
import {
  PacketType,
  hasPause,
  negotiate,
  parseVersionMagic,
  versionMagic,
  versionMagicBytes,
  type Address,
  type Notice,
  type PacketType as PacketTypeT,
  type Version,
} from "../../spec/usb-vsock.ts";

const A: Address = { deviceCid: 3, hostCid: 2, devicePort: 5, hostPort: 7 };
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

interface Sent {
  type: PacketTypeT;
  address: Address;
  payload: Uint8Array | undefined;
}

const endpoint = (role: "host" | "device", preferred: Version = { v: 2, nonce: 0 }) => {
  const sent: Sent[] = [];
  const notices: Notice[] = [];
  const ep = new ProtocolEndpoint(role, preferred, 100, {
    emit: (type, address, payload) => sent.push({ type, address, payload }),
    notice: (n) => notices.push(n),
  });
  return { ep, sent, notices };
};

/** Delivers everything `from` sent so far to `to`, in order. */
const deliver = (from: { sent: Sent[] }, to: { ep: ProtocolEndpoint }): void => {
  for (const p of from.sent.splice(0)) {
    to.ep.receive(
      p.type,
      p.address.deviceCid,
      p.address.hostCid,
      p.address.devicePort,
      p.address.hostPort,
      p.payload ?? new Uint8Array(0),
    );
  }
};

const synced = (hv: Version = { v: 2, nonce: 0 }, dv: Version = { v: 2, nonce: 0 }) => {
  const h = endpoint("host", hv);
  const d = endpoint("device", dv);
  h.ep.startSync(7);
  deliver(h, d);
  deliver(d, h);
  deliver(h, d);
  return { h, d };
};

describe("usb-vsock protocol versions", () => {
  it("magic strings round-trip; hex nonce in either case; anything else is invalid [USB-SYNC-VERSION]", () => {
    expect(versionMagic({ v: 0 })).toBe("vsock:0");
    expect(versionMagic({ v: 1 })).toBe("vsock:1");
    expect(versionMagic({ v: 2, nonce: 0 })).toBe("vsock:2:0");
    expect(versionMagic({ v: 2, nonce: 0xdeadbeef })).toBe("vsock:2:deadbeef");
    for (const v of [{ v: 0 }, { v: 1 }, { v: 2, nonce: 0 }, { v: 2, nonce: 0xdeadbeef }] as Version[])
      expect(parseVersionMagic(versionMagicBytes(v))).toEqual(v);
    expect(parseVersionMagic(bytes("vsock:2:DEADBEEF"))).toEqual({ v: 2, nonce: 0xdeadbeef });
    expect(parseVersionMagic(bytes("vsock:2:00000001"))).toEqual({ v: 2, nonce: 1 });
    for (const bad of [
      "",
      "vsock",
      "vsock:3",
      "vsock:2:invalid",
      "vsock:2:",
      "vsock:2:100000000",
      "vsock:0 ",
    ])
      expect(parseVersionMagic(bytes(bad))).toBeUndefined();
  });

  it("negotiation picks the lower version and keeps the host's nonce [USB-SYNC-NEGOTIATE USB-PAUSE]", () => {
    const v2 = { v: 2, nonce: 0 } as const;
    const host2 = { v: 2, nonce: 0x12345678 } as const;
    expect(negotiate(v2, host2)).toEqual(host2);
    expect(negotiate(v2, { v: 1 })).toEqual({ v: 1 });
    expect(negotiate(v2, { v: 0 })).toEqual({ v: 0 });
    expect(negotiate({ v: 1 }, host2)).toEqual({ v: 1 });
    expect(negotiate({ v: 1 }, { v: 0 })).toEqual({ v: 0 });
    expect(negotiate({ v: 0 }, host2)).toEqual({ v: 0 });
    expect([hasPause({ v: 0 }), hasPause({ v: 1 }), hasPause(v2)]).toEqual([false, true, true]);
  });
});

describe("usb-vsock protocol state machine", () => {
  it("a v2 host ignores a reply with a stale nonce [USB-SYNC-NONCE]", () => {
    const h = endpoint("host");
    h.ep.startSync(1);
    expect(h.ep.receive(PacketType.Sync, 0, 0, 0, 0, bytes("vsock:2:2"))).toBeUndefined();
    expect(h.ep.sync.tag).toBe("AwaitingReply");
    h.ep.receive(PacketType.Sync, 0, 0, 0, 0, bytes("vsock:2:1"));
    expect(h.ep.sync).toEqual({ tag: "Synced", version: { v: 2, nonce: 1 } });
  });

  it("a device answers nothing to an invalid Sync; a host gives up on an invalid reply [USB-SYNC-VERSION]", () => {
    const d = endpoint("device");
    expect(d.ep.receive(PacketType.Sync, 0, 0, 0, 0, bytes("vsock:9"))).toEqual({ _tag: "InvalidSyncMagic" });
    expect(d.sent).toEqual([]);
    const h = endpoint("host");
    h.ep.startSync(1);
    expect(h.ep.receive(PacketType.Sync, 0, 0, 0, 0, bytes("nonsense"))).toEqual({
      _tag: "InvalidSyncMagic",
    });
    expect(h.ep.sync.tag).toBe("Failed");
  });

  it("packets before Sync are dropped as NotSynced [USB-SYNC-FIRST]", () => {
    const d = endpoint("device");
    expect(d.ep.receive(PacketType.Connect, 3, 2, 5, 7, new Uint8Array(0))).toEqual({ _tag: "NotSynced" });
    expect(d.ep.connection(A)).toBeUndefined();
    expect(d.ep.dropped).toBe(1);
  });

  it("both ends connecting the same address at once end with neither holding it [USB-CONN-SIMULTANEOUS]", () => {
    const { h, d } = synced();
    h.ep.connect(A);
    d.ep.connect(A);
    deliver(h, d);
    deliver(d, h);
    deliver(h, d);
    deliver(d, h);
    expect(h.ep.connection(A)).toBeUndefined();
    expect(d.ep.connection(A)).toBeUndefined();
  });

  it("connect on an existing or zero address is refused locally [USB-CONN-CONNECT USB-CONN-ADDR]", () => {
    const { h } = synced();
    expect(h.ep.connect(A)).toBeUndefined();
    expect(h.ep.connect(A)).toEqual({ _tag: "ConnectionExists", address: A });
    expect(h.ep.connect({ deviceCid: 0, hostCid: 0, devicePort: 0, hostPort: 0 })).toEqual({
      _tag: "ControlAddress",
    });
    expect(h.ep.accept(A)).toEqual({
      _tag: "WrongState",
      address: A,
      state: "ConnectingOutgoing",
      expected: "ConnectingIncoming",
    });
  });

  it("Pause is not part of vsock:0 [USB-PAUSE]", () => {
    const { h, d } = synced({ v: 0 }, { v: 0 });
    h.ep.connect(A);
    deliver(h, d);
    d.ep.accept(A);
    deliver(d, h);
    expect(h.ep.receive(PacketType.Pause, 3, 2, 5, 7, Uint8Array.of(1))).toEqual({
      _tag: "UnsupportedPacket",
      type: PacketType.Pause,
    });
    h.ep.send(A, new Uint8Array(500));
    deliver(h, d);
    expect(d.sent).toEqual([]);
  });

  // Found by properties/usb-vsock-protocol.test.ts: with no connection generation on the
  // wire, reopening an address while a teardown for it is in flight leaves it half open.
  it("stale Accept: reopening before the old Accept arrives leaves the address half open [USB-CONN-ADDR-REUSE]", () => {
    const { h, d } = synced();
    h.ep.connect(A);
    deliver(h, d);
    d.ep.accept(A); // Accept in flight to the host
    h.ep.reset(A);
    h.ep.connect(A); // reopened while the old Accept is in flight
    deliver(d, h);
    deliver(h, d);
    expect(h.ep.connection(A)?.state).toBe("Connected");
    expect(d.ep.connection(A)?.state).toBe("ConnectingIncoming");
  });

  it("stale Reset: a peer's answer to the old connection refuses the new one [USB-CONN-ADDR-REUSE]", () => {
    const { h, d } = synced();
    d.ep.connect(A);
    d.ep.reset(A);
    // Only the Connect reaches the host, which now holds A as ConnectingIncoming.
    const inFlight = d.sent.splice(1);
    deliver(d, h);
    d.sent.push(...inFlight);
    d.ep.connect(A); // reopened while its own Reset is in flight
    h.ep.reset(A); // the host drops the old request: its Reset crosses the new Connect
    deliver(d, h);
    deliver(h, d);
    expect(h.ep.connection(A)?.state).toBe("ConnectingIncoming");
    expect(d.ep.connection(A)).toBeUndefined();
  });

  it("Echo is answered with EchoReply carrying the same payload [USB-ECHO]", () => {
    const { h, d } = synced();
    h.ep.echo(bytes("abc"));
    deliver(h, d);
    expect(d.sent).toEqual([
      {
        type: PacketType.EchoReply,
        address: { deviceCid: 0, hostCid: 0, devicePort: 0, hostPort: 0 },
        payload: bytes("abc"),
      },
    ]);
    deliver(d, h);
    expect(h.notices.at(-1)).toEqual({ _tag: "EchoReply", payload: bytes("abc") });
  });
});
