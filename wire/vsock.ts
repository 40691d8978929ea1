/**
 * virtio-vsock on the wire (VIRTIO 1.2 §5.10.6; Linux `virtio_vsock.h`): the 44-byte
 * `struct virtio_vsock_hdr` and its type, op and flag values. spec/vsock.ts keeps its own
 * reading for VSOCK-HDR-LAYOUT; properties/wire.test.ts ties the two together.
 */

/** Field offsets of struct virtio_vsock_hdr (little-endian; cids u64, type/op u16, the rest u32). */
export const HDROFF = {
  srcCid: 0,
  dstCid: 8,
  srcPort: 16,
  dstPort: 20,
  len: 24,
  type: 28,
  op: 30,
  flags: 32,
  bufAlloc: 36,
  fwdCnt: 40,
} as const;

export const VSOCK_PKT_HDR_SIZE = 44;

export const VSOCK_TYPE_STREAM = 1;
export const VSOCK_TYPE_SEQPACKET = 2;

export const VSOCK_OP_INVALID = 0;
export const VSOCK_OP_REQUEST = 1;
export const VSOCK_OP_RESPONSE = 2;
export const VSOCK_OP_RST = 3;
export const VSOCK_OP_SHUTDOWN = 4;
export const VSOCK_OP_RW = 5;
export const VSOCK_OP_CREDIT_UPDATE = 6;
export const VSOCK_OP_CREDIT_REQUEST = 7;

export const VSOCK_FLAGS_SHUTDOWN_RCV = 1;
export const VSOCK_FLAGS_SHUTDOWN_SEND = 2;

export const VIRTIO_VSOCK_EVENT_TRANSPORT_RESET = 0;

/** The host's CID (VMADDR_CID_HOST). */
export const VSOCK_HOST_CID = 2n;
