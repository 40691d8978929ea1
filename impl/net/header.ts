/**
 * struct virtio_net_hdr (NET-HDR-LAYOUT, NET-HDR-LEN): 12 bytes for a modern device or
 * with MRG_RXBUF, 10 bytes for a legacy one. Encoders write into caller-owned bytes so the
 * RX path allocates nothing per frame.
 */
import type { NetHeader } from "../../spec/net.ts";

export type { NetHeader } from "../../spec/net.ts";

export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
/** Offset of num_buffers in the 12-byte header. */
export const NUM_BUFFERS_OFFSET = 10;

/** Writes `h` into `dst` at `at`; `len` 10 leaves num_buffers out. Returns false if it does not fit. */
export const encodeNetHeader = (h: NetHeader, len: 10 | 12, dst: Uint8Array, at = 0): boolean => {
  if (at < 0 || at + len > dst.length) return false;
  dst[at] = h.flags;
  dst[at + 1] = h.gsoType;
  dst[at + 2] = h.hdrLen;
  dst[at + 3] = h.hdrLen >>> 8;
  dst[at + 4] = h.gsoSize;
  dst[at + 5] = h.gsoSize >>> 8;
  dst[at + 6] = h.csumStart;
  dst[at + 7] = h.csumStart >>> 8;
  dst[at + 8] = h.csumOffset;
  dst[at + 9] = h.csumOffset >>> 8;
  if (len === 12) {
    dst[at + 10] = h.numBuffers;
    dst[at + 11] = h.numBuffers >>> 8;
  }
  return true;
};

/** Reads a header of `len` bytes at `at`; undefined if `src` is too short. */
export const decodeNetHeader = (src: Uint8Array, len: 10 | 12, at = 0): NetHeader | undefined => {
  if (at < 0 || at + len > src.length) return undefined;
  const u16 = (o: number): number => src[at + o]! | (src[at + o + 1]! << 8);
  return {
    flags: src[at]!,
    gsoType: src[at + 1]!,
    hdrLen: u16(2),
    gsoSize: u16(4),
    csumStart: u16(6),
    csumOffset: u16(8),
    numBuffers: len === 12 ? u16(10) : 0,
  };
};

/**
 * The header the device puts in front of a frame it builds (NET-RX-HDR): flags 0,
 * gso NONE, num_buffers as given (12-byte form). Writes into `dst[0..len)`.
 */
export const writeRxHeader = (dst: Uint8Array, len: 10 | 12, numBuffers: number): void => {
  dst.fill(0, 0, len);
  if (len === 12) {
    dst[NUM_BUFFERS_OFFSET] = numBuffers & 0xff;
    dst[NUM_BUFFERS_OFFSET + 1] = (numBuffers >>> 8) & 0xff;
  }
};
