/**
 * IoVec properties: Firecracker's two Kani harnesses (verify_read_from_iovec,
 * verify_write_to_iovec) over far larger bounds (up to 64 segments, up to 1 MiB of memory in
 * several regions, host buffers up to 64 KiB, any u32 offset, the deque starting anywhere in
 * its ring), plus what Kani could not check: the bytes moved equal spec/iovec.ts's, with
 * overlapping segments; failed appends change nothing; append then dropChainBack is the
 * identity; write then read round-trips; impl and spec agree on random operation sequences.
 */
import fc from "fast-check";
import { describe, expect } from "vitest";
import { property } from "./harness.ts";
import { buildMemories, fillBytes, layoutArb, addressArb, type MemoryLayout } from "./arbitraries/memory.ts";
import type { GuestMemory } from "../impl/memory/guest-memory.ts";
import type { SpecMemory } from "../spec/memory.ts";
import * as spec from "../spec/iovec.ts";
import {
  IoVecBuffer,
  IoVecBufferMut,
  type ByteSink,
  type ByteSource,
  type IoError,
} from "../impl/iovec/iovec.ts";
import { SegmentList, type SegmentSpec } from "../impl/iovec/segment-list.ts";
import { SliceSink, SliceSource } from "../impl/iovec/sinks.ts";
import { VIRTQ_DESC_F_WRITE } from "../wire/split.ts";

const KIB = 1024;
const MAX_SEGMENTS = 64;
const MAX_HOST_BUFFER = 64 * KIB;
const U32 = 0xffff_ffff;

// ---------------------------------------------------------------------------------------
// Arbitraries

/** Up to 1 MiB of memory in 1..4 regions of up to 256 KiB. */
const memoryLayoutArb: fc.Arbitrary<MemoryLayout> = layoutArb({
  minRegions: 1,
  maxRegions: 4,
  maxRegionSize: 256 * KIB,
  maxGap: 64 * KIB,
});

/** A segment inside one region: where it starts and how long it is (taken modulo the room left). */
interface SegmentPick {
  readonly region: number;
  readonly at: number;
  readonly size: number;
  readonly kind: "small" | "medium" | "rest";
}

const segmentPickArb: fc.Arbitrary<SegmentPick> = fc.record({
  region: fc.nat(),
  at: fc.nat(),
  size: fc.nat(),
  kind: fc.constantFrom<SegmentPick["kind"]>("small", "small", "medium", "rest"),
});

/** Segments that lie in memory (they may overlap each other: IOV-OVERLAP-ORDER). */
const placeSegments = (layout: MemoryLayout, picks: readonly SegmentPick[], write: boolean): SegmentSpec[] =>
  picks.map((p) => {
    const r = layout[p.region % layout.length]!;
    const off = p.at % r.size;
    const room = r.size - off;
    const cap =
      p.kind === "small" ? Math.min(room, 64) : p.kind === "medium" ? Math.min(room, 8 * KIB) : room;
    return { addr: r.base + off, len: p.size % (cap + 1), write };
  });

/** Disjoint segments: each pick gets its own slice of a region (for round trips). */
const placeDisjoint = (
  layout: MemoryLayout,
  picks: readonly SegmentPick[],
  write: boolean,
): SegmentSpec[] => {
  const out: SegmentSpec[] = [];
  const perRegion = new Map<number, SegmentPick[]>();
  for (const p of picks) {
    const i = p.region % layout.length;
    perRegion.set(i, [...(perRegion.get(i) ?? []), p]);
  }
  for (const [i, ps] of perRegion) {
    const r = layout[i]!;
    const slice = Math.floor(r.size / ps.length);
    ps.forEach((p, k) => {
      if (slice === 0) return;
      const off = p.at % slice;
      out.push({ addr: r.base + k * slice + off, len: p.size % (slice - off + 1), write });
    });
  }
  // Chain order need not follow address order.
  return out.sort((a, b) => ((Number(a.addr) * 7919) % 1013) - ((Number(b.addr) * 7919) % 1013));
};

/** An offset: any u32, or near the buffer's length or a segment boundary, where the bugs live. */
type OffsetPick =
  | { readonly kind: "any"; readonly value: number }
  | { readonly kind: "within"; readonly at: number }
  | { readonly kind: "boundary"; readonly seg: number; readonly delta: number }
  | { readonly kind: "end"; readonly delta: number };

const offsetPickArb: fc.Arbitrary<OffsetPick> = fc.oneof(
  fc.record({ kind: fc.constant("any" as const), value: fc.integer({ min: 0, max: U32 }) }),
  fc.record({ kind: fc.constant("within" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("boundary" as const),
    seg: fc.nat(),
    delta: fc.integer({ min: -2, max: 2 }),
  }),
  fc.record({ kind: fc.constant("end" as const), delta: fc.integer({ min: -3, max: 3 }) }),
);

const resolveOffset = (pick: OffsetPick, segs: readonly SegmentSpec[]): number => {
  const total = segs.reduce((a, s) => a + s.len, 0);
  const clampU32 = (v: number): number => Math.min(U32, Math.max(0, v));
  switch (pick.kind) {
    case "any":
      return pick.value;
    case "within":
      return pick.at % (total + 1);
    case "end":
      return clampU32(total + pick.delta);
    case "boundary": {
      if (segs.length === 0) return clampU32(pick.delta);
      let at = 0;
      const upto = pick.seg % segs.length;
      for (let i = 0; i < upto; i++) at += segs[i]!.len;
      return clampU32(at + pick.delta);
    }
  }
};

/** A host buffer length: small, around a segment, or up to 64 KiB. */
const hostLengthArb: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: 0, max: 80 }),
  fc.integer({ min: 0, max: MAX_HOST_BUFFER }),
  fc.constant(MAX_HOST_BUFFER),
);

const toSpec = (segs: readonly SegmentSpec[]): spec.SpecChainDescriptor[] =>
  segs.map((s) => ({
    addr: BigInt(s.addr),
    len: s.len,
    flags: s.write ? VIRTQ_DESC_F_WRITE : 0,
  }));

const specOk = <T>(r: { ok: true; value: T } | { ok: false; error: unknown }): T => {
  if (!r.ok) throw new Error(`spec rejected a valid chain: ${String((r.error as { _tag: string })._tag)}`);
  return r.value;
};

/** An IoVecBufferMut whose deque starts at `start` (by appending and dropping a chain first). */
const mutAt = (
  memory: GuestMemory,
  layout: MemoryLayout,
  start: number,
  capacity: number,
): { iov: IoVecBufferMut; state: spec.SpecIoVecMut } => {
  const iov = new IoVecBufferMut({ capacity });
  let state = spec.emptyIoVecMut(capacity);
  const s = start % capacity;
  if (s > 0) {
    const filler = Array.from({ length: s }, () => ({ addr: layout[0]!.base, len: 1, write: true }));
    const parsed = iov.appendChain(memory, new SegmentList(filler));
    if (!parsed.ok || !iov.dropChainFront(parsed.value)) throw new Error("could not move the deque start");
    state = { ...state, start: s };
  }
  return { iov, state };
};

const regionsEqual = (memory: GuestMemory, model: SpecMemory): boolean =>
  memory.regions.every((r, i) => {
    const m = model.regions[i]!;
    return BigInt(r.base) === m.base && Buffer.compare(r.bytes, m.bytes) === 0;
  });

/** A sink or source that follows a script (spec's TransferStep), for both sides. */
const stepArb: fc.Arbitrary<spec.TransferStep> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ _tag: fc.constant("Take" as const), max: fc.integer({ min: 0, max: 4096 }) }),
  },
  { weight: 2, arbitrary: fc.constant<spec.TransferStep>({ _tag: "Fail", error: { _tag: "Interrupted" } }) },
  {
    weight: 1,
    arbitrary: fc.constant<spec.TransferStep>({
      _tag: "Fail",
      error: { _tag: "IoError", code: "EIO", message: "injected" },
    }),
  },
);

class ScriptSink implements ByteSink {
  private step = 0;
  readonly out: Uint8Array;
  taken = 0;
  constructor(private readonly model: spec.SinkModel) {
    this.out = new Uint8Array(Math.min(model.capacity, 16 * MAX_HOST_BUFFER));
  }
  write(chunk: Uint8Array): number | IoError {
    const s = this.model.steps[this.step++];
    if (s !== undefined && s._tag === "Fail") return s.error;
    const n = Math.min(chunk.length, s === undefined ? Infinity : s.max, this.model.capacity - this.taken);
    this.out.set(chunk.subarray(0, n), this.taken);
    this.taken += n;
    return n;
  }
}

class ScriptSource implements ByteSource {
  private step = 0;
  given = 0;
  constructor(private readonly model: spec.SourceModel) {}
  read(into: Uint8Array): number | IoError {
    const s = this.model.steps[this.step++];
    if (s !== undefined && s._tag === "Fail") return s.error;
    const n = Math.min(into.length, s === undefined ? Infinity : s.max, this.model.data.length - this.given);
    into.set(this.model.data.subarray(this.given, this.given + n));
    this.given += n;
    return n;
  }
}

const asResult = (r: number | IoError): spec.TransferResult =>
  typeof r === "number" ? { ok: true, value: r } : { ok: false, error: r };

const seeded = (len: number, seed: number): Uint8Array => {
  const b = new Uint8Array(len);
  fillBytes(b, seed);
  return b;
};

const SENTINEL = 0x5a;

// ---------------------------------------------------------------------------------------
// The Kani harnesses, with contents

describe("iovec: the Kani harnesses, larger and with contents", () => {
  property(
    "verifyReadFromIovec",
    ["IOV-READ-LEN", "IOV-OVERLAP-ORDER", "IOV-ZERO-COPY"],
    fc.property(
      memoryLayoutArb,
      fc.integer(),
      fc.array(segmentPickArb, { maxLength: MAX_SEGMENTS }),
      offsetPickArb,
      hostLengthArb,
      fc.constantFrom("readInto", "readAt", "range") as fc.Arbitrary<"readInto" | "readAt" | "range">,
      fc.nat({ max: 24 }),
      fc.nat({ max: 24 }),
      (layout, seed, picks, offsetPick, bufLen, how, padL, padR) => {
        const { impl, spec: model } = buildMemories(layout, seed);
        const segs = placeSegments(layout, picks, false);
        const loaded = IoVecBuffer.fromChain(impl, new SegmentList(segs));
        if (!loaded.ok) return false;
        const iov = loaded.value;
        const specIov = specOk(spec.loadReadable(model, toSpec(segs)));
        expect(iov.len).toBe(specIov.len);
        const offset = resolveOffset(offsetPick, segs);
        // "range" reads into [padL, padL + bufLen) of a larger array, whose pads must stay untouched.
        const host = new Uint8Array(how === "range" ? padL + bufLen + padR : bufLen).fill(SENTINEL);
        const at = how === "range" ? padL : 0;
        const buf = host.subarray(at, at + bufLen);
        // Kani's call: read_volatile_at(KaniBuffer(buf), offset, GUEST_MEMORY_SIZE) with a
        // len at least buf.len.
        const n =
          how === "readInto"
            ? iov.readInto(buf, offset)
            : how === "range"
              ? iov.readInto(host, offset, padL, padL + bufLen)
              : iov.readAt(new SliceSink(buf), offset, 1 << 20);
        expect(n).toBe(spec.expectedCount(bufLen, iov.len, offset));
        const want = spec.readAt(model, specIov, offset, bufLen, { capacity: bufLen, steps: [] });
        expect(want.result).toEqual({ ok: true, value: n });
        expect(Buffer.compare(buf.subarray(0, n as number), want.taken)).toBe(0);
        // The spec's read is the plain definition: the concatenated segments, from offset.
        if (specIov.len <= 1 << 20) {
          const whole = spec.contents(model, specIov);
          expect(Buffer.compare(want.taken, whole.subarray(offset, offset + (n as number)))).toBe(0);
        }
        // Nothing past the bytes read is touched.
        expect(host.subarray(0, at).every((b) => b === SENTINEL)).toBe(true);
        expect(host.subarray(at + (n as number)).every((b) => b === SENTINEL)).toBe(true);
        return true;
      },
    ),
    { numRuns: 400 },
  );

  property(
    "verifyWriteToIovec",
    ["IOV-WRITE-LEN", "IOV-OVERLAP-ORDER", "IOV-DEQUE-CAPACITY"],
    fc.property(
      memoryLayoutArb,
      fc.integer(),
      fc.array(segmentPickArb, { maxLength: MAX_SEGMENTS }),
      offsetPickArb,
      hostLengthArb,
      fc.nat({ max: 255 }),
      fc.oneof(fc.constant(256), fc.integer({ min: MAX_SEGMENTS, max: 512 })),
      fc.constantFrom("writeFrom", "writeAt", "range") as fc.Arbitrary<"writeFrom" | "writeAt" | "range">,
      fc.nat({ max: 24 }),
      fc.nat({ max: 24 }),
      (layout, seed, picks, offsetPick, srcLen, start, capacity, how, padL, padR) => {
        const { impl, spec: model } = buildMemories(layout, seed);
        const segs = placeSegments(layout, picks, true);
        const { iov, state } = mutAt(impl, layout, start, capacity);
        const appended = iov.appendChain(impl, new SegmentList(segs));
        if (!appended.ok) return false;
        const specState = specOk(spec.appendChain(state, model, 0, toSpec(segs))).state;
        expect([iov.start, iov.len, iov.segmentCount]).toEqual([
          specState.start,
          specState.len,
          specState.segments.length,
        ]);
        const offset = resolveOffset(offsetPick, segs);
        // "range" writes [padL, padL + srcLen) of a larger array.
        const host = seeded(how === "range" ? padL + srcLen + padR : srcLen, seed ^ 0x1234567);
        const src = how === "range" ? host.subarray(padL, padL + srcLen) : host;
        const n =
          how === "writeFrom"
            ? iov.writeFrom(src, offset)
            : how === "range"
              ? iov.writeFrom(host, offset, padL, padL + srcLen)
              : iov.writeAt(new SliceSource(src), offset, 1 << 20);
        expect(n).toBe(spec.expectedCount(srcLen, iov.len, offset));
        const want = spec.writeAt(model, specState, offset, srcLen, { data: src, steps: [] });
        expect(want.result).toEqual({ ok: true, value: n });
        expect(regionsEqual(impl, want.memory)).toBe(true);
        return true;
      },
    ),
    { numRuns: 400 },
  );
});

// ---------------------------------------------------------------------------------------
// Short sinks and sources, exact forms

describe("iovec: transfers agree with the spec", () => {
  property(
    "short and failing sinks move what the spec says",
    ["IOV-SHORT-TRANSFER", "IOV-IO-ERROR", "IOV-READ-LEN"],
    fc.property(
      memoryLayoutArb,
      fc.integer(),
      fc.array(segmentPickArb, { maxLength: 16 }),
      offsetPickArb,
      fc.integer({ min: 0, max: 3 * MAX_HOST_BUFFER }),
      fc.oneof(fc.constant(Infinity), hostLengthArb),
      fc.array(stepArb, { maxLength: 12 }),
      (layout, seed, picks, offsetPick, len, capacity, steps) => {
        const { impl, spec: model } = buildMemories(layout, seed);
        const segs = placeSegments(layout, picks, false);
        const loaded = IoVecBuffer.fromChain(impl, new SegmentList(segs));
        if (!loaded.ok) return false;
        const offset = resolveOffset(offsetPick, segs);
        const sinkModel = { capacity, steps };
        const sink = new ScriptSink(sinkModel);
        const got = asResult(loaded.value.readAt(sink, offset, len));
        const want = spec.readAt(
          model,
          specOk(spec.loadReadable(model, toSpec(segs))),
          offset,
          len,
          sinkModel,
        );
        expect(got).toEqual(want.result);
        expect(Buffer.compare(sink.out.subarray(0, sink.taken), want.taken)).toBe(0);
        return true;
      },
    ),
    { numRuns: 300 },
  );

  property(
    "short and failing sources write what the spec says",
    ["IOV-SHORT-TRANSFER", "IOV-IO-ERROR", "IOV-WRITE-LEN", "IOV-OVERLAP-ORDER"],
    fc.property(
      memoryLayoutArb,
      fc.integer(),
      fc.array(segmentPickArb, { maxLength: 16 }),
      offsetPickArb,
      fc.integer({ min: 0, max: 3 * MAX_HOST_BUFFER }),
      hostLengthArb,
      fc.array(stepArb, { maxLength: 12 }),
      fc.nat({ max: 255 }),
      (layout, seed, picks, offsetPick, len, srcLen, steps, start) => {
        const { impl, spec: model } = buildMemories(layout, seed);
        const segs = placeSegments(layout, picks, true);
        const { iov, state } = mutAt(impl, layout, start, 256);
        if (!iov.appendChain(impl, new SegmentList(segs)).ok) return false;
        const specState = specOk(spec.appendChain(state, model, 0, toSpec(segs))).state;
        const offset = resolveOffset(offsetPick, segs);
        const sourceModel = { data: seeded(srcLen, ~seed), steps };
        const got = asResult(iov.writeAt(new ScriptSource(sourceModel), offset, len));
        const want = spec.writeAt(model, specState, offset, len, sourceModel);
        expect(got).toEqual(want.result);
        expect(regionsEqual(impl, want.memory)).toBe(true);
        return true;
      },
    ),
    { numRuns: 300 },
  );

  property(
    "readExactAt and writeAllAt: PartialBuffer and OutOfBounds as the spec says",
    ["IOV-EXACT-PARTIAL", "IOV-EXACT-OOB", "IOV-OFFSET"],
    fc.property(
      memoryLayoutArb,
      fc.integer(),
      fc.array(segmentPickArb, { maxLength: 16 }),
      fc.oneof(
        offsetPickArb.map((p) => ({ p, bad: undefined as number | undefined })),
        fc.constantFrom(-1, 0.5, -0, Number.NaN, 2 ** 53).map((bad) => ({ p: undefined, bad })),
      ),
      hostLengthArb,
      (layout, seed, picks, offsetChoice, size) => {
        const { impl, spec: model } = buildMemories(layout, seed);
        const segs = placeSegments(layout, picks, true);
        const iov = new IoVecBufferMut();
        if (!iov.appendChain(impl, new SegmentList(segs)).ok) return false;
        const specState = specOk(spec.appendChain(spec.emptyIoVecMut(), model, 0, toSpec(segs))).state;
        const offset = offsetChoice.p !== undefined ? resolveOffset(offsetChoice.p, segs) : offsetChoice.bad!;

        const dst = new Uint8Array(size).fill(SENTINEL);
        const readErr = iov.readExactAt(dst, offset);
        const wantRead = spec.readExactAt(model, specState, offset, size);
        expect(readErr).toEqual(wantRead.error);
        expect(Buffer.compare(dst.subarray(0, wantRead.bytes.length), wantRead.bytes)).toBe(0);
        expect(dst.subarray(wantRead.bytes.length).every((b) => b === SENTINEL)).toBe(true);

        const src = seeded(size, seed + 1);
        const writeErr = iov.writeAllAt(src, offset);
        const wantWrite = spec.writeAllAt(model, specState, offset, src);
        expect(writeErr).toEqual(wantWrite.error);
        expect(regionsEqual(impl, wantWrite.memory)).toBe(true);
        return true;
      },
    ),
    { numRuns: 300 },
  );

  property(
    "repeated reads and writes with the same host arrays agree with the spec (cached views)",
    ["IOV-READ-LEN", "IOV-WRITE-LEN", "IOV-OVERLAP-ORDER"],
    fc.property(
      memoryLayoutArb,
      fc.integer(),
      fc.array(segmentPickArb, { maxLength: 24 }),
      hostLengthArb,
      fc.array(fc.record({ write: fc.boolean(), offset: offsetPickArb, fill: fc.nat({ max: 255 }) }), {
        minLength: 1,
        maxLength: 12,
      }),
      (layout, seed, picks, hostLen, ops) => {
        const { impl, spec: model } = buildMemories(layout, seed);
        const segs = placeSegments(layout, picks, true);
        const iov = new IoVecBufferMut();
        if (!iov.appendChain(impl, new SegmentList(segs)).ok) return false;
        const state = specOk(spec.appendChain(spec.emptyIoVecMut(), model, 0, toSpec(segs))).state;
        let specMem = model;
        // One host array for every call, as a device reuses its staging buffer.
        const host = new Uint8Array(hostLen);
        for (const op of ops) {
          const offset = resolveOffset(op.offset, segs);
          if (op.write) {
            fillBytes(host, seed ^ (op.fill + 1));
            const n = iov.writeFrom(host, offset);
            const want = spec.writeAt(specMem, state, offset, hostLen, { data: host, steps: [] });
            expect({ ok: true, value: n }).toEqual(want.result);
            specMem = want.memory;
            expect(regionsEqual(impl, specMem)).toBe(true);
          } else {
            host.fill(op.fill);
            const n = iov.readInto(host, offset);
            const want = spec.readAt(specMem, state, offset, hostLen, { capacity: hostLen, steps: [] });
            expect({ ok: true, value: n }).toEqual(want.result);
            expect(Buffer.compare(host.subarray(0, n), want.taken)).toBe(0);
          }
        }
        return true;
      },
    ),
    { numRuns: 250 },
  );

  property(
    "write then read round-trips over disjoint segments",
    ["IOV-WRITE-LEN", "IOV-READ-LEN"],
    fc.property(
      memoryLayoutArb,
      fc.integer(),
      fc.array(segmentPickArb, { maxLength: MAX_SEGMENTS }),
      offsetPickArb,
      hostLengthArb,
      fc.nat({ max: 255 }),
      (layout, seed, picks, offsetPick, srcLen, start) => {
        const { impl } = buildMemories(layout, seed);
        const segs = placeDisjoint(layout, picks, true);
        const { iov } = mutAt(impl, layout, start, 256);
        if (!iov.appendChain(impl, new SegmentList(segs)).ok) return false;
        const offset = resolveOffset(offsetPick, segs);
        const src = seeded(srcLen, seed * 3);
        const n = iov.writeFrom(src, offset);
        const back = new Uint8Array(srcLen);
        expect(iov.readInto(back, offset)).toBe(n);
        expect(Buffer.compare(back.subarray(0, n), src.subarray(0, n))).toBe(0);
        // And through a readable buffer over the same guest bytes.
        const ro = IoVecBuffer.fromChain(impl, new SegmentList(segs.map((s) => ({ ...s, write: false }))));
        if (!ro.ok) return false;
        const again = new Uint8Array(srcLen);
        expect(ro.value.readInto(again, offset)).toBe(n);
        expect(Buffer.compare(again.subarray(0, n), src.subarray(0, n))).toBe(0);
        return true;
      },
    ),
    { numRuns: 250 },
  );
});

// ---------------------------------------------------------------------------------------
// Loading and appending hostile chains

/** A descriptor that may be anything: in memory or not, any length, readable or writable. */
const anyDescriptorArb = (layout: MemoryLayout): fc.Arbitrary<SegmentSpec> =>
  fc.record({
    addr: addressArb(layout),
    len: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: U32 })),
    write: fc.boolean(),
  });

/**
 * A writable chain: usually valid (in memory, writable), sometimes with hostile descriptors
 * mixed in, so that appends both succeed and fail at any position.
 */
const hostileChainArb = (layout: MemoryLayout): fc.Arbitrary<SegmentSpec[]> => {
  const valid = fc.array(
    segmentPickArb.map((p) => placeSegments(layout, [p], true)[0]!),
    { maxLength: 12 },
  );
  return fc.oneof(
    { weight: 3, arbitrary: valid },
    {
      weight: 2,
      arbitrary: fc
        .tuple(valid, fc.array(fc.tuple(fc.nat(), anyDescriptorArb(layout)), { minLength: 1, maxLength: 3 }))
        .map(([chain, bad]) => {
          const out = [...chain];
          for (const [at, d] of bad) out.splice(at % (out.length + 1), 0, d);
          return out;
        }),
    },
  );
};

const snapshotMut = (iov: IoVecBufferMut): unknown => ({
  start: iov.start,
  len: iov.len,
  count: iov.segmentCount,
  segments: Array.from({ length: iov.segmentCount }, (_, i) => [iov.segmentAddr(i), iov.segment(i)!.length]),
  // The readv/writev list must follow every change (IOV-ZERO-COPY).
  iovecs: iov.iovecs().map((v) => v.length),
});

const specSegments = (state: spec.SpecIoVecMut): unknown => ({
  start: state.start,
  len: state.len,
  count: state.segments.length,
  segments: state.segments.map((s) => [Number(s.addr), s.len]),
  iovecs: state.segments.map((s) => s.len),
});

type Op =
  | { readonly op: "append"; readonly head: number; readonly chainIndex: number }
  | { readonly op: "dropFront" | "dropBack" }
  | { readonly op: "clear" }
  | { readonly op: "write"; readonly offset: OffsetPick; readonly len: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("append" as const),
      head: fc.nat({ max: 0xffff }),
      chainIndex: fc.nat(),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("dropFront" as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("dropBack" as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("clear" as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("write" as const),
      offset: offsetPickArb,
      len: fc.integer({ min: 0, max: 4 * KIB }),
    }),
  },
);

describe("iovec: loading and appending chains", () => {
  property(
    "loading a hostile readable chain gives the spec's buffer or error, and a failed load leaves it empty",
    ["IOV-LOAD-CLEAR", "IOV-LOAD-WRITE-ONLY", "IOV-SEG-MEMORY", "IOV-CHECK-ORDER", "IOV-CHAIN-END"],
    fc.property(
      memoryLayoutArb.chain((layout) =>
        fc.tuple(
          fc.constant(layout),
          fc.integer(),
          hostileChainArb(layout),
          hostileChainArb(layout).map((c) => c.map((s) => ({ ...s, write: !s.write }))),
        ),
      ),
      ([layout, seed, first, second]) => {
        const { impl, spec: model } = buildMemories(layout, seed);
        const iov = new IoVecBuffer(1);
        for (const chain of [second, first]) {
          const got = iov.load(impl, new SegmentList(chain));
          const want = spec.loadReadable(model, toSpec(chain));
          if (want.ok) {
            expect(got.ok).toBe(true);
            expect([iov.len, iov.segmentCount]).toEqual([want.value.len, want.value.segments.length]);
            const addrs = Array.from({ length: iov.segmentCount }, (_, i) => [
              iov.segmentAddr(i),
              iov.segment(i)!.length,
            ]);
            expect(addrs).toEqual(want.value.segments.map((s) => [Number(s.addr), s.len]));
            const all = new Uint8Array(Math.min(iov.len, 1 << 22));
            iov.readInto(all, 0);
            expect(Buffer.compare(all, spec.contents(model, want.value).subarray(0, all.length))).toBe(0);
          } else {
            expect(got).toEqual(want);
            expect([iov.len, iov.segmentCount]).toEqual([0, 0]);
          }
        }
        return true;
      },
    ),
    { numRuns: 300 },
  );

  property(
    "appends, drops, clears and writes on the ring deque agree with the spec; a failed append changes nothing",
    [
      "IOV-APPEND-ATOMIC",
      "IOV-APPEND-RESULT",
      "IOV-MUT-READ-ONLY",
      "IOV-DEQUE-CAPACITY",
      "IOV-DROP-CHAIN",
      "IOV-CLEAR",
    ],
    fc.property(
      memoryLayoutArb.chain((layout) =>
        fc.tuple(
          fc.constant(layout),
          fc.integer(),
          fc.array(hostileChainArb(layout), { minLength: 1, maxLength: 8 }),
          fc.array(opArb, { maxLength: 40 }),
          fc.oneof(
            { weight: 1, arbitrary: fc.constant(256) },
            { weight: 3, arbitrary: fc.integer({ min: 1, max: 8 }) },
            { weight: 1, arbitrary: fc.integer({ min: 1, max: 80 }) },
          ),
        ),
      ),
      ([layout, seed, chains, ops, capacity]) => {
        const { impl, spec: model } = buildMemories(layout, seed);
        const iov = new IoVecBufferMut({ capacity });
        let state = spec.emptyIoVecMut(capacity);
        let specMem = model;
        // Chains held, oldest first, as both sides parsed them.
        const held: spec.ParsedDescriptorChain[] = [];
        for (const op of ops) {
          switch (op.op) {
            case "append": {
              const chain = chains[op.chainIndex % chains.length]!;
              const before = snapshotMut(iov);
              const got = iov.appendChain(impl, new SegmentList(chain, op.head));
              const want = spec.appendChain(state, specMem, op.head, toSpec(chain));
              if (want.ok) {
                expect(got).toEqual({ ok: true, value: want.value.parsed });
                state = want.value.state;
                held.push(want.value.parsed);
              } else {
                expect(got).toEqual(want);
                expect(snapshotMut(iov)).toEqual(before);
              }
              break;
            }
            case "dropFront":
            case "dropBack": {
              const parsed = op.op === "dropFront" ? held.shift() : held.pop();
              if (parsed === undefined) break;
              const next =
                op.op === "dropFront"
                  ? spec.dropChainFront(state, parsed)
                  : spec.dropChainBack(state, parsed);
              expect(next).toBeDefined();
              const done = op.op === "dropFront" ? iov.dropChainFront(parsed) : iov.dropChainBack(parsed);
              expect(done).toBe(true);
              state = next!;
              break;
            }
            case "clear":
              iov.clear();
              state = spec.clearMut(state);
              held.length = 0;
              break;
            case "write": {
              const offset = resolveOffset(
                op.offset,
                state.segments.map((s) => ({ addr: s.addr, len: s.len, write: true })),
              );
              const src = seeded(op.len, seed ^ op.len);
              const n = iov.writeFrom(src, offset);
              const want = spec.writeAt(specMem, state, offset, op.len, { data: src, steps: [] });
              expect({ ok: true, value: n }).toEqual(want.result);
              specMem = want.memory;
              break;
            }
          }
          expect(snapshotMut(iov)).toEqual(specSegments(state));
        }
        expect(regionsEqual(impl, specMem)).toBe(true);
        return true;
      },
    ),
    { numRuns: 250 },
  );

  property(
    "the ring deque wraps: segments appended and dropped at any start stay in chain order",
    ["IOV-DEQUE-CAPACITY", "IOV-DROP-CHAIN"],
    fc.property(
      fc
        .integer({ min: 1, max: 16 })
        .chain((capacity) =>
          fc.tuple(
            fc.constant(capacity),
            fc.array(fc.oneof(fc.integer({ min: 0, max: capacity }), fc.constant(-1)), { maxLength: 60 }),
          ),
        ),
      ([capacity, ops]) => {
        const { impl, spec: model } = buildMemories([{ base: 0x1000, size: 4096 }]);
        const iov = new IoVecBufferMut({ capacity });
        let state = spec.emptyIoVecMut(capacity);
        const held: spec.ParsedDescriptorChain[] = [];
        let next = 0;
        for (const k of ops) {
          if (k < 0) {
            const parsed = held.shift();
            if (parsed === undefined) continue;
            expect(iov.dropChainFront(parsed)).toBe(true);
            state = spec.dropChainFront(state, parsed)!;
          } else {
            // Fresh, distinct segments, so a stale slot cannot pass for the right one.
            const chain = Array.from({ length: k }, () => ({
              addr: 0x1000 + (next++ % 4000),
              len: 1,
              write: true,
            }));
            const got = iov.appendChain(impl, new SegmentList(chain));
            const want = spec.appendChain(state, model, 0, toSpec(chain));
            expect(got.ok).toBe(want.ok);
            if (want.ok && got.ok) {
              state = want.value.state;
              held.push(got.value);
            }
          }
          expect(snapshotMut(iov)).toEqual(specSegments(state));
        }
        return true;
      },
    ),
    { numRuns: 500 },
  );

  property(
    "append then dropChainBack is the identity",
    ["IOV-DROP-CHAIN", "IOV-APPEND-RESULT"],
    fc.property(
      memoryLayoutArb.chain((layout) =>
        fc.tuple(
          fc.constant(layout),
          fc.array(segmentPickArb, { maxLength: MAX_SEGMENTS }),
          fc.array(segmentPickArb, { maxLength: MAX_SEGMENTS }),
          fc.nat({ max: 255 }),
        ),
      ),
      ([layout, firstPicks, secondPicks, start]) => {
        const { impl } = buildMemories(layout);
        const { iov } = mutAt(impl, layout, start, 256);
        if (!iov.appendChain(impl, new SegmentList(placeSegments(layout, firstPicks, true))).ok) return false;
        const before = snapshotMut(iov);
        const views = [...iov.iovecs()];
        const parsed = iov.appendChain(impl, new SegmentList(placeSegments(layout, secondPicks, true), 5));
        if (!parsed.ok) return false;
        expect(iov.iovecs().length).toBe(views.length + parsed.value.nrIovecs);
        expect(iov.dropChainBack(parsed.value)).toBe(true);
        expect(snapshotMut(iov)).toEqual(before);
        const after = iov.iovecs();
        expect(after.length).toBe(views.length);
        after.forEach((v, i) => expect(v).toBe(views[i]));
        return true;
      },
    ),
    { numRuns: 250 },
  );
});
