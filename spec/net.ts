/**
 * virtio-net, the reference model (VIRTIO 1.2 §5.1; squib `net.rs`; Firecracker `tap.rs`).
 *
 * Pure functions over plain data: the feature bits the device offers for a configuration
 * and the rules an acknowledged set must follow, the configuration space layout, the
 * `struct virtio_net_hdr` codec, what the device makes of a TX chain (the frame the
 * backend gets, or a counted drop) and where an RX frame lands in a chain's writable
 * descriptors. impl/net/ is checked against these functions by properties/net*.test.ts.
 */
import { err, ok, rule, type Result } from "./result.ts";
import { NET_FEATURE_DEPENDENCIES, VIRTIO_NET_F as F, featureBit as bit } from "../wire/features.ts";
import {
  NET_CONFIG_SIZE as CONFIG_SIZE,
  NET_MTU_MAX as MTU_MAX,
  NET_MTU_MIN as MTU_MIN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_S_LINK_UP,
} from "../wire/net.ts";

export const RULES = [
  rule(
    "NET-QUEUES",
    "VIRTIO 1.2 §5.1.2",
    "Queue 0 is receiveq1, queue 1 is transmitq1; no control queue is offered.",
  ),
  rule(
    "NET-FEAT-OFFER",
    "VIRTIO 1.2 §5.1.3; squib net.rs NetDevice::new",
    "The device offers MAC only with a configured MAC, MTU only with a configured MTU, STATUS, CSUM/GUEST_CSUM and MRG_RXBUF only when configured, and always VERSION_1.",
  ),
  rule(
    "NET-FEAT-ACK-SUBSET",
    "VIRTIO 1.2 §2.2.1",
    "The driver acknowledges a subset of the offered features; any other bit is FeatureNotOffered and nothing is recorded.",
  ),
  rule(
    "NET-FEAT-DEPS",
    "VIRTIO 1.2 §5.1.3.1",
    "A feature whose requirement (e.g. GUEST_TSO4 needs GUEST_CSUM, HOST_TSO4 needs CSUM, MQ needs CTRL_VQ) is not acknowledged with it is FeatureDependency.",
  ),
  rule(
    "NET-FEAT-RECORD",
    "squib net.rs set_acked_features",
    "A valid acknowledgement is recorded and read back unchanged.",
  ),
  rule(
    "NET-HDR-LEN",
    "VIRTIO 1.2 §5.1.6",
    "The virtio_net_hdr is 12 bytes when VERSION_1 or MRG_RXBUF is acknowledged and 10 bytes otherwise (legacy).",
  ),
  rule(
    "NET-HDR-LAYOUT",
    "VIRTIO 1.2 §5.1.6",
    "Header fields: flags u8 @0, gso_type u8 @1, hdr_len u16 @2, gso_size u16 @4, csum_start u16 @6, csum_offset u16 @8, num_buffers u16 @10, little-endian.",
  ),
  rule(
    "NET-CFG-LAYOUT",
    "VIRTIO 1.2 §5.1.4",
    "Config space: mac u8[6] @0, status u16 @6, max_virtqueue_pairs u16 @8, mtu u16 @10 (squib puts mtu at 12; the spec says 10).",
  ),
  rule(
    "NET-CFG-PAST-END",
    "squib net.rs read_config",
    "Config bytes past the end of the layout read as zero.",
  ),
  rule("NET-CFG-MTU", "VIRTIO 1.2 §5.1.4.1", "A configured MTU lies in 68..=65535; otherwise InvalidMtu."),
  rule("NET-CFG-MAC", "VIRTIO 1.2 §5.1.4", "A configured MAC is 6 bytes; otherwise InvalidMac."),
  rule(
    "NET-CFG-STATUS",
    "VIRTIO 1.2 §5.1.4",
    "With STATUS offered, status reads VIRTIO_NET_S_LINK_UP (1) while the link is up, 0 otherwise.",
  ),
  rule(
    "NET-CFG-WRITE",
    "VIRTIO 1.2 §5.1.4.2",
    "The modern device's config space is read-only: writes change nothing.",
  ),
  rule(
    "NET-TX-GATHER",
    "squib net.rs drain_tx",
    "A TX packet is the concatenation, in chain order, of the chain's device-readable descriptors.",
  ),
  rule(
    "NET-TX-HDR-STRIP",
    "VIRTIO 1.2 §5.1.6.2; squib net.rs drain_tx",
    "The first header-length bytes are the virtio_net_hdr; the frame the backend gets is the rest, exactly.",
  ),
  rule(
    "NET-TX-SHORT",
    "virtio-lab (squib skips silently)",
    "A chain whose readable part is not longer than the header is completed and counted as TxFrameTooShort, never silently skipped.",
  ),
  rule(
    "NET-TX-MAX",
    "Firecracker net device MAX_BUFFER_SIZE",
    "A frame longer than the device's maximum frame length is completed and counted as TxFrameTooLong.",
  ),
  rule(
    "NET-TX-CHAIN-ERROR",
    "Firecracker net device; VIRTIO 1.2 §2.7.5",
    "A chain that is broken (bad next, loop, bad indirect table) or refers outside guest memory is completed and counted as dropped.",
  ),
  rule("NET-TX-USED-LEN", "VIRTIO 1.2 §5.1.6.2", "Every TX chain is completed with used length 0."),
  rule(
    "NET-TX-INTERCEPT",
    "squib net.rs FrameInterceptor",
    "A TX frame the interceptor takes never reaches the backend.",
  ),
  rule(
    "NET-NOTIFY",
    "VIRTIO 1.2 §2.7.10; Firecracker queue.rs prepare_kick",
    "After a batch the device signals the queue's interrupt only when it completed chains and EVENT_IDX (or its absence) says so.",
  ),
  rule(
    "NET-RX-ORDER",
    "squib net.rs drain_rx",
    "RX frames are delivered in order: the interceptor's frames first, then the backend's, each FIFO.",
  ),
  rule(
    "NET-RX-HDR",
    "VIRTIO 1.2 §5.1.6.4",
    "A frame the device builds gets a header with flags 0, gso_type NONE, other fields 0 and, for 12-byte headers, num_buffers = the chains used (1 without MRG_RXBUF).",
  ),
  rule(
    "NET-RX-FLAGS",
    "VIRTIO 1.2 §5.1.6.4.1",
    "Without GUEST_CSUM the device sets flags to zero, also in a header a backend supplied (a TAP's DATA_VALID). VIRTIO 1.2's text; a later TC correction (virtio-comment 2024-01, Linux 604141c) lets DATA_VALID through: the conservative 1.2 reading is kept.",
  ),
  rule(
    "NET-CSUM-PASSTHROUGH",
    "VIRTIO 1.2 §5.1.6.2; Firecracker net device",
    "CSUM/GUEST_CSUM are pass-through: they need a backend that carries the virtio_net_hdr (a TAP); with a frame backend the device is refused (CsumNeedsHeaderBackend).",
  ),
  rule(
    "NET-RX-USED-LEN",
    "VIRTIO 1.2 §2.7.8",
    "Without MRG_RXBUF the used length is min(header + frame, writable capacity): the bytes written; a frame that does not fit is truncated.",
  ),
  rule(
    "NET-RX-MRG",
    "VIRTIO 1.2 §5.1.6.4.1",
    "With MRG_RXBUF a frame spans as many chains as needed, each used with the bytes written into it; it waits when the available chains cannot hold it.",
  ),
  rule(
    "NET-FEAT-LOCKED",
    "VIRTIO 1.2 §3.1.1 (FEATURES_OK before DRIVER_OK)",
    "Features are acked before the device is activated; an ack after activation is refused (FeaturesLocked) and changes nothing.",
  ),
  rule(
    "NET-RX-NO-ROOM",
    "virtio-lab (found by the hostile-guest scenario); Firecracker net device: a chain it cannot write is returned, the frame deferred",
    "An RX chain with no writable byte is completed with used length 0 and counted as an RX chain error; no frame is taken for it, so none is lost.",
  ),
  rule(
    "NET-RX-WRITABLE-ONLY",
    "VIRTIO 1.2 §2.7.4.1",
    "The device writes only into device-writable descriptors, never outside them and never into readable ones.",
  ),
  rule(
    "NET-RX-PENDING-BOUND",
    "virtio-lab",
    "While the guest has no RX buffers frames wait in a bounded queue; frames beyond its bound are dropped and counted.",
  ),
  rule(
    "NET-POOL-BOUND",
    "squib net.rs FramePool",
    "The frame pool keeps at most its capacity of free buffers.",
  ),
  rule("NET-POOL-REUSE", "squib net.rs FramePool", "Acquire reuses a released buffer before allocating."),
  rule("NET-POOL-CLEAN", "squib net.rs FramePool", "An acquired buffer is empty (length 0) and zero-filled."),
  rule(
    "NET-BACKEND-LOOPBACK",
    "squib net.rs LoopbackBackend",
    "The loopback backend delivers every frame sent to it, in order, on the next RX.",
  ),
  rule(
    "NET-INTERCEPT-MAC",
    "squib net.rs ReplayInterceptor; Firecracker MMDS",
    "The MAC interceptor takes exactly the frames whose destination MAC is its own, and injects its replies on RX.",
  ),
  rule(
    "NET-HOSTILE",
    "virtio-lab",
    "Arbitrary guest chains never throw, never touch memory outside their descriptors, and the device keeps serving the next well-formed chain.",
  ),
  rule(
    "TAP-OPEN-FLAGS",
    "Firecracker tap.rs open_named",
    "A TAP is opened on /dev/net/tun with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR.",
  ),
  rule(
    "TAP-IFNAME-LEN",
    "Firecracker tap.rs build_terminated_if_name",
    "An interface name of 16 bytes or more is InvalidIfname; 15 bytes is accepted.",
  ),
  rule(
    "TAP-IFNAME-KERNEL",
    "Firecracker tap.rs test_tap_name",
    "An empty name or a pattern such as tap%d gets a kernel-chosen name, reported back.",
  ),
  rule(
    "TAP-EXCLUSIVE",
    "Firecracker tap.rs test_tap_exclusive_open",
    "Opening a name that is already open fails.",
  ),
  rule(
    "TAP-OFFLOAD",
    "Firecracker tap.rs set_offload",
    "TUNSETOFFLOAD sets the offload flags; an error is SetOffloadFlags.",
  ),
  rule(
    "TAP-VNET-HDR-SZ",
    "Firecracker tap.rs set_vnet_hdr_size",
    "TUNSETVNETHDRSZ sets the vnet header size (10 or 12 bytes as negotiated); an error is SetSizeOfVnetHdr.",
  ),
  rule(
    "TAP-WRITEV",
    "Firecracker tap.rs write_iovec",
    "A TX frame is written with one writev straight from the guest-memory segments, header first.",
  ),
  rule(
    "TAP-READV",
    "Firecracker tap.rs read_iovec",
    "An RX frame is read with one readv straight into the guest's writable segments, header first.",
  ),
  rule("TAP-WAIT", "virtio-lab", "Waiting for RX frames neither busy-polls nor blocks the event loop."),
  rule(
    "TAP-SCOPE",
    "virtio-lab",
    "The TAP fd, the interface and the device are Scope resources, released when the scope closes, on failure too.",
  ),
  rule(
    "TAP-E2E",
    "virtio-lab",
    "On a real TAP, the kernel answers an ARP request and an ICMP echo request sent through the TX queue, and its replies arrive through the RX queue.",
  ),
] as const;

export type NetRuleId = (typeof RULES)[number]["id"];

// --- feature bits (VIRTIO 1.2 §5.1.3) ---------------------------------------------------

/** §5.1.3.1, from the wire vocabulary (wire/features.ts). */
export const FEATURE_DEPENDENCIES = NET_FEATURE_DEPENDENCIES;

export type FeatureError =
  | { readonly _tag: "FeatureNotOffered"; readonly bits: bigint }
  | { readonly _tag: "FeatureDependency"; readonly feature: number; readonly requires: readonly number[] };

/** NET-FEAT-ACK-SUBSET then NET-FEAT-DEPS (the first broken dependency in table order). */
export const validateAck = (offered: bigint, acked: bigint): Result<bigint, FeatureError> => {
  const extra = acked & ~offered;
  if (extra !== 0n) return err({ _tag: "FeatureNotOffered", bits: extra });
  for (const d of FEATURE_DEPENDENCIES) {
    if ((acked & bit(d.feature)) === 0n) continue;
    const have = d.requires.map((r) => (acked & bit(r)) !== 0n);
    const satisfied = d.anyOf === true ? have.some((h) => h) : have.every((h) => h);
    if (!satisfied) return err({ _tag: "FeatureDependency", feature: d.feature, requires: d.requires });
  }
  return ok(acked);
};

/** NET-HDR-LEN. */
export const headerLength = (acked: bigint): 10 | 12 =>
  (acked & (bit(F.VERSION_1) | bit(F.MRG_RXBUF))) !== 0n ? 12 : 10;

// --- configuration -----------------------------------------------------------------------

export interface NetConfig {
  /** Guest MAC: MAC is offered only when present (NET-FEAT-OFFER). */
  readonly mac?: readonly number[] | undefined;
  /** MTU: MTU is offered only when present; 68..=65535 (NET-CFG-MTU). */
  readonly mtu?: number | undefined;
  /** Offer STATUS (link state in config space). */
  readonly status?: boolean | undefined;
  /** Offer CSUM and GUEST_CSUM (checksum offload passed through to the backend). */
  readonly csum?: boolean | undefined;
  /** Offer MRG_RXBUF. */
  readonly mrgRxbuf?: boolean | undefined;
  /** Offer VIRTIO_F_RING_EVENT_IDX. */
  readonly eventIdx?: boolean | undefined;
}

export type ConfigError =
  | { readonly _tag: "InvalidMtu"; readonly mtu: number }
  | { readonly _tag: "InvalidMac"; readonly length: number };

export const validateConfig = (c: NetConfig): Result<NetConfig, ConfigError> => {
  if (
    c.mac !== undefined &&
    (c.mac.length !== 6 || c.mac.some((b) => !Number.isInteger(b) || b < 0 || b > 255))
  ) {
    return err({ _tag: "InvalidMac", length: c.mac.length });
  }
  if (c.mtu !== undefined && !(Number.isInteger(c.mtu) && c.mtu >= MTU_MIN && c.mtu <= MTU_MAX)) {
    return err({ _tag: "InvalidMtu", mtu: c.mtu });
  }
  return ok(c);
};

/** NET-FEAT-OFFER. */
export const offeredFeatures = (c: NetConfig): bigint => {
  let f = bit(F.VERSION_1);
  if (c.mac !== undefined) f |= bit(F.MAC);
  if (c.mtu !== undefined) f |= bit(F.MTU);
  if (c.status === true) f |= bit(F.STATUS);
  if (c.csum === true) f |= bit(F.CSUM) | bit(F.GUEST_CSUM);
  if (c.mrgRxbuf === true) f |= bit(F.MRG_RXBUF);
  if (c.eventIdx === true) f |= bit(F.RING_EVENT_IDX);
  return f;
};

/** NET-CFG-LAYOUT: the whole config space, byte by byte. */
export const configSpace = (c: NetConfig, linkUp: boolean): Uint8Array => {
  const out = new Uint8Array(CONFIG_SIZE);
  if (c.mac !== undefined) for (let i = 0; i < 6; i++) out[i] = c.mac[i] ?? 0;
  const status = c.status === true && linkUp ? VIRTIO_NET_S_LINK_UP : 0;
  out[6] = status & 0xff;
  out[7] = status >> 8;
  // One queue pair; the field is only meaningful with MQ, which is never offered.
  out[8] = 1;
  out[9] = 0;
  const mtu = c.mtu ?? 0;
  out[10] = mtu & 0xff;
  out[11] = (mtu >> 8) & 0xff;
  return out;
};

/** NET-CFG-PAST-END: `len` bytes from `offset`, zero beyond the layout. */
export const readConfig = (c: NetConfig, linkUp: boolean, offset: number, len: number): Uint8Array => {
  const full = configSpace(c, linkUp);
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = full[offset + i] ?? 0;
  return out;
};

// --- virtio_net_hdr (NET-HDR-LAYOUT) -------------------------------------------------------

export interface NetHeader {
  readonly flags: number;
  readonly gsoType: number;
  readonly hdrLen: number;
  readonly gsoSize: number;
  readonly csumStart: number;
  readonly csumOffset: number;
  /** Present in the 12-byte form only; 0 when decoding a 10-byte header. */
  readonly numBuffers: number;
}

export const encodeHeader = (h: NetHeader, len: 10 | 12): Uint8Array => {
  const out = new Uint8Array(len);
  const u16 = (at: number, v: number): void => {
    out[at] = v & 0xff;
    out[at + 1] = (v >>> 8) & 0xff;
  };
  out[0] = h.flags & 0xff;
  out[1] = h.gsoType & 0xff;
  u16(2, h.hdrLen);
  u16(4, h.gsoSize);
  u16(6, h.csumStart);
  u16(8, h.csumOffset);
  if (len === 12) u16(10, h.numBuffers);
  return out;
};

export const decodeHeader = (b: Uint8Array, len: 10 | 12): NetHeader => {
  const u16 = (at: number): number => (b[at] ?? 0) | ((b[at + 1] ?? 0) << 8);
  return {
    flags: b[0] ?? 0,
    gsoType: b[1] ?? 0,
    hdrLen: u16(2),
    gsoSize: u16(4),
    csumStart: u16(6),
    csumOffset: u16(8),
    numBuffers: len === 12 ? u16(10) : 0,
  };
};

// --- TX (NET-TX-*) -----------------------------------------------------------------------

/** Largest frame the device forwards: Ethernet header + VLAN tag + MTU (1500 without MTU). */
export const maxFrameLength = (c: NetConfig): number => (c.mtu ?? 1500) + 18;

export type TxDrop =
  | { readonly _tag: "TxFrameTooShort"; readonly readable: number; readonly headerLength: number }
  | { readonly _tag: "TxFrameTooLong"; readonly length: number; readonly max: number }
  | { readonly _tag: "TxChainError"; readonly reason: string };

/** A descriptor as the reference model sees it: its bytes (when inside memory) and direction. */
export interface SpecTxDescriptor {
  readonly write: boolean;
  /** undefined when the descriptor lies outside guest memory. */
  readonly bytes: Uint8Array | undefined;
}

/**
 * The frame the backend gets from a TX chain, or why the chain is dropped. `broken` is the
 * chain walk's early end (null for a whole chain). Used length is always 0 (NET-TX-USED-LEN).
 */
export const txFrame = (
  descriptors: readonly SpecTxDescriptor[],
  broken: string | null,
  hdrLen: 10 | 12,
  maxFrame: number,
): Result<Uint8Array, TxDrop> => {
  if (broken !== null) return err({ _tag: "TxChainError", reason: broken });
  const parts: Uint8Array[] = [];
  for (const d of descriptors) {
    if (d.write) continue;
    if (d.bytes === undefined) return err({ _tag: "TxChainError", reason: "InvalidGuestAddress" });
    parts.push(d.bytes);
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  if (total <= hdrLen) return err({ _tag: "TxFrameTooShort", readable: total, headerLength: hdrLen });
  if (total - hdrLen > maxFrame)
    return err({ _tag: "TxFrameTooLong", length: total - hdrLen, max: maxFrame });
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return ok(all.slice(hdrLen));
};

// --- RX (NET-RX-*) -----------------------------------------------------------------------

/** The bytes the device puts in front of a frame it builds (NET-RX-HDR). */
export const rxHeader = (hdrLen: 10 | 12, numBuffers: number): Uint8Array =>
  encodeHeader(
    {
      flags: 0,
      gsoType: VIRTIO_NET_HDR_GSO_NONE,
      hdrLen: 0,
      gsoSize: 0,
      csumStart: 0,
      csumOffset: 0,
      numBuffers,
    },
    hdrLen,
  );

/**
 * Without MRG_RXBUF: which frame each posted chain gets, in order (NET-RX-ORDER,
 * NET-RX-NO-ROOM). A chain with no writable byte gets none (-1) and is used empty; the
 * others take the next frame; the walk stops at the first chain with room once the frames
 * have run out (that chain and those after it stay available).
 */
export const rxAssign = (
  frameCount: number,
  writableLengths: readonly (readonly number[])[],
): readonly number[] => {
  const out: number[] = [];
  let next = 0;
  for (const lens of writableLengths) {
    if (lens.reduce((a, b) => a + b, 0) === 0) {
      out.push(-1);
      continue;
    }
    if (next >= frameCount) break;
    out.push(next++);
  }
  return out;
};

/**
 * Without MRG_RXBUF: the bytes written into a chain whose writable descriptors have the
 * given lengths (in order), as one contiguous stream over them. Returns the stream (its
 * length is the used length, NET-RX-USED-LEN) and, per writable descriptor, its bytes.
 */
export const rxPlace = (
  frame: Uint8Array,
  hdrLen: 10 | 12,
  writableLengths: readonly number[],
): { readonly used: number; readonly perDescriptor: readonly Uint8Array[] } => {
  const wire = new Uint8Array(hdrLen + frame.length);
  wire.set(rxHeader(hdrLen, 1), 0);
  wire.set(frame, hdrLen);
  const capacity = writableLengths.reduce((a, b) => a + b, 0);
  const used = Math.min(wire.length, capacity);
  const perDescriptor: Uint8Array[] = [];
  let at = 0;
  for (const len of writableLengths) {
    const n = Math.max(0, Math.min(len, used - at));
    perDescriptor.push(wire.slice(at, at + n));
    at += n;
  }
  return { used, perDescriptor };
};

/**
 * With MRG_RXBUF (NET-RX-MRG): the device takes available chains, in order, until their
 * writable capacity holds a header plus the largest frame (so any frame fits); with fewer,
 * it takes none and the frame waits ("wait"). The packet (header + frame) is written across
 * the taken chains in order; a chain is used when the packet has bytes left when it is
 * reached, with the bytes written into it; num_buffers is the count of used chains, and
 * the taken chains not used go back to the ring.
 */
export const rxMergeable = (
  frameLength: number,
  hdrLen: 10 | 12,
  available: readonly number[],
  maxFrame: number,
): "wait" | { readonly taken: number; readonly used: readonly number[] } => {
  let taken = 0;
  let capacity = 0;
  while (capacity < hdrLen + maxFrame && taken < available.length) capacity += available[taken++]!;
  if (capacity < hdrLen + maxFrame) return "wait";
  const total = hdrLen + frameLength;
  const used: number[] = [];
  let start = 0;
  for (let k = 0; k < taken; k++) {
    const cap = available[k]!;
    if (k > 0 && start >= total) break;
    used.push(Math.max(0, Math.min(cap, total - start)));
    start += cap;
  }
  return { taken, used };
};
