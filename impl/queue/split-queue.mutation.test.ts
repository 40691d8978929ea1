/**
 * Tests written to kill mutants that survived (or only timed out under load) in
 * `npm run mutate -- impl/queue/split-queue.ts`: partial configuration and positions, the
 * inactive queue's len, Empty against InvalidHead, addUsed with indexes that are not u32s,
 * every ring access reported to a recorder with its direction, and a driver that publishes
 * while tryEnableNotification re-checks avail.idx (modelled by the recorder, which runs at the
 * moment of each access).
 */
import { describe, expect, it } from "vitest";
import { accessesOf as accesses } from "../../properties/arbitraries/memory.ts";
import { GuestMemory } from "../memory/guest-memory.ts";
import {
  VRING_USED_F_NO_NOTIFY,
  availEventOffset,
  availRingBytes,
  availSlotOffset,
  descTableBytes,
  usedEventOffset,
  usedRingBytes,
} from "../../wire/split.ts";
import { DescriptorChain } from "./descriptor-chain.ts";
import { SplitDriver } from "./split-driver.ts";
import { PopStatus, SplitQueue } from "./split-queue.ts";

const SIZE = 8;

const rig = (): { m: GuestMemory; d: SplitDriver; q: SplitQueue } => {
  const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x10000) }]);
  const d = SplitDriver.at(m, SIZE, 0x1000);
  const q = new SplitQueue(SIZE);
  q.configure({ size: SIZE, ready: true, ...d.layout });
  if (!q.initialize(m).ok) throw new Error("queue refused");
  return { m, d, q };
};

describe("configuration [VQ-MAX-SIZE VQ-INIT-SIZE VQ-EVENT-IDX]", () => {
  it("a bad max size throws a RangeError that says why", () => {
    expect(() => new SplitQueue(12)).toThrow(/max size 12 is not a power of two in 1\.\.=32768/);
  });

  it("configure and setPositions change only the fields given", () => {
    const { m, d, q } = rig();
    q.configure({ size: 4 });
    q.configure({ ready: true });
    expect(q.state().size).toBe(4);
    expect(q.initialize(m).ok).toBe(true);
    q.configure({ size: SIZE, ...d.layout });
    expect(q.initialize(m).ok).toBe(true);
    q.setPositions({ nextAvail: 5 });
    q.setPositions({ nextUsed: 3 });
    expect([q.nextAvail, q.nextUsed]).toEqual([5, 3]);
  });

  it("eventIdx says whether EVENT_IDX was negotiated", () => {
    const { q } = rig();
    expect(q.eventIdx).toBe(false);
    q.enableNotifSuppression();
    expect(q.eventIdx).toBe(true);
  });
});

describe("an inactive queue [VQ-INACTIVE]", () => {
  it("has len 0 wherever next_avail is", () => {
    const { q } = rig();
    q.setPositions({ nextAvail: 3 });
    q.configure({ ready: false });
    expect([q.len(), q.isEmpty()]).toEqual([0, true]);
  });
});

describe("why pop gave nothing [VQ-POP-EMPTY VQ-POP-HEAD]", () => {
  for (const recording of [false, true])
    it(`Empty for an empty ring, InvalidHead for a refused head (${recording ? "with" : "without"} a recorder)`, () => {
      const { m, d, q } = rig();
      if (recording) m.recorder = () => {};
      const c = new DescriptorChain(m);
      expect(q.popInto(c)).toBe(false);
      expect(q.lastPop).toBe(PopStatus.Empty);
      d.pushAvail(SIZE + 1);
      d.publish();
      expect(q.popInto(c)).toBe(false);
      expect(q.lastPop).toBe(PopStatus.InvalidHead);
      d.writeDescriptor(0, { addr: 0x8000, len: 4, flags: 0, next: 0 });
      d.writeAvailRing(0, 0);
      expect(q.popInto(c)).toBe(true);
      expect(q.popInto(c)).toBe(false);
      expect(q.lastPop).toBe(PopStatus.Empty);
      expect(q.lastError).toBeNull();
    });
});

describe("addUsed with an index that is not a u32 below the size [VQ-ADD-USED-INDEX]", () => {
  for (const recording of [false, true])
    it(`is DescIndexOutOfBounds and writes nothing (${recording ? "with" : "without"} a recorder)`, () => {
      const { m, d, q } = rig();
      if (recording) m.recorder = () => {};
      const before = Uint8Array.from(m.regions[0]!.bytes);
      for (const index of [1.5, -1, -0.5, SIZE - 0.5, Number.NaN]) {
        expect(q.addUsed(index, 4)).toEqual({ ok: false, error: { _tag: "DescIndexOutOfBounds", index } });
      }
      expect(q.nextUsed).toBe(0);
      expect(Buffer.compare(m.regions[0]!.bytes, before)).toBe(0);
      expect(q.addUsed(SIZE - 1, 4).ok).toBe(true);
      expect(d.readUsed(0)).toEqual({ id: SIZE - 1, len: 4 });
    });
});

describe("every ring access is reported to a recorder with its direction [VQ-DEVICE-ACCESS]", () => {
  it("initialize checks the descriptor table and avail ring for reading, the used ring for writing", () => {
    const { m, d } = rig();
    const q = new SplitQueue(SIZE);
    q.configure({ size: SIZE, ready: true, ...d.layout });
    const { descTable, availRing, usedRing } = d.layout;
    expect(accesses(m, () => q.initialize(m))).toEqual([
      [descTable, descTableBytes(SIZE), false],
      [availRing, availRingBytes(SIZE), false],
      [usedRing, usedRingBytes(SIZE), true],
    ]);
  });

  it("pop reads avail.idx, the avail slot and the head's entry", () => {
    const { m, d, q } = rig();
    d.writeDescriptor(6, { addr: 0x8000, len: 4, flags: 0, next: 0 });
    d.pushAvail(6);
    d.publish();
    const { descTable, availRing } = d.layout;
    const c = new DescriptorChain(m);
    expect(accesses(m, () => q.popInto(c))).toEqual([
      [availRing + 2, 2, false],
      [availRing + availSlotOffset(0), 2, false],
      [descTable + 6 * 16, 16, false],
    ]);
    expect(accesses(m, () => q.popInto(c))).toEqual([[availRing + 2, 2, false]]);
  });

  it("the avail ring and the event fields are read as reads, the used flags written as writes", () => {
    const { m, d, q } = rig();
    const { availRing, usedRing } = d.layout;
    expect(accesses(m, () => q.readAvailRing(3))).toEqual([[availRing + availSlotOffset(3), 2, false]]);
    expect(accesses(m, () => q.availEvent())).toEqual([[usedRing + availEventOffset(SIZE), 2, false]]);
    expect(accesses(m, () => q.prepareKick(true))).toEqual([[availRing, 2, false]]);
    expect(accesses(m, () => q.disableNotification())).toEqual([[usedRing, 2, true]]);
    expect(d.usedFlags()).toBe(VRING_USED_F_NO_NOTIFY);
    expect(accesses(m, () => q.tryEnableNotification())).toEqual([
      [usedRing, 2, false],
      [usedRing, 2, true],
    ]);
    expect(d.usedFlags()).toBe(0);
    q.enableNotifSuppression();
    expect(accesses(m, () => q.usedEvent())).toEqual([[availRing + usedEventOffset(SIZE), 2, false]]);
  });
});

describe("a driver that publishes while notifications are being enabled [VQ-TRY-ENABLE-NOTIFICATION VQ-POP-OR-ENABLE]", () => {
  it("tryEnableNotification re-reads avail.idx after writing avail_event and sees the new chain", () => {
    const { m, d, q } = rig();
    q.enableNotifSuppression();
    d.writeDescriptor(2, { addr: 0x8000, len: 4, flags: 0, next: 0 });
    const availEventAt = d.layout.usedRing + availEventOffset(SIZE);
    // The recorder runs as the device writes avail_event: the driver publishes right then.
    m.recorder = (addr, _len, write) => {
      if (write && addr === availEventAt) {
        m.recorder = null;
        d.pushAvail(2);
        d.publish();
      }
    };
    expect(q.tryEnableNotification()).toEqual({ ok: true, value: false });
    expect(d.availEvent()).toBe(0);
    const c = new DescriptorChain(m);
    expect(q.popInto(c)).toBe(true);
    expect(c.headIndex).toBe(2);
  });
});
