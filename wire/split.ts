/**
 * The split virtqueue on the wire (VIRTIO 1.2 §2.7; Linux `include/uapi/linux/virtio_ring.h`,
 * rust-vmm `virtio-bindings` and `virtio-queue` `desc/split.rs`): the 16-byte descriptor and
 * its codec, the flags, the avail and used ring layouts with their sizes and offsets, and
 * `vring_need_event`. Every other file reads and writes rings through these names; spec/queue.ts
 * keeps its own byte-by-byte reading for the layout rules (CHAIN-DESC-LAYOUT, VQ-LAYOUT) and
 * properties/wire.test.ts ties the two readings together.
 *
 * Offsets are in bytes from the start of the structure; every field is little-endian.
 */

// ---- descriptor (struct virtq_desc)

/** Bytes of one descriptor table entry. */
export const DESC_SIZE = 16;
/** addr: u64, the buffer's guest-physical address. */
export const DESC_ADDR = 0;
/** The high u32 of addr, for readers that take the u64 as two u32s. */
export const DESC_ADDR_HI = 4;
/** len: u32, the buffer's length in bytes. */
export const DESC_LEN = 8;
/** flags: u16 (VIRTQ_DESC_F_*). */
export const DESC_FLAGS = 12;
/** next: u16, the index of the next descriptor when NEXT is set. */
export const DESC_NEXT = 14;

/** The buffer continues in the descriptor named by `next`. */
export const VIRTQ_DESC_F_NEXT = 1;
/** The buffer is device-writable (otherwise device-readable). */
export const VIRTQ_DESC_F_WRITE = 2;
/** The buffer holds a table of descriptors (VIRTIO_F_RING_INDIRECT_DESC). */
export const VIRTQ_DESC_F_INDIRECT = 4;

/** A descriptor as plain data; `addr` is the exact u64. */
export interface Descriptor {
  readonly addr: bigint;
  readonly len: number;
  readonly flags: number;
  readonly next: number;
}

/** A descriptor to write; `addr` may be a number below 2^53 or any u64 as a bigint. */
export interface DescriptorInput {
  readonly addr: number | bigint;
  readonly len: number;
  readonly flags: number;
  readonly next: number;
}

/** Byte offset of entry `index` in a descriptor table (also in an indirect table). */
export const descOffset = (index: number): number => index * DESC_SIZE;

/** Reads the descriptor at byte `off` of `view`. */
export const readDescriptor = (view: DataView, off: number): Descriptor => ({
  addr: view.getBigUint64(off + DESC_ADDR, true),
  len: view.getUint32(off + DESC_LEN, true),
  flags: view.getUint16(off + DESC_FLAGS, true),
  next: view.getUint16(off + DESC_NEXT, true),
});

/** Writes `d` at byte `off` of `view`; values are truncated to their field widths. */
export const writeDescriptor = (view: DataView, off: number, d: DescriptorInput): void =>
  writeDescriptorFields(view, off, d.addr, d.len, d.flags, d.next);

/** writeDescriptor with the fields as arguments (a driver's hot path: no object per descriptor). */
export const writeDescriptorFields = (
  view: DataView,
  off: number,
  addr: number | bigint,
  len: number,
  flags: number,
  next: number,
): void => {
  if (typeof addr === "bigint") view.setBigUint64(off + DESC_ADDR, BigInt.asUintN(64, addr), true);
  else {
    view.setUint32(off + DESC_ADDR, addr >>> 0, true);
    view.setUint32(off + DESC_ADDR_HI, Math.floor(addr / 0x1_0000_0000) >>> 0, true);
  }
  view.setUint32(off + DESC_LEN, len >>> 0, true);
  view.setUint16(off + DESC_FLAGS, flags & 0xffff, true);
  view.setUint16(off + DESC_NEXT, next & 0xffff, true);
};

/** `d` as its 16 bytes. */
export const encodeDescriptor = (d: DescriptorInput): Uint8Array => {
  const out = new Uint8Array(DESC_SIZE);
  writeDescriptor(new DataView(out.buffer), 0, d);
  return out;
};

/** The descriptor in `bytes` at `at` (16 bytes must be there). */
export const decodeDescriptor = (bytes: Uint8Array, at = 0): Descriptor =>
  readDescriptor(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), at);

// ---- queue limits

/** The largest queue size VIRTIO allows (§2.7: a power of two up to 32768). */
export const MAX_QUEUE_SIZE = 32768;
/** The most entries an indirect table may have (rust-vmm: its size must fit a u16). */
export const MAX_INDIRECT_ENTRIES = 0xffff;
/** The most bytes a chain may describe in total (rust-vmm: the sum must fit a u32). */
export const MAX_CHAIN_BYTES = 0xffff_ffff;

// ---- alignment of the three parts (§2.7, table "Virtqueue Part Alignment")

export const DESC_TABLE_ALIGN = 16;
export const AVAIL_RING_ALIGN = 2;
export const USED_RING_ALIGN = 4;

// ---- avail ring (struct virtq_avail)

/** flags: u16 (VRING_AVAIL_F_*). */
export const AVAIL_FLAGS = 0;
/** idx: u16, where the driver will put the next head. */
export const AVAIL_IDX = 2;
/** ring: u16[size], the heads. */
export const AVAIL_RING = 4;
export const AVAIL_ELEM_SIZE = 2;
/** Byte offset of ring[slot] in the avail ring. */
export const availSlotOffset = (slot: number): number => AVAIL_RING + AVAIL_ELEM_SIZE * slot;
/** Byte offset of used_event (after ring[size]; meaningful with EVENT_IDX). */
export const usedEventOffset = (size: number): number => AVAIL_RING + AVAIL_ELEM_SIZE * size;

/** avail.flags: the driver asks for no used-buffer notifications (without EVENT_IDX). */
export const VRING_AVAIL_F_NO_INTERRUPT = 1;

// ---- used ring (struct virtq_used)

/** flags: u16 (VRING_USED_F_*). */
export const USED_FLAGS = 0;
/** idx: u16, where the device will put the next used element. */
export const USED_IDX = 2;
/** ring: struct virtq_used_elem[size]. */
export const USED_RING = 4;
/** struct virtq_used_elem: id u32 @0, len u32 @4. */
export const USED_ELEM_SIZE = 8;
export const USED_ELEM_ID = 0;
export const USED_ELEM_LEN = 4;
/** Byte offset of ring[slot] in the used ring. */
export const usedSlotOffset = (slot: number): number => USED_RING + USED_ELEM_SIZE * slot;
/** Byte offset of avail_event (after ring[size]; meaningful with EVENT_IDX). */
export const availEventOffset = (size: number): number => USED_RING + USED_ELEM_SIZE * size;

/** used.flags: the device asks for no available-buffer notifications (without EVENT_IDX). */
export const VRING_USED_F_NO_NOTIFY = 1;

// ---- sizes

export const descTableBytes = (size: number): number => DESC_SIZE * size;
/** flags + idx + ring[size] + used_event. */
export const availRingBytes = (size: number): number => usedEventOffset(size) + 2;
/** flags + idx + ring[size] + avail_event. */
export const usedRingBytes = (size: number): number => availEventOffset(size) + 2;

/** Where the three parts of a split queue lie in guest memory. */
export interface SplitLayout {
  readonly descTable: number;
  readonly availRing: number;
  readonly usedRing: number;
}

const alignUp = (x: number, a: number): number => Math.ceil(x / a) * a;

/** The layout Linux's `vring_init` uses without padding to a page: table, avail, then used aligned. */
export const splitLayoutAt = (base: number, size: number): SplitLayout => {
  const descTable = alignUp(base, DESC_TABLE_ALIGN);
  const availRing = descTable + descTableBytes(size);
  const usedRing = alignUp(availRing + availRingBytes(size), USED_RING_ALIGN);
  return { descTable, availRing, usedRing };
};

/** The first byte after a queue laid out by `splitLayoutAt(base, size)`. */
export const splitLayoutEnd = (layout: SplitLayout, size: number): number =>
  layout.usedRing + usedRingBytes(size);

// ---- notification suppression (§2.7.10)

/**
 * Linux `vring_need_event`: with EVENT_IDX, must the side that moved its index from `old` to
 * `newIdx` notify the other, which asked to hear when it passes `event`? All u16 indices.
 */
export const vringNeedEvent = (event: number, newIdx: number, old: number): boolean =>
  ((newIdx - event - 1) & 0xffff) < ((newIdx - old) & 0xffff);
