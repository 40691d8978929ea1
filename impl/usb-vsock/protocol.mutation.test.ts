/**
 * Tests written to kill mutants that survived `npm run mutate -- usb-vsock` in protocol.ts:
 * addresses that are zero in some fields but not all (never the control address), packets
 * that arrive in the wrong state, empty payloads, pause and resume across partial reads,
 * the Echo reply's own copy, the sync states a wrong reply leaves, and the drop count.
 */
import { describe, expect, it } from "vitest";
import {
  PacketType,
  versionMagicBytes,
  type Address,
  type Notice,
  type PacketType as PacketTypeT,
  type Version,
} from "../../spec/usb-vsock.ts";
import { UsbPacketBuilder } from "./packet.ts";
import { ProtocolEndpoint } from "./protocol.ts";

interface Sent {
  readonly type: PacketTypeT;
  readonly address: Address;
  readonly payload: Uint8Array | undefined;
}
const endpoint = (role: "host" | "device", preferred: Version = { v: 2, nonce: 0 }, highWater = 100) => {
  const sent: Sent[] = [];
  const notices: Notice[] = [];
  const ep = new ProtocolEndpoint(role, preferred, highWater, {
    emit: (type, address, payload) => sent.push({ type, address, payload }),
    notice: (n) => notices.push(n),
  });
  return { ep, sent, notices };
};
type End = ReturnType<typeof endpoint>;
const deliver = (from: End, to: End): void => {
  for (const p of from.sent.splice(0)) {
    const { deviceCid, hostCid, devicePort, hostPort } = p.address;
    to.ep.receive(p.type, deviceCid, hostCid, devicePort, hostPort, p.payload ?? new Uint8Array(0));
  }
};
/** A synced host and device (both preferring `v`), their queues emptied. */
const pair = (v: Version = { v: 2, nonce: 0 }, highWater = 100): { h: End; d: End } => {
  const h = endpoint("host", v, highWater);
  const d = endpoint("device", v, highWater);
  h.ep.startSync(7);
  deliver(h, d);
  deliver(d, h);
  deliver(h, d);
  expect([h.ep.sync.tag, d.ep.sync.tag]).toEqual(["Synced", "Synced"]);
  h.notices.length = 0;
  d.notices.length = 0;
  return { h, d };
};
const ZERO: Address = { deviceCid: 0, hostCid: 0, devicePort: 0, hostPort: 0 };
const A: Address = { deviceCid: 3, hostCid: 2, devicePort: 5, hostPort: 7 };

/** A synced pair with A connected (host to device), queues and notices emptied. */
const connected = (v?: Version, highWater?: number): { h: End; d: End } => {
  const { h, d } = pair(v, highWater);
  expect(h.ep.connect(A)).toBeUndefined();
  deliver(h, d);
  expect(d.ep.accept(A)).toBeUndefined();
  deliver(d, h);
  h.notices.length = 0;
  d.notices.length = 0;
  return { h, d };
};
const recv = (e: End, type: PacketTypeT, a: Address, payload: Uint8Array = new Uint8Array(0)) =>
  e.ep.receive(type, a.deviceCid, a.hostCid, a.devicePort, a.hostPort, payload);

/** Every address that is zero in some fields and not in all (15 - 1 = 14 kinds), plus one with none. */
const partlyZero: readonly Address[] = Array.from({ length: 15 }, (_, m) => ({
  deviceCid: m & 1 ? 9 : 0,
  hostCid: m & 2 ? 9 : 0,
  devicePort: m & 4 ? 9 : 0,
  hostPort: m & 8 ? 9 : 0,
})).slice(1);

describe("only the all-zero address is the control address [USB-CONN-ADDR USB-CONTROL-STREAM]", () => {
  it("connect accepts an address zero in some fields", () => {
    const { h } = pair();
    for (const a of partlyZero) expect(h.ep.connect(a)).toBeUndefined();
    expect(h.sent.map((p) => p.type)).toEqual(partlyZero.map(() => PacketType.Connect));
    expect(h.ep.connect(ZERO)).toEqual({ _tag: "ControlAddress" });
  });

  it("send on such an address without a connection is NoSuchConnection, not control data", () => {
    const { h } = pair();
    for (const a of partlyZero) {
      expect(h.ep.canSend(a)).toEqual({ _tag: "NoSuchConnection", address: a });
      expect(h.ep.send(a, Uint8Array.of(1))).toEqual({ _tag: "NoSuchConnection", address: a });
    }
    expect(h.sent).toEqual([]);
    expect(h.ep.send(ZERO, Uint8Array.of(1))).toBeUndefined();
    expect(h.sent.map((p) => p.type)).toEqual([PacketType.Data]);
  });

  it("Data received on such an address without a connection is unexpected, not control data", () => {
    const { d } = pair();
    for (const a of partlyZero)
      expect(recv(d, PacketType.Data, a, Uint8Array.of(1))).toEqual({
        _tag: "UnexpectedPacket",
        type: PacketType.Data,
        address: a,
      });
    expect(d.notices).toEqual([]);
    expect(d.ep.dropped).toBe(partlyZero.length);
  });

  it("a non-Data packet on the control address is unexpected and opens nothing", () => {
    const { d } = pair();
    for (const type of [PacketType.Connect, PacketType.Accept, PacketType.Finish, PacketType.Reset])
      expect(recv(d, type, ZERO, Uint8Array.of(1))).toEqual({
        _tag: "UnexpectedPacket",
        type,
        address: ZERO,
      });
    expect(d.notices).toEqual([]);
    expect(d.sent).toEqual([]);
    expect([...d.ep.connections()]).toEqual([]);
  });
});

describe("empty payloads [USB-CONN-DATA USB-CONTROL-STREAM]", () => {
  it("sending nothing emits nothing; receiving empty Data or control data notifies nothing", () => {
    const { h, d } = connected();
    expect(h.ep.send(A, new Uint8Array(0))).toBeUndefined();
    expect(h.ep.send(ZERO, new Uint8Array(0))).toBeUndefined();
    expect(h.sent).toEqual([]);
    expect(recv(d, PacketType.Data, A)).toBeUndefined();
    expect(recv(d, PacketType.Data, ZERO)).toBeUndefined();
    expect(d.notices).toEqual([]);
    expect(d.ep.connection(A)?.unread).toBe(0);
    expect(d.ep.dropped).toBe(0);
  });
});

describe("packets in the wrong state [USB-CONN-STATES USB-CONN-ACCEPT USB-CONN-FINISH USB-PAUSE]", () => {
  it("a second Connect for an incoming connection is unexpected and leaves it as it was", () => {
    const { d } = pair();
    expect(recv(d, PacketType.Connect, A)).toBeUndefined();
    expect(recv(d, PacketType.Connect, A)).toEqual({
      _tag: "UnexpectedPacket",
      type: PacketType.Connect,
      address: A,
    });
    expect(d.ep.connection(A)?.state).toBe("ConnectingIncoming");
    expect(d.sent).toEqual([]);
    expect(d.notices).toEqual([{ _tag: "Incoming", address: A }]);
  });

  it("Accept on a connected address is unexpected and notifies nothing", () => {
    const { h } = connected();
    expect(recv(h, PacketType.Accept, A)).toEqual({
      _tag: "UnexpectedPacket",
      type: PacketType.Accept,
      address: A,
    });
    expect(h.notices).toEqual([]);
    expect(h.ep.connection(A)?.state).toBe("Connected");
  });

  it("Finish on a connection still opening drops it without a Reset or a Closed notice", () => {
    const { h } = pair();
    expect(h.ep.connect(A)).toBeUndefined();
    h.sent.length = 0;
    expect(recv(h, PacketType.Finish, A)).toEqual({
      _tag: "UnexpectedPacket",
      type: PacketType.Finish,
      address: A,
    });
    expect(h.sent).toEqual([]);
    expect(h.notices).toEqual([]);
    expect(h.ep.connection(A)).toBeUndefined();
  });

  it("Pause on a connection not yet connected, or with a payload other than one byte, is unexpected", () => {
    const { h, d } = pair();
    expect(h.ep.connect(A)).toBeUndefined();
    deliver(h, d);
    expect(recv(d, PacketType.Pause, A, Uint8Array.of(1))).toEqual({
      _tag: "UnexpectedPacket",
      type: PacketType.Pause,
      address: A,
    });
    expect(d.ep.accept(A)).toBeUndefined();
    d.notices.length = 0;
    for (const p of [new Uint8Array(0), Uint8Array.of(1, 1)])
      expect(recv(d, PacketType.Pause, A, p)).toEqual({
        _tag: "UnexpectedPacket",
        type: PacketType.Pause,
        address: A,
      });
    expect(d.notices).toEqual([]);
    expect(d.ep.connection(A)?.pausedByPeer).toBe(false);
    expect(d.ep.dropped).toBe(3);
  });
});

describe("pause and resume across partial reads [USB-PAUSE]", () => {
  it("the peer is resumed only when everything received has been consumed", () => {
    const { d } = connected({ v: 1 }, 4);
    expect(recv(d, PacketType.Data, A, new Uint8Array(10))).toBeUndefined();
    expect(d.sent.map((p) => [p.type, [...(p.payload ?? [])]])).toEqual([[PacketType.Pause, [1]]]);
    d.sent.length = 0;
    expect(d.ep.consumed(A, 3)).toBeUndefined();
    expect(d.ep.connection(A)?.unread).toBe(7);
    expect(d.sent).toEqual([]);
    expect(d.ep.consumed(A, 7)).toBeUndefined();
    expect(d.ep.connection(A)?.unread).toBe(0);
    expect(d.sent.map((p) => [p.type, [...(p.payload ?? [])]])).toEqual([[PacketType.Pause, [0]]]);
    expect(d.ep.consumed({ ...A, hostPort: 99 }, 1)).toEqual({
      _tag: "NoSuchConnection",
      address: { ...A, hostPort: 99 },
    });
  });
});

describe("Echo [USB-ECHO]", () => {
  it("the EchoReply's payload is its own copy, not a view of the received transfer", () => {
    const { d } = pair();
    const b = new UsbPacketBuilder(new Uint8Array(64));
    expect(b.write(PacketType.Echo, ZERO, Uint8Array.of(1, 2, 3))).toBeUndefined();
    const transfer = b.take()!;
    expect(d.ep.receiveTransfer(transfer)).toBeUndefined();
    transfer.fill(0);
    expect(d.sent.map((p) => [p.type, [...(p.payload ?? [])]])).toEqual([[PacketType.EchoReply, [1, 2, 3]]]);
    expect(d.ep.dropped).toBe(0);
  });
});

describe("sync states [USB-SYNC-VERSION USB-SYNC-NEGOTIATE USB-SYNC-NONCE USB-SYNC-FIRST]", () => {
  it("only a host starts a sync", () => {
    const d = endpoint("device");
    expect(d.ep.startSync(1)).toEqual({ _tag: "NotHost" });
    expect(d.sent).toEqual([]);
    expect(d.ep.sync).toEqual({ tag: "Unsynced" });
  });

  it("a device waiting for the host's confirmation has no version and takes no other packet", () => {
    const d = endpoint("device", { v: 1 });
    expect(recv(d, PacketType.Sync, ZERO, versionMagicBytes({ v: 2, nonce: 5 }))).toBeUndefined();
    expect(d.ep.sync).toEqual({ tag: "AwaitingConfirm", version: { v: 1 } });
    expect(d.ep.version).toBeUndefined();
    d.sent.length = 0;
    expect(recv(d, PacketType.Echo, ZERO, Uint8Array.of(1))).toEqual({ _tag: "NotSynced" });
    expect(d.sent).toEqual([]);
  });

  it("a device given an invalid Sync goes back to Unsynced", () => {
    const { d } = pair();
    expect(recv(d, PacketType.Sync, ZERO, Uint8Array.of(0x7a))).toEqual({ _tag: "InvalidSyncMagic" });
    expect(d.ep.sync).toEqual({ tag: "Unsynced" });
  });

  it("a host fails on a reply of a higher version than it sent, and ignores a v2 reply to v1", () => {
    const h0 = endpoint("host", { v: 0 });
    expect(h0.ep.startSync(1)).toBeUndefined();
    expect(recv(h0, PacketType.Sync, ZERO, versionMagicBytes({ v: 1 }))).toEqual({
      _tag: "InvalidSyncMagic",
    });
    expect(h0.ep.sync).toEqual({ tag: "Failed" });
    const h1 = endpoint("host", { v: 1 });
    expect(h1.ep.startSync(1)).toBeUndefined();
    h1.sent.length = 0;
    expect(recv(h1, PacketType.Sync, ZERO, versionMagicBytes({ v: 2, nonce: 1 }))).toBeUndefined();
    expect(h1.ep.sync).toEqual({ tag: "AwaitingReply", sent: { v: 1 } });
    expect(h1.sent).toEqual([]);
  });

  it("a host that is not waiting for a reply answers a Sync with NotSynced", () => {
    const h = endpoint("host");
    expect(recv(h, PacketType.Sync, ZERO, versionMagicBytes({ v: 1 }))).toEqual({ _tag: "NotSynced" });
    expect(h.ep.sync).toEqual({ tag: "Unsynced" });
    expect(h.ep.dropped).toBe(1);
  });
});
