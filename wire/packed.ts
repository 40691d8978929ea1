/**
 * The packed virtqueue on the wire (VIRTIO 1.2 §2.8; Linux `virtio_ring.h` packed part):
 * the 16-byte packed descriptor, its flag bits and the event suppression structure. The
 * descriptor flags NEXT, WRITE and INDIRECT are the split ring's (wire/split.ts).
 */
import type { DescriptorInput } from "./split.ts";

export { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "./split.ts";

// ---- descriptor (struct pvirtq_desc)

export const PACKED_DESC_SIZE = 16;
/** addr: u64. */
export const PACKED_DESC_ADDR = 0;
/** The high u32 of addr, for readers that take the u64 as two u32s. */
export const PACKED_DESC_ADDR_HI = 4;
/** len: u32. */
export const PACKED_DESC_LEN = 8;
/** id: u16, the buffer id (set by the driver on the last descriptor of a chain). */
export const PACKED_DESC_ID = 12;
/** flags: u16. */
export const PACKED_DESC_FLAGS = 14;

/** Bit positions of the avail and used flags in a packed descriptor's flags. */
export const VIRTQ_PACKED_DESC_F_AVAIL = 7;
export const VIRTQ_PACKED_DESC_F_USED = 15;
/** The flags' masks. */
export const VIRTQ_DESC_F_AVAIL = 1 << VIRTQ_PACKED_DESC_F_AVAIL;
export const VIRTQ_DESC_F_USED = 1 << VIRTQ_PACKED_DESC_F_USED;

/** A packed descriptor as plain data; `addr` is the exact u64. */
export interface PackedDescriptor {
  readonly addr: bigint;
  readonly len: number;
  readonly id: number;
  readonly flags: number;
}

export const packedDescOffset = (slot: number): number => slot * PACKED_DESC_SIZE;

export const readPackedDescriptor = (view: DataView, off: number): PackedDescriptor => ({
  addr: view.getBigUint64(off + PACKED_DESC_ADDR, true),
  len: view.getUint32(off + PACKED_DESC_LEN, true),
  id: view.getUint16(off + PACKED_DESC_ID, true),
  flags: view.getUint16(off + PACKED_DESC_FLAGS, true),
});

/** Writes a packed descriptor; `id` and `flags` are truncated to u16. */
export const writePackedDescriptor = (
  view: DataView,
  off: number,
  d: Omit<DescriptorInput, "next"> & { readonly id: number },
): void => {
  const a = d.addr;
  if (typeof a === "bigint") view.setBigUint64(off + PACKED_DESC_ADDR, BigInt.asUintN(64, a), true);
  else {
    view.setUint32(off + PACKED_DESC_ADDR, a >>> 0, true);
    view.setUint32(off + PACKED_DESC_ADDR_HI, Math.floor(a / 0x1_0000_0000) >>> 0, true);
  }
  view.setUint32(off + PACKED_DESC_LEN, d.len >>> 0, true);
  view.setUint16(off + PACKED_DESC_ID, d.id & 0xffff, true);
  view.setUint16(off + PACKED_DESC_FLAGS, d.flags & 0xffff, true);
};

/** The largest packed queue size (§2.8: up to 32768, need not be a power of two). */
export const MAX_PACKED_QUEUE_SIZE = 32768;

export const packedRingBytes = (size: number): number => PACKED_DESC_SIZE * size;

// ---- event suppression (struct pvirtq_event_suppress)

/** desc_event_off_wrap: u16, bits 0-14 the offset, bit 15 the wrap counter. */
export const EVENT_OFF_WRAP = 0;
/** desc_event_flags: u16 (RING_EVENT_FLAGS_*). */
export const EVENT_FLAGS = 2;
/** Bytes of the event suppression structure. */
export const EVENT_AREA_SIZE = 4;
/** The wrap bit in desc_event_off_wrap, and the offset below it. */
export const RING_EVENT_WRAP = 1 << 15;
export const RING_EVENT_OFF_MASK = RING_EVENT_WRAP - 1;

export const RING_EVENT_FLAGS_ENABLE = 0;
export const RING_EVENT_FLAGS_DISABLE = 1;
export const RING_EVENT_FLAGS_DESC = 2;

/** Alignment of the packed ring's three areas (§2.8.10.1: 16, 4, 4). */
export const PACKED_RING_ALIGN = 16;
export const EVENT_AREA_ALIGN = 4;
