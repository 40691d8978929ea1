import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import { Rng } from "../../sim/rng.ts";
import {
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_WRAP,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_USED,
  availEventOffset,
  usedSlotOffset,
  USED_ELEM_ID,
  USED_ELEM_LEN,
  USED_FLAGS,
  USED_IDX,
  VRING_USED_F_NO_NOTIFY,
  vringNeedEvent,
  EVENT_FLAGS,
  EVENT_OFF_WRAP,
} from "../../wire/index.ts";
import { PACKED_RING, SPLIT_RING, type DeviceQueue, type RingKind } from "./device-queue.ts";
import { BufferSlabs, NO_ROOM, type GuestBuffer, type GuestQueue } from "./guest-queue.ts";
import { PackedDriver, packedLayoutAt, packedLayoutEnd } from "./packed-driver.ts";
import { SplitDriver } from "./split-driver.ts";
import { splitLayoutAt, splitLayoutEnd } from "../../wire/split.ts";

const DATA = 0x100000;
const SLAB = 4096;
const MAX_IND = 8;

interface Rig {
  readonly mem: GuestMemory;
  readonly q: GuestQueue;
  readonly slabs: BufferSlabs;
  readonly dev: DeviceQueue;
  readonly ring: RingKind;
}

const make = (ring: "split" | "packed", size: number, eventIdx: boolean): Rig => {
  const mem = GuestMemory.of([
    { base: 0x1000, bytes: new Uint8Array(0x5000) },
    { base: DATA, bytes: new Uint8Array(BufferSlabs.bytesNeeded(size, SLAB, MAX_IND)) },
  ]);
  const kind: RingKind = ring === "split" ? SPLIT_RING : PACKED_RING;
  const layout = ring === "split" ? splitLayoutAt(0x1000, size) : packedLayoutAt(0x1000, size);
  expect(ring === "split" ? splitLayoutEnd(layout, size) : packedLayoutEnd(layout)).toBeLessThan(0x6000);
  const q: GuestQueue =
    ring === "split"
      ? new SplitDriver(mem, size, layout, { eventIdx })
      : new PackedDriver(mem, size, layout, { eventIdx });
  const dev = kind.newQueue(256);
  dev.configure({ size, ready: true, ...layout });
  if (eventIdx) dev.enableNotifSuppression();
  expect(dev.initialize(mem).ok).toBe(true);
  return { mem, q, slabs: new BufferSlabs(DATA, size, SLAB, MAX_IND), dev, ring: kind };
};

const RINGS = ["split", "packed"] as const;

describe("vring_need_event", () => {
  it("asks for a notification exactly when the event index is one of those passed, [old, new) mod 2^16 [SIM-KICK-GATE]", () => {
    const r = new Rng(1);
    for (let i = 0; i < 20000; i++) {
      // Small steps as well as arbitrary ones, so both answers and the wrap at 2^16 are covered.
      const o = r.int(0x10000);
      const n = r.chance(0.5) ? (o + r.int(8)) & 0xffff : r.int(0x10000);
      const e = r.chance(0.5) ? (o + r.int(10) - 1) & 0xffff : r.int(0x10000);
      expect(vringNeedEvent(e, n, o)).toBe(((e - o) & 0xffff) < ((n - o) & 0xffff));
    }
  });
});

describe.each(RINGS)("guest driver on the %s ring (Linux virtio_ring)", (ring) => {
  it("every chain comes back with its token and the device's len, in any completion order, ids and slots all freed [SIM-CHAIN-MATCH SIM-USED-ID PVQ-DRIVER-AVAIL PVQ-DRIVER-USED]", () => {
    const r = new Rng(ring === "split" ? 2 : 3);
    const size = 16;
    const { mem, q, slabs, dev, ring: kind } = make(ring, size, r.chance(0.5));
    const chain = kind.newChain(mem);
    const held: { id: number; written: number }[] = [];
    let token = 0;
    const tokens = new Map<number, number>();
    let back = 0;
    for (let round = 0; round < 2000; round++) {
      // The driver adds a few chains (out segments first, then in).
      for (let k = r.int(4); k > 0; k--) {
        const n = r.range(1, 6);
        const outs = r.int(n + 1);
        const segs = Array.from({ length: n }, (_, i) => ({ len: r.range(1, 500), write: i >= outs }));
        const id = slabs.add(q, segs, r.chance(0.5), token);
        if (id === NO_ROOM) break;
        tokens.set(id, token++);
      }
      q.publish();
      // The device pops some, checks each walk against what the driver recorded, completes some in random order.
      for (let k = r.int(4); k > 0 && dev.popInto(chain); k--) {
        const buf = q.inFlightAt(chain.headIndex)!;
        const got: { addr: number; len: number; write: boolean }[] = [];
        for (let ok = chain.rewind(); ok; ok = chain.advance())
          got.push({ addr: chain.addr, len: chain.len, write: chain.isWriteOnly() });
        expect(chain.end).toBeNull();
        expect(got).toEqual(buf.segments);
        held.push({ id: chain.headIndex, written: r.int(buf.inBytes + 1) });
      }
      for (let k = r.int(held.length + 1); k > 0; k--) {
        const [h] = held.splice(r.int(held.length), 1);
        expect(dev.addUsed(h!.id, h!.written).ok).toBe(true);
      }
      expect(dev.publishUsed().ok).toBe(true);
      for (let g = q.getBuf(); g.kind !== "none"; g = q.getBuf()) {
        if (g.kind === "bad") throw new Error(g.reason);
        expect(g.buf.token).toBe(tokens.get(g.buf.id));
        expect(g.len).toBeLessThanOrEqual(g.buf.inBytes);
        back++;
      }
    }
    expect(back).toBeGreaterThan(1000);
    // Complete what the device still holds and what is still available.
    while (dev.popInto(chain)) held.push({ id: chain.headIndex, written: 0 });
    for (const h of held) dev.addUsed(h.id, h.written);
    dev.publishUsed();
    while (q.getBuf().kind === "buf");
    expect([q.numFree, q.inFlightCount, q.occupancy]).toEqual([size, 0, 0]);
  });

  it("a used entry naming no buffer in flight is BAD_RING: reported, not thrown, nothing freed [SIM-USED-ID]", () => {
    const { q, slabs, mem } = make(ring, 8, false);
    const id = slabs.add(q, [{ len: 10, write: true }], false, 7);
    q.publish();
    const seen: string[] = [];
    const bad = (wrong: number): void => {
      if (q instanceof SplitDriver) {
        const e = q.layout.usedRing + usedSlotOffset(0);
        mem.writeU32(e + USED_ELEM_ID, wrong);
        mem.writeU32(e + USED_ELEM_LEN, 4);
        mem.writeU16(q.layout.usedRing + USED_IDX, 1);
      } else if (q instanceof PackedDriver) {
        q.writeSlot(0, { addr: 0, len: 4, id: wrong, flags: VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED });
      }
      const g = q.getBuf();
      expect(g).toMatchObject({ kind: "bad", id: wrong });
      if (g.kind === "bad") seen.push(g.reason);
      expect(q.inFlightCount).toBe(1);
    };
    bad(id + 1); // not in flight
    bad(8); // out of range
    bad(0xffff);
    expect(seen).toHaveLength(3);
  });

  it("the probe sees every add, publication, kick and reclaim [SIM-USED-ID]", () => {
    const events: string[] = [];
    const mem = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x10000) }]);
    const probe = {
      added: (b: GuestBuffer) => events.push(`add ${b.id}`),
      published: () => events.push("publish"),
      kicked: (k: { need: boolean }) => events.push(`kick ${k.need}`),
      reaped: (b: GuestBuffer, len: number) => events.push(`reap ${b.id} ${len}`),
    };
    const q: GuestQueue =
      ring === "split" ? SplitDriver.at(mem, 4, 0, { probe }) : PackedDriver.at(mem, 4, 0, { probe });
    const kind: RingKind = ring === "split" ? SPLIT_RING : PACKED_RING;
    const dev = kind.newQueue(4);
    dev.configure({ size: 4, ready: true, ...(q as SplitDriver | PackedDriver).layout });
    expect(dev.initialize(mem).ok).toBe(true);
    const id = q.add([{ addr: 0x8000, len: 8, write: true }], 1);
    q.publish();
    q.kickPrepare();
    const chain = kind.newChain(mem);
    expect(dev.popInto(chain)).toBe(true);
    dev.addUsed(chain.headIndex, 3);
    dev.publishUsed();
    q.getBuf();
    expect(events).toEqual([`add ${id}`, "publish", "kick true", `reap ${id} 3`]);
  });

  it("interrupt controls: disable, enable_cb_prepare + poll, enable_cb_delayed [SIM-NO-STALL]", () => {
    for (const eventIdx of [false, true]) {
      const { q, slabs, dev, ring: kind, mem } = make(ring, 8, eventIdx);
      const chain = kind.newChain(mem);
      for (let i = 0; i < 4; i++) slabs.add(q, [{ len: 10, write: true }], false, i);
      q.publish();
      q.disableCb();
      expect(q.callbacksEnabled).toBe(false);
      const last = q.enableCbPrepare();
      expect(q.callbacksEnabled).toBe(true);
      expect(q.poll(last)).toBe(false);
      expect(dev.popInto(chain)).toBe(true);
      dev.addUsed(chain.headIndex, 1);
      dev.publishUsed();
      // The device owes an interrupt: the used entry is past the event (or notifications are on).
      expect(dev.prepareKick()).toBe(true);
      expect(q.poll(last)).toBe(true);
      expect(q.usedPending()).toBe(1);
      expect(q.usedPending()).toBeGreaterThan(q.interruptThreshold());
      expect(q.getBuf().kind).toBe("buf");
      // Delayed: 3 outstanding, the event ~2 further on; nothing used yet, so true.
      expect(q.enableCbDelayed()).toBe(true);
      expect(q.interruptThreshold()).toBe(eventIdx ? 2 : 0);
      expect(dev.popInto(chain)).toBe(true);
      dev.addUsed(chain.headIndex, 1);
      dev.publishUsed();
      // One used: under EVENT_IDX not yet worth an interrupt.
      expect(dev.prepareKick()).toBe(!eventIdx);
    }
  });
});

describe("split guest driver", () => {
  it("kicks only when avail_event says so with EVENT_IDX, and honours NO_NOTIFY without [SIM-KICK-GATE]", () => {
    const a = make("split", 8, true);
    const q = a.q as SplitDriver;
    a.slabs.add(q, [{ len: 10, write: false }], false, 0);
    q.publish();
    // avail_event 0 (fresh ring): the device wants a kick for the entry at index 0.
    expect(q.kickPrepare().need).toBe(true);
    a.slabs.add(q, [{ len: 10, write: false }], false, 1);
    q.publish();
    // avail_event still 0: the device has not caught up, no kick for index 1.
    expect(q.kickPrepare().need).toBe(false);
    a.mem.writeU16(q.layout.usedRing + availEventOffset(8), 2);
    a.slabs.add(q, [{ len: 10, write: false }], false, 2);
    q.publish();
    expect(q.kickPrepare()).toEqual({ need: true, old: 2, new: 3, event: 2 });

    const b = make("split", 8, false);
    const p = b.q as SplitDriver;
    b.mem.writeU16(p.layout.usedRing + USED_FLAGS, VRING_USED_F_NO_NOTIFY);
    b.slabs.add(p, [{ len: 10, write: false }], false, 0);
    p.publish();
    expect(p.kickPrepare().need).toBe(false);
    b.mem.writeU16(p.layout.usedRing + USED_FLAGS, 0);
    b.slabs.add(p, [{ len: 10, write: false }], false, 1);
    p.publish();
    expect(p.kickPrepare().need).toBe(true);
  });

  it("the device sees no ring entry before publish [SIM-CHAIN-MATCH]", () => {
    const { q, slabs, dev } = make("split", 8, false);
    slabs.add(q, [{ len: 10, write: false }], false, 0);
    expect(q.unpublished).toBe(1);
    expect(dev.popInto(SPLIT_RING.newChain((q as SplitDriver).memory))).toBe(false);
    q.publish();
    expect(q.unpublished).toBe(0);
  });
});

describe("packed guest driver", () => {
  it("kicks as virtqueue_kick_prepare_packed: DISABLE, ENABLE, DESC with off_wrap a lap back [PVQ-DRIVER-KICK]", () => {
    const { q, slabs, mem } = make("packed", 4, true);
    const p = q as PackedDriver;
    const dev = p.layout.usedRing;
    const add = (): void => {
      slabs.add(p, [{ len: 10, write: false }], false, 0);
      p.publish();
    };
    add();
    expect(p.kickPrepare().need).toBe(true); // ENABLE (zero)
    mem.writeU16(dev + EVENT_FLAGS, RING_EVENT_FLAGS_DISABLE);
    add();
    expect(p.kickPrepare().need).toBe(false);
    // DESC at offset 2 of this lap: adding slot 2 crosses it.
    mem.writeU16(dev + EVENT_OFF_WRAP, 2 | RING_EVENT_WRAP);
    mem.writeU16(dev + EVENT_FLAGS, RING_EVENT_FLAGS_DESC);
    add();
    expect(p.kickPrepare()).toEqual({ need: true, old: 2, new: 3, event: 2 });
    add(); // slot 3; the driver wraps to 0 with wrap counter 0
    expect(p.kickPrepare().need).toBe(false);
    expect([p.nextAvail, p.availWrap]).toEqual([0, false]);
  });

  it("holds a chain's first flags until publish, so the device sees none of it before [PVQ-DRIVER-AVAIL]", () => {
    const { q, slabs, dev, mem } = make("packed", 8, false);
    slabs.add(
      q,
      [
        { len: 10, write: false },
        { len: 20, write: true },
      ],
      false,
      0,
    );
    expect(q.unpublished).toBe(1);
    expect(dev.popInto(PACKED_RING.newChain(mem))).toBe(false);
    q.publish();
    expect(dev.popInto(PACKED_RING.newChain(mem))).toBe(true);
  });

  it("enable_cb_delayed puts off_wrap 3/4 of the outstanding slots ahead, wrapping the counter [PVQ-DRIVER-USED]", () => {
    const { q, slabs } = make("packed", 4, true);
    const p = q as PackedDriver;
    for (let i = 0; i < 4; i++) slabs.add(p, [{ len: 10, write: true }], false, i);
    p.publish();
    p.usedIdx = 3; // as if three were reclaimed already: 3 + 3 = 6 → slot 2 of the next lap
    // Linux starts with ENABLE and writes DESC only when re-enabling after a disable.
    expect(p.enableCbDelayed()).toBe(true);
    expect(p.driverEvent()).toEqual({ offWrap: 2, flags: 0 });
    p.disableCb();
    expect(p.enableCbDelayed()).toBe(true);
    expect(p.driverEvent()).toEqual({ offWrap: 2, flags: RING_EVENT_FLAGS_DESC });
  });
});
