/**
 * virtio-net on the wire (VIRTIO 1.2 §5.1.4, §5.1.6; Linux `virtio_net.h`): the
 * `struct virtio_net_hdr` layout and its flag and GSO values, and the config space layout.
 * spec/net.ts keeps its own reading for NET-HDR-LAYOUT and NET-CFG-LAYOUT;
 * properties/wire.test.ts ties the two together.
 */

/** Field offsets of struct virtio_net_hdr (u8 flags and gso_type, then u16 fields, little-endian). */
export const NET_HDR = {
  flags: 0,
  gsoType: 1,
  hdrLen: 2,
  gsoSize: 4,
  csumStart: 6,
  csumOffset: 8,
  /** Only in the 12-byte form (VERSION_1 or MRG_RXBUF). */
  numBuffers: 10,
} as const;

/** The header without num_buffers (a legacy device without MRG_RXBUF). */
export const NET_HDR_LEGACY_SIZE = 10 as const;
/** The header with num_buffers (every modern device). */
export const NET_HDR_SIZE = 12 as const;

export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_F_RSC_INFO = 4;

export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

/** Field offsets of struct virtio_net_config, as far as this device has it (through mtu). */
export const NET_CONFIG = {
  /** u8[6] */
  mac: 0,
  /** u16 (VIRTIO_NET_S_*) */
  status: 6,
  /** u16 */
  maxVirtqueuePairs: 8,
  /** u16 (squib puts it at 12, which a Linux guest would misread) */
  mtu: 10,
} as const;
export const NET_MAC_LEN = 6;
/** Bytes of config space through mtu. */
export const NET_CONFIG_SIZE = 12;

/** mtu's range (§5.1.4.1: the device MUST NOT offer an mtu below 68; it is a u16). */
export const NET_MTU_MIN = 68;
export const NET_MTU_MAX = 0xffff;

export const VIRTIO_NET_S_LINK_UP = 1;
export const VIRTIO_NET_S_ANNOUNCE = 2;
