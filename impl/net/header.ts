/**
 * struct virtio_net_hdr (NET-HDR-LAYOUT, NET-HDR-LEN): 12 bytes for a modern device or
 * with MRG_RXBUF, 10 bytes for a legacy one; the field offsets are wire/net.ts NET_HDR.
 * Encoders write into caller-owned bytes so the RX path allocates nothing per frame.
 */
import type { NetHeader } from "../../spec/net.ts";
import { NET_HDR, NET_HDR_SIZE } from "../../wire/net.ts";

export type { NetHeader } from "../../spec/net.ts";
/** Offset of num_buffers in the 12-byte header. */
export const NUM_BUFFERS_OFFSET = NET_HDR.numBuffers;

const putU16 = (dst: Uint8Array, at: number, v: number): void => {
  dst[at] = v;
  dst[at + 1] = v >>> 8;
};

/** Writes `h` into `dst` at `at`; `len` 10 leaves num_buffers out. Returns false if it does not fit. */
export const encodeNetHeader = (h: NetHeader, len: 10 | 12, dst: Uint8Array, at = 0): boolean => {
  if (at < 0 || at + len > dst.length) return false;
  dst[at + NET_HDR.flags] = h.flags;
  dst[at + NET_HDR.gsoType] = h.gsoType;
  putU16(dst, at + NET_HDR.hdrLen, h.hdrLen);
  putU16(dst, at + NET_HDR.gsoSize, h.gsoSize);
  putU16(dst, at + NET_HDR.csumStart, h.csumStart);
  putU16(dst, at + NET_HDR.csumOffset, h.csumOffset);
  if (len === NET_HDR_SIZE) putU16(dst, at + NET_HDR.numBuffers, h.numBuffers);
  return true;
};

/** Reads a header of `len` bytes at `at`; undefined if `src` is too short. */
export const decodeNetHeader = (src: Uint8Array, len: 10 | 12, at = 0): NetHeader | undefined => {
  if (at < 0 || at + len > src.length) return undefined;
  const u16 = (o: number): number => src[at + o]! | (src[at + o + 1]! << 8);
  return {
    flags: src[at + NET_HDR.flags]!,
    gsoType: src[at + NET_HDR.gsoType]!,
    hdrLen: u16(NET_HDR.hdrLen),
    gsoSize: u16(NET_HDR.gsoSize),
    csumStart: u16(NET_HDR.csumStart),
    csumOffset: u16(NET_HDR.csumOffset),
    numBuffers: len === NET_HDR_SIZE ? u16(NET_HDR.numBuffers) : 0,
  };
};

/**
 * The header the device puts in front of a frame it builds (NET-RX-HDR): flags 0,
 * gso NONE, num_buffers as given (12-byte form). Writes into `dst[0..len)`.
 */
export const writeRxHeader = (dst: Uint8Array, len: 10 | 12, numBuffers: number): void => {
  dst.fill(0, 0, len);
  if (len === NET_HDR_SIZE) putU16(dst, NET_HDR.numBuffers, numBuffers & 0xffff);
};
