import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import { createMemory, type SpecMemory } from "../../spec/memory.ts";
import * as P from "../../spec/packed-queue.ts";
import type { Result } from "../../spec/result.ts";
import { PackedDescriptorChain } from "./packed-chain.ts";
import { PackedDriver, availFlags } from "./packed-driver.ts";
import { PackedQueue, PopStatus, type PackedQueueError } from "./packed-queue.ts";
import { packedPopView, packedPopped, packedWalk } from "../../properties/arbitraries/packed.ts";
import {
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_USED,
} from "../../wire/packed.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";

const NEXT = VIRTQ_DESC_F_NEXT;
const WRITE = VIRTQ_DESC_F_WRITE;
const INDIRECT = VIRTQ_DESC_F_INDIRECT;
const AVAIL = VIRTQ_DESC_F_AVAIL;
const USED = VIRTQ_DESC_F_USED;

const toSpec = (m: GuestMemory): SpecMemory => {
  const r = createMemory(m.regions.map((x) => ({ base: BigInt(x.base), bytes: x.bytes })));
  if (!r.ok) throw new Error(r.error._tag);
  return r.value;
};
const sameBytes = (a: GuestMemory, b: SpecMemory): boolean =>
  a.regions.every((r, i) => Buffer.compare(r.bytes, b.regions[i]!.bytes) === 0);

type Popped = Result<P.SpecPackedPopped | null, PackedQueueError>;

/**
 * A packed queue run on impl and spec side by side: every `step` checks the two results, the
 * two states and the two memories are equal. The driver writes the impl's memory; the spec
 * sees a copy of it before each step.
 */
class Pair {
  readonly m: GuestMemory;
  readonly q: PackedQueue;
  s: P.SpecPackedQueue;
  readonly drv: PackedDriver;
  readonly chain: PackedDescriptorChain;

  constructor(
    size = 8,
    opts: { eventIdx?: boolean; inOrder?: boolean; maxSize?: number; memSize?: number } = {},
  ) {
    this.m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(opts.memSize ?? 0x10000) }]);
    this.drv = PackedDriver.at(this.m, size, 0x100, { inOrder: opts.inOrder === true });
    this.q = new PackedQueue(opts.maxSize ?? 256);
    this.s = P.newQueue(opts.maxSize ?? 256)!;
    this.chain = new PackedDescriptorChain(this.m);
    const cfg = {
      size,
      ready: true,
      descTable: BigInt(this.drv.layout.descTable),
      availRing: BigInt(this.drv.layout.availRing),
      usedRing: BigInt(this.drv.layout.usedRing),
    };
    this.q.configure(cfg);
    this.s = P.configure(this.s, cfg);
    if (opts.eventIdx === true) {
      this.q.enableNotifSuppression();
      this.s = P.enableNotifSuppression(this.s);
    }
    if (opts.inOrder === true) {
      this.q.enableInOrder();
      this.s = P.enableInOrder(this.s);
    }
    expect(this.step(() => this.q.initialize(this.m), P.initialize)).toEqual({ ok: true, value: undefined });
  }

  step<A, B>(
    impl: () => A,
    spec: (q: P.SpecPackedQueue, m: SpecMemory) => P.Step<B>,
    view?: (a: A) => unknown,
  ): A {
    const before = toSpec(this.m);
    const a = impl();
    const st = spec(this.s, before);
    this.s = st.queue;
    expect(view === undefined ? a : view(a)).toEqual(st.result);
    expect(this.q.state()).toEqual(this.s);
    expect(sameBytes(this.m, st.memory)).toBe(true);
    return a;
  }

  pop(): Popped {
    return packedPopView(this.step(() => this.q.pop(), P.pop, packedPopView));
  }
  /** popInto with the reused chain, as a spec pop result. */
  popInto(): Popped {
    return this.step(() => {
      if (this.q.popInto(this.chain)) return { ok: true, value: packedPopped(this.chain) } as Popped;
      return (
        this.q.lastPop === PopStatus.Error
          ? { ok: false, error: this.q.lastError! }
          : { ok: true, value: null }
      ) as Popped;
    }, P.pop);
  }
  popOrEnable(): Popped {
    return packedPopView(
      this.step(() => this.q.popOrEnableNotification(), P.popOrEnableNotification, packedPopView),
    );
  }
  undoPop(): void {
    this.step(
      () => this.q.undoPop(),
      (q, m) => ({ queue: P.undoPop(q), memory: m, result: undefined }),
    );
  }
  addUsed(id: number, len: number): Result<void, PackedQueueError> {
    return this.step(
      () => this.q.addUsed(id, len),
      (q, m) => P.addUsed(q, m, id, len),
    );
  }
  publish(): void {
    expect(this.step(() => this.q.publishUsed(), P.publishUsed).ok).toBe(true);
  }
  prepareKick(): boolean {
    return this.step(() => this.q.prepareKick(), P.prepareKick);
  }
  tryEnable(): Result<boolean, PackedQueueError> {
    return this.step(() => this.q.tryEnableNotification(), P.tryEnableNotification);
  }
  enable(): Result<boolean, PackedQueueError> {
    return this.step(() => this.q.enableNotification(), P.enableNotification);
  }
  disable(): void {
    this.step(() => this.q.disableNotification(), P.disableNotification);
  }
  /** Pops one chain and expects it; walking it again gives the same walk (the cursor rewinds). */
  popOk(): P.SpecPackedPopped {
    const r = this.popInto();
    if (r.ok && r.value !== null) expect(packedWalk(this.chain)).toEqual(r.value.walk);
    if (!r.ok || r.value === null)
      throw new Error(
        `expected a chain, got ${JSON.stringify(r, (_k, v: unknown) => (typeof v === "bigint" ? `${v}` : v))}`,
      );
    return r.value;
  }
  slotAddr(slot: number): number {
    return this.drv.layout.descTable + 16 * slot;
  }
}

const buf = (addr: number, len: number, write = false) => ({ addr, len, write });

describe("packed queue: descriptors, availability, chains", () => {
  it("a one-descriptor chain is popped with its buffer id and slot [PVQ-DESC-LAYOUT PVQ-CHAIN-NEXT PVQ-BUFFER-ID PVQ-POP-ADVANCE]", () => {
    const p = new Pair(4);
    const id = p.drv.addChain([buf(0x4000, 64)])!;
    const c = p.popOk();
    expect(c).toMatchObject({ id, head: 0, wrap: true, slots: 1 });
    expect(c.walk.descriptors).toEqual([
      { index: 0, addr: 0x4000n, len: 64, id, flags: AVAIL, indirect: false },
    ]);
    expect(p.q.state()).toMatchObject({
      nextAvail: 1,
      availWrap: true,
      inFlight: [{ id, head: 0, wrap: true, slots: 1 }],
    });
    expect(p.pop()).toEqual({ ok: true, value: null });
  });

  it("a zeroed ring, a used descriptor and a descriptor of the other lap are not available [PVQ-AVAIL]", () => {
    const p = new Pair(4);
    expect(p.pop()).toEqual({ ok: true, value: null });
    expect(p.q.isEmpty()).toBe(true);
    for (const flags of [AVAIL | USED, 0, USED, AVAIL | USED | NEXT]) {
      p.drv.writeSlot(0, { addr: 0x4000, len: 1, id: 0, flags });
      expect(p.pop()).toEqual({ ok: true, value: null });
      expect(p.q.isEmpty()).toBe(true);
    }
    p.drv.writeSlot(0, { addr: 0x4000, len: 1, id: 0, flags: AVAIL });
    expect(p.q.isEmpty()).toBe(false);
    expect(p.popOk().id).toBe(0);
  });

  it("the first descriptor's flags make the chain available; later ones are not checked [PVQ-CHAIN-NEXT PVQ-DRIVER-AVAIL]", () => {
    const p = new Pair(4);
    const id = p.drv.addChain([buf(0x4000, 8), buf(0x5000, 16, true)], { publish: false })!;
    expect(p.pop()).toEqual({ ok: true, value: null }); // written, first flags held back
    p.drv.publish();
    // Corrupt the second descriptor's AVAIL/USED bits: the device does not look at them.
    p.drv.writeSlot(1, { addr: 0x5000, len: 16, id, flags: WRITE | USED | AVAIL });
    const c = p.popOk();
    expect(c.slots).toBe(2);
    expect(c.walk.descriptors.map((d) => [d.index, d.len])).toEqual([
      [0, 8],
      [1, 16],
    ]);
  });

  it("a chain crossing the ring's end continues at slot 0 and flips next_avail's wrap counter [PVQ-WRAP PVQ-CHAIN-NEXT]", () => {
    const p = new Pair(3);
    for (let lap = 0; lap < 40; lap++) {
      const ids = [p.drv.addChain([buf(0x4000, 1), buf(0x4100, 2, true)])!];
      const c = p.popOk();
      expect(c.id).toBe(ids[0]);
      expect(c.slots).toBe(2);
      expect(p.addUsed(c.id, 2)).toEqual({ ok: true, value: undefined });
      p.publish();
      expect(p.drv.reapUsed()).toEqual([{ id: c.id, len: 2, skipped: false }]);
    }
    // 80 slots over a ring of 3: both sides crossed the end 26 times.
    expect(p.q.state()).toMatchObject({
      nextAvail: 80 % 3,
      availWrap: true,
      nextUsed: 80 % 3,
      usedWrap: true,
    });
    expect(p.drv.numFree).toBe(3);
  });

  it("a chain of `size` descriptors all with NEXT takes the whole ring and ends ChainTtlExpired [PVQ-CHAIN-LIMIT]", () => {
    const p = new Pair(3);
    for (let i = 0; i < 3; i++) p.drv.writeSlot(i, { addr: 0x4000, len: 1, id: 2, flags: NEXT | AVAIL });
    const c = p.popOk();
    expect(c.slots).toBe(3);
    expect(c.walk.descriptors).toHaveLength(3);
    expect(c.walk.end).toEqual({ _tag: "ChainTtlExpired", limit: 3 });
    expect(p.q.state()).toMatchObject({ nextAvail: 0, availWrap: false });
  });

  it("the buffer id is the last ring descriptor's [PVQ-BUFFER-ID]", () => {
    const p = new Pair(4);
    p.drv.writeSlot(1, { addr: 0x4000, len: 1, id: 3, flags: AVAIL });
    p.drv.writeSlot(0, { addr: 0x4000, len: 1, id: 1, flags: NEXT | AVAIL });
    expect(p.popOk()).toMatchObject({ id: 3, slots: 2 });
  });

  it("descriptor lengths summing past 2^32 - 1 end the walk [PVQ-LEN-U32]", () => {
    const p = new Pair(4);
    p.drv.addChain([buf(0x4000, 0xffff_fff0), buf(0x4000, 0xf), buf(0x4000, 1)]);
    const c = p.popOk();
    expect(c.walk.descriptors).toHaveLength(2);
    expect(c.walk.end).toEqual({ _tag: "DescriptorChainOverflow", index: 2, len: 1 });
  });
});

describe("packed queue: indirect tables", () => {
  it("an indirect chain takes one slot and walks every table entry, ignoring NEXT and INDIRECT there [PVQ-INDIRECT]", () => {
    const p = new Pair(4);
    const id = p.drv.addChain([buf(0x4000, 8), buf(0x5000, 32, true)], { indirectTable: 0x3003 })!;
    // Flags other than WRITE in the table are ignored.
    p.drv.writeSlot(0, { addr: 0x4000, len: 8, id: 9, flags: NEXT | INDIRECT }, 0x3003);
    const c = p.popOk();
    expect(c).toMatchObject({ id, slots: 1 });
    expect(c.walk.descriptors).toEqual([
      { index: 0, addr: 0x4000n, len: 8, id: 9, flags: NEXT | INDIRECT, indirect: true },
      { index: 1, addr: 0x5000n, len: 32, id: 0, flags: WRITE, indirect: true },
    ]);
    expect(c.walk.end).toBeNull();
  });

  it("a bad table len or a table outside memory ends the walk with a typed error [PVQ-INDIRECT-LEN]", () => {
    const p = new Pair(4);
    for (const len of [0, 15, 0x10_0000]) {
      p.drv.writeSlot(p.q.nextAvail, {
        addr: 0x3000,
        len,
        id: 0,
        flags: INDIRECT | availFlags(p.q.state().availWrap),
      });
      const c = p.popOk();
      expect(c.walk.end).toEqual({ _tag: "InvalidIndirectDescriptorTable", len });
      expect(p.addUsed(0, 0).ok).toBe(true);
    }
    p.drv.writeSlot(p.q.nextAvail, {
      addr: 0xfff0,
      len: 32,
      id: 0,
      flags: INDIRECT | availFlags(p.q.state().availWrap),
    });
    const c = p.popOk();
    expect(c.walk.descriptors).toHaveLength(1);
    expect(c.walk.end).toEqual({ _tag: "InvalidGuestAddress", addr: 0x10000n, len: 16n });
  });

  it("INDIRECT after the first descriptor of a chain ends the walk, the slots still follow NEXT [PVQ-INDIRECT-IN-CHAIN]", () => {
    const p = new Pair(4);
    p.drv.writeSlot(1, { addr: 0x3000, len: 16, id: 0, flags: INDIRECT | NEXT | AVAIL });
    p.drv.writeSlot(2, { addr: 0x4000, len: 4, id: 1, flags: AVAIL });
    p.drv.writeSlot(0, { addr: 0x4000, len: 4, id: 0, flags: NEXT | AVAIL });
    const c = p.popOk();
    expect(c).toMatchObject({ id: 1, slots: 3 });
    expect(c.walk.descriptors).toHaveLength(1);
    expect(c.walk.end).toEqual({ _tag: "InvalidIndirectDescriptor", index: 1 });
  });
});

describe("packed queue: buffer ids, completion, undo", () => {
  it("an id >= size or already in flight is refused and nothing changes [PVQ-POP-ID PVQ-GUEST-INPUT]", () => {
    const p = new Pair(4);
    p.drv.writeSlot(0, { addr: 0x4000, len: 1, id: 4, flags: AVAIL });
    expect(p.popInto()).toEqual({ ok: false, error: { _tag: "InvalidBufferId", id: 4, size: 4 } });
    expect(p.q.lastPop).toBe(PopStatus.Error);
    p.drv.writeSlot(0, { addr: 0x4000, len: 1, id: 2, flags: AVAIL });
    expect(p.popOk().id).toBe(2);
    p.drv.writeSlot(1, { addr: 0x4000, len: 1, id: 2, flags: AVAIL });
    expect(p.pop()).toEqual({ ok: false, error: { _tag: "BufferIdInUse", id: 2 } });
    expect(p.q.nextAvail).toBe(1);
    // The guest fixes the descriptor: served again.
    p.drv.writeSlot(1, { addr: 0x4000, len: 1, id: 3, flags: AVAIL });
    expect(p.popOk().id).toBe(3);
  });

  it("addUsed of an id not in flight is BufferIdNotInFlight and writes nothing [PVQ-ADD-USED]", () => {
    const p = new Pair(4);
    for (const id of [0, 3, 4, -1, 1.5, 0x1_0000]) {
      expect(p.addUsed(id, 1)).toEqual({ ok: false, error: { _tag: "BufferIdNotInFlight", id } });
    }
  });

  it("out of order: each used descriptor is written at next_used and skips its own buffer's slots [PVQ-ADD-USED PVQ-USED-FLAGS PVQ-DRIVER-USED]", () => {
    const p = new Pair(8);
    const a = p.drv.addChain([buf(0x4000, 4), buf(0x4100, 64, true)])!;
    const b = p.drv.addChain([buf(0x4200, 4)])!;
    p.popOk();
    p.popOk();
    p.addUsed(b, 0);
    expect(p.q.state().pending).toEqual([{ slot: 0, flags: AVAIL | USED }]);
    p.addUsed(a, 10);
    expect(p.q.state().pending).toEqual([
      { slot: 0, flags: AVAIL | USED },
      { slot: 1, flags: AVAIL | USED | WRITE },
    ]);
    expect(p.drv.reapUsed()).toEqual([]); // not published yet
    p.publish();
    expect(p.drv.reapUsed()).toEqual([
      { id: b, len: 0, skipped: false },
      { id: a, len: 10, skipped: false },
    ]);
    expect(p.drv.readSlot(0)).toMatchObject({ id: b, len: 0, addr: 0x4000n });
  });

  it("publishUsed writes the batch's flags with the first one last [PVQ-PUBLISH-USED]", () => {
    const p = new Pair(8);
    const ids = [0, 1, 2].map(() => p.drv.addChain([buf(0x4000, 4)])!);
    for (const _ of ids) p.popOk();
    for (const id of ids) p.addUsed(id, 1);
    const writes: number[] = [];
    p.m.recorder = (addr, _len, write) => {
      if (write) writes.push(addr);
    };
    p.publish();
    p.m.recorder = null;
    expect(writes).toEqual([p.slotAddr(1) + 14, p.slotAddr(2) + 14, p.slotAddr(0) + 14]);
  });

  it("addUsed publishes first when the unpublished used descriptors would span more than `size` slots [PVQ-PUBLISH-USED]", () => {
    const p = new Pair(2);
    for (let round = 0; round < 3; round++) {
      // A hostile driver re-offers slots whose used flags it has not been shown.
      const wrap = p.q.state().availWrap;
      p.drv.writeSlot(p.q.nextAvail, { addr: 0x4000, len: 1, id: round % 2, flags: availFlags(wrap) });
      p.popOk();
      p.addUsed(round % 2, 1);
    }
    expect(p.q.state().pending).toHaveLength(1);
  });

  it("with IN_ORDER one used descriptor completes every older buffer [PVQ-IN-ORDER PVQ-DRIVER-USED]", () => {
    const p = new Pair(8, { inOrder: true });
    const a = p.drv.addChain([buf(0x4000, 4), buf(0x4100, 100, true)])!;
    const b = p.drv.addChain([buf(0x4200, 7, true)])!;
    const c = p.drv.addChain([buf(0x4300, 4)])!;
    p.popOk();
    p.popOk();
    p.popOk();
    expect(p.addUsed(b, 5).ok).toBe(true);
    expect(p.q.state()).toMatchObject({ nextUsed: 3, pending: [{ slot: 0, flags: AVAIL | USED | WRITE }] });
    expect(p.q.state().inFlight.map((x) => x.id)).toEqual([c]);
    p.publish();
    expect(p.drv.reapUsed()).toEqual([
      { id: a, len: 100, skipped: true },
      { id: b, len: 5, skipped: false },
    ]);
    p.addUsed(c, 0);
    p.publish();
    expect(p.drv.reapUsed()).toEqual([{ id: c, len: 0, skipped: false }]);
  });

  it("undoPop gives back the newest buffer while it ends at next_avail, repeatedly [PVQ-UNDO-POP]", () => {
    const p = new Pair(8);
    const a = p.drv.addChain([buf(0x4000, 4)])!;
    const b = p.drv.addChain([buf(0x4000, 4), buf(0x4000, 4)])!;
    const c = p.drv.addChain([buf(0x4000, 4)])!;
    p.popOk();
    p.popOk();
    p.popOk();
    p.addUsed(a, 0); // net's pattern: complete the first, give back the rest
    p.undoPop();
    p.undoPop();
    expect(p.q.state()).toMatchObject({ nextAvail: 1, inFlight: [] });
    p.undoPop(); // a is no longer in flight: nothing
    expect(p.q.nextAvail).toBe(1);
    expect(p.popOk().id).toBe(b);
    expect(p.popOk().id).toBe(c);
    p.addUsed(c, 0);
    p.undoPop(); // the newest in flight (b) does not end at next_avail
    expect(p.q.nextAvail).toBe(4);
  });
});

describe("packed queue: event suppression", () => {
  it("prepareKick: DISABLE is false, ENABLE and reserved 3 are true, DESC needs EVENT_IDX [PVQ-NOTIFY-DRIVER PVQ-EVENT-LAYOUT]", () => {
    const p = new Pair(4);
    p.drv.addChain([buf(0x4000, 4)]);
    p.addUsed(p.popOk().id, 0);
    p.drv.setDriverEvent(0, RING_EVENT_FLAGS_DISABLE);
    expect(p.prepareKick()).toBe(false);
    for (const flags of [RING_EVENT_FLAGS_ENABLE, 3, RING_EVENT_FLAGS_DESC, 0xfffc]) {
      p.drv.setDriverEvent(0x8003, flags);
      expect(p.prepareKick()).toBe(true);
    }
  });

  it("prepareKick with EVENT_IDX: the event descriptor among the slots used since the last call, across the wrap [PVQ-NOTIFY-DRIVER PVQ-EVENT-FIELDS]", () => {
    const p = new Pair(4, { eventIdx: true });
    const round = (n: number): void => {
      for (let i = 0; i < n; i++) p.drv.addChain([buf(0x4000, 4)]);
      for (let i = 0; i < n; i++) p.addUsed(p.popOk().id, 0);
      p.publish();
      p.drv.reapUsed();
    };
    round(3); // used slots 0..2; next_used (3, wrap 1)
    p.drv.setDriverEvent(0x8000 | 2, RING_EVENT_FLAGS_DESC);
    expect(
      p.step(
        () => p.q.driverEvent(),
        (q, m) => ({ queue: q, memory: m, result: P.driverEvent(q, m) }),
      ),
    ).toEqual({
      ok: true,
      value: { offWrap: 0x8002, flags: 2 },
    });
    expect(p.prepareKick()).toBe(true);
    round(2); // slots 3, 0 (wrap 0): next_used (1, wrap 0)
    p.drv.setDriverEvent(0x8000 | 2, RING_EVENT_FLAGS_DESC); // slot 2 of the old lap: already notified
    expect(p.prepareKick()).toBe(false);
    round(2); // slots 1, 2 (wrap 0)
    p.drv.setDriverEvent(0 | 2, RING_EVENT_FLAGS_DESC);
    expect(p.prepareKick()).toBe(true);
    p.drv.setDriverEvent(0x8000 | 3, RING_EVENT_FLAGS_DESC);
    round(1); // slot 3, wrap 0; the event names slot 3 of the wrap-1 lap
    expect(p.prepareKick()).toBe(false);
  });

  it("enable / disable write the Device Area; the driver's kick decision reads it [PVQ-NOTIFY-DEVICE PVQ-DRIVER-KICK]", () => {
    const p = new Pair(4, { eventIdx: true });
    p.disable();
    expect(p.drv.deviceEvent().flags).toBe(RING_EVENT_FLAGS_DISABLE);
    p.drv.addChain([buf(0x4000, 4)]);
    expect(p.drv.kickPrepare().need).toBe(false);
    expect(p.enable()).toEqual({ ok: true, value: true });
    expect(p.drv.deviceEvent()).toEqual({ offWrap: 0x8000, flags: RING_EVENT_FLAGS_DESC });
    p.drv.addChain([buf(0x4000, 4)]); // slot 1: the event names slot 0, already passed
    expect(p.drv.kickPrepare().need).toBe(false);
    p.addUsed(p.popOk().id, 0);
    p.addUsed(p.popOk().id, 0);
    p.publish();
    p.drv.reapUsed();
    expect(p.enable()).toEqual({ ok: true, value: false });
    expect(p.drv.deviceEvent().offWrap).toBe(0x8002);
    p.drv.addChain([buf(0x4000, 4), buf(0x4000, 4), buf(0x4000, 4)]); // slots 2, 3, 0: passes 2
    expect(p.drv.kickPrepare().need).toBe(true);
  });

  it("tryEnableNotification and popOrEnableNotification [PVQ-TRY-ENABLE PVQ-POP-OR-ENABLE]", () => {
    for (const eventIdx of [false, true]) {
      const p = new Pair(4, { eventIdx });
      p.disable();
      expect(p.tryEnable()).toEqual({ ok: true, value: true });
      expect(p.drv.deviceEvent().flags).toBe(eventIdx ? RING_EVENT_FLAGS_DESC : RING_EVENT_FLAGS_ENABLE);
      p.disable();
      p.drv.addChain([buf(0x4000, 4)]);
      expect(p.tryEnable()).toEqual({ ok: true, value: false });
      expect(p.drv.deviceEvent().flags).toBe(RING_EVENT_FLAGS_DISABLE); // nothing written
      expect(p.popOrEnable()).toMatchObject({ ok: true, value: { slots: 1 } });
      expect(p.popOrEnable()).toEqual({ ok: true, value: null });
    }
  });
});

describe("packed queue: configuration", () => {
  it("max size is an integer in 1..=32768, not necessarily a power of two [PVQ-MAX-SIZE]", () => {
    for (const n of [1, 3, 100, 32768]) expect(new PackedQueue(n).state()).toEqual(P.newQueue(n));
    for (const n of [0, 32769, 1.5, -1]) {
      expect(() => new PackedQueue(n)).toThrow(RangeError);
      expect(P.newQueue(n)).toBeUndefined();
    }
  });

  it("initialize checks ready, size, alignment and memory in order [PVQ-INIT-READY PVQ-INIT-SIZE PVQ-INIT-ALIGN PVQ-INIT-MEMORY PVQ-INIT-ORDER]", () => {
    const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x1000) }]);
    const cases: [P.PackedConfig, PackedQueueError | null][] = [
      [{ ready: false }, { _tag: "NotReady" }],
      [{ size: 0 }, { _tag: "InvalidSize", size: 0, maxSize: 16 }],
      [{ size: 17 }, { _tag: "InvalidSize", size: 17, maxSize: 16 }],
      [
        { size: 5, descTable: 8n, availRing: 2n },
        { _tag: "InvalidDescRingAlign", addr: 8n },
      ],
      [
        { availRing: 2n, usedRing: 1n },
        { _tag: "InvalidDriverAreaAlign", addr: 2n },
      ],
      [{ usedRing: 6n }, { _tag: "InvalidDeviceAreaAlign", addr: 6n }],
      [{ descTable: 0xff0n }, { _tag: "RingOutOfMemory", ring: "descRing", addr: 0xff0n, len: 256n }],
      [{ availRing: 0x1000n }, { _tag: "RingOutOfMemory", ring: "driverArea", addr: 0x1000n, len: 4n }],
      [{ usedRing: 0xffdn * 4n }, { _tag: "RingOutOfMemory", ring: "deviceArea", addr: 0x3ff4n, len: 4n }],
      [{ size: 3 }, null],
    ];
    for (const [c, e] of cases) {
      const q = new PackedQueue(16);
      const base: P.PackedConfig = {
        size: 16,
        ready: true,
        descTable: 0x100n,
        availRing: 0x200n,
        usedRing: 0x204n,
      };
      const cfg = { ...base, ...c };
      q.configure(cfg);
      const s = P.initialize(P.configure(P.newQueue(16)!, cfg), toSpec(m));
      const r = q.initialize(m);
      expect(r).toEqual(s.result);
      expect(r).toEqual(e === null ? { ok: true, value: undefined } : { ok: false, error: e });
      expect(q.state()).toEqual(s.queue);
    }
  });

  it("an inactive queue touches no memory; reset returns to a new queue's state [PVQ-INACTIVE PVQ-RESET]", () => {
    const p = new Pair(4, { eventIdx: true, inOrder: true });
    p.drv.addChain([buf(0x4000, 4)]);
    p.popOk();
    p.step(
      () => p.q.reset(),
      (q, m) => ({ queue: P.reset(q), memory: m, result: undefined }),
    );
    p.m.recorder = () => {
      throw new Error("an inactive queue touched memory");
    };
    expect(p.pop()).toEqual({ ok: false, error: { _tag: "NotReady" } });
    expect(p.addUsed(0, 0)).toEqual({ ok: false, error: { _tag: "NotReady" } });
    expect(p.prepareKick()).toBe(false);
    expect(p.tryEnable()).toEqual({ ok: false, error: { _tag: "NotReady" } });
    expect(p.q.isEmpty()).toBe(true);
    p.undoPop();
    p.m.recorder = null;
    expect(p.q.state()).toEqual(P.newQueue(256));
  });

  it("initialize keeps positions inside the ring and forgets what was in flight [PVQ-INIT-FRESH]", () => {
    const p = new Pair(4);
    p.drv.addChain([buf(0x4000, 4)]);
    p.popOk();
    p.q.setPositions({ nextAvail: 3, availWrap: false, nextUsed: 9 });
    p.s = P.setPositions(p.s, { nextAvail: 3, availWrap: false, nextUsed: 9 });
    p.step(() => p.q.initialize(p.m), P.initialize);
    expect(p.q.state()).toMatchObject({
      nextAvail: 3,
      availWrap: false,
      nextUsed: 0,
      usedWrap: true,
      inFlight: [],
    });
  });
});
