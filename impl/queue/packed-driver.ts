/**
 * The guest driver of a packed virtqueue (VIRTIO 1.2 §2.8): what Linux's
 * drivers/virtio/virtio_ring.c packed path does, behind the ring-neutral `GuestQueue`
 * (guest-queue.ts), plus the raw writes tests and hostile guests use.
 *
 * - Buffer ids come from a free list in driver-private memory (Linux desc_extra / free_head);
 *   ring slots are counted apart (num_free). A chain takes one slot per descriptor (one when
 *   it goes through an indirect table) and every descriptor carries its id.
 * - Each chain's descriptors are written with the AVAIL/USED bits of the driver's wrap
 *   counter, the first descriptor's flags last [PVQ-DRIVER-AVAIL]; `add` holds those first
 *   flags back until `publish` writes them (the earliest chain's last), so the device sees
 *   nothing of a chain before the whole of it.
 * - Used descriptors are found at the driver's used position by their AVAIL/USED bits equal
 *   to its used wrap counter, and skipped by the slots remembered for their id
 *   [PVQ-DRIVER-USED]. An id out of range or not in flight is Linux's BAD_RING: `getBuf`
 *   says "bad" and never throws. With VIRTIO_F_IN_ORDER a used descriptor also completes
 *   every older buffer.
 * - Kicks: virtqueue_kick_prepare_packed over the Device Area (DISABLE / ENABLE / DESC with
 *   off_wrap, moved back a lap when its wrap bit is not the driver's) [PVQ-DRIVER-KICK].
 * - Interrupts: virtqueue_disable_cb_packed / enable_cb_prepare_packed / poll_packed /
 *   enable_cb_delayed_packed over the Driver Area (DESC with off_wrap under EVENT_IDX).
 */
import type { GuestMemory } from "../memory/guest-memory.ts";
import {
  EVENT_AREA_SIZE,
  EVENT_FLAGS,
  EVENT_OFF_WRAP,
  PACKED_DESC_FLAGS,
  PACKED_DESC_ID,
  PACKED_DESC_LEN,
  PACKED_DESC_SIZE,
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  RING_EVENT_WRAP,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_USED,
  VIRTQ_DESC_F_WRITE,
  EVENT_AREA_ALIGN,
  PACKED_RING_ALIGN,
  packedDescOffset,
  packedRingBytes,
  readPackedDescriptor,
  writePackedDescriptor,
} from "../../wire/packed.ts";
import { vringNeedEvent, type SplitLayout } from "../../wire/split.ts";
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

/** Where a packed queue lies: the descriptor ring, the Driver Area, the Device Area (split field names). */
export type PackedLayout = SplitLayout;

/** A completed buffer: its id and the len the device wrote (`skipped`: completed by a later in-order used descriptor). */
export interface PackedUsedEntry {
  readonly id: number;
  readonly len: number;
  readonly skipped: boolean;
}

export interface PackedAddOptions {
  /** Put the buffers in an indirect table at this guest address (one ring slot). */
  readonly indirectTable?: number | bigint;
  /** Write the first descriptor's flags now (default true); otherwise `publish()` does. */
  readonly publish?: boolean;
}

/** A raw packed descriptor to write (PVQ-DESC-LAYOUT). */
export interface PackedDescriptor {
  readonly addr: number | bigint;
  readonly len: number;
  readonly id: number;
  readonly flags: number;
}

export interface PackedDriverOptions extends GuestQueueOptions {
  /** VIRTIO_F_IN_ORDER: a used descriptor also completes every older buffer. */
  readonly inOrder?: boolean;
}

const alignUp = (x: number, a: number): number => Math.ceil(x / a) * a;

/** The ring, then the Driver Area, then the Device Area, each aligned as §2.8.10.1 asks. */
export const packedLayoutAt = (base: number, size: number): PackedLayout => {
  const descTable = alignUp(base, PACKED_RING_ALIGN);
  const availRing = alignUp(descTable + packedRingBytes(size), EVENT_AREA_ALIGN);
  return { descTable, availRing, usedRing: availRing + EVENT_AREA_SIZE };
};

/** The first byte after a queue laid out by `packedLayoutAt`. */
export const packedLayoutEnd = (layout: PackedLayout): number => layout.usedRing + EVENT_AREA_SIZE;

/** The AVAIL/USED bits a driver gives an available descriptor with wrap counter `wrap` (§2.8.1). */
export const availFlags = (wrap: boolean): number => (wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED);

/** Whether descriptor flags mark a used descriptor for a side with used wrap counter `wrap` (Linux is_used_desc_packed). */
export const isUsedFlags = (flags: number, wrap: boolean): boolean =>
  ((flags & VIRTQ_DESC_F_AVAIL) !== 0) === wrap && ((flags & VIRTQ_DESC_F_USED) !== 0) === wrap;

/** off_wrap's event offset as seen from a side with wrap counter `wrap`: a lap back when the bits differ. */
const eventOffset = (offWrap: number, wrap: boolean, size: number): number => {
  const off = offWrap & ~RING_EVENT_WRAP;
  return ((offWrap & RING_EVENT_WRAP) !== 0) === wrap ? off : (off - size) & 0xffff;
};

const NO_PROBE: GuestQueueProbe = {};
const NONE: GetBuf = { kind: "none" };

export class PackedDriver implements GuestQueue {
  readonly ring = "packed" as const;
  readonly memory: GuestMemory;
  readonly ram: GuestRam;
  readonly size: number;
  readonly layout: PackedLayout;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly inOrder: boolean;
  private readonly probe: GuestQueueProbe;
  /** Where the next chain goes, and the Driver Ring Wrap Counter. */
  nextAvail = 0;
  availWrap = true;
  /** Where the next used descriptor is expected, and the driver's used wrap counter. */
  usedIdx = 0;
  usedWrap = true;
  /** Free ring slots. */
  numFree: number;
  /** Slots made available since the last kick decision. */
  private numAdded = 0;
  /** Free ids: a stack in driver-private memory (Linux: free_head and desc_extra[].next). */
  private readonly freeIds: Uint16Array;
  private freeCount: number;
  private readonly inFlight: (GuestBuffer | undefined)[];
  inFlightCount = 0;
  /** Ids in the order their chains were made available (for IN_ORDER). */
  private readonly order: number[] = [];
  /** The first ring slot of each id's chain. */
  private readonly headSlot: Uint16Array;
  /** First-descriptor flags not yet written: slot, flags, slot, flags... */
  private readonly held: number[] = [];
  /** Completed older buffers an in-order used descriptor stood for, not yet handed out. */
  private readonly doneInOrder: { buf: GuestBuffer; len: number; skipped: boolean }[] = [];
  private lastSkipped = false;
  /** Linux event_flags_shadow: what the driver last wrote to the Driver Area flags. */
  private eventFlagsShadow: number = RING_EVENT_FLAGS_ENABLE;
  private seq = 0;

  constructor(memory: GuestMemory, size: number, layout: PackedLayout, opts: PackedDriverOptions = {}) {
    this.memory = memory;
    this.ram = new GuestRam(memory);
    this.size = size;
    this.layout = layout;
    this.eventIdx = opts.eventIdx === true;
    this.indirect = opts.indirect !== false;
    this.inOrder = opts.inOrder === true;
    this.probe = opts.probe ?? NO_PROBE;
    this.numFree = size;
    this.freeIds = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.freeIds[i] = size - 1 - i;
    this.freeCount = size;
    this.headSlot = new Uint16Array(size);
    this.inFlight = new Array<GuestBuffer | undefined>(size).fill(undefined);
    // The descriptor ring is zero-initialized (§2.8.13); so are both event structures.
    this.ram.bytes(layout.descTable, packedRingBytes(size), true).fill(0);
    this.setDriverEvent(0, RING_EVENT_FLAGS_ENABLE);
    this.ram.setU32(layout.usedRing, 0);
  }

  /** A queue laid out by `packedLayoutAt(base, size)`. */
  static at(memory: GuestMemory, size: number, base: number, opts: PackedDriverOptions = {}): PackedDriver {
    return new PackedDriver(memory, size, packedLayoutAt(base, size), opts);
  }

  get occupancy(): number {
    return this.size - this.numFree;
  }

  get unpublished(): number {
    return this.held.length >> 1;
  }

  get callbacksEnabled(): boolean {
    return this.eventFlagsShadow !== RING_EVENT_FLAGS_DISABLE;
  }

  areas(): readonly RingArea[] {
    const l = this.layout;
    return [
      // The device writes used descriptors into the ring itself.
      { addr: l.descTable, len: packedRingBytes(this.size), deviceWrites: true },
      { addr: l.availRing, len: EVENT_AREA_SIZE, deviceWrites: false },
      { addr: l.usedRing, len: EVENT_AREA_SIZE, deviceWrites: true },
    ];
  }

  nextId(): number {
    return this.freeCount > 0 ? this.freeIds[this.freeCount - 1]! : NO_ROOM;
  }

  descsFor(n: number, indirect: boolean): number {
    return indirect && this.indirect ? 1 : n;
  }

  inFlightAt(id: number): GuestBuffer | undefined {
    return this.inFlight[id];
  }

  // ---- a well-behaved driver (GuestQueue)

  add(segments: readonly SegmentInput[], token: number, opts: AddOptions = {}): number {
    return this.place(segments, token, opts.indirectTable);
  }

  private place(buffers: readonly DriverBuffer[], token: number, table: number | bigint | undefined): number {
    const n = buffers.length;
    const indirect = table !== undefined && this.indirect;
    const slots = indirect ? 1 : n;
    if (n === 0 || (indirect && n > 0xffff) || slots > this.numFree || this.freeCount === 0) return NO_ROOM;
    const id = this.freeIds[--this.freeCount]!;
    const head = this.nextAvail;
    const avail = availFlags(this.availWrap);
    const { segments, outBytes, inBytes } = recordSegments(buffers);
    let headFlags: number;
    if (indirect) {
      for (let i = 0; i < n; i++) {
        const b = buffers[i]!;
        this.writeSlot(
          i,
          { addr: b.addr, len: b.len, id: 0, flags: b.write === true ? VIRTQ_DESC_F_WRITE : 0 },
          table,
        );
      }
      headFlags = VIRTQ_DESC_F_INDIRECT | avail;
      this.writeBody(head, table, PACKED_DESC_SIZE * n, id);
      this.step();
    } else {
      headFlags = 0;
      for (let i = 0; i < n; i++) {
        const b = buffers[i]!;
        const flags =
          (b.write === true ? VIRTQ_DESC_F_WRITE : 0) |
          (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0) |
          availFlags(this.availWrap);
        // The first descriptor's flags come last: until then it keeps what it had (zero, or a
        // used descriptor of the previous lap), which is not available.
        if (i === 0) {
          this.writeBody(this.nextAvail, b.addr, b.len, id);
          headFlags = flags;
        } else this.writeSlot(this.nextAvail, { addr: b.addr, len: b.len, id, flags });
        this.step();
      }
    }
    this.numFree -= slots;
    this.numAdded += slots;
    const buf: GuestBuffer = {
      seq: this.seq++,
      id,
      segments,
      indirect,
      table: indirect ? Number(table) : 0,
      ringDescs: slots,
      outBytes,
      inBytes,
      token,
    };
    this.inFlight[id] = buf;
    this.headSlot[id] = head;
    this.inFlightCount++;
    if (this.inOrder) this.order.push(id);
    this.held.push(head, headFlags);
    this.probe.added?.(buf);
    return id;
  }

  /** Writes the first-descriptor flags `add` held back, the earliest chain's last. */
  publish(): void {
    const held = this.held;
    for (let i = held.length - 2; i >= 0; i -= 2) this.writeFlags(held[i]!, held[i + 1]!);
    held.length = 0;
    this.probe.published?.();
  }

  private step(): void {
    if (++this.nextAvail === this.size) {
      this.nextAvail = 0;
      this.availWrap = !this.availWrap;
    }
  }

  kickPrepare(): KickDecision {
    const now = this.nextAvail;
    const old = (now - this.numAdded) & 0xffff;
    this.numAdded = 0;
    const flags = this.ram.u16(this.layout.usedRing + EVENT_FLAGS);
    let k: KickDecision;
    if (flags !== RING_EVENT_FLAGS_DESC)
      k = { need: flags !== RING_EVENT_FLAGS_DISABLE, old, new: now, event: -1 };
    else {
      const event = eventOffset(
        this.ram.u16(this.layout.usedRing + EVENT_OFF_WRAP),
        this.availWrap,
        this.size,
      );
      k = { need: vringNeedEvent(event, now, old), old, new: now, event };
    }
    this.probe.kicked?.(k);
    return k;
  }

  /** Whether the descriptor at the driver's used position is used (PVQ-DRIVER-USED). */
  hasUsed(): boolean {
    return this.isUsedAt(this.usedIdx, this.usedWrap);
  }

  private isUsedAt(slot: number, wrap: boolean): boolean {
    return isUsedFlags(
      this.ram.u16(this.layout.descTable + packedDescOffset(slot) + PACKED_DESC_FLAGS),
      wrap,
    );
  }

  getBuf(): GetBuf {
    if (this.doneInOrder.length === 0) {
      const g = this.takeUsed();
      if (g !== undefined) return g;
    }
    const d = this.doneInOrder.shift();
    if (d === undefined) return NONE;
    this.lastSkipped = d.skipped;
    this.probe.reaped?.(d.buf, d.len);
    return { kind: "buf", buf: d.buf, len: d.len };
  }

  /** Takes the used descriptor at the used position into `doneInOrder`; a result when there is none or it is bad. */
  private takeUsed(): GetBuf | undefined {
    if (!this.hasUsed()) return NONE;
    // virtio_rmb: id and len are read only after the flags.
    const at = this.layout.descTable + packedDescOffset(this.usedIdx);
    const id = this.ram.u16(at + PACKED_DESC_ID);
    const len = this.ram.u32(at + PACKED_DESC_LEN);
    const buf = id < this.size ? this.inFlight[id] : undefined;
    if (buf === undefined) {
      const reason = id >= this.size ? `id ${id} >= size ${this.size}` : `id ${id} is not a buffer in flight`;
      this.probe.badUsed?.(id, len, reason);
      return { kind: "bad", id, len, reason };
    }
    if (this.inOrder) {
      // Every older buffer is complete too: handed out first, with the room it offered.
      const k = this.order.indexOf(id);
      for (let i = 0; i < k; i++) {
        const older = this.inFlight[this.order[i]!]!;
        this.detach(older);
        this.doneInOrder.push({ buf: older, len: older.inBytes, skipped: true });
      }
      this.order.splice(0, k + 1);
    }
    this.detach(buf);
    this.doneInOrder.push({ buf, len, skipped: false });
    if (this.eventFlagsShadow === RING_EVENT_FLAGS_DESC) {
      // virtio_store_mb: the next used descriptor is the one the driver wants to hear of.
      this.ram.setU16(this.layout.availRing + EVENT_OFF_WRAP, this.usedPosition());
    }
    return undefined;
  }

  private detach(buf: GuestBuffer): void {
    this.inFlight[buf.id] = undefined;
    this.inFlightCount--;
    this.freeIds[this.freeCount++] = buf.id;
    this.numFree += buf.ringDescs;
    this.usedIdx += buf.ringDescs;
    while (this.usedIdx >= this.size) {
      this.usedIdx -= this.size;
      this.usedWrap = !this.usedWrap;
    }
  }

  /** The driver's used position with its wrap counter in bit 15 (Linux last_used_idx). */
  private usedPosition(): number {
    return this.usedIdx | (this.usedWrap ? RING_EVENT_WRAP : 0);
  }

  /**
   * Ring slots the device has marked used past the driver's used position (the slots of the
   * used chains, in ring order), stopping at a descriptor naming no buffer in flight.
   */
  usedPending(): number {
    let slot = this.usedIdx;
    let wrap = this.usedWrap;
    let n = 0;
    for (let seen = 0; seen < this.inFlightCount && this.isUsedAt(slot, wrap); seen++) {
      const id = this.ram.u16(this.layout.descTable + packedDescOffset(slot) + PACKED_DESC_ID);
      const buf = id < this.size ? this.inFlight[id] : undefined;
      if (buf === undefined) break;
      n += buf.ringDescs;
      slot += buf.ringDescs;
      while (slot >= this.size) {
        slot -= this.size;
        wrap = !wrap;
      }
    }
    return n;
  }

  /** Slots from the used position to the event offset the driver wrote (EVENT_IDX), else 0. */
  interruptThreshold(): number {
    if (this.eventFlagsShadow !== RING_EVENT_FLAGS_DESC) return 0;
    const offWrap = this.ram.u16(this.layout.availRing + EVENT_OFF_WRAP);
    const off = offWrap & ~RING_EVENT_WRAP;
    const lap = ((offWrap & RING_EVENT_WRAP) !== 0) === this.usedWrap ? 0 : this.size;
    return off + lap - this.usedIdx;
  }

  disableCb(): void {
    if (this.eventFlagsShadow === RING_EVENT_FLAGS_DISABLE) return;
    this.eventFlagsShadow = RING_EVENT_FLAGS_DISABLE;
    this.ram.setU16(this.layout.availRing + EVENT_FLAGS, RING_EVENT_FLAGS_DISABLE);
  }

  private enableFlags(): void {
    if (this.eventFlagsShadow !== RING_EVENT_FLAGS_DISABLE) return;
    this.eventFlagsShadow = this.eventIdx ? RING_EVENT_FLAGS_DESC : RING_EVENT_FLAGS_ENABLE;
    this.ram.setU16(this.layout.availRing + EVENT_FLAGS, this.eventFlagsShadow);
  }

  /** virtqueue_enable_cb_prepare_packed: off_wrap first (EVENT_IDX), then the flags. */
  enableCbPrepare(): number {
    if (this.eventIdx) this.ram.setU16(this.layout.availRing + EVENT_OFF_WRAP, this.usedPosition());
    this.enableFlags();
    return this.usedPosition();
  }

  /** virtqueue_poll_packed. */
  poll(last: number): boolean {
    return this.isUsedAt(last & ~RING_EVENT_WRAP, (last & RING_EVENT_WRAP) !== 0);
  }

  /** virtqueue_enable_cb_delayed_packed: the event ~3/4 of the outstanding slots ahead. */
  enableCbDelayed(): boolean {
    if (this.eventIdx) {
      const bufs = ((this.size - this.numFree) * 3) >> 2;
      let at = this.usedIdx + bufs;
      let wrap = this.usedWrap;
      if (at >= this.size) {
        at -= this.size;
        wrap = !wrap;
      }
      this.ram.setU16(this.layout.availRing + EVENT_OFF_WRAP, at | (wrap ? RING_EVENT_WRAP : 0));
    }
    this.enableFlags();
    return !this.hasUsed();
  }

  // ---- raw hooks (GuestQueue)

  descAddr(id: number): number {
    return this.layout.descTable + packedDescOffset(this.headSlot[id]!);
  }
  firstFlags(id: number): number {
    const slot = this.headSlot[id]!;
    const held = this.held;
    for (let i = 0; i < held.length; i += 2) if (held[i] === slot) return held[i + 1]!;
    return this.ram.u16(this.descAddr(id) + PACKED_DESC_FLAGS);
  }
  setFirstFlags(id: number, flags: number): void {
    const slot = this.headSlot[id]!;
    const held = this.held;
    for (let i = 0; i < held.length; i += 2)
      if (held[i] === slot) {
        held[i + 1] = flags & 0xffff;
        return;
      }
    this.writeFlags(slot, flags);
  }
  /** The ring slot the chain `id` starts at. */
  headSlotOf(id: number): number {
    return this.headSlot[id]!;
  }

  // ---- test helpers

  /**
   * Makes a chain of `buffers` available (readable ones first, §2.8.17) and by default
   * publishes it. Returns the buffer id, or undefined when no id or too few slots are free.
   */
  addChain(buffers: readonly DriverBuffer[], opts: PackedAddOptions = {}): number | undefined {
    const id = this.place(buffers, 0, opts.indirectTable);
    if (id === NO_ROOM) return undefined;
    if (opts.publish !== false) this.publish();
    return id;
  }

  /** Every used buffer the device has published since the last reap, until a bad one. */
  reapUsed(): PackedUsedEntry[] {
    const out: PackedUsedEntry[] = [];
    for (let g = this.getBuf(); g.kind === "buf"; g = this.getBuf()) {
      out.push({ id: g.buf.id, len: g.len, skipped: this.lastSkipped });
    }
    return out;
  }

  /** virtqueue_disable_cb_packed (test name). */
  disableInterrupts(): void {
    this.disableCb();
  }

  /**
   * virtqueue_enable_cb_prepare_packed with `eventIdx` chosen by the caller: notifications
   * again, for the next used descriptor under EVENT_IDX. True when one is already waiting.
   */
  enableInterrupts(eventIdx: boolean): boolean {
    if (eventIdx) this.ram.setU16(this.layout.availRing + EVENT_OFF_WRAP, this.usedPosition());
    this.eventFlagsShadow = eventIdx ? RING_EVENT_FLAGS_DESC : RING_EVENT_FLAGS_ENABLE;
    this.ram.setU16(this.layout.availRing + EVENT_FLAGS, this.eventFlagsShadow);
    return this.hasUsed();
  }

  // ---- raw access (also how a hostile guest is modelled)

  writeSlot(slot: number, d: PackedDescriptor, table: number | bigint = this.layout.descTable): void {
    const at = Number(BigInt(table) + BigInt(packedDescOffset(slot)));
    const { view, off } = this.ram.viewAt(at, PACKED_DESC_SIZE, true);
    writePackedDescriptor(view, off, d);
  }

  /** addr, len and id of a slot, leaving its flags. */
  private writeBody(slot: number, addr: number | bigint, len: number, id: number): void {
    const at = this.layout.descTable + packedDescOffset(slot);
    const flags = this.ram.u16(at + PACKED_DESC_FLAGS);
    this.writeSlot(slot, { addr, len, id, flags });
  }

  readSlot(slot: number): { addr: bigint; len: number; id: number; flags: number } {
    const { view, off } = this.ram.viewAt(this.layout.descTable + packedDescOffset(slot), PACKED_DESC_SIZE);
    return readPackedDescriptor(view, off);
  }

  writeFlags(slot: number, flags: number): void {
    this.ram.setU16(this.layout.descTable + packedDescOffset(slot) + PACKED_DESC_FLAGS, flags);
  }

  /** Writes the Driver Area (what the device reads before a used notification). */
  setDriverEvent(offWrap: number, flags: number): void {
    this.ram.setU16(this.layout.availRing + EVENT_OFF_WRAP, offWrap);
    this.ram.setU16(this.layout.availRing + EVENT_FLAGS, flags);
  }
  driverEvent(): { offWrap: number; flags: number } {
    return {
      offWrap: this.ram.u16(this.layout.availRing + EVENT_OFF_WRAP),
      flags: this.ram.u16(this.layout.availRing + EVENT_FLAGS),
    };
  }
  /** The Device Area as the device last wrote it. */
  deviceEvent(): { offWrap: number; flags: number } {
    return {
      offWrap: this.ram.u16(this.layout.usedRing + EVENT_OFF_WRAP),
      flags: this.ram.u16(this.layout.usedRing + EVENT_FLAGS),
    };
  }
}
