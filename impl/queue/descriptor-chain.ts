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
const VIRTQ_DESC_F_NEXT = wire.VIRTQ_DESC_F_NEXT;
const VIRTQ_DESC_F_WRITE = wire.VIRTQ_DESC_F_WRITE;
const VIRTQ_DESC_F_INDIRECT = wire.VIRTQ_DESC_F_INDIRECT;
const MAX_CHAIN_BYTES = wire.MAX_CHAIN_BYTES; // CHAIN-LEN-U32
const MAX_INDIRECT_LEN = wire.MAX_INDIRECT_ENTRIES * DESC_SIZE; // CHAIN-INDIRECT-LEN

// The fast walk reads a bound table as little-endian u32 words (see `bind`): only on a
// little-endian host, where a Uint32Array's elements are the wire's u32 fields.
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

export type { ChainError } from "../../spec/queue.ts";

// flags (u16 at DESC_FLAGS) and next (u16 at DESC_NEXT = DESC_FLAGS + 2) are one little-endian
// u32 at DESC_FLAGS, flags low (CHAIN-DESC-LAYOUT): the walk reads them with one access and keeps
// them in one field (`fn`, an int32, which V8 stores untagged where a u32 above 2^31 would not be).

// The walk's state, in one field. A value >= 0 is the fast state: the walk goes on in the queue's
// bound main table, read as u32 words (see `bind`), at entry `state & 0xffff`, an index already
// checked < size (CHAIN-NEXT-RANGE), and `state >= FRESH` says the cursor is still on the chain's
// first data descriptor (rewind() need not read again). Every other state is negative.
const FRESH = 0x10000;
const MORE = -1; // the next step reads entry `nextIndex` of `table` (the general walk)
const DONE = -2; // the walk has ended at a descriptor without NEXT, or was refused
const TTL_SPENT = -3; // the last yielded descriptor had NEXT but the ttl is spent (CHAIN-TTL)
const FAILED = -4; // the walk ended early; `_end` says why
const END = -5; // the fast state's walk has ended at a descriptor without NEXT (never fresh)
// SINGLE: `loadBound` found a one-descriptor chain in the bound table and the cursor is on it, as
// after `rewind()`; that load writes only the head, the descriptor and the state, and the getters
// answer the walk fields from them. The first `advance()` ends the walk (SINGLE_DONE); a later
// `rewind()` reads guest memory again, as for any chain.
const SINGLE = -6;
const SINGLE_DONE = -7;

// For the general states (MORE..FAILED) only: whether the cursor is still where setHead/rewind
// left it, so that rewind() need not read guest memory again. Every way from the fast state into
// a general state goes through `toGeneral`, which clears it.
const NOT_FRESH = 0;
const FRESH_OK = 1;
const FRESH_NONE = 2;

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

  // Where the walk is (see the states above). The general walk's fields (table..inIndirect) are
  // not kept in the fast state; leaving it (`toGeneral`) sets them.
  private state = DONE;
  private table = 0;
  private tableLo = 0;
  private tableHi = 0;
  private tableSize = 0;
  private nextIndex = 0;
  private ttl = 0;
  private inIndirect = false;
  private total = 0;
  private fresh = NOT_FRESH;
  // The region view holding the queue's whole table, when the queue validated it
  // (VQ-INIT-MEMORY): main-table entries are then read without a region lookup.
  private tableView: DataView | null = null;
  private tableViewOff = 0;
  // The same table as u32 words (entry i's fields at 4i..4i+3: addr, addr_hi, len, flags|next),
  // when the host is little-endian and the table starts at a 4-byte boundary of its buffer;
  // null otherwise. The fast state and loadBoundChecked read only this, and exist only with it.
  private words: Uint32Array | null = null;
  // The queue binding this chain (see `bind`), or null.
  private bound: object | null = null;

  // The current descriptor (in SINGLE*, `_index`, `total`, `_indirect` and `_end` are stale and
  // the getters answer for the one descriptor instead).
  private _index = 0;
  private addrLo = 0;
  private addrHi = 0;
  private _len = 0;
  private fn = 0; // flags | next << 16
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
    this.words = null;
    this.bound = null;
    this.mem = memory;
    this.descTable = descTable;
    this.queueSize = queueSize;
    this.head = index;
    this.fresh = NOT_FRESH;
    this.state = DONE;
    if (index >>> 0 !== index || index >= queueSize) return false; // also size 0 (PR 173)
    return this.loadHead();
  }

  /** The head entry `this.head` (< size) through the general walk: read, CHAIN-CHECKED-NEW, take. */
  private loadHead(): boolean {
    this.restart();
    if (!this.read(this.descTable, this.head)) return false;
    const f = this.fn;
    if ((f & VIRTQ_DESC_F_INDIRECT) === 0 && (f & VIRTQ_DESC_F_NEXT) !== 0 && f >>> 16 >= this.queueSize) {
      this.state = DONE;
      return false;
    }
    this.markFresh(this.take());
    return true;
  }

  /**
   * Binds this chain to a queue's validated table (VQ-INIT-MEMORY): the table lies at
   * `viewOff` in `view`, so its entries are read without a region lookup. `token` names the
   * binding (the queue's activation); `boundTo` returns it until `setHead` or another bind.
   * When the table cannot be read as u32 words (a big-endian host, or a table not at a 4-byte
   * boundary of its buffer) `boundTo` stays null and `loadBound` takes the general walk: the
   * queue then pops through its general path, binding again each time (nothing is allocated).
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
    const at = view.byteOffset + viewOff;
    const ok = LITTLE_ENDIAN && at % 4 === 0;
    this.words = ok ? new Uint32Array(view.buffer, at, queueSize * 4) : null;
    this.bound = ok ? token : null;
  }

  get boundTo(): object | null {
    return this.bound;
  }

  /** `setHead` on the bound table (see `bind`): the same result, and a one-descriptor chain is settled here. */
  loadBound(index: number): boolean {
    // V8 inlines a caller's methods only up to a bytecode budget (920 bytes for everything a
    // loop calls), so the hot path is kept small and everything rare is out of line.
    this.head = index;
    if (index >= this.queueSize || this.mem.recorder !== null || this.words === null) {
      return this.loadBoundSlow(index);
    }
    return this.loadBoundChecked(index);
  }

  private loadBoundSlow(index: number): boolean {
    if (index >= this.queueSize) return this.refuse();
    if (this.words === null) return this.loadHead(); // read() tells a recorder itself
    this.noteEntry(index);
    return this.loadBoundChecked(index);
  }

  /**
   * `loadBound` for a queue that has itself checked, for this pop, that the chain is bound to
   * it (so the table is read as words), that `index` < its size and that its memory (this
   * chain's) has no recorder: reads the head entry, settles a one-descriptor chain here, and
   * enters the fast state for a head with NEXT (what restart() + take() do, flat). Anything
   * else is loadRest.
   */
  loadBoundChecked(index: number): boolean {
    this.head = index;
    // Wire offsets as literals here and in advanceFast (wire/split.ts: addr word 0, addr_hi 1,
    // len 2, flags|next 3; NEXT 1, INDIRECT 4): a module const costs a context load and a hole
    // check in the bytecode, and V8's inlining budget counts bytecode (an element of a
    // Uint32Array costs 3 bytes to read, a DataView call about 15). The properties check the layout.
    const w = this.words!;
    const k = index * 4;
    const len = w[k + 2]!;
    const fn = w[k + 3]! | 0;
    this.addrLo = w[k]!;
    this.addrHi = w[k + 1]!;
    this._len = len;
    this.fn = fn;
    // The whole walk is this descriptor (one u32 cannot pass CHAIN-LEN-U32): SINGLE.
    if (!(fn & 5)) this.state = -6;
    else {
      const size = this.queueSize;
      // INDIRECT, NEXT out of range (CHAIN-CHECKED-NEW) or a size-1 queue (CHAIN-TTL), in one
      // test: (next | 1) >= size holds for every next >= size and for size 1; for the queue's
      // other sizes (powers of two) it is next >= size exactly. loadRest takes them all.
      if (fn & 4 || ((fn >>> 16) | 1) >= size) return this.loadRest();
      // The fast state, fresh: `index` answers the head and `indirect` false from the state alone.
      this.total = len;
      this.ttl = size - 1;
      this.state = (fn >>> 16) | 0x10000; // FRESH
    }
    return true;
  }

  private noteEntry(index: number): void {
    this.mem.recorder!(this.descTable + index * DESC_SIZE, DESC_SIZE, false);
  }

  private refuse(): false {
    this.state = DONE;
    this.fresh = NOT_FRESH;
    return false;
  }

  /**
   * loadBoundChecked for a head with INDIRECT or NEXT that its fast test leaves to the general
   * walk: NEXT out of range is refused (CHAIN-CHECKED-NEW); anything else is taken as setHead
   * takes it (a size-1 queue's head with NEXT to itself is yielded once, then CHAIN-TTL).
   */
  private loadRest(): boolean {
    const fn = this.fn;
    this._index = this.head;
    if ((fn & VIRTQ_DESC_F_INDIRECT) === 0 && fn >>> 16 >= this.queueSize) return this.refuse();
    this.restart();
    this.markFresh(this.take());
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
    const s = this.state;
    return s <= SINGLE || s >= FRESH ? this.head : this._index;
  }
  /** The current addr: exact below 2^53, >= 2^53 (so outside memory) otherwise; see addrBig(). */
  get addr(): number {
    // u64ToNumber, written out: a getter that calls nothing stays under V8's small-function size
    // and is inlined into every caller's loop, whatever else that loop has used of its budget.
    return this.addrHi * 0x1_0000_0000 + this.addrLo;
  }
  get len(): number {
    return this._len;
  }
  get flags(): number {
    return this.fn & 0xffff;
  }
  get next(): number {
    return this.fn >>> 16;
  }
  /** True when the current descriptor was read from an indirect table. */
  get indirect(): boolean {
    const s = this.state;
    return s < 0 && s >= FAILED && this._indirect;
  }
  /** Bytes yielded so far by this walk (CHAIN-LEN-U32). */
  get totalLength(): number {
    return this.state <= SINGLE ? this._len : this.total;
  }
  /** Why the walk stopped before a descriptor without NEXT; null otherwise. Final once advance() returned false. */
  get end(): ChainError | null {
    return this.state === FAILED ? this._end : null;
  }

  /** CHAIN-ADDR-U64: the exact u64 of the current addr. */
  addrBig(): bigint {
    return u64ToBigInt(this.addrLo, this.addrHi);
  }
  isWriteOnly(): boolean {
    return (this.fn & VIRTQ_DESC_F_WRITE) !== 0;
  }
  /** The current descriptor has NEXT and the walk will try to follow it. */
  hasNext(): boolean {
    // MORE and the fast state are entered only on yielding a descriptor with NEXT.
    const s = this.state;
    return s >= 0 || s === MORE;
  }

  /** To the first data descriptor; false when the chain yields none (then `end` says why). */
  rewind(): boolean {
    const s = this.state;
    return s >= FRESH || this.rewindOther(s);
  }

  private rewindOther(s: number): boolean {
    if (s === SINGLE) return true;
    if (s < 0 && s >= FAILED) {
      const f = this.fresh;
      if (f !== NOT_FRESH) return f === FRESH_OK;
    }
    return this.rewalk();
  }

  private rewalk(): boolean {
    if (this.head >>> 0 !== this.head || this.head >= this.queueSize) {
      this.state = DONE;
      return false;
    }
    this.restart();
    const ok = this.step();
    this.markFresh(ok);
    return ok;
  }

  /** After the walk's first step: the cursor is fresh until the next advance(). */
  private markFresh(ok: boolean): void {
    const s = this.state;
    if (s >= 0) this.state = s | FRESH;
    else this.fresh = ok ? FRESH_OK : FRESH_NONE;
  }

  /** To the next data descriptor; false when the chain has ended. */
  advance(): boolean {
    // Kept small: V8 inlines only what a caller's loop runs, within a budget (see loadBound).
    const s = this.state;
    if (s >= 0) return this.advanceFast(s);
    return s !== END && this.advanceOther(s);
  }

  /**
   * advance() in the fast state: entry `s & 0xffff` of the bound main table, an index < size.
   * Anything unusual (INDIRECT, the u32 byte cap, a recorder to tell) is left to the general
   * walk, which reads the entry again.
   */
  private advanceFast(s: number): boolean {
    const i = (s << 16) >>> 16; // s & 0xffff, in fewer bytes of bytecode
    const w = this.words!;
    const k = i * 4;
    const len = w[k + 2]!;
    const fn = w[k + 3]! | 0;
    const total = this.total + len;
    if (fn & 4 || total > 0xffff_ffff || this.mem.recorder !== null) return this.stepAt(i);
    this.addrLo = w[k]!;
    this.addrHi = w[k + 1]!;
    this._len = len;
    this.fn = fn;
    this._index = i;
    this.total = total; // (_indirect is already false: a walk never returns from an indirect table)
    // Bits tested as truthiness, END as a literal and follow() written out: fewer bytes of
    // bytecode (see loadBound).
    if (!(fn & 1)) this.state = -5;
    else if (--this.ttl === 0) this.ttlSpentAt(i);
    else if (fn >>> 16 < this.queueSize) this.state = fn >>> 16;
    else this.toGeneral(fn >>> 16);
    return true;
  }

  /** The fast state after a descriptor with NEXT (CHAIN-NEXT-RANGE: an index >= size is left to the general walk). */
  private follow(next: number): void {
    if (next < this.queueSize) this.state = next;
    else this.toGeneral(next);
  }

  /** The general walk, in the main table, about to read entry `index` (the cursor is not fresh, not indirect). */
  private toGeneral(index: number): void {
    this.fresh = NOT_FRESH;
    this._indirect = false;
    this.table = this.descTable;
    this.tableSize = this.queueSize;
    this.inIndirect = false;
    this.nextIndex = index;
    this.state = MORE;
  }

  private stepAt(i: number): boolean {
    this.toGeneral(i);
    return this.step();
  }

  private ttlSpentAt(i: number): void {
    this.toGeneral(i);
    this.state = TTL_SPENT; // CHAIN-TTL
  }

  private advanceOther(s: number): boolean {
    if (s === SINGLE) {
      // A one-descriptor chain's walk is over (CHAIN-TTL: no NEXT); rewind() reads it again.
      this.state = SINGLE_DONE;
      return false;
    }
    this.fresh = NOT_FRESH;
    if (s === MORE) return this.step();
    return this.stopped();
  }

  /** rust-vmm `readable()`: rewind to the first device-readable descriptor. */
  rewindReadable(): boolean {
    let ok = this.rewind();
    while (ok && (this.fn & VIRTQ_DESC_F_WRITE) !== 0) ok = this.advance();
    return ok;
  }
  advanceReadable(): boolean {
    let ok = this.advance();
    while (ok && (this.fn & VIRTQ_DESC_F_WRITE) !== 0) ok = this.advance();
    return ok;
  }
  /** rust-vmm `writable()`: rewind to the first device-writable descriptor. */
  rewindWritable(): boolean {
    let ok = this.rewind();
    while (ok && (this.fn & VIRTQ_DESC_F_WRITE) === 0) ok = this.advance();
    return ok;
  }
  advanceWritable(): boolean {
    let ok = this.advance();
    while (ok && (this.fn & VIRTQ_DESC_F_WRITE) === 0) ok = this.advance();
    return ok;
  }

  /** CHAIN-RW-SPLIT: walks the whole chain into `out` (the cursor ends past the last descriptor). */
  lengths(out: ChainLengths): ChainLengths {
    out.readableBytes = 0;
    out.writableBytes = 0;
    out.readableCount = 0;
    out.writableCount = 0;
    for (let ok = this.rewind(); ok; ok = this.advance()) {
      if ((this.fn & VIRTQ_DESC_F_WRITE) !== 0) {
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
      this.fn = tv.getInt32(o + DESC_FLAGS, true);
      this._index = index;
      return true;
    }
    const r = mem.locate(addr, DESC_SIZE, false);
    if (r < 0) {
      // CHAIN-MEMORY: the exact address for the error value.
      const base = this.inIndirect ? u64ToBigInt(this.tableLo, this.tableHi) : BigInt(table);
      return this.stop(GuestMemory.rangeError(base + BigInt(index * DESC_SIZE), BigInt(DESC_SIZE)));
    }
    const region = mem.regions[r]!;
    const v = region.view;
    const off = addr - region.base;
    const lo = v.getUint32(off + DESC_ADDR, true);
    const hi = v.getUint32(off + DESC_ADDR_HI, true);
    this.addrLo = lo;
    this.addrHi = hi;
    this._len = v.getUint32(off + DESC_LEN, true);
    this.fn = v.getInt32(off + DESC_FLAGS, true);
    this._index = index;
    return true;
  }

  private stop(end: ChainError): false {
    this._end = end;
    this.state = FAILED;
    return false;
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
    const flags = this.fn;
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
      const next = flags >>> 16;
      this.nextIndex = next;
      // Back to the fast state when the walk is in the bound main table.
      if (this.words !== null && !this.inIndirect) this.follow(next);
    }
    return true;
  }
}
