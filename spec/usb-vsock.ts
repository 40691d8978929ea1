/**
 * vsock over USB, the reference model (Fuchsia `usb_vsock`: packet.rs, lib.rs, connection.rs).
 *
 * A USB bulk transfer carries one or more vsock packets back to back. Each packet is a
 * 24-byte packed header followed by `payload_len` payload bytes:
 *
 * | offset | size | field                                   |
 * | ------ | ---- | --------------------------------------- |
 * | 0      | 3    | magic `ffx`                             |
 * | 3      | 1    | type: S C F R A D (vsock:0), E e X (v1+) |
 * | 4      | 4    | device_cid (LE u32)                     |
 * | 8      | 4    | host_cid                                |
 * | 12     | 4    | device_port                             |
 * | 16     | 4    | host_port                               |
 * | 20     | 4    | payload_len                             |
 *
 * Everything here is plain data and pure functions (copies, never views), written to be
 * obviously right; impl/usb-vsock is checked against it.
 *
 * The connection protocol (`step`) is one endpoint's state machine: an event (a local
 * request or a received packet) gives the next state, the packets to send, and what the
 * application sees. Where Fuchsia leaves a case open, the choice made here is stated in the
 * rule text and marked "virtio-lab".
 */
import { err, ok, rule, type Result } from "./result.ts";

export const RULES = [
  rule(
    "USB-HDR-LAYOUT",
    "Fuchsia usb_vsock packet.rs Header",
    "A vsock packet header is 24 packed bytes: magic `ffx`, a type byte, then device_cid, host_cid, device_port, host_port and payload_len as little-endian u32.",
  ),
  rule(
    "USB-HDR-TYPES",
    "Fuchsia usb_vsock packet.rs PacketType",
    "The type byte is one of Sync 'S', Connect 'C', Finish 'F', Reset 'R', Accept 'A', Data 'D', and from later protocol versions Echo 'E', EchoReply 'e', Pause 'X'.",
  ),
  rule(
    "USB-PARSE-SHORT",
    "Fuchsia usb_vsock packet.rs Packet::parse_next",
    "Fewer than 24 bytes left in a non-empty remainder is InsufficientData.",
  ),
  rule(
    "USB-PARSE-TYPE",
    "Fuchsia usb_vsock packet.rs Header::try_ref_from_bytes",
    "A header whose type byte is not a known packet type is UnknownPacketType (checked before the magic).",
  ),
  rule(
    "USB-PARSE-MAGIC",
    "Fuchsia usb_vsock packet.rs Packet::parse_next",
    "A header whose first three bytes are not `ffx` is InvalidMagic.",
  ),
  rule(
    "USB-PARSE-PAYLOAD-LEN",
    "Fuchsia usb_vsock packet.rs Packet::parse_next",
    "A payload_len larger than the bytes after the header is PayloadTooLong.",
  ),
  rule(
    "USB-PARSE-STOP",
    "Fuchsia usb_vsock packet.rs VsockPacketIterator (FusedIterator)",
    "Parsing a transfer yields packets in order and stops for good after the first error; an empty transfer yields nothing.",
  ),
  rule(
    "USB-PARSE-BOUNDS",
    "virtio-lab",
    "Parsing never reads outside the transfer it was given and never throws, whatever the bytes.",
  ),
  rule(
    "USB-BUILD-TOO-BIG",
    "Fuchsia usb_vsock packet.rs PacketMut::finish, UsbPacketBuilder::write_vsock_packet",
    "A packet that does not fit in the room left is PacketTooBig and nothing is written.",
  ),
  rule(
    "USB-BUILDER-TAKE",
    "Fuchsia usb_vsock packet.rs UsbPacketBuilder",
    "available() is capacity minus bytes written; take() returns exactly the bytes written since the last take and resets the builder; an empty builder takes nothing.",
  ),
  rule(
    "USB-FILL-WAIT-ROOM",
    "Fuchsia usb_vsock packet.rs UsbPacketFiller::wait_for_fillable",
    "A writer waits until a transfer is being filled and has room for its packet; a packet larger than the whole transfer is PacketTooBig instead of waiting forever (virtio-lab).",
  ),
  rule(
    "USB-FILL-WAIT-DATA",
    "Fuchsia usb_vsock packet.rs FillUsbPacket",
    "The reader that offers a transfer waits until it holds at least one packet; a transfer that already holds data is handed straight back.",
  ),
  rule(
    "USB-FILL-SPLIT",
    "Fuchsia usb_vsock packet.rs UsbPacketFiller::write_vsock_data_all",
    "A payload larger than the room left is split across Data packets, in order, none larger than its transfer.",
  ),
  rule(
    "USB-FILL-ONE",
    "Fuchsia usb_vsock packet.rs FillUsbPacket (asserts)",
    "Only one transfer is filled at a time; offering a second is the typed error AlreadyFilling, not a crash.",
  ),
  rule(
    "USB-FILL-ORDER",
    "Fuchsia usb_vsock packet.rs tests many_packets",
    "With concurrent writers and one reader, every packet is delivered exactly once, each writer's packets in the order written.",
  ),
  rule(
    "USB-SYNC-VERSION",
    "Fuchsia usb_vsock lib.rs ProtocolVersion::magic / from_magic",
    "The Sync payload is `vsock:0`, `vsock:1` or `vsock:2:<nonce>` (nonce: a u32 in hex, either case); anything else is InvalidSyncMagic.",
  ),
  rule(
    "USB-SYNC-NEGOTIATE",
    "Fuchsia usb_vsock lib.rs ProtocolVersion::negotiate",
    "The device answers the host's Sync with min(device preferred, host) keeping the host's nonce for v2; a host offered a lower version confirms it with a final Sync.",
  ),
  rule(
    "USB-SYNC-FIRST",
    "Fuchsia usb_vsock packet.rs PacketType::Sync",
    "Before an endpoint is synchronised every packet but Sync is dropped (NotSynced) and local requests fail with NotSynced.",
  ),
  rule(
    "USB-SYNC-MIDSTREAM",
    "Fuchsia usb_vsock packet.rs PacketType::Sync",
    "A Sync received after synchronisation resets every connection before it is answered; a host that re-synchronises resets its own first.",
  ),
  rule(
    "USB-SYNC-LAST",
    "Fuchsia usb_vsock packet.rs PacketType::Sync",
    "A Sync is the last vsock packet of its USB transfer; packets written after it go into the next transfer.",
  ),
  rule(
    "USB-SYNC-NONCE",
    "Fuchsia usb_vsock lib.rs ProtocolVersion::V2",
    "A v2 host ignores a Sync reply whose nonce is not the one it sent (a stale reply) (virtio-lab).",
  ),
  rule(
    "USB-CONN-STATES",
    "Fuchsia usb_vsock connection.rs VsockConnectionState",
    "Each address (device cid:port, host cid:port) is absent, ConnectingOutgoing, ConnectingIncoming or Connected.",
  ),
  rule(
    "USB-CONN-CONNECT",
    "Fuchsia usb_vsock connection.rs connect / handle_connect_packet",
    "connect on an absent, non-zero address makes it ConnectingOutgoing and sends Connect; a Connect for an absent address makes it ConnectingIncoming; one for an existing address is ignored.",
  ),
  rule(
    "USB-CONN-SIMULTANEOUS",
    "virtio-lab",
    "A Connect received for an address that is ConnectingOutgoing (both ends opened it at once) drops it and answers Reset, so both ends end absent.",
  ),
  rule(
    "USB-CONN-ADDR-REUSE",
    "virtio-lab (a limit of the Fuchsia protocol)",
    "Packets carry no connection generation, so an end must not reopen an address while an Accept, Reset or Finish for it is in flight in either direction: a stale one (or the peer's answer to one) would be taken for the new connection's, leaving it half open.",
  ),
  rule(
    "USB-CONN-ACCEPT",
    "Fuchsia usb_vsock connection.rs accept / handle_accept_packet",
    "accept of a ConnectingIncoming address makes it Connected and sends Accept; an Accept for a ConnectingOutgoing address makes it Connected; any other Accept is ignored.",
  ),
  rule(
    "USB-CONN-REJECT",
    "Fuchsia usb_vsock connection.rs reject",
    "reject of a ConnectingIncoming address removes it and sends Reset; the connecting side sees ConnectionRefused.",
  ),
  rule(
    "USB-CONN-FINISH",
    "Fuchsia usb_vsock connection.rs close / handle_finish_packet",
    "close of a Connected address sends Finish (no more data from this end); a Finish for a Connected address removes it and answers Reset; a Finish for another state drops it without answer.",
  ),
  rule(
    "USB-CONN-RESET",
    "Fuchsia usb_vsock connection.rs reset / handle_reset_packet",
    "reset removes the address in any state and sends Reset; a Reset removes the address whatever its state.",
  ),
  rule(
    "USB-CONN-DATA",
    "Fuchsia usb_vsock connection.rs handle_data_packet",
    "Data for a Connected address is delivered in order; Data for any other address (not all-zero) is dropped; sending needs Connected and not finished.",
  ),
  rule(
    "USB-CONTROL-STREAM",
    "Fuchsia usb_vsock packet.rs PacketType::Data",
    "Data on the all-zero address is the control stream: no connection needed, delivered in order once synchronised.",
  ),
  rule(
    "USB-CONN-ADDR",
    "Fuchsia usb_vsock lib.rs Address",
    "Connection requests on the all-zero (control) address are ControlAddress.",
  ),
  rule(
    "USB-PAUSE",
    "Fuchsia usb_vsock lib.rs has_pause_packets",
    "From vsock:1, when a connection's unread bytes pass its high-water mark the receiver sends Pause(1); once the application reads it all, Pause(0); the sender holds data while paused (payload encoding: virtio-lab). In vsock:0 no Pause is sent and one received is UnsupportedPacket.",
  ),
  rule(
    "USB-ECHO",
    "Fuchsia usb_vsock packet.rs PacketType::Echo",
    "An Echo is answered with an EchoReply carrying the same payload and address.",
  ),
  rule(
    "USB-LINK-MTU",
    "virtio-lab sim/usb-link.ts",
    "The simulated bulk link never carries a transfer larger than its maximum transfer size.",
  ),
  rule(
    "USB-LINK-LATENCY",
    "virtio-lab sim/usb-link.ts",
    "A transfer is delivered `latency` after it is sent, in the order sent, on the Effect clock.",
  ),
] as const;

// ---------------------------------------------------------------------------------------
// Header and framing

export const HEADER_SIZE = 24;
export const MAGIC = [0x66, 0x66, 0x78] as const; // "ffx"

export const PacketType = {
  Sync: 0x53, // 'S'
  Connect: 0x43, // 'C'
  Finish: 0x46, // 'F'
  Reset: 0x52, // 'R'
  Accept: 0x41, // 'A'
  Data: 0x44, // 'D'
  Echo: 0x45, // 'E'
  EchoReply: 0x65, // 'e'
  Pause: 0x58, // 'X'
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

export const PACKET_TYPES: readonly PacketType[] = Object.values(PacketType);

/** USB-HDR-TYPES */
export const isPacketType = (b: number): b is PacketType => (PACKET_TYPES as readonly number[]).includes(b);

export interface Address {
  readonly deviceCid: number;
  readonly hostCid: number;
  readonly devicePort: number;
  readonly hostPort: number;
}

export const ZERO_ADDRESS: Address = { deviceCid: 0, hostCid: 0, devicePort: 0, hostPort: 0 };

export const isZeroAddress = (a: Address): boolean =>
  a.deviceCid === 0 && a.hostCid === 0 && a.devicePort === 0 && a.hostPort === 0;

export const addressKey = (a: Address): string => `${a.deviceCid}:${a.devicePort}-${a.hostCid}:${a.hostPort}`;

export interface Header extends Address {
  readonly type: PacketType;
  readonly payloadLen: number;
}

export interface Packet {
  readonly header: Header;
  readonly payload: Uint8Array;
}

export type ParseError =
  | { readonly _tag: "InsufficientData"; readonly offset: number; readonly remaining: number }
  | { readonly _tag: "UnknownPacketType"; readonly offset: number; readonly type: number }
  | { readonly _tag: "InvalidMagic"; readonly offset: number }
  | {
      readonly _tag: "PayloadTooLong";
      readonly offset: number;
      readonly payloadLen: number;
      readonly available: number;
    };

export interface PacketTooBig {
  readonly _tag: "PacketTooBig";
  readonly size: number;
  readonly available: number;
}

const u32 = (b: Uint8Array, at: number): number =>
  (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

const putU32 = (out: number[], v: number): void => {
  out.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
};

/** USB-HDR-LAYOUT: the 24 header bytes. */
export const encodeHeader = (h: Header): Uint8Array => {
  const out: number[] = [...MAGIC, h.type];
  putU32(out, h.deviceCid);
  putU32(out, h.hostCid);
  putU32(out, h.devicePort);
  putU32(out, h.hostPort);
  putU32(out, h.payloadLen);
  return Uint8Array.from(out);
};

/** A packet's bytes: header then payload (payloadLen must equal payload.length). */
export const encodePacket = (p: Packet): Uint8Array => {
  const out = new Uint8Array(HEADER_SIZE + p.payload.length);
  out.set(encodeHeader(p.header), 0);
  out.set(p.payload, HEADER_SIZE);
  return out;
};

/** Packets back to back, as one transfer. */
export const encodePackets = (ps: readonly Packet[]): Uint8Array => {
  const parts = ps.map(encodePacket);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

export const makePacket = (
  type: PacketType,
  address: Address,
  payload: Uint8Array = new Uint8Array(0),
): Packet => ({
  header: { type, ...address, payloadLen: payload.length },
  payload: payload.slice(),
});

/**
 * USB-PARSE-*: one packet at `offset`. Check order: length (SHORT), type byte (TYPE),
 * magic (MAGIC), payload length (PAYLOAD-LEN), as packet.rs does.
 */
export const parseOne = (bytes: Uint8Array, offset: number): Result<Packet, ParseError> => {
  const remaining = bytes.length - offset;
  if (remaining < HEADER_SIZE) return err({ _tag: "InsufficientData", offset, remaining });
  const type = bytes[offset + 3]!;
  if (!isPacketType(type)) return err({ _tag: "UnknownPacketType", offset, type });
  if (bytes[offset] !== MAGIC[0] || bytes[offset + 1] !== MAGIC[1] || bytes[offset + 2] !== MAGIC[2])
    return err({ _tag: "InvalidMagic", offset });
  const payloadLen = u32(bytes, offset + 20);
  const available = remaining - HEADER_SIZE;
  if (payloadLen > available) return err({ _tag: "PayloadTooLong", offset, payloadLen, available });
  const header: Header = {
    type,
    deviceCid: u32(bytes, offset + 4),
    hostCid: u32(bytes, offset + 8),
    devicePort: u32(bytes, offset + 12),
    hostPort: u32(bytes, offset + 16),
    payloadLen,
  };
  const start = offset + HEADER_SIZE;
  return ok({ header, payload: bytes.slice(start, start + payloadLen) });
};

export interface ParsedTransfer {
  readonly packets: readonly Packet[];
  readonly error: ParseError | undefined;
}

/** USB-PARSE-STOP: the packets of a transfer, then at most one error. */
export const parseTransfer = (bytes: Uint8Array): ParsedTransfer => {
  const packets: Packet[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const r = parseOne(bytes, offset);
    if (!r.ok) return { packets, error: r.error };
    packets.push(r.value);
    offset += HEADER_SIZE + r.value.header.payloadLen;
  }
  return { packets, error: undefined };
};

/** USB-BUILD-TOO-BIG, USB-BUILDER-TAKE: what a builder of `capacity` holds after writes. */
export interface SpecBuilder {
  readonly capacity: number;
  readonly written: Uint8Array;
}

export const builderWrite = (b: SpecBuilder, p: Packet): Result<SpecBuilder, PacketTooBig> => {
  const size = HEADER_SIZE + p.payload.length;
  const available = b.capacity - b.written.length;
  if (size > available) return err({ _tag: "PacketTooBig", size, available });
  const written = new Uint8Array(b.written.length + size);
  written.set(b.written, 0);
  written.set(encodePacket(p), b.written.length);
  return ok({ capacity: b.capacity, written });
};

/** USB-FILL-SPLIT: how `writeDataAll` cuts a payload given the room left in each transfer. */
export const splitPayload = (payloadLen: number, roomPerTransfer: readonly number[]): number[] => {
  const cuts: number[] = [];
  let left = payloadLen;
  for (const room of roomPerTransfer) {
    if (left === 0) break;
    const n = Math.min(left, room - HEADER_SIZE);
    if (n <= 0) continue;
    cuts.push(n);
    left -= n;
  }
  return cuts;
};

// ---------------------------------------------------------------------------------------
// Protocol versions (USB-SYNC-VERSION, USB-SYNC-NEGOTIATE)

export type Version = { readonly v: 0 } | { readonly v: 1 } | { readonly v: 2; readonly nonce: number };

export const versionMagic = (ver: Version): string =>
  ver.v === 2 ? `vsock:2:${(ver.nonce >>> 0).toString(16)}` : `vsock:${ver.v}`;

export const versionMagicBytes = (ver: Version): Uint8Array => new TextEncoder().encode(versionMagic(ver));

/** USB-SYNC-VERSION: the version a Sync payload names, or undefined. */
export const parseVersionMagic = (payload: Uint8Array): Version | undefined => {
  // The magic is ASCII; any other byte makes it invalid (no lossy decode).
  let s = "";
  for (const b of payload) {
    if (b < 0x20 || b > 0x7e) return undefined;
    s += String.fromCharCode(b);
  }
  if (s === "vsock:0") return { v: 0 };
  if (s === "vsock:1") return { v: 1 };
  const m = /^vsock:2:([0-9a-fA-F]+)$/.exec(s);
  if (m === null) return undefined;
  const n = parseInt(m[1]!, 16);
  if (!Number.isSafeInteger(n) || n > 0xffffffff) return undefined;
  return { v: 2, nonce: n };
};

/** USB-SYNC-NEGOTIATE: the version the device answers with. */
export const negotiate = (devicePreferred: Version, host: Version): Version => {
  if (devicePreferred.v === 0 || host.v === 0) return { v: 0 };
  if (devicePreferred.v === 1 || host.v === 1) return { v: 1 };
  return host;
};

export const sameVersion = (a: Version, b: Version): boolean =>
  a.v === b.v && (a.v !== 2 || (b.v === 2 && a.nonce === b.nonce));

/** USB-PAUSE */
export const hasPause = (ver: Version): boolean => ver.v >= 1;

// ---------------------------------------------------------------------------------------
// Connection protocol, one endpoint (USB-CONN-*, USB-SYNC-*)

export type ConnState = "ConnectingOutgoing" | "ConnectingIncoming" | "Connected";

export interface SpecConn {
  readonly address: Address;
  readonly state: ConnState;
  /** This end sent Finish: it sends no more data. */
  readonly finished: boolean;
  /** Unread bytes delivered to the application. */
  readonly unread: number;
  /** This end asked the peer to pause (Pause(1) sent, Pause(0) not yet). */
  readonly pausedPeer: boolean;
  /** The peer asked this end to pause. */
  readonly pausedByPeer: boolean;
}

export type SyncState =
  | { readonly tag: "Unsynced" }
  | { readonly tag: "AwaitingReply"; readonly sent: Version }
  | { readonly tag: "AwaitingConfirm"; readonly version: Version }
  | { readonly tag: "Synced"; readonly version: Version }
  | { readonly tag: "Failed" };

export type Role = "host" | "device";

export interface SpecEndpoint {
  readonly role: Role;
  readonly preferred: Version;
  /** Unread bytes above which a connection asks its peer to pause (USB-PAUSE). */
  readonly highWater: number;
  readonly sync: SyncState;
  readonly conns: ReadonlyMap<string, SpecConn>;
}

export type ProtocolError =
  | { readonly _tag: "NotSynced" }
  | { readonly _tag: "InvalidSyncMagic" }
  | { readonly _tag: "NotHost" }
  | { readonly _tag: "ControlAddress" }
  | { readonly _tag: "ConnectionExists"; readonly address: Address }
  | { readonly _tag: "NoSuchConnection"; readonly address: Address }
  | {
      readonly _tag: "WrongState";
      readonly address: Address;
      readonly state: ConnState;
      readonly expected: ConnState;
    }
  | { readonly _tag: "Finished"; readonly address: Address }
  | { readonly _tag: "Paused"; readonly address: Address }
  | { readonly _tag: "UnsupportedPacket"; readonly type: PacketType }
  | { readonly _tag: "UnexpectedPacket"; readonly type: PacketType; readonly address: Address };

/** What the application sees from one step. */
export type Notice =
  | { readonly _tag: "Incoming"; readonly address: Address }
  | { readonly _tag: "Connected"; readonly address: Address }
  | { readonly _tag: "Refused"; readonly address: Address }
  | { readonly _tag: "Closed"; readonly address: Address; readonly reset: boolean }
  | { readonly _tag: "Data"; readonly address: Address; readonly payload: Uint8Array }
  | { readonly _tag: "Control"; readonly payload: Uint8Array }
  | { readonly _tag: "EchoReply"; readonly payload: Uint8Array }
  | { readonly _tag: "Paused"; readonly address: Address; readonly paused: boolean }
  | { readonly _tag: "ResetAll" };

export type Event =
  | { readonly _tag: "sync"; readonly nonce: number }
  | { readonly _tag: "connect"; readonly address: Address }
  | { readonly _tag: "accept"; readonly address: Address }
  | { readonly _tag: "reject"; readonly address: Address }
  | { readonly _tag: "close"; readonly address: Address }
  | { readonly _tag: "reset"; readonly address: Address }
  | { readonly _tag: "send"; readonly address: Address; readonly payload: Uint8Array }
  | { readonly _tag: "read"; readonly address: Address }
  | { readonly _tag: "echo"; readonly payload: Uint8Array }
  | { readonly _tag: "receive"; readonly packet: Packet };

export interface Step {
  readonly state: SpecEndpoint;
  readonly out: readonly Packet[];
  readonly notices: readonly Notice[];
  readonly error: ProtocolError | undefined;
}

export const initialEndpoint = (role: Role, preferred: Version, highWater: number): SpecEndpoint => ({
  role,
  preferred,
  highWater,
  sync: { tag: "Unsynced" },
  conns: new Map(),
});

const newConn = (address: Address, state: ConnState): SpecConn => ({
  address,
  state,
  finished: false,
  unread: 0,
  pausedPeer: false,
  pausedByPeer: false,
});

const syncedVersion = (s: SpecEndpoint): Version | undefined =>
  s.sync.tag === "Synced" ? s.sync.version : undefined;

const withPreferredNonce = (p: Version, nonce: number): Version =>
  p.v === 2 ? { v: 2, nonce: nonce >>> 0 } : p;

/** The nonce a host uses when it re-synchronises on its own (deterministic: previous + 1). */
export const nextNonce = (v: Version): number => (v.v === 2 ? (v.nonce + 1) >>> 0 : 0);

/** One endpoint's step. Never throws; every refusal is a ProtocolError with no change. */
export const step = (s: SpecEndpoint, e: Event): Step => {
  const out: Packet[] = [];
  const notices: Notice[] = [];
  const done = (state: SpecEndpoint, error?: ProtocolError): Step => ({ state, out, notices, error });
  const setConns = (conns: Map<string, SpecConn>): SpecEndpoint => ({ ...s, conns });
  const resetAll = (): Map<string, SpecConn> => {
    for (const c of s.conns.values()) {
      if (c.state === "ConnectingOutgoing") notices.push({ _tag: "Refused", address: c.address });
      else if (c.state === "Connected") notices.push({ _tag: "Closed", address: c.address, reset: true });
    }
    notices.push({ _tag: "ResetAll" });
    return new Map();
  };

  if (e._tag === "sync") {
    if (s.role !== "host") return done(s, { _tag: "NotHost" });
    // USB-SYNC-MIDSTREAM: the host's own re-sync drops its connections first.
    const conns = s.sync.tag === "Synced" ? resetAll() : new Map<string, SpecConn>();
    const sent = withPreferredNonce(s.preferred, e.nonce);
    out.push(makePacket(PacketType.Sync, ZERO_ADDRESS, versionMagicBytes(sent)));
    return done({ ...s, conns, sync: { tag: "AwaitingReply", sent } });
  }

  if (e._tag === "receive") return receive(s, e.packet, out, notices, resetAll);

  const version = syncedVersion(s);
  if (version === undefined) return done(s, { _tag: "NotSynced" });

  if (e._tag === "echo") {
    out.push(makePacket(PacketType.Echo, ZERO_ADDRESS, e.payload));
    return done(s);
  }

  const a = e.address;
  const key = addressKey(a);
  const c = s.conns.get(key);

  if (e._tag === "send" && isZeroAddress(a)) {
    // USB-CONTROL-STREAM
    if (e.payload.length > 0) out.push(makePacket(PacketType.Data, ZERO_ADDRESS, e.payload));
    return done(s);
  }
  if (isZeroAddress(a)) return done(s, { _tag: "ControlAddress" });

  switch (e._tag) {
    case "connect": {
      if (c !== undefined) return done(s, { _tag: "ConnectionExists", address: a });
      const conns = new Map(s.conns).set(key, newConn(a, "ConnectingOutgoing"));
      out.push(makePacket(PacketType.Connect, a));
      return done(setConns(conns));
    }
    case "accept":
    case "reject": {
      if (c === undefined) return done(s, { _tag: "NoSuchConnection", address: a });
      if (c.state !== "ConnectingIncoming")
        return done(s, { _tag: "WrongState", address: a, state: c.state, expected: "ConnectingIncoming" });
      const conns = new Map(s.conns);
      if (e._tag === "accept") {
        conns.set(key, { ...c, state: "Connected" });
        out.push(makePacket(PacketType.Accept, a));
        notices.push({ _tag: "Connected", address: a });
      } else {
        conns.delete(key);
        out.push(makePacket(PacketType.Reset, a));
      }
      return done(setConns(conns));
    }
    case "close": {
      if (c === undefined) return done(s, { _tag: "NoSuchConnection", address: a });
      if (c.state !== "Connected")
        return done(s, { _tag: "WrongState", address: a, state: c.state, expected: "Connected" });
      if (c.finished) return done(s, { _tag: "Finished", address: a });
      out.push(makePacket(PacketType.Finish, a));
      return done(setConns(new Map(s.conns).set(key, { ...c, finished: true })));
    }
    case "reset": {
      if (c === undefined) return done(s, { _tag: "NoSuchConnection", address: a });
      const conns = new Map(s.conns);
      conns.delete(key);
      out.push(makePacket(PacketType.Reset, a));
      if (c.state === "Connected") notices.push({ _tag: "Closed", address: a, reset: true });
      else if (c.state === "ConnectingOutgoing") notices.push({ _tag: "Refused", address: a });
      return done(setConns(conns));
    }
    case "send": {
      if (c === undefined) return done(s, { _tag: "NoSuchConnection", address: a });
      if (c.state !== "Connected")
        return done(s, { _tag: "WrongState", address: a, state: c.state, expected: "Connected" });
      if (c.finished) return done(s, { _tag: "Finished", address: a });
      if (c.pausedByPeer) return done(s, { _tag: "Paused", address: a });
      if (e.payload.length > 0) out.push(makePacket(PacketType.Data, a, e.payload));
      return done(s);
    }
    case "read": {
      if (c === undefined) return done(s, { _tag: "NoSuchConnection", address: a });
      let next = { ...c, unread: 0 };
      if (c.pausedPeer) {
        out.push(makePacket(PacketType.Pause, a, Uint8Array.of(0)));
        next = { ...next, pausedPeer: false };
      }
      return done(setConns(new Map(s.conns).set(key, next)));
    }
  }
};

const receive = (
  s: SpecEndpoint,
  p: Packet,
  out: Packet[],
  notices: Notice[],
  resetAll: () => Map<string, SpecConn>,
): Step => {
  const done = (state: SpecEndpoint, error?: ProtocolError): Step => ({ state, out, notices, error });
  const h = p.header;
  const a: Address = {
    deviceCid: h.deviceCid,
    hostCid: h.hostCid,
    devicePort: h.devicePort,
    hostPort: h.hostPort,
  };

  if (h.type === PacketType.Sync) {
    const v = parseVersionMagic(p.payload);
    if (s.role === "device") {
      if (s.sync.tag === "AwaitingConfirm" && v !== undefined && sameVersion(v, s.sync.version))
        return done({ ...s, sync: { tag: "Synced", version: v } });
      const conns = s.sync.tag === "Synced" ? resetAll() : new Map<string, SpecConn>();
      if (v === undefined)
        return done({ ...s, conns, sync: { tag: "Unsynced" } }, { _tag: "InvalidSyncMagic" });
      const n = negotiate(s.preferred, v);
      out.push(makePacket(PacketType.Sync, ZERO_ADDRESS, versionMagicBytes(n)));
      const sync: SyncState = sameVersion(n, v)
        ? { tag: "Synced", version: n }
        : { tag: "AwaitingConfirm", version: n };
      return done({ ...s, conns, sync });
    }
    // host
    if (s.sync.tag === "AwaitingReply") {
      const sent = s.sync.sent;
      if (v === undefined) return done({ ...s, sync: { tag: "Failed" } }, { _tag: "InvalidSyncMagic" });
      if (sameVersion(v, sent)) return done({ ...s, sync: { tag: "Synced", version: v } });
      // USB-SYNC-NONCE: a v2 reply with another nonce answers an older Sync.
      if (v.v === 2) return done(s);
      if (v.v > sent.v) return done({ ...s, sync: { tag: "Failed" } }, { _tag: "InvalidSyncMagic" });
      out.push(makePacket(PacketType.Sync, ZERO_ADDRESS, versionMagicBytes(v)));
      return done({ ...s, sync: { tag: "Synced", version: v } });
    }
    if (s.sync.tag === "Synced") {
      // USB-SYNC-MIDSTREAM: the device restarted; drop everything and synchronise again.
      const conns = resetAll();
      const sent = withPreferredNonce(s.preferred, nextNonce(s.sync.version));
      out.push(makePacket(PacketType.Sync, ZERO_ADDRESS, versionMagicBytes(sent)));
      return done({ ...s, conns, sync: { tag: "AwaitingReply", sent } });
    }
    return done(s, { _tag: "NotSynced" });
  }

  const version = syncedVersion(s);
  if (version === undefined) return done(s, { _tag: "NotSynced" });

  switch (h.type) {
    case PacketType.Echo:
      out.push(makePacket(PacketType.EchoReply, a, p.payload));
      return done(s);
    case PacketType.EchoReply:
      notices.push({ _tag: "EchoReply", payload: p.payload.slice() });
      return done(s);
    default:
      break;
  }

  if (h.type === PacketType.Data && isZeroAddress(a)) {
    if (p.payload.length > 0) notices.push({ _tag: "Control", payload: p.payload.slice() });
    return done(s);
  }

  const key = addressKey(a);
  const c = s.conns.get(key);
  const unexpected: ProtocolError = { _tag: "UnexpectedPacket", type: h.type, address: a };
  const conns = new Map(s.conns);

  switch (h.type) {
    case PacketType.Connect: {
      if (isZeroAddress(a)) return done(s, unexpected);
      if (c === undefined) {
        conns.set(key, newConn(a, "ConnectingIncoming"));
        notices.push({ _tag: "Incoming", address: a });
        return done({ ...s, conns });
      }
      if (c.state === "ConnectingOutgoing") {
        // USB-CONN-SIMULTANEOUS
        conns.delete(key);
        out.push(makePacket(PacketType.Reset, a));
        notices.push({ _tag: "Refused", address: a });
        return done({ ...s, conns });
      }
      return done(s, unexpected);
    }
    case PacketType.Accept: {
      if (c === undefined || c.state !== "ConnectingOutgoing") return done(s, unexpected);
      conns.set(key, { ...c, state: "Connected" });
      notices.push({ _tag: "Connected", address: a });
      return done({ ...s, conns });
    }
    case PacketType.Finish: {
      if (c === undefined) return done(s, unexpected);
      conns.delete(key);
      if (c.state !== "Connected") return done({ ...s, conns }, unexpected);
      out.push(makePacket(PacketType.Reset, a));
      notices.push({ _tag: "Closed", address: a, reset: false });
      return done({ ...s, conns });
    }
    case PacketType.Reset: {
      if (c === undefined) return done(s, unexpected);
      conns.delete(key);
      if (c.state === "ConnectingOutgoing") notices.push({ _tag: "Refused", address: a });
      else if (c.state === "Connected") notices.push({ _tag: "Closed", address: a, reset: !c.finished });
      return done({ ...s, conns });
    }
    case PacketType.Data: {
      if (c === undefined || c.state !== "Connected") return done(s, unexpected);
      if (p.payload.length === 0) return done(s);
      notices.push({ _tag: "Data", address: a, payload: p.payload.slice() });
      let next: SpecConn = { ...c, unread: c.unread + p.payload.length };
      if (hasPause(version) && !next.pausedPeer && next.unread > s.highWater) {
        out.push(makePacket(PacketType.Pause, a, Uint8Array.of(1)));
        next = { ...next, pausedPeer: true };
      }
      conns.set(key, next);
      return done({ ...s, conns });
    }
    case PacketType.Pause: {
      if (!hasPause(version)) return done(s, { _tag: "UnsupportedPacket", type: h.type });
      if (c === undefined || c.state !== "Connected" || p.payload.length !== 1) return done(s, unexpected);
      const paused = p.payload[0] !== 0;
      conns.set(key, { ...c, pausedByPeer: paused });
      notices.push({ _tag: "Paused", address: a, paused });
      return done({ ...s, conns });
    }
    default:
      return done(s, unexpected);
  }
};
