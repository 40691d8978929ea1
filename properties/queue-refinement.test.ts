/**
 * Refinement: the implementation (impl/queue SplitQueue over GuestMemory) and the reference
 * model (spec/queue over SpecMemory) run the same random sequences of driver actions (add
 * chains, directly or through unaligned indirect tables, publish, corrupt descriptor and ring
 * bytes, move avail.idx and used_event, reap) and device actions (pop, popInto,
 * popOrEnableNotification, undoPop, addUsed, publishUsed, prepareKick, tryEnableNotification,
 * enable/disableNotification, the event fields, reset and re-initialize). After every device
 * action the results, the queue states and the whole memories are equal.
 *
 * The driver writes impl memory (QueueDriver); the exact bytes it wrote (seen through the
 * memory recorder) are copied into the spec's memory, so the spec's memory only ever changes
 * by the driver's writes and its own operations.
 */
import fc from "fast-check";
import { describe } from "vitest";
import type { GuestMemory } from "../impl/memory/guest-memory.ts";
import { DescriptorChain } from "../impl/queue/descriptor-chain.ts";
import { SplitDriver } from "../impl/queue/split-driver.ts";
import { PopStatus, SplitQueue } from "../impl/queue/split-queue.ts";
import * as M from "../spec/memory.ts";
import type { SpecMemory } from "../spec/memory.ts";
import * as S from "../spec/queue.ts";
import type { Result } from "../spec/result.ts";
import {
  AVAIL_FLAGS,
  AVAIL_IDX,
  DESC_SIZE,
  USED_IDX,
  descOffset,
  encodeDescriptor,
  usedEventOffset,
} from "../wire/split.ts";
import { property } from "./harness.ts";
import { buildMemories } from "./arbitraries/memory.ts";
import {
  anyQueueSizeArb,
  chainBuffersArb,
  queuePlacementArb,
  rawDescriptorArb,
  type BufferSpec,
  type QueuePlacement,
  type RawDescriptor,
} from "./arbitraries/queue.ts";
import {
  buildQueueState,
  popView,
  poppedOf,
  queueStateArb,
  recording,
  ringRanges,
  sameMemory,
  type BuiltQueue,
} from "./arbitraries/queue-state.ts";
import { same, show } from "./arbitraries/chain.ts";

type Ring = "desc" | "avail" | "used";

/** What the driver (the guest) does. */
type DriverAction =
  | {
      readonly t: "add";
      readonly buffers: readonly BufferSpec[];
      readonly indirect: { readonly region: number; readonly at: number } | null;
      readonly publish: boolean;
    }
  | { readonly t: "publish" }
  | { readonly t: "corruptDesc"; readonly index: number; readonly raw: RawDescriptor }
  | { readonly t: "corruptByte"; readonly ring: Ring; readonly offset: number; readonly byte: number }
  | { readonly t: "availIdx"; readonly delta: number }
  | { readonly t: "usedEvent"; readonly delta: number }
  | { readonly t: "availFlags"; readonly flags: number }
  | { readonly t: "reap" };

/** What the device does. */
type DeviceAction =
  | { readonly t: "pop" }
  | { readonly t: "popInto"; readonly recorded: boolean }
  | { readonly t: "popOrEnable" }
  | { readonly t: "undoPop" }
  | {
      readonly t: "addUsed";
      readonly pick: number;
      readonly raw: number | null;
      readonly len: number;
      readonly recorded: boolean;
    }
  | { readonly t: "publishUsed" }
  | { readonly t: "prepareKick"; readonly honour: boolean }
  | { readonly t: "tryEnable" }
  | { readonly t: "enable" }
  | { readonly t: "disable" }
  | { readonly t: "setAvailEvent"; readonly v: number }
  | { readonly t: "readEvents" }
  | { readonly t: "len" }
  | { readonly t: "eventIdx" }
  | { readonly t: "reset" }
  | { readonly t: "reinit"; readonly eventIdx: boolean };

type Action =
  { readonly who: "driver"; readonly a: DriverAction } | { readonly who: "device"; readonly a: DeviceAction };

const driverActionArb = (p: QueuePlacement): fc.Arbitrary<DriverAction> =>
  fc.oneof(
    {
      weight: 12,
      arbitrary: fc.record({
        t: fc.constant("add" as const),
        buffers: chainBuffersArb(p.data, 4),
        indirect: fc.option(fc.record({ region: fc.nat(p.data.length - 1), at: fc.nat() }), { nil: null }),
        publish: fc.oneof(
          { weight: 4, arbitrary: fc.constant(true) },
          { weight: 1, arbitrary: fc.constant(false) },
        ),
      }),
    },
    { weight: 2, arbitrary: fc.constant({ t: "publish" as const }) },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant("corruptDesc" as const),
        index: fc.nat(p.size - 1),
        raw: rawDescriptorArb(p.size, p.data),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant("corruptByte" as const),
        ring: fc.constantFrom<Ring>("desc", "avail", "used"),
        offset: fc.nat(),
        byte: fc.nat(255),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant("availIdx" as const),
        delta: fc.oneof(
          { weight: 4, arbitrary: fc.integer({ min: -2, max: p.size + 2 }) },
          { weight: 1, arbitrary: fc.nat(0xffff) },
        ),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant("usedEvent" as const),
        delta: fc.oneof(fc.integer({ min: -3, max: 3 }), fc.nat(0xffff)),
      }),
    },
    { weight: 1, arbitrary: fc.record({ t: fc.constant("availFlags" as const), flags: fc.nat(1) }) },
    { weight: 4, arbitrary: fc.constant({ t: "reap" as const }) },
  );

const deviceActionArb: fc.Arbitrary<DeviceAction> = fc.oneof(
  // popInto and addUsed run with and without a memory recorder: the impl has a short path for
  // the common case (no recorder) and a general one, and both must refine the spec.
  {
    weight: 16,
    arbitrary: fc.oneof(
      fc.constant<DeviceAction>({ t: "pop" }),
      fc.boolean().map((recorded): DeviceAction => ({ t: "popInto", recorded })),
    ),
  },
  { weight: 2, arbitrary: fc.constant<DeviceAction>({ t: "popOrEnable" }) },
  { weight: 1, arbitrary: fc.constant<DeviceAction>({ t: "undoPop" }) },
  {
    weight: 12,
    arbitrary: fc.record({
      t: fc.constant("addUsed" as const),
      pick: fc.nat(),
      raw: fc.option(fc.oneof(fc.nat(0xffff), fc.constant(0xffff_ffff)), { nil: null, freq: 6 }),
      len: fc.nat(0xffff_ffff),
      recorded: fc.boolean(),
    }),
  },
  { weight: 6, arbitrary: fc.constant<DeviceAction>({ t: "publishUsed" }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("prepareKick" as const), honour: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom<DeviceAction>({ t: "tryEnable" }, { t: "enable" }, { t: "disable" }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("setAvailEvent" as const), v: fc.nat(0xffff) }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<DeviceAction>({ t: "readEvents" }, { t: "len" }, { t: "eventIdx" }),
  },
  { weight: 1, arbitrary: fc.constant<DeviceAction>({ t: "reset" }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("reinit" as const), eventIdx: fc.boolean() }) },
);

const scenarioArb = queuePlacementArb({ maxSize: 256, maxDataSize: 4096 }).chain((p) =>
  fc.record({
    p: fc.constant(p),
    seed: fc.integer(),
    maxLog: fc.integer({ min: Math.log2(p.size), max: 15 }),
    eventIdx: fc.boolean(),
    start: fc.oneof(fc.constant(0), fc.nat(0xffff), fc.constant(0xfffe)),
    actions: fc.array(
      fc.oneof(
        driverActionArb(p).map((a): Action => ({ who: "driver", a })),
        deviceActionArb.map((a): Action => ({ who: "device", a })),
      ),
      { minLength: 1, maxLength: 60, size: "max" },
    ),
  }),
);

const fail = (what: string): never => {
  throw new Error(what);
};
const u16 = (x: number): number => x & 0xffff;

/** The two sides and the driver. */
class World {
  /** Heads the device popped and has not yet returned, in pop order. */
  readonly inFlight: number[] = [];
  readonly chain: DescriptorChain;

  constructor(
    readonly p: QueuePlacement,
    readonly mem: GuestMemory,
    public specMem: SpecMemory,
    readonly impl: SplitQueue,
    public spec: S.SpecQueue,
    /** The well-behaved driver, or null while the rings hold whatever a hostile guest left. */
    public driver: SplitDriver | null,
  ) {
    this.chain = new DescriptorChain(this.mem);
  }

  /** A new queue over memory of random contents whose rings a driver has laid out. */
  static fresh(p: QueuePlacement, seed: number, maxSize: number, eventIdx: boolean, start: number): World {
    const built = buildMemories(p.layout, seed);
    const w = new World(p, built.impl, built.spec, new SplitQueue(maxSize), S.newQueue(maxSize)!, null);
    w.driver = w.initialize(eventIdx, start);
    return w;
  }

  /** An initialized queue in an arbitrary state over arbitrary ring contents (see queue-state.ts). */
  static fromState(b: BuiltQueue): World {
    return new World(b.placement, b.mem, b.specMem, b.impl, b.spec, null);
  }

  /** Configure and initialize both sides with the placement; a new driver lays out the rings. */
  initialize(eventIdx: boolean, start: number): SplitDriver {
    const p = this.p;
    const driver = this.driverWrites(() => new SplitDriver(this.mem, p.size, p));
    const config = {
      size: p.size,
      ready: true,
      descTable: BigInt(p.descTable),
      availRing: BigInt(p.availRing),
      usedRing: BigInt(p.usedRing),
    };
    this.impl.configure(config);
    this.spec = S.configure(this.spec, config);
    this.impl.setPositions({ nextAvail: start, nextUsed: start, numAdded: 0 });
    this.spec = S.setPositions(this.spec, { nextAvail: start, nextUsed: start, numAdded: 0 });
    if (eventIdx) {
      this.impl.enableNotifSuppression();
      this.spec = S.enableNotifSuppression(this.spec);
    }
    const r = this.impl.initialize(this.mem);
    const s = S.initialize(this.spec, this.specMem);
    this.spec = s.queue;
    if (!r.ok || !s.result.ok) fail(`initialize: ${show(r)} / ${show(s.result)}`);
    this.driverWrites(() => {
      driver.setAvailIdx(start);
      driver.lastUsedIdx = start;
      this.mem.writeU16(p.usedRing + USED_IDX, start);
    });
    this.inFlight.length = 0;
    return driver;
  }

  /** Runs a driver step on impl memory and copies exactly the bytes it wrote into spec memory. */
  driverWrites<T>(f: () => T): T {
    const { result, accesses } = recording(this.mem, f);
    for (const a of accesses) {
      if (!a.write) continue;
      const bytes = this.mem.slice(a.addr, a.len);
      if (bytes === undefined) fail(`driver wrote outside memory at ${a.addr}`);
      const next = M.writeBytes(this.specMem, BigInt(a.addr), Uint8Array.from(bytes!));
      if (!next.ok) return fail("spec memory refused a driver write");
      this.specMem = next.value;
    }
    return result;
  }

  drive(a: DriverAction): void {
    const p = this.p;
    const d = this.driver;
    this.driverWrites(() => {
      if (d === null) return this.driveRaw(a);
      switch (a.t) {
        case "add": {
          let table: number | undefined;
          if (a.indirect !== null) {
            const r = p.data[a.indirect.region]!;
            const bytes = DESC_SIZE * a.buffers.length;
            if (r.size < bytes) return;
            table = r.base + (a.indirect.at % (r.size - bytes + 1)); // any alignment (CHAIN-INDIRECT-UNALIGNED)
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
        case "corruptDesc":
        case "corruptByte":
          this.rawWrite(a);
          return;
        case "availIdx":
          d.setAvailIdx(u16(this.impl.nextAvail + a.delta));
          return;
        case "usedEvent":
          d.setUsedEvent(u16(d.usedIdx() - 1 + a.delta));
          return;
        case "availFlags":
          d.setAvailFlags(a.flags);
          return;
        case "reap":
          d.reapUsed();
          return;
      }
    });
  }

  /** Driver actions without a driver: raw writes into the rings. */
  driveRaw(a: DriverAction): void {
    const p = this.p;
    switch (a.t) {
      case "corruptDesc":
      case "corruptByte":
        return this.rawWrite(a);
      case "availIdx":
        this.mem.writeU16(p.availRing + AVAIL_IDX, u16(this.impl.nextAvail + a.delta));
        return;
      case "usedEvent":
        this.mem.writeU16(p.availRing + usedEventOffset(p.size), u16(this.impl.nextUsed - 1 + a.delta));
        return;
      case "availFlags":
        this.mem.writeU16(p.availRing + AVAIL_FLAGS, a.flags);
        return;
      default:
        return; // adding, publishing and reaping need a driver
    }
  }

  rawWrite(a: Extract<DriverAction, { t: "corruptDesc" | "corruptByte" }>): void {
    const p = this.p;
    if (a.t === "corruptDesc") {
      this.mem.writeFrom(p.descTable + descOffset(a.index), encodeDescriptor(a.raw));
      return;
    }
    const [start, end] = ringRanges(p)[a.ring];
    this.mem.writeU8(start + (a.offset % (end - start)), a.byte);
  }

  /** Compares one device step's results, then the states and memories. */
  check<T>(what: string, got: T, want: S.Step<T>): void {
    if (!same(got, want.result)) fail(`${what}: impl ${show(got)}, spec ${show(want.result)}`);
    this.spec = want.queue;
    this.specMem = want.memory;
    if (!same(this.impl.state(), this.spec))
      fail(`${what}: state ${show(this.impl.state())}, spec ${show(this.spec)}`);
    if (!sameMemory(this.mem, this.specMem)) fail(`${what}: memories differ`);
  }

  /** Runs `f` with a (no-op) recorder on the memory when `recorded`, as the bounds properties do. */
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
    const stay = <T>(result: T): S.Step<T> => ({ queue: this.spec, memory: this.specMem, result });
    switch (a.t) {
      case "pop": {
        const got = popView(q.pop());
        if (got.ok && got.value !== null) this.inFlight.push(got.value.head);
        return this.check("pop", got, S.pop(this.spec, this.specMem));
      }
      case "popInto": {
        // The hot path: a reused chain, the outcome in lastPop / lastError.
        const popped = this.maybeRecorded(a.recorded, () => q.popInto(this.chain));
        const got: Result<S.SpecPopped | null, S.QueueError> = popped
          ? { ok: true, value: poppedOf(this.chain) }
          : q.lastPop === PopStatus.Error
            ? { ok: false, error: q.lastError! }
            : { ok: true, value: null };
        if (popped) this.inFlight.push(this.chain.headIndex);
        return this.check("popInto", got, S.pop(this.spec, this.specMem));
      }
      case "popOrEnable": {
        const got = popView(q.popOrEnableNotification());
        if (got.ok && got.value !== null) this.inFlight.push(got.value.head);
        return this.check("popOrEnableNotification", got, S.popOrEnableNotification(this.spec, this.specMem));
      }
      case "undoPop":
        q.undoPop();
        this.inFlight.pop();
        return this.check("undoPop", undefined, { ...stay(undefined), queue: S.undoPop(this.spec) });
      case "addUsed": {
        let index: number;
        if (a.raw !== null) index = a.raw;
        else if (this.inFlight.length > 0) index = this.inFlight.splice(a.pick % this.inFlight.length, 1)[0]!;
        else index = a.pick % this.p.size;
        return this.check(
          `addUsed(${index})`,
          this.maybeRecorded(a.recorded, () => q.addUsed(index, a.len)),
          S.addUsed(this.spec, this.specMem, index, a.len),
        );
      }
      case "publishUsed":
        return this.check("publishUsed", q.publishUsed(), S.publishUsed(this.spec, this.specMem));
      case "prepareKick":
        return this.check(
          "prepareKick",
          q.prepareKick(a.honour),
          S.prepareKick(this.spec, this.specMem, a.honour),
        );
      case "tryEnable":
        return this.check(
          "tryEnableNotification",
          q.tryEnableNotification(),
          S.tryEnableNotification(this.spec, this.specMem),
        );
      case "enable":
        return this.check(
          "enableNotification",
          q.enableNotification(),
          S.enableNotification(this.spec, this.specMem),
        );
      case "disable":
        return this.check(
          "disableNotification",
          q.disableNotification(),
          S.disableNotification(this.spec, this.specMem),
        );
      case "setAvailEvent":
        return this.check(
          "setAvailEvent",
          q.setAvailEvent(a.v),
          S.setAvailEvent(this.spec, this.specMem, a.v),
        );
      case "readEvents":
        return this.check(
          "usedEvent/availEvent",
          [q.usedEvent(), q.availEvent()],
          stay([S.usedEvent(this.spec, this.specMem), S.availEvent(this.spec, this.specMem)]),
        );
      case "len":
        return this.check(
          "len/isEmpty/availIdx",
          [q.len(), q.isEmpty(), q.availIdx()],
          stay([
            S.len(this.spec, this.specMem),
            S.isEmpty(this.spec, this.specMem),
            S.availIdx(this.spec, this.specMem),
          ]),
        );
      case "eventIdx":
        q.enableNotifSuppression();
        return this.check("enableNotifSuppression", undefined, {
          ...stay(undefined),
          queue: S.enableNotifSuppression(this.spec),
        });
      case "reset":
        q.reset();
        this.inFlight.length = 0;
        return this.check("reset", undefined, { ...stay(undefined), queue: S.reset(this.spec) });
      case "reinit":
        q.reset();
        this.spec = S.reset(this.spec);
        this.driver = this.initialize(a.eventIdx, 0);
        return this.check("re-initialize", undefined, stay(undefined));
    }
  }
}

describe("split queue refinement", () => {
  property(
    "queueImplRefinesSpec",
    [
      "VQ-POP-AVAIL-IDX",
      "VQ-POP-EMPTY",
      "VQ-POP-HEAD",
      "VQ-POP-ADVANCE",
      "VQ-UNDO-POP",
      "VQ-ADD-USED",
      "VQ-ADD-USED-INDEX",
      "VQ-PUBLISH-USED",
      "VQ-PREPARE-KICK",
      "VQ-NO-INTERRUPT",
      "VQ-TRY-ENABLE-NOTIFICATION",
      "VQ-POP-OR-ENABLE",
      "VQ-NO-NOTIFY",
      "VQ-EVENT-FIELDS",
      "VQ-EVENT-IDX",
      "VQ-LEN",
      "VQ-RESET",
      "VQ-INACTIVE",
      "CHAIN-INDIRECT-UNALIGNED",
    ],
    fc.property(scenarioArb, ({ p, seed, maxLog, eventIdx, start, actions }) => {
      const w = World.fresh(p, seed, 2 ** maxLog, eventIdx, start);
      for (const act of actions) {
        if (act.who === "driver") w.drive(act.a);
        else w.device(act.a);
      }
    }),
    { numRuns: 600 },
  );

  /**
   * The same, from an arbitrary state: rings full of random bytes (avail.idx often far
   * ahead), arbitrary positions, queues up to 4096 entries; the guest only scribbles (no
   * driver until a re-initialize brings one).
   */
  property(
    "queueImplRefinesSpecFromAnyState",
    [
      "VQ-POP-AVAIL-IDX",
      "VQ-POP-HEAD",
      "VQ-ADD-USED",
      "VQ-PREPARE-KICK",
      "VQ-TRY-ENABLE-NOTIFICATION",
      "VQ-POP-OR-ENABLE",
      "VQ-NO-NOTIFY",
      "VQ-EVENT-FIELDS",
      "CHAIN-MEMORY",
      "CHAIN-TTL",
    ],
    fc.property(
      queueStateArb({ maxSize: 4096 }).chain((s) =>
        fc.record({
          s: fc.constant(s),
          actions: fc.array(
            fc.oneof(
              {
                weight: 1,
                arbitrary: driverActionArb(s.placement).map((a): Action => ({ who: "driver", a })),
              },
              { weight: 3, arbitrary: deviceActionArb.map((a): Action => ({ who: "device", a })) },
            ),
            { minLength: 1, maxLength: 40, size: "max" },
          ),
        }),
      ),
      ({ s, actions }) => {
        const w = World.fromState(buildQueueState(s));
        for (const act of actions) {
          if (act.who === "driver") w.drive(act.a);
          else w.device(act.a);
        }
      },
    ),
    { numRuns: 150 },
  );

  property(
    "queueNewStateRefinesSpec",
    ["VQ-MAX-SIZE"],
    fc.property(
      fc.oneof(
        fc.integer({ min: 0, max: 15 }).map((l) => 2 ** l),
        anyQueueSizeArb,
        fc.double(),
        fc.integer(),
      ),
      (maxSize) => {
        const spec = S.newQueue(maxSize);
        let impl: SplitQueue | undefined;
        try {
          impl = new SplitQueue(maxSize);
        } catch (e) {
          // A device's own max size is configuration, not guest input: a bad one is a RangeError.
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
