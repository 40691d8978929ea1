/**
 * Packed-queue cases (PVQ-*): a driver model (what Linux's virtio_ring.c packed path does:
 * write a chain's descriptors with the buffer id, the head's flags last, flip its wrap
 * counter at the ring's end, reap used descriptors by id) and random device operations, with
 * spec/packed-queue.ts (state + memory) as the oracle at every step.
 */
import fc from "fast-check";
import type { SpecMemory } from "../../spec/memory.ts";
import { readBytes } from "../../spec/memory.ts";
import * as P from "../../spec/packed-queue.ts";
import type { SpecPackedPopped, SpecPackedQueue } from "../../spec/packed-queue.ts";
import type { Json } from "../protocol.ts";
import { toHex, u64 } from "../protocol.ts";
import { encodePacked, type RawPackedDescriptor } from "../../properties/arbitraries/packed.ts";
import {
  BUFFER_AREA,
  INDIRECT_AREA,
  TABLE_AREA,
  emptyChainMemory,
  memoryCreateStep,
  writeStep,
} from "./chain.ts";
import { readBackSteps } from "./memory.ts";
import { walkJson } from "../walk-json.ts";
import type { Step } from "./types.ts";
import { defineCase, expectOk, expectResult, step } from "./types.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";
import {
  PACKED_DESC_SIZE,
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_WRAP,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_USED,
  packedDescOffset,
  packedRingBytes,
  readPackedDescriptor,
} from "../../wire/packed.ts";

/** The ring at the table area; the Driver Area and Device Area after it. */
const RING = TABLE_AREA;
const DRIVER_AREA = TABLE_AREA + 0x1000n;
const DEVICE_AREA = TABLE_AREA + 0x1800n;

type Cmd =
  /** The driver makes a chain of `n` descriptors available (one indirect one with `indirect`), its last `write` device-writable. */
  | {
      readonly k: "avail";
      readonly n: number;
      readonly write: number;
      readonly indirect: boolean;
      readonly idPick: number;
      readonly len: number;
    }
  | { readonly k: "pop" }
  | { readonly k: "undoPop" }
  /** The device completes the in-flight buffer `pick` (mod their count), or an id not in flight. */
  | { readonly k: "addUsed"; readonly pick: number; readonly bogus: boolean; readonly len: number }
  | { readonly k: "publish" }
  /** The driver reads what the device made used and frees those ids (PVQ-DRIVER-USED). */
  | { readonly k: "reap" }
  | { readonly k: "kick" }
  /** The driver writes the Driver Area: flags `mode`, off_wrap `delta` slots from next_used (its wrap bit flipped with `flip`). */
  | { readonly k: "driverEvent"; readonly mode: number; readonly delta: number; readonly flip: boolean }
  | { readonly k: "tryEnable" }
  | { readonly k: "enable" }
  | { readonly k: "disable" }
  | { readonly k: "state" }
  | { readonly k: "reset" }
  | { readonly k: "reinit" }
  /** A hostile driver writes any 16 bytes into ring slot `slot` (mod size). */
  | { readonly k: "scribble"; readonly slot: number; readonly desc: RawPackedDescriptor };

export interface PackedInput {
  readonly size: number;
  readonly maxSize: number;
  readonly eventIdx: boolean;
  readonly inOrder: boolean;
  readonly cmds: readonly Cmd[];
}

export type PackedWeights = Partial<Record<Cmd["k"], number>>;

const rawArb = (size: number): fc.Arbitrary<RawPackedDescriptor> =>
  fc.record({
    addr: fc.oneof(
      { weight: 4, arbitrary: fc.bigInt({ min: BUFFER_AREA, max: BUFFER_AREA + 0x3000n }) },
      { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) },
    ),
    len: fc.oneof(fc.nat(64), fc.integer({ min: 1, max: 8 }).map(packedRingBytes), fc.nat(0xffff_ffff)),
    id: fc.oneof({ weight: 4, arbitrary: fc.nat(size) }, { weight: 1, arbitrary: fc.nat(0xffff) }),
    flags: fc
      .tuple(fc.nat(7), fc.boolean(), fc.boolean())
      .map(([low, a, u]) => low | (a ? VIRTQ_DESC_F_AVAIL : 0) | (u ? VIRTQ_DESC_F_USED : 0)),
  });

const cmdArb = (size: number, w: PackedWeights): fc.Arbitrary<Cmd> => {
  const wt = (k: Cmd["k"], d: number): number => w[k] ?? d;
  const all: { weight: number; arbitrary: fc.Arbitrary<Cmd> }[] = [
    {
      weight: wt("avail", 6),
      arbitrary: fc
        .record({
          n: fc.integer({ min: 1, max: Math.min(3, size) }),
          write: fc.nat(3),
          indirect: fc.oneof(
            { weight: 4, arbitrary: fc.constant(false) },
            { weight: 1, arbitrary: fc.constant(true) },
          ),
          idPick: fc.nat(64),
          len: fc.integer({ min: 1, max: 64 }),
        })
        .map((r) => ({ k: "avail" as const, ...r })),
    },
    { weight: wt("pop", 6), arbitrary: fc.constant({ k: "pop" as const }) },
    { weight: wt("undoPop", 1), arbitrary: fc.constant({ k: "undoPop" as const }) },
    {
      weight: wt("addUsed", 5),
      arbitrary: fc.record({
        k: fc.constant("addUsed" as const),
        pick: fc.nat(8),
        bogus: fc.oneof(
          { weight: 6, arbitrary: fc.constant(false) },
          { weight: 1, arbitrary: fc.constant(true) },
        ),
        len: fc.oneof(fc.constant(0), fc.nat(0x1000)),
      }),
    },
    { weight: wt("publish", 3), arbitrary: fc.constant({ k: "publish" as const }) },
    { weight: wt("reap", 3), arbitrary: fc.constant({ k: "reap" as const }) },
    { weight: wt("kick", 3), arbitrary: fc.constant({ k: "kick" as const }) },
    {
      weight: wt("driverEvent", 2),
      arbitrary: fc.record({
        k: fc.constant("driverEvent" as const),
        mode: fc.oneof(
          { weight: 3, arbitrary: fc.constant(RING_EVENT_FLAGS_DESC) },
          { weight: 2, arbitrary: fc.nat(3) },
        ),
        delta: fc.integer({ min: -3, max: 2 }),
        flip: fc.oneof(
          { weight: 4, arbitrary: fc.constant(false) },
          { weight: 1, arbitrary: fc.constant(true) },
        ),
      }),
    },
    { weight: wt("tryEnable", 1), arbitrary: fc.constant({ k: "tryEnable" as const }) },
    { weight: wt("enable", 1), arbitrary: fc.constant({ k: "enable" as const }) },
    { weight: wt("disable", 1), arbitrary: fc.constant({ k: "disable" as const }) },
    { weight: wt("state", 1), arbitrary: fc.constant({ k: "state" as const }) },
    { weight: wt("reset", 0), arbitrary: fc.constant({ k: "reset" as const }) },
    { weight: wt("reinit", 0), arbitrary: fc.constant({ k: "reinit" as const }) },
    {
      weight: wt("scribble", 0),
      arbitrary: fc.record({
        k: fc.constant("scribble" as const),
        slot: fc.nat(size * 2),
        desc: rawArb(size),
      }),
    },
  ];
  return fc.oneof(...all.filter((a) => a.weight > 0));
};

export const packedArb = (
  w: PackedWeights,
  o: { readonly maxLength?: number } = {},
): fc.Arbitrary<PackedInput> =>
  fc
    .record({
      // Mostly tiny rings (the wrap counters cross often), not only powers of two.
      size: fc.oneof(
        { weight: 4, arbitrary: fc.integer({ min: 1, max: 5 }) },
        { weight: 1, arbitrary: fc.integer({ min: 6, max: 40 }) },
      ),
      eventIdx: fc.boolean(),
      inOrder: fc.oneof(
        { weight: 3, arbitrary: fc.constant(false) },
        { weight: 1, arbitrary: fc.constant(true) },
      ),
    })
    .chain(({ size, eventIdx, inOrder }) =>
      fc.record({
        size: fc.constant(size),
        maxSize: fc.constant(size <= 8 ? 8 : 64),
        eventIdx: fc.constant(eventIdx),
        inOrder: fc.constant(inOrder),
        cmds: fc.array(cmdArb(size, w), { minLength: 1, maxLength: o.maxLength ?? 40 }),
      }),
    );

/** The state fields of `packed.state` (conformance/ops/packed.ts packedStateJson). */
export const packedStateValue = (q: SpecPackedQueue): Json => ({
  maxSize: q.maxSize,
  size: q.size,
  ready: q.ready,
  descTable: u64(q.descTable),
  driverArea: u64(q.availRing),
  deviceArea: u64(q.usedRing),
  eventIdx: q.eventIdx,
  inOrder: q.inOrder,
  active: q.active,
  nextAvail: q.nextAvail,
  availWrap: q.availWrap,
  nextUsed: q.nextUsed,
  usedWrap: q.usedWrap,
  numAdded: q.numAdded,
  inFlight: q.inFlight.map((b) => b.id),
});

/** A popped chain as `packed.pop` answers it. */
export const poppedValue = (p: SpecPackedPopped | null): Json => {
  if (p === null) return { popped: false };
  return {
    popped: true,
    id: p.id,
    head: p.head,
    wrap: p.wrap,
    slots: p.slots,
    chain: walkJson(p.walk),
  };
};

const configureArgs = (input: PackedInput): Json & Record<string, Json> => ({
  queue: 0,
  maxSize: input.maxSize,
  size: input.size,
  ready: true,
  descTable: u64(RING),
  driverArea: u64(DRIVER_AREA),
  deviceArea: u64(DEVICE_AREA),
  eventIdx: input.eventIdx,
  inOrder: input.inOrder,
});

const configured = (input: PackedInput, q: SpecPackedQueue): SpecPackedQueue => {
  let c = P.configure(q, {
    size: input.size,
    ready: true,
    descTable: RING,
    availRing: DRIVER_AREA,
    usedRing: DEVICE_AREA,
  });
  if (input.eventIdx) c = P.enableNotifSuppression(c);
  if (input.inOrder) c = P.enableInOrder(c);
  return c;
};

/** A position as one number in 0..2*size (wrap counter 1 first), to step over the ring's end. */
const linear = (slot: number, wrap: boolean, size: number): number => slot + (wrap ? 0 : size);
const fromLinear = (l: number, size: number): { readonly slot: number; readonly wrap: boolean } => {
  const m = ((l % (2 * size)) + 2 * size) % (2 * size);
  return m < size ? { slot: m, wrap: true } : { slot: m - size, wrap: false };
};

/** The driver's side of the ring (PVQ-DRIVER-AVAIL, PVQ-DRIVER-USED): its two positions and its buffers. */
interface DriverModel {
  availSlot: number;
  availWrap: boolean;
  usedSlot: number;
  usedWrap: boolean;
  /** Buffers made available and not yet reaped, oldest first. */
  outstanding: { readonly id: number; readonly slots: number }[];
}

const newDriver = (): DriverModel => ({
  availSlot: 0,
  availWrap: true,
  usedSlot: 0,
  usedWrap: true,
  outstanding: [],
});

/** Steps for a packed input; the model runs alongside to give each expected outcome. */
export const packedSteps = (input: PackedInput): Step[] => {
  const size = input.size;
  let mem: SpecMemory = emptyChainMemory();
  const steps: Step[] = [memoryCreateStep()];
  const write = (addr: bigint, data: Uint8Array): void => {
    const w = writeStep(mem, addr, data);
    steps.push(w.step);
    mem = w.mem;
  };
  let q = configured(input, P.newQueue(input.maxSize)!);
  steps.push(step("packed.configure", configureArgs(input), expectOk(null)));
  const initialize = (): void => {
    const init = P.initialize(q, mem);
    q = init.queue;
    steps.push(step("packed.initialize", { queue: 0 }, expectResult(init.result)));
  };
  initialize();
  let driver = newDriver();
  /** PVQ-IN-ORDER says what addUsed does only when IN_ORDER is on. */
  const addUsedRules = input.inOrder ? ["PVQ-ADD-USED", "PVQ-IN-ORDER"] : ["PVQ-ADD-USED"];
  /** The ring as the driver sees it after a device write, charged to `rules`. */
  const ringRead = (rules: readonly string[]): void => {
    const r = readBytes(mem, RING, packedRingBytes(size));
    if (r.ok)
      steps.push(
        step(
          "memory.read",
          { addr: u64(RING), len: packedRingBytes(size) },
          expectOk({ data: toHex(r.value) }),
          rules,
        ),
      );
  };
  /** The Device Area after a device write to it. */
  const deviceAreaRead = (rules: readonly string[]): void => {
    const r = readBytes(mem, DEVICE_AREA, 4);
    if (q.active && r.ok)
      steps.push(
        step("memory.read", { addr: u64(DEVICE_AREA), len: 4 }, expectOk({ data: toHex(r.value) }), rules),
      );
  };
  for (const c of input.cmds) {
    switch (c.k) {
      case "avail": {
        const slots = c.indirect ? 1 : c.n;
        const used = driver.outstanding.reduce((a, b) => a + b.slots, 0);
        const free: number[] = [];
        for (let id = 0; id < size; id++) if (!driver.outstanding.some((b) => b.id === id)) free.push(id);
        // An honest driver waits for room and a free id (PVQ-DRIVER-AVAIL).
        if (size - used < slots || free.length === 0) break;
        const id = free[c.idPick % free.length]!;
        const writable = Math.min(c.write, c.n);
        const dataFlags = (i: number): number => (i >= c.n - writable ? VIRTQ_DESC_F_WRITE : 0);
        const buffer = (i: number): bigint => BUFFER_AREA + 0x200n * BigInt(id) + 0x40n * BigInt(i);
        const availBits = (wrap: boolean): number => (wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED);
        const start = linear(driver.availSlot, driver.availWrap, size);
        if (c.indirect) {
          const table = new Uint8Array(packedRingBytes(c.n));
          for (let i = 0; i < c.n; i++)
            table.set(
              encodePacked({ addr: buffer(i), len: c.len, id: 0, flags: dataFlags(i) }),
              packedDescOffset(i),
            );
          const at = INDIRECT_AREA + 0x100n * BigInt(id);
          write(at, table);
          write(
            RING + BigInt(packedDescOffset(driver.availSlot)),
            encodePacked({
              addr: at,
              len: packedRingBytes(c.n),
              id,
              flags: VIRTQ_DESC_F_INDIRECT | availBits(driver.availWrap),
            }),
          );
        } else {
          // The head's flags last: the other descriptors first, then the head.
          for (const i of [...Array.from({ length: c.n - 1 }, (_, k) => k + 1), 0]) {
            const p = fromLinear(start + i, size);
            const flags = (i < c.n - 1 ? VIRTQ_DESC_F_NEXT : 0) | dataFlags(i) | availBits(p.wrap);
            write(
              RING + BigInt(packedDescOffset(p.slot)),
              encodePacked({ addr: buffer(i), len: c.len, id, flags }),
            );
          }
        }
        const next = fromLinear(start + slots, size);
        driver.availSlot = next.slot;
        driver.availWrap = next.wrap;
        driver.outstanding.push({ id, slots });
        break;
      }
      case "pop": {
        const r = P.pop(q, mem);
        q = r.queue;
        steps.push(
          step(
            "packed.pop",
            { queue: 0 },
            expectResult(r.result, poppedValue),
            r.result.ok
              ? [
                  "PVQ-AVAIL",
                  "PVQ-CHAIN-NEXT",
                  "PVQ-BUFFER-ID",
                  "PVQ-POP-ID",
                  "PVQ-POP-ADVANCE",
                  "PVQ-WRAP",
                  "PVQ-INDIRECT",
                  "PVQ-DESC-LAYOUT",
                ]
              : r.result.error._tag === "NotReady"
                ? ["PVQ-INACTIVE"]
                : ["PVQ-POP-ID"],
          ),
        );
        break;
      }
      case "undoPop":
        q = P.undoPop(q);
        steps.push(step("packed.undoPop", { queue: 0 }, expectOk(null), ["PVQ-UNDO-POP"]));
        break;
      case "addUsed": {
        const inFlight = q.inFlight;
        let id: number;
        if (c.bogus || inFlight.length === 0) {
          id = c.pick;
          while (inFlight.some((b) => b.id === id)) id++;
        } else id = inFlight[c.pick % inFlight.length]!.id;
        const r = P.addUsed(q, mem, id, c.len);
        q = r.queue;
        mem = r.memory;
        steps.push(
          step("packed.addUsed", { queue: 0, id, len: c.len }, expectResult(r.result), addUsedRules),
        );
        // What addUsed wrote (len @8, id @12: PVQ-ADD-USED names the offsets itself).
        if (q.active) ringRead(addUsedRules);
        break;
      }
      case "publish": {
        const r = P.publishUsed(q, mem);
        q = r.queue;
        mem = r.memory;
        steps.push(step("packed.publish", { queue: 0 }, expectResult(r.result), ["PVQ-PUBLISH-USED"]));
        if (q.active) ringRead(["PVQ-PUBLISH-USED", "PVQ-USED-FLAGS", "PVQ-WRAP"]);
        break;
      }
      case "reap": {
        // Linux virtqueue_get_buf_ctx_packed: used when AVAIL and USED both equal the used wrap counter.
        for (;;) {
          const b = readBytes(mem, RING + BigInt(packedDescOffset(driver.usedSlot)), PACKED_DESC_SIZE);
          if (!b.ok) break;
          const { id, flags } = readPackedDescriptor(
            new DataView(b.value.buffer, b.value.byteOffset, PACKED_DESC_SIZE),
            0,
          );
          if (!P.isUsed(flags, driver.usedWrap)) break;
          const k = driver.outstanding.findIndex((x) => x.id === id);
          if (k < 0) break;
          const done = input.inOrder ? driver.outstanding.splice(0, k + 1) : driver.outstanding.splice(k, 1);
          const next = fromLinear(
            linear(driver.usedSlot, driver.usedWrap, size) + done.reduce((a, x) => a + x.slots, 0),
            size,
          );
          driver.usedSlot = next.slot;
          driver.usedWrap = next.wrap;
        }
        break;
      }
      case "kick": {
        const r = P.prepareKick(q, mem);
        q = r.queue;
        steps.push(step("packed.prepareKick", { queue: 0 }, expectOk(r.result), ["PVQ-NOTIFY-DRIVER"]));
        break;
      }
      case "driverEvent": {
        const at = fromLinear(linear(q.nextUsed, q.usedWrap, size) + c.delta, size);
        const wrap = at.wrap !== c.flip;
        const offWrap = at.slot | (wrap ? RING_EVENT_WRAP : 0);
        write(DRIVER_AREA, new Uint8Array([offWrap & 0xff, offWrap >> 8, c.mode & 0xff, 0]));
        break;
      }
      case "tryEnable":
      case "enable": {
        const r = c.k === "enable" ? P.enableNotification(q, mem) : P.tryEnableNotification(q, mem);
        q = r.queue;
        mem = r.memory;
        steps.push(
          step(
            c.k === "enable" ? "packed.enableNotification" : "packed.tryEnableNotification",
            { queue: 0 },
            expectResult(r.result, (v) => v),
            [c.k === "enable" ? "PVQ-NOTIFY-DEVICE" : "PVQ-TRY-ENABLE"],
          ),
        );
        deviceAreaRead([c.k === "enable" ? "PVQ-NOTIFY-DEVICE" : "PVQ-TRY-ENABLE"]);
        break;
      }
      case "disable": {
        const r = P.disableNotification(q, mem);
        q = r.queue;
        mem = r.memory;
        steps.push(
          step("packed.disableNotification", { queue: 0 }, expectResult(r.result), ["PVQ-NOTIFY-DEVICE"]),
        );
        deviceAreaRead(["PVQ-NOTIFY-DEVICE"]);
        break;
      }
      case "state":
        steps.push(step("packed.state", { queue: 0 }, expectOk(packedStateValue(q))));
        break;
      case "reset":
        q = P.reset(q);
        steps.push(step("packed.reset", { queue: 0 }, expectOk(null), ["PVQ-RESET"]));
        steps.push(step("packed.state", { queue: 0 }, expectOk(packedStateValue(q)), ["PVQ-RESET"]));
        break;
      case "reinit":
        // A driver that sets the queue up again starts from a zeroed ring.
        write(RING, new Uint8Array(packedRingBytes(size)));
        q = configured(input, q);
        steps.push(step("packed.configure", configureArgs(input), expectOk(null)));
        initialize();
        driver = newDriver();
        driver.availSlot = q.nextAvail;
        driver.availWrap = q.availWrap;
        driver.usedSlot = q.nextUsed;
        driver.usedWrap = q.usedWrap;
        break;
      case "scribble":
        write(RING + BigInt(packedDescOffset(c.slot % size)), encodePacked(c.desc));
        break;
    }
  }
  steps.push(step("packed.state", { queue: 0 }, expectOk(packedStateValue(q))));
  // Nothing written outside the ring and the Device Area (PVQ-DEVICE-ACCESS); those two are
  // read back after each device write, charged to the rule of that write.
  return [
    ...steps,
    ...readBackSteps(mem, [
      [RING, packedRingBytes(size)],
      [DEVICE_AREA, 4],
    ]).map((s) => ({ ...s, rules: ["PVQ-DEVICE-ACCESS"] })),
  ];
};

// ---- initialize -------------------------------------------------------------------------

interface InitInput {
  readonly maxSize: number;
  readonly size: number;
  readonly ready: boolean;
  readonly descTable: bigint;
  readonly driverArea: bigint;
  readonly deviceArea: bigint;
  /** Operations tried after initialize (all NotReady when it failed: PVQ-INACTIVE). */
  readonly then: readonly ("pop" | "addUsed" | "publish" | "tryEnable" | "kick" | "disable")[];
}

const areaAddr: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 6, arbitrary: fc.bigInt({ min: TABLE_AREA, max: TABLE_AREA + 0x7ff0n }) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 0x10000n }) },
  { weight: 1, arbitrary: fc.bigInt({ min: (1n << 64n) - 0x100n, max: (1n << 64n) - 1n }) },
);

const initArb: fc.Arbitrary<InitInput> = fc.record({
  maxSize: fc.constantFrom(1, 7, 16, 256, 32768),
  size: fc.oneof(fc.constantFrom(0, 1, 3, 7, 16, 256, 2048, 32768, 32769), fc.nat(300)),
  ready: fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  descTable: areaAddr,
  driverArea: areaAddr,
  deviceArea: areaAddr,
  then: fc.array(
    fc.constantFrom(
      "pop" as const,
      "addUsed" as const,
      "publish" as const,
      "tryEnable" as const,
      "kick" as const,
      "disable" as const,
    ),
    {
      maxLength: 4,
    },
  ),
});

const initSteps = (input: InitInput): Step[] => {
  let mem = emptyChainMemory();
  let q = P.configure(P.newQueue(input.maxSize)!, {
    size: input.size,
    ready: input.ready,
    descTable: input.descTable,
    availRing: input.driverArea,
    usedRing: input.deviceArea,
  });
  const steps: Step[] = [
    memoryCreateStep(),
    step(
      "packed.configure",
      {
        queue: 0,
        maxSize: input.maxSize,
        size: input.size,
        ready: input.ready,
        descTable: u64(input.descTable),
        driverArea: u64(input.driverArea),
        deviceArea: u64(input.deviceArea),
      },
      expectOk(null),
    ),
  ];
  const init = P.initialize(q, mem);
  q = init.queue;
  steps.push(step("packed.initialize", { queue: 0 }, expectResult(init.result)));
  for (const t of input.then) {
    if (t === "pop") {
      const r = P.pop(q, mem);
      q = r.queue;
      steps.push(step("packed.pop", { queue: 0 }, expectResult(r.result, poppedValue)));
    } else if (t === "addUsed") {
      const r = P.addUsed(q, mem, 0, 1);
      q = r.queue;
      mem = r.memory;
      steps.push(step("packed.addUsed", { queue: 0, id: 0, len: 1 }, expectResult(r.result)));
    } else if (t === "publish") {
      const r = P.publishUsed(q, mem);
      q = r.queue;
      mem = r.memory;
      steps.push(step("packed.publish", { queue: 0 }, expectResult(r.result)));
    } else if (t === "tryEnable") {
      const r = P.tryEnableNotification(q, mem);
      q = r.queue;
      mem = r.memory;
      steps.push(
        step(
          "packed.tryEnableNotification",
          { queue: 0 },
          expectResult(r.result, (v) => v),
        ),
      );
    } else if (t === "disable") {
      const r = P.disableNotification(q, mem);
      q = r.queue;
      mem = r.memory;
      steps.push(step("packed.disableNotification", { queue: 0 }, expectResult(r.result)));
    } else {
      const r = P.prepareKick(q, mem);
      q = r.queue;
      steps.push(step("packed.prepareKick", { queue: 0 }, expectOk(r.result)));
    }
  }
  steps.push(step("packed.state", { queue: 0 }, expectOk(packedStateValue(q))));
  return [...steps, ...readBackSteps(mem)];
};

// ---- cases ------------------------------------------------------------------------------

const PACKED_OPS = [
  "memory.create",
  "memory.write",
  "memory.read",
  "packed.configure",
  "packed.initialize",
  "packed.pop",
  "packed.undoPop",
  "packed.addUsed",
  "packed.publish",
  "packed.prepareKick",
  "packed.enableNotification",
  "packed.disableNotification",
  "packed.tryEnableNotification",
  "packed.state",
];

const OPS_RULES = [
  "PVQ-DESC-LAYOUT",
  "PVQ-WRAP",
  "PVQ-AVAIL",
  "PVQ-CHAIN-NEXT",
  "PVQ-BUFFER-ID",
  "PVQ-POP-ID",
  "PVQ-POP-ADVANCE",
  "PVQ-INDIRECT",
  "PVQ-UNDO-POP",
  "PVQ-ADD-USED",
  "PVQ-IN-ORDER",
  "PVQ-USED-FLAGS",
  "PVQ-PUBLISH-USED",
  "PVQ-NOTIFY-DRIVER",
  "PVQ-NOTIFY-DEVICE",
  "PVQ-TRY-ENABLE",
  "PVQ-DEVICE-ACCESS",
];

const HOSTILE_POP_RULES = [
  "PVQ-GUEST-INPUT",
  "PVQ-AVAIL",
  "PVQ-POP-ID",
  "PVQ-CHAIN-LIMIT",
  "PVQ-INDIRECT-LEN",
  "PVQ-INDIRECT-IN-CHAIN",
  "PVQ-LEN-U32",
];

/** packed.hostile: a pop answers for the walk's limits, the read-back for the device's writes, the rest for typed refusals. */
const hostileRules = (x: Step): Step =>
  x.op === "packed.pop"
    ? { ...x, rules: HOSTILE_POP_RULES }
    : x.rules?.includes("PVQ-DEVICE-ACCESS") === true
      ? { ...x, rules: ["PVQ-DEVICE-ACCESS"] }
      : { ...x, rules: ["PVQ-GUEST-INPUT"] };

/** packed.reset: a refusal of an inactive queue is PVQ-INACTIVE, initialize after reset PVQ-INIT-FRESH, the rest PVQ-RESET. */
const resetRules = (x: Step): Step => {
  const refused = "outcome" in x.expect && !x.expect.outcome.ok && x.expect.outcome.error._tag === "NotReady";
  return {
    ...x,
    rules: refused ? ["PVQ-INACTIVE"] : x.op === "packed.initialize" ? ["PVQ-INIT-FRESH"] : ["PVQ-RESET"],
  };
};

const one = (idPick = 0, n = 1): Cmd => ({ k: "avail", n, write: 1, indirect: false, idPick, len: 16 });
const used = (pick = 0, len = 8): Cmd => ({ k: "addUsed", pick, bogus: false, len });

export const packedCases = [
  defineCase<PackedInput>({
    id: "packed.ops",
    title:
      "pop, undoPop, addUsed, publish and the notification operations agree with the model on random driver/device sequences whose wrap counters cross many times",
    rules: OPS_RULES,
    level: "must",
    ops: PACKED_OPS,
    arb: packedArb({}),
    examples: [
      {
        // The used wrap counter flips at the ring's end: the third used descriptor's flags are 0.
        size: 2,
        maxSize: 8,
        eventIdx: false,
        inOrder: false,
        cmds: [
          one(),
          { k: "pop" },
          used(),
          { k: "publish" },
          { k: "reap" },
          one(),
          { k: "pop" },
          used(),
          { k: "publish" },
          { k: "reap" },
          one(),
          { k: "pop" },
          used(),
          { k: "publish" },
        ],
      },
      {
        // The used descriptor carries the buffer id (2), not the slot (0), and completes out of order.
        size: 4,
        maxSize: 8,
        eventIdx: false,
        inOrder: false,
        cmds: [
          one(2, 2),
          one(0),
          { k: "pop" },
          { k: "pop" },
          used(1, 4),
          used(0, 0),
          { k: "publish" },
          { k: "state" },
        ],
      },
      {
        // off_wrap names the previous lap: event = off - size (PVQ-NOTIFY-DRIVER).
        size: 4,
        maxSize: 8,
        eventIdx: true,
        inOrder: false,
        cmds: [
          one(),
          one(),
          one(),
          one(),
          { k: "pop" },
          { k: "pop" },
          { k: "pop" },
          { k: "pop" },
          used(),
          used(),
          used(),
          { k: "kick" },
          used(),
          { k: "driverEvent", mode: RING_EVENT_FLAGS_DESC, delta: -1, flip: false },
          { k: "kick" },
        ],
      },
      {
        // IN_ORDER: one used descriptor completes two buffers; an indirect chain.
        size: 5,
        maxSize: 8,
        eventIdx: true,
        inOrder: true,
        cmds: [
          one(0, 3),
          { k: "avail", n: 3, write: 2, indirect: true, idPick: 1, len: 32 },
          { k: "pop" },
          { k: "pop" },
          used(1),
          { k: "publish" },
          { k: "tryEnable" },
          { k: "kick" },
          { k: "state" },
          one(3),
          { k: "pop" },
          { k: "undoPop" },
          { k: "disable" },
          { k: "enable" },
          { k: "pop" },
        ],
      },
    ],
    steps: packedSteps,
    numRuns: 40,
  }),
  defineCase<PackedInput>({
    id: "packed.hostile",
    title:
      "a driver writing any descriptor anywhere in the ring (flags lying about availability, ids out of range or in flight, NEXT all round, indirect misuse): typed refusals, walks that end typed, no write outside the device's fields, and the queue keeps serving",
    rules: [
      "PVQ-GUEST-INPUT",
      "PVQ-POP-ID",
      "PVQ-CHAIN-LIMIT",
      "PVQ-INDIRECT-LEN",
      "PVQ-INDIRECT-IN-CHAIN",
      "PVQ-LEN-U32",
      "PVQ-AVAIL",
      "PVQ-DEVICE-ACCESS",
    ],
    level: "safety",
    ops: PACKED_OPS,
    arb: packedArb({ scribble: 6, undoPop: 0 }),
    examples: [
      {
        size: 3,
        maxSize: 8,
        eventIdx: false,
        inOrder: false,
        cmds: [
          { k: "scribble", slot: 0, desc: { addr: BUFFER_AREA, len: 8, id: 7, flags: VIRTQ_DESC_F_AVAIL } },
          { k: "pop" },
          {
            k: "scribble",
            slot: 0,
            desc: { addr: BUFFER_AREA, len: 8, id: 1, flags: VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_NEXT },
          },
          { k: "scribble", slot: 1, desc: { addr: BUFFER_AREA, len: 8, id: 1, flags: VIRTQ_DESC_F_NEXT } },
          {
            k: "scribble",
            slot: 2,
            desc: { addr: BUFFER_AREA, len: 8, id: 1, flags: VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT },
          },
          { k: "pop" },
          used(),
          { k: "publish" },
          {
            k: "scribble",
            slot: 0,
            desc: { addr: INDIRECT_AREA, len: 24, id: 2, flags: VIRTQ_DESC_F_INDIRECT },
          },
          { k: "pop" },
          { k: "state" },
        ],
      },
    ],
    // Every exact step is about what a hostile ring does to the device.
    steps: (input) => packedSteps(input).map(hostileRules),
    numRuns: 40,
  }),
  defineCase<PackedInput>({
    id: "packed.reset",
    title:
      "after reset the packed queue is new: inactive, positions (0, 1), nothing in flight, no memory touched until it is initialized again",
    rules: ["PVQ-RESET", "PVQ-INACTIVE", "PVQ-INIT-FRESH"],
    level: "safety",
    ops: [...PACKED_OPS, "packed.reset"],
    arb: packedArb({ reset: 3, reinit: 2, undoPop: 0 }, { maxLength: 25 }),
    examples: [
      {
        size: 4,
        maxSize: 8,
        eventIdx: false,
        inOrder: false,
        cmds: [
          one(),
          one(1),
          { k: "pop" },
          { k: "reset" },
          { k: "pop" },
          used(),
          { k: "reinit" },
          one(),
          { k: "pop" },
          used(),
          { k: "publish" },
        ],
      },
    ],
    steps: (input) => packedSteps(input).map(resetRules),
    numRuns: 25,
  }),
  defineCase<InitInput>({
    id: "packed.initialize",
    title:
      "initialize checks ready, size (1..=32768, any integer), alignment (16, 4, 4) and area memory in order; a refused queue touches no memory",
    rules: [
      "PVQ-INIT-READY",
      "PVQ-INIT-SIZE",
      "PVQ-INIT-ALIGN",
      "PVQ-INIT-MEMORY",
      "PVQ-INIT-ORDER",
      "PVQ-INACTIVE",
      "PVQ-MAX-SIZE",
    ],
    level: "must",
    ops: [
      "memory.create",
      "memory.read",
      "packed.configure",
      "packed.initialize",
      "packed.pop",
      "packed.addUsed",
      "packed.publish",
      "packed.prepareKick",
      "packed.disableNotification",
      "packed.tryEnableNotification",
      "packed.state",
    ],
    arb: initArb,
    examples: [
      {
        maxSize: 16,
        size: 7,
        ready: true,
        descTable: RING,
        driverArea: DRIVER_AREA,
        deviceArea: DEVICE_AREA,
        then: ["pop", "kick"],
      },
      {
        maxSize: 16,
        size: 4,
        ready: true,
        descTable: RING + 8n,
        driverArea: DRIVER_AREA,
        deviceArea: DEVICE_AREA,
        then: ["pop"],
      },
    ],
    steps: initSteps,
    numRuns: 40,
  }),
];
