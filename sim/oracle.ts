/**
 * The oracle's shared checks: the reference model (spec/) run beside the devices on the
 * same guest memory, and a bounds guard over every access the device makes.
 */
import type { GuestMemory } from "../impl/memory/guest-memory.ts";
import type { DeviceChain } from "../impl/queue/device-queue.ts";
import type { GuestBuffer, RingArea } from "../impl/queue/guest-queue.ts";
import type { SpecMemory } from "../spec/memory.ts";
import * as PQ from "../spec/packed-queue.ts";
import { readDescriptor, walkChain, type SpecWalk } from "../spec/queue.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_WRITE } from "../wire/split.ts";
import type { SimContext } from "./engine.ts";

const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/** The split reference pop of `head` as a RefPop: the walk, and the table an INDIRECT head names. */
export const splitRefPop = (
  spec: SpecMemory,
  desc: number,
  size: number,
  head: number,
  walk: SpecWalk,
): RefPop => {
  // A walk that yielded a descriptor not from an indirect table yielded the head itself
  // first (CHAIN-INDIRECT: an INDIRECT head is never yielded): no table, no second read.
  const first = walk.descriptors[0];
  if (first !== undefined && !first.indirect) return { id: head, walk, table: null };
  const h = readDescriptor(spec, BigInt(desc), head, false);
  const table =
    h.ok && (h.value.flags & VIRTQ_DESC_F_INDIRECT) !== 0 ? { addr: h.value.addr, len: h.value.len } : null;
  return { id: head, walk, table };
};

/** The packed reference pop as a RefPop: the table is the one the head slot names when INDIRECT. */
export const packedRefPop = (
  spec: SpecMemory,
  q: PQ.SpecPackedQueue,
  popped: PQ.SpecPackedPopped,
): RefPop => {
  const h = PQ.readSlot(q, spec, popped.head);
  const table = (h.flags & VIRTQ_DESC_F_INDIRECT) !== 0 ? { addr: h.addr, len: h.len } : null;
  return { id: popped.id, walk: popped.walk, table };
};

const views = new WeakMap<GuestMemory, SpecMemory>();

/**
 * Checks that judge a whole device turn over one guest memory at once (queue-shadow.ts's
 * used ring): run when that memory's bounds guard arms and disarms.
 */
export interface TurnChecks {
  readonly begin: (() => void)[];
  readonly end: (() => void)[];
}

const turns = new WeakMap<GuestMemory, TurnChecks>();

/** The turn checks of the device turns over `mem` (one list per memory). */
export const turnChecksOf = (mem: GuestMemory): TurnChecks => {
  let t = turns.get(mem);
  if (t === undefined) turns.set(mem, (t = { begin: [], end: [] }));
  return t;
};

/**
 * The reference model's view of guest memory: the same bytes, not a copy (the spec's
 * reads never write, so sharing is safe and each check sees the current contents). One
 * view per memory (its regions never change), so every part of the oracle reads through
 * the same region list and spec/memory works out its bounds once.
 */
export const specMemoryOf = (mem: GuestMemory): SpecMemory => {
  let view = views.get(mem);
  if (view === undefined) {
    view = { regions: mem.regions.map((r) => ({ base: BigInt(r.base), bytes: r.bytes })) };
    views.set(mem, view);
  }
  return view;
};

/** A descriptor of a reference walk, on either ring (spec/queue.ts, spec/packed-queue.ts). */
export interface RefDescriptor {
  readonly addr: bigint;
  readonly len: number;
  readonly flags: number;
}

/** The reference model's walk of one chain, on either ring. */
export interface RefWalk {
  readonly descriptors: readonly RefDescriptor[];
  readonly end: { readonly _tag: string } | null;
}

/** The reference model's pop: the id the device must hand back, the walk, and the indirect table it names. */
export interface RefPop {
  readonly id: number;
  readonly walk: RefWalk;
  readonly table: { readonly addr: bigint; readonly len: number } | null;
}

const showSegs = (segs: readonly { addr: number | bigint; len: number; write: boolean }[]): string =>
  segs.map((s) => `${s.write ? "w" : "r"}:${s.addr}+${s.len}`).join(",");

/**
 * The reference's exact address equals the cursor's, both of its forms: the u64 (what the
 * device's errors name) and the number it locates with (exact up to 2^53 - 1, >= 2^53 for
 * anything larger).
 */
const sameAddr = (ref: bigint, chain: DeviceChain): boolean => {
  // A safe number is compared as a bigint (exact, and cheaper than converting the u64).
  const n = chain.addr;
  return ref === chain.addrBig() && (n <= Number.MAX_SAFE_INTEGER ? BigInt(n) === ref : ref > MAX_SAFE_BIG);
};

/**
 * How the chain in the cursor departs from the reference's walk of the same head (descriptors
 * and how the walk ended), as one line; undefined when they agree. The cursor is left rewound.
 */
export const walkMismatch = (chain: DeviceChain, head: number, walk: RefWalk): string | undefined => {
  const want = walk.descriptors;
  let i = 0;
  let same = true;
  for (let ok = chain.rewind(); ok; ok = chain.advance(), i++) {
    const w = want[i];
    if (w === undefined || !sameAddr(w.addr, chain) || w.len !== chain.len || w.flags !== chain.flags)
      same = false;
  }
  const end = chain.end === null ? null : chain.end._tag;
  const wantEnd = walk.end === null ? null : walk.end._tag;
  chain.rewind();
  return same && i === want.length && end === wantEnd
    ? undefined
    : `head ${head}: device walked ${i} descriptors (end ${end}), reference ${want.length} (end ${wantEnd})`;
};

/**
 * SIM-CHAIN-MATCH: the chain the device popped (impl cursor), the reference model's walk of
 * it (when the oracle has one) and the buffer the driver made available must agree
 * descriptor for descriptor. Walks the cursor (leaves it rewound to the first descriptor).
 * One pass and no copies; the three lists are written out only for a failure's message.
 */
export const checkChain = (
  ctx: SimContext,
  chain: DeviceChain,
  expected: GuestBuffer,
  walk: RefWalk | undefined,
): void => {
  const exp = expected.segments;
  const ref = walk?.descriptors;
  let same = ref === undefined || (ref.length === exp.length && walk!.end === null);
  let n = 0;
  for (let ok = chain.rewind(); ok; ok = chain.advance(), n++) {
    const e = exp[n];
    if (!same || e === undefined) {
      same = false;
      continue;
    }
    same = chain.addr === e.addr && chain.len === e.len && chain.isWriteOnly() === e.write;
    const s = ref?.[n];
    // The driver's address is an exact number: the reference's u64 equals it only below
    // 2^53 (compared as bigints, exact, and cheaper than converting the u64).
    if (s !== undefined)
      same &&=
        Number.isSafeInteger(e.addr) &&
        s.addr === BigInt(e.addr) &&
        s.len === e.len &&
        ((s.flags & VIRTQ_DESC_F_WRITE) !== 0) === e.write;
  }
  const implEnd = chain.end;
  chain.rewind();
  if (same && n === exp.length && implEnd === null) return;
  const got: { addr: number; len: number; write: boolean }[] = [];
  for (let ok = chain.rewind(); ok; ok = chain.advance())
    got.push({ addr: chain.addr, len: chain.len, write: chain.isWriteOnly() });
  chain.rewind();
  const specSegs = (ref ?? []).map((d) => ({
    addr: d.addr,
    len: d.len,
    write: (d.flags & VIRTQ_DESC_F_WRITE) !== 0,
  }));
  ctx.fail(
    "SIM-CHAIN-MATCH",
    `id ${expected.id} (seq ${expected.seq}${expected.indirect ? ", indirect" : ""}): driver made [${showSegs(
      exp,
    )}], device walked [${showSegs(got)}]${implEnd === null ? "" : ` end ${implEnd._tag}`}, reference walked [${showSegs(
      specSegs,
    )}]${walk?.end == null ? "" : ` end ${walk.end._tag}`}`,
  );
};

/**
 * Ranges the device may touch, three numbers each: [lo, hi) and whether it may write there
 * (1) or only read (0). Flat, so allowing a chain makes one array, not one object per range.
 */
type Ranges = number[];

const NONE: Ranges = [];

/**
 * SIM-BOUNDS: while armed, every range the device locates must lie inside an allowed
 * range: the rings (read: table and avail; write: used), the indirect tables and buffers
 * of the chains it holds (read-only or writable as the driver made them).
 */
export class BoundsGuard {
  private readonly mem: GuestMemory;
  private readonly ctx: SimContext;
  private readonly turn: TurnChecks;
  private readonly fixed: Ranges = [];
  /**
   * The chains the device holds: per ring (by its address), each chain's ranges at its id.
   * A released id's entry is emptied, not deleted, so holding and releasing allocate nothing.
   */
  private readonly held = new Map<number, (Ranges | undefined)[]>();
  /** The chain that allowed the last access (or was allowed last): looked at first. */
  private last: Ranges = NONE;
  private where = "";
  private armed = false;

  /** The memory's own `locate`, and the same with the watch in front (installed while armed). */
  private readonly plain: GuestMemory["locate"];
  private readonly watched: GuestMemory["locate"];

  constructor(ctx: SimContext, mem: GuestMemory) {
    this.ctx = ctx;
    this.mem = mem;
    this.turn = turnChecksOf(mem);
    const plain = mem.locate;
    this.plain = plain;
    this.watched = (addr: number, len: number, write: boolean): number => {
      this.see(addr, len, write);
      return plain.call(mem, addr, len, write);
    };
    // The memory gets its own `locate` property once, and arm/disarm only change its value:
    // adding and deleting the property at every arm/disarm would leave the memory object in
    // V8's slow (dictionary) mode, and every device and driver access through it slower.
    // Disarmed, it holds the plain method, so the driver's accesses pay nothing for the watch.
    if (ctx.oracle) mem.locate = plain;
  }

  /** A queue's ring parts (GuestQueue.areas): readable, and writable where the device writes. */
  addAreas(areas: readonly RingArea[]): void {
    for (const a of areas) this.fixed.push(a.addr, a.addr + a.len, a.deviceWrites ? 1 : 0);
  }

  addRange(lo: number, len: number, write: boolean): void {
    this.fixed.push(lo, lo + len, write ? 1 : 0);
  }

  /**
   * The device holds the chain with this head of the split ring whose descriptor table of
   * `size` entries is at `desc` now: it may touch what the reference model's walk of it (as it
   * is in memory now) reaches.
   */
  allowWalk(spec: SpecMemory, desc: number, size: number, head: number): void {
    this.allowPop(desc, splitRefPop(spec, desc, size, head, walkChain(spec, BigInt(desc), size, head)));
  }

  /**
   * The device holds the chain the reference model popped, on the queue whose ring starts at
   * `queue`: it may touch the indirect table the chain names and each descriptor's buffer,
   * writable only when the descriptor is.
   */
  allowPop(queue: number, pop: RefPop): void {
    const list: Ranges = [];
    for (const d of pop.walk.descriptors) {
      if (d.addr < MAX_SAFE_BIG) {
        const lo = Number(d.addr);
        list.push(lo, lo + d.len, (d.flags & VIRTQ_DESC_F_WRITE) !== 0 ? 1 : 0);
      }
    }
    const t = pop.table;
    if (t !== null && t.addr < MAX_SAFE_BIG) {
      const lo = Number(t.addr);
      list.push(lo, lo + t.len, 0);
    }
    let byId = this.held.get(queue);
    if (byId === undefined) this.held.set(queue, (byId = []));
    // Grown one entry at a time, so the array stays dense (ids are below the ring's size).
    while (byId.length <= pop.id) byId.push(undefined);
    byId[pop.id] = list;
    this.last = list;
  }

  /** Forgets every chain (before allowing the set the device holds now). */
  clearChains(): void {
    this.held.clear();
    this.last = NONE;
  }

  /** The device gave this chain back (used): its buffers are the driver's again. */
  releaseId(queue: number, id: number): void {
    const byId = this.held.get(queue);
    if (byId === undefined || id >= byId.length) return;
    if (byId[id] === this.last) this.last = NONE;
    byId[id] = undefined;
  }

  /**
   * Watches every `locate` the device makes until `disarm`. Not through `mem.recorder`:
   * a recorder sends the queue's popInto/addUsed and the chain's loadBound down their
   * general paths, and the oracle must check the code that runs without it. The ring and
   * descriptor-table accesses those fast paths make through their validated views are
   * checked after the fact instead, by queue-shadow.ts (SIM-QUEUE-REFINES: positions,
   * results and the bytes written, against the reference model). `where` names the device
   * in a failure's message.
   */
  arm(where: string): void {
    if (!this.ctx.oracle) return;
    this.where = where;
    this.armed = true;
    this.mem.locate = this.watched;
    for (const begin of this.turn.begin) begin();
  }

  /** The device's turn is over: stops watching and runs the checks of a whole turn. */
  disarm(): void {
    if (!this.armed) return;
    this.unwatch();
    if (!this.ctx.failed) for (const end of this.turn.end) end();
  }

  private unwatch(): void {
    this.armed = false;
    this.mem.locate = this.plain;
  }

  private inside(list: Ranges, addr: number, len: number, write: boolean): boolean {
    for (let i = 0; i < list.length; i += 3)
      if (addr >= list[i]! && addr + len <= list[i + 1]! && (!write || list[i + 2] === 1)) return true;
    return false;
  }

  private see(addr: number, len: number, write: boolean): void {
    // Allowed, or outside memory (a locate the memory refuses is not an access: the device
    // asked and was told no): either passes, so the likeliest, the chain in hand, goes first.
    if (this.inside(this.last, addr, len, write)) return;
    let inMemory = false;
    for (const r of this.mem.regions) if (addr >= r.base && addr + len <= r.end) inMemory = true;
    if (!inMemory) return;
    if (this.inside(this.fixed, addr, len, write)) return;
    for (const byId of this.held.values())
      for (const list of byId)
        if (list !== undefined && this.inside(list, addr, len, write)) {
          this.last = list;
          return;
        }
    this.unwatch();
    this.ctx.fail(
      "SIM-BOUNDS",
      `${this.where}: device ${write ? "wrote" : "read"} [${addr}, +${len}), outside the rings and the buffers it was given`,
    );
  }
}
