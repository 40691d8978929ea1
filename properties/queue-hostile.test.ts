/**
 * The split queue under a hostile guest.
 *
 * - Bounds: with a recording GuestMemory, every read the device makes lies in the avail or
 *   used ring, or in a descriptor entry of the chain it is popping (the queue's table along
 *   the chain's NEXT path, and the entries of the indirect table that path reaches); every
 *   write lies in the used ring; nothing lies outside a memory region (an attempt outside
 *   every region is only ever a descriptor read, which `locate` refuses).
 * - Hostile guest: over arbitrary memory contents, ring placements and queue states and any
 *   sequence of device operations interleaved with a guest scribbling over the rings, no
 *   operation throws, every failure is a typed error, and afterwards the queue serves a
 *   well-formed chain again.
 */
import fc from "fast-check";
import { describe } from "vitest";
import type { GuestMemory } from "../impl/memory/guest-memory.ts";
import { DescriptorChain } from "../impl/queue/descriptor-chain.ts";
import { PopStatus, type SplitQueue } from "../impl/queue/split-queue.ts";
import type { ChainError, QueueError } from "../spec/queue.ts";
import {
  AVAIL_IDX,
  DESC_FLAGS,
  DESC_LEN,
  DESC_NEXT,
  DESC_SIZE,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  availSlotOffset,
  descOffset,
  encodeDescriptor,
} from "../wire/split.ts";
import { property } from "./harness.ts";
import { addressArb } from "./arbitraries/memory.ts";
import {
  anyQueueSizeArb,
  anyRingsArb,
  chainBuffersArb,
  rawDescriptorArb,
  type BufferSpec,
  type QueuePlacement,
  type RawDescriptor,
} from "./arbitraries/queue.ts";
import {
  buildQueueState,
  changedBytes,
  inMemory,
  inRange,
  queueStateArb,
  recording,
  ringRanges,
  snapshotOf,
  type Access,
  type BuiltQueue,
} from "./arbitraries/queue-state.ts";
import { show, walkImpl } from "./arbitraries/chain.ts";

const QUEUE_ERRORS: ReadonlySet<string> = new Set<QueueError["_tag"]>([
  "NotReady",
  "InvalidSize",
  "InvalidDescTableAlign",
  "InvalidAvailRingAlign",
  "InvalidUsedRingAlign",
  "RingOutOfMemory",
  "InvalidAvailIdx",
  "DescIndexOutOfBounds",
]);
const CHAIN_ERRORS: ReadonlySet<string> = new Set<ChainError["_tag"]>([
  "InvalidDescriptorIndex",
  "ChainTtlExpired",
  "InvalidIndirectDescriptor",
  "InvalidIndirectDescriptorTable",
  "DescriptorChainOverflow",
  "InvalidGuestAddress",
  "GuestAddressOverflow",
]);

const fail = (what: string): never => {
  throw new Error(what);
};

/** A device operation; `reconfigure` programs rings (anywhere) and re-initializes. */
type DeviceOp =
  | {
      readonly t:
        "pop" | "popInto" | "popOrEnable" | "undoPop" | "publishUsed" | "tryEnable" | "enable" | "disable";
    }
  | { readonly t: "addUsed"; readonly index: number; readonly len: number }
  | { readonly t: "prepareKick"; readonly honour: boolean }
  | { readonly t: "setAvailEvent"; readonly v: number }
  | { readonly t: "events" | "len" | "eventIdx" | "reset" }
  | {
      readonly t: "positions";
      readonly nextAvail: number;
      readonly nextUsed: number;
      readonly numAdded: number;
    }
  | {
      readonly t: "reconfigure";
      readonly size: number;
      readonly ready: boolean;
      readonly rings: {
        readonly descTable: bigint;
        readonly availRing: bigint;
        readonly usedRing: bigint;
      } | null;
    };

/** The guest scribbling over its rings (and the tables they point to). */
type GuestOp =
  | { readonly t: "byte"; readonly ring: 0 | 1 | 2; readonly offset: number; readonly byte: number }
  | { readonly t: "u16"; readonly ring: 0 | 1 | 2; readonly offset: number; readonly v: number }
  | { readonly t: "desc"; readonly index: number; readonly raw: RawDescriptor }
  | { readonly t: "anywhere"; readonly addr: bigint; readonly bytes: Uint8Array }
  | {
      readonly t: "chain";
      readonly buffers: readonly BufferSpec[];
      readonly start: number;
      readonly indirect: { readonly region: number; readonly at: number } | null;
      /** The last descriptor keeps NEXT, pointing one past the table's end. */
      readonly badLast: boolean;
    };

type Op = { readonly by: "device"; readonly op: DeviceOp } | { readonly by: "guest"; readonly op: GuestOp };

const u16Arb = fc.oneof(fc.nat(0xffff), fc.constantFrom(0, 1, 0xffff, 0x8000));

const deviceOpArb = (p: QueuePlacement): fc.Arbitrary<DeviceOp> =>
  fc.oneof(
    {
      weight: 12,
      arbitrary: fc.constantFrom<DeviceOp>(
        { t: "pop" },
        { t: "popInto" },
        { t: "popOrEnable" },
        { t: "undoPop" },
        { t: "publishUsed" },
        { t: "tryEnable" },
        { t: "enable" },
        { t: "disable" },
        { t: "events" },
        { t: "len" },
      ),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        t: fc.constant("addUsed" as const),
        index: fc.oneof(fc.nat(p.size - 1), u16Arb, fc.constant(0xffff_ffff)),
        len: fc.nat(0xffff_ffff),
      }),
    },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("prepareKick" as const), honour: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant("setAvailEvent" as const), v: u16Arb }) },
    { weight: 1, arbitrary: fc.constantFrom<DeviceOp>({ t: "eventIdx" }, { t: "reset" }) },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant("positions" as const),
        nextAvail: u16Arb,
        nextUsed: u16Arb,
        numAdded: u16Arb,
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant("reconfigure" as const),
        size: fc.oneof(fc.constant(p.size), anyQueueSizeArb),
        ready: fc.boolean(),
        rings: fc.option(anyRingsArb(p.layout, p.size), { nil: null }),
      }),
    },
  );

const guestOpArb = (p: QueuePlacement): fc.Arbitrary<GuestOp> =>
  fc.oneof(
    {
      weight: 2,
      arbitrary: fc.record({
        t: fc.constant("byte" as const),
        ring: fc.constantFrom<0 | 1 | 2>(0, 1, 2),
        offset: fc.nat(),
        byte: fc.nat(255),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant("u16" as const),
        ring: fc.constantFrom<0 | 1 | 2>(1, 2),
        offset: fc.oneof(fc.constantFrom(0, 2), fc.nat()),
        v: u16Arb,
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant("desc" as const),
        index: fc.nat(p.size - 1),
        raw: rawDescriptorArb(p.size, p.data),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        t: fc.constant("chain" as const),
        buffers: chainBuffersArb(p.data, 6),
        start: fc.nat(0xffff),
        indirect: fc.option(fc.record({ region: fc.nat(p.data.length - 1), at: fc.nat() }), { nil: null }),
        badLast: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant("anywhere" as const),
        addr: addressArb(p.layout),
        bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }),
      }),
    },
  );

const scenarioArb = (maxSize: number) =>
  queueStateArb({ maxSize }).chain((s) =>
    fc.record({
      s: fc.constant(s),
      ops: fc.array(
        fc.oneof(
          { weight: 3, arbitrary: deviceOpArb(s.placement).map((op): Op => ({ by: "device", op })) },
          { weight: 1, arbitrary: guestOpArb(s.placement).map((op): Op => ({ by: "guest", op })) },
        ),
        { minLength: 1, maxLength: 40, size: "max" },
      ),
      recovery: chainBuffersArb(s.placement.data, Math.min(4, s.placement.size)),
    }),
  );

const ringStart = (p: QueuePlacement, ring: 0 | 1 | 2): [number, number] => {
  const [start, end] = ringRanges(p)[(["desc", "avail", "used"] as const)[ring]];
  return [start, end - start];
};

const scribble = (mem: GuestMemory, p: QueuePlacement, op: GuestOp, q: SplitQueue): void => {
  switch (op.t) {
    case "byte": {
      const [at, len] = ringStart(p, op.ring);
      mem.writeU8(at + (op.offset % len), op.byte);
      return;
    }
    case "u16": {
      const [at, len] = ringStart(p, op.ring);
      mem.writeU16(at + 2 * ((op.offset % len) >> 1), op.v);
      return;
    }
    case "desc":
      mem.writeFrom(p.descTable + descOffset(op.index), encodeDescriptor(op.raw));
      return;
    case "anywhere":
      // Guest memory only: a write the memory refuses is simply not made.
      mem.tryWrite(op.addr, op.bytes);
      return;
    case "chain":
      addChain(mem, p, op, q.nextAvail);
      return;
  }
};

/**
 * A well-formed chain (or one whose last NEXT points one past its table), written the way a
 * driver does: descriptors linked from `start`, or an indirect table at any alignment in a
 * data region; its head put in the next avail slot and avail.idx published.
 */
const addChain = (
  mem: GuestMemory,
  p: QueuePlacement,
  op: Extract<GuestOp, { t: "chain" }>,
  nextAvail: number,
): void => {
  const size = p.size;
  const link = (k: number, n: number, index: (k: number) => number, tableSize: number) => {
    const last = k + 1 === n;
    const b = op.buffers[k]!;
    return encodeDescriptor({
      addr: BigInt(b.addr),
      len: b.len,
      flags: (b.write ? VIRTQ_DESC_F_WRITE : 0) | (!last || op.badLast ? VIRTQ_DESC_F_NEXT : 0),
      next: last ? tableSize : index(k + 1),
    });
  };
  const head = op.start % size;
  if (op.indirect !== null) {
    const n = op.buffers.length;
    const r = p.data[op.indirect.region]!;
    if (r.size < DESC_SIZE * n) return;
    const table = r.base + (op.indirect.at % (r.size - DESC_SIZE * n + 1));
    for (let k = 0; k < n; k++)
      mem.writeFrom(
        table + descOffset(k),
        link(k, n, (i) => i, n),
      );
    mem.writeFrom(
      p.descTable + descOffset(head),
      encodeDescriptor({ addr: BigInt(table), len: DESC_SIZE * n, flags: VIRTQ_DESC_F_INDIRECT, next: 0 }),
    );
  } else {
    const n = Math.min(op.buffers.length, size);
    const index = (k: number) => (op.start + k) % size;
    for (let k = 0; k < n; k++) mem.writeFrom(p.descTable + descOffset(index(k)), link(k, n, index, size));
  }
  // A driver that finds avail.idx more than a ring ahead of the device starts again from where the device is.
  let idx = mem.readU16(p.availRing + AVAIL_IDX);
  if (((idx - nextAvail) & 0xffff) >= size) idx = nextAvail;
  mem.writeU16(p.availRing + availSlotOffset(idx % size), head);
  mem.writeU16(p.availRing + AVAIL_IDX, (idx + 1) & 0xffff);
};

/** Checks a value an operation returned is a value or a typed error. */
const typed = (what: string, r: unknown): void => {
  if (typeof r !== "object" || r === null || !("ok" in r)) return;
  const res = r as { ok: boolean; error?: { _tag?: unknown }; value?: unknown };
  if (!res.ok && !QUEUE_ERRORS.has(String(res.error?._tag)))
    fail(`${what}: untyped error ${show(res.error)}`);
  if (res.ok && res.value instanceof DescriptorChain) checkChain(what, res.value);
};

const checkChain = (what: string, c: DescriptorChain): void => {
  const w = walkImpl(c);
  if (w.end !== null && !CHAIN_ERRORS.has(w.end._tag)) fail(`${what}: chain ended with ${show(w.end)}`);
};

/** Runs one device operation; returns the chain head it popped, if any. */
const runDevice = (
  q: SplitQueue,
  mem: GuestMemory,
  p: QueuePlacement,
  chain: DescriptorChain,
  op: DeviceOp,
): number | null => {
  switch (op.t) {
    case "pop":
    case "popOrEnable": {
      const r = op.t === "pop" ? q.pop() : q.popOrEnableNotification();
      typed(op.t, r);
      return r.ok && r.value !== null ? r.value.headIndex : null;
    }
    case "popInto": {
      if (q.popInto(chain)) {
        checkChain("popInto", chain);
        return chain.headIndex;
      }
      if (q.lastPop === PopStatus.Error && !QUEUE_ERRORS.has(String(q.lastError?._tag)))
        fail(`popInto: ${show(q.lastError)}`);
      return null;
    }
    case "undoPop":
      q.undoPop();
      return null;
    case "publishUsed":
      typed(op.t, q.publishUsed());
      return null;
    case "tryEnable":
      typed(op.t, q.tryEnableNotification());
      return null;
    case "enable":
      typed(op.t, q.enableNotification());
      return null;
    case "disable":
      typed(op.t, q.disableNotification());
      return null;
    case "events":
      typed(op.t, q.usedEvent());
      typed(op.t, q.availEvent());
      return null;
    case "len":
      if (!(q.len() >= 0 && q.len() <= 0xffff) || q.isEmpty() !== (q.len() === 0)) fail("len out of range");
      return null;
    case "addUsed":
      typed(op.t, q.addUsed(op.index, op.len));
      return null;
    case "prepareKick":
      if (typeof q.prepareKick(op.honour) !== "boolean") fail("prepareKick not a boolean");
      return null;
    case "setAvailEvent":
      typed(op.t, q.setAvailEvent(op.v));
      return null;
    case "eventIdx":
      q.enableNotifSuppression();
      return null;
    case "reset":
      q.reset();
      return null;
    case "positions":
      q.setPositions(op);
      return null;
    case "reconfigure":
      q.configure({ size: op.size, ready: op.ready, ...(op.rings ?? {}) });
      typed(op.t, q.initialize(mem));
      if (q.isActive) {
        // Keep the bounds checks about the rings the queue really uses.
        const st = q.state();
        (p as { descTable: number }).descTable = Number(st.descTable);
        (p as { availRing: number }).availRing = Number(st.availRing);
        (p as { usedRing: number }).usedRing = Number(st.usedRing);
        (p as { size: number }).size = st.size;
      }
      return null;
  }
};

/**
 * The descriptor entries a walk from `head` may read: the queue table's entries along the
 * NEXT path (at most `size` hops), and the entries of the indirect table the path reaches.
 */
const chainEntries = (
  mem: GuestMemory,
  p: QueuePlacement,
  head: number,
): { outer: Set<number>; table: [bigint, bigint] | null } => {
  const outer = new Set<number>();
  let table: [bigint, bigint] | null = null;
  let i = head;
  for (let hops = 0; hops <= p.size && i < p.size; hops++) {
    const at = p.descTable + descOffset(i);
    outer.add(at);
    const flags = mem.readU16(at + DESC_FLAGS);
    if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
      const addr = mem.readU64(at)!;
      table = [addr, addr + BigInt(mem.readU32(at + DESC_LEN))];
      break;
    }
    if ((flags & VIRTQ_DESC_F_NEXT) === 0) break;
    i = mem.readU16(at + DESC_NEXT);
  }
  return { outer, table };
};

/** Checks the accesses of one device operation (see the file comment). */
const checkBounds = (b: BuiltQueue, what: string, accesses: readonly Access[], head: number | null): void => {
  const p = b.placement;
  const { avail, used } = ringRanges(p);
  let entries: ReturnType<typeof chainEntries> | undefined;
  for (const a of accesses) {
    if (a.write) {
      if (!inRange(used, a.addr, a.len) || !inMemory(p, a))
        fail(`${what}: write ${show(a)} outside the used ring`);
      continue;
    }
    if (inRange(avail, a.addr, a.len) || inRange(used, a.addr, a.len)) {
      if (!inMemory(p, a)) fail(`${what}: ring read ${show(a)} outside memory`);
      continue;
    }
    // Anything else is a descriptor entry of the chain being popped.
    if (a.len !== 16) fail(`${what}: read ${show(a)} is neither a ring field nor a descriptor`);
    if (!inMemory(p, a)) continue; // an attempt `locate` refuses
    if (head === null) fail(`${what}: descriptor read ${show(a)} without popping a chain`);
    entries ??= chainEntries(b.mem, p, head!);
    if (entries.outer.has(a.addr)) continue;
    const t = entries.table;
    const at = BigInt(a.addr);
    if (t !== null && at >= t[0] && at + 16n <= t[1] && (at - t[0]) % 16n === 0n) continue;
    fail(`${what}: read ${show(a)} is not an entry of chain ${head} (table ${show(t)})`);
  }
};

/** Serves one well-formed chain on the queue as it is now; fails if it cannot. */
const serveWellFormed = (b: BuiltQueue, buffers: readonly BufferSpec[], reprogrammed: boolean): void => {
  const q = b.impl;
  const p = b.placement;
  const st = q.state();
  const programmed =
    st.active &&
    st.size === p.size &&
    st.descTable === BigInt(p.descTable) &&
    st.availRing === BigInt(p.availRing) &&
    st.usedRing === BigInt(p.usedRing);
  // Unless the guest itself reset or reconfigured the queue, nothing it wrote may have stopped it.
  if (!programmed && !reprogrammed) fail(`the queue stopped serving: ${show(st)}`);
  if (!programmed) {
    // After a reset or a configuration of the guest's choosing (inactive, or rings that
    // overlap), the driver programs the queue properly again.
    q.reset();
    q.configure({
      size: p.size,
      ready: true,
      descTable: p.descTable,
      availRing: p.availRing,
      usedRing: p.usedRing,
    });
    const r = q.initialize(b.mem);
    if (!r.ok) fail(`re-initialize with a valid placement: ${show(r.error)}`);
  }
  const p2 = q.state();
  const size = p2.size;
  const table = Number(p2.descTable);
  const n = Math.min(buffers.length, size);
  buffers.slice(0, n).forEach((buf, i) =>
    b.mem.writeFrom(
      table + descOffset(i),
      encodeDescriptor({
        addr: BigInt(buf.addr),
        len: buf.len,
        flags: (buf.write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0),
        next: i + 1 < n ? i + 1 : 0,
      }),
    ),
  );
  const avail = Number(p2.availRing);
  const next = q.nextAvail;
  b.mem.writeU16(avail + availSlotOffset(next % size), 0);
  b.mem.writeU16(avail + AVAIL_IDX, (next + 1) & 0xffff);
  const r = q.pop();
  if (!r.ok || r.value === null) return fail(`the queue no longer serves a well-formed chain: ${show(r)}`);
  const w = walkImpl(r.value);
  const got = w.descriptors.map((d) => ({
    addr: Number(d.addr),
    len: d.len,
    write: (d.flags & VIRTQ_DESC_F_WRITE) !== 0,
  }));
  if (w.end !== null || show(got) !== show(buffers.slice(0, n)))
    fail(`served ${show(w)} for ${show(buffers)}`);
  const usedBefore = q.nextUsed;
  if (!q.addUsed(r.value.headIndex, 1).ok || !q.publishUsed().ok) fail("could not complete the chain");
  if (b.mem.readU16(Number(p2.usedRing) + 2) !== ((usedBefore + 1) & 0xffff)) fail("used.idx not published");
};

describe("split queue under a hostile guest", () => {
  property(
    "deviceAccessesStayInBounds",
    [
      "VQ-DEVICE-ACCESS",
      "VQ-INIT-MEMORY",
      "VQ-LAYOUT",
      "CHAIN-MEMORY",
      "CHAIN-DESC-LAYOUT",
      "CHAIN-INDIRECT",
      "MEM-RANGE-ONE-REGION",
    ],
    fc.property(scenarioArb(32768), ({ s, ops }) => {
      const b = buildQueueState(s);
      const p = { ...b.placement };
      const view: BuiltQueue = { ...b, placement: p };
      const chain = new DescriptorChain(b.mem);
      // Every write anyone reported; at the end each changed byte must lie in one of them, so
      // a device write that bypassed the recorder (and so the checks below) is caught too.
      const writes: Access[] = [];
      const before = snapshotOf(b.mem);
      for (const o of ops) {
        if (o.by === "guest") {
          const g = recording(b.mem, () => scribble(b.mem, p, o.op, b.impl));
          for (const a of g.accesses) if (a.write) writes.push(a);
          continue;
        }
        // The head a pop will take (whether or not it accepts it): avail.ring[next_avail % size].
        const q = b.impl;
        const head =
          q.isActive && (o.op.t === "pop" || o.op.t === "popInto" || o.op.t === "popOrEnable")
            ? b.mem.readU16(p.availRing + availSlotOffset(q.nextAvail % p.size))
            : null;
        const { accesses } = recording(b.mem, () => runDevice(q, b.mem, p, chain, o.op));
        // initialize only checks where the rings lie (locate), it reads and writes nothing.
        if (o.op.t !== "reconfigure") {
          checkBounds(view, o.op.t, accesses, head);
          for (const a of accesses) if (a.write) writes.push(a);
        }
      }
      for (const c of changedBytes(b.mem, before))
        if (!writes.some((w) => c.addr >= w.addr && c.addr < w.addr + w.len))
          fail(`byte at ${c.addr} changed, but no reported write covers it`);
    }),
    { numRuns: 300 },
  );

  property(
    "hostileGuestNeverBreaksQueue",
    [
      "VQ-GUEST-INPUT",
      "VQ-POP-AVAIL-IDX",
      "VQ-INACTIVE",
      "VQ-RESET",
      "CHAIN-TTL",
      "CHAIN-MEMORY",
      "VQ-INIT-MEMORY",
    ],
    fc.property(scenarioArb(4096), ({ s, ops, recovery }) => {
      const b = buildQueueState({ ...s, ahead: undefined });
      const p = { ...b.placement };
      const original = b.placement;
      const chain = new DescriptorChain(b.mem);
      let reprogrammed = false;
      for (const o of ops) {
        if (o.by === "guest") scribble(b.mem, p, o.op, b.impl);
        else {
          runDevice(b.impl, b.mem, p, chain, o.op);
          if (o.op.t === "reset" || o.op.t === "reconfigure") reprogrammed = true;
        }
      }
      serveWellFormed({ ...b, placement: original }, recovery, reprogrammed);
    }),
    { numRuns: 400 },
  );
});
