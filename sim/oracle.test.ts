/**
 * The oracle catches broken devices: each test runs a rig with one bug planted in the
 * device side (the kind of bug the reference VMMs had) and expects the run to stop with a
 * violation of the rule that bug breaks, while the same rig without the bug passes.
 */
import { describe, expect, it } from "vitest";
import type { GuestMemory } from "../impl/memory/guest-memory.ts";
import { LoopbackBackend } from "../impl/net/backend.ts";
import { RX_QUEUE, TX_QUEUE } from "../impl/net/device.ts";
import { PackedQueue as PackedQueueClass, type PackedQueue } from "../impl/queue/packed-queue.ts";
import { SplitQueue } from "../impl/queue/split-queue.ts";
import {
  EVENT_FLAGS,
  EVENT_OFF_WRAP,
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_WRAP,
} from "../wire/packed.ts";
import { SimContext, SimViolation, type RunOptions } from "./engine.ts";
import { NetRig } from "./scenarios/net-rig.ts";
import { QueueRig } from "./scenarios/queue-rig.ts";
import { drainRig, queueStep } from "./scenarios/queue.ts";

const options = (seed: number): RunOptions => ({ seed, steps: 0, faults: 0, oracle: true, trace: false });

/** Runs `steps` steps (then drains); the violation's rule, or "passed". */
const runQueue = (
  seed: number,
  eventIdx: boolean,
  plant: (rig: QueueRig) => void,
  steps = 400,
  ring: "split" | "packed" = "split",
): string => {
  const ctx = new SimContext({ ...options(seed), ring });
  const rig = new QueueRig(ctx, { ring, name: "", size: 32, eventIdx, indirect: true });
  plant(rig);
  try {
    for (let i = 0; i < steps; i++) {
      ctx.trace.step = i;
      queueStep(ctx, rig, 4);
    }
    drainRig(ctx, rig);
    return "passed";
  } catch (e) {
    if (e instanceof SimViolation) return e.rule;
    throw e;
  }
};

const runNet = (seed: number, eventIdx: boolean, plant: (rig: NetRig) => void, steps = 300): string => {
  const ctx = new SimContext(options(seed));
  const rig = new NetRig(ctx, {
    name: "t",
    label: "t",
    size: 32,
    eventIdx,
    mrg: false,
    backend: new LoopbackBackend(),
    loopback: true,
  });
  plant(rig);
  rig.refillRx();
  try {
    for (let i = 0; i < steps; i++) {
      ctx.trace.step = i;
      rig.step(6);
    }
    rig.drain();
    return "passed";
  } catch (e) {
    if (e instanceof SimViolation) return e.rule;
    throw e;
  }
};

describe("the oracle beside a packed queue", () => {
  const packed = (seed: number, eventIdx: boolean, plant: (q: PackedQueue) => void): string =>
    runQueue(seed, eventIdx, (rig) => plant(rig.port.queue as PackedQueue), 400, "packed");

  it("passes a correct device, with and without EVENT_IDX [SIM-CHAIN-MATCH SIM-USED-ID SIM-NO-LOSS SIM-QUEUE-REFINES]", () => {
    for (const seed of [1, 2]) {
      expect(packed(seed, true, () => {})).toBe("passed");
      expect(packed(seed, false, () => {})).toBe("passed");
    }
  });

  it("catches a used descriptor whose id is the slot, not the buffer id [SIM-QUEUE-REFINES PVQ-BUFFER-ID]", () => {
    // The bug class of conformance's packed mutant, planted on the device's real path.
    type Put = (this: PackedQueue, id: number, len: number, slots: number) => void;
    const proto = PackedQueueClass.prototype as unknown as { putUsed: Put };
    const put = proto.putUsed;
    proto.putUsed = function (this: PackedQueue, _id: number, len: number, slots: number): void {
      put.call(this, this.nextUsed, len, slots);
    };
    try {
      const rules = [1, 2, 3].map((seed) => packed(seed, true, () => {}));
      expect(rules.every((r) => r === "SIM-QUEUE-REFINES" || r === "SIM-USED-ID")).toBe(true);
    } finally {
      proto.putUsed = put;
    }
    expect(packed(1, true, () => {})).toBe("passed");
  });

  it("catches an off-by-one interrupt decision under DESC off_wrap, which only the reference judges [SIM-QUEUE-REFINES]", () => {
    // The rig's own SIM-KICK-GATE check reads only ENABLE / DISABLE on the packed ring, and a
    // spurious interrupt costs the driver nothing: only the packed shadow sees this bug.
    interface Internals {
      active: boolean;
      driverView: DataView;
      driverOff: number;
      _numAdded: number;
      _nextUsed: number;
      _eventIdx: boolean;
      usedWrap: number;
      size: number;
    }
    const proto = PackedQueueClass.prototype as unknown as { prepareKick: (this: Internals) => boolean };
    const prepareKick = proto.prepareKick;
    proto.prepareKick = function (this: Internals): boolean {
      if (!this.active) return false;
      const mode = this.driverView.getUint16(this.driverOff + EVENT_FLAGS, true) & 3;
      const added = this._numAdded;
      this._numAdded = 0;
      if (mode === RING_EVENT_FLAGS_DISABLE) return false;
      if (mode !== RING_EVENT_FLAGS_DESC || !this._eventIdx) return true;
      const offWrap = this.driverView.getUint16(this.driverOff + EVENT_OFF_WRAP, true);
      let event = offWrap & ~RING_EVENT_WRAP;
      if (((offWrap & RING_EVENT_WRAP) === 0 ? 0 : 1) !== this.usedWrap) event = (event - this.size) & 0xffff;
      return ((this._nextUsed - event - 1) & 0xffff) <= added; // the bug: <= for <
    };
    try {
      expect([1, 2, 3].map((seed) => packed(seed, true, () => {}))).toEqual(
        Array(3).fill("SIM-QUEUE-REFINES"),
      );
    } finally {
      proto.prepareKick = prepareKick;
    }
  });
});

describe("the oracle beside a split queue", () => {
  it("passes a correct device, with and without EVENT_IDX [SIM-CHAIN-MATCH SIM-USED-ID SIM-NO-LOSS SIM-QUEUE-REFINES]", () => {
    for (const seed of [1, 2, 3]) {
      expect(runQueue(seed, true, () => {})).toBe("passed");
      expect(runQueue(seed, false, () => {})).toBe("passed");
    }
  });

  it("catches prepareKick off by one (used_event compared with <=) [SIM-KICK-GATE SIM-QUEUE-REFINES]", () => {
    const rule = runQueue(4, true, (rig) => {
      const q = rig.port.queue as SplitQueue;
      q.prepareKick = function (): boolean {
        const used = this.nextUsed;
        const added = this.numAdded;
        const ev = this.usedEvent();
        this.setPositions({ numAdded: 0 });
        return ev.ok && ((used - ev.value) & 0xffff) <= added;
      };
    });
    expect(["SIM-KICK-GATE", "SIM-QUEUE-REFINES"]).toContain(rule);
  });

  it("catches used.idx published before the element is written [SIM-QUEUE-REFINES SIM-USED-ID]", () => {
    const rule = runQueue(5, false, (rig) => {
      const q = rig.port.queue as SplitQueue;
      const addUsed = q.addUsed.bind(q);
      q.addUsed = (index, len) => {
        // Publishes first, then writes the element: the driver may read a stale entry.
        q.setPositions({ nextUsed: q.nextUsed + 1 });
        q.publishUsed();
        q.setPositions({ nextUsed: q.nextUsed - 1 });
        return addUsed(index, len);
      };
    });
    expect(["SIM-QUEUE-REFINES", "SIM-USED-ID"]).toContain(rule);
  });

  it("catches a device that forgets to re-enable notifications (lost wake-up) [SIM-NO-STALL SIM-QUEUE-REFINES]", () => {
    const rule = runQueue(6, true, (rig) => {
      const q = rig.port.queue as SplitQueue;
      q.tryEnableNotification = () => ({ ok: true, value: true });
    });
    expect(["SIM-NO-STALL", "SIM-QUEUE-REFINES"]).toContain(rule);
  });

  it("catches a stray device write into a used-ring slot it is not filling, which the bounds allow [SIM-QUEUE-REFINES]", () => {
    const addUsed = SplitQueue.prototype.addUsed;
    let strays = 0;
    SplitQueue.prototype.addUsed = function (this: SplitQueue, index: number, len: number) {
      const r = addUsed.call(this, index, len);
      const st = this.state();
      if (st.nextUsed % 7 === 3) {
        // The len field of the element two slots ahead: inside the used ring, no element yet.
        const slot = (st.nextUsed + 2) % st.size;
        const mem = (this as unknown as { mem: GuestMemory }).mem;
        mem.writeU8(Number(st.usedRing) + 4 + 8 * slot + 4, 0x5a);
        strays++;
      }
      return r;
    };
    try {
      expect(runQueue(8, false, () => {})).toBe("SIM-QUEUE-REFINES");
      expect(runQueue(8, true, () => {})).toBe("SIM-QUEUE-REFINES");
      expect(strays).toBeGreaterThan(0);
    } finally {
      SplitQueue.prototype.addUsed = addUsed;
    }
  });

  it("catches a device write outside the buffers it was given [SIM-BOUNDS]", () => {
    const rule = runQueue(7, false, (rig) => {
      const q = rig.port.queue as SplitQueue;
      const publish = q.publishUsed.bind(q);
      q.publishUsed = () => {
        // A stray write into the scratch area, which no chain names.
        rig.mem.writeU32(rig.scratch.addr + 64, 0xdeadbeef);
        return publish();
      };
    });
    expect(rule).toBe("SIM-BOUNDS");
  });

  it("catches a device write into a buffer the driver made read-only [SIM-BOUNDS]", () => {
    let stray = 0;
    const rule = runQueue(9, false, (rig) => {
      const q = rig.port.queue as SplitQueue;
      const addUsed = q.addUsed.bind(q);
      q.addUsed = (index, len) => {
        // The chain in hand is still the device's, but its readable part is not for writing.
        const readable = rig.driver.inFlightAt(index)?.segments.find((s) => !s.write);
        if (readable !== undefined) {
          stray++;
          rig.mem.writeU8(readable.addr, 0x5a);
        }
        return addUsed(index, len);
      };
    });
    expect(stray).toBeGreaterThan(0);
    expect(rule).toBe("SIM-BOUNDS");
  });

  it("catches a device read of a buffer it has already given back [SIM-BOUNDS]", () => {
    let stray = 0;
    const rule = runQueue(8, false, (rig) => {
      const q = rig.port.queue as SplitQueue;
      let given: { addr: number } | undefined;
      const addUsed = q.addUsed.bind(q);
      q.addUsed = (index, len) => {
        given = rig.driver.inFlightAt(index)?.segments[0];
        return addUsed(index, len);
      };
      const publish = q.publishUsed.bind(q);
      q.publishUsed = () => {
        // The chain completed last is the driver's again: its first byte is off limits.
        if (given !== undefined) {
          stray++;
          rig.mem.readU8(given.addr);
        }
        return publish();
      };
    });
    expect(stray).toBeGreaterThan(0);
    expect(rule).toBe("SIM-BOUNDS");
  });
});

describe("the oracle beside virtio-net", () => {
  it("passes the device as it is [SIM-DELIVERY SIM-KICK-GATE SIM-USED-LEN]", () => {
    for (const seed of [1, 2]) {
      expect(runNet(seed, true, () => {})).toBe("passed");
      expect(runNet(seed, false, () => {})).toBe("passed");
    }
  });

  it("catches a device that suppresses an interrupt vring_need_event asks for [SIM-KICK-GATE]", () => {
    const rule = runNet(3, true, (rig) => {
      const q = rig.device.queues[RX_QUEUE] as SplitQueue;
      let n = 0;
      const prepare = q.prepareKick.bind(q);
      q.prepareKick = (h?: boolean) => {
        const need = prepare(h);
        return need && n++ % 5 !== 4;
      };
    });
    expect(rule).toBe("SIM-KICK-GATE");
  });

  it("runs the reference model beside the device's own queues: a planted queue bug is caught [SIM-QUEUE-REFINES]", () => {
    const prepareKick = SplitQueue.prototype.prepareKick;
    SplitQueue.prototype.prepareKick = function (this: SplitQueue, honour?: boolean): boolean {
      const added = this.numAdded;
      const need = prepareKick.call(this, honour);
      return added === 2 ? !need : need; // wrong whenever exactly two elements were added
    };
    try {
      expect(runNet(6, true, () => {})).toBe("SIM-QUEUE-REFINES");
    } finally {
      SplitQueue.prototype.prepareKick = prepareKick;
    }
  });

  it("catches a frame lost between TX and RX [SIM-DELIVERY]", () => {
    const rule = runNet(4, false, (rig) => {
      const b = rig.opts.backend as LoopbackBackend;
      const receive = b.receive.bind(b);
      let n = 0;
      b.receive = (dst) => {
        if (n++ === 20) receive(dst); // swallow one frame silently
        return receive(dst);
      };
    });
    expect(rule).toBe("SIM-DELIVERY");
  });

  it("catches a frame that arrives with one byte changed [SIM-DELIVERY]", () => {
    let altered = 0;
    const rule = runNet(4, false, (rig) => {
      const b = rig.opts.backend as LoopbackBackend;
      const receive = b.receive.bind(b);
      let n = 0;
      b.receive = (dst) => {
        const len = receive(dst);
        // From the 20th frame on, byte 30 of the frame (its payload) becomes 0xa5.
        if (len > 30 && n++ >= 20) {
          dst.write(Uint8Array.of(0xa5), 0, 1, dst.headerLength + 30);
          altered++;
        }
        return len;
      };
    });
    expect(altered).toBeGreaterThan(0);
    expect(rule).toBe("SIM-DELIVERY");
  });

  it("catches a TX used length that is not zero where the chain has no writable bytes [SIM-USED-LEN]", () => {
    const rule = runNet(5, false, (rig) => {
      const q = rig.device.queues[TX_QUEUE] as SplitQueue;
      const addUsed = q.addUsed.bind(q);
      q.addUsed = (index, len) => addUsed(index, len + 1);
    });
    expect(rule).toBe("SIM-USED-LEN");
  });
});
