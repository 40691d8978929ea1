/**
 * Refinement for the packed ring: the implementation (PackedQueue over GuestMemory) and the
 * reference model (spec/packed-queue over SpecMemory) run the same random sequences of driver
 * actions (PackedDriver adding chains directly or through unaligned indirect tables, held-back
 * and published flags, reaping, event suppression; and a hostile guest planting raw
 * descriptors, often flagged available for the device's lap, and scribbling over the ring
 * and areas) and device actions (pop, popInto with and without a recorder,
 * popOrEnableNotification, undoPop, addUsed of buffers in flight or of any id, publishUsed,
 * prepareKick, enable/disable/tryEnableNotification, the event fields, reset and
 * re-initialize with or without EVENT_IDX and IN_ORDER). Queue sizes are mostly 1..6, so
 * both wrap counters cross the ring's end many times per run. After every device action the
 * results, the queue states and the whole memories are equal.
 */
import fc from "fast-check";
import { describe } from "vitest";
import type { GuestMemory } from "../impl/memory/guest-memory.ts";
import { PackedDescriptorChain } from "../impl/queue/packed-chain.ts";
import { PackedDriver, availFlags } from "../impl/queue/packed-driver.ts";
import { PackedQueue, PopStatus } from "../impl/queue/packed-queue.ts";
import * as M from "../spec/memory.ts";
import type { SpecMemory } from "../spec/memory.ts";
import * as P from "../spec/packed-queue.ts";
import type { Result } from "../spec/result.ts";
import { property } from "./harness.ts";
import { buildMemories } from "./arbitraries/memory.ts";
import { chainBuffersArb, type BufferSpec } from "./arbitraries/queue.ts";
import { recording, sameMemory } from "./arbitraries/queue-state.ts";
import { same, show } from "./arbitraries/chain.ts";
import {
  encodePacked,
  packedPlacementArb,
  packedPopView,
  packedPopped,
  rawPackedArb,
  type PackedPlacement,
  type RawPackedDescriptor,
} from "./arbitraries/packed.ts";
import { RING_EVENT_FLAGS_DESC, VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_USED } from "../wire/packed.ts";

type DriverAction =
  | {
      readonly t: "add";
      readonly buffers: readonly BufferSpec[];
      readonly indirect: { readonly region: number; readonly at: number } | null;
      readonly publish: boolean;
    }
  | { readonly t: "publish" | "reap" | "disableInterrupts" | "kick" }
  | { readonly t: "enableInterrupts"; readonly eventIdx: boolean }
  | { readonly t: "plant"; readonly k: number; readonly raw: RawPackedDescriptor; readonly availNow: boolean }
  | { readonly t: "byte"; readonly area: 0 | 1 | 2; readonly offset: number; readonly byte: number }
  | { readonly t: "driverEvent"; readonly offWrap: number; readonly flags: number };

type DeviceAction =
  | { readonly t: "pop" | "popOrEnable" | "undoPop" | "publishUsed" | "prepareKick" | "tryEnable" }
  | { readonly t: "enable" | "disable" | "events" | "isEmpty" | "reset" }
  | { readonly t: "popInto"; readonly recorded: boolean }
  | {
      readonly t: "addUsed";
      readonly pick: number;
      readonly raw: number | null;
      readonly len: number;
      readonly recorded: boolean;
    }
  | { readonly t: "reinit"; readonly eventIdx: boolean; readonly inOrder: boolean };

type Action =
  { readonly who: "driver"; readonly a: DriverAction } | { readonly who: "device"; readonly a: DeviceAction };

const u16Arb = fc.oneof(fc.nat(0xffff), fc.constantFrom(0, 0x8000, 0xffff));

const driverActionArb = (p: PackedPlacement): fc.Arbitrary<DriverAction> =>
  fc.oneof(
    {
      weight: 12,
      arbitrary: fc.record({
        t: fc.constant("add" as const),
        buffers: chainBuffersArb(p.data, 4),
        indirect: fc.option(fc.record({ region: fc.nat(p.data.length - 1), at: fc.nat() }), {
          nil: null,
          freq: 4,
        }),
        publish: fc.oneof(
          { weight: 4, arbitrary: fc.constant(true) },
          { weight: 1, arbitrary: fc.constant(false) },
        ),
      }),
    },
    { weight: 5, arbitrary: fc.constantFrom<DriverAction>({ t: "publish" }, { t: "reap" }, { t: "reap" }) },
    {
      weight: 4,
      arbitrary: fc.oneof(
        fc.constantFrom<DriverAction>({ t: "disableInterrupts" }, { t: "kick" }),
        fc.boolean().map((eventIdx): DriverAction => ({ t: "enableInterrupts", eventIdx })),
      ),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant("plant" as const),
        k: fc.nat(p.size),
        raw: rawPackedArb(p.size, p.data),
        availNow: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant("byte" as const),
        area: fc.constantFrom<0 | 1 | 2>(0, 1, 2),
        offset: fc.nat(),
        byte: fc.nat(255),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant("driverEvent" as const),
        // Mostly an event slot in the ring, of either lap; mostly DESC.
        offWrap: fc.oneof(
          {
            weight: 3,
            arbitrary: fc.tuple(fc.nat(p.size - 1), fc.boolean()).map(([o, w]) => o | (w ? 0x8000 : 0)),
          },
          { weight: 1, arbitrary: u16Arb },
        ),
        flags: fc.oneof(
          { weight: 3, arbitrary: fc.constant(RING_EVENT_FLAGS_DESC) },
          { weight: 1, arbitrary: fc.nat(3) },
          { weight: 1, arbitrary: u16Arb },
        ),
      }),
    },
  );

const deviceActionArb: fc.Arbitrary<DeviceAction> = fc.oneof(
  {
    weight: 16,
    arbitrary: fc.oneof(
      fc.constant<DeviceAction>({ t: "pop" }),
      fc.boolean().map((recorded): DeviceAction => ({ t: "popInto", recorded })),
    ),
  },
  { weight: 2, arbitrary: fc.constantFrom<DeviceAction>({ t: "popOrEnable" }, { t: "undoPop" }) },
  {
    weight: 12,
    arbitrary: fc.record({
      t: fc.constant("addUsed" as const),
      pick: fc.nat(),
      raw: fc.option(fc.oneof(fc.nat(0xffff), fc.constant(-1)), { nil: null, freq: 6 }),
      len: fc.oneof(fc.constant(0), fc.nat(0xffff_ffff)),
      recorded: fc.boolean(),
    }),
  },
  { weight: 6, arbitrary: fc.constant<DeviceAction>({ t: "publishUsed" }) },
  { weight: 4, arbitrary: fc.constant<DeviceAction>({ t: "prepareKick" }) },
  {
    weight: 4,
    arbitrary: fc.constantFrom<DeviceAction>(
      { t: "prepareKick" },
      { t: "tryEnable" },
      { t: "enable" },
      { t: "disable" },
      { t: "events" },
      { t: "isEmpty" },
    ),
  },
  { weight: 1, arbitrary: fc.constant<DeviceAction>({ t: "reset" }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("reinit" as const),
      eventIdx: fc.boolean(),
      inOrder: fc.boolean(),
    }),
  },
);

const scenarioArb = packedPlacementArb({ maxSize: 512, maxDataSize: 4096 }).chain((p) =>
  fc.record({
    p: fc.constant(p),
    seed: fc.integer(),
    maxSize: fc.integer({ min: p.size, max: 32768 }),
    withDriver: fc.oneof(
      { weight: 3, arbitrary: fc.constant(true) },
      { weight: 1, arbitrary: fc.constant(false) },
    ),
    eventIdx: fc.boolean(),
    inOrder: fc.boolean(),
    start: fc.record({ slot: fc.nat(p.size - 1), wrap: fc.boolean() }),
    actions: fc.array(
      fc.oneof(
        driverActionArb(p).map((a): Action => ({ who: "driver", a })),
        deviceActionArb.map((a): Action => ({ who: "device", a })),
      ),
      { minLength: 1, maxLength: 80, size: "max" },
    ),
  }),
);

const fail = (what: string): never => {
  throw new Error(what);
};

class World {
  readonly chain: PackedDescriptorChain;
  driver: PackedDriver | null = null;

  constructor(
    readonly p: PackedPlacement,
    readonly mem: GuestMemory,
    public specMem: SpecMemory,
    readonly impl: PackedQueue,
    public spec: P.SpecPackedQueue,
  ) {
    this.chain = new PackedDescriptorChain(mem);
  }

  /** Configure and initialize both sides; with a driver, it lays out the ring first. */
  initialize(
    withDriver: boolean,
    eventIdx: boolean,
    inOrder: boolean,
    start: { readonly slot: number; readonly wrap: boolean },
  ): void {
    const p = this.p;
    this.driver = withDriver
      ? this.driverWrites(() => new PackedDriver(this.mem, p.size, p, { inOrder }))
      : null;
    const config = {
      size: p.size,
      ready: true,
      descTable: BigInt(p.descTable),
      availRing: BigInt(p.availRing),
      usedRing: BigInt(p.usedRing),
    };
    this.impl.configure(config);
    this.spec = P.configure(this.spec, config);
    const pos = { nextAvail: start.slot, availWrap: start.wrap, nextUsed: start.slot, usedWrap: start.wrap };
    this.impl.setPositions(pos);
    this.spec = P.setPositions(this.spec, pos);
    if (eventIdx) {
      this.impl.enableNotifSuppression();
      this.spec = P.enableNotifSuppression(this.spec);
    }
    if (inOrder) {
      this.impl.enableInOrder();
      this.spec = P.enableInOrder(this.spec);
    }
    const r = this.impl.initialize(this.mem);
    const s = P.initialize(this.spec, this.specMem);
    this.spec = s.queue;
    if (!r.ok || !s.result.ok) fail(`initialize: ${show(r)} / ${show(s.result)}`);
    const d = this.driver;
    if (d !== null) {
      d.nextAvail = d.usedIdx = start.slot;
      d.availWrap = d.usedWrap = start.wrap;
    }
  }

  /** Runs a driver step on impl memory and copies exactly the bytes it wrote into spec memory. */
  driverWrites<T>(f: () => T): T {
    const { result, accesses } = recording(this.mem, f);
    for (const a of accesses) {
      if (!a.write) continue;
      const bytes = this.mem.slice(a.addr, a.len);
      if (bytes === undefined) return fail(`driver wrote outside memory at ${a.addr}`);
      const next = M.writeBytes(this.specMem, BigInt(a.addr), Uint8Array.from(bytes));
      if (!next.ok) return fail("spec memory refused a driver write");
      this.specMem = next.value;
    }
    return result;
  }

  drive(a: DriverAction): void {
    this.driverWrites(() => this.driveRaw(a));
  }

  private driveRaw(a: DriverAction): void {
    const p = this.p;
    const d = this.driver;
    switch (a.t) {
      case "plant": {
        // Raw descriptor k slots past the device's next_avail, often flagged available for the lap it lies in.
        const st = this.impl.state();
        const slot = (st.nextAvail + a.k) % p.size;
        const wrap = st.nextAvail + a.k >= p.size ? !st.availWrap : st.availWrap;
        const flags = a.availNow
          ? (a.raw.flags & ~(VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED)) | availFlags(wrap)
          : a.raw.flags;
        this.mem.writeFrom(p.descTable + 16 * slot, encodePacked({ ...a.raw, flags }));
        return;
      }
      case "byte": {
        const [at, len] =
          a.area === 0 ? [p.descTable, 16 * p.size] : [a.area === 1 ? p.availRing : p.usedRing, 4];
        this.mem.writeU8(at + (a.offset % len), a.byte);
        return;
      }
      case "driverEvent":
        this.mem.writeU16(p.availRing, a.offWrap);
        this.mem.writeU16(p.availRing + 2, a.flags);
        return;
      default:
        break;
    }
    if (d === null) return;
    switch (a.t) {
      case "add": {
        let table: number | undefined;
        if (a.indirect !== null) {
          const r = p.data[a.indirect.region]!;
          const bytes = 16 * a.buffers.length;
          if (r.size < bytes) return;
          table = r.base + (a.indirect.at % (r.size - bytes + 1));
        }
        d.addChain(
          a.buffers.map((b) => ({ addr: b.addr, len: b.len, write: b.write })),
          table === undefined ? { publish: a.publish } : { publish: a.publish, indirectTable: table },
        );
        return;
      }
      case "publish":
        d.publish();
        return;
      case "reap":
        try {
          d.reapUsed();
        } catch {
          // A planted descriptor made the ring disagree with what the driver knows: from here
          // on the guest is only hostile.
          this.driver = null;
        }
        return;
      case "disableInterrupts":
        d.disableInterrupts();
        return;
      case "enableInterrupts":
        d.enableInterrupts(a.eventIdx);
        return;
      case "kick":
        d.kickPrepare();
        return;
    }
  }

  check<T>(what: string, got: T, want: P.Step<T>): void {
    if (!same(got, want.result)) fail(`${what}: impl ${show(got)}, spec ${show(want.result)}`);
    this.spec = want.queue;
    this.specMem = want.memory;
    if (!same(this.impl.state(), this.spec))
      fail(`${what}: state ${show(this.impl.state())}, spec ${show(this.spec)}`);
    if (!sameMemory(this.mem, this.specMem)) fail(`${what}: memories differ`);
  }

  maybeRecorded<T>(recorded: boolean, f: () => T): T {
    if (!recorded) return f();
    const prev = this.mem.recorder;
    this.mem.recorder = () => {};
    try {
      return f();
    } finally {
      this.mem.recorder = prev;
    }
  }

  device(a: DeviceAction): void {
    const q = this.impl;
    const stay = <T>(result: T): P.Step<T> => ({ queue: this.spec, memory: this.specMem, result });
    switch (a.t) {
      case "pop":
        return this.check("pop", packedPopView(q.pop()), P.pop(this.spec, this.specMem));
      case "popInto": {
        const popped = this.maybeRecorded(a.recorded, () => q.popInto(this.chain));
        const got: Result<P.SpecPackedPopped | null, P.PackedQueueError> = popped
          ? { ok: true, value: packedPopped(this.chain) }
          : q.lastPop === PopStatus.Error
            ? { ok: false, error: q.lastError! }
            : { ok: true, value: null };
        return this.check("popInto", got, P.pop(this.spec, this.specMem));
      }
      case "popOrEnable":
        return this.check(
          "popOrEnableNotification",
          packedPopView(q.popOrEnableNotification()),
          P.popOrEnableNotification(this.spec, this.specMem),
        );
      case "undoPop":
        q.undoPop();
        return this.check("undoPop", undefined, { ...stay(undefined), queue: P.undoPop(this.spec) });
      case "addUsed": {
        const inFlight = this.spec.inFlight;
        const id =
          a.raw !== null
            ? a.raw
            : inFlight.length > 0
              ? inFlight[a.pick % inFlight.length]!.id
              : a.pick % this.p.size;
        return this.check(
          `addUsed(${id})`,
          this.maybeRecorded(a.recorded, () => q.addUsed(id, a.len)),
          P.addUsed(this.spec, this.specMem, id, a.len),
        );
      }
      case "publishUsed":
        return this.check("publishUsed", q.publishUsed(), P.publishUsed(this.spec, this.specMem));
      case "prepareKick":
        return this.check("prepareKick", q.prepareKick(), P.prepareKick(this.spec, this.specMem));
      case "tryEnable":
        return this.check(
          "tryEnableNotification",
          q.tryEnableNotification(),
          P.tryEnableNotification(this.spec, this.specMem),
        );
      case "enable":
        return this.check(
          "enableNotification",
          q.enableNotification(),
          P.enableNotification(this.spec, this.specMem),
        );
      case "disable":
        return this.check(
          "disableNotification",
          q.disableNotification(),
          P.disableNotification(this.spec, this.specMem),
        );
      case "events":
        return this.check(
          "driverEvent/deviceEvent",
          [q.driverEvent(), q.deviceEvent()],
          stay([P.driverEvent(this.spec, this.specMem), P.deviceEvent(this.spec, this.specMem)]),
        );
      case "isEmpty":
        return this.check("isEmpty", q.isEmpty(), stay(P.isEmpty(this.spec, this.specMem)));
      case "reset":
        // Reset, an inactive queue's answers, then the driver programs the queue again (a
        // long inactive stretch would leave the rest of the run with nothing to compare).
        q.reset();
        this.check("reset", undefined, { ...stay(undefined), queue: P.reset(this.spec) });
        this.check("pop (inactive)", packedPopView(q.pop()), P.pop(this.spec, this.specMem));
        this.check("addUsed (inactive)", q.addUsed(0, 0), P.addUsed(this.spec, this.specMem, 0, 0));
        this.check("prepareKick (inactive)", q.prepareKick(), P.prepareKick(this.spec, this.specMem));
        this.initialize(this.driver !== null, false, false, { slot: 0, wrap: true });
        return this.check("re-initialize", undefined, stay(undefined));
      case "reinit":
        q.reset();
        this.spec = P.reset(this.spec);
        this.initialize(true, a.eventIdx, a.inOrder, { slot: 0, wrap: true });
        return this.check("re-initialize", undefined, stay(undefined));
    }
  }
}

describe("packed queue refinement", () => {
  property(
    "packedImplRefinesSpec",
    [
      "PVQ-WRAP",
      "PVQ-AVAIL",
      "PVQ-CHAIN-NEXT",
      "PVQ-CHAIN-LIMIT",
      "PVQ-BUFFER-ID",
      "PVQ-POP-ID",
      "PVQ-POP-ADVANCE",
      "PVQ-INDIRECT",
      "PVQ-INDIRECT-LEN",
      "PVQ-INDIRECT-IN-CHAIN",
      "PVQ-LEN-U32",
      "PVQ-UNDO-POP",
      "PVQ-ADD-USED",
      "PVQ-IN-ORDER",
      "PVQ-USED-FLAGS",
      "PVQ-PUBLISH-USED",
      "PVQ-NOTIFY-DRIVER",
      "PVQ-NOTIFY-DEVICE",
      "PVQ-TRY-ENABLE",
      "PVQ-POP-OR-ENABLE",
      "PVQ-EVENT-FIELDS",
      "PVQ-RESET",
      "PVQ-INACTIVE",
      "PVQ-INIT-FRESH",
    ],
    fc.property(scenarioArb, ({ p, seed, maxSize, withDriver, eventIdx, inOrder, start, actions }) => {
      const built = buildMemories(p.layout, seed);
      const w = new World(p, built.impl, built.spec, new PackedQueue(maxSize), P.newQueue(maxSize)!);
      w.initialize(withDriver, eventIdx, inOrder, start);
      for (const act of actions) {
        if (act.who === "driver") w.drive(act.a);
        else w.device(act.a);
      }
    }),
    { numRuns: 400 },
  );

  property(
    "packedNewStateRefinesSpec",
    ["PVQ-MAX-SIZE"],
    fc.property(
      fc.oneof(
        fc.constantFrom(0, 1, 3, 32767, 32768, 32769, -1, 0.5),
        fc.integer({ min: 0, max: 33000 }),
        fc.double(),
        fc.integer(),
      ),
      (maxSize) => {
        const spec = P.newQueue(maxSize);
        let impl: PackedQueue | undefined;
        try {
          impl = new PackedQueue(maxSize);
        } catch (e) {
          if (!(e instanceof RangeError)) throw e;
        }
        if ((impl === undefined) !== (spec === undefined))
          fail(`max size ${maxSize}: impl ${impl !== undefined}`);
        if (impl !== undefined && !same(impl.state(), spec))
          fail(`new queue ${show(impl.state())}, spec ${show(spec)}`);
      },
    ),
    { numRuns: 200 },
  );
});
