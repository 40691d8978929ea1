/**
 * IoVec buffers, the implementation: the segments of descriptor chains as zero-copy views
 * over guest memory, read and written at a byte offset. Same rules as spec/iovec.ts (IOV-*).
 *
 * - `IoVecBuffer` holds one device-readable chain (a growable segment list).
 * - `IoVecBufferMut` holds device-writable chains on a ring deque of fixed capacity (256 by
 *   default). Its slots are mirrored (slot s and s + capacity hold the same segment, as
 *   Firecracker's IovDeque maps one page twice) so the live segments are always one
 *   contiguous run [start, start + count) and every loop below is a plain index loop.
 *
 * Allocation: loading a chain allocates nothing (a slot keeps the region's bytes, an offset
 * and a length). A segment's view is made when first needed (`segment`, `iovecs` for
 * readv/writev, sinks and sources, copies of more than SMALL_COPY bytes) and cached per slot
 * until the slot changes, as are a partial view of it and a source window for a write, so
 * repeating the same access allocates nothing. Pieces of at most SMALL_COPY bytes are copied
 * byte by byte straight from or into the region's bytes and never need a view.
 */
import { GuestMemory } from "../memory/guest-memory.ts";
import {
  DEFAULT_DEQUE_CAPACITY,
  U32_MAX,
  type IoError,
  type IoVecError,
  type ParsedDescriptorChain,
  type VolatileError,
} from "../../spec/iovec.ts";
import { err, ok, type Result } from "../../spec/result.ts";

export type { IoError, IoVecError, ParsedDescriptorChain, VolatileError } from "../../spec/iovec.ts";
export { DEFAULT_DEQUE_CAPACITY, U32_MAX } from "../../spec/iovec.ts";

/**
 * What a buffer is loaded from: impl/queue's `DescriptorChain` fits, and so does
 * `SegmentList` (segment-list.ts) for segments that come from elsewhere.
 */
export interface ChainCursor {
  /** The head's index in the descriptor table (returned in ParsedDescriptorChain). */
  readonly headIndex: number;
  /** Current descriptor: guest address (exact below 2^53, >= 2^53 otherwise) and length. */
  readonly addr: number;
  readonly len: number;
  /** Exact u64 of the current address, for error values. */
  addrBig(): bigint;
  isWriteOnly(): boolean;
  /** To the first descriptor; false if there is none. */
  rewind(): boolean;
  /** To the next descriptor; false when the chain has ended (IOV-CHAIN-END). */
  advance(): boolean;
}

/**
 * Where a read sends its bytes. `write` is offered a live view of guest memory (valid only
 * during the call), takes 0..chunk.length bytes from its start and returns how many, or an
 * error. Taking fewer than offered ends the transfer (IOV-SHORT-TRANSFER); `Interrupted` is
 * retried (IOV-IO-ERROR).
 */
export interface ByteSink {
  write(chunk: Uint8Array): number | IoError;
}

/** Where a write takes its bytes: fills 0..into.length bytes from the start of `into` (a live view of guest memory). */
export interface ByteSource {
  read(into: Uint8Array): number | IoError;
}

/** The one Interrupted value sinks and sources may return without allocating. */
export const INTERRUPTED: IoError = Object.freeze({ _tag: "Interrupted" });

const WRITE_ONLY: Result<never, IoVecError> = Object.freeze(err<IoVecError>({ _tag: "WriteOnlyDescriptor" }));
const READ_ONLY: Result<never, IoVecError> = Object.freeze(err<IoVecError>({ _tag: "ReadOnlyDescriptor" }));
const OVERFLOWED: Result<never, IoVecError> = Object.freeze(
  err<IoVecError>({ _tag: "OverflowedDescriptor" }),
);
const DEQUE_FULL: Result<never, IoVecError> = Object.freeze(err<IoVecError>({ _tag: "IovDequeOverflow" }));
const LOADED: Result<void, IoVecError> = Object.freeze(ok(undefined));

/** IOV-LEN-U32, as a module-local const (an imported binding is loaded on every use). */
const MAX_LEN = U32_MAX;
/** Pieces up to this many bytes are copied by a loop, which beats creating a view. */
const SMALL_COPY = 64;
/** From this many bytes, a small copy moves 4-byte words when both ends are equally aligned. */
const WORD_COPY = 16;
const EMPTY = new Uint8Array(0);
const NO_WORDS = new Int32Array(0);

/**
 * An Int32Array over the whole of each buffer a small copy has used: word copies need no
 * view of the piece (ArrayBuffer and SharedArrayBuffer keys; this map does not keep them alive,
 * but each IoVec buffer's two most recent arrays, `wordArr0`/`wordArr1`, keep theirs until replaced).
 */
const wordViews = new WeakMap<ArrayBufferLike, Int32Array>();
const wordsOf = (buffer: ArrayBufferLike): Int32Array => {
  let w = wordViews.get(buffer);
  if (w === undefined) {
    w = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
    wordViews.set(buffer, w);
  }
  return w;
};

const memoryError = (chain: ChainCursor, len: number): Result<never, IoVecError> =>
  err({ _tag: "GuestMemory", error: GuestMemory.rangeError(chain.addrBig(), BigInt(len)) });

/** IOV-OFFSET: a negative, fractional or unsafe offset moves nothing. */
const validOffset = (offset: number): boolean => offset >= 0 && Number.isSafeInteger(offset);

/** A host range [from, to) inside an array of `size` bytes. */
const validRange = (from: number, to: number, size: number): boolean =>
  Number.isSafeInteger(from) && Number.isSafeInteger(to) && from >= 0 && from <= to && to <= size;

/** A length to move: NaN and negatives are 0, fractions round down. */
const clampLen = (len: number): number => (len > 0 ? (len === Infinity ? len : Math.floor(len)) : 0);

/** A count a sink or source returned, kept within what it was offered. */
const clampMoved = (n: number, offered: number): number =>
  n >= offered ? offered : n > 0 ? Math.floor(n) : 0;

/**
 * The segment store and the transfer loops both buffers share. Slots [first, first + count)
 * hold the live segments in chain order. A slot holds where its segment lies (the region's
 * bytes, the offset in them, the length), not a view: loading a chain allocates nothing,
 * and copies index the region's bytes directly. A segment's view is made when someone asks
 * for it (`segment`, `iovecs`, a sink or source, a copy of more than SMALL_COPY bytes) and
 * kept until the slot changes.
 */
abstract class Segments {
  /** The bytes of the region each slot's segment lies in. */
  protected srcs: Uint8Array[] = [];
  /** Where each slot's segment starts in `srcs[slot]`. */
  protected offs: Float64Array = new Float64Array(0);
  protected lens: Float64Array = new Float64Array(0);
  protected addrs: Float64Array = new Float64Array(0);
  protected first = 0;
  protected count = 0;
  protected total = 0;
  /** Bumped on every change, so the `iovecs()` list is rebuilt only when needed. */
  protected version = 0;

  // Per-slot caches: the segment's whole view, the last partial view of it (skip, length)
  // and the last source window used to write it (source, position, length).
  private views: (Uint8Array | null)[] = [];
  private pieceViews: (Uint8Array | null)[] = [];
  private pieceSkips: Float64Array = new Float64Array(0);
  private windowViews: (Uint8Array | null)[] = [];
  private windowSources: (Uint8Array | null)[] = [];
  private windowPositions: Float64Array = new Float64Array(0);

  private listed: Uint8Array[] = [];
  private listedVersion = -1;

  // The two arrays small copies used last (the guest's and the host's), each with its buffer's
  // word view and its byteOffset: reading `.buffer` and `.byteOffset` per copy cost more than
  // a 64-byte copy. Strong references: they keep those two arrays alive as long as this object.
  private wordArr0: Uint8Array | null = null;
  private words0: Int32Array = NO_WORDS;
  private wordOff0 = 0;
  private wordArr1: Uint8Array | null = null;
  private words1: Int32Array = NO_WORDS;
  private wordOff1 = 0;

  protected allocate(slots: number): void {
    const srcs: Uint8Array[] = new Array<Uint8Array>(slots).fill(EMPTY);
    const offs = new Float64Array(slots);
    const lens = new Float64Array(slots);
    const addrs = new Float64Array(slots);
    for (let i = 0; i < this.srcs.length && i < slots; i++) {
      srcs[i] = this.srcs[i]!;
      offs[i] = this.offs[i]!;
      lens[i] = this.lens[i]!;
      addrs[i] = this.addrs[i]!;
    }
    this.srcs = srcs;
    this.offs = offs;
    this.lens = lens;
    this.addrs = addrs;
    this.views = new Array<Uint8Array | null>(slots).fill(null);
    this.pieceViews = new Array<Uint8Array | null>(slots).fill(null);
    this.pieceSkips = new Float64Array(slots);
    this.windowViews = new Array<Uint8Array | null>(slots).fill(null);
    this.windowSources = new Array<Uint8Array | null>(slots).fill(null);
    this.windowPositions = new Float64Array(slots);
  }

  /** Slot `slot` holds `src[off, off + len)`, the bytes of guest address `addr`. */
  protected setSlot(slot: number, src: Uint8Array, off: number, len: number, addr: number): void {
    this.srcs[slot] = src;
    this.offs[slot] = off;
    this.lens[slot] = len;
    this.addrs[slot] = addr;
    this.views[slot] = null;
    this.pieceViews[slot] = null;
    this.windowViews[slot] = null;
    this.windowSources[slot] = null;
  }

  /** Total bytes covered by the segments (a u32, IOV-LEN-U32). */
  get len(): number {
    return this.total;
  }

  isEmpty(): boolean {
    return this.total === 0;
  }

  /** Number of segments (iovecs). */
  get segmentCount(): number {
    return this.count;
  }

  /** The i-th segment in chain order: a live view of guest memory (IOV-ZERO-COPY). */
  segment(i: number): Uint8Array | undefined {
    return i >= 0 && i < this.count ? this.view(this.first + i) : undefined;
  }

  /** The guest address of the i-th segment, or -1. */
  segmentAddr(i: number): number {
    return i >= 0 && i < this.count ? this.addrs[this.first + i]! : -1;
  }

  /**
   * The segments in chain order as views of guest memory, ready for readv/writev
   * (IOV-ZERO-COPY). The array is reused and rebuilt only after the buffer changes; do not
   * keep it across a change.
   */
  iovecs(): readonly Uint8Array[] {
    if (this.listedVersion !== this.version) {
      const list = this.listed;
      list.length = this.count;
      for (let i = 0; i < this.count; i++) list[i] = this.view(this.first + i);
      this.listedVersion = this.version;
    }
    return this.listed;
  }

  /** Slot `slot`'s whole segment as a view, made once per slot change. */
  private view(slot: number): Uint8Array {
    const cached = this.views[slot];
    if (cached !== null && cached !== undefined) return cached;
    const off = this.offs[slot]!;
    const view = this.srcs[slot]!.subarray(off, off + this.lens[slot]!);
    this.views[slot] = view;
    return view;
  }

  /** Slot `slot`'s bytes [skip, skip + n), a view cached per slot. */
  private piece(slot: number, skip: number, n: number): Uint8Array {
    const cached = this.pieceViews[slot];
    if (cached !== null && cached !== undefined && this.pieceSkips[slot] === skip && cached.length === n) {
      return cached;
    }
    const at = this.offs[slot]! + skip;
    const view = this.srcs[slot]!.subarray(at, at + n);
    this.pieceViews[slot] = view;
    this.pieceSkips[slot] = skip;
    return view;
  }

  /** src[pos, pos + n) as a view, cached per slot it is written to. */
  private window(slot: number, src: Uint8Array, pos: number, n: number): Uint8Array {
    const cached = this.windowViews[slot];
    if (
      cached !== null &&
      cached !== undefined &&
      this.windowSources[slot] === src &&
      this.windowPositions[slot] === pos &&
      cached.length === n
    ) {
      return cached;
    }
    const view = src.subarray(pos, pos + n);
    this.windowViews[slot] = view;
    this.windowSources[slot] = src;
    this.windowPositions[slot] = pos;
    return view;
  }

  /**
   * Makes `a` the most recent of the two cached arrays (its buffer's word view through the
   * shared cache, its byteOffset read once) unless it is one already; returns its place, 0 or 1.
   */
  private wordSlot(a: Uint8Array): number {
    if (a === this.wordArr0) return 0;
    if (a === this.wordArr1) return 1;
    this.wordArr1 = this.wordArr0;
    this.words1 = this.words0;
    this.wordOff1 = this.wordOff0;
    this.wordArr0 = a;
    this.words0 = wordsOf(a.buffer);
    this.wordOff0 = a.byteOffset;
    return 0;
  }

  /**
   * Copies src[s, s + n) to dst[d, d + n), forwards, for n <= SMALL_COPY with both ranges
   * inside their arrays (the callers' loops guarantee it). Equally aligned ends move by 4-byte
   * words between a byte head and tail (the same bytes in the same order as the byte loop,
   * also where the ranges overlap: their distance is then a multiple of 4); anything else, and
   * a word view that does not cover the range (a resized buffer), goes byte by byte.
   */
  private copySmall(dst: Uint8Array, d: number, src: Uint8Array, s: number, n: number): void {
    let k = 0;
    if (n >= WORD_COPY) {
      // Each array's place is read before the next lookup can move it.
      const dAt = this.wordSlot(dst);
      const dw = dAt === 0 ? this.words0 : this.words1;
      const da = (dAt === 0 ? this.wordOff0 : this.wordOff1) + d;
      const sAt = this.wordSlot(src);
      const sw = sAt === 0 ? this.words0 : this.words1;
      const sa = (sAt === 0 ? this.wordOff0 : this.wordOff1) + s;
      if (((da ^ sa) & 3) === 0) {
        const head = (4 - (da & 3)) & 3;
        const count = (n - head) >>> 2;
        const di = (da + head) >>> 2;
        const si = (sa + head) >>> 2;
        if (di + count <= dw.length && si + count <= sw.length) {
          for (; k < head; k++) dst[d + k] = src[s + k]!;
          for (let j = 0; j < count; j++) dw[di + j] = sw[si + j]!;
          k += count << 2;
        }
      }
    }
    for (; k < n; k++) dst[d + k] = src[s + k]!;
  }

  /**
   * Reads up to `len` bytes at `offset` into `sink` (IOV-READ-LEN, IOV-OVERLAP-ORDER,
   * IOV-SHORT-TRANSFER, IOV-IO-ERROR). Returns the bytes moved, or the sink's error when it
   * failed before any byte moved.
   */
  readAt(sink: ByteSink, offset: number, len: number): number | IoError {
    return this.transfer(sink, true, offset, len);
  }

  /**
   * Copies bytes at `offset` into `dst[from, to)` (all of `dst` by default) until that range
   * is full or the buffer ends; returns the count, min(to - from, max(0, len - offset))
   * (IOV-READ-LEN). Pieces of at most SMALL_COPY bytes are copied from the region's bytes
   * with no view; a larger one uses the view cached per segment (the whole segment, or the
   * last partial range of it), made once per segment load.
   */
  readInto(dst: Uint8Array, offset: number, from = 0, to = dst.length): number {
    return this.copy(dst, true, offset, from, to);
  }

  /**
   * Fills all of `dst` from `offset` (IOV-EXACT-PARTIAL, IOV-EXACT-OOB): null when done,
   * OutOfBounds when offset >= len, PartialBuffer when the buffer ended first.
   */
  readExactAt(dst: Uint8Array, offset: number): VolatileError | null {
    if (!validOffset(offset) || offset >= this.total) return { _tag: "OutOfBounds", addr: offset };
    const n = this.readInto(dst, offset);
    return n === dst.length ? null : { _tag: "PartialBuffer", expected: dst.length, completed: n };
  }

  /** Writes up to `len` bytes from `source` at `offset` (the write loop, shared with IoVecBufferMut). */
  protected writeLoop(source: ByteSource, offset: number, len: number): number | IoError {
    return this.transfer(source, false, offset, len);
  }

  /**
   * The one segment walk behind readAt (segments to `io`, a ByteSink) and writeLoop (`io`, a
   * ByteSource, to segments): up to `len` bytes from `offset`, one piece per segment, an
   * Interrupted call retried, stopping at a short move; an error is returned only when it came
   * before any byte moved.
   */
  private transfer(io: ByteSink | ByteSource, toIo: boolean, offset: number, len: number): number | IoError {
    if (!validOffset(offset)) return 0;
    let left = clampLen(len);
    let skip = offset;
    let total = 0;
    const lens = this.lens;
    const end = this.first + this.count;
    for (let i = this.first; i < end && left > 0; i++) {
      const size = lens[i]!;
      if (skip >= size) {
        skip -= size;
        continue;
      }
      const n = size - skip < left ? size - skip : left;
      const chunk = n === size ? this.view(i) : this.piece(i, skip, n);
      skip = 0;
      let r = toIo ? (io as ByteSink).write(chunk) : (io as ByteSource).read(chunk);
      while (typeof r !== "number" && r._tag === "Interrupted")
        r = toIo ? (io as ByteSink).write(chunk) : (io as ByteSource).read(chunk);
      if (typeof r !== "number") {
        if (total > 0) break;
        return r;
      }
      const moved = clampMoved(r, n);
      total += moved;
      if (moved < n) break;
      left -= n;
    }
    return total;
  }

  /** Copies `src[from, to)` into the buffer at `offset` as far as it fits (shared with IoVecBufferMut). */
  protected writeFromLoop(src: Uint8Array, offset: number, from: number, to: number): number {
    return this.copy(src, false, offset, from, to);
  }

  /**
   * The one segment walk behind readInto (segments to `bytes[from, to)`) and writeFromLoop
   * (`bytes[from, to)` to segments), from `offset` until the range is done or the buffer ends;
   * returns the count. Pieces of at most SMALL_COPY bytes are copied through the region's bytes
   * with no view; a larger one through the view cached per segment (or the caller's bytes).
   */
  private copy(bytes: Uint8Array, toBytes: boolean, offset: number, from: number, to: number): number {
    if (!validOffset(offset) || !validRange(from, to, bytes.length)) return 0;
    let left = to - from;
    let skip = offset;
    let pos = from;
    const lens = this.lens;
    const end = this.first + this.count;
    for (let i = this.first; i < end && left > 0; i++) {
      const size = lens[i]!;
      if (skip >= size) {
        skip -= size;
        continue;
      }
      const n = size - skip < left ? size - skip : left;
      const seg = this.srcs[i]!;
      const at = this.offs[i]! + skip;
      if (n <= SMALL_COPY) {
        if (toBytes) this.copySmall(bytes, pos, seg, at, n);
        else this.copySmall(seg, at, bytes, pos, n);
      } else if (toBytes) bytes.set(n === size ? this.view(i) : this.piece(i, skip, n), pos);
      else seg.set(n === bytes.length ? bytes : this.window(i, bytes, pos, n), at);
      pos += n;
      left -= n;
      skip = 0;
    }
    return pos - from;
  }
}

/** A device-readable chain (Firecracker `IoVecBuffer`). */
export class IoVecBuffer extends Segments {
  constructor(initialSlots = 16) {
    super();
    this.allocate(Math.max(1, initialSlots));
  }

  /** A buffer loaded from `chain`, or the load's error. */
  static fromChain(memory: GuestMemory, chain: ChainCursor): Result<IoVecBuffer, IoVecError> {
    const b = new IoVecBuffer();
    const r = b.load(memory, chain);
    return r.ok ? ok(b) : r;
  }

  /**
   * Replaces the contents with the chain's segments (IOV-LOAD-CLEAR), checking each
   * descriptor in order: write-only (IOV-LOAD-WRITE-ONLY), in memory (IOV-SEG-MEMORY), total
   * within u32 (IOV-LEN-U32). On failure the buffer is empty. The chain is walked from its
   * start (`rewind`).
   */
  load(memory: GuestMemory, chain: ChainCursor): Result<void, IoVecError> {
    this.clear();
    let n = 0;
    let total = 0;
    for (let more = chain.rewind(); more; more = chain.advance()) {
      if (chain.isWriteOnly()) return this.fail(WRITE_ONLY);
      const addr = chain.addr;
      const len = chain.len;
      const r = memory.locate(addr, len, false);
      if (r < 0) return this.fail(memoryError(chain, len));
      const region = memory.regions[r]!;
      if (n === this.srcs.length) this.allocate(n * 2);
      this.setSlot(n, region.bytes, addr - region.base, len, addr);
      n++;
      total += len;
      if (total > MAX_LEN) return this.fail(OVERFLOWED);
    }
    this.count = n;
    this.total = total;
    this.version++;
    return LOADED;
  }

  private fail(e: Result<never, IoVecError>): Result<never, IoVecError> {
    this.clear();
    return e;
  }

  /** Empties the buffer. */
  clear(): void {
    this.count = 0;
    this.total = 0;
    this.version++;
  }
}

/** Options for an IoVecBufferMut. */
export interface IoVecBufferMutOptions {
  /** Most segments held at once (IOV-DEQUE-CAPACITY); default 256, at most 65536. */
  readonly capacity?: number;
}

/** Device-writable chains on a ring deque (Firecracker `IoVecBufferMut` over `IovDeque`). */
export class IoVecBufferMut extends Segments {
  readonly capacity: number;

  constructor(options: IoVecBufferMutOptions = {}) {
    super();
    const capacity = options.capacity ?? DEFAULT_DEQUE_CAPACITY;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 65536) {
      throw new RangeError(`IoVecBufferMut capacity must be an integer in 1..65536, got ${capacity}`);
    }
    this.capacity = capacity;
    this.allocate(2 * capacity);
  }

  /** A buffer holding just `chain`, or the append's error. */
  static fromChain(
    memory: GuestMemory,
    chain: ChainCursor,
    options: IoVecBufferMutOptions = {},
  ): Result<IoVecBufferMut, IoVecError> {
    const b = new IoVecBufferMut(options);
    const r = b.appendChain(memory, chain);
    return r.ok ? ok(b) : r;
  }

  /** The deque slot of the first segment, 0 <= start < capacity. */
  get start(): number {
    return this.first;
  }

  isFull(): boolean {
    return this.count === this.capacity;
  }

  /**
   * Appends the chain's segments after those held (IOV-APPEND-RESULT), checking each
   * descriptor in order (IOV-CHECK-ORDER): device-writable (IOV-MUT-READ-ONLY), in memory
   * (IOV-SEG-MEMORY), room in the deque (IOV-DEQUE-CAPACITY), lengths within u32
   * (IOV-LEN-U32). A failure leaves the buffer as it was (IOV-APPEND-ATOMIC).
   */
  appendChain(memory: GuestMemory, chain: ChainCursor): Result<ParsedDescriptorChain, IoVecError> {
    const headIndex = chain.headIndex;
    const before = this.total;
    const n = this.append(memory, chain);
    if (n < 0) return this.failure;
    return ok({ headIndex, length: this.total - before, nrIovecs: n });
  }

  /**
   * appendChain without the result object (the hot path): the number of segments
   * appended, or -1 with the error in `failure`.
   */
  private append(memory: GuestMemory, chain: ChainCursor): number {
    const cap = this.capacity;
    const held = this.count;
    let n = 0;
    let length = 0;
    for (let more = chain.rewind(); more; more = chain.advance()) {
      if (!chain.isWriteOnly()) return this.refuse(READ_ONLY);
      const addr = chain.addr;
      const len = chain.len;
      const r = memory.locate(addr, len, true);
      if (r < 0) return this.refuse(memoryError(chain, len));
      if (held + n >= cap) return this.refuse(DEQUE_FULL);
      const region = memory.regions[r]!;
      const src = region.bytes;
      const off = addr - region.base;
      // Slots past the live run are free, so filling them before the append succeeds
      // changes nothing visible; `count` moves only on success.
      const slot = this.first + held + n;
      this.setSlot(slot, src, off, len, addr);
      this.setSlot(slot >= cap ? slot - cap : slot + cap, src, off, len, addr);
      n++;
      length += len;
      if (length > MAX_LEN) return this.refuse(OVERFLOWED);
    }
    if (this.total + length > MAX_LEN) return this.refuse(OVERFLOWED);
    this.count = held + n;
    this.total += length;
    this.version++;
    return n;
  }

  /** Why the last `append` failed. */
  private failure: Result<never, IoVecError> = OVERFLOWED;

  private refuse(e: Result<never, IoVecError>): -1 {
    this.failure = e;
    return -1;
  }

  /** Clears, then appends `chain` (IOV-LOAD-CLEAR). */
  load(memory: GuestMemory, chain: ChainCursor): Result<void, IoVecError> {
    this.clear();
    return this.append(memory, chain) < 0 ? this.failure : LOADED;
  }

  /**
   * Drops a chain appended first (IOV-DROP-CHAIN). False, and nothing changes, when the
   * buffer holds fewer segments or bytes than `parsed` says.
   */
  dropChainFront(parsed: ParsedDescriptorChain): boolean {
    if (!this.droppable(parsed)) return false;
    let start = this.first + parsed.nrIovecs;
    if (start >= this.capacity) start -= this.capacity;
    this.first = start;
    this.count -= parsed.nrIovecs;
    this.total -= parsed.length;
    this.version++;
    return true;
  }

  /** Drops the chain appended last (IOV-DROP-CHAIN); false and no change as for dropChainFront. */
  dropChainBack(parsed: ParsedDescriptorChain): boolean {
    if (!this.droppable(parsed)) return false;
    this.count -= parsed.nrIovecs;
    this.total -= parsed.length;
    this.version++;
    return true;
  }

  private droppable(parsed: ParsedDescriptorChain): boolean {
    const { nrIovecs, length } = parsed;
    return (
      Number.isInteger(nrIovecs) &&
      Number.isInteger(length) &&
      nrIovecs >= 0 &&
      length >= 0 &&
      nrIovecs <= this.count &&
      length <= this.total
    );
  }

  /** Empties the buffer and puts the deque back at slot 0 (IOV-CLEAR). */
  clear(): void {
    this.first = 0;
    this.count = 0;
    this.total = 0;
    this.version++;
  }

  /**
   * Writes up to `len` bytes from `source` at `offset` (IOV-WRITE-LEN, IOV-OVERLAP-ORDER,
   * IOV-SHORT-TRANSFER, IOV-IO-ERROR). Returns the bytes moved, or the source's error when
   * it failed before any byte moved.
   */
  writeAt(source: ByteSource, offset: number, len: number): number | IoError {
    return this.writeLoop(source, offset, len);
  }

  /**
   * Copies `src[from, to)` (all of `src` by default) in at `offset` as far as it fits;
   * returns min(to - from, max(0, len - offset)) (IOV-WRITE-LEN). Segments are filled in
   * chain order, so where they overlap the later one wins (IOV-OVERLAP-ORDER). A range
   * outside `src` copies nothing.
   */
  writeFrom(src: Uint8Array, offset: number, from = 0, to = src.length): number {
    return this.writeFromLoop(src, offset, from, to);
  }

  /**
   * Writes all of `src` at `offset` (IOV-EXACT-PARTIAL, IOV-EXACT-OOB): null when done,
   * OutOfBounds (nothing written) when offset >= len, PartialBuffer when the buffer ended
   * first (what fitted is written).
   */
  writeAllAt(src: Uint8Array, offset: number): VolatileError | null {
    if (!validOffset(offset) || offset >= this.total) return { _tag: "OutOfBounds", addr: offset };
    const n = this.writeFromLoop(src, offset, 0, src.length);
    return n === src.length ? null : { _tag: "PartialBuffer", expected: src.length, completed: n };
  }
}
