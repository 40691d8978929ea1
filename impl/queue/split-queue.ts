/**
 * The device side of a split virtqueue (VIRTIO 1.2 §2.7), following Firecracker's `Queue`
 * (pop, undo_pop, add_used, publishing used.idx as its own step, EVENT_IDX) with rust-vmm's
 * reset and notification flags. Same rules, tags and fields as spec/queue.ts (VQ-*); the
 * spec's `SpecQueue` is what `state()` returns, so the two compare with `toEqual`.
 *
 * Hot path: `popInto(chain)` + `addUsed` + `publishUsed` allocate nothing. initialize
 * checks every ring lies inside one region (VQ-INIT-MEMORY) and keeps the regions' views,
 * so ring accesses need no lookup; when the memory has a `recorder` each ring access is
 * still reported to it.
 */
import type { GuestMemory } from "../memory/guest-memory.ts";
import { err, ok, type Result } from "../../spec/result.ts";
import type { QueueError, SpecQueue } from "../../spec/queue.ts";
import * as wire from "../../wire/split.ts";
import { DescriptorChain } from "./descriptor-chain.ts";

export type { QueueConfig, QueueError, SpecQueue } from "../../spec/queue.ts";

// Module-local copies of the wire layout: V8 folds a module's own consts into inlined code but
// loads an imported binding from its cell on every use (see descriptor-chain.ts).
const AVAIL_FLAGS = wire.AVAIL_FLAGS;
const AVAIL_IDX = wire.AVAIL_IDX;
const USED_FLAGS = wire.USED_FLAGS;
const USED_IDX = wire.USED_IDX;
const USED_ELEM_SIZE = wire.USED_ELEM_SIZE;
const USED_ELEM_ID = wire.USED_ELEM_ID;
const USED_ELEM_LEN = wire.USED_ELEM_LEN;
const MAX_QUEUE_SIZE = wire.MAX_QUEUE_SIZE;
const VRING_AVAIL_F_NO_INTERRUPT = wire.VRING_AVAIL_F_NO_INTERRUPT;
const VRING_USED_F_NO_NOTIFY = wire.VRING_USED_F_NO_NOTIFY;

/** Why the last `popInto` / `popOrEnableNotificationInto` returned false. */
export const PopStatus = {
  /** Nothing available (or notifications were re-enabled on an empty queue). */
  Empty: 1,
  /** The head in the avail ring was refused (CHAIN-CHECKED-NEW); next_avail did not move (VQ-POP-HEAD). */
  InvalidHead: 2,
  /** An error; see `lastError`. */
  Error: 3,
} as const;
export type PopStatus = (typeof PopStatus)[keyof typeof PopStatus];

const NOT_READY: QueueError = Object.freeze({ _tag: "NotReady" });
const ERR_NOT_READY = Object.freeze(err(NOT_READY));
const OK_VOID = Object.freeze(ok(undefined));
const OK_TRUE = Object.freeze(ok(true));
const OK_FALSE = Object.freeze(ok(false));
const OK_NONE = Object.freeze(ok(null));

const isPow2 = (x: number): boolean => x > 0 && (x & (x - 1)) === 0;

export class SplitQueue {
  readonly maxSize: number;
  private _size: number;
  private _ready = false;
  private _descTable = 0n;
  private _availRing = 0n;
  private _usedRing = 0n;
  private _eventIdx = false;
  private active = false;

  private _nextAvail = 0;
  private _nextUsed = 0;
  // num_added is kept as the next_used it counts from, so addUsed writes one field, not two.
  private kickBase = 0;

  /** Why the last popInto returned false (not updated when it returns true), and the error when `PopStatus.Error`. */
  lastPop: PopStatus = PopStatus.Empty;
  lastError: QueueError | null = null;

  // Set by initialize (valid only while `active`).
  private mem: GuestMemory | null = null;
  private size = 0;
  private mask = 0;
  private descTableN = 0;
  private availN = 0;
  private usedN = 0;
  // A new object per activation: chains bound to an older one re-bind (see DescriptorChain.bind).
  private token: object = {};
  private descView: DataView = new DataView(new ArrayBuffer(0));
  private descOff = 0;
  private availView: DataView = new DataView(new ArrayBuffer(0));
  private availOff = 0;
  private usedView: DataView = new DataView(new ArrayBuffer(0));
  private usedOff = 0;

  /** VQ-MAX-SIZE: `maxSize` is the device's, a power of two in 1..=32768 (a device bug otherwise: throws). */
  constructor(maxSize = 256) {
    if (!(Number.isInteger(maxSize) && isPow2(maxSize) && maxSize <= MAX_QUEUE_SIZE)) {
      throw new RangeError(`SplitQueue: max size ${maxSize} is not a power of two in 1..=32768`);
    }
    this.maxSize = maxSize;
    this._size = maxSize;
  }

  // ---- configuration (what the driver writes through the transport)

  /** The driver writes configuration; the queue is inactive until initialized again (VQ-INACTIVE). */
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

  /** VQ-EVENT-IDX: VIRTIO_F_EVENT_IDX was negotiated. */
  enableNotifSuppression(): void {
    this._eventIdx = true;
  }
  get eventIdx(): boolean {
    return this._eventIdx;
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
    return (this._nextUsed - this.kickBase) & 0xffff;
  }

  /** Sets positions directly (snapshot restore, tests), as the spec's `setPositions`. */
  setPositions(p: {
    readonly nextAvail?: number;
    readonly nextUsed?: number;
    readonly numAdded?: number;
  }): void {
    const added = p.numAdded ?? this.numAdded;
    if (p.nextAvail !== undefined) this._nextAvail = p.nextAvail & 0xffff;
    if (p.nextUsed !== undefined) this._nextUsed = p.nextUsed & 0xffff;
    this.kickBase = (this._nextUsed - added) & 0xffff;
  }

  /** The state in the spec's shape (`SpecQueue`), to compare with the reference model. */
  state(): SpecQueue {
    return {
      maxSize: this.maxSize,
      size: this._size,
      ready: this._ready,
      descTable: this._descTable,
      availRing: this._availRing,
      usedRing: this._usedRing,
      eventIdx: this._eventIdx,
      active: this.active,
      nextAvail: this._nextAvail,
      nextUsed: this._nextUsed,
      numAdded: this.numAdded,
    };
  }

  /** VQ-INIT-*: validates the configuration against `memory` and activates the queue. */
  initialize(memory: GuestMemory): Result<void, QueueError> {
    this.deactivate();
    const size = this._size;
    if (!this._ready) return ERR_NOT_READY;
    if (!(Number.isInteger(size) && isPow2(size) && size <= this.maxSize && size <= MAX_QUEUE_SIZE)) {
      return err({ _tag: "InvalidSize", size, maxSize: this.maxSize });
    }
    if (this._descTable % BigInt(wire.DESC_TABLE_ALIGN) !== 0n)
      return err({ _tag: "InvalidDescTableAlign", addr: this._descTable });
    if (this._availRing % BigInt(wire.AVAIL_RING_ALIGN) !== 0n)
      return err({ _tag: "InvalidAvailRingAlign", addr: this._availRing });
    if (this._usedRing % BigInt(wire.USED_RING_ALIGN) !== 0n)
      return err({ _tag: "InvalidUsedRingAlign", addr: this._usedRing });
    const descLen = BigInt(wire.descTableBytes(size));
    const desc = memory.tryLocate(this._descTable, descLen, false);
    if (!desc.ok)
      return err({ _tag: "RingOutOfMemory", ring: "descTable", addr: this._descTable, len: descLen });
    // The device only reads the avail ring (VQ-DEVICE-ACCESS); say so to a recorder.
    const availLen = BigInt(wire.availRingBytes(size));
    const avail = memory.tryLocate(this._availRing, availLen, false);
    if (!avail.ok)
      return err({ _tag: "RingOutOfMemory", ring: "availRing", addr: this._availRing, len: availLen });
    const usedLen = BigInt(wire.usedRingBytes(size));
    const used = memory.tryLocate(this._usedRing, usedLen, true);
    if (!used.ok)
      return err({ _tag: "RingOutOfMemory", ring: "usedRing", addr: this._usedRing, len: usedLen });
    this.mem = memory;
    this.size = size;
    this.mask = size - 1;
    this.descTableN = Number(this._descTable);
    this.availN = Number(this._availRing);
    this.usedN = Number(this._usedRing);
    this.descView = desc.value.region.view;
    this.descOff = desc.value.offset;
    this.availView = avail.value.region.view;
    this.availOff = avail.value.offset;
    this.usedView = used.value.region.view;
    this.usedOff = used.value.offset;
    this.token = {};
    this.active = true;
    return OK_VOID;
  }

  /** VQ-RESET (rust-vmm PR 225): back to the state of a new queue; the old rings are never read again. */
  reset(): void {
    this._size = this.maxSize;
    this._ready = false;
    this._descTable = 0n;
    this._availRing = 0n;
    this._usedRing = 0n;
    this._eventIdx = false;
    this._nextAvail = 0;
    this._nextUsed = 0;
    this.kickBase = 0;
    this.lastPop = PopStatus.Empty;
    this.lastError = null;
    this.deactivate();
  }

  private deactivate(): void {
    this.active = false;
    this.mem = null;
    this.size = 0;
    this.mask = 0;
    // No chain is bound to an inactive queue (popInto relies on it; bindChain runs only when active).
    this.token = {};
  }

  /** Reports a ring access to the memory's recorder, if any (bounds properties). */
  private note(addr: number, len: number, write: boolean): void {
    const rec = this.mem!.recorder;
    if (rec !== null) rec(addr, len, write);
  }

  // ---- ring fields

  /** avail.idx as the driver wrote it; 0 when inactive (VQ-INACTIVE). */
  availIdx(): number {
    if (!this.active) return 0;
    this.note(this.availN + AVAIL_IDX, 2, false);
    return this.availView.getUint16(this.availOff + AVAIL_IDX, true);
  }

  /** avail.ring[slot] for slot < size (Kani verify_avail_ring_ring_get); -1 when inactive or slot out of range. */
  readAvailRing(slot: number): number {
    if (!this.active || slot >>> 0 !== slot || slot >= this.size) return -1;
    const o = wire.availSlotOffset(slot);
    this.note(this.availN + o, 2, false);
    return this.availView.getUint16(this.availOff + o, true);
  }

  /** VQ-LEN: chains the driver has made available and the device has not popped. */
  len(): number {
    if (!this.active) return 0;
    return (this.availIdx() - this._nextAvail) & 0xffff;
  }
  isEmpty(): boolean {
    return this.len() === 0;
  }

  /** VQ-EVENT-FIELDS: avail.used_event. */
  usedEvent(): Result<number, QueueError> {
    if (!this.active) return ERR_NOT_READY;
    return ok(this.readUsedEvent());
  }
  private readUsedEvent(): number {
    const o = wire.usedEventOffset(this.size);
    this.note(this.availN + o, 2, false);
    return this.availView.getUint16(this.availOff + o, true);
  }
  /** VQ-EVENT-FIELDS: used.avail_event as last written. */
  availEvent(): Result<number, QueueError> {
    if (!this.active) return ERR_NOT_READY;
    const o = wire.availEventOffset(this.size);
    this.note(this.usedN + o, 2, false);
    return ok(this.usedView.getUint16(this.usedOff + o, true));
  }
  /** VQ-EVENT-FIELDS: writes used.avail_event. */
  setAvailEvent(v: number): Result<void, QueueError> {
    if (!this.active) return ERR_NOT_READY;
    this.writeAvailEvent(v & 0xffff);
    return OK_VOID;
  }
  private writeAvailEvent(v: number): void {
    const o = wire.availEventOffset(this.size);
    this.note(this.usedN + o, 2, true);
    this.usedView.setUint16(this.usedOff + o, v, true);
  }
  private readUsedFlags(): number {
    this.note(this.usedN + USED_FLAGS, 2, false);
    return this.usedView.getUint16(this.usedOff + USED_FLAGS, true);
  }
  private writeUsedFlags(v: number): void {
    this.note(this.usedN + USED_FLAGS, 2, true);
    this.usedView.setUint16(this.usedOff + USED_FLAGS, v, true);
  }

  // ---- pop

  /**
   * VQ-POP-*: pops the next chain into `chain` (reused, nothing allocated). True when a chain
   * was popped; otherwise `lastPop` says why and `lastError` holds the error.
   */
  popInto(chain: DescriptorChain): boolean {
    // V8 inlines a caller's methods only up to a bytecode budget (920 bytes for everything a
    // loop calls), so the hot path is kept small: an inactive queue, a memory recorder, a chain
    // not yet bound here, an empty queue and errors all go to popSlow. The
    // ring offsets are literals here and in addUsed (wire/split.ts: avail.idx 2, avail.ring 4,
    // 2 bytes a slot; used.ring 4, 8 bytes an element, len at 4): a module const costs a context
    // load and a hole check in the bytecode. The properties check the layout.
    // A chain bound to this activation's token means the queue is active (deactivate renews it).
    if (chain.boundTo !== this.token || this.mem!.recorder !== null) return this.popSlow(chain);
    const next = this._nextAvail;
    const view = this.availView;
    // u16 arithmetic as `<< 16 >>> 16`: `& 0xffff` takes a 4-byte operand in the bytecode (see above).
    const n = ((view.getUint16(this.availOff + 2, true) - next) << 16) >>> 16;
    if (n === 0 || n > this.size) return this.popNone(n);
    const head = view.getUint16(this.availOff + 4 + 2 * (next & this.mask), true);
    // The chain is bound here and the memory has no recorder (checked above): only the head's
    // range is left to check before the chain reads it (CHAIN-CHECKED-NEW).
    if (head >= this.size) return this.refuseHead(chain, head);
    if (!chain.loadBoundChecked(head)) return this.popNone(-1);
    this._nextAvail = ((next + 1) << 16) >>> 16;
    return true;
  }

  /** An out-of-range head: the chain refuses it as loadBound does (VQ-POP-HEAD). */
  private refuseHead(chain: DescriptorChain, head: number): false {
    chain.loadBound(head);
    return this.popNone(-1);
  }

  /** popInto's general path: the same steps, each ring access told to a recorder. */
  private popSlow(chain: DescriptorChain): boolean {
    if (!this.active) return this.popError(NOT_READY);
    const recording = this.mem!.recorder !== null;
    if (recording) this.noteAvail(AVAIL_IDX);
    const n = (this.availView.getUint16(this.availOff + AVAIL_IDX, true) - this._nextAvail) & 0xffff;
    if (n === 0 || n > this.size) return this.popNone(n);
    const o = wire.availSlotOffset(this._nextAvail & this.mask);
    if (recording) this.noteAvail(o);
    const head = this.availView.getUint16(this.availOff + o, true);
    if (chain.boundTo !== this.token) this.bindChain(chain);
    if (!chain.loadBound(head)) return this.popNone(-1);
    this._nextAvail = (this._nextAvail + 1) & 0xffff;
    return true;
  }

  private noteAvail(offset: number): void {
    this.mem!.recorder!(this.availN + offset, 2, false);
  }

  private bindChain(chain: DescriptorChain): void {
    chain.bind(this.mem!, this.descTableN, this.size, this.descView, this.descOff, this.token);
  }

  /** Why popInto popped nothing: `n` pending chains (VQ-POP-EMPTY, VQ-POP-AVAIL-IDX), or -1 for a refused head (VQ-POP-HEAD). */
  private popNone(n: number): false {
    if (n > 0) return this.availIdxError(n);
    this.lastPop = n < 0 ? PopStatus.InvalidHead : PopStatus.Empty;
    this.lastError = null;
    return false;
  }

  private availIdxError(n: number): false {
    return this.popError({ _tag: "InvalidAvailIdx", len: n, size: this.size });
  }

  private popError(e: QueueError): false {
    this.lastPop = PopStatus.Error;
    this.lastError = e;
    return false;
  }

  /** `popInto` with a new chain, as the spec's `pop` result: ok(chain), ok(null) or err. */
  pop(): Result<DescriptorChain | null, QueueError> {
    if (!this.active) {
      this.popError(NOT_READY);
      return ERR_NOT_READY;
    }
    const chain = new DescriptorChain(this.mem!);
    return this.popInto(chain) ? ok(chain) : this.notPopped();
  }

  private notPopped(): Result<null, QueueError> {
    return this.lastPop === PopStatus.Error ? err(this.lastError!) : OK_NONE;
  }

  /** VQ-UNDO-POP. */
  undoPop(): void {
    this._nextAvail = (this._nextAvail - 1) & 0xffff;
  }

  /** VQ-POP-OR-ENABLE, into a reused chain. */
  popOrEnableNotificationInto(chain: DescriptorChain): boolean {
    if (!this.active) return this.popError(NOT_READY);
    if (!this._eventIdx) return this.popInto(chain);
    const t = this.tryEnableNotification();
    if (!t.ok) return this.popError(t.error);
    if (t.value) return this.popNone(0);
    return this.popInto(chain);
  }

  popOrEnableNotification(): Result<DescriptorChain | null, QueueError> {
    if (!this.active) {
      this.popError(NOT_READY);
      return ERR_NOT_READY;
    }
    const chain = new DescriptorChain(this.mem!);
    return this.popOrEnableNotificationInto(chain) ? ok(chain) : this.notPopped();
  }

  // ---- used ring

  /** VQ-ADD-USED-INDEX, VQ-ADD-USED: writes the used entry; used.idx is published by `publishUsed`. */
  addUsed(index: number, len: number): Result<void, QueueError> {
    // Kept small (see popInto): inactive (size 0), errors and a recorder go to addUsedSlow.
    if (index >>> 0 !== index || index >= this.size || this.mem!.recorder !== null) {
      return this.addUsedSlow(index, len);
    }
    const used = this._nextUsed;
    const view = this.usedView;
    const o = this.usedOff + 4 + 8 * (used & this.mask);
    view.setUint32(o, index, true);
    view.setUint32(o + 4, len >>> 0, true);
    this._nextUsed = ((used + 1) << 16) >>> 16;
    return OK_VOID;
  }

  private addUsedSlow(index: number, len: number): Result<void, QueueError> {
    if (!this.active) return ERR_NOT_READY;
    if (index >>> 0 !== index || index >= this.size) return err({ _tag: "DescIndexOutOfBounds", index });
    const slot = this._nextUsed & this.mask;
    this.note(this.usedN + wire.usedSlotOffset(slot), USED_ELEM_SIZE, true);
    const o = this.usedOff + wire.usedSlotOffset(slot);
    this.usedView.setUint32(o + USED_ELEM_ID, index, true);
    this.usedView.setUint32(o + USED_ELEM_LEN, len >>> 0, true);
    this._nextUsed = (this._nextUsed + 1) & 0xffff;
    return OK_VOID;
  }

  /** VQ-PUBLISH-USED: used.idx = next_used. */
  publishUsed(): Result<void, QueueError> {
    if (!this.active) return ERR_NOT_READY;
    this.note(this.usedN + USED_IDX, 2, true);
    this.usedView.setUint16(this.usedOff + USED_IDX, this._nextUsed, true);
    return OK_VOID;
  }

  // ---- notifications

  /** VQ-PREPARE-KICK, VQ-NO-INTERRUPT: must the device interrupt the driver for the used entries added since the last call? */
  prepareKick(honourNoInterrupt = false): boolean {
    if (!this.active) return false;
    if (!this._eventIdx) {
      if (!honourNoInterrupt) return true;
      this.note(this.availN + AVAIL_FLAGS, 2, false);
      return (this.availView.getUint16(this.availOff + AVAIL_FLAGS, true) & VRING_AVAIL_F_NO_INTERRUPT) === 0;
    }
    const event = this.readUsedEvent();
    const used = this._nextUsed;
    const added = this.numAdded;
    this.kickBase = used;
    return wire.vringNeedEvent(event, used, used - added);
  }

  /** VQ-TRY-ENABLE-NOTIFICATION. */
  tryEnableNotification(): Result<boolean, QueueError> {
    if (!this.active) return ERR_NOT_READY;
    if (!this._eventIdx) {
      if ((this.readUsedFlags() & VRING_USED_F_NO_NOTIFY) !== 0) this.writeUsedFlags(0);
      return OK_TRUE;
    }
    const n = this.len();
    if (n !== 0) {
      if (n > this.size) return err({ _tag: "InvalidAvailIdx", len: n, size: this.size });
      return OK_FALSE;
    }
    this.writeAvailEvent(this._nextAvail);
    return this._nextAvail === this.availIdx() ? OK_TRUE : OK_FALSE;
  }

  /** VQ-NO-NOTIFY: asks the driver not to kick (no-op with EVENT_IDX). */
  disableNotification(): Result<void, QueueError> {
    if (!this.active) return ERR_NOT_READY;
    if (!this._eventIdx) this.writeUsedFlags(VRING_USED_F_NO_NOTIFY);
    return OK_VOID;
  }

  /** VQ-NO-NOTIFY: asks the driver to kick again; true when chains are already waiting (rust-vmm). */
  enableNotification(): Result<boolean, QueueError> {
    if (!this.active) return ERR_NOT_READY;
    if (this._eventIdx) this.writeAvailEvent(this._nextAvail);
    else this.writeUsedFlags(0);
    return this.availIdx() !== this._nextAvail ? OK_TRUE : OK_FALSE;
  }
}
