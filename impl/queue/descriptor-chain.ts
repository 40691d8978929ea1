/**
 * A descriptor chain, walked in place: the chain object is a cursor over guest memory and
 * nothing is allocated per descriptor (only an error value when a hostile chain ends early).
 * Same rules as spec/queue.ts (CHAIN-*): the head is accepted as Firecracker's
 * `DescriptorChain::checked_new` does, the walk follows rust-vmm's `DescriptorChain`
 * iterator (ttl, indirect tables, the u32 byte cap).
 *
 *     for (let ok = chain.rewind(); ok; ok = chain.advance()) use(chain.addr, chain.len, chain.isWriteOnly());
 *     if (chain.end !== null) ... // why the walk stopped early
 */
import { GuestMemory, u64ToBigInt, u64ToNumber } from "../memory/guest-memory.ts";
import type { ChainError } from "../../spec/queue.ts";
import * as wire from "../../wire/split.ts";

// Module-local copies of the wire constants: V8 folds a module's own consts into the code it
// inlines into a caller's loop, but loads an imported binding from its cell on every use
// (measured: 4-descriptor chains 25 -> 17 M chains/s with the imports used directly).
const DESC_SIZE = wire.DESC_SIZE;
const DESC_ADDR = wire.DESC_ADDR;
const DESC_ADDR_HI = wire.DESC_ADDR_HI;
const DESC_LEN = wire.DESC_LEN;
const DESC_FLAGS = wire.DESC_FLAGS;
const DESC_NEXT = wire.DESC_NEXT;
const VIRTQ_DESC_F_NEXT = wire.VIRTQ_DESC_F_NEXT;
const VIRTQ_DESC_F_WRITE = wire.VIRTQ_DESC_F_WRITE;
const VIRTQ_DESC_F_INDIRECT = wire.VIRTQ_DESC_F_INDIRECT;
const MAX_CHAIN_BYTES = wire.MAX_CHAIN_BYTES; // CHAIN-LEN-U32
const MAX_INDIRECT_LEN = wire.MAX_INDIRECT_ENTRIES * DESC_SIZE; // CHAIN-INDIRECT-LEN

export type { ChainError } from "../../spec/queue.ts";

// Walk states.
const MORE = 0; // the next step reads entry `nextIndex` of the current table
const DONE = 1; // the walk has ended (`end` says why)
const TTL_SPENT = 2; // the last yielded descriptor had NEXT but the ttl is spent (CHAIN-TTL)

const NOT_FRESH = 0;
const FRESH_OK = 1;
const FRESH_NONE = 2;

// How the cursor holds the chain. SINGLE: `loadBound` found a one-descriptor chain in the bound
// table and the cursor is on it, as after `rewind()`; that load writes only the head, the
// descriptor and this field, and the getters answer the walk fields from them. The first
// `advance()` ends the walk (SINGLE_DONE); a later `rewind()` reads guest memory again, as for
// any chain, and returns to WALK. WALK: the walk fields say where the walk is.
const WALK = 0;
const SINGLE = 1;
// SINGLE after its `advance()`: the walk is over (one store instead of rewriting the walk
// fields); the getters still answer for the one descriptor and `rewind()` reads it again.
const SINGLE_DONE = 2;

/** Byte and descriptor counts of a chain by direction (CHAIN-RW-SPLIT); reusable. */
export interface ChainLengths {
  readableBytes: number;
  writableBytes: number;
  readableCount: number;
  writableCount: number;
}

export const newChainLengths = (): ChainLengths => ({
  readableBytes: 0,
  writableBytes: 0,
  readableCount: 0,
  writableCount: 0,
});

export class DescriptorChain {
  private mem: GuestMemory;
  private descTable = 0;
  private queueSize = 0;
  private head = 0;

  // Where the walk is.
  private table = 0;
  private tableLo = 0;
  private tableHi = 0;
  private tableSize = 0;
  private nextIndex = 0;
  private ttl = 0;
  private inIndirect = false;
  private total = 0;
  private state = DONE;
  // The region view holding the queue's whole table, when the queue validated it
  // (VQ-INIT-MEMORY): main-table entries are then read without a region lookup.
  private tableView: DataView | null = null;
  private tableViewOff = 0;
  // The queue binding this chain (see `bind`), or null.
  private bound: object | null = null;
  // While the cursor is still where setHead/rewind left it, rewind() need not read guest
  // memory again: NOT_FRESH, FRESH_OK (on the first data descriptor) or FRESH_NONE.
  private fresh = NOT_FRESH;
  // WALK, SINGLE or SINGLE_DONE (see above); in SINGLE* the walk fields, `_index`, `total`, `_indirect` and
  // `_end` are stale and the getters answer for the one descriptor instead.
  private mode = WALK;

  // The current descriptor.
  private _index = 0;
  private addrLo = 0;
  private addrHi = 0;
  private _len = 0;
  private _flags = 0;
  private _next = 0;
  private _indirect = false;

  private _end: ChainError | null = null;

  /** An unloaded chain, to be filled by `setHead` (or `SplitQueue.popInto`) and reused. */
  constructor(memory: GuestMemory) {
    this.mem = memory;
  }

  /**
   * CHAIN-CHECKED-NEW: the chain whose head is entry `index` of the table at `descTable`,
   * or undefined when the head is refused. The table address must be one the queue checked.
   */
  static checkedNew(
    memory: GuestMemory,
    descTable: number,
    queueSize: number,
    index: number,
  ): DescriptorChain | undefined {
    const c = new DescriptorChain(memory);
    return c.setHead(memory, descTable, queueSize, index) ? c : undefined;
  }

  /**
   * `checkedNew` in place: loads this object with the chain at `index` and leaves the cursor
   * on its first data descriptor (as `rewind()` would). False when the head is refused.
   */
  setHead(memory: GuestMemory, descTable: number, queueSize: number, index: number): boolean {
    this.tableView = null;
    this.bound = null;
    this.mem = memory;
    this.descTable = descTable;
    this.queueSize = queueSize;
    this.head = index;
    this.mode = WALK;
    this._end = null;
    this.fresh = NOT_FRESH;
    this.state = DONE;
    if (index >>> 0 !== index || index >= queueSize) return false; // also size 0 (PR 173)
    this.restart();
    if (!this.read(descTable, index)) return false;
    const f = this._flags;
    if ((f & VIRTQ_DESC_F_INDIRECT) === 0 && (f & VIRTQ_DESC_F_NEXT) !== 0 && this._next >= queueSize) {
      this.state = DONE;
      return false;
    }
    this.fresh = this.take() ? FRESH_OK : FRESH_NONE;
    return true;
  }

  /**
   * Binds this chain to a queue's validated table (VQ-INIT-MEMORY): the table lies at
   * `viewOff` in `view`, so its entries are read without a region lookup. `token` names the
   * binding (the queue's activation); `boundTo` returns it until `setHead` or another bind.
   */
  bind(
    memory: GuestMemory,
    descTable: number,
    queueSize: number,
    view: DataView,
    viewOff: number,
    token: object,
  ): void {
    this.mem = memory;
    this.descTable = descTable;
    this.queueSize = queueSize;
    this.tableView = view;
    this.tableViewOff = viewOff;
    this.bound = token;
  }

  get boundTo(): object | null {
    return this.bound;
  }

  /** `setHead` on the bound table (see `bind`): the same result, and a one-descriptor chain is settled here. */
  loadBound(index: number): boolean {
    // V8 inlines a caller's methods only up to a bytecode budget (920 bytes for everything a
    // loop calls), so the hot path is kept small and everything rare is out of line.
    this.head = index;
    if (index >= this.queueSize || this.mem.recorder !== null) return this.loadBoundSlow(index);
    return this.readHead(index);
  }

  /**
   * `loadBound` for a queue that has itself checked, for this pop, that the chain is bound to
   * it, that `index` < its size and that its memory (this chain's) has no recorder.
   */
  loadBoundChecked(index: number): boolean {
    this.head = index;
    return this.readHead(index);
  }

  private loadBoundSlow(index: number): boolean {
    if (index >= this.queueSize) return this.refuse();
    this.noteEntry(index);
    return this.readHead(index);
  }

  /** Reads the (bound, in-range) head entry; settles a one-descriptor chain here. */
  private readHead(index: number): boolean {
    const view = this.tableView!;
    const off = this.tableViewOff + index * DESC_SIZE;
    const len = view.getUint32(off + DESC_LEN, true);
    const flags = view.getUint16(off + DESC_FLAGS, true);
    this.addrLo = view.getUint32(off + DESC_ADDR, true);
    this.addrHi = view.getUint32(off + DESC_ADDR_HI, true);
    this._len = len;
    this._flags = flags;
    this._next = view.getUint16(off + DESC_NEXT, true);
    if ((flags & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT)) !== 0) return this.loadRest();
    // The whole walk is this descriptor (one u32 cannot pass CHAIN-LEN-U32).
    this.mode = SINGLE;
    return true;
  }

  private noteEntry(index: number): void {
    this.mem.recorder!(this.descTable + index * DESC_SIZE, DESC_SIZE, false);
  }

  private refuse(): false {
    this.mode = WALK;
    this._end = null;
    this.state = DONE;
    this.fresh = NOT_FRESH;
    return false;
  }

  /** loadBound for a head with NEXT or INDIRECT. */
  private loadRest(): boolean {
    const size = this.queueSize;
    this.mode = WALK;
    this._end = null;
    this._index = this.head;
    if ((this._flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
      this.restart();
      this.fresh = this.take() ? FRESH_OK : FRESH_NONE;
      return true;
    }
    // A head with NEXT: what restart() + take() do, flat (CHAIN-CHECKED-NEW, CHAIN-TTL).
    const next = this._next;
    if (next >= size) return this.refuse();
    this.table = this.descTable;
    this.tableSize = size;
    this.inIndirect = false;
    this._indirect = false;
    this.total = this._len;
    this.ttl = size - 1;
    this.nextIndex = next;
    this.state = size === 1 ? TTL_SPENT : MORE;
    this.fresh = FRESH_OK;
    return true;
  }

  get memory(): GuestMemory {
    return this.mem;
  }
  /** The head's index in the queue's descriptor table: what `addUsed` takes. */
  get headIndex(): number {
    return this.head;
  }
  /** The current descriptor's index in the table it was read from (the indirect table when `indirect`). */
  get index(): number {
    return this.mode === WALK ? this._index : this.head;
  }
  /** The current addr: exact below 2^53, >= 2^53 (so outside memory) otherwise; see addrBig(). */
  get addr(): number {
    return u64ToNumber(this.addrLo, this.addrHi);
  }
  get len(): number {
    return this._len;
  }
  get flags(): number {
    return this._flags;
  }
  get next(): number {
    return this._next;
  }
  /** True when the current descriptor was read from an indirect table. */
  get indirect(): boolean {
    return this.mode === WALK && this._indirect;
  }
  /** Bytes yielded so far by this walk (CHAIN-LEN-U32). */
  get totalLength(): number {
    return this.mode === WALK ? this.total : this._len;
  }
  /** Why the walk stopped before a descriptor without NEXT; null otherwise. Final once advance() returned false. */
  get end(): ChainError | null {
    return this.mode === WALK ? this._end : null;
  }

  /** CHAIN-ADDR-U64: the exact u64 of the current addr. */
  addrBig(): bigint {
    return u64ToBigInt(this.addrLo, this.addrHi);
  }
  isWriteOnly(): boolean {
    return (this._flags & VIRTQ_DESC_F_WRITE) !== 0;
  }
  /** The current descriptor has NEXT and the walk will try to follow it. */
  hasNext(): boolean {
    return this.mode === WALK && (this._flags & VIRTQ_DESC_F_NEXT) !== 0 && this.state === MORE;
  }

  /** To the first data descriptor; false when the chain yields none (then `end` says why). */
  rewind(): boolean {
    return this.mode === SINGLE || this.rewindWalk();
  }

  private rewindWalk(): boolean {
    if (this.mode === SINGLE_DONE) {
      this.mode = WALK;
      return this.rewalk();
    }
    const f = this.fresh;
    if (f !== NOT_FRESH) return f === FRESH_OK;
    return this.rewalk();
  }

  private rewalk(): boolean {
    this._end = null;
    if (this.head >>> 0 !== this.head || this.head >= this.queueSize) {
      this.state = DONE;
      return false;
    }
    this.restart();
    const ok = this.step();
    this.fresh = ok ? FRESH_OK : FRESH_NONE;
    return ok;
  }

  /** To the next data descriptor; false when the chain has ended. */
  advance(): boolean {
    const m = this.mode;
    if (m === WALK) return this.advanceWalk();
    // A one-descriptor chain's walk is over (CHAIN-TTL: no NEXT); rewind() reads it again.
    this.mode = SINGLE_DONE;
    return false;
  }

  private advanceWalk(): boolean {
    this.fresh = NOT_FRESH;
    if (this.state !== MORE) return this.stopped();
    return this.tableView !== null && !this.inIndirect ? this.advanceBound() : this.step();
  }

  /** rust-vmm `readable()`: rewind to the first device-readable descriptor. */
  rewindReadable(): boolean {
    let ok = this.rewind();
    while (ok && (this._flags & VIRTQ_DESC_F_WRITE) !== 0) ok = this.advance();
    return ok;
  }
  advanceReadable(): boolean {
    let ok = this.advance();
    while (ok && (this._flags & VIRTQ_DESC_F_WRITE) !== 0) ok = this.advance();
    return ok;
  }
  /** rust-vmm `writable()`: rewind to the first device-writable descriptor. */
  rewindWritable(): boolean {
    let ok = this.rewind();
    while (ok && (this._flags & VIRTQ_DESC_F_WRITE) === 0) ok = this.advance();
    return ok;
  }
  advanceWritable(): boolean {
    let ok = this.advance();
    while (ok && (this._flags & VIRTQ_DESC_F_WRITE) === 0) ok = this.advance();
    return ok;
  }

  /** CHAIN-RW-SPLIT: walks the whole chain into `out` (the cursor ends past the last descriptor). */
  lengths(out: ChainLengths): ChainLengths {
    out.readableBytes = 0;
    out.writableBytes = 0;
    out.readableCount = 0;
    out.writableCount = 0;
    for (let ok = this.rewind(); ok; ok = this.advance()) {
      if ((this._flags & VIRTQ_DESC_F_WRITE) !== 0) {
        out.writableBytes += this._len;
        out.writableCount++;
      } else {
        out.readableBytes += this._len;
        out.readableCount++;
      }
    }
    return out;
  }

  private restart(): void {
    this.table = this.descTable;
    this.tableSize = this.queueSize;
    this.nextIndex = this.head;
    this.ttl = this.queueSize;
    this.inIndirect = false;
    this.total = 0;
    this.state = MORE;
    this._end = null;
  }

  /** Reads entry `index` of `table` into the cursor (CHAIN-DESC-LAYOUT); false (and `end` set) when outside memory. */
  private read(table: number, index: number): boolean {
    const addr = table + index * DESC_SIZE;
    const mem = this.mem;
    const tv = this.tableView;
    if (tv !== null && !this.inIndirect) {
      // A validated main table: index < size was checked by the caller.
      const rec = mem.recorder;
      if (rec !== null) rec(addr, DESC_SIZE, false);
      const o = this.tableViewOff + index * DESC_SIZE;
      const lo = tv.getUint32(o + DESC_ADDR, true);
      const hi = tv.getUint32(o + DESC_ADDR_HI, true);
      this.addrLo = lo;
      this.addrHi = hi;
      this._len = tv.getUint32(o + DESC_LEN, true);
      this._flags = tv.getUint16(o + DESC_FLAGS, true);
      this._next = tv.getUint16(o + DESC_NEXT, true);
      this._index = index;
      return true;
    }
    const r = mem.locate(addr, DESC_SIZE, false);
    if (r < 0) {
      // CHAIN-MEMORY: the exact address for the error value.
      const base = this.inIndirect ? u64ToBigInt(this.tableLo, this.tableHi) : BigInt(table);
      this._end = GuestMemory.rangeError(base + BigInt(index * DESC_SIZE), BigInt(DESC_SIZE));
      this.state = DONE;
      return false;
    }
    const region = mem.regions[r]!;
    const v = region.view;
    const off = addr - region.base;
    const lo = v.getUint32(off + DESC_ADDR, true);
    const hi = v.getUint32(off + DESC_ADDR_HI, true);
    this.addrLo = lo;
    this.addrHi = hi;
    this._len = v.getUint32(off + DESC_LEN, true);
    this._flags = v.getUint16(off + DESC_FLAGS, true);
    this._next = v.getUint16(off + DESC_NEXT, true);
    this._index = index;
    return true;
  }

  private stop(end: ChainError): false {
    this._end = end;
    this.state = DONE;
    return false;
  }

  /** step() in a bound main table, flat; anything unusual is left to step(). */
  private advanceBound(): boolean {
    const i = this.nextIndex;
    if (i >= this.tableSize) return this.step();
    const tv = this.tableView!;
    const o = this.tableViewOff + i * DESC_SIZE;
    const len = tv.getUint32(o + DESC_LEN, true);
    const flags = tv.getUint16(o + DESC_FLAGS, true);
    const total = this.total + len;
    if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0 || total > MAX_CHAIN_BYTES) return this.step();
    if (this.mem.recorder !== null) this.noteEntry(i);
    this.addrLo = tv.getUint32(o + DESC_ADDR, true);
    this.addrHi = tv.getUint32(o + DESC_ADDR_HI, true);
    this._len = len;
    this._flags = flags;
    const next = tv.getUint16(o + DESC_NEXT, true);
    this._next = next;
    this._index = i;
    this.total = total; // (_indirect is already false: a walk never returns from an indirect table)
    if ((flags & VIRTQ_DESC_F_NEXT) === 0) this.state = DONE;
    else if (--this.ttl === 0)
      this.state = TTL_SPENT; // CHAIN-TTL
    else this.nextIndex = next;
    return true;
  }

  /** advance() past the end: a spent ttl becomes ChainTtlExpired (CHAIN-TTL). */
  private stopped(): false {
    return this.state === TTL_SPENT ? this.ttlExpired() : false;
  }

  private ttlExpired(): false {
    return this.stop({ _tag: "ChainTtlExpired", limit: this.tableSize });
  }

  /** Reads the next entry and takes it. */
  private step(): boolean {
    if (this.state !== MORE) return this.stopped();
    const i = this.nextIndex;
    if (i >= this.tableSize) {
      return this.stop({ _tag: "InvalidDescriptorIndex", index: i, size: this.tableSize });
    }
    if (!this.read(this.table, i)) return false;
    return this.take();
  }

  /** Applies the walk rules to the entry just read into the cursor. */
  private take(): boolean {
    const flags = this._flags;
    if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
      // CHAIN-INDIRECT-NESTED, CHAIN-INDIRECT-LEN, CHAIN-INDIRECT (NEXT and WRITE ignored).
      if (this.inIndirect) return this.stop({ _tag: "InvalidIndirectDescriptor", index: this._index });
      const len = this._len;
      if (len === 0 || len % DESC_SIZE !== 0 || len > MAX_INDIRECT_LEN) {
        return this.stop({ _tag: "InvalidIndirectDescriptorTable", len });
      }
      // CHAIN-INDIRECT-UNALIGNED: any table address is accepted.
      this.table = u64ToNumber(this.addrLo, this.addrHi);
      this.tableLo = this.addrLo;
      this.tableHi = this.addrHi;
      this.tableSize = len / DESC_SIZE;
      this.nextIndex = 0;
      this.ttl = this.tableSize;
      this.inIndirect = true;
      return this.step();
    }
    const total = this.total + this._len;
    if (total > MAX_CHAIN_BYTES) {
      return this.stop({ _tag: "DescriptorChainOverflow", index: this._index, len: this._len });
    }
    this.total = total;
    this._indirect = this.inIndirect;
    if ((flags & VIRTQ_DESC_F_NEXT) === 0) {
      this.state = DONE;
    } else if (--this.ttl === 0) {
      this.state = TTL_SPENT; // CHAIN-TTL
    } else {
      this.nextIndex = this._next;
    }
    return true;
  }
}
