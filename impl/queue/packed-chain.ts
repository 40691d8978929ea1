/**
 * A packed-ring descriptor chain, walked in place: the same cursor surface as
 * `DescriptorChain` (rewind/advance, addr/len/flags, isWriteOnly, headIndex, end, lengths)
 * over the rules of spec/packed-queue.ts (PVQ-CHAIN-*, PVQ-INDIRECT*, PVQ-LEN-U32).
 *
 * `PackedQueue.popInto` copies the chain's ring descriptors into this object when it pops it:
 * a packed ring is also the used ring, and the device's own used descriptors may overwrite a
 * chain still in flight (completions out of order), so the walk must not read the ring
 * again. The copy lives in a buffer the chain keeps (grown once to the queue size); indirect
 * tables are read from guest memory as the walk reaches them, each access checked.
 *
 *     for (let ok = chain.rewind(); ok; ok = chain.advance()) use(chain.addr, chain.len, chain.isWriteOnly());
 *     if (chain.end !== null) ... // why the walk stopped early
 */
import { GuestMemory, u64ToBigInt, u64ToNumber } from "../memory/guest-memory.ts";
import { type ChainError } from "../../spec/queue.ts";
import type { ChainLengths } from "./descriptor-chain.ts";

export type { ChainError } from "../../spec/queue.ts";
import * as wire from "../../wire/packed.ts";
import * as split from "../../wire/split.ts";

// Module-local copies of the wire layout (wire/README.md: V8 folds a module's own consts into
// the code it inlines into a caller's loop; an imported binding is loaded on every use).
const DESC_SIZE = wire.PACKED_DESC_SIZE;
const DESC_ADDR = wire.PACKED_DESC_ADDR;
const DESC_ADDR_HI = wire.PACKED_DESC_ADDR_HI;
const DESC_LEN = wire.PACKED_DESC_LEN;
const DESC_ID = wire.PACKED_DESC_ID;
const DESC_FLAGS = wire.PACKED_DESC_FLAGS;
const VIRTQ_DESC_F_NEXT = split.VIRTQ_DESC_F_NEXT;
const VIRTQ_DESC_F_WRITE = split.VIRTQ_DESC_F_WRITE;
const VIRTQ_DESC_F_INDIRECT = split.VIRTQ_DESC_F_INDIRECT;
const MAX_CHAIN_BYTES = split.MAX_CHAIN_BYTES;
const MAX_INDIRECT_LEN = split.MAX_INDIRECT_ENTRIES * DESC_SIZE; // PVQ-INDIRECT-LEN

const MORE = 0;
const DONE = 1;

const NOT_FRESH = 0;
const FRESH_OK = 1;
const FRESH_NONE = 2;

export class PackedDescriptorChain {
  private mem: GuestMemory;
  // The ring part as popped: 4 words per descriptor (addr lo, addr hi, len, id | flags << 16).
  private ring: Uint32Array = new Uint32Array(0);
  private count = 0;
  private size = 0;
  private _headSlot = 0;
  private _headWrap = true;
  private _bufferId = 0;

  // Where the walk is.
  private k = 0;
  private inIndirect = false;
  private tableLo = 0;
  private tableHi = 0;
  private tableSize = 0;
  private total = 0;
  private state = DONE;
  private _end: ChainError | null = null;
  // While the cursor is still where load/loadSingle/rewind left it, rewind() has nothing to
  // do: NOT_FRESH, FRESH_OK (on the first descriptor) or FRESH_NONE (the chain yields none).
  private fresh = NOT_FRESH;

  // The current descriptor.
  private _index = 0;
  private addrLo = 0;
  private addrHi = 0;
  private _len = 0;
  private _id = 0;
  private _flags = 0;

  /** An empty chain, to be filled by `PackedQueue.popInto` and reused. */
  constructor(memory: GuestMemory) {
    this.mem = memory;
  }

  /**
   * Gets the chain ready for a pop from a queue of `size` slots: the buffer grows (once) to
   * hold a whole ring; the ring part is then written with `store` and settled with `load`.
   */
  prepare(memory: GuestMemory, size: number): void {
    this.fresh = NOT_FRESH;
    this.mem = memory;
    this.size = size;
    if (this.ring.length < 4 * size) this.ring = new Uint32Array(4 * size);
    this.count = 0;
    this.state = DONE;
    this._end = null;
  }

  /** Ring descriptor `k` of the chain, as read from the ring. */
  store(k: number, lo: number, hi: number, len: number, idFlags: number): void {
    const o = 4 * k;
    const r = this.ring;
    r[o] = lo;
    r[o + 1] = hi;
    r[o + 2] = len;
    r[o + 3] = idFlags;
  }

  /** The popped chain: `count` ring descriptors stored from slot `headSlot`, buffer id `id`; the cursor goes to its first data descriptor. */
  load(headSlot: number, headWrap: boolean, count: number, id: number): void {
    this._headSlot = headSlot;
    this._headWrap = headWrap;
    this.count = count;
    this._bufferId = id;
    this.fresh = NOT_FRESH;
    this.fresh = this.rewind() ? FRESH_OK : FRESH_NONE;
  }

  /**
   * `prepare` + `store` + `load` for a one-descriptor chain without NEXT or INDIRECT (the
   * queue checked the flags), in one call: the cursor is left on that descriptor.
   */
  loadSingle(
    memory: GuestMemory,
    size: number,
    headSlot: number,
    headWrap: boolean,
    lo: number,
    hi: number,
    len: number,
    idFlags: number,
  ): void {
    this.mem = memory;
    this.size = size;
    if (this.ring.length < 4 * size) this.ring = new Uint32Array(4 * size);
    const r = this.ring;
    r[0] = lo;
    r[1] = hi;
    r[2] = len;
    r[3] = idFlags;
    this.count = 1;
    this._headSlot = headSlot;
    this._headWrap = headWrap;
    this._bufferId = idFlags & 0xffff;
    // What rewind() leaves: on the first descriptor (one u32 cannot pass PVQ-LEN-U32).
    this.k = 1;
    this.inIndirect = false;
    this.total = len;
    this.state = MORE;
    this._end = null;
    this.addrLo = lo;
    this.addrHi = hi;
    this._len = len;
    this._id = idFlags & 0xffff;
    this._flags = idFlags >>> 16;
    this._index = headSlot;
    this.fresh = FRESH_OK;
  }

  /** Empties the chain (a pop that was refused). */
  clear(): void {
    this.fresh = NOT_FRESH;
    this.count = 0;
    this.state = DONE;
    this._end = null;
  }

  get memory(): GuestMemory {
    return this.mem;
  }
  /** The buffer id (PVQ-BUFFER-ID): what `PackedQueue.addUsed` takes. */
  get headIndex(): number {
    return this._bufferId;
  }
  get bufferId(): number {
    return this._bufferId;
  }
  /** The chain's first ring slot, the wrap counter there, and how many slots it took. */
  get headSlot(): number {
    return this._headSlot;
  }
  get headWrap(): boolean {
    return this._headWrap;
  }
  get slots(): number {
    return this.count;
  }
  /** The current descriptor's ring slot, or its entry in the indirect table when `indirect`. */
  get index(): number {
    return this._index;
  }
  /** The current addr: exact below 2^53, >= 2^53 (so outside memory) otherwise; see addrBig(). */
  get addr(): number {
    return u64ToNumber(this.addrLo, this.addrHi);
  }
  get len(): number {
    return this._len;
  }
  /** The current descriptor's raw id field (only the chain's last ring descriptor's counts). */
  get id(): number {
    return this._id;
  }
  get flags(): number {
    return this._flags;
  }
  get indirect(): boolean {
    return this.inIndirect;
  }
  /** Bytes yielded so far by this walk (PVQ-LEN-U32). */
  get totalLength(): number {
    return this.total;
  }
  /** Why the walk stopped before its end; null otherwise. Final once advance() returned false. */
  get end(): ChainError | null {
    return this._end;
  }

  addrBig(): bigint {
    return u64ToBigInt(this.addrLo, this.addrHi);
  }
  isWriteOnly(): boolean {
    return (this._flags & VIRTQ_DESC_F_WRITE) !== 0;
  }
  /** The current descriptor has NEXT and the walk will try to follow it (never in an indirect table). */
  hasNext(): boolean {
    return !this.inIndirect && (this._flags & VIRTQ_DESC_F_NEXT) !== 0 && this.state === MORE;
  }

  /** To the first data descriptor; false when the chain yields none (then `end` says why). */
  rewind(): boolean {
    const f = this.fresh;
    if (f !== NOT_FRESH) return f === FRESH_OK;
    return this.restart();
  }

  private restart(): boolean {
    this.total = 0;
    this._end = null;
    this.k = 0;
    this.inIndirect = false;
    if (this.count === 0) {
      this.state = DONE;
      return false;
    }
    this.state = MORE;
    const r = this.ring;
    if (((r[3]! >>> 16) & VIRTQ_DESC_F_INDIRECT) !== 0) {
      // PVQ-INDIRECT, PVQ-INDIRECT-LEN: the walk is the table's entries.
      const len = r[2]!;
      if (len === 0 || len % DESC_SIZE !== 0 || len > MAX_INDIRECT_LEN) {
        return this.stop({ _tag: "InvalidIndirectDescriptorTable", len });
      }
      this.inIndirect = true;
      this.tableLo = r[0]!;
      this.tableHi = r[1]!;
      this.tableSize = len / DESC_SIZE;
    }
    return this.step();
  }

  /** To the next data descriptor; false when the chain has ended. */
  advance(): boolean {
    this.fresh = NOT_FRESH;
    return this.step();
  }

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

  /** Byte and descriptor counts by direction; walks the whole chain (the cursor ends past it). */
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

  private stop(end: ChainError): false {
    this._end = end;
    this.state = DONE;
    return false;
  }

  private step(): boolean {
    if (this.state !== MORE) return false;
    return this.inIndirect ? this.stepTable() : this.stepRing();
  }

  /** The next ring descriptor (PVQ-CHAIN-NEXT, PVQ-CHAIN-LIMIT, PVQ-INDIRECT-IN-CHAIN). */
  private stepRing(): boolean {
    const k = this.k;
    const r = this.ring;
    if (k >= this.count) {
      this.state = DONE;
      // The last ring descriptor still had NEXT: the chain hit the queue size (PVQ-CHAIN-LIMIT).
      if (((r[4 * (k - 1) + 3]! >>> 16) & VIRTQ_DESC_F_NEXT) !== 0) {
        this._end = { _tag: "ChainTtlExpired", limit: this.size };
      }
      return false;
    }
    const o = 4 * k;
    const slot = this._headSlot + k >= this.size ? this._headSlot + k - this.size : this._headSlot + k;
    const idFlags = r[o + 3]!;
    const flags = idFlags >>> 16;
    const len = r[o + 2]!;
    if (k > 0 && (flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
      return this.stop({ _tag: "InvalidIndirectDescriptor", index: slot });
    }
    const total = this.total + len;
    if (total > MAX_CHAIN_BYTES) return this.stop({ _tag: "DescriptorChainOverflow", index: slot, len });
    this.total = total;
    this.addrLo = r[o]!;
    this.addrHi = r[o + 1]!;
    this._len = len;
    this._id = idFlags & 0xffff;
    this._flags = flags;
    this._index = slot;
    this.k = k + 1;
    return true;
  }

  /** The next indirect table entry, read from guest memory (PVQ-INDIRECT, PVQ-INDIRECT-LEN). */
  private stepTable(): boolean {
    const k = this.k;
    if (k >= this.tableSize) {
      this.state = DONE;
      return false;
    }
    const addr = u64ToNumber(this.tableLo, this.tableHi) + DESC_SIZE * k;
    const mem = this.mem;
    const i = mem.locate(addr, DESC_SIZE, false);
    if (i < 0) {
      const exact = u64ToBigInt(this.tableLo, this.tableHi) + BigInt(DESC_SIZE * k);
      return this.stop(GuestMemory.rangeError(exact, BigInt(DESC_SIZE)));
    }
    const region = mem.regions[i]!;
    const v = region.view;
    const off = addr - region.base;
    const len = v.getUint32(off + DESC_LEN, true);
    const total = this.total + len;
    if (total > MAX_CHAIN_BYTES) return this.stop({ _tag: "DescriptorChainOverflow", index: k, len });
    this.total = total;
    this.addrLo = v.getUint32(off + DESC_ADDR, true);
    this.addrHi = v.getUint32(off + DESC_ADDR_HI, true);
    this._len = len;
    this._id = v.getUint16(off + DESC_ID, true);
    this._flags = v.getUint16(off + DESC_FLAGS, true);
    this._index = k;
    this.k = k + 1;
    return true;
  }
}
