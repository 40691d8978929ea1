/**
 * Firecracker's queue.rs Kani harnesses and rust-vmm's two, one property each, named after
 * the harness (camelCase; `verifySpec_2_6_7_2` keeps the section number). Kani proves them
 * for tiny queues; here queues go up to 32768 entries, rings lie anywhere in memory of
 * several regions (also at 512, Firecracker's proof memory, and ending at 2^53), memory holds
 * arbitrary bytes, and next_avail / next_used / num_added are arbitrary. Besides what each
 * harness asserts, every property checks the implementation against the reference model
 * and that no access leaves the rings or guest memory. verifyCheckedNew is in
 * queue-chain.test.ts.
 */
import fc from "fast-check";
import { describe } from "vitest";
import type { GuestMemory } from "../impl/memory/guest-memory.ts";
import { SplitDriver } from "../impl/queue/split-driver.ts";
import { SplitQueue } from "../impl/queue/split-queue.ts";
import * as M from "../spec/memory.ts";
import * as S from "../spec/queue.ts";
import {
  AVAIL_RING_ALIGN,
  DESC_TABLE_ALIGN,
  MAX_QUEUE_SIZE,
  USED_ELEM_ID,
  USED_ELEM_LEN,
  USED_ELEM_SIZE,
  USED_RING_ALIGN,
} from "../wire/split.ts";
import { property } from "./harness.ts";
import { inLayout } from "./arbitraries/memory.ts";
import {
  anyQueueSizeArb,
  anyRingsArb,
  chainBuffersArb,
  queuePlacementArb,
  ringBytes,
  type QueuePlacement,
} from "./arbitraries/queue.ts";
import {
  buildQueueState,
  changedBytes,
  inIndirectTable,
  inMemory,
  inRange,
  popView,
  queueStateArb,
  recording,
  sameMemory,
  snapshotOf,
  type Access,
  type BuiltQueue,
  type QueueState,
} from "./arbitraries/queue-state.ts";
import { same, show } from "./arbitraries/chain.ts";

const fail = (what: string): never => {
  throw new Error(what);
};
const u16 = (x: number): number => x & 0xffff;

/** Every access lies inside guest memory and inside one of `allowed` (Kani's implicit bounds check). */
const checkAccesses = (
  b: BuiltQueue,
  accesses: readonly Access[],
  allowed: readonly (readonly [number, number])[],
  what: string,
): void => {
  for (const a of accesses) {
    if (!inMemory(b.placement, a)) fail(`${what}: access ${show(a)} outside guest memory`);
    if (!allowed.some((r) => inRange(r, a.addr, a.len)))
      fail(`${what}: access ${show(a)} outside ${show(allowed)}`);
  }
};

/** Writes a u16 into both memories (the driver's hand). */
const poke16 = (b: BuiltQueue, addr: number, v: number): void => {
  if (!b.mem.writeU16(addr, v)) fail(`poke outside memory at ${addr}`);
  const next = M.writeU16(b.specMem, BigInt(addr), u16(v));
  if (!next.ok) return fail("spec poke outside memory");
  b.specMem = next.value;
};

// Ring fields where the model says they are (VQ-LAYOUT, spec/queue.ts's own reading).
const usedEventAddr = (b: BuiltQueue): number => Number(S.usedEventAddr(b.spec));
const availEventAddr = (b: BuiltQueue): number => Number(S.availEventAddr(b.spec));
const availIdxAddr = (b: BuiltQueue): number => Number(S.availIdxAddr(b.spec));
const usedIdxAddr = (b: BuiltQueue): number => Number(S.usedIdxAddr(b.spec));
const availSlotAddr = (b: BuiltQueue, slot: number): number => Number(S.availSlotAddr(b.spec, slot));
const usedSlotAddr = (b: BuiltQueue, slot: number): number => Number(S.usedSlotAddr(b.spec, slot));

/** impl and spec agree on the queue state and the memory. */
const checkInSync = (b: BuiltQueue, what: string): void => {
  if (!same(b.impl.state(), b.spec)) fail(`${what}: state ${show(b.impl.state())} != spec ${show(b.spec)}`);
  if (!sameMemory(b.mem, b.specMem)) fail(`${what}: memory differs from the spec's`);
};

const withEventIdx = (b: BuiltQueue): void => {
  b.impl.enableNotifSuppression();
  b.spec = S.enableNotifSuppression(b.spec);
};

/** Some used entries added by the device, as in a real run: num_added grows. */
const addSome = (b: BuiltQueue, n: number): void => {
  for (let i = 0; i < n; i++) {
    const index = i % b.placement.size;
    if (!b.impl.addUsed(index, i).ok) fail("addUsed of a valid index failed");
    const s = S.addUsed(b.spec, b.specMem, index, i);
    b.spec = s.queue;
    b.specMem = s.memory;
  }
};

const stateArb = queueStateArb();

describe("Firecracker queue.rs Kani harnesses", () => {
  property(
    "verifySpec_2_6_7_2",
    ["VQ-PREPARE-KICK", "VQ-EVENT-IDX"],
    fc.property(stateArb, fc.nat(3), fc.boolean(), (s, adds, atEvent) => {
      const b = buildQueueState(s);
      addSome(b, adds);
      if (atEvent) poke16(b, usedEventAddr(b), u16(b.impl.nextUsed - 1));
      const usedEvent = b.mem.readU16(usedEventAddr(b));
      const numAdded = b.impl.numAdded;
      const nextUsed = b.impl.nextUsed;
      const { result: kick, accesses } = recording(b.mem, () => b.impl.prepareKick());
      checkAccesses(b, accesses, [b.rings.avail], "prepareKick");
      const want = S.prepareKick(b.spec, b.specMem);
      if (kick !== want.result) fail(`prepareKick ${kick}, spec ${want.result}`);
      b.spec = want.queue;
      if (!s.eventIdx) {
        // VIRTIO 1.1 §2.6.7.2: without suppression the device always notifies.
        if (!kick) fail("without EVENT_IDX prepareKick said no");
      } else if (usedEvent === u16(nextUsed - 1) && numAdded > 0 && !kick) {
        fail(`used_event == next_used - 1 (${usedEvent}) with ${numAdded} added, yet no notification`);
      }
      checkInSync(b, "after prepareKick");
    }),
    { numRuns: 400 },
  );

  property(
    "verifyPrepareKick",
    ["VQ-PREPARE-KICK"],
    fc.property(
      stateArb,
      fc.oneof(fc.nat(0xffff), fc.integer({ min: -4, max: 4 })),
      fc.boolean(),
      (s, eventDelta, nearNextUsed) => {
        const b = buildQueueState(s);
        withEventIdx(b);
        // used_event anywhere, or just around next_used where the interval's edges are.
        poke16(b, usedEventAddr(b), u16(nearNextUsed ? b.impl.nextUsed + eventDelta : eventDelta));
        const usedEvent = b.mem.readU16(usedEventAddr(b));
        const { nextUsed, numAdded } = b.impl;
        const before = snapshotOf(b.mem);
        const kick = b.impl.prepareKick();
        // used_event in the wrapped interval [next_used - num_added, next_used - 1].
        const inInterval = numAdded > 0 && u16(usedEvent - u16(nextUsed - numAdded)) < numAdded;
        if (kick !== inInterval)
          fail(`used_event ${usedEvent} next_used ${nextUsed} num_added ${numAdded}: kick ${kick}`);
        if (b.impl.numAdded !== 0) fail("num_added not reset");
        if (changedBytes(b.mem, before).length > 0) fail("prepareKick wrote memory");
        const want = S.prepareKick(b.spec, b.specMem);
        if (want.result !== kick) fail("spec disagrees");
        b.spec = want.queue;
        checkInSync(b, "after prepareKick");
      },
    ),
    { numRuns: 400 },
  );

  property(
    "verifyAddUsed",
    ["VQ-ADD-USED", "VQ-ADD-USED-INDEX"],
    fc.property(
      stateArb.chain((s) =>
        fc.tuple(
          fc.constant(s),
          fc.oneof(
            { weight: 3, arbitrary: fc.nat(s.placement.size - 1) },
            { weight: 1, arbitrary: fc.nat(0xffff) },
            { weight: 1, arbitrary: fc.constantFrom(s.placement.size, 0xffff, 0xffff_ffff) },
          ),
          fc.nat(0xffff_ffff),
        ),
      ),
      ([s, index, len]) => {
        const b = buildQueueState(s);
        const before = b.impl.state();
        const snap = snapshotOf(b.mem);
        const { result: r, accesses } = recording(b.mem, () => b.impl.addUsed(index, len));
        const slot = usedSlotAddr(b, before.nextUsed);
        if (r.ok) {
          if (b.impl.nextUsed !== u16(before.nextUsed + 1)) fail("next_used did not advance by exactly 1");
          if (b.impl.numAdded !== u16(before.numAdded + 1)) fail("num_added did not advance by 1");
          if (index >= b.placement.size) fail(`index ${index} >= size accepted`);
          if (changedBytes(b.mem, snap).some((c) => c.addr < slot || c.addr >= slot + USED_ELEM_SIZE))
            fail("addUsed wrote outside used.ring[next_used % size]");
          if (b.mem.readU32(slot + USED_ELEM_ID) !== index || b.mem.readU32(slot + USED_ELEM_LEN) !== len)
            fail("used entry not written");
          checkAccesses(b, accesses, [[slot, slot + USED_ELEM_SIZE]], "addUsed");
        } else {
          if (r.error._tag !== "DescIndexOutOfBounds" || index < b.placement.size)
            fail(`error ${show(r.error)}`);
          if (!same(b.impl.state(), before)) fail("a refused addUsed changed the queue");
          if (changedBytes(b.mem, snap).length > 0) fail("a refused addUsed wrote memory");
          if (accesses.length > 0) fail("a refused addUsed touched memory");
        }
        const want = S.addUsed(b.spec, b.specMem, index, len);
        if (!same(r, want.result)) fail(`result ${show(r)}, spec ${show(want.result)}`);
        b.spec = want.queue;
        b.specMem = want.memory;
        checkInSync(b, "after addUsed");
      },
    ),
    { numRuns: 400 },
  );

  property(
    "verifyIsEmpty",
    ["VQ-LEN"],
    fc.property(queueStateArb({ saneAvailIdx: false }), stateArb, fc.boolean(), (hostile, sane, pick) => {
      const b = buildQueueState(pick ? hostile : sane);
      const availIdx = b.mem.readU16(availIdxAddr(b));
      const { result: n, accesses } = recording(b.mem, () => b.impl.len());
      if (n !== u16(availIdx - b.impl.nextAvail))
        fail(`len ${n}, avail.idx ${availIdx}, next_avail ${b.impl.nextAvail}`);
      if ((n === 0) !== b.impl.isEmpty()) fail("isEmpty disagrees with len");
      if (n !== S.len(b.spec, b.specMem) || b.impl.isEmpty() !== S.isEmpty(b.spec, b.specMem))
        fail("spec disagrees");
      checkAccesses(b, accesses, [b.rings.avail], "len");
    }),
    { numRuns: 400 },
  );

  property(
    "verifyInitialize",
    ["VQ-INIT-READY", "VQ-INIT-SIZE", "VQ-INIT-ALIGN", "VQ-INIT-MEMORY", "VQ-INIT-ORDER", "VQ-INACTIVE"],
    fc.property(
      queuePlacementArb().chain((p) =>
        fc.record({
          p: fc.constant(p),
          seed: fc.integer(),
          maxLog: fc.nat(15),
          ready: fc.oneof(
            { weight: 5, arbitrary: fc.constant(true) },
            { weight: 1, arbitrary: fc.constant(false) },
          ),
          size: fc.oneof(
            { weight: 2, arbitrary: fc.constant(p.size) },
            { weight: 1, arbitrary: anyQueueSizeArb },
          ),
          rings: fc.oneof(
            fc.constant({
              descTable: BigInt(p.descTable),
              availRing: BigInt(p.availRing),
              usedRing: BigInt(p.usedRing),
            }),
            anyRingsArb(p.layout, p.size),
            // One ring moved, the others where they belong.
            fc.tuple(fc.nat(2), anyRingsArb(p.layout, p.size)).map(([k, any]) => ({
              descTable: k === 0 ? any.descTable : BigInt(p.descTable),
              availRing: k === 1 ? any.availRing : BigInt(p.availRing),
              usedRing: k === 2 ? any.usedRing : BigInt(p.usedRing),
            })),
          ),
        }),
      ),
      ({ p, seed, maxLog, ready, size, rings }) => {
        const maxSize = 2 ** maxLog;
        const mem = memoryOf(p, seed);
        const q = new SplitQueue(maxSize);
        const config = { size, ready, ...rings };
        q.configure(config);
        const r = q.initialize(mem);
        const spec = S.initialize(S.configure(S.newQueue(maxSize)!, config), mem.toSpecMemory(true));
        if (!same(r, spec.result)) fail(`initialize ${show(r)}, spec ${show(spec.result)}`);
        if (!same(q.state(), spec.queue)) fail("state differs from the spec's");
        if (r.ok) {
          if (
            rings.descTable % BigInt(DESC_TABLE_ALIGN) !== 0n ||
            rings.availRing % BigInt(AVAIL_RING_ALIGN) !== 0n ||
            rings.usedRing % BigInt(USED_RING_ALIGN) !== 0n
          )
            fail("a misaligned ring was accepted");
          if (!(size > 0 && (size & (size - 1)) === 0 && size <= MAX_QUEUE_SIZE && size <= maxSize))
            fail(`size ${size} accepted`);
          const bytes = ringBytes(size);
          if (
            !inLayout(p.layout, rings.descTable, BigInt(bytes.desc)) ||
            !inLayout(p.layout, rings.availRing, BigInt(bytes.avail)) ||
            !inLayout(p.layout, rings.usedRing, BigInt(bytes.used))
          )
            fail("a ring not inside one region was accepted");
        } else {
          // An inactive queue touches no memory (VQ-INACTIVE).
          const { result, accesses } = recording(mem, () => [
            q.pop(),
            q.addUsed(0, 0),
            q.publishUsed(),
            q.tryEnableNotification(),
            q.len(),
            q.prepareKick(),
          ]);
          if (accesses.length > 0) fail(`an inactive queue accessed ${show(accesses[0])}`);
          if (
            !same(result, [
              { ok: false, error: { _tag: "NotReady" } },
              { ok: false, error: { _tag: "NotReady" } },
              { ok: false, error: { _tag: "NotReady" } },
              { ok: false, error: { _tag: "NotReady" } },
              0,
              false,
            ])
          )
            fail(`inactive queue results ${show(result)}`);
        }
      },
    ),
    { numRuns: 300 },
  );

  property(
    "verifyAvailRingIdxGet",
    ["VQ-LAYOUT", "VQ-INIT-MEMORY"],
    fc.property(queueStateArb({ saneAvailIdx: false }), (s) => {
      const b = buildQueueState(s);
      const { result: idx, accesses } = recording(b.mem, () => b.impl.availIdx());
      if (accesses.length === 0) fail("availIdx read nothing");
      checkAccesses(b, accesses, [[availIdxAddr(b), availIdxAddr(b) + 2]], "availIdx");
      if (idx !== b.mem.readU16(availIdxAddr(b)) || idx !== S.availIdx(b.spec, b.specMem))
        fail("wrong avail.idx");
    }),
    { numRuns: 300 },
  );

  property(
    "verifyAvailRingRingGet",
    ["VQ-LAYOUT", "VQ-POP-HEAD", "VQ-INIT-MEMORY"],
    fc.property(stateArb, fc.nat(0xffff), (s, x) => {
      // Reading avail.ring[x % size] for any x: make x the next slot to pop.
      const b = buildQueueState({ ...s, nextAvail: x, ahead: 1 });
      const slot = availSlotAddr(b, x);
      const { result, accesses } = recording(b.mem, () => b.impl.pop());
      if (!accesses.some((a) => a.addr === slot && a.len === 2 && !a.write))
        fail(`avail.ring[${x % b.placement.size}] not read`);
      const ringAccesses = accesses.filter((a) => inRange(b.rings.avail, a.addr, a.len));
      checkAccesses(b, ringAccesses, [b.rings.avail], "pop");
      for (const a of accesses)
        if (!inMemory(b.placement, a) && inRange(b.rings.avail, a.addr, 0))
          fail("ring access outside memory");
      const head = b.mem.readU16(slot);
      if (result.ok && result.value !== null && result.value.headIndex !== head)
        fail("popped a head other than avail.ring[x]");
      const want = S.pop(b.spec, b.specMem);
      if (!same(popView(result), want.result))
        fail(`pop ${show(popView(result))}, spec ${show(want.result)}`);
      // And directly: readAvailRing(y) for any y, in bounds when y < size, -1 without a read otherwise.
      const y = x % 2 === 0 ? x % b.placement.size : x;
      const direct = recording(b.mem, () => b.impl.readAvailRing(y));
      if (y < b.placement.size) {
        const at = availSlotAddr(b, y);
        checkAccesses(b, direct.accesses, [[at, at + 2]], "readAvailRing");
        if (direct.result !== b.mem.readU16(at)) fail(`readAvailRing(${y}) = ${direct.result}`);
      } else if (direct.result !== -1 || direct.accesses.length > 0)
        fail(`readAvailRing(${y}) beyond the ring`);
      if (direct.result !== S.readAvailRing(b.spec, b.specMem, y)) fail("spec readAvailRing disagrees");
    }),
    { numRuns: 300 },
  );

  property(
    "verifyAvailRingUsedEventGet",
    ["VQ-EVENT-FIELDS", "VQ-LAYOUT", "VQ-INIT-MEMORY"],
    fc.property(stateArb, (s) => {
      const b = buildQueueState(s);
      const { result, accesses } = recording(b.mem, () => b.impl.usedEvent());
      if (accesses.length === 0) fail("usedEvent read nothing");
      checkAccesses(b, accesses, [[usedEventAddr(b), usedEventAddr(b) + 2]], "usedEvent");
      if (!same(result, { ok: true, value: b.mem.readU16(usedEventAddr(b)) }))
        fail(`usedEvent ${show(result)}`);
      if (!same(result, S.usedEvent(b.spec, b.specMem))) fail("spec disagrees");
    }),
    { numRuns: 300 },
  );

  property(
    "verifyUsedRingIdxSet",
    ["VQ-PUBLISH-USED", "VQ-LAYOUT", "VQ-INIT-MEMORY"],
    fc.property(stateArb, (s) => {
      const b = buildQueueState(s);
      const snap = snapshotOf(b.mem);
      const { result, accesses } = recording(b.mem, () => b.impl.publishUsed());
      if (!result.ok) fail("publishUsed failed on an active queue");
      const at = usedIdxAddr(b);
      checkAccesses(b, accesses, [[at, at + 2]], "publishUsed");
      if (!accesses.some((a) => a.write)) fail("publishUsed reported no write");
      if (b.mem.readU16(at) !== b.impl.nextUsed) fail("used.idx != next_used");
      if (changedBytes(b.mem, snap).some((c) => c.addr < at || c.addr >= at + 2))
        fail("wrote outside used.idx");
      const want = S.publishUsed(b.spec, b.specMem);
      b.specMem = want.memory;
      checkInSync(b, "after publishUsed");
    }),
    { numRuns: 300 },
  );

  property(
    "verifyUsedRingRingSet",
    ["VQ-ADD-USED", "VQ-LAYOUT", "VQ-INIT-MEMORY"],
    fc.property(stateArb, fc.nat(0xffff), fc.nat(), (s, x, index) => {
      // Writing used.ring[x % size] for any x: make x next_used.
      const b = buildQueueState({ ...s, nextUsed: x });
      const i = index % b.placement.size;
      const slot = usedSlotAddr(b, x);
      const { result, accesses } = recording(b.mem, () => b.impl.addUsed(i, index));
      if (!result.ok) fail("addUsed of a valid index failed");
      checkAccesses(b, accesses, [[slot, slot + USED_ELEM_SIZE]], "addUsed");
      if (!accesses.some((a) => a.write && a.addr === slot))
        fail(`used.ring[${x % b.placement.size}] not written`);
      const want = S.addUsed(b.spec, b.specMem, i, index);
      b.spec = want.queue;
      b.specMem = want.memory;
      checkInSync(b, "after addUsed");
    }),
    { numRuns: 300 },
  );

  property(
    "verifyUsedRingAvailEvent",
    ["VQ-EVENT-FIELDS", "VQ-LAYOUT"],
    fc.property(stateArb, fc.integer({ min: -1, max: 0x1_0000 }), (s, v) => {
      const b = buildQueueState(s);
      const { result, accesses } = recording(
        b.mem,
        () => [b.impl.setAvailEvent(v), b.impl.availEvent()] as const,
      );
      if (!same(result[1], { ok: true, value: u16(v) })) fail(`wrote ${v}, read back ${show(result[1])}`);
      checkAccesses(b, accesses, [[availEventAddr(b), availEventAddr(b) + 2]], "avail_event");
      if (b.mem.readU16(availEventAddr(b)) !== u16(v)) fail("used.avail_event in memory differs");
      const w = S.setAvailEvent(b.spec, b.specMem, v);
      b.specMem = w.memory;
      if (!same(S.availEvent(b.spec, b.specMem), result[1])) fail("spec reads back another value");
      checkInSync(b, "after setAvailEvent");
    }),
    { numRuns: 300 },
  );

  property(
    "verifyPop",
    ["VQ-POP-EMPTY", "VQ-POP-HEAD", "VQ-POP-ADVANCE", "VQ-POP-AVAIL-IDX"],
    fc.property(stateArb, fc.nat(), (s, ahead) => {
      // Assuming len <= size (a sane avail.idx).
      const b = buildQueueState({ ...s, ahead: s.ahead ?? ahead % (s.placement.size + 1) });
      const len = b.impl.len();
      if (len > b.placement.size) fail("set-up: len > size");
      const before = b.impl.nextAvail;
      const snap = snapshotOf(b.mem);
      const { result: r, accesses } = recording(b.mem, () => b.impl.pop());
      if (!r.ok) return fail(`pop errored with len ${len} <= size: ${show(r.error)}`);
      if (r.value !== null) {
        if (len === 0) fail("popped from an empty queue");
        if (b.impl.nextAvail !== u16(before + 1)) fail("next_avail did not advance by exactly 1");
      } else if (b.impl.nextAvail !== before) fail("next_avail moved without a chain");
      if (accesses.some((a) => a.write) || changedBytes(b.mem, snap).length > 0) fail("pop wrote memory");
      for (const a of accesses)
        if (
          !inRange(b.rings.avail, a.addr, a.len) &&
          !inRange(b.rings.desc, a.addr, a.len) &&
          !inIndirectTable(b.mem, b.placement, a) &&
          // An attempt outside every region is refused by locate (memory properties), not an access.
          inMemory(b.placement, a)
        )
          fail(`pop read ${show(a)} outside the avail ring, the table and indirect tables`);
      const want = S.pop(b.spec, b.specMem);
      if (!same(popView(r), want.result)) fail(`pop ${show(popView(r))}, spec ${show(want.result)}`);
      b.spec = want.queue;
      checkInSync(b, "after pop");
    }),
    { numRuns: 400 },
  );

  property(
    "verifyUndoPop",
    ["VQ-UNDO-POP", "VQ-POP-ADVANCE"],
    fc.property(stateArb, (s) => {
      const b = buildQueueState(s);
      const before = b.impl.state();
      const first = b.impl.pop();
      if (first.ok && first.value !== null) {
        const chain = popView(first);
        b.impl.undoPop();
        if (!same(b.impl.state(), before))
          fail(`state after pop+undoPop ${show(b.impl.state())} != ${show(before)}`);
        // The same chain pops again.
        const again = popView(b.impl.pop());
        if (!same(again, chain)) fail("the chain popped after undoPop differs");
        b.spec = S.undoPop(S.pop(b.spec, b.specMem).queue);
        b.spec = S.pop(b.spec, b.specMem).queue;
        checkInSync(b, "after pop, undoPop, pop");
      } else if (!same(b.impl.state(), before)) fail("a pop without a chain changed the state");
    }),
    { numRuns: 400 },
  );

  property(
    "verifyTryEnableNotification",
    ["VQ-TRY-ENABLE-NOTIFICATION"],
    fc.property(stateArb, (s) => {
      const b = buildQueueState(s);
      const { result: r, accesses } = recording(b.mem, () => b.impl.tryEnableNotification());
      if (r.ok && r.value && s.eventIdx) {
        if (b.impl.len() !== 0) fail("true with chains available");
        if (b.impl.availIdx() !== b.impl.nextAvail) fail("true while avail.idx != next_avail");
      }
      if (!r.ok && (r.error._tag !== "InvalidAvailIdx" || !s.eventIdx)) fail(`error ${show(r.error)}`);
      checkAccesses(b, accesses, [b.rings.avail, b.rings.used], "tryEnableNotification");
      for (const a of accesses)
        if (a.write && !inRange(b.rings.used, a.addr, a.len)) fail("wrote outside the used ring");
      const want = S.tryEnableNotification(b.spec, b.specMem);
      if (!same(r, want.result)) fail(`result ${show(r)}, spec ${show(want.result)}`);
      b.spec = want.queue;
      b.specMem = want.memory;
      checkInSync(b, "after tryEnableNotification");
    }),
    { numRuns: 400 },
  );
});

/** Fresh memory for a placement, with random contents. */
const memoryOf = (p: QueuePlacement, seed: number): GuestMemory => buildQueueState(emptyState(p, seed)).mem;

const emptyState = (p: QueuePlacement, seed: number): QueueState => ({
  placement: p,
  seed,
  maxSize: MAX_QUEUE_SIZE,
  eventIdx: false,
  nextAvail: 0,
  nextUsed: 0,
  numAdded: 0,
  ahead: undefined,
  heads: [],
  planted: [],
});

describe("rust-vmm virtio-queue Kani harnesses", () => {
  /**
   * verify_device_notification_suppression, through a real run: the driver adds chains and
   * asks (used_event = the last used idx it will see - 1) to be interrupted after the batch;
   * the device pops, completes and publishes them; prepareKick MUST then say notify. Without
   * EVENT_IDX the device always notifies, and prepareKick(true) too when NO_INTERRUPT is clear.
   */
  property(
    "verifyDeviceNotificationSuppression",
    ["VQ-PREPARE-KICK", "VQ-NO-INTERRUPT", "VQ-EVENT-IDX"],
    fc.property(
      queuePlacementArb({ maxSize: 4096 }).chain((p) =>
        fc.record({
          p: fc.constant(p),
          seed: fc.integer(),
          eventIdx: fc.boolean(),
          start: fc.nat(0xffff),
          batches: fc.array(
            fc.array(chainBuffersArb(p.data, 3), { minLength: 1, maxLength: Math.min(p.size, 4) }),
            {
              minLength: 1,
              maxLength: 3,
            },
          ),
          eventDelta: fc.integer({ min: -3, max: 3 }),
        }),
      ),
      ({ p, seed, eventIdx, start, batches, eventDelta }) => {
        const mem = memoryOf(p, seed);
        const driver = new SplitDriver(mem, p.size, p);
        const q = new SplitQueue(MAX_QUEUE_SIZE);
        q.configure({
          size: p.size,
          ready: true,
          descTable: p.descTable,
          availRing: p.availRing,
          usedRing: p.usedRing,
        });
        if (eventIdx) q.enableNotifSuppression();
        if (!q.initialize(mem).ok) return fail("initialize failed");
        // Start anywhere in the u16 index space so that wrap-around is exercised.
        q.setPositions({ nextAvail: start, nextUsed: start });
        driver.setAvailIdx(start);
        driver.lastUsedIdx = start;
        for (const batch of batches) {
          let offered = 0;
          for (const bufs of batch) if (driver.addChain(bufs) !== undefined) offered++;
          const numAddedBefore = q.numAdded;
          let added = 0;
          for (let r = q.pop(); r.ok && r.value !== null; r = q.pop()) {
            if (!q.addUsed(r.value.headIndex, 0).ok) fail("addUsed failed");
            added++;
          }
          if (added !== offered) fail(`popped ${added} of ${offered}`);
          q.publishUsed();
          driver.reapUsed();
          // The driver wants an interrupt once used.idx passes used_event.
          const usedEvent = u16(q.nextUsed - 1 + eventDelta);
          driver.setUsedEvent(usedEvent);
          driver.setAvailFlags(0);
          const spec = S.prepareKick(
            S.setPositions(q.state(), { numAdded: q.numAdded }),
            mem.toSpecMemory(true),
          );
          const kick = q.prepareKick();
          if (kick !== spec.result) fail("spec disagrees");
          if (!eventIdx && !kick) fail("without EVENT_IDX the device must always notify");
          if (eventIdx && eventDelta === 0 && numAddedBefore + added > 0 && !kick)
            fail(`used_event == next_used - 1 after ${added} added, yet no notification`);
          if (!eventIdx && !q.prepareKick(true)) fail("NO_INTERRUPT clear, yet prepareKick(true) said no");
        }
      },
    ),
    { numRuns: 300 },
  );

  /**
   * verify_add_used (disabled upstream, vm-virtio issue 373): rust-vmm's add_used also
   * publishes used.idx, so here it is addUsed followed by publishUsed.
   */
  property(
    "verifyAddUsedRustVmm",
    ["VQ-ADD-USED", "VQ-ADD-USED-INDEX", "VQ-PUBLISH-USED"],
    fc.property(
      stateArb.chain((s) =>
        fc.tuple(fc.constant(s), fc.oneof(fc.nat(s.placement.size - 1), fc.nat(0xffff)), fc.nat(0xffff_ffff)),
      ),
      ([s, index, len]) => {
        const b = buildQueueState(s);
        const before = b.impl.state();
        const snap = snapshotOf(b.mem);
        const r = b.impl.addUsed(index, len);
        if (r.ok) {
          b.impl.publishUsed();
          if (b.impl.nextUsed !== u16(before.nextUsed + 1)) fail("next_used did not advance by 1");
          if (b.mem.readU16(usedIdxAddr(b)) !== b.impl.nextUsed) fail("used.idx in memory != next_used");
          if (b.impl.numAdded !== u16(before.numAdded + 1)) fail("num_added did not advance by 1");
          const s1 = S.addUsed(b.spec, b.specMem, index, len);
          const s2 = S.publishUsed(s1.queue, s1.memory);
          b.spec = s2.queue;
          b.specMem = s2.memory;
          checkInSync(b, "after addUsed + publishUsed");
        } else {
          if (index < b.placement.size) fail(`index ${index} < size refused`);
          if (!same(b.impl.state(), before)) fail("state changed on error");
          if (changedBytes(b.mem, snap).length > 0) fail("memory changed on error");
        }
      },
    ),
    { numRuns: 300 },
  );
});

/** The spec's view of an impl queue's state. */
