/**
 * IoVec buffers, the reference model (Firecracker `iovec.rs` semantics).
 *
 * An IoVecBuffer is the list of segments of a device-readable chain; an IoVecBufferMut is
 * the list of segments of one or more device-writable chains, held on a ring deque of fixed
 * capacity. Both are read or written at a byte offset of their logical buffer: the
 * concatenation of the segments in chain order.
 *
 * Overlapping segments (IOV-OVERLAP-ORDER): a guest may give two descriptors that cover the
 * same guest bytes. Reading concatenates the segments in chain order, so the same guest bytes
 * appear twice. Writing fills the segments in chain order, one after another, so where
 * segments overlap the later segment's bytes are what guest memory holds afterwards ("later
 * writes win").
 *
 * Sinks and sources are modelled as scripts (`SinkModel`, `SourceModel`): each call the
 * transfer makes consumes one step, which takes/gives at most `max` bytes or fails. The
 * implementation's sinks are objects; tests drive both with the same script.
 *
 * Pure functions over immutable data: a write returns new memory.
 */
import { locate, type MemoryError, type SpecMemory, type SpecRegion } from "./memory.ts";
import { err, ok, rule, type Result } from "./result.ts";
import { VIRTQ_DESC_F_WRITE } from "../wire/split.ts";

export const U32_MAX = 0xffff_ffff;
/** Firecracker's FIRECRACKER_MAX_QUEUE_SIZE: the default capacity of an IoVecBufferMut's deque. */
export const DEFAULT_DEQUE_CAPACITY = 256;

const FC = "Firecracker iovec.rs";

export const RULES = [
  rule(
    "IOV-LOAD-CLEAR",
    `${FC} IoVecBuffer::load_descriptor_chain`,
    "Loading a chain into an IoVecBuffer first clears what it held; a load that fails leaves it empty.",
  ),
  rule(
    "IOV-LOAD-WRITE-ONLY",
    `PROFILE: ${FC} IoVecBuffer::load_descriptor_chain refuses; rust-vmm virtio-queue descriptor_utils.rs Reader reads desc_chain.readable() only and skips writable descriptors. VIRTIO 1.2 §2.7.5.1: a device SHOULD NOT read a device-writable buffer (not MUST)`,
    "A device-writable descriptor in a chain loaded as readable is WriteOnlyDescriptor (this model: Firecracker).",
  ),
  rule(
    "IOV-SEG-MEMORY",
    `${FC} load/append_descriptor_chain (vm-memory get_slice)`,
    "Every segment [addr, addr+len) lies inside one guest-memory region; otherwise GuestMemory carrying the memory error.",
  ),
  rule(
    "IOV-LEN-U32",
    `${FC} len.checked_add`,
    "The total length of a buffer is a u32; a chain or an append that would pass 2^32-1 is OverflowedDescriptor.",
  ),
  rule(
    "IOV-CHECK-ORDER",
    `${FC} append_descriptor_chain`,
    "Per descriptor, in chain order: access mode, then memory, then (mut) deque room, then length overflow; the first failure is the error.",
  ),
  rule(
    "IOV-CHAIN-END",
    "Firecracker queue.rs DescriptorChain::next_descriptor",
    "A chain whose walk stops early (invalid next, ttl spent, bad indirect table) ends there: its buffer is the descriptors walked.",
  ),
  rule(
    "IOV-READ-LEN",
    `${FC} read_volatile_at, Kani verify_read_from_iovec`,
    "Reading at offset with an unlimited sink of room n moves min(n, len, max(0, buffer length - offset)) bytes.",
  ),
  rule(
    "IOV-WRITE-LEN",
    `${FC} write_volatile_at, Kani verify_write_to_iovec`,
    "Writing at offset from a source of n bytes moves min(n, len, max(0, buffer length - offset)) bytes.",
  ),
  rule(
    "IOV-OVERLAP-ORDER",
    "virtio-lab (Kani could not check contents)",
    "Reads concatenate segments in chain order; writes fill segments in chain order, so where segments overlap the later segment's bytes win.",
  ),
  rule(
    "IOV-SHORT-TRANSFER",
    `${FC} read_volatile_at / write_volatile_at`,
    "When a sink takes (or a source gives) fewer bytes than offered, the transfer stops and returns the bytes moved so far.",
  ),
  rule(
    "IOV-IO-ERROR",
    `${FC} read_volatile_at / write_volatile_at`,
    "An Interrupted sink/source error is retried; any other error ends the transfer: it is returned when no byte moved, otherwise the bytes moved are returned.",
  ),
  rule(
    "IOV-EXACT-PARTIAL",
    `${FC} read_exact_volatile_at / write_all_volatile_at`,
    "An exact read/write that moves fewer bytes than the buffer given is PartialBuffer {expected, completed}; the bytes that did move stay moved.",
  ),
  rule(
    "IOV-EXACT-OOB",
    `${FC} read_exact_volatile_at / write_all_volatile_at`,
    "An exact read/write at offset >= buffer length is OutOfBounds {addr: offset} and moves nothing.",
  ),
  rule(
    "IOV-OFFSET",
    "virtio-lab",
    "Offsets and lengths are non-negative integers; a negative or fractional offset moves nothing (OutOfBounds for the exact forms).",
  ),
  rule(
    "IOV-MUT-READ-ONLY",
    `${FC} IoVecBufferMut::append_descriptor_chain`,
    "A device-readable descriptor in a chain appended to an IoVecBufferMut is ReadOnlyDescriptor.",
  ),
  rule(
    "IOV-DEQUE-CAPACITY",
    `${FC} IovDeque (FIRECRACKER_MAX_QUEUE_SIZE)`,
    "An IoVecBufferMut holds at most `capacity` segments (256 by default); one more is IovDequeOverflow.",
  ),
  rule(
    "IOV-APPEND-ATOMIC",
    `${FC} append_descriptor_chain (pop_back on every error)`,
    "A failed append leaves the buffer exactly as it was: length, segments, deque position.",
  ),
  rule(
    "IOV-APPEND-RESULT",
    `${FC} ParsedDescriptorChain`,
    "A successful append returns {headIndex, length, nrIovecs} of the chain and adds length to the buffer's length.",
  ),
  rule(
    "IOV-DROP-CHAIN",
    `${FC} drop_chain_front / drop_chain_back`,
    "Dropping a chain removes its nrIovecs segments and its length from the front or the back; append then drop back is the identity.",
  ),
  rule(
    "IOV-CLEAR",
    `${FC} IoVecBufferMut::clear / IovDeque::clear`,
    "Clearing empties the buffer (length 0, no segments) and puts the deque back at slot 0.",
  ),
  rule(
    "IOV-ZERO-COPY",
    `${FC} as_iovec_ptr / as_iovec_mut_slice`,
    "Segments are views over guest memory, never copies, and can be handed to readv/writev in order.",
  ),
] as const;

// ---------------------------------------------------------------------------------------
// Errors

export type IoVecError =
  | { readonly _tag: "WriteOnlyDescriptor" }
  | { readonly _tag: "ReadOnlyDescriptor" }
  | { readonly _tag: "OverflowedDescriptor" }
  | { readonly _tag: "IovDequeOverflow" }
  | { readonly _tag: "GuestMemory"; readonly error: MemoryError };

/** vm-memory's VolatileMemoryError cases an exact read/write can give. */
export type VolatileError =
  | { readonly _tag: "PartialBuffer"; readonly expected: number; readonly completed: number }
  | { readonly _tag: "OutOfBounds"; readonly addr: number };

/** What a sink or source may fail with; `Interrupted` is retried (IOV-IO-ERROR). */
export type IoError =
  | { readonly _tag: "Interrupted" }
  | { readonly _tag: "IoError"; readonly code: string; readonly message: string };

// ---------------------------------------------------------------------------------------
// Buffers

/** A segment: guest bytes [addr, addr+len). */
export interface SpecSegment {
  readonly addr: bigint;
  readonly len: number;
}

/** A descriptor as the chain walk gives it (spec/queue.ts SpecDescriptor fits). */
export interface SpecChainDescriptor {
  readonly addr: bigint;
  readonly len: number;
  readonly flags: number;
}

export interface SpecIoVec {
  readonly segments: readonly SpecSegment[];
  readonly len: number;
}

export interface SpecIoVecMut {
  readonly capacity: number;
  /** The deque slot of the first segment, 0 <= start < capacity. */
  readonly start: number;
  readonly segments: readonly SpecSegment[];
  readonly len: number;
}

export interface ParsedDescriptorChain {
  readonly headIndex: number;
  readonly length: number;
  readonly nrIovecs: number;
}

export const emptyIoVecMut = (capacity: number = DEFAULT_DEQUE_CAPACITY): SpecIoVecMut => ({
  capacity,
  start: 0,
  segments: [],
  len: 0,
});

const isWriteOnly = (d: SpecChainDescriptor): boolean => (d.flags & VIRTQ_DESC_F_WRITE) !== 0;

const memoryError = (mem: SpecMemory, d: SpecChainDescriptor): MemoryError | null => {
  const at = locate(mem, d.addr, BigInt(d.len));
  return at.ok ? null : at.error;
};

/**
 * IOV-LOAD-CLEAR, IOV-LOAD-WRITE-ONLY, IOV-SEG-MEMORY, IOV-LEN-U32, IOV-CHECK-ORDER.
 * The result replaces whatever the buffer held; on failure the buffer is empty.
 */
export const loadReadable = (
  mem: SpecMemory,
  descriptors: readonly SpecChainDescriptor[],
): Result<SpecIoVec, IoVecError> => {
  const segments: SpecSegment[] = [];
  let len = 0;
  for (const d of descriptors) {
    if (isWriteOnly(d)) return err({ _tag: "WriteOnlyDescriptor" });
    const bad = memoryError(mem, d);
    if (bad !== null) return err({ _tag: "GuestMemory", error: bad });
    segments.push({ addr: d.addr, len: d.len });
    len += d.len;
    if (len > U32_MAX) return err({ _tag: "OverflowedDescriptor" });
  }
  return ok({ segments, len });
};

/**
 * IOV-MUT-READ-ONLY, IOV-SEG-MEMORY, IOV-DEQUE-CAPACITY, IOV-LEN-U32, IOV-CHECK-ORDER,
 * IOV-APPEND-RESULT. On failure the caller keeps `state` (IOV-APPEND-ATOMIC).
 */
export const appendChain = (
  state: SpecIoVecMut,
  mem: SpecMemory,
  headIndex: number,
  descriptors: readonly SpecChainDescriptor[],
): Result<{ readonly state: SpecIoVecMut; readonly parsed: ParsedDescriptorChain }, IoVecError> => {
  const added: SpecSegment[] = [];
  let length = 0;
  for (const d of descriptors) {
    if (!isWriteOnly(d)) return err({ _tag: "ReadOnlyDescriptor" });
    const bad = memoryError(mem, d);
    if (bad !== null) return err({ _tag: "GuestMemory", error: bad });
    if (state.segments.length + added.length >= state.capacity) return err({ _tag: "IovDequeOverflow" });
    added.push({ addr: d.addr, len: d.len });
    length += d.len;
    if (length > U32_MAX) return err({ _tag: "OverflowedDescriptor" });
  }
  if (state.len + length > U32_MAX) return err({ _tag: "OverflowedDescriptor" });
  return ok({
    state: { ...state, segments: [...state.segments, ...added], len: state.len + length },
    parsed: { headIndex, length, nrIovecs: added.length },
  });
};

/** IOV-LOAD-CLEAR for the mutable buffer: clear, then append. */
export const loadWritable = (
  state: SpecIoVecMut,
  mem: SpecMemory,
  headIndex: number,
  descriptors: readonly SpecChainDescriptor[],
): Result<SpecIoVecMut, IoVecError> => {
  const r = appendChain(clearMut(state), mem, headIndex, descriptors);
  return r.ok ? ok(r.value.state) : r;
};

/**
 * IOV-DROP-CHAIN. Dropping more segments or bytes than the buffer holds is the caller's bug;
 * it is refused (none) rather than corrupting the buffer.
 */
export const dropChainFront = (
  state: SpecIoVecMut,
  parsed: ParsedDescriptorChain,
): SpecIoVecMut | undefined => {
  if (!droppable(state, parsed)) return undefined;
  return {
    ...state,
    start: (state.start + parsed.nrIovecs) % state.capacity,
    segments: state.segments.slice(parsed.nrIovecs),
    len: state.len - parsed.length,
  };
};

export const dropChainBack = (
  state: SpecIoVecMut,
  parsed: ParsedDescriptorChain,
): SpecIoVecMut | undefined => {
  if (!droppable(state, parsed)) return undefined;
  return {
    ...state,
    segments: state.segments.slice(0, state.segments.length - parsed.nrIovecs),
    len: state.len - parsed.length,
  };
};

const droppable = (state: SpecIoVecMut, parsed: ParsedDescriptorChain): boolean =>
  Number.isInteger(parsed.nrIovecs) &&
  Number.isInteger(parsed.length) &&
  parsed.nrIovecs >= 0 &&
  parsed.length >= 0 &&
  parsed.nrIovecs <= state.segments.length &&
  parsed.length <= state.len;

/** IOV-CLEAR. */
export const clearMut = (state: SpecIoVecMut): SpecIoVecMut => emptyIoVecMut(state.capacity);

// ---------------------------------------------------------------------------------------
// Transfers

/** One sink call's behaviour: take at most `max` bytes of the chunk, or fail. */
export type TransferStep =
  { readonly _tag: "Take"; readonly max: number } | { readonly _tag: "Fail"; readonly error: IoError };

/**
 * A sink: room for `capacity` bytes in all (a `Uint8Array` of that length); each call
 * consumes the next step; after the steps run out it takes all it has room for.
 */
export interface SinkModel {
  readonly capacity: number;
  readonly steps: readonly TransferStep[];
}

/** A source: `data` given in order; each call consumes the next step (a `Take` gives at most `max`). */
export interface SourceModel {
  readonly data: Uint8Array;
  readonly steps: readonly TransferStep[];
}

export type TransferResult = Result<number, IoError>;

const validOffset = (offset: number): boolean => Number.isSafeInteger(offset) && offset >= 0;

const validLen = (len: number): number =>
  Number.isNaN(len) || len <= 0 ? 0 : Number.isFinite(len) ? Math.floor(len) : Infinity;

/** The pieces a transfer at offset of at most len bytes offers, in chain order: [segment, skip, count]. */
const pieces = (
  segments: readonly SpecSegment[],
  offset: number,
  len: number,
): readonly { readonly segment: SpecSegment; readonly skip: number; readonly count: number }[] => {
  const out: { segment: SpecSegment; skip: number; count: number }[] = [];
  if (!validOffset(offset)) return out; // IOV-OFFSET
  let left = validLen(len);
  let skip = offset;
  for (const segment of segments) {
    if (left === 0) break;
    if (skip >= segment.len) {
      skip -= segment.len;
      continue;
    }
    const count = Math.min(segment.len - skip, left);
    out.push({ segment, skip, count });
    left -= count;
    skip = 0;
  }
  return out;
};

/**
 * Drives one transfer: `call(piece, max)` is what a step lets move. The pieces are offered in
 * order; a short step stops (IOV-SHORT-TRANSFER); Interrupted is retried with the same piece;
 * any other failure ends it (IOV-IO-ERROR).
 */
const transfer = (
  offered: readonly { readonly count: number }[],
  steps: readonly TransferStep[],
  room: () => number,
  move: (piece: number, n: number) => void,
): TransferResult => {
  let total = 0;
  let step = 0;
  for (let p = 0; p < offered.length; p++) {
    const want = offered[p]!.count;
    let moved: number | IoError;
    for (;;) {
      const s = steps[step++];
      if (s !== undefined && s._tag === "Fail") {
        if (s.error._tag === "Interrupted") continue;
        moved = s.error;
      } else {
        const max = s === undefined ? Infinity : Math.max(0, Math.floor(s.max));
        moved = Math.min(want, max, room());
      }
      break;
    }
    if (typeof moved !== "number") {
      if (total > 0) break;
      return err(moved);
    }
    move(p, moved);
    total += moved;
    if (moved < want) break;
  }
  return ok(total);
};

const readSegment = (mem: SpecMemory, addr: bigint, skip: number, count: number): Uint8Array => {
  const at = locate(mem, addr + BigInt(skip), BigInt(count));
  // Segments were checked against memory when loaded (IOV-SEG-MEMORY); memory never shrinks.
  if (!at.ok) throw new Error("spec: segment outside memory");
  const r = mem.regions[at.value.region]!;
  return r.bytes.subarray(at.value.offset, at.value.offset + count);
};

/**
 * IOV-READ-LEN, IOV-SHORT-TRANSFER, IOV-IO-ERROR, IOV-OVERLAP-ORDER: reads at most `len` bytes
 * at `offset` into the sink. `taken` is what the sink received, in order.
 */
export const readAt = (
  mem: SpecMemory,
  iov: { readonly segments: readonly SpecSegment[] },
  offset: number,
  len: number,
  sink: SinkModel,
): { readonly result: TransferResult; readonly taken: Uint8Array } => {
  const offered = pieces(iov.segments, offset, len);
  const capacity = Math.max(0, Math.floor(sink.capacity));
  const taken = new Uint8Array(
    Math.min(
      capacity,
      offered.reduce((a, p) => a + p.count, 0),
    ),
  );
  let at = 0;
  const result = transfer(
    offered,
    sink.steps,
    () => capacity - at,
    (p, n) => {
      const piece = offered[p]!;
      taken.set(readSegment(mem, piece.segment.addr, piece.skip, n), at);
      at += n;
    },
  );
  return { result, taken: taken.subarray(0, at) };
};

/**
 * IOV-WRITE-LEN, IOV-SHORT-TRANSFER, IOV-IO-ERROR, IOV-OVERLAP-ORDER: writes at most `len`
 * bytes from the source at `offset`, segment after segment, so later segments win.
 */
export const writeAt = (
  mem: SpecMemory,
  iov: { readonly segments: readonly SpecSegment[] },
  offset: number,
  len: number,
  source: SourceModel,
): { readonly result: TransferResult; readonly memory: SpecMemory } => {
  const offered = pieces(iov.segments, offset, len);
  // One private copy of the regions, written in place: the input memory stays unchanged.
  const regions: SpecRegion[] = mem.regions.map((r) => ({ base: r.base, bytes: Uint8Array.from(r.bytes) }));
  const memory: SpecMemory = { regions };
  let given = 0;
  const result = transfer(
    offered,
    source.steps,
    () => source.data.length - given,
    (p, n) => {
      const piece = offered[p]!;
      const at = locate(memory, piece.segment.addr + BigInt(piece.skip), BigInt(n));
      if (!at.ok) throw new Error("spec: segment outside memory");
      regions[at.value.region]!.bytes.set(source.data.subarray(given, given + n), at.value.offset);
      given += n;
    },
  );
  return { result, memory: result.ok && result.value > 0 ? memory : mem };
};

/**
 * IOV-EXACT-PARTIAL, IOV-EXACT-OOB: fill a buffer of `size` bytes from `offset`. `bytes` is what
 * landed in it (its first `completed` bytes on PartialBuffer).
 */
export const readExactAt = (
  mem: SpecMemory,
  iov: SpecIoVec | SpecIoVecMut,
  offset: number,
  size: number,
): { readonly error: VolatileError | null; readonly bytes: Uint8Array } => {
  if (!validOffset(offset) || offset >= iov.len) {
    return { error: { _tag: "OutOfBounds", addr: offset }, bytes: new Uint8Array(0) };
  }
  const r = readAt(mem, iov, offset, size, { capacity: size, steps: [] });
  const n = r.result.ok ? r.result.value : 0;
  if (n !== size) return { error: { _tag: "PartialBuffer", expected: size, completed: n }, bytes: r.taken };
  return { error: null, bytes: r.taken };
};

/** IOV-EXACT-PARTIAL, IOV-EXACT-OOB: write all of `data` at `offset`. */
export const writeAllAt = (
  mem: SpecMemory,
  iov: SpecIoVec | SpecIoVecMut,
  offset: number,
  data: Uint8Array,
): { readonly error: VolatileError | null; readonly memory: SpecMemory } => {
  if (!validOffset(offset) || offset >= iov.len) {
    return { error: { _tag: "OutOfBounds", addr: offset }, memory: mem };
  }
  const r = writeAt(mem, iov, offset, data.length, { data, steps: [] });
  const n = r.result.ok ? r.result.value : 0;
  if (n !== data.length) {
    return { error: { _tag: "PartialBuffer", expected: data.length, completed: n }, memory: r.memory };
  }
  return { error: null, memory: r.memory };
};

/** The logical buffer: every segment's bytes in chain order (IOV-OVERLAP-ORDER for reads). */
export const contents = (mem: SpecMemory, iov: { readonly segments: readonly SpecSegment[] }): Uint8Array => {
  const out = new Uint8Array(iov.segments.reduce((a, s) => a + s.len, 0));
  let at = 0;
  for (const s of iov.segments) {
    if (s.len > 0) out.set(readSegment(mem, s.addr, 0, s.len), at);
    at += s.len;
  }
  return out;
};

/**
 * The count the Kani harnesses assert: min(room, max(0, length - offset)) (IOV-READ-LEN,
 * IOV-WRITE-LEN), for an offset that is a non-negative integer.
 */
export const expectedCount = (room: number, length: number, offset: number): number =>
  Math.min(room, Math.max(0, length - offset));
