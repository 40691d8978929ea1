/**
 * Tests written to kill mutants that survived or went uncovered in `npm run mutate -- packed`
 * (impl/queue/packed-queue.ts): partial configuration and positions, the vhost-user
 * positions word, the largest queue, positions outside the ring, every flag word that is not
 * available, ids past the size with buffers sized for a bigger queue, undoPop of an inactive
 * queue and of a buffer a lap behind, every ring and area access told to a recorder with its
 * direction, a driver that publishes right after popOrEnableNotification gave none, a hostile
 * IN_ORDER batch spanning two laps, and prepareKick across a wrap.
 */
import { describe, expect, it } from "vitest";
import { accessesOf as accesses } from "../../properties/arbitraries/memory.ts";
import { GuestMemory } from "../memory/guest-memory.ts";
import * as P from "../../spec/packed-queue.ts";
import {
  EVENT_AREA_SIZE,
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_WRAP,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_USED,
} from "../../wire/packed.ts";
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";
import { PackedDescriptorChain } from "./packed-chain.ts";
import { PackedDriver } from "./packed-driver.ts";
import { PackedQueue, PopStatus } from "./packed-queue.ts";

const NEXT = VIRTQ_DESC_F_NEXT;
const WRITE = VIRTQ_DESC_F_WRITE;
const AVAIL = VIRTQ_DESC_F_AVAIL;
const USED = VIRTQ_DESC_F_USED;

interface Rig {
  readonly m: GuestMemory;
  readonly drv: PackedDriver;
  readonly q: PackedQueue;
  readonly c: PackedDescriptorChain;
}

/** A queue of `size` slots at 0x100; `before` runs before initialize (positions, features). */
const rig = (size: number, before: (q: PackedQueue) => void = () => {}, maxSize = size): Rig => {
  const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x100 + 16 * size + 0x1000) }]);
  const drv = PackedDriver.at(m, size, 0x100);
  const q = new PackedQueue(maxSize);
  q.configure({ size, ready: true, ...drv.layout });
  before(q);
  expect(q.initialize(m)).toEqual({ ok: true, value: undefined });
  return { m, drv, q, c: new PackedDescriptorChain(m) };
};

describe("configuration and positions [PVQ-MAX-SIZE PVQ-INIT-FRESH PVQ-INACTIVE]", () => {
  it("a bad max size throws a RangeError that says why", () => {
    expect(() => new PackedQueue(0)).toThrow(/max size 0 is not an integer in 1\.\.=32768/);
  });

  it("configure changes only the fields given, and deactivates", () => {
    const { q } = rig(8);
    expect(q.isActive).toBe(true);
    q.configure({ size: 4 });
    expect(q.isActive).toBe(false);
    q.configure({ descTable: 0x200 });
    expect(q.state()).toMatchObject({ size: 4, ready: true, descTable: 0x200n, active: false });
  });

  it("setPositions changes only the fields given", () => {
    const { q } = rig(8);
    const want = { nextAvail: 0, availWrap: true, nextUsed: 0, usedWrap: true, numAdded: 0 };
    const steps = [
      { numAdded: 5 },
      { nextAvail: 2 },
      { availWrap: false },
      { nextUsed: 3 },
      { usedWrap: false },
      { nextAvail: 1 },
    ] as const;
    for (const p of steps) {
      q.setPositions(p);
      Object.assign(want, p);
      expect(q.state()).toMatchObject(want);
      expect([q.nextAvail, q.nextUsed, q.numAdded]).toEqual([want.nextAvail, want.nextUsed, want.numAdded]);
    }
  });

  it("eventIdx and inOrder say what was negotiated", () => {
    const { q } = rig(8);
    expect([q.eventIdx, q.inOrder]).toEqual([false, false]);
    q.enableNotifSuppression();
    q.enableInOrder();
    expect([q.eventIdx, q.inOrder]).toEqual([true, true]);
  });

  it("the vhost-user positions word: next_avail and its wrap in bits 0-15, next_used and its wrap in 16-31", () => {
    const { q } = rig(8);
    for (const [word, p] of [
      [0x8003_0005, { nextAvail: 5, availWrap: false, nextUsed: 3, usedWrap: true }],
      [0x0002_8001, { nextAvail: 1, availWrap: true, nextUsed: 2, usedWrap: false }],
    ] as const) {
      q.setPositions({ numAdded: 7 });
      q.setPositionsWord(word);
      expect(q.state()).toMatchObject({ ...p, numAdded: 0, active: false });
      expect(q.positionsWord()).toBe(word);
    }
  });

  it("positions outside the ring (negative, fractional, = size) become (0, wrap 1) at initialize", () => {
    for (const [nextAvail, nextUsed] of [
      [-1, 1.5],
      [1.5, -1],
      [0, 8],
    ] as const) {
      const { q } = rig(8, (q) =>
        q.setPositions({ nextAvail, availWrap: false, nextUsed, usedWrap: false, numAdded: 0 }),
      );
      const keepAvail = nextAvail === 0;
      expect(q.state()).toMatchObject({
        nextAvail: 0,
        availWrap: !keepAvail,
        nextUsed: 0,
        usedWrap: true,
      });
    }
  });
});

describe("initialize [PVQ-INIT-SIZE PVQ-DEVICE-ACCESS]", () => {
  it("a queue of the largest size, 32768, initializes", () => {
    const q = new PackedQueue(32768);
    const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(16 * 32768 + 0x100) }]);
    q.configure({ size: 32768, ready: true, descTable: 0, availRing: 16 * 32768, usedRing: 16 * 32768 + 4 });
    expect(q.initialize(m)).toEqual({ ok: true, value: undefined });
  });

  it("checks the ring for reading and writing, the Driver Area for reading, the Device Area for writing", () => {
    const { m, drv, q } = rig(8);
    const { descTable, availRing, usedRing } = drv.layout;
    expect(accesses(m, () => q.initialize(m))).toEqual([
      [descTable, 16 * 8, true],
      [availRing, EVENT_AREA_SIZE, false],
      [usedRing, EVENT_AREA_SIZE, true],
    ]);
  });
});

describe("what pop reads and refuses [PVQ-AVAIL PVQ-POP-ID PVQ-INACTIVE PVQ-DEVICE-ACCESS]", () => {
  it("a queue never initialized pops nothing: NotReady, no throw", () => {
    const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x100) }]);
    const q = new PackedQueue(8);
    expect(q.popInto(new PackedDescriptorChain(m))).toBe(false);
    expect([q.lastPop, q.lastError]).toEqual([PopStatus.Error, { _tag: "NotReady" }]);
  });

  // Every flags word at both wrap counters, with ids that read like flags when the id and
  // flags halves are confused: popped exactly when AVAIL/USED say available.
  for (const wrap of [true, false])
    it(`every flags word not available at wrap ${wrap ? 1 : 0} is not popped, whatever the id`, () => {
      const { drv, q, c } = rig(8, (q) => q.setPositions({ availWrap: wrap }));
      for (const id of [1, 0x8000, 0x0080]) {
        for (let flags = 0; flags < 0x10000; flags++) {
          drv.writeSlot(0, { addr: 0x4000, len: 4, id, flags });
          const popped = q.popInto(c);
          const available = P.isAvailable(flags, wrap);
          if (popped !== available && !(available && q.lastPop === PopStatus.Error)) {
            expect({ id, flags, popped, lastPop: q.lastPop }).toEqual({ id, flags, popped: available });
          }
          if (popped) q.undoPop();
          if (q.nextAvail !== 0)
            expect({ id, flags, nextAvail: q.nextAvail }).toEqual({ id, flags, nextAvail: 0 });
        }
      }
    });

  it("an id >= size is refused even where the buffers were sized for a bigger queue", () => {
    const { m, drv, q, c } = rig(8);
    q.configure({ size: 4 });
    expect(q.initialize(m).ok).toBe(true);
    for (const id of [4, 5, 7]) {
      drv.writeSlot(0, { addr: 0x4000, len: 4, id, flags: AVAIL });
      expect(q.popInto(c)).toBe(false);
      expect(q.lastError).toEqual({ _tag: "InvalidBufferId", id, size: 4 });
    }
    drv.writeSlot(0, { addr: 0x4000, len: 4, id: 3, flags: AVAIL });
    expect(q.popInto(c)).toBe(true);
  });

  it("pop reads the flags at next_avail, then each slot of the chain; used descriptors and areas are written as writes", () => {
    const { m, drv, q, c } = rig(8);
    const d = drv.layout.descTable;
    drv.writeSlot(1, { addr: 0x5000, len: 8, id: 2, flags: AVAIL | WRITE });
    drv.writeSlot(0, { addr: 0x4000, len: 4, id: 0, flags: AVAIL | NEXT });
    expect(accesses(m, () => expect(q.popInto(c)).toBe(true))).toEqual([
      [d + 14, 2, false],
      [d, 16, false],
      [d + 16, 16, false],
    ]);
    drv.writeSlot(2, { addr: 0x4000, len: 4, id: 1, flags: AVAIL });
    expect(accesses(m, () => expect(q.popInto(c)).toBe(true))).toEqual([
      [d + 32 + 14, 2, false],
      [d + 32, 16, false],
    ]);
    expect(accesses(m, () => expect(q.addUsed(1, 4).ok).toBe(true))).toEqual([
      [d + 8, 4, true],
      [d + 12, 2, true],
    ]);
    expect(accesses(m, () => expect(q.addUsed(2, 0).ok).toBe(true))).toEqual([
      [d + 16 + 8, 4, true],
      [d + 16 + 12, 2, true],
    ]);
    expect(accesses(m, () => q.publishUsed())).toEqual([
      [d + 16 + 14, 2, true],
      [d + 14, 2, true],
    ]);
    const { availRing, usedRing } = drv.layout;
    expect(accesses(m, () => q.driverEvent())).toEqual([[availRing, EVENT_AREA_SIZE, false]]);
    expect(accesses(m, () => q.deviceEvent())).toEqual([[usedRing, EVENT_AREA_SIZE, false]]);
  });
});

describe("undoPop [PVQ-UNDO-POP PVQ-INACTIVE]", () => {
  it("does nothing on an inactive queue, even where the positions would match", () => {
    const { drv, q, c } = rig(4);
    drv.writeSlot(0, { addr: 0x4000, len: 4, id: 0, flags: AVAIL });
    expect(q.popInto(c)).toBe(true);
    q.setPositions({ availWrap: false });
    const before = q.state();
    q.undoPop();
    expect(q.state()).toEqual(before);
    expect(before.inFlight).toEqual([{ id: 0, head: 0, wrap: true, slots: 1 }]);
  });

  it("does nothing when the newest buffer ends at next_avail's slot but a lap behind", () => {
    const { drv, q, c } = rig(3);
    drv.writeSlot(0, { addr: 0x4000, len: 4, id: 0, flags: AVAIL }); // A: slot 0, wrap 1
    expect(q.popInto(c)).toBe(true);
    drv.writeSlot(1, { addr: 0x4000, len: 4, id: 1, flags: AVAIL | NEXT }); // B: slots 1-2
    drv.writeSlot(2, { addr: 0x4000, len: 4, id: 1, flags: AVAIL });
    expect(q.popInto(c)).toBe(true);
    // A hostile driver re-offers slot 0 (A still in flight) at wrap 0: C.
    drv.writeSlot(0, { addr: 0x4000, len: 4, id: 2, flags: USED });
    expect(q.popInto(c)).toBe(true);
    expect(q.addUsed(2, 0).ok).toBe(true);
    expect(q.addUsed(1, 0).ok).toBe(true);
    // A is the newest in flight and ends at slot 1 of wrap 1; next_avail is slot 1 of wrap 0.
    expect(q.state()).toMatchObject({
      nextAvail: 1,
      availWrap: false,
      inFlight: [{ id: 0, head: 0, wrap: true, slots: 1 }],
    });
    const before = q.state();
    q.undoPop();
    expect(q.state()).toEqual(before);
  });
});

describe("a driver that publishes right after popOrEnableNotification gave none [PVQ-POP-OR-ENABLE PVQ-TRY-ENABLE]", () => {
  it("none is the answer; the chain is popped by the next pop", () => {
    const { m, drv, q, c } = rig(4);
    const flagsAt = drv.layout.descTable + 14;
    const publish = (): void => drv.writeSlot(0, { addr: 0x4000, len: 4, id: 1, flags: AVAIL });
    let reads = 0;
    // The recorder runs at each access. The driver publishes right after
    // tryEnableNotification's two reads of the flags at next_avail: at a third read if the
    // device makes one, else once the call has returned.
    m.recorder = (addr, _len, write) => {
      if (!write && addr === flagsAt && ++reads === 3) publish();
    };
    expect(q.popOrEnableNotificationInto(c)).toBe(false);
    expect([q.lastPop, q.lastError]).toEqual([PopStatus.Empty, null]);
    m.recorder = null;
    if (reads < 3) publish();
    expect(q.popInto(c)).toBe(true);
    expect(c.bufferId).toBe(1);
  });
});

describe("a hostile IN_ORDER batch of two laps [PVQ-IN-ORDER PVQ-PUBLISH-USED]", () => {
  it("a used descriptor two laps on is a span of 0: adding the next one publishes nothing", () => {
    const { drv, q, c } = rig(2, (q) => q.enableInOrder());
    // A takes slots 0-1 (wrap 1); the driver re-offers both at wrap 0 while A is in flight: B.
    drv.writeSlot(1, { addr: 0x4000, len: 4, id: 0, flags: AVAIL });
    drv.writeSlot(0, { addr: 0x4000, len: 4, id: 0, flags: AVAIL | NEXT });
    expect(q.popInto(c)).toBe(true);
    drv.writeSlot(1, { addr: 0x4000, len: 4, id: 1, flags: USED });
    drv.writeSlot(0, { addr: 0x4000, len: 4, id: 1, flags: USED | NEXT });
    expect(q.popInto(c)).toBe(true);
    expect(q.addUsed(1, 8).ok).toBe(true); // completes A and B: 4 slots, next_used back at (0, 1)
    expect(q.state()).toMatchObject({ nextUsed: 0, usedWrap: true, pending: [{ slot: 0 }] });
    drv.writeSlot(0, { addr: 0x4000, len: 4, id: 0, flags: AVAIL });
    expect(q.popInto(c)).toBe(true);
    expect(q.addUsed(0, 0).ok).toBe(true);
    // Nothing was published: slot 0 still has the driver's flags, two used descriptors wait.
    expect(drv.readSlot(0).flags).toBe(AVAIL);
    expect(q.state().pending).toHaveLength(2);
  });
});

describe("prepareKick with EVENT_IDX across a wrap [PVQ-NOTIFY-DRIVER]", () => {
  it("an event descriptor of the previous lap that next_used has passed asks for a notification", () => {
    // next_used is slot 1 of wrap 0 after 5 used slots of a 4-slot ring; the driver asked for
    // one at slot 3 of wrap 1, which those 5 slots passed.
    const { drv, q } = rig(4, (q) => {
      q.enableNotifSuppression();
      q.setPositions({ nextUsed: 1, usedWrap: false, numAdded: 5 });
    });
    drv.setDriverEvent(3 | RING_EVENT_WRAP, RING_EVENT_FLAGS_DESC);
    expect(q.prepareKick()).toBe(true);
  });
});
