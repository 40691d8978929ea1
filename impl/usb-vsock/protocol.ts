/**
 * The vsock-over-USB connection protocol for one endpoint (host or device), as a plain
 * synchronous state machine: requests and received packets change the connection table
 * and emit packets and notices through a sink, in the order they happen. The Effect
 * endpoint (endpoint.ts) drives it; properties drive it directly and compare it with
 * spec/usb-vsock.ts `step`, which it must agree with event by event.
 *
 * Rules: USB-SYNC-*, USB-CONN-*, USB-CONTROL-STREAM, USB-PAUSE, USB-ECHO.
 */
import {
  PacketType,
  addressKey,
  hasPause,
  negotiate,
  nextNonce,
  parseVersionMagic,
  sameVersion,
  versionMagicBytes,
  ZERO_ADDRESS,
  type Address,
  type ConnState,
  type Notice,
  type ProtocolError,
  type Role,
  type SyncState,
  type Version,
  type PacketType as PacketTypeT,
} from "../../spec/usb-vsock.ts";
import { VsockPacketIterator, type ParseError } from "./packet.ts";

export type { ConnState, Notice, ProtocolError, Role, SyncState, Version };

export interface ProtocolSink {
  /** A packet to send, in order. `payload` is owned by the receiver of the call. */
  emit(type: PacketTypeT, address: Address, payload: Uint8Array | undefined): void;
  /** Something the application must see. Data/Control/EchoReply payloads are views: copy to keep. */
  notice(n: Notice): void;
}

export interface ConnInfo {
  readonly address: Address;
  state: ConnState;
  finished: boolean;
  unread: number;
  pausedPeer: boolean;
  pausedByPeer: boolean;
}

export class ProtocolEndpoint {
  private syncState: SyncState = { tag: "Unsynced" };
  private readonly conns = new Map<string, ConnInfo>();
  /** Packets dropped because they were invalid for the state (counted, never thrown). */
  dropped = 0;

  constructor(
    readonly role: Role,
    readonly preferred: Version,
    readonly highWater: number,
    private readonly sink: ProtocolSink,
  ) {}

  get sync(): SyncState {
    return this.syncState;
  }

  get version(): Version | undefined {
    return this.syncState.tag === "Synced" ? this.syncState.version : undefined;
  }

  connection(a: Address): ConnInfo | undefined {
    return this.conns.get(addressKey(a));
  }

  connections(): IterableIterator<ConnInfo> {
    return this.conns.values();
  }

  private resetAll(): void {
    for (const c of this.conns.values()) {
      if (c.state === "ConnectingOutgoing") this.sink.notice({ _tag: "Refused", address: c.address });
      else if (c.state === "Connected") this.sink.notice({ _tag: "Closed", address: c.address, reset: true });
    }
    this.conns.clear();
    this.sink.notice({ _tag: "ResetAll" });
  }

  private preferredWithNonce(nonce: number): Version {
    return this.preferred.v === 2 ? { v: 2, nonce: nonce >>> 0 } : this.preferred;
  }

  /** Host: start (or restart) synchronisation. USB-SYNC-VERSION, USB-SYNC-MIDSTREAM. */
  startSync(nonce: number): ProtocolError | undefined {
    if (this.role !== "host") return { _tag: "NotHost" };
    if (this.syncState.tag === "Synced") this.resetAll();
    const sent = this.preferredWithNonce(nonce);
    this.sink.emit(PacketType.Sync, ZERO_ADDRESS, versionMagicBytes(sent));
    this.syncState = { tag: "AwaitingReply", sent };
    return undefined;
  }

  private requireSynced(a: Address | undefined): ProtocolError | undefined {
    if (this.syncState.tag !== "Synced") return { _tag: "NotSynced" };
    if (a !== undefined && a.deviceCid === 0 && a.hostCid === 0 && a.devicePort === 0 && a.hostPort === 0)
      return { _tag: "ControlAddress" };
    return undefined;
  }

  connect(a: Address): ProtocolError | undefined {
    const e = this.requireSynced(a);
    if (e !== undefined) return e;
    const key = addressKey(a);
    if (this.conns.has(key)) return { _tag: "ConnectionExists", address: a };
    this.conns.set(key, {
      address: a,
      state: "ConnectingOutgoing",
      finished: false,
      unread: 0,
      pausedPeer: false,
      pausedByPeer: false,
    });
    this.sink.emit(PacketType.Connect, a, undefined);
    return undefined;
  }

  private incoming(a: Address, op: "accept" | "reject"): ProtocolError | undefined {
    const e = this.requireSynced(a);
    if (e !== undefined) return e;
    const key = addressKey(a);
    const c = this.conns.get(key);
    if (c === undefined) return { _tag: "NoSuchConnection", address: a };
    if (c.state !== "ConnectingIncoming")
      return { _tag: "WrongState", address: a, state: c.state, expected: "ConnectingIncoming" };
    if (op === "accept") {
      c.state = "Connected";
      this.sink.emit(PacketType.Accept, a, undefined);
      this.sink.notice({ _tag: "Connected", address: a });
    } else {
      this.conns.delete(key);
      this.sink.emit(PacketType.Reset, a, undefined);
    }
    return undefined;
  }

  accept(a: Address): ProtocolError | undefined {
    return this.incoming(a, "accept");
  }

  reject(a: Address): ProtocolError | undefined {
    return this.incoming(a, "reject");
  }

  close(a: Address): ProtocolError | undefined {
    const e = this.requireSynced(a);
    if (e !== undefined) return e;
    const c = this.conns.get(addressKey(a));
    if (c === undefined) return { _tag: "NoSuchConnection", address: a };
    if (c.state !== "Connected")
      return { _tag: "WrongState", address: a, state: c.state, expected: "Connected" };
    if (c.finished) return { _tag: "Finished", address: a };
    c.finished = true;
    this.sink.emit(PacketType.Finish, a, undefined);
    return undefined;
  }

  reset(a: Address): ProtocolError | undefined {
    const e = this.requireSynced(a);
    if (e !== undefined) return e;
    const key = addressKey(a);
    const c = this.conns.get(key);
    if (c === undefined) return { _tag: "NoSuchConnection", address: a };
    this.conns.delete(key);
    this.sink.emit(PacketType.Reset, a, undefined);
    if (c.state === "Connected") this.sink.notice({ _tag: "Closed", address: a, reset: true });
    else if (c.state === "ConnectingOutgoing") this.sink.notice({ _tag: "Refused", address: a });
    return undefined;
  }

  /** Checks that data may be sent on `a` now (Connected, not finished, not paused). */
  canSend(a: Address): ProtocolError | undefined {
    if (this.syncState.tag !== "Synced") return { _tag: "NotSynced" };
    if (a.deviceCid === 0 && a.hostCid === 0 && a.devicePort === 0 && a.hostPort === 0) return undefined;
    const c = this.conns.get(addressKey(a));
    if (c === undefined) return { _tag: "NoSuchConnection", address: a };
    if (c.state !== "Connected")
      return { _tag: "WrongState", address: a, state: c.state, expected: "Connected" };
    if (c.finished) return { _tag: "Finished", address: a };
    if (c.pausedByPeer) return { _tag: "Paused", address: a };
    return undefined;
  }

  /** USB-CONN-DATA, USB-CONTROL-STREAM: emits one Data packet (the sink may split it). */
  send(a: Address, payload: Uint8Array): ProtocolError | undefined {
    const e = this.canSend(a);
    if (e !== undefined) return e;
    if (payload.length > 0) this.sink.emit(PacketType.Data, a, payload);
    return undefined;
  }

  /** The application has read everything on `a`: resume the peer if it was paused (USB-PAUSE). */
  read(a: Address): ProtocolError | undefined {
    const e = this.requireSynced(a);
    if (e !== undefined) return e;
    const c = this.conns.get(addressKey(a));
    if (c === undefined) return { _tag: "NoSuchConnection", address: a };
    c.unread = 0;
    if (c.pausedPeer) {
      c.pausedPeer = false;
      this.sink.emit(PacketType.Pause, a, Uint8Array.of(0));
    }
    return undefined;
  }

  /** The application consumed `n` bytes of `a` (the rest is still unread). */
  consumed(a: Address, n: number): ProtocolError | undefined {
    const c = this.conns.get(addressKey(a));
    if (c === undefined) return { _tag: "NoSuchConnection", address: a };
    c.unread = Math.max(0, c.unread - n);
    if (c.unread === 0) return this.read(a);
    return undefined;
  }

  echo(payload: Uint8Array): ProtocolError | undefined {
    const e = this.requireSynced(undefined);
    if (e !== undefined) return e;
    this.sink.emit(PacketType.Echo, ZERO_ADDRESS, payload);
    return undefined;
  }

  /** Handles one received packet. Errors are returned (and counted), never thrown. */
  receive(
    type: PacketTypeT,
    deviceCid: number,
    hostCid: number,
    devicePort: number,
    hostPort: number,
    payload: Uint8Array,
  ): ProtocolError | undefined {
    const e = this.receiveInner(type, deviceCid, hostCid, devicePort, hostPort, payload);
    if (e !== undefined) this.dropped++;
    return e;
  }

  /**
   * Handles every packet of one transfer; stops at the first parse error (USB-PARSE-STOP),
   * which it returns. Protocol errors drop only their packet.
   */
  receiveTransfer(bytes: Uint8Array, it = new VsockPacketIterator()): ParseError | undefined {
    it.reset(bytes);
    while (it.next()) {
      this.receive(it.type, it.deviceCid, it.hostCid, it.devicePort, it.hostPort, it.payload());
    }
    return it.error;
  }

  private receiveInner(
    type: PacketTypeT,
    deviceCid: number,
    hostCid: number,
    devicePort: number,
    hostPort: number,
    payload: Uint8Array,
  ): ProtocolError | undefined {
    const sink = this.sink;
    if (type === PacketType.Sync) return this.receiveSync(payload);
    const version = this.version;
    if (version === undefined) return { _tag: "NotSynced" };
    const zero = deviceCid === 0 && hostCid === 0 && devicePort === 0 && hostPort === 0;
    const a: Address = zero ? ZERO_ADDRESS : { deviceCid, hostCid, devicePort, hostPort };

    if (type === PacketType.Echo) {
      sink.emit(PacketType.EchoReply, a, payload.slice());
      return undefined;
    }
    if (type === PacketType.EchoReply) {
      sink.notice({ _tag: "EchoReply", payload });
      return undefined;
    }
    if (type === PacketType.Data && zero) {
      if (payload.length > 0) sink.notice({ _tag: "Control", payload });
      return undefined;
    }
    const key = addressKey(a);
    const c = this.conns.get(key);
    const unexpected: ProtocolError = { _tag: "UnexpectedPacket", type, address: a };

    switch (type) {
      case PacketType.Connect:
        if (zero) return unexpected;
        if (c === undefined) {
          this.conns.set(key, {
            address: a,
            state: "ConnectingIncoming",
            finished: false,
            unread: 0,
            pausedPeer: false,
            pausedByPeer: false,
          });
          sink.notice({ _tag: "Incoming", address: a });
          return undefined;
        }
        if (c.state === "ConnectingOutgoing") {
          // USB-CONN-SIMULTANEOUS: both ends opened it; drop it on both.
          this.conns.delete(key);
          sink.emit(PacketType.Reset, a, undefined);
          sink.notice({ _tag: "Refused", address: a });
          return undefined;
        }
        return unexpected;
      case PacketType.Accept:
        if (c === undefined || c.state !== "ConnectingOutgoing") return unexpected;
        c.state = "Connected";
        sink.notice({ _tag: "Connected", address: a });
        return undefined;
      case PacketType.Finish:
        if (c === undefined) return unexpected;
        this.conns.delete(key);
        if (c.state !== "Connected") return unexpected;
        sink.emit(PacketType.Reset, a, undefined);
        sink.notice({ _tag: "Closed", address: a, reset: false });
        return undefined;
      case PacketType.Reset:
        if (c === undefined) return unexpected;
        this.conns.delete(key);
        if (c.state === "ConnectingOutgoing") sink.notice({ _tag: "Refused", address: a });
        else if (c.state === "Connected") sink.notice({ _tag: "Closed", address: a, reset: !c.finished });
        return undefined;
      case PacketType.Data:
        if (c === undefined || c.state !== "Connected") return unexpected;
        if (payload.length === 0) return undefined;
        sink.notice({ _tag: "Data", address: a, payload });
        c.unread += payload.length;
        if (hasPause(version) && !c.pausedPeer && c.unread > this.highWater) {
          c.pausedPeer = true;
          sink.emit(PacketType.Pause, a, Uint8Array.of(1));
        }
        return undefined;
      case PacketType.Pause: {
        if (!hasPause(version)) return { _tag: "UnsupportedPacket", type };
        if (c === undefined || c.state !== "Connected" || payload.length !== 1) return unexpected;
        const paused = payload[0] !== 0;
        c.pausedByPeer = paused;
        sink.notice({ _tag: "Paused", address: a, paused });
        return undefined;
      }
      default:
        return unexpected;
    }
  }

  private receiveSync(payload: Uint8Array): ProtocolError | undefined {
    const v = parseVersionMagic(payload);
    const s = this.syncState;
    if (this.role === "device") {
      if (s.tag === "AwaitingConfirm" && v !== undefined && sameVersion(v, s.version)) {
        this.syncState = { tag: "Synced", version: v };
        return undefined;
      }
      if (s.tag === "Synced") this.resetAll();
      if (v === undefined) {
        this.syncState = { tag: "Unsynced" };
        return { _tag: "InvalidSyncMagic" };
      }
      const n = negotiate(this.preferred, v);
      this.sink.emit(PacketType.Sync, ZERO_ADDRESS, versionMagicBytes(n));
      this.syncState = sameVersion(n, v)
        ? { tag: "Synced", version: n }
        : { tag: "AwaitingConfirm", version: n };
      return undefined;
    }
    if (s.tag === "AwaitingReply") {
      if (v === undefined || (v.v !== 2 && v.v > s.sent.v)) {
        this.syncState = { tag: "Failed" };
        return { _tag: "InvalidSyncMagic" };
      }
      if (sameVersion(v, s.sent)) {
        this.syncState = { tag: "Synced", version: v };
        return undefined;
      }
      // USB-SYNC-NONCE: a stale v2 reply.
      if (v.v === 2) return undefined;
      this.sink.emit(PacketType.Sync, ZERO_ADDRESS, versionMagicBytes(v));
      this.syncState = { tag: "Synced", version: v };
      return undefined;
    }
    if (s.tag === "Synced") {
      this.resetAll();
      const sent = this.preferredWithNonce(nextNonce(s.version));
      this.sink.emit(PacketType.Sync, ZERO_ADDRESS, versionMagicBytes(sent));
      this.syncState = { tag: "AwaitingReply", sent };
      return undefined;
    }
    return { _tag: "NotSynced" };
  }
}
