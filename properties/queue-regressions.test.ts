/**
 * rust-vmm virtio-queue's historic bugs, each a named property over random queues:
 * availIdxFarAhead (PR 196), sizeZero (PR 173), popAfterReset (PR 225),
 * selfReferencingDescriptorOver4GiB (PR 236), unalignedIndirectTableAccepted (PR 220).
 */
import fc from "fast-check";
import { describe } from "vitest";
import { DescriptorChain } from "../impl/queue/descriptor-chain.ts";
import { SplitDriver } from "../impl/queue/split-driver.ts";
import { SplitQueue } from "../impl/queue/split-queue.ts";
import type { GuestMemory } from "../impl/memory/guest-memory.ts";
import * as S from "../spec/queue.ts";
import { walkChain, type ChainError } from "../spec/queue.ts";
import {
  DESC_SIZE,
  MAX_CHAIN_BYTES,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  descOffset,
  encodeDescriptor,
} from "../wire/split.ts";
import { property } from "./harness.ts";
import { buildMemories } from "./arbitraries/memory.ts";
import { anyRingsArb, chainBuffersArb, queuePlacementArb, type QueuePlacement } from "./arbitraries/queue.ts";
import {
  buildQueueState,
  changedBytes,
  popView,
  queueStateArb,
  recording,
  ringRanges,
  snapshotOf,
} from "./arbitraries/queue-state.ts";
import { same, show, walkImpl } from "./arbitraries/chain.ts";

const fail = (what: string): never => {
  throw new Error(what);
};

describe("rust-vmm regressions", () => {
  /**
   * PR 236: a descriptor whose NEXT points at itself, with a large len, made the chain's
   * total length overflow a u32. The walk now yields at most min(ttl, floor((2^32-1)/len))
   * copies of it and ends with DescriptorChainOverflow when the byte cap comes first,
   * ChainTtlExpired otherwise; directly in the queue's table or inside an indirect table.
   */
  property(
    "selfReferencingDescriptorOver4GiB",
    ["CHAIN-LEN-U32", "CHAIN-TTL", "CHAIN-INDIRECT"],
    fc.property(
      queuePlacementArb().chain((q) =>
        fc.record({
          q: fc.constant(q),
          seed: fc.integer(),
          index: fc.nat(q.size - 1),
          len: fc.oneof(
            fc.constantFrom(0x8000_0000, 0xffff_ffff, 0x1_0000, 0x2_0000, 0x1000_0000),
            fc.integer({ min: 1, max: 0xffff_ffff }),
            fc.integer({ min: 0x1_0000, max: 0x10_0000 }),
          ),
          addr: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
          flags: fc.constantFrom(VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE),
          // Through an indirect table of `entries` entries whose entry 0 refers to itself.
          indirect: fc.option(fc.record({ entries: fc.integer({ min: 1, max: 64 }), at: fc.nat() }), {
            nil: undefined,
          }),
        }),
      ),
      ({ q, seed, index, len, addr, flags, indirect }) => {
        const { impl } = buildMemories(q.layout, seed);
        const table = BigInt(q.descTable);
        let ttl = q.size;
        let selfIndex = index;
        if (indirect === undefined) {
          impl.tryWrite(
            table + BigInt(descOffset(index)),
            encodeDescriptor({ addr, len, flags, next: index }),
          );
        } else {
          const region = q.data.find((r) => r.size >= DESC_SIZE * indirect.entries);
          fc.pre(region !== undefined);
          const at = region!.base + (indirect.at % (region!.size - DESC_SIZE * indirect.entries + 1));
          impl.tryWrite(BigInt(at), encodeDescriptor({ addr, len, flags, next: 0 }));
          impl.tryWrite(
            table + BigInt(descOffset(index)),
            encodeDescriptor({
              addr: BigInt(at),
              len: DESC_SIZE * indirect.entries,
              flags: VIRTQ_DESC_F_INDIRECT,
              next: 0,
            }),
          );
          ttl = indirect.entries;
          selfIndex = 0;
        }
        const chain = DescriptorChain.checkedNew(impl, q.descTable, q.size, index);
        if (chain === undefined) return fail("a self-referencing head was refused");
        const walked = walkImpl(chain);
        const byCap = Math.floor(MAX_CHAIN_BYTES / len);
        const count = Math.min(ttl, byCap);
        const end: ChainError =
          byCap < ttl
            ? { _tag: "DescriptorChainOverflow", index: selfIndex, len }
            : { _tag: "ChainTtlExpired", limit: ttl };
        if (walked.descriptors.length !== count)
          fail(`${walked.descriptors.length} descriptors, expected ${count}`);
        if (!same(walked.end, end)) fail(`ended ${show(walked.end)}, expected ${show(end)}`);
        if (walked.descriptors.some((d) => d.index !== selfIndex || d.len !== len || d.addr !== addr))
          fail("a yielded descriptor is not the self-referencing one");
        if (chain.totalLength !== count * len || chain.totalLength > MAX_CHAIN_BYTES)
          fail("total length wrong");
        if (!same(walked, walkChain(impl.toSpecMemory(true), table, q.size, index)))
          fail("impl and spec walks differ");
      },
    ),
    { numRuns: 200 },
  );

  /**
   * PR 220: an indirect table need not be 16-aligned. A chain added through a table at any
   * address (mostly unaligned) walks to exactly the buffers the driver put there.
   */
  property(
    "unalignedIndirectTableAccepted",
    ["CHAIN-INDIRECT-UNALIGNED", "CHAIN-INDIRECT"],
    fc.property(
      queuePlacementArb().chain((q) =>
        fc.record({
          q: fc.constant(q),
          seed: fc.integer(),
          buffers: chainBuffersArb(q.data, 8),
          region: fc.nat(q.data.length - 1),
          slot: fc.nat(),
          misalign: fc.integer({ min: 0, max: 15 }),
        }),
      ),
      ({ q, seed, buffers, region, slot, misalign }) => {
        const { impl } = buildMemories(q.layout, seed);
        const r = q.data[region]!;
        const bytes = DESC_SIZE * buffers.length;
        fc.pre(r.size >= bytes + DESC_SIZE);
        const at = r.base + DESC_SIZE * (slot % Math.floor((r.size - bytes) / DESC_SIZE)) + misalign;
        const driver = new SplitDriver(impl, q.size, q);
        const head = driver.addChain(
          buffers.map((b) => ({ addr: b.addr, len: b.len, write: b.write })),
          { indirectTable: at },
        );
        if (head === undefined) return fail("driver refused the chain");
        // Through the queue, as a device sees it: popped, not refused, walked to the end.
        const queue = activeQueue(impl, q);
        const popped = queue.pop();
        if (!popped.ok || popped.value === null)
          return fail(`pop with an indirect table at ${at}: ${show(popped)}`);
        const chain = popped.value;
        if (chain.headIndex !== head) fail("popped another head");
        const walked = walkImpl(chain);
        if (walked.end !== null) fail(`walk ended with ${show(walked.end)}`);
        const got = walked.descriptors.map((d) => ({
          addr: Number(d.addr),
          len: d.len,
          write: (d.flags & 2) !== 0,
        }));
        if (!same(got, buffers)) fail(`walked ${show(got)}, driver added ${show(buffers)}`);
        if (walked.descriptors.some((d) => !d.indirect)) fail("a descriptor not marked indirect");
      },
    ),
    { numRuns: 200 },
  );
});

/** A SplitQueue over `mem`, configured with the placement and initialized. */
const activeQueue = (mem: GuestMemory, p: QueuePlacement, maxSize = 32768): SplitQueue => {
  const q = new SplitQueue(maxSize);
  q.configure({
    size: p.size,
    ready: true,
    descTable: p.descTable,
    availRing: p.availRing,
    usedRing: p.usedRing,
  });
  const r = q.initialize(mem);
  if (!r.ok) throw new Error(`initialize: ${show(r.error)}`);
  return q;
};

const NOT_READY = { ok: false, error: { _tag: "NotReady" } } as const;

/** Every operation of an inactive queue: NotReady (or 0 / false), touching no memory (VQ-INACTIVE). */
const checkInactive = (q: SplitQueue, mem: GuestMemory, what: string): void => {
  const { result, accesses } = recording(mem, () => [
    q.pop(),
    q.popOrEnableNotification(),
    q.addUsed(0, 0),
    q.publishUsed(),
    q.tryEnableNotification(),
    q.enableNotification(),
    q.disableNotification(),
    q.usedEvent(),
    q.availEvent(),
    q.setAvailEvent(1),
    q.len(),
    q.isEmpty(),
    q.availIdx(),
    q.prepareKick(),
    q.prepareKick(true),
  ]);
  if (accesses.length > 0) fail(`${what}: an inactive queue accessed ${show(accesses[0])}`);
  const want = [...new Array<unknown>(10).fill(NOT_READY), 0, true, 0, false, false];
  if (!same(result, want)) fail(`${what}: ${show(result)}`);
};

describe("rust-vmm regressions through the queue", () => {
  /**
   * PR 196: a driver that sets avail.idx more than `size` ahead of next_avail made the
   * device walk garbage for up to 65535 "chains". pop, popOrEnableNotification and (with
   * EVENT_IDX) tryEnableNotification now give InvalidAvailIdx at once, reading nothing but
   * avail.idx and changing nothing; and exactly `size` chains ahead is still served in full.
   */
  property(
    "availIdxFarAhead",
    ["VQ-POP-AVAIL-IDX", "VQ-TRY-ENABLE-NOTIFICATION", "VQ-POP-OR-ENABLE"],
    fc.property(
      queueStateArb({ maxSize: 4096 }).chain((s) =>
        fc.tuple(fc.constant(s), fc.integer({ min: s.placement.size + 1, max: 0xffff }), fc.nat(3)),
      ),
      ([s, ahead, which]) => {
        const b = buildQueueState({ ...s, ahead });
        const p = b.placement;
        const before = b.impl.state();
        const snap = snapshotOf(b.mem);
        const op = (["pop", "popOrEnable", "tryEnable", "popInto"] as const)[which]!;
        const { result, accesses } = recording(b.mem, () =>
          op === "pop"
            ? b.impl.pop()
            : op === "popOrEnable"
              ? b.impl.popOrEnableNotification()
              : op === "tryEnable"
                ? b.impl.tryEnableNotification()
                : b.impl.popInto(new DescriptorChain(b.mem))
                  ? "popped"
                  : { ok: false, error: b.impl.lastError },
        );
        const error = { _tag: "InvalidAvailIdx", len: ahead, size: p.size };
        // Without EVENT_IDX tryEnableNotification does not look at avail.idx (it is true).
        const expected = op === "tryEnable" && !s.eventIdx ? { ok: true, value: true } : { ok: false, error };
        if (!same(result, expected)) fail(`${op}: ${show(result)}, expected ${show(expected)}`);
        if (!same(b.impl.state(), before)) fail(`${op} changed the queue`);
        if (op !== "tryEnable" || s.eventIdx) {
          if (changedBytes(b.mem, snap).length > 0) fail(`${op} wrote memory`);
          for (const a of accesses)
            if (a.addr < p.availRing || a.addr + a.len > p.availRing + 4)
              fail(`${op} read ${show(a)}, more than avail.idx`);
        }
        if (op === "pop" && !same(S.pop(b.spec, b.specMem).result, result)) fail("spec disagrees");
      },
    ),
    { numRuns: 200 },
  );

  property(
    "availIdxExactlySizeAheadIsServed",
    ["VQ-POP-AVAIL-IDX", "VQ-POP-ADVANCE"],
    fc.property(
      queuePlacementArb({ maxSize: 1024 }).chain((p) =>
        fc.record({
          p: fc.constant(p),
          seed: fc.integer(),
          start: fc.nat(0xffff),
          buffer: chainBuffersArb(p.data, 1),
        }),
      ),
      ({ p, seed, start, buffer }) => {
        const { impl: mem } = buildMemories(p.layout, seed);
        const driver = new SplitDriver(mem, p.size, p);
        const q = activeQueue(mem, p);
        q.setPositions({ nextAvail: start });
        driver.setAvailIdx(start);
        for (let i = 0; i < p.size; i++)
          if (driver.addChain(buffer, { publish: false }) === undefined) fail("no room");
        driver.publish();
        if (q.len() !== p.size) fail(`len ${q.len()} != size`);
        const chain = new DescriptorChain(mem);
        for (let i = 0; i < p.size; i++)
          if (!q.popInto(chain)) fail(`pop ${i} of ${p.size} failed: ${show(q.lastError)}`);
        if (!same(q.pop(), { ok: true, value: null })) fail("a chain beyond the published ones");
      },
    ),
    { numRuns: 100 },
  );

  /**
   * PR 173: a queue of size 0 took ring indices modulo 0. Size 0 is InvalidSize at
   * initialize (also when it replaces a working size), the queue stays inactive and touches
   * no memory, and a chain over a table of size 0 is refused without reading it.
   */
  property(
    "sizeZero",
    ["VQ-SIZE-ZERO", "VQ-INIT-SIZE", "VQ-INACTIVE", "CHAIN-CHECKED-NEW"],
    fc.property(
      queuePlacementArb().chain((p) =>
        fc.record({
          p: fc.constant(p),
          seed: fc.integer(),
          maxLog: fc.nat(15),
          wasActive: fc.boolean(),
          eventIdx: fc.boolean(),
          index: fc.nat(0xffff),
        }),
      ),
      ({ p, seed, maxLog, wasActive, eventIdx, index }) => {
        const { impl: mem } = buildMemories(p.layout, seed);
        const maxSize = Math.max(2 ** maxLog, p.size);
        const q = wasActive ? activeQueue(mem, p, maxSize) : new SplitQueue(maxSize);
        if (eventIdx) q.enableNotifSuppression();
        q.configure({
          size: 0,
          ready: true,
          descTable: p.descTable,
          availRing: p.availRing,
          usedRing: p.usedRing,
        });
        checkInactive(q, mem, "configured with size 0");
        const r = q.initialize(mem);
        if (!same(r, { ok: false, error: { _tag: "InvalidSize", size: 0, maxSize } }))
          fail(`initialize: ${show(r)}`);
        const spec = S.initialize(
          S.configure(S.newQueue(maxSize)!, { size: 0, ready: true }),
          mem.toSpecMemory(true),
        );
        if (!same(spec.result, r)) fail("spec disagrees");
        checkInactive(q, mem, "after initialize with size 0");
        const { result, accesses } = recording(mem, () =>
          DescriptorChain.checkedNew(mem, p.descTable, 0, index),
        );
        if (result !== undefined || accesses.length > 0) fail("a chain over a table of size 0 was read");
      },
    ),
    { numRuns: 150 },
  );

  /**
   * PR 225: popping after a reset read the old rings. After reset the queue is a new queue
   * (the spec's reset), every operation is NotReady without touching memory even though the
   * old rings still hold pending chains, and once the driver programs it again (same or new
   * place, rings zeroed) it serves the new chains from index 0, never an old one.
   */
  property(
    "popAfterReset",
    ["VQ-RESET", "VQ-INACTIVE"],
    fc.property(
      queuePlacementArb({ maxSize: 1024, minDataRegions: 2 }).chain((p) =>
        fc.record({
          p: fc.constant(p),
          seed: fc.integer(),
          old: fc.array(chainBuffersArb(p.data, 3), { minLength: 1, maxLength: 4 }),
          popped: fc.nat(4),
          fresh: fc.array(chainBuffersArb(p.data, 3), { minLength: 1, maxLength: 4 }),
          moved: fc.option(anyRingsArb(p.layout, p.size), { nil: undefined }),
          eventIdx: fc.boolean(),
          start: fc.nat(0xffff),
        }),
      ),
      ({ p, seed, old, popped, fresh, moved, eventIdx, start }) => {
        const { impl: mem } = buildMemories(p.layout, seed);
        const driver = new SplitDriver(mem, p.size, p);
        const q = activeQueue(mem, p);
        if (eventIdx) q.enableNotifSuppression();
        q.setPositions({ nextAvail: start, nextUsed: start, numAdded: 3 });
        driver.setAvailIdx(start);
        for (const bufs of old) driver.addChain(bufs);
        for (let i = 0; i < popped; i++) {
          const r = q.pop();
          if (r.ok && r.value !== null) q.addUsed(r.value.headIndex, 1);
        }
        q.reset();
        if (!same(q.state(), S.reset(S.newQueue(32768)!))) fail(`state after reset ${show(q.state())}`);
        checkInactive(q, mem, "after reset");
        // The driver programs the queue again: where it was, or (if valid) somewhere else.
        let place: QueuePlacement = p;
        if (moved !== undefined) {
          const candidate = {
            ...p,
            descTable: Number(moved.descTable),
            availRing: Number(moved.availRing),
            usedRing: Number(moved.usedRing),
          };
          const probe = new SplitQueue(32768);
          probe.configure({ size: p.size, ready: true, ...moved });
          if (probe.initialize(mem).ok && !overlapping(candidate)) place = candidate;
        }
        const driver2 = new SplitDriver(mem, place.size, place);
        const q2 = q;
        q2.configure({
          size: place.size,
          ready: true,
          descTable: place.descTable,
          availRing: place.availRing,
          usedRing: place.usedRing,
        });
        if (!q2.initialize(mem).ok) fail("re-initialize failed");
        if (q2.pop().ok !== true || !same(q2.pop(), { ok: true, value: null }))
          fail("an old chain survived the reset");
        const heads: number[] = [];
        for (const bufs of fresh) {
          const h = driver2.addChain(bufs);
          if (h !== undefined) heads.push(h);
        }
        for (const [i, h] of heads.entries()) {
          const r = popView(q2.pop());
          if (!r.ok || r.value === null || r.value.head !== h) fail(`new chain ${i}: ${show(r)}`);
        }
        if (q2.nextAvail !== heads.length) fail("the new chains were not served from index 0");
      },
    ),
    { numRuns: 150 },
  );
});

/** Whether a placement's three rings overlap one another (a driver would not do that). */
const overlapping = (p: QueuePlacement): boolean => {
  const { desc, avail, used } = ringRanges(p);
  const r = [desc, avail, used] as const;
  const meets = (a: readonly [number, number], b: readonly [number, number]) => a[0] < b[1] && b[0] < a[1];
  return meets(r[0], r[1]) || meets(r[0], r[2]) || meets(r[1], r[2]);
};
