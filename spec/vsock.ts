/**
 * virtio-vsock, the reference model: the 44-byte packet header, packet assembly from TX and
 * RX descriptor chains (with the error order of the reference VMMs), credit arithmetic and
 * the connection state machine's allowed transitions.
 *
 * Pure functions over plain data; u64 fields are `bigint`. Descriptor chains come in as the
 * list of descriptors a walk produced (spec/queue.ts `walkChain(...).descriptors` fits).
 *
 * Where the references disagree on chain layouts, a `VsockProfile` selects whose behaviour
 * to model (VSOCK-PROFILE): cloud-hypervisor's packet.rs as of 2022 (the seed),
 * rust-vmm's virtio-vsock after PR 207 (issue 204: header and data in one descriptor), or
 * "virtio" (VIRTIO 1.2 §2.7.4 puts no layout on a message: data may follow the header in the
 * head descriptor and spread over any number of descriptors, which Linux >= 6.2 produces).
 */
import { locate, readBytes, type SpecMemory } from "./memory.ts";
import { err, ok, rule, type Result } from "./result.ts";

import { VIRTIO_F, VIRTIO_VSOCK_F } from "../wire/features.ts";
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../wire/split.ts";
import { VSOCK_PKT_HDR_SIZE } from "../wire/vsock.ts";

// The names are the wire vocabulary's (wire/vsock.ts); the model reads and writes the header
// itself (VSOCK-HDR-LAYOUT, below).

/** Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE, which both references reject above. */
export const MAX_PKT_BUF_SIZE = 64 * 1024;

/** Feature bits (VIRTIO 1.2 §5.10.3), as wire/features.ts numbers them. */
export const VIRTIO_VSOCK_F_STREAM = VIRTIO_VSOCK_F.STREAM;
export const VIRTIO_VSOCK_F_SEQPACKET = VIRTIO_VSOCK_F.SEQPACKET;
export const VIRTIO_F_VERSION_1 = VIRTIO_F.VERSION_1;

export const U64_MAX = (1n << 64n) - 1n;

export const RULES = [
  rule(
    "VSOCK-HDR-LAYOUT",
    "VIRTIO 1.2 §5.10.6; cloud-hypervisor vsock/packet.rs",
    "The header is 44 little-endian bytes: src_cid u64 @0, dst_cid u64 @8, src_port @16, dst_port @20, len @24, type u16 @28, op u16 @30, flags @32, buf_alloc @36, fwd_cnt @40.",
  ),
  rule(
    "VSOCK-HDR-ACCESSORS",
    "cloud-hypervisor vsock/packet.rs",
    "Every field has a getter and a chainable setter; set_flag ORs one bit into flags.",
  ),
  rule(
    "VSOCK-TX-ORDER",
    "cloud-hypervisor VsockPacket::from_tx_virtq_head",
    "TX assembly checks, in order: HdrDescMissing, UnreadableDescriptor (write-only head), HdrDescTooSmall (< 44), GuestMemory (header), len 0 means no data, InvalidPktLen (> 64 KiB), BufDescMissing, UnreadableDescriptor (write-only data), BufDescTooSmall, GuestMemory (data).",
  ),
  rule(
    "VSOCK-TX-EMPTY",
    "cloud-hypervisor VsockPacket::from_tx_virtq_head",
    "A TX packet whose header says len 0 has no data buffer and no data descriptor is looked at.",
  ),
  rule(
    "VSOCK-RX-ORDER",
    "cloud-hypervisor VsockPacket::from_rx_virtq_head",
    "RX assembly checks, in order: HdrDescMissing, UnwritableDescriptor (read-only head), HdrDescTooSmall, BufDescMissing, then GuestMemory for header and buffer.",
  ),
  rule(
    "VSOCK-RX-DATA-WRITABLE",
    "rust-vmm virtio-vsock from_rx_virtq_chain; VIRTIO 1.2 §2.7.4 (its get_single_slice maps a zero-length data descriptor as nothing, even outside memory: a profile in the conformance suite)",
    "RX data descriptors must be device-writable (UnwritableDescriptor); cloud-hypervisor's 2022 packet.rs does not check this (profile cloud-hypervisor models that).",
  ),
  rule(
    "VSOCK-LAYOUT-SINGLE",
    "rust-vmm vm-virtio issue 204 / PR 207; Linux 6.2",
    "Profiles rust-vmm and virtio accept header and data in one descriptor when the head has no next; cloud-hypervisor (2022) answers BufDescMissing.",
  ),
  rule(
    "VSOCK-TX-SPLIT-HDR",
    "VIRTIO 1.2 §2.7.4 Message Framing (device MUST NOT assume a descriptor arrangement); Linux vhost/vsock.c (copy_from_iter of the header); rust-vmm and cloud-hypervisor need the header in one descriptor",
    "Profile virtio gathers a TX header that spans readable descriptors (the data starts right after it); a chain whose readable descriptors end before 44 bytes is HdrDescTooSmall with the bytes found, a write-only one before then UnreadableDescriptor. Profiles rust-vmm and cloud-hypervisor answer HdrDescTooSmall for a head shorter than 44 bytes.",
  ),
  rule(
    "VSOCK-LAYOUT-SCATTER",
    "VIRTIO 1.2 §2.7.4; rust-vmm vm-virtio issue 216; Firecracker PR 4310",
    "Profile virtio gathers data from the head's bytes after the header and any number of following descriptors; cloud-hypervisor and rust-vmm read only the second descriptor.",
  ),
  rule(
    "VSOCK-PROFILE",
    "virtio-lab",
    "Where the references disagree the model follows the selected profile: cloud-hypervisor, rust-vmm or virtio.",
  ),
  rule(
    "VSOCK-BOUNDS",
    "vm-memory get_slice; virtio-lab",
    "Assembly touches guest memory only inside the chain's buffers; a buffer outside memory is GuestMemory, never an access.",
  ),
  rule(
    "VSOCK-CFG-CID",
    "VIRTIO 1.2 §5.10.4; Linux vhost_vsock_set_cid",
    "guest_cid is a u64 in config space @0; CIDs 0, 1, 2, 0xffffffff and u64 max are reserved and refused.",
  ),
  rule("VSOCK-FEATURES", "VIRTIO 1.2 §5.10.3", "The device offers VIRTIO_VSOCK_F_STREAM (and VERSION_1)."),
  rule(
    "VSOCK-QUEUES",
    "VIRTIO 1.2 §5.10.2",
    "Queue 0 is rx (device to driver), 1 is tx (driver to device), 2 is the event queue.",
  ),
  rule(
    "VSOCK-EVENT-RESET",
    "VIRTIO 1.2 §5.10.6.3",
    "On transport reset (e.g. migration) the device writes VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (id 0, le32) to an event buffer and drops every connection.",
  ),
  rule(
    "VSOCK-CONN-HANDSHAKE",
    "cloud-hypervisor vsock/csm/connection.rs; VIRTIO 1.2 §5.10.6.4",
    "REQUEST opens a connection, RESPONSE accepts it; a host-initiated connection waits in LocalInit, a guest-initiated one in PeerInit until the response is sent.",
  ),
  rule(
    "VSOCK-CONN-TIMEOUT",
    "cloud-hypervisor vsock/csm (CONN_REQUEST_TIMEOUT_MS, CONN_SHUTDOWN_TIMEOUT_MS)",
    "A LocalInit connection with no RESPONSE, or a closing connection not drained, is reset after its timeout on the clock.",
  ),
  rule(
    "VSOCK-CONN-SHUTDOWN",
    "VIRTIO 1.2 §5.10.6.6",
    "SHUTDOWN flags RCV (1) and SEND (2) are sticky hints; once both are set the connection is closed with RST.",
  ),
  rule("VSOCK-CONN-RST", "VIRTIO 1.2 §5.10.6.6", "RST ends a connection immediately in any state."),
  rule(
    "VSOCK-CONN-UNKNOWN",
    "cloud-hypervisor vsock/unix/muxer.rs; VIRTIO 1.2 §5.10.6.4",
    "A packet of unknown type, or an unexpected op for the connection's state, is answered with RST.",
  ),
  rule(
    "VSOCK-CONN-CID",
    "cloud-hypervisor vsock/unix/muxer.rs",
    "A packet whose src_cid is not the guest's CID or whose dst_cid is not the host's is dropped.",
  ),
  rule(
    "VSOCK-CREDIT-FREE",
    "VIRTIO 1.2 §5.10.6.3",
    "peer_free = peer_buf_alloc - (tx_cnt - peer_fwd_cnt), in wrapping u32 arithmetic.",
  ),
  rule(
    "VSOCK-CREDIT-LIMIT",
    "VIRTIO 1.2 §5.10.6.3",
    "A sender never has more bytes in flight than the receiver's buf_alloc: it sends at most peer_free.",
  ),
  rule(
    "VSOCK-CREDIT-OVERRUN",
    "cloud-hypervisor vsock/csm/connection.rs (TxBufFull)",
    "A peer that sends more than the credit it was given is reset.",
  ),
  rule(
    "VSOCK-CREDIT-UPDATE",
    "VIRTIO 1.2 §5.10.6.3; cloud-hypervisor CONN_CREDIT_UPDATE_THRESHOLD",
    "CREDIT_UPDATE is sent when the peer's view of our free space falls below the threshold after we freed some, and whenever the peer sends CREDIT_REQUEST.",
  ),
  rule(
    "VSOCK-HOSTILE",
    "virtio-lab",
    "No guest packet (bogus op, type, CID, credit) throws or stops another connection.",
  ),
  rule(
    "VSOCK-UNIX-CONNECT",
    "cloud-hypervisor vsock/unix/muxer.rs",
    "A host program connects to the Unix socket and writes `CONNECT <port>\\n`; when the guest accepts it reads `OK <local port>\\n`.",
  ),
  rule(
    "VSOCK-UNIX-LISTEN",
    "cloud-hypervisor vsock/unix/muxer.rs",
    "A guest REQUEST to port P is forwarded to the Unix socket `<path>_<P>`; if nothing listens there the guest gets RST.",
  ),
  rule(
    "VSOCK-E2E",
    "VIRTIO 1.2 §5.10.6",
    "Every byte written on a connection arrives once, in order, on that connection.",
  ),
] as const;

// ---------------------------------------------------------------------------------------
// Header (VSOCK-HDR-LAYOUT, VSOCK-HDR-ACCESSORS)

export interface VsockHeader {
  readonly srcCid: bigint;
  readonly dstCid: bigint;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly len: number;
  readonly type: number;
  readonly op: number;
  readonly flags: number;
  readonly bufAlloc: number;
  readonly fwdCnt: number;
}

export const emptyHeader: VsockHeader = {
  srcCid: 0n,
  dstCid: 0n,
  srcPort: 0,
  dstPort: 0,
  len: 0,
  type: 0,
  op: 0,
  flags: 0,
  bufAlloc: 0,
  fwdCnt: 0,
};

const putLe = (out: Uint8Array, off: number, width: number, value: bigint): void => {
  let v = BigInt.asUintN(width * 8, value);
  for (let i = 0; i < width; i++) {
    out[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
};

const getLe = (bytes: Uint8Array, off: number, width: number): bigint => {
  let v = 0n;
  for (let i = width - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[off + i] ?? 0);
  return v;
};

/**
 * VSOCK-HDR-LAYOUT as the model reads it: struct virtio_vsock_hdr's fields in declaration
 * order with their widths, packed, little-endian (properties/wire.test.ts checks that the
 * offsets this gives are wire/vsock.ts's HDROFF and that they add up to its size).
 */
export const HEADER_FIELDS: readonly (readonly [keyof VsockHeader, 2 | 4 | 8])[] = [
  ["srcCid", 8],
  ["dstCid", 8],
  ["srcPort", 4],
  ["dstPort", 4],
  ["len", 4],
  ["type", 2],
  ["op", 2],
  ["flags", 4],
  ["bufAlloc", 4],
  ["fwdCnt", 4],
];

export const encodeHeader = (h: VsockHeader): Uint8Array => {
  const out = new Uint8Array(VSOCK_PKT_HDR_SIZE);
  let at = 0;
  for (const [field, width] of HEADER_FIELDS) {
    putLe(out, at, width, BigInt(h[field]));
    at += width;
  }
  return out;
};

/** Reads the first 44 bytes; shorter input reads as zeros past its end. */
export const decodeHeader = (bytes: Uint8Array): VsockHeader => {
  const h: Record<string, number | bigint> = {};
  let at = 0;
  for (const [field, width] of HEADER_FIELDS) {
    const v = getLe(bytes, at, width);
    h[field] = width === 8 ? v : Number(v);
    at += width;
  }
  return h as unknown as VsockHeader;
};

/** VSOCK-HDR-ACCESSORS: set_flag ORs the bit (as a u32). */
export const setFlag = (h: VsockHeader, flag: number): VsockHeader => ({
  ...h,
  flags: (h.flags | flag) >>> 0,
});

// ---------------------------------------------------------------------------------------
// Packet assembly (VSOCK-TX-ORDER, VSOCK-RX-ORDER, VSOCK-LAYOUT-*, VSOCK-PROFILE)

export type VsockProfileName = "cloud-hypervisor" | "rust-vmm" | "virtio";

export interface VsockProfile {
  readonly name: VsockProfileName;
  /** Header and data in the head descriptor when it has no next (VSOCK-LAYOUT-SINGLE). */
  readonly singleDescriptor: boolean;
  /** Data gathered over any number of descriptors (VSOCK-LAYOUT-SCATTER). */
  readonly scatter: boolean;
  /**
   * RX data descriptors must be write-only (VSOCK-RX-DATA-WRITABLE). Without it, the 2022
   * cloud-hypervisor order: the chain's shape is checked first, both buffers mapped last.
   */
  readonly rxDataWritable: boolean;
  /** TX maps the whole second descriptor as the data buffer, not just `len` bytes of it. */
  readonly txMapWholeData: boolean;
  /**
   * A TX header may span descriptors (VSOCK-TX-SPLIT-HDR; needs `scatter`): the data starts
   * where the header ends. Without it a head shorter than 44 bytes is HdrDescTooSmall.
   */
  readonly splitHeader: boolean;
}

export const PROFILES: Readonly<Record<VsockProfileName, VsockProfile>> = {
  "cloud-hypervisor": {
    name: "cloud-hypervisor",
    singleDescriptor: false,
    scatter: false,
    rxDataWritable: false,
    txMapWholeData: true,
    splitHeader: false,
  },
  "rust-vmm": {
    name: "rust-vmm",
    singleDescriptor: true,
    scatter: false,
    rxDataWritable: true,
    txMapWholeData: false,
    splitHeader: false,
  },
  virtio: {
    name: "virtio",
    singleDescriptor: true,
    scatter: true,
    rxDataWritable: true,
    txMapWholeData: false,
    splitHeader: true,
  },
};

export type VsockPacketError =
  | { readonly _tag: "HdrDescMissing" }
  | { readonly _tag: "UnreadableDescriptor" }
  | { readonly _tag: "UnwritableDescriptor" }
  | { readonly _tag: "HdrDescTooSmall"; readonly len: number }
  | { readonly _tag: "InvalidPktLen"; readonly len: number }
  | { readonly _tag: "BufDescMissing" }
  | { readonly _tag: "BufDescTooSmall" }
  /** rust-vmm only: an RX data descriptor larger than the maximum payload. */
  | { readonly _tag: "DescriptorLengthTooLong"; readonly len: number }
  | { readonly _tag: "GuestMemory" };

/** One descriptor of a walked chain (spec/queue.ts SpecDescriptor fits). */
export interface ChainDesc {
  readonly addr: bigint;
  readonly len: number;
  readonly flags: number;
}

export interface Segment {
  readonly addr: bigint;
  readonly len: number;
}

export interface SpecPacket {
  /** Guest address of the 44-byte header. */
  readonly hdrAddr: bigint;
  /** The header as read (TX); null for RX, whose header the device writes. */
  readonly header: VsockHeader | null;
  /** The data buffer(s) the device may read (TX) or write (RX), in order. */
  readonly data: readonly Segment[];
}

const isWrite = (d: ChainDesc): boolean => (d.flags & VIRTQ_DESC_F_WRITE) !== 0;
const hasNext = (d: ChainDesc): boolean => (d.flags & VIRTQ_DESC_F_NEXT) !== 0;
const inMemory = (mem: SpecMemory, s: Segment): boolean => locate(mem, s.addr, BigInt(s.len)).ok;

/** The chain a ring walk would give: it ends at the first descriptor without NEXT. */
const chainOf = (descs: readonly ChainDesc[]): readonly ChainDesc[] => {
  const end = descs.findIndex((d) => !hasNext(d));
  return end < 0 ? descs : descs.slice(0, end + 1);
};

const E = {
  hdrMissing: err({ _tag: "HdrDescMissing" } as const),
  unreadable: err({ _tag: "UnreadableDescriptor" } as const),
  unwritable: err({ _tag: "UnwritableDescriptor" } as const),
  bufMissing: err({ _tag: "BufDescMissing" } as const),
  bufTooSmall: err({ _tag: "BufDescTooSmall" } as const),
  memory: err({ _tag: "GuestMemory" } as const),
};

/** VSOCK-TX-ORDER under the given profile. */
export const assembleTx = (
  mem: SpecMemory,
  descs: readonly ChainDesc[],
  profile: VsockProfile,
): Result<SpecPacket, VsockPacketError> => {
  const chain = chainOf(descs);
  const head = chain[0];
  if (head === undefined) return E.hdrMissing;
  if (isWrite(head)) return E.unreadable;
  const hdrAddr = head.addr;
  if (head.len < VSOCK_PKT_HDR_SIZE && profile.splitHeader && profile.scatter) {
    // VSOCK-TX-SPLIT-HDR: the header's bytes from as many readable descriptors as it takes.
    const bytes = new Uint8Array(VSOCK_PKT_HDR_SIZE);
    let got = 0;
    let i = 0;
    let used = 0;
    for (; got < VSOCK_PKT_HDR_SIZE; i++) {
      const d = chain[i];
      if (d === undefined) return err({ _tag: "HdrDescTooSmall", len: got });
      if (isWrite(d)) return E.unreadable;
      used = Math.min(d.len, VSOCK_PKT_HDR_SIZE - got);
      if (used > 0) {
        const r = readBytes(mem, d.addr, used);
        if (!r.ok) return E.memory;
        bytes.set(r.value, got);
      }
      got += used;
    }
    const last = chain[i - 1]!;
    const header = decodeHeader(bytes);
    if (header.len === 0) return ok({ hdrAddr, header, data: [] });
    if (header.len > MAX_PKT_BUF_SIZE) return err({ _tag: "InvalidPktLen", len: header.len });
    const data: Segment[] = [];
    let remaining = header.len;
    const rest = last.len - used;
    if (rest > 0) {
      const take = Math.min(rest, remaining);
      data.push({ addr: last.addr + BigInt(used), len: take });
      remaining -= take;
    }
    for (let first = true; remaining > 0; i++, first = false) {
      const d = chain[i];
      if (d === undefined) return first && data.length === 0 ? E.bufMissing : E.bufTooSmall;
      if (isWrite(d)) return E.unreadable;
      const take = Math.min(d.len, remaining);
      if (take > 0) data.push({ addr: d.addr, len: take });
      remaining -= take;
    }
    for (const s of data) if (!inMemory(mem, s)) return E.memory;
    return ok({ hdrAddr, header, data });
  }
  if (head.len < VSOCK_PKT_HDR_SIZE) return err({ _tag: "HdrDescTooSmall", len: head.len });
  const hdrBytes = readBytes(mem, head.addr, VSOCK_PKT_HDR_SIZE);
  if (!hdrBytes.ok) return E.memory;
  const header = decodeHeader(hdrBytes.value);
  if (header.len === 0) return ok({ hdrAddr, header, data: [] });
  if (header.len > MAX_PKT_BUF_SIZE) return err({ _tag: "InvalidPktLen", len: header.len });
  const len = header.len;

  if (profile.scatter) {
    const data: Segment[] = [];
    let remaining = len;
    const rest = head.len - VSOCK_PKT_HDR_SIZE;
    if (rest > 0) {
      const take = Math.min(rest, remaining);
      data.push({ addr: head.addr + BigInt(VSOCK_PKT_HDR_SIZE), len: take });
      remaining -= take;
    }
    for (let i = 1; remaining > 0; i++) {
      const d = chain[i];
      if (d === undefined) return i === 1 && data.length === 0 ? E.bufMissing : E.bufTooSmall;
      if (isWrite(d)) return E.unreadable;
      const take = Math.min(d.len, remaining);
      if (take > 0) data.push({ addr: d.addr, len: take });
      remaining -= take;
    }
    for (const s of data) if (!inMemory(mem, s)) return E.memory;
    return ok({ hdrAddr, header, data });
  }

  if (profile.singleDescriptor && !hasNext(head) && head.len - VSOCK_PKT_HDR_SIZE >= len) {
    const s = { addr: head.addr + BigInt(VSOCK_PKT_HDR_SIZE), len };
    if (!inMemory(mem, s)) return E.memory;
    return ok({ hdrAddr, header, data: [s] });
  }
  const d = chain[1];
  if (d === undefined) return E.bufMissing;
  if (isWrite(d)) return E.unreadable;
  if (d.len < len) return E.bufTooSmall;
  // cloud-hypervisor maps the whole data descriptor; rust-vmm exactly len bytes of it.
  const s = { addr: d.addr, len: profile.txMapWholeData ? d.len : len };
  if (!inMemory(mem, s)) return E.memory;
  return ok({ hdrAddr, header, data: [s] });
};

/** VSOCK-RX-ORDER under the given profile. */
export const assembleRx = (
  mem: SpecMemory,
  descs: readonly ChainDesc[],
  profile: VsockProfile,
): Result<SpecPacket, VsockPacketError> => {
  const chain = chainOf(descs);
  const head = chain[0];
  if (head === undefined) return E.hdrMissing;
  if (!isWrite(head)) return E.unwritable;
  if (head.len < VSOCK_PKT_HDR_SIZE) return err({ _tag: "HdrDescTooSmall", len: head.len });
  const hdrAddr = head.addr;
  const hdrSeg = { addr: head.addr, len: VSOCK_PKT_HDR_SIZE };

  if (!profile.rxDataWritable) {
    // The 2022 reference checks the chain's shape first and maps both buffers last.
    if (!hasNext(head)) return E.bufMissing;
    const d = chain[1];
    if (d === undefined) return E.bufMissing;
    if (!inMemory(mem, hdrSeg)) return E.memory;
    const s = { addr: d.addr, len: d.len };
    if (!inMemory(mem, s)) return E.memory;
    return ok({ hdrAddr, header: null, data: [s] });
  }

  if (!inMemory(mem, hdrSeg)) return E.memory;
  const rest = head.len - VSOCK_PKT_HDR_SIZE;
  if (profile.scatter) {
    const data: Segment[] = [];
    let room = MAX_PKT_BUF_SIZE;
    if (rest > 0) {
      const take = Math.min(rest, room);
      data.push({ addr: head.addr + BigInt(VSOCK_PKT_HDR_SIZE), len: take });
      room -= take;
    }
    for (let i = 1; room > 0 && i < chain.length; i++) {
      const d = chain[i]!;
      if (!isWrite(d)) return E.unwritable;
      const take = Math.min(d.len, room);
      if (take > 0) data.push({ addr: d.addr, len: take });
      room -= take;
    }
    if (data.length === 0) return E.bufMissing;
    for (const s of data) if (!inMemory(mem, s)) return E.memory;
    return ok({ hdrAddr, header: null, data });
  }

  // rust-vmm
  if (!hasNext(head) && rest > 0) {
    const s = { addr: head.addr + BigInt(VSOCK_PKT_HDR_SIZE), len: rest };
    if (!inMemory(mem, s)) return E.memory;
    return ok({ hdrAddr, header: null, data: [s] });
  }
  if (!hasNext(head)) return E.bufMissing;
  const d = chain[1];
  if (d === undefined) return E.bufMissing;
  if (!isWrite(d)) return E.unwritable;
  if (d.len > MAX_PKT_BUF_SIZE) return err({ _tag: "DescriptorLengthTooLong", len: d.len });
  const s = { addr: d.addr, len: d.len };
  if (!inMemory(mem, s)) return E.memory;
  return ok({ hdrAddr, header: null, data: [s] });
};

// ---------------------------------------------------------------------------------------
// Credit (VSOCK-CREDIT-FREE, VSOCK-CREDIT-LIMIT)

/** Bytes the peer can still take: wrapping u32 arithmetic, as the counters wrap. */
export const peerFree = (peerBufAlloc: number, txCnt: number, peerFwdCnt: number): number =>
  (peerBufAlloc - ((txCnt - peerFwdCnt) >>> 0)) >>> 0;

/** Bytes in flight from a sender that has sent `sent` and whose receiver forwarded `fwd`. */
export const inFlight = (sent: number, fwd: number): number => (sent - fwd) >>> 0;

// ---------------------------------------------------------------------------------------
// Connection states (VSOCK-CONN-*)

export type ConnState = "LocalInit" | "PeerInit" | "Established" | "LocalClosed" | "PeerClosed" | "Killed";

/** What happened to a connection, as the state machine sees it. */
export type ConnEvent =
  | "RecvResponse" // guest accepted a host-initiated connection
  | "SendResponse" // host accepted a guest-initiated connection (response sent)
  | "PeerShutdown" // guest SHUTDOWN with some flags, not yet both
  | "PeerShutdownBoth" // guest SHUTDOWN with RCV|SEND set (accumulated)
  | "LocalShutdown" // host side closed its stream
  | "Rst" // RST received or sent
  | "Unexpected" // unknown op for the state: reset
  | "Overrun" // peer exceeded its credit: reset
  | "Timeout"; // request or shutdown timed out: reset

/** The state after `event`, or null when the spec forbids the event in that state. */
export const nextState = (s: ConnState, e: ConnEvent): ConnState | null => {
  if (e === "Rst" || e === "Unexpected" || e === "Overrun" || e === "Timeout") return "Killed";
  switch (s) {
    case "LocalInit":
      return e === "RecvResponse" ? "Established" : null;
    case "PeerInit":
      return e === "SendResponse" ? "Established" : null;
    case "Established":
      if (e === "PeerShutdown") return "PeerClosed";
      if (e === "PeerShutdownBoth") return "Killed";
      if (e === "LocalShutdown") return "LocalClosed";
      return null;
    case "PeerClosed":
      if (e === "PeerShutdown") return "PeerClosed";
      if (e === "PeerShutdownBoth" || e === "LocalShutdown") return "Killed";
      return null;
    case "LocalClosed":
      if (e === "PeerShutdown" || e === "PeerShutdownBoth") return "Killed";
      return null;
    case "Killed":
      return null;
  }
};
