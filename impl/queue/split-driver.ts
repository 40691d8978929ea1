/**
 * The guest driver of a split virtqueue (VIRTIO 1.2 §2.7): what Linux's
 * drivers/virtio/virtio_ring.c split path does, behind the ring-neutral `GuestQueue`
 * (guest-queue.ts), plus the raw writes tests and hostile guests use.
 *
 * - Descriptors come from a free list kept in driver-private memory (Linux's desc_extra),
 *   so a device scribbling on the table cannot corrupt the driver's bookkeeping; a chain's
 *   `next` fields are whatever the free list held, so chains are scattered as buffers are
 *   reclaimed out of order. A reclaimed chain goes back to the front of the list.
 * - Chains: one descriptor per segment linked with NEXT, or one INDIRECT descriptor naming a
 *   table the caller placed (when INDIRECT_DESC is on).
 * - Publication: the ring entry is written by `add`, avail.idx only by `publish` (virtio_wmb
 *   between): the device can run between the two and must not see the entry early.
 * - Kicks (virtqueue_kick_prepare): with EVENT_IDX, vring_need_event(avail_event, new, old);
 *   without, unless the device set VRING_USED_F_NO_NOTIFY.
 * - Interrupts: disable_cb / enable_cb_prepare / poll / enable_cb_delayed, with used_event
 *   (EVENT_IDX) or VRING_AVAIL_F_NO_INTERRUPT.
 * - Reclaim (virtqueue_get_buf): used entries are validated like Linux's BAD_RING checks
 *   (id < size, head in flight) and never trusted further; the chain goes back on the list.
 *
 * A write outside guest memory is a set-up bug and throws (GuestRam); what the device wrote
 * never makes it throw.
 */
import type { GuestMemory } from "../memory/guest-memory.ts";
import {
  AVAIL_FLAGS,
  AVAIL_IDX,
  DESC_FLAGS,
  DESC_NEXT,
  DESC_SIZE,
  USED_ELEM_ID,
  USED_ELEM_LEN,
  USED_FLAGS,
  USED_IDX,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_USED_F_NO_NOTIFY,
  availEventOffset,
  availRingBytes,
  availSlotOffset,
  descOffset,
  descTableBytes,
  readDescriptor as decodeAt,
  splitLayoutAt,
  usedEventOffset,
  usedRingBytes,
  usedSlotOffset,
  vringNeedEvent,
  writeDescriptorFields,
  type Descriptor,
  type DescriptorInput,
  type SplitLayout,
} from "../../wire/split.ts";
import {
  NO_ROOM,
  recordSegments,
  type DriverBuffer,
  type AddOptions,
  type GetBuf,
  type GuestBuffer,
  type GuestQueue,
  type GuestQueueOptions,
  type GuestQueueProbe,
  type KickDecision,
  type RingArea,
  type SegmentInput,
} from "./guest-queue.ts";
import { GuestRam } from "./guest-ram.ts";

/** One buffer of a chain for `addChain`; `addr` may be any u64 (hostile tests). */
export interface UsedEntry {
  readonly id: number;
  readonly len: number;
}

export interface AddChainOptions {
  /** Put the buffers in an indirect table at this guest address (any alignment). */
  readonly indirectTable?: number | bigint;
  /** Also publish avail.idx (default true). */
  readonly publish?: boolean;
}

const NO_PROBE: GuestQueueProbe = {};

export class SplitDriver implements GuestQueue {
  readonly ring = "split" as const;
  readonly memory: GuestMemory;
  readonly ram: GuestRam;
  readonly size: number;
  readonly layout: SplitLayout;
  readonly eventIdx: boolean;
  /** INDIRECT_DESC: `add` honours `indirectTable` (default on). */
  readonly indirect: boolean;
  private readonly probe: GuestQueueProbe;
  /** Driver-private free list (Linux desc_extra[].next). */
  private readonly nextFree: Uint16Array;
  private freeHead = 0;
  numFree: number;
  private readonly inFlight: (GuestBuffer | undefined)[];
  /** The avail idx the driver has reached (published or not), a u16. */
  availIdx = 0;
  /** How far the driver has reaped the used ring, a u16. */
  lastUsedIdx = 0;
  /** avail idx at the last kick decision. */
  private kickedAt = 0;
  private availFlagsShadow = 0;
  unpublished = 0;
  private seq = 0;
  inFlightCount = 0;

  constructor(memory: GuestMemory, size: number, layout: SplitLayout, opts: GuestQueueOptions = {}) {
    this.memory = memory;
    this.ram = new GuestRam(memory);
    this.size = size;
    this.layout = layout;
    this.eventIdx = opts.eventIdx === true;
    this.indirect = opts.indirect !== false;
    this.probe = opts.probe ?? NO_PROBE;
    this.nextFree = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.nextFree[i] = (i + 1) & 0xffff;
    this.numFree = size;
    this.inFlight = new Array<GuestBuffer | undefined>(size).fill(undefined);
    // A fresh ring: everything zero (the device reads zeros until the driver publishes).
    this.ram.bytes(layout.descTable, descTableBytes(size), true).fill(0);
    this.ram.bytes(layout.availRing, availRingBytes(size), true).fill(0);
    this.ram.bytes(layout.usedRing, usedRingBytes(size), true).fill(0);
  }

  /** A queue laid out by `splitLayoutAt(base, size)`. */
  static at(memory: GuestMemory, size: number, base: number, opts: GuestQueueOptions = {}): SplitDriver {
    return new SplitDriver(memory, size, splitLayoutAt(base, size), opts);
  }

  get occupancy(): number {
    return this.size - this.numFree;
  }

  get callbacksEnabled(): boolean {
    return (this.availFlagsShadow & VRING_AVAIL_F_NO_INTERRUPT) === 0;
  }

  areas(): readonly RingArea[] {
    const l = this.layout;
    return [
      { addr: l.descTable, len: descTableBytes(this.size), deviceWrites: false },
      { addr: l.availRing, len: availRingBytes(this.size), deviceWrites: false },
      { addr: l.usedRing, len: usedRingBytes(this.size), deviceWrites: true },
    ];
  }

  nextId(): number {
    return this.numFree > 0 ? this.freeHead : NO_ROOM;
  }

  descsFor(n: number, indirect: boolean): number {
    return indirect && this.indirect ? 1 : n;
  }

  inFlightAt(id: number): GuestBuffer | undefined {
    return this.inFlight[id];
  }

  // ---- a well-behaved driver (GuestQueue)

  /**
   * virtqueue_add: writes the chain's descriptors from the free list (or its indirect table
   * and one INDIRECT descriptor) and the avail ring entry; avail.idx waits for `publish`.
   */
  add(segments: readonly SegmentInput[], token: number, opts: AddOptions = {}): number {
    return this.place(segments, token, opts.indirectTable, opts.owned === true);
  }

  private place(
    buffers: readonly DriverBuffer[],
    token: number,
    indirectTable: number | bigint | undefined,
    owned = false,
  ): number {
    const n = buffers.length;
    const indirect = indirectTable !== undefined && this.indirect;
    const need = indirect ? 1 : n;
    // A well-behaved driver never makes an empty chain, nor an indirect table it cannot
    // describe (CHAIN-INDIRECT-LEN): hostile shapes are written with writeDescriptor.
    if (n === 0 || (indirect && n > 0xffff) || this.numFree < need) return NO_ROOM;
    const head = this.freeHead;
    const { segments, outBytes, inBytes } = recordSegments(buffers, owned);
    let table = 0;
    if (indirect) {
      table = Number(indirectTable);
      for (let i = 0; i < n; i++) {
        const b = buffers[i]!;
        const last = i + 1 === n;
        const flags = (last ? 0 : VIRTQ_DESC_F_NEXT) | (b.write === true ? VIRTQ_DESC_F_WRITE : 0);
        this.putDescriptor(indirectTable, i, b.addr, b.len, flags, last ? 0 : i + 1);
      }
      this.putDescriptor(this.layout.descTable, head, indirectTable, DESC_SIZE * n, VIRTQ_DESC_F_INDIRECT, 0);
      this.freeHead = this.nextFree[head]!;
    } else {
      const descTable = this.layout.descTable;
      let i = head;
      for (let k = 0; k < n; k++) {
        const b = buffers[k]!;
        const last = k + 1 === n;
        const flags = (last ? 0 : VIRTQ_DESC_F_NEXT) | (b.write === true ? VIRTQ_DESC_F_WRITE : 0);
        this.putDescriptor(descTable, i, b.addr, b.len, flags, last ? 0 : this.nextFree[i]!);
        i = this.nextFree[i]!;
      }
      this.freeHead = i;
    }
    this.numFree -= need;
    const buf: GuestBuffer = {
      seq: this.seq++,
      id: head,
      segments,
      indirect,
      table,
      ringDescs: need,
      outBytes,
      inBytes,
      token,
    };
    this.inFlight[head] = buf;
    this.inFlightCount++;
    this.pushAvail(head);
    this.unpublished++;
    this.probe.added?.(buf);
    return head;
  }

  /** virtio_wmb then avail.idx = the driver's idx (VIRTIO 1.2 §2.7.13.3). */
  publish(): void {
    this.ram.setU16(this.layout.availRing + AVAIL_IDX, this.availIdx);
    this.unpublished = 0;
    this.probe.published?.();
  }

  kickPrepare(): KickDecision {
    const old = this.kickedAt;
    const now = this.availIdx;
    this.kickedAt = now;
    let k: KickDecision;
    if (this.eventIdx) {
      const event = this.availEvent();
      k = { need: vringNeedEvent(event, now, old), old, new: now, event };
    } else k = { need: (this.usedFlags() & VRING_USED_F_NO_NOTIFY) === 0, old, new: now, event: -1 };
    this.probe.kicked?.(k);
    return k;
  }

  getBuf(): GetBuf {
    if (this.lastUsedIdx === this.usedIdx()) return { kind: "none" };
    // virtio_rmb: the entry is read only after seeing the index.
    const e = this.layout.usedRing + usedSlotOffset(this.lastUsedIdx % this.size);
    const id = this.ram.u32(e + USED_ELEM_ID);
    const len = this.ram.u32(e + USED_ELEM_LEN);
    const buf = id < this.size ? this.inFlight[id] : undefined;
    if (buf === undefined) {
      const reason = id >= this.size ? `id ${id} >= size ${this.size}` : `id ${id} is not a head in flight`;
      this.probe.badUsed?.(id, len, reason);
      return { kind: "bad", id, len, reason };
    }
    this.detach(buf);
    this.lastUsedIdx = (this.lastUsedIdx + 1) & 0xffff;
    if (this.eventIdx && this.callbacksEnabled) {
      // virtio_store_mb: tell the device the next used index we want an interrupt for.
      this.setUsedEvent(this.lastUsedIdx);
    }
    this.probe.reaped?.(buf, len);
    return { kind: "buf", buf, len };
  }

  private detach(buf: GuestBuffer): void {
    this.inFlight[buf.id] = undefined;
    this.inFlightCount--;
    // The chain's descriptors go back on the front of the free list in chain order.
    let last = buf.id;
    for (let k = 1; k < buf.ringDescs; k++) last = this.nextFree[last]!;
    this.nextFree[last] = this.freeHead;
    this.freeHead = buf.id;
    this.numFree += buf.ringDescs;
  }

  usedPending(): number {
    return (this.usedIdx() - this.lastUsedIdx) & 0xffff;
  }

  interruptThreshold(): number {
    return this.eventIdx ? (this.usedEvent() - this.lastUsedIdx) & 0xffff : 0;
  }

  /** virtqueue_disable_cb: with EVENT_IDX Linux leaves the flag out of the ring and relies on used_event. */
  disableCb(): void {
    if (!this.callbacksEnabled) return;
    this.availFlagsShadow |= VRING_AVAIL_F_NO_INTERRUPT;
    if (!this.eventIdx) this.setAvailFlags(this.availFlagsShadow);
  }

  private enableFlags(): void {
    if (this.callbacksEnabled) return;
    this.availFlagsShadow &= ~VRING_AVAIL_F_NO_INTERRUPT;
    if (!this.eventIdx) this.setAvailFlags(this.availFlagsShadow);
  }

  enableCbPrepare(): number {
    this.enableFlags();
    if (this.eventIdx) this.setUsedEvent(this.lastUsedIdx);
    return this.lastUsedIdx;
  }

  poll(last: number): boolean {
    return last !== this.usedIdx();
  }

  enableCbDelayed(): boolean {
    this.enableFlags();
    const bufs = (((this.availIdx - this.lastUsedIdx) & 0xffff) * 3) >> 2;
    if (this.eventIdx) this.setUsedEvent((this.lastUsedIdx + bufs) & 0xffff);
    return ((this.usedIdx() - this.lastUsedIdx) & 0xffff) <= bufs;
  }

  // ---- raw hooks (GuestQueue)

  descAddr(id: number): number {
    return this.layout.descTable + descOffset(id);
  }
  firstFlags(id: number): number {
    return this.ram.u16(this.descAddr(id) + DESC_FLAGS);
  }
  setFirstFlags(id: number, flags: number): void {
    this.ram.setU16(this.descAddr(id) + DESC_FLAGS, flags);
  }

  // ---- test helpers

  /**
   * Adds a chain of `buffers` (readable ones should come first, §2.7.4.2) and by default
   * publishes avail.idx; with `indirectTable`, the buffers go into a table at that address.
   * Returns the head index, or undefined when too few descriptors are free.
   */
  addChain(buffers: readonly DriverBuffer[], opts: AddChainOptions = {}): number | undefined {
    const head = this.place(buffers, 0, opts.indirectTable);
    if (head === NO_ROOM) return undefined;
    if (opts.publish !== false) this.publish();
    return head;
  }

  /**
   * Every used entry published since the last reap, unvalidated (a test reads what the
   * device wrote); frees the chains `add` made that they name.
   */
  reapUsed(): UsedEntry[] {
    const out: UsedEntry[] = [];
    const end = this.usedIdx();
    while (this.lastUsedIdx !== end) {
      const e = this.readUsed(this.lastUsedIdx);
      out.push(e);
      const buf = e.id < this.size ? this.inFlight[e.id] : undefined;
      if (buf !== undefined) this.detach(buf);
      this.lastUsedIdx = (this.lastUsedIdx + 1) & 0xffff;
    }
    return out;
  }

  /** Free descriptor-table entries. */
  get freeDescriptors(): number {
    return this.numFree;
  }

  // ---- raw access (also how a hostile guest is modelled)

  /** Writes descriptor `index` of the table at `table` (default: this queue's table). */
  writeDescriptor(index: number, d: DescriptorInput, table: number | bigint = this.layout.descTable): void {
    this.putDescriptor(table, index, d.addr, d.len, d.flags, d.next);
  }

  /** writeDescriptor with the fields as arguments (add's path: no object per descriptor). */
  private putDescriptor(
    table: number | bigint,
    index: number,
    addr: number | bigint,
    len: number,
    flags: number,
    next: number,
  ): void {
    const at = this.descriptorAt(table, index);
    const r = this.ram.at(at, DESC_SIZE, true);
    writeDescriptorFields(r.view, at - r.base, addr, len, flags, next);
  }

  /**
   * Where descriptor `index` of the table at `table` lies: in numbers when the sum is exact
   * (every table a driver places); a hostile table address (a bigint, a fraction, beyond
   * 2^53) goes through BigInt as written.
   */
  private descriptorAt(table: number | bigint, index: number): number {
    const off = descOffset(index);
    return typeof table === "number" && Number.isSafeInteger(table) && Number.isSafeInteger(table + off)
      ? table + off
      : Number(BigInt(table) + BigInt(off));
  }

  readDescriptor(index: number, table: number = this.layout.descTable): Descriptor {
    const { view, off } = this.ram.viewAt(table + descOffset(index), DESC_SIZE);
    return decodeAt(view, off);
  }

  /** Rewrites the flags (or next) of descriptor `index` of the queue's table. */
  setDescriptorFlags(index: number, flags: number): void {
    this.ram.setU16(this.layout.descTable + descOffset(index) + DESC_FLAGS, flags);
  }
  setDescriptorNext(index: number, next: number): void {
    this.ram.setU16(this.layout.descTable + descOffset(index) + DESC_NEXT, next);
  }

  /** Writes avail.ring[slot % size]. */
  writeAvailRing(slot: number, head: number): void {
    this.ram.setU16(this.layout.availRing + availSlotOffset(slot % this.size), head);
  }
  readAvailRing(slot: number): number {
    return this.ram.u16(this.layout.availRing + availSlotOffset(slot % this.size));
  }

  /** Puts `head` in the next avail slot without publishing. */
  pushAvail(head: number): void {
    this.writeAvailRing(this.availIdx, head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  /** Writes avail.idx (and the driver's own idx) to any u16. */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    this.publish();
  }
  /** Writes avail.idx only (the driver keeps its own idx: a lie it can undo). */
  writeAvailIdx(idx: number): void {
    this.ram.setU16(this.layout.availRing + AVAIL_IDX, idx);
  }
  readAvailIdx(): number {
    return this.ram.u16(this.layout.availRing + AVAIL_IDX);
  }
  setAvailFlags(flags: number): void {
    this.ram.setU16(this.layout.availRing + AVAIL_FLAGS, flags);
  }
  availFlags(): number {
    return this.ram.u16(this.layout.availRing + AVAIL_FLAGS);
  }
  /** EVENT_IDX: avail.used_event, the used idx after which the driver wants an interrupt. */
  setUsedEvent(v: number): void {
    this.ram.setU16(this.layout.availRing + usedEventOffset(this.size), v);
  }
  usedEvent(): number {
    return this.ram.u16(this.layout.availRing + usedEventOffset(this.size));
  }
  /** EVENT_IDX: used.avail_event, the avail idx after which the device wants a kick. */
  availEvent(): number {
    return this.ram.u16(this.layout.usedRing + availEventOffset(this.size));
  }
  usedFlags(): number {
    return this.ram.u16(this.layout.usedRing + USED_FLAGS);
  }
  usedIdx(): number {
    return this.ram.u16(this.layout.usedRing + USED_IDX);
  }
  /** used.ring[slot % size]. */
  readUsed(slot: number): UsedEntry {
    const at = this.layout.usedRing + usedSlotOffset(slot % this.size);
    return { id: this.ram.u32(at + USED_ELEM_ID), len: this.ram.u32(at + USED_ELEM_LEN) };
  }
}
