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
 * Allocation: loading a segment creates its view (one `subarray`), which is also what
 * readv/writev need. Copies then allocate nothing when a piece is a whole segment; a piece
 * that starts or ends inside a segment (or a source window for a write) gets a view that is
 * cached per slot, so repeating the same access allocates nothing either. Pieces of at most
 * SMALL_COPY bytes are copied byte by byte and never need a view.
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

/** Pieces up to this many bytes are copied by a loop, which beats creating a view. */
const SMALL_COPY = 64;
const EMPTY = new Uint8Array(0);

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
 * hold the live segments in chain order.
 */
abstract class Segments {
  protected views: Uint8Array[] = [];
  protected addrs: Float64Array = new Float64Array(0);
  protected first = 0;
  protected count = 0;
  protected total = 0;
  /** Bumped on every change, so the `iovecs()` list is rebuilt only when needed. */
  protected version = 0;

  // Per-slot caches of the last partial view of the segment (skip, length) and of the last
  // source window used to write it (source, position, length).
  private pieceViews: (Uint8Array | null)[] = [];
  private pieceSkips: Float64Array = new Float64Array(0);
  private windowViews: (Uint8Array | null)[] = [];
  private windowSources: (Uint8Array | null)[] = [];
  private windowPositions: Float64Array = new Float64Array(0);

  private listed: Uint8Array[] = [];
  private listedVersion = -1;

  protected allocate(slots: number): void {
    const views: Uint8Array[] = new Array<Uint8Array>(slots).fill(EMPTY);
    const addrs = new Float64Array(slots);
    for (let i = 0; i < this.views.length && i < slots; i++) {
      views[i] = this.views[i]!;
      addrs[i] = this.addrs[i]!;
    }
    this.views = views;
    this.addrs = addrs;
    this.pieceViews = new Array<Uint8Array | null>(slots).fill(null);
    this.pieceSkips = new Float64Array(slots);
    this.windowViews = new Array<Uint8Array | null>(slots).fill(null);
    this.windowSources = new Array<Uint8Array | null>(slots).fill(null);
    this.windowPositions = new Float64Array(slots);
  }

  protected setSlot(slot: number, view: Uint8Array, addr: number): void {
    this.views[slot] = view;
    this.addrs[slot] = addr;
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
    return i >= 0 && i < this.count ? this.views[this.first + i] : undefined;
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
      for (let i = 0; i < this.count; i++) list[i] = this.views[this.first + i]!;
      this.listedVersion = this.version;
    }
    return this.listed;
  }

  /** Slot `slot`'s bytes [skip, skip + n), a view cached per slot. */
  private piece(slot: number, skip: number, n: number): Uint8Array {
    const cached = this.pieceViews[slot];
    if (cached !== null && cached !== undefined && this.pieceSkips[slot] === skip && cached.length === n) {
      return cached;
    }
    const view = this.views[slot]!.subarray(skip, skip + n);
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
   * Reads up to `len` bytes at `offset` into `sink` (IOV-READ-LEN, IOV-OVERLAP-ORDER,
   * IOV-SHORT-TRANSFER, IOV-IO-ERROR). Returns the bytes moved, or the sink's error when it
   * failed before any byte moved.
   */
  readAt(sink: ByteSink, offset: number, len: number): number | IoError {
    if (!validOffset(offset)) return 0;
    let left = clampLen(len);
    let skip = offset;
    let total = 0;
    const views = this.views;
    const end = this.first + this.count;
    for (let i = this.first; i < end && left > 0; i++) {
      const v = views[i]!;
      const size = v.length;
      if (skip >= size) {
        skip -= size;
        continue;
      }
      const n = size - skip < left ? size - skip : left;
      const chunk = n === size ? v : this.piece(i, skip, n);
      skip = 0;
      let r = sink.write(chunk);
      while (typeof r !== "number" && r._tag === "Interrupted") r = sink.write(chunk);
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

  /**
   * Copies bytes at `offset` into `dst[from, to)` (all of `dst` by default) until that range
   * is full or the buffer ends; returns the count, min(to - from, max(0, len - offset))
   * (IOV-READ-LEN). No allocation when the views cached per segment fit the range (whole segments, or the last partial range per segment); another partial range over 64 bytes makes one view. A range outside `dst` copies nothing.
   */
  readInto(dst: Uint8Array, offset: number, from = 0, to = dst.length): number {
    if (!validOffset(offset) || !validRange(from, to, dst.length)) return 0;
    let left = to - from;
    let skip = offset;
    let pos = from;
    const views = this.views;
    const end = this.first + this.count;
    for (let i = this.first; i < end && left > 0; i++) {
      const v = views[i]!;
      const size = v.length;
      if (skip >= size) {
        skip -= size;
        continue;
      }
      const n = size - skip < left ? size - skip : left;
      if (n === size) dst.set(v, pos);
      else if (n <= SMALL_COPY) for (let k = 0; k < n; k++) dst[pos + k] = v[skip + k]!;
      else dst.set(this.piece(i, skip, n), pos);
      pos += n;
      left -= n;
      skip = 0;
    }
    return pos - from;
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
    if (!validOffset(offset)) return 0;
    let left = clampLen(len);
    let skip = offset;
    let total = 0;
    const views = this.views;
    const end = this.first + this.count;
    for (let i = this.first; i < end && left > 0; i++) {
      const v = views[i]!;
      const size = v.length;
      if (skip >= size) {
        skip -= size;
        continue;
      }
      const n = size - skip < left ? size - skip : left;
      const into = n === size ? v : this.piece(i, skip, n);
      skip = 0;
      let r = source.read(into);
      while (typeof r !== "number" && r._tag === "Interrupted") r = source.read(into);
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
    if (!validOffset(offset) || !validRange(from, to, src.length)) return 0;
    let left = to - from;
    let skip = offset;
    let pos = from;
    const views = this.views;
    const end = this.first + this.count;
    for (let i = this.first; i < end && left > 0; i++) {
      const v = views[i]!;
      const size = v.length;
      if (skip >= size) {
        skip -= size;
        continue;
      }
      const n = size - skip < left ? size - skip : left;
      if (n <= SMALL_COPY) for (let k = 0; k < n; k++) v[skip + k] = src[pos + k]!;
      else if (n === src.length) v.set(src, skip);
      else v.set(this.window(i, src, pos, n), skip);
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
      const off = addr - region.base;
      if (n === this.views.length) this.allocate(n * 2);
      this.setSlot(n, region.bytes.subarray(off, off + len), addr);
      n++;
      total += len;
      if (total > U32_MAX) return this.fail(OVERFLOWED);
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
    const cap = this.capacity;
    const held = this.count;
    let n = 0;
    let length = 0;
    for (let more = chain.rewind(); more; more = chain.advance()) {
      if (!chain.isWriteOnly()) return READ_ONLY;
      const addr = chain.addr;
      const len = chain.len;
      const r = memory.locate(addr, len, true);
      if (r < 0) return memoryError(chain, len);
      if (held + n >= cap) return DEQUE_FULL;
      const region = memory.regions[r]!;
      const off = addr - region.base;
      const view = region.bytes.subarray(off, off + len);
      // Slots past the live run are free, so filling them before the append succeeds
      // changes nothing visible; `count` moves only on success.
      const slot = this.first + held + n;
      this.setSlot(slot, view, addr);
      this.setSlot(slot >= cap ? slot - cap : slot + cap, view, addr);
      n++;
      length += len;
      if (length > U32_MAX) return OVERFLOWED;
    }
    if (this.total + length > U32_MAX) return OVERFLOWED;
    this.count = held + n;
    this.total += length;
    this.version++;
    return ok({ headIndex, length, nrIovecs: n });
  }

  /** Clears, then appends `chain` (IOV-LOAD-CLEAR). */
  load(memory: GuestMemory, chain: ChainCursor): Result<void, IoVecError> {
    this.clear();
    const r = this.appendChain(memory, chain);
    return r.ok ? LOADED : r;
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
