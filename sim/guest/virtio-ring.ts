/**
 * The guest driver model: what Linux's drivers/virtio/virtio_ring.c does for a split ring.
 *
 * - Descriptors come from a free list kept in driver-private memory (Linux's desc_extra),
 *   so a device scribbling on the table cannot corrupt the driver's bookkeeping; a chain's
 *   `next` fields are whatever the free list held, so chains are scattered as buffers are
 *   reclaimed out of order.
 * - Chains: out (device-readable) segments first, then in (device-writable) segments, in
 *   one or several descriptors, or through an indirect table (one head descriptor with
 *   VIRTQ_DESC_F_INDIRECT) when the feature is on and the chain has more than one segment.
 * - Publication: the ring entry is written first, then (virtio_wmb) avail.idx; the device
 *   can run between the two and must not see the entry before the index (the trace records
 *   the barrier).
 * - Kicks (virtqueue_kick_prepare): with EVENT_IDX, vring_need_event(avail_event, new, old);
 *   without, unless the device set VRING_USED_F_NO_NOTIFY.
 * - Interrupts: disable_cb / enable_cb_prepare / poll / enable_cb_delayed, with used_event
 *   (EVENT_IDX) or VRING_AVAIL_F_NO_INTERRUPT.
 * - Reclaim (virtqueue_get_buf): used entries are validated like Linux's BAD_RING checks
 *   (id < size, head in flight); the chain goes back on the free list.
 */
import type { GuestRam } from "./ram.ts";

export const DESC_F_NEXT = 1;
export const DESC_F_WRITE = 2;
export const DESC_F_INDIRECT = 4;
export const AVAIL_F_NO_INTERRUPT = 1;
export const USED_F_NO_NOTIFY = 1;

/** VIRTIO 1.2 §2.7.10.1 / Linux vring_need_event: all u16 arithmetic. */
export const vringNeedEvent = (eventIdx: number, newIdx: number, oldIdx: number): boolean =>
  ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);

export interface RingLayout {
  readonly size: number;
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  /** First byte after the rings. */
  readonly end: number;
}

/** Lays out a split ring at `base` with the alignments VIRTIO requires (16, 2, 4). */
export const layoutRings = (base: number, size: number): RingLayout => {
  const desc = Math.ceil(base / 16) * 16;
  const avail = desc + 16 * size;
  const used = Math.ceil((avail + 6 + 2 * size) / 4) * 4;
  return { size, desc, avail, used, end: used + 6 + 8 * size };
};

export interface Segment {
  readonly len: number;
  readonly write: boolean;
}

export interface PlacedSegment {
  readonly addr: number;
  readonly len: number;
  readonly write: boolean;
}

export interface InFlight {
  /** The driver's sequence number for this buffer (order of addition). */
  readonly seq: number;
  readonly head: number;
  readonly segments: readonly PlacedSegment[];
  readonly indirect: boolean;
  /** Descriptors taken from the ring's table (1 for an indirect chain). */
  readonly ringDescs: number;
  readonly outBytes: number;
  readonly inBytes: number;
  /** What the caller wants back with it (a frame id, a packet...). */
  readonly token: number;
}

export type GetBuf =
  | { readonly kind: "none" }
  | { readonly kind: "buf"; readonly buf: InFlight; readonly len: number }
  | { readonly kind: "bad"; readonly id: number; readonly len: number; readonly reason: string };

export interface DriverOptions {
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  /** Bytes of buffer space per head: a chain's segments must fit. */
  readonly slabBytes: number;
  /** Largest indirect table, in entries. */
  readonly maxIndirect: number;
}

export class GuestVirtqueue {
  readonly ram: GuestRam;
  readonly layout: RingLayout;
  readonly size: number;
  readonly opts: DriverOptions;
  private readonly mask: number;
  private readonly dataBase: number;
  private readonly indirectBase: number;
  /** Driver-private free list (Linux desc_extra[].next). */
  private readonly nextFree: Uint16Array;
  private freeHead = 0;
  numFree: number;
  private readonly inFlight: (InFlight | undefined)[];
  availShadow = 0;
  private numAdded = 0;
  lastUsed = 0;
  private availFlagsShadow = 0;
  /** Buffers added but not yet published with avail.idx. */
  unpublished = 0;
  private seq = 0;
  inFlightCount = 0;

  /**
   * `dataBase` must have `size * slabBytes` bytes for buffers and then
   * `size * maxIndirect * 16` bytes for indirect tables (see `bytesNeeded`).
   */
  constructor(ram: GuestRam, layout: RingLayout, dataBase: number, opts: DriverOptions) {
    this.ram = ram;
    this.layout = layout;
    this.size = layout.size;
    this.mask = layout.size - 1;
    this.opts = opts;
    this.dataBase = dataBase;
    this.indirectBase = dataBase + layout.size * opts.slabBytes;
    this.nextFree = new Uint16Array(layout.size);
    for (let i = 0; i < layout.size; i++) this.nextFree[i] = (i + 1) & 0xffff;
    this.numFree = layout.size;
    this.inFlight = new Array<InFlight | undefined>(layout.size).fill(undefined);
    // A fresh ring: everything zero (the device reads zeros until we publish).
    ram.bytes(layout.desc, layout.end - layout.desc).fill(0);
  }

  static bytesNeeded(size: number, opts: DriverOptions): number {
    return size * opts.slabBytes + size * opts.maxIndirect * 16;
  }

  /** Where the buffers of the chain with this head live (its slab). */
  slabAddr(head: number): number {
    return this.dataBase + head * this.opts.slabBytes;
  }

  /** Where the indirect table of the chain with this head lives (used when it is indirect). */
  indirectTableAddr(head: number): number {
    return this.indirectBase + head * this.opts.maxIndirect * 16;
  }

  inFlightAt(head: number): InFlight | undefined {
    return this.inFlight[head];
  }

  /** Descriptors in use: the ring's occupancy. */
  get occupancy(): number {
    return this.size - this.numFree;
  }

  /**
   * virtqueue_add: places the segments in this head's slab (with the given gaps between
   * them) and writes descriptors; returns the head, or -1 when there is no room (the
   * caller reclaims and retries, as Linux's callers do on -ENOSPC).
   */
  add(segments: readonly Segment[], useIndirect: boolean, token: number, gaps?: readonly number[]): number {
    const n = segments.length;
    if (n === 0) throw new Error("virtqueue_add with no segments");
    const indirect = useIndirect && this.opts.indirect && n > 1 && n <= this.opts.maxIndirect;
    const need = indirect ? 1 : n;
    if (this.numFree < need) return -1;
    const head = this.freeHead;
    const ram = this.ram;
    const placed: PlacedSegment[] = [];
    let addr = this.slabAddr(head);
    let outBytes = 0;
    let inBytes = 0;
    for (let i = 0; i < n; i++) {
      const s = segments[i]!;
      addr += gaps?.[i] ?? 0;
      placed.push({ addr, len: s.len, write: s.write });
      addr += s.len;
      if (s.write) inBytes += s.len;
      else outBytes += s.len;
    }
    if (addr > this.slabAddr(head) + this.opts.slabBytes) throw new Error("chain does not fit its slab");
    if (indirect) {
      const table = this.indirectTableAddr(head);
      for (let i = 0; i < n; i++) {
        const p = placed[i]!;
        const d = table + 16 * i;
        ram.setU64(d, BigInt(p.addr));
        ram.setU32(d + 8, p.len);
        ram.setU16(d + 12, (i + 1 < n ? DESC_F_NEXT : 0) | (p.write ? DESC_F_WRITE : 0));
        ram.setU16(d + 14, i + 1 < n ? i + 1 : 0);
      }
      const d = this.layout.desc + 16 * head;
      ram.setU64(d, BigInt(table));
      ram.setU32(d + 8, 16 * n);
      ram.setU16(d + 12, DESC_F_INDIRECT);
      ram.setU16(d + 14, 0);
      this.freeHead = this.nextFree[head]!;
    } else {
      let i = head;
      let prev = head;
      for (let k = 0; k < n; k++) {
        const p = placed[k]!;
        const d = this.layout.desc + 16 * i;
        ram.setU64(d, BigInt(p.addr));
        ram.setU32(d + 8, p.len);
        ram.setU16(d + 12, DESC_F_NEXT | (p.write ? DESC_F_WRITE : 0));
        ram.setU16(d + 14, this.nextFree[i]!);
        prev = i;
        i = this.nextFree[i]!;
      }
      // The last descriptor ends the chain.
      const last = this.layout.desc + 16 * prev;
      ram.setU16(last + 12, ram.u16(last + 12) & ~DESC_F_NEXT);
      this.freeHead = i;
    }
    this.numFree -= need;
    const rec: InFlight = {
      seq: this.seq++,
      head,
      segments: placed,
      indirect,
      ringDescs: need,
      outBytes,
      inBytes,
      token,
    };
    this.inFlight[head] = rec;
    this.inFlightCount++;
    // The ring entry first; avail.idx only in publish() after the write barrier.
    ram.setU16(this.layout.avail + 4 + 2 * (this.availShadow & this.mask), head);
    this.availShadow = (this.availShadow + 1) & 0xffff;
    this.numAdded++;
    this.unpublished++;
    return head;
  }

  /** virtio_wmb then avail.idx = shadow: the entries written so far become visible. */
  publish(): void {
    this.ram.setU16(this.layout.avail + 2, this.availShadow);
    this.unpublished = 0;
  }

  /** The avail.idx the device can see. */
  get publishedIdx(): number {
    return this.ram.u16(this.layout.avail + 2);
  }

  /** virtqueue_kick_prepare (after virtio_mb): must the driver notify the device? */
  kickPrepare(): { need: boolean; old: number; new: number; event: number } {
    const newIdx = this.availShadow;
    const oldIdx = (newIdx - this.numAdded) & 0xffff;
    this.numAdded = 0;
    if (this.opts.eventIdx) {
      const ev = this.ram.u16(this.layout.used + 4 + 8 * this.size);
      return { need: vringNeedEvent(ev, newIdx, oldIdx), old: oldIdx, new: newIdx, event: ev };
    }
    const flags = this.ram.u16(this.layout.used);
    return { need: (flags & USED_F_NO_NOTIFY) === 0, old: oldIdx, new: newIdx, event: -1 };
  }

  get usedIdx(): number {
    return this.ram.u16(this.layout.used + 2);
  }

  /** virtqueue_get_buf: the next used buffer, validated as Linux does (BAD_RING). */
  getBuf(): GetBuf {
    if (this.lastUsed === this.usedIdx) return { kind: "none" };
    // virtio_rmb: the entry is read only after seeing the index.
    const e = this.layout.used + 4 + 8 * (this.lastUsed & this.mask);
    const id = this.ram.u32(e);
    const len = this.ram.u32(e + 4);
    if (id >= this.size) return { kind: "bad", id, len, reason: `id ${id} >= size ${this.size}` };
    const buf = this.inFlight[id];
    if (buf === undefined) return { kind: "bad", id, len, reason: `id ${id} is not a head in flight` };
    this.detach(buf);
    this.lastUsed = (this.lastUsed + 1) & 0xffff;
    if (this.opts.eventIdx && (this.availFlagsShadow & AVAIL_F_NO_INTERRUPT) === 0) {
      // virtio_store_mb: tell the device the next used index we want an interrupt for.
      this.ram.setU16(this.layout.avail + 4 + 2 * this.size, this.lastUsed);
    }
    return { kind: "buf", buf, len };
  }

  private detach(buf: InFlight): void {
    this.inFlight[buf.head] = undefined;
    this.inFlightCount--;
    // The chain's descriptors go back on the free list in chain order (driver-private next).
    if (buf.ringDescs === 1) {
      this.nextFree[buf.head] = this.freeHead;
    } else {
      let last = buf.head;
      for (let k = 1; k < buf.ringDescs; k++) last = this.nextFree[last]!;
      this.nextFree[last] = this.freeHead;
    }
    this.freeHead = buf.head;
    this.numFree += buf.ringDescs;
  }

  /** virtqueue_disable_cb. */
  disableCb(): void {
    if ((this.availFlagsShadow & AVAIL_F_NO_INTERRUPT) !== 0) return;
    this.availFlagsShadow |= AVAIL_F_NO_INTERRUPT;
    if (!this.opts.eventIdx) this.ram.setU16(this.layout.avail, this.availFlagsShadow);
    // With EVENT_IDX Linux leaves the flag out of the ring and relies on used_event.
  }

  /** virtqueue_enable_cb_prepare: returns the opaque value for poll(). */
  enableCbPrepare(): number {
    if ((this.availFlagsShadow & AVAIL_F_NO_INTERRUPT) !== 0) {
      this.availFlagsShadow &= ~AVAIL_F_NO_INTERRUPT;
      if (!this.opts.eventIdx) this.ram.setU16(this.layout.avail, this.availFlagsShadow);
    }
    if (this.opts.eventIdx) this.ram.setU16(this.layout.avail + 4 + 2 * this.size, this.lastUsed);
    return this.lastUsed;
  }

  /** virtqueue_poll (after virtio_mb): more used buffers since enableCbPrepare? */
  poll(last: number): boolean {
    return last !== this.usedIdx;
  }

  /**
   * virtqueue_enable_cb_delayed: ask for an interrupt only after ~3/4 of the outstanding
   * buffers are used. False when that many are already used (the caller polls again).
   */
  enableCbDelayed(): boolean {
    if ((this.availFlagsShadow & AVAIL_F_NO_INTERRUPT) !== 0) {
      this.availFlagsShadow &= ~AVAIL_F_NO_INTERRUPT;
      if (!this.opts.eventIdx) this.ram.setU16(this.layout.avail, this.availFlagsShadow);
    }
    const bufs = (((this.availShadow - this.lastUsed) & 0xffff) * 3) >> 2;
    if (this.opts.eventIdx)
      this.ram.setU16(this.layout.avail + 4 + 2 * this.size, (this.lastUsed + bufs) & 0xffff);
    return ((this.usedIdx - this.lastUsed) & 0xffff) <= bufs;
  }

  get callbacksEnabled(): boolean {
    return (this.availFlagsShadow & AVAIL_F_NO_INTERRUPT) === 0;
  }

  /** The used_event the driver last wrote (EVENT_IDX). */
  get usedEvent(): number {
    return this.ram.u16(this.layout.avail + 4 + 2 * this.size);
  }

  /**
   * Rewrites a ring entry, descriptor or index the driver owns with its true value (used
   * by the hostile guest to undo a corruption it made).
   */
  restoreDescriptor(index: number, bytes: Uint8Array): void {
    this.ram.write(this.layout.desc + 16 * index, bytes);
  }
}
