/**
 * The device side of a packed virtqueue (VIRTIO 1.2 §2.8) with the device API of
 * `SplitQueue`: configure / initialize / reset, popInto (a reused chain) / pop / undoPop,
 * addUsed + publishUsed, prepareKick, enable / disable / tryEnableNotification,
 * popOrEnableNotification. Same rules, tags and fields as spec/packed-queue.ts (PVQ-*);
 * `state()` is the spec's `SpecPackedQueue`, so the two compare with `toEqual`.
 *
 * The three addresses keep the split ring's names (what the transport's registers are
 * called): `descTable` is the ring, `availRing` the Driver Area, `usedRing` the Device Area.
 *
 * Hot path: `popInto(chain)` + `addUsed` + `publishUsed` allocate nothing. Buffers in flight
 * are a doubly linked list over arrays indexed by buffer id (pop order, for IN_ORDER and
 * undoPop), and used descriptors waiting for their flags an array of (slot, flags); both are
 * sized at initialize. Ring and area accesses go to the region views taken at initialize and
 * are reported to `memory.recorder` when one is set.
 */
import type { GuestMemory } from "../memory/guest-memory.ts";
import { err, ok, type Result } from "../../spec/result.ts";
import {
  type EventSuppression,
  type InFlight,
  type PackedQueueError,
  type PendingUsed,
  type SpecPackedQueue,
} from "../../spec/packed-queue.ts";
import { PackedDescriptorChain } from "./packed-chain.ts";
import { PopStatus } from "./split-queue.ts";

export type { EventSuppression, PackedQueueError, SpecPackedQueue } from "../../spec/packed-queue.ts";
export { PopStatus } from "./split-queue.ts";
import * as wire from "../../wire/packed.ts";
import * as split from "../../wire/split.ts";

const NOT_READY: PackedQueueError = Object.freeze({ _tag: "NotReady" });
const ERR_NOT_READY = Object.freeze(err(NOT_READY));
const OK_VOID = Object.freeze(ok(undefined));
const OK_TRUE = Object.freeze(ok(true));
const OK_FALSE = Object.freeze(ok(false));
const OK_NONE = Object.freeze(ok(null));

// Module-local copies of the wire layout (wire/README.md: V8 folds a module's own consts into
// the code it inlines into a caller's loop; an imported binding is loaded on every use).
const DESC_SIZE = wire.PACKED_DESC_SIZE;
const DESC_ADDR = wire.PACKED_DESC_ADDR;
const DESC_ADDR_HI = wire.PACKED_DESC_ADDR_HI;
const DESC_LEN = wire.PACKED_DESC_LEN;
const DESC_ID = wire.PACKED_DESC_ID;
const DESC_FLAGS = wire.PACKED_DESC_FLAGS;
// id and flags are adjacent u16s: read as one u32 at DESC_ID, id | flags << 16.
const DESC_ID_FLAGS = wire.PACKED_DESC_ID;
const AVAIL_BIT = wire.VIRTQ_PACKED_DESC_F_AVAIL;
const USED_BIT = wire.VIRTQ_PACKED_DESC_F_USED;
const VIRTQ_DESC_F_AVAIL = wire.VIRTQ_DESC_F_AVAIL;
const VIRTQ_DESC_F_USED = wire.VIRTQ_DESC_F_USED;
const VIRTQ_DESC_F_NEXT = split.VIRTQ_DESC_F_NEXT;
const VIRTQ_DESC_F_WRITE = split.VIRTQ_DESC_F_WRITE;
const VIRTQ_DESC_F_INDIRECT = split.VIRTQ_DESC_F_INDIRECT;
const EVENT_OFF_WRAP = wire.EVENT_OFF_WRAP;
const EVENT_FLAGS = wire.EVENT_FLAGS;
const RING_EVENT_WRAP = wire.RING_EVENT_WRAP;
const RING_EVENT_OFF_MASK = wire.RING_EVENT_OFF_MASK;
const RING_EVENT_FLAGS_ENABLE = wire.RING_EVENT_FLAGS_ENABLE;
const RING_EVENT_FLAGS_DISABLE = wire.RING_EVENT_FLAGS_DISABLE;
const RING_EVENT_FLAGS_DESC = wire.RING_EVENT_FLAGS_DESC;
const MAX_PACKED_QUEUE_SIZE = wire.MAX_PACKED_QUEUE_SIZE;
const EVENT_AREA_SIZE = BigInt(wire.EVENT_AREA_SIZE);
const NONE = -1;

export class PackedQueue {
  readonly maxSize: number;
  private _size: number;
  private _ready = false;
  private _descTable = 0n;
  private _availRing = 0n;
  private _usedRing = 0n;
  private _eventIdx = false;
  private _inOrder = false;
  private active = false;

  private _nextAvail = 0;
  private availWrap = 1;
  private _nextUsed = 0;
  private usedWrap = 1;
  private _numAdded = 0;

  /** Why the last popInto returned false (not updated when it returns true), and the error when `PopStatus.Error`. */
  lastPop: PopStatus = PopStatus.Empty;
  lastError: PackedQueueError | null = null;

  // Set by initialize (valid only while `active`).
  private mem: GuestMemory | null = null;
  private size = 0;
  private descN = 0;
  private driverN = 0;
  private deviceN = 0;
  private descView: DataView = new DataView(new ArrayBuffer(0));
  private descOff = 0;
  private driverView: DataView = new DataView(new ArrayBuffer(0));
  private driverOff = 0;
  private deviceView: DataView = new DataView(new ArrayBuffer(0));
  private deviceOff = 0;

  // Buffers in flight, by id: slot count (0 = not in flight), first slot, wrap there, and the
  // pop-order list links.
  private slotsOf: Uint16Array = new Uint16Array(0);
  private headOf: Uint16Array = new Uint16Array(0);
  private wrapOf: Uint8Array = new Uint8Array(0);
  private prev: Int32Array = new Int32Array(0);
  private next: Int32Array = new Int32Array(0);
  private oldest = NONE;
  private newest = NONE;
  // Used descriptors whose flags publishUsed writes.
  private pendSlot: Uint16Array = new Uint16Array(0);
  private pendFlags: Uint16Array = new Uint16Array(0);
  private pendCount = 0;
  /** Slots from the first unpublished used descriptor to next_used: the slots added since the last publish. */
  private pendSlots = 0;

  /** PVQ-MAX-SIZE: `maxSize` is the device's, an integer in 1..=32768 (a device bug otherwise: throws). */
  constructor(maxSize = 256) {
    if (!(Number.isInteger(maxSize) && maxSize >= 1 && maxSize <= MAX_PACKED_QUEUE_SIZE)) {
      throw new RangeError(`PackedQueue: max size ${maxSize} is not an integer in 1..=32768`);
    }
    this.maxSize = maxSize;
    this._size = maxSize;
  }

  // ---- configuration

  /** The driver writes configuration; the queue is inactive until initialized again (PVQ-INACTIVE). */
  configure(c: {
    readonly size?: number;
    readonly ready?: boolean;
    readonly descTable?: number | bigint;
    readonly availRing?: number | bigint;
    readonly usedRing?: number | bigint;
  }): void {
    if (c.size !== undefined) this._size = c.size;
    if (c.ready !== undefined) this._ready = c.ready;
    if (c.descTable !== undefined) this._descTable = BigInt(c.descTable);
    if (c.availRing !== undefined) this._availRing = BigInt(c.availRing);
    if (c.usedRing !== undefined) this._usedRing = BigInt(c.usedRing);
    this.deactivate();
  }

  /** VIRTIO_F_RING_EVENT_IDX negotiated: DESC event suppression (PVQ-NOTIFY-*). */
  enableNotifSuppression(): void {
    this._eventIdx = true;
  }
  /** VIRTIO_F_IN_ORDER negotiated (PVQ-IN-ORDER). */
  enableInOrder(): void {
    this._inOrder = true;
  }
  get eventIdx(): boolean {
    return this._eventIdx;
  }
  get inOrder(): boolean {
    return this._inOrder;
  }
  get isActive(): boolean {
    return this.active;
  }
  get nextAvail(): number {
    return this._nextAvail;
  }
  get nextUsed(): number {
    return this._nextUsed;
  }
  get numAdded(): number {
    return this._numAdded;
  }

  /** Positions set directly (restore, tests); they take effect at the next initialize (PVQ-INIT-FRESH). */
  setPositions(p: {
    readonly nextAvail?: number;
    readonly availWrap?: boolean;
    readonly nextUsed?: number;
    readonly usedWrap?: boolean;
    readonly numAdded?: number;
  }): void {
    if (p.nextAvail !== undefined) this._nextAvail = p.nextAvail;
    if (p.availWrap !== undefined) this.availWrap = p.availWrap ? 1 : 0;
    if (p.nextUsed !== undefined) this._nextUsed = p.nextUsed;
    if (p.usedWrap !== undefined) this.usedWrap = p.usedWrap ? 1 : 0;
    if (p.numAdded !== undefined) this._numAdded = p.numAdded & 0xffff;
    this.deactivate();
  }

  /**
   * Both positions as one u32, as vhost-user's GET_VRING_BASE carries a packed ring's:
   * next_avail in bits 0-14 and its wrap counter in bit 15, next_used in bits 16-30 and its
   * wrap counter in bit 31 (QEMU docs/interop/vhost-user.rst, "Vring descriptor indices for
   * packed virtqueues").
   */
  positionsWord(): number {
    return (
      ((this._nextAvail & 0x7fff) |
        (this.availWrap << 15) |
        ((this._nextUsed & 0x7fff) << 16) |
        (this.usedWrap << 31)) >>>
      0
    );
  }

  /** `positionsWord`'s inverse (SET_VRING_BASE); like `setPositions`, in effect at the next initialize. */
  setPositionsWord(word: number): void {
    const w = word >>> 0;
    this.setPositions({
      nextAvail: w & 0x7fff,
      availWrap: (w & 0x8000) !== 0,
      nextUsed: (w >>> 16) & 0x7fff,
      usedWrap: (w & 0x8000_0000) !== 0,
      numAdded: 0,
    });
  }

  /** The state in the spec's shape, to compare with the reference model. */
  state(): SpecPackedQueue {
    const inFlight: InFlight[] = [];
    for (let id = this.oldest; id !== NONE; id = this.next[id]!) {
      inFlight.push({ id, head: this.headOf[id]!, wrap: this.wrapOf[id] === 1, slots: this.slotsOf[id]! });
    }
    const pending: PendingUsed[] = [];
    for (let i = 0; i < this.pendCount; i++)
      pending.push({ slot: this.pendSlot[i]!, flags: this.pendFlags[i]! });
    return {
      maxSize: this.maxSize,
      size: this._size,
      ready: this._ready,
      descTable: this._descTable,
      availRing: this._availRing,
      usedRing: this._usedRing,
      eventIdx: this._eventIdx,
      inOrder: this._inOrder,
      active: this.active,
      nextAvail: this._nextAvail,
      availWrap: this.availWrap === 1,
      nextUsed: this._nextUsed,
      usedWrap: this.usedWrap === 1,
      numAdded: this._numAdded,
      inFlight,
      pending,
    };
  }

  /** PVQ-INIT-*: validates the configuration against `memory` and activates the queue. */
  initialize(memory: GuestMemory): Result<void, PackedQueueError> {
    this.deactivate();
    const size = this._size;
    if (!this._ready) return ERR_NOT_READY;
    if (!(Number.isInteger(size) && size >= 1 && size <= this.maxSize && size <= MAX_PACKED_QUEUE_SIZE)) {
      return err({ _tag: "InvalidSize", size, maxSize: this.maxSize });
    }
    if (this._descTable % BigInt(wire.PACKED_RING_ALIGN) !== 0n)
      return err({ _tag: "InvalidDescRingAlign", addr: this._descTable });
    if (this._availRing % BigInt(wire.EVENT_AREA_ALIGN) !== 0n)
      return err({ _tag: "InvalidDriverAreaAlign", addr: this._availRing });
    if (this._usedRing % BigInt(wire.EVENT_AREA_ALIGN) !== 0n)
      return err({ _tag: "InvalidDeviceAreaAlign", addr: this._usedRing });
    const ringLen = BigInt(wire.packedRingBytes(size));
    // The device reads and writes the ring, reads the Driver Area, writes the Device Area.
    const desc = memory.tryLocate(this._descTable, ringLen, true);
    if (!desc.ok)
      return err({ _tag: "RingOutOfMemory", ring: "descRing", addr: this._descTable, len: ringLen });
    const driver = memory.tryLocate(this._availRing, EVENT_AREA_SIZE, false);
    if (!driver.ok)
      return err({
        _tag: "RingOutOfMemory",
        ring: "driverArea",
        addr: this._availRing,
        len: EVENT_AREA_SIZE,
      });
    const device = memory.tryLocate(this._usedRing, EVENT_AREA_SIZE, true);
    if (!device.ok)
      return err({ _tag: "RingOutOfMemory", ring: "deviceArea", addr: this._usedRing, len: EVENT_AREA_SIZE });
    this.mem = memory;
    this.size = size;
    this.descN = Number(this._descTable);
    this.driverN = Number(this._availRing);
    this.deviceN = Number(this._usedRing);
    this.descView = desc.value.region.view;
    this.descOff = desc.value.offset;
    this.driverView = driver.value.region.view;
    this.driverOff = driver.value.offset;
    this.deviceView = device.value.region.view;
    this.deviceOff = device.value.offset;
    // PVQ-INIT-FRESH.
    if (!(Number.isInteger(this._nextAvail) && this._nextAvail >= 0 && this._nextAvail < size)) {
      this._nextAvail = 0;
      this.availWrap = 1;
    }
    if (!(Number.isInteger(this._nextUsed) && this._nextUsed >= 0 && this._nextUsed < size)) {
      this._nextUsed = 0;
      this.usedWrap = 1;
    }
    if (this.slotsOf.length < size) {
      this.slotsOf = new Uint16Array(size);
      this.headOf = new Uint16Array(size);
      this.wrapOf = new Uint8Array(size);
      this.prev = new Int32Array(size);
      this.next = new Int32Array(size);
      this.pendSlot = new Uint16Array(size);
      this.pendFlags = new Uint16Array(size);
    }
    this.forget();
    this.active = true;
    return OK_VOID;
  }

  /** PVQ-RESET: back to the state of a new queue. */
  reset(): void {
    this._size = this.maxSize;
    this._ready = false;
    this._descTable = 0n;
    this._availRing = 0n;
    this._usedRing = 0n;
    this._eventIdx = false;
    this._inOrder = false;
    this._nextAvail = 0;
    this.availWrap = 1;
    this._nextUsed = 0;
    this.usedWrap = 1;
    this._numAdded = 0;
    this.lastPop = PopStatus.Empty;
    this.lastError = null;
    this.forget();
    this.deactivate();
  }

  /** Nothing in flight, nothing unpublished. */
  private forget(): void {
    this.slotsOf.fill(0);
    this.oldest = NONE;
    this.newest = NONE;
    this.pendCount = 0;
    this.pendSlots = 0;
  }

  private deactivate(): void {
    this.active = false;
    this.mem = null;
    this.size = 0;
  }

  private note(addr: number, len: number, write: boolean): void {
    const rec = this.mem!.recorder;
    if (rec !== null) rec(addr, len, write);
  }

  // ---- availability

  /** PVQ-AVAIL: the flags at next_avail say a chain is available. */
  private availableAt(): boolean {
    const slot = this._nextAvail;
    this.note(this.descN + DESC_SIZE * slot + DESC_FLAGS, 2, false);
    const flags = this.descView.getUint16(this.descOff + DESC_SIZE * slot + DESC_FLAGS, true);
    const w = this.availWrap;
    return ((flags >>> AVAIL_BIT) & 1) === w && ((flags >>> USED_BIT) & 1) !== w;
  }

  /** PVQ-AVAIL: no chain is available (true when inactive). */
  isEmpty(): boolean {
    return !this.active || !this.availableAt();
  }

  // ---- pop

  /**
   * PVQ-POP-*: pops the next chain into `chain` (reused, nothing allocated). True when a chain
   * was popped; otherwise `lastPop` says why and `lastError` holds the error.
   */
  popInto(chain: PackedDescriptorChain): boolean {
    // The common case in few bytecodes (V8 inlines a loop's callees only up to a budget): an
    // available one-descriptor chain with a free id and no recorder. Everything else,
    // including every refusal, takes popSlow, which applies the same rules in general.
    const mem = this.mem;
    if (mem === null || mem.recorder !== null) return this.popSlow(chain);
    const head = this._nextAvail;
    const view = this.descView;
    const o = this.descOff + DESC_SIZE * head;
    const idFlags = view.getUint32(o + DESC_ID_FLAGS, true);
    const w = this.availWrap;
    // PVQ-AVAIL, and no NEXT or INDIRECT.
    if (
      idFlags >>> 16 !==
      (w === 1 ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED) + ((idFlags >>> 16) & VIRTQ_DESC_F_WRITE)
    ) {
      return this.popSlow(chain);
    }
    const id = idFlags & 0xffff;
    const size = this.size;
    if (id >= size || this.slotsOf[id] !== 0) return this.popSlow(chain);
    chain.loadSingle(
      mem,
      size,
      head,
      w === 1,
      view.getUint32(o + DESC_ADDR, true),
      view.getUint32(o + DESC_ADDR_HI, true),
      view.getUint32(o + DESC_LEN, true),
      idFlags,
    );
    this.track(id, head, 1);
    if (head + 1 === size) {
      this._nextAvail = 0;
      this.availWrap = w ^ 1;
    } else this._nextAvail = head + 1;
    return true;
  }

  /** popInto's general path: every chain shape, every refusal, each access told to a recorder. */
  private popSlow(chain: PackedDescriptorChain): boolean {
    if (!this.active) return this.popError(NOT_READY);
    if (!this.availableAt()) return this.popEmpty();
    const size = this.size;
    const view = this.descView;
    const base = this.descOff;
    const head = this._nextAvail;
    const rec = this.mem!.recorder;
    chain.prepare(this.mem!, size);
    // PVQ-CHAIN-NEXT, PVQ-CHAIN-LIMIT: copy the ring part while reading it.
    let slot = head;
    let count = 0;
    let idFlags: number;
    for (;;) {
      const o = base + DESC_SIZE * slot;
      if (rec !== null) rec(this.descN + DESC_SIZE * slot, DESC_SIZE, false);
      idFlags = view.getUint32(o + DESC_ID_FLAGS, true);
      chain.store(
        count,
        view.getUint32(o + DESC_ADDR, true),
        view.getUint32(o + DESC_ADDR_HI, true),
        view.getUint32(o + DESC_LEN, true),
        idFlags,
      );
      count++;
      const flags = idFlags >>> 16;
      if ((flags & VIRTQ_DESC_F_NEXT) === 0 || count === size) break;
      if (count === 1 && (flags & VIRTQ_DESC_F_INDIRECT) !== 0) break; // PVQ-INDIRECT
      slot = slot + 1 === size ? 0 : slot + 1;
    }
    const id = idFlags & 0xffff; // PVQ-BUFFER-ID
    if (id >= size) {
      chain.clear();
      return this.popError({ _tag: "InvalidBufferId", id, size });
    }
    if (this.slotsOf[id] !== 0) {
      chain.clear();
      return this.popError({ _tag: "BufferIdInUse", id });
    }
    this.track(id, head, count);
    chain.load(head, this.availWrap === 1, count, id);
    const n = head + count;
    if (n >= size) {
      this._nextAvail = n - size;
      this.availWrap ^= 1;
    } else this._nextAvail = n;
    return true;
  }

  /** PVQ-POP-ADVANCE: buffer `id` is in flight, the newest, from `head` (at next_avail's wrap) over `count` slots. */
  private track(id: number, head: number, count: number): void {
    this.slotsOf[id] = count;
    this.headOf[id] = head;
    this.wrapOf[id] = this.availWrap;
    this.prev[id] = this.newest;
    this.next[id] = NONE;
    if (this.newest === NONE) this.oldest = id;
    else this.next[this.newest] = id;
    this.newest = id;
  }

  private popEmpty(): false {
    this.lastPop = PopStatus.Empty;
    this.lastError = null;
    return false;
  }

  private popError(e: PackedQueueError): false {
    this.lastPop = PopStatus.Error;
    this.lastError = e;
    return false;
  }

  /** `popInto` with a new chain, as the spec's `pop` result: ok(chain), ok(null) or err. */
  pop(): Result<PackedDescriptorChain | null, PackedQueueError> {
    if (!this.active) {
      this.popError(NOT_READY);
      return ERR_NOT_READY;
    }
    const chain = new PackedDescriptorChain(this.mem!);
    return this.popInto(chain) ? ok(chain) : this.notPopped();
  }

  private notPopped(): Result<null, PackedQueueError> {
    return this.lastPop === PopStatus.Error ? err(this.lastError!) : OK_NONE;
  }

  /** Takes `id` out of the in-flight list. */
  private unlink(id: number): void {
    const p = this.prev[id]!;
    const n = this.next[id]!;
    if (p === NONE) this.oldest = n;
    else this.next[p] = n;
    if (n === NONE) this.newest = p;
    else this.prev[n] = p;
    this.slotsOf[id] = 0;
  }

  /** PVQ-UNDO-POP: gives back the newest buffer in flight if its slots end at next_avail. */
  undoPop(): void {
    if (!this.active) return;
    const id = this.newest;
    if (id === NONE) return;
    let end = this.headOf[id]! + this.slotsOf[id]!;
    let wrap = this.wrapOf[id]!;
    if (end >= this.size) {
      end -= this.size;
      wrap ^= 1;
    }
    if (end !== this._nextAvail || wrap !== this.availWrap) return;
    this._nextAvail = this.headOf[id]!;
    this.availWrap = this.wrapOf[id]!;
    this.unlink(id);
  }

  /** PVQ-POP-OR-ENABLE, into a reused chain. */
  popOrEnableNotificationInto(chain: PackedDescriptorChain): boolean {
    const t = this.tryEnableNotification();
    if (!t.ok) return this.popError(t.error);
    if (t.value) return this.popEmpty();
    return this.popInto(chain);
  }

  popOrEnableNotification(): Result<PackedDescriptorChain | null, PackedQueueError> {
    if (!this.active) {
      this.popError(NOT_READY);
      return ERR_NOT_READY;
    }
    const chain = new PackedDescriptorChain(this.mem!);
    return this.popOrEnableNotificationInto(chain) ? ok(chain) : this.notPopped();
  }

  // ---- used descriptors

  /**
   * PVQ-ADD-USED, PVQ-IN-ORDER, PVQ-USED-FLAGS: writes len and id of the used descriptor at
   * next_used and skips the buffer's slots (with IN_ORDER, every older buffer's too); its
   * flags wait for `publishUsed`.
   */
  addUsed(id: number, len: number): Result<void, PackedQueueError> {
    // The common case in few bytecodes (so V8 inlines it into the device's loop): a buffer in
    // flight, no IN_ORDER, no recorder, no earlier batch to publish first. Everything else,
    // every refusal included, takes addUsedSlow, which applies the same rules in general.
    const mem = this.mem; // null exactly when inactive
    if (mem === null || mem.recorder !== null || this._inOrder || id >>> 0 !== id || id >= this.size) {
      return this.addUsedSlow(id, len);
    }
    const slots = this.slotsOf[id]!;
    const size = this.size;
    // pendSlots >= 2 * size also lands here (slots >= 1).
    if (slots === 0 || this.pendSlots + slots > size) return this.addUsedSlow(id, len);
    this.unlink(id);
    this.putUsed(id, len >>> 0, slots);
    return OK_VOID;
  }

  /** addUsed's general path: IN_ORDER, a batch to publish first, a recorder, every refusal. */
  private addUsedSlow(id: number, len: number): Result<void, PackedQueueError> {
    if (!this.active) return ERR_NOT_READY;
    if (!(id >>> 0 === id && id < this.size && this.slotsOf[id] !== 0)) {
      return err({ _tag: "BufferIdNotInFlight", id });
    }
    let slots = 0;
    if (this._inOrder) {
      // The oldest buffers up to and including id (id is in the list, so this ends there).
      for (;;) {
        const o = this.oldest;
        slots += this.slotsOf[o]!;
        this.unlink(o);
        if (o === id) break;
      }
    } else {
      slots = this.slotsOf[id]!;
      this.unlink(id);
    }
    const size = this.size;
    // PVQ-PUBLISH-USED: the span from the first unpublished used descriptor to next_used is
    // pendSlots, as a ring distance (more than a lap only after a hostile driver re-offered
    // slots still in flight).
    const p2 = 2 * size;
    const span = this.pendSlots < p2 ? this.pendSlots : this.pendSlots % p2;
    if (span + slots > size && this.pendCount > 0) this.publishPending();
    const rec = this.mem!.recorder;
    if (rec !== null) {
      const slot = this._nextUsed;
      rec(this.descN + DESC_SIZE * slot + DESC_LEN, 4, true);
      rec(this.descN + DESC_SIZE * slot + DESC_ID, 2, true);
    }
    this.putUsed(id, len >>> 0, slots);
    return OK_VOID;
  }

  /**
   * PVQ-ADD-USED, PVQ-USED-FLAGS: len and id at next_used, its flags pending, next_used
   * `slots` on (more than one lap only when a hostile driver re-offered slots still in
   * flight, IN_ORDER).
   */
  private putUsed(id: number, len: number, slots: number): void {
    const size = this.size;
    const slot = this._nextUsed;
    const o = this.descOff + DESC_SIZE * slot;
    this.descView.setUint32(o + DESC_LEN, len, true);
    this.descView.setUint16(o + DESC_ID, id, true);
    const p = this.pendCount++;
    this.pendSlot[p] = slot;
    this.pendFlags[p] =
      (this.usedWrap === 1 ? VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED : 0) | (len > 0 ? VIRTQ_DESC_F_WRITE : 0);
    this.pendSlots += slots;
    let n = slot + slots;
    while (n >= size) {
      n -= size;
      this.usedWrap ^= 1;
    }
    this._nextUsed = n;
    this._numAdded = (this._numAdded + slots) & 0xffff;
  }

  /** PVQ-PUBLISH-USED: the flags of every used descriptor added since the last publish, the first last. */
  publishUsed(): Result<void, PackedQueueError> {
    if (!this.active) return ERR_NOT_READY;
    this.publishPending();
    return OK_VOID;
  }

  private publishPending(): void {
    const count = this.pendCount;
    for (let i = 1; i < count; i++) this.writeFlags(this.pendSlot[i]!, this.pendFlags[i]!);
    if (count > 0) this.writeFlags(this.pendSlot[0]!, this.pendFlags[0]!);
    this.pendCount = 0;
    this.pendSlots = 0;
  }

  private writeFlags(slot: number, flags: number): void {
    const rec = this.mem!.recorder;
    if (rec !== null) rec(this.descN + DESC_SIZE * slot + DESC_FLAGS, 2, true);
    this.descView.setUint16(this.descOff + DESC_SIZE * slot + DESC_FLAGS, flags, true);
  }

  // ---- notifications

  /** PVQ-NOTIFY-DRIVER: must the device notify the driver of the used descriptors added since the last call? */
  prepareKick(): boolean {
    if (!this.active) return false;
    this.note(this.driverN + EVENT_FLAGS, 2, false);
    const mode = this.driverView.getUint16(this.driverOff + EVENT_FLAGS, true) & 3;
    const added = this._numAdded;
    this._numAdded = 0;
    if (mode === RING_EVENT_FLAGS_DISABLE) return false;
    if (mode !== RING_EVENT_FLAGS_DESC || !this._eventIdx) return true;
    this.note(this.driverN + EVENT_OFF_WRAP, 2, false);
    const offWrap = this.driverView.getUint16(this.driverOff + EVENT_OFF_WRAP, true);
    let event = offWrap & RING_EVENT_OFF_MASK;
    if (((offWrap & RING_EVENT_WRAP) === 0 ? 0 : 1) !== this.usedWrap) event = (event - this.size) & 0xffff;
    const used = this._nextUsed;
    // Linux vring_need_event(event, new = next_used, old = next_used - num_added).
    // new - old is num_added itself (kept below 2^16).
    return ((used - event - 1) & 0xffff) < added;
  }

  private writeDeviceFlags(flags: number): void {
    this.note(this.deviceN + EVENT_FLAGS, 2, true);
    this.deviceView.setUint16(this.deviceOff + EVENT_FLAGS, flags, true);
  }

  /** What enableNotification writes (PVQ-NOTIFY-DEVICE). */
  private writeEnable(): void {
    if (this._eventIdx) {
      this.note(this.deviceN + EVENT_OFF_WRAP, 2, true);
      this.deviceView.setUint16(
        this.deviceOff + EVENT_OFF_WRAP,
        this._nextAvail | (this.availWrap === 1 ? RING_EVENT_WRAP : 0),
        true,
      );
      this.writeDeviceFlags(RING_EVENT_FLAGS_DESC);
    } else this.writeDeviceFlags(RING_EVENT_FLAGS_ENABLE);
  }

  /** PVQ-NOTIFY-DEVICE: asks the driver not to notify. */
  disableNotification(): Result<void, PackedQueueError> {
    if (!this.active) return ERR_NOT_READY;
    this.writeDeviceFlags(RING_EVENT_FLAGS_DISABLE);
    return OK_VOID;
  }

  /** PVQ-NOTIFY-DEVICE: asks the driver to notify again; true when a chain is already available. */
  enableNotification(): Result<boolean, PackedQueueError> {
    if (!this.active) return ERR_NOT_READY;
    this.writeEnable();
    return this.availableAt() ? OK_TRUE : OK_FALSE;
  }

  /** PVQ-TRY-ENABLE. */
  tryEnableNotification(): Result<boolean, PackedQueueError> {
    if (!this.active) return ERR_NOT_READY;
    if (this.availableAt()) return OK_FALSE;
    this.writeEnable();
    return this.availableAt() ? OK_FALSE : OK_TRUE;
  }

  /** PVQ-EVENT-FIELDS: the Driver Area. */
  driverEvent(): Result<EventSuppression, PackedQueueError> {
    if (!this.active) return ERR_NOT_READY;
    this.note(this.driverN, wire.EVENT_AREA_SIZE, false);
    return ok({
      offWrap: this.driverView.getUint16(this.driverOff + EVENT_OFF_WRAP, true),
      flags: this.driverView.getUint16(this.driverOff + EVENT_FLAGS, true),
    });
  }

  /** PVQ-EVENT-FIELDS: the Device Area as last written. */
  deviceEvent(): Result<EventSuppression, PackedQueueError> {
    if (!this.active) return ERR_NOT_READY;
    this.note(this.deviceN, wire.EVENT_AREA_SIZE, false);
    return ok({
      offWrap: this.deviceView.getUint16(this.deviceOff + EVENT_OFF_WRAP, true),
      flags: this.deviceView.getUint16(this.deviceOff + EVENT_FLAGS, true),
    });
  }
}
