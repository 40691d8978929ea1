import { describe, expect, it } from "vitest";
import { GuestMemory } from "../../impl/memory/guest-memory.ts";
import { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import { walkChain } from "../../spec/queue.ts";
import { specMemoryOf } from "../oracle.ts";
import { Rng } from "../rng.ts";
import { GuestRam } from "./ram.ts";
import { GuestVirtqueue, layoutRings, vringNeedEvent, type Segment } from "./virtio-ring.ts";
import { vringNeedEvent as specNeedEvent } from "../../wire/split.ts";

const make = (size: number, eventIdx: boolean): { q: GuestVirtqueue; mem: GuestMemory; ram: GuestRam } => {
  const opts = { eventIdx, indirect: true, slabBytes: 4096, maxIndirect: 8 };
  const mem = GuestMemory.of([
    { base: 0x1000, bytes: new Uint8Array(0x4000) },
    { base: 0x100000, bytes: new Uint8Array(GuestVirtqueue.bytesNeeded(size, opts)) },
  ]);
  const ram = new GuestRam(mem);
  return { q: new GuestVirtqueue(ram, layoutRings(0x1000, size), 0x100000, opts), mem, ram };
};

describe("guest driver model (Linux virtio_ring)", () => {
  it("vring_need_event is the reference model's [SIM-KICK-GATE]", () => {
    const r = new Rng(1);
    for (let i = 0; i < 20000; i++) {
      const [e, n, o] = [r.int(0x10000), r.int(0x10000), r.int(0x10000)];
      expect(vringNeedEvent(e, n, o)).toBe(specNeedEvent(e, n, o));
    }
  });

  it("chains it adds walk the same in the device's chain cursor and the reference model [SIM-CHAIN-MATCH]", () => {
    const r = new Rng(2);
    const { q, mem } = make(16, true);
    const spec = specMemoryOf(mem);
    for (let round = 0; round < 300; round++) {
      const n = r.range(1, 6);
      const segs: Segment[] = Array.from({ length: n }, (_, i) => ({
        len: r.range(1, 500),
        write: i >= n - r.int(n),
      }));
      const head = q.add(segs, r.chance(0.5), round);
      if (head < 0) {
        // Reclaim everything the "device" finished: complete them all in reverse order.
        const heads: number[] = [];
        for (let h = 0; h < q.size; h++) if (q.inFlightAt(h) !== undefined) heads.push(h);
        for (const h of heads.reverse()) completeOne(q, mem, h);
        while (q.getBuf().kind === "buf");
        expect(q.numFree).toBe(q.size);
        continue;
      }
      q.publish();
      const buf = q.inFlightAt(head)!;
      const chain = new DescriptorChain(mem);
      expect(chain.setHead(mem, q.layout.desc, q.size, head)).toBe(true);
      const got: { addr: number; len: number; write: boolean }[] = [];
      for (let ok = chain.rewind(); ok; ok = chain.advance())
        got.push({ addr: chain.addr, len: chain.len, write: chain.isWriteOnly() });
      expect(chain.end).toBeNull();
      expect(got).toEqual(buf.segments);
      const walk = walkChain(spec, BigInt(q.layout.desc), q.size, head);
      expect(walk.descriptors.map((d) => Number(d.addr))).toEqual(buf.segments.map((s) => s.addr));
    }
  });

  it("kicks only when avail_event says so with EVENT_IDX, and honours NO_NOTIFY without [SIM-KICK-GATE]", () => {
    const a = make(8, true);
    a.q.add([{ len: 10, write: false }], false, 0);
    a.q.publish();
    // avail_event 0 (fresh ring): the device wants a kick for the entry at index 0.
    expect(a.q.kickPrepare().need).toBe(true);
    a.q.add([{ len: 10, write: false }], false, 1);
    a.q.publish();
    // avail_event still 0: the device has not caught up, no kick for index 1.
    expect(a.q.kickPrepare().need).toBe(false);
    a.ram.setU16(a.q.layout.used + 4 + 8 * 8, 2);
    a.q.add([{ len: 10, write: false }], false, 2);
    a.q.publish();
    expect(a.q.kickPrepare().need).toBe(true);

    const b = make(8, false);
    b.ram.setU16(b.q.layout.used, 1); // VRING_USED_F_NO_NOTIFY
    b.q.add([{ len: 10, write: false }], false, 0);
    b.q.publish();
    expect(b.q.kickPrepare().need).toBe(false);
    b.ram.setU16(b.q.layout.used, 0);
    b.q.add([{ len: 10, write: false }], false, 1);
    b.q.publish();
    expect(b.q.kickPrepare().need).toBe(true);
  });

  it("refuses a used element for a head not in flight, as Linux's BAD_RING check [SIM-USED-ID]", () => {
    const { q, ram } = make(8, false);
    const head = q.add([{ len: 10, write: true }], false, 0);
    q.publish();
    ram.setU32(q.layout.used + 4, head + 1); // wrong id
    ram.setU32(q.layout.used + 8, 4);
    ram.setU16(q.layout.used + 2, 1);
    expect(q.getBuf()).toMatchObject({ kind: "bad", id: head + 1 });
  });
});

/** Plays a device completing `head` with 0 bytes (writes the used element and used.idx). */
const completeOne = (q: GuestVirtqueue, mem: GuestMemory, head: number): void => {
  const idx = mem.readU16(q.layout.used + 2);
  const e = q.layout.used + 4 + 8 * (idx % q.size);
  mem.writeU32(e, head);
  mem.writeU32(e + 4, 0);
  mem.writeU16(q.layout.used + 2, (idx + 1) & 0xffff);
};
