/**
 * Split-queue cases (VQ-*): random driver and device operation sequences, with the
 * spec/queue.ts model (state + memory) as the oracle at every step.
 */
import fc from "fast-check";
import type { SpecMemory } from "../../spec/memory.ts";
import { readBytes, readU16, writeU16 } from "../../spec/memory.ts";
import * as Q from "../../spec/queue.ts";
import type { SpecPopped, SpecQueue } from "../../spec/queue.ts";
import type { Json, Outcome } from "../protocol.ts";
import { toHex, u64 } from "../protocol.ts";
import type { RawDescriptor } from "./chain.ts";
import {
  BUFFER_AREA,
  TABLE_AREA,
  emptyChainMemory,
  encodeDescriptors,
  memoryCreateStep,
  writableLast,
  writeStep,
} from "./chain.ts";
import { readBackSteps } from "./memory.ts";
import type { Expect, Step } from "./types.ts";
import { acceptedWalkJson } from "../walk-json.ts";
import { citing, defineCase, expectOk, expectResult, step } from "./types.ts";
import { VIRTQ_DESC_F_NEXT, VRING_AVAIL_F_NO_INTERRUPT } from "../../wire/split.ts";

const AVAIL = TABLE_AREA + 0x1000n;
const USED = TABLE_AREA + 0x1800n;

type Cmd =
  | { readonly k: "avail"; readonly head: number }
  | { readonly k: "availIdx"; readonly ahead: number }
  | { readonly k: "usedEvent"; readonly delta: number }
  | { readonly k: "availFlags"; readonly v: number }
  | { readonly k: "pop" }
  | { readonly k: "undoPop" }
  | { readonly k: "addUsed"; readonly head: number | null; readonly len: number }
  | { readonly k: "publish" }
  | { readonly k: "kick" }
  | { readonly k: "tryEnable" }
  | { readonly k: "state" }
  | { readonly k: "reset" }
  | { readonly k: "reinit" }
  /**
   * A hostile driver writes a device-owned field: used.idx, a used ring entry or avail_event
   * (VIRTIO 1.2 §2.7.8: the used ring is written by the device only). A device must not trust
   * it: its next used slot is its own next_used, never read back from guest memory.
   */
  | {
      readonly k: "scribble";
      readonly field: "usedIdx" | "usedEntry" | "availEvent";
      readonly slot: number;
      readonly v: number;
    };

export interface QueueInput {
  readonly size: number;
  readonly maxSize: number;
  readonly eventIdx: boolean;
  readonly table: readonly RawDescriptor[];
  readonly cmds: readonly Cmd[];
}

const descArb = (size: number): fc.Arbitrary<RawDescriptor> =>
  fc.record({
    addr: fc.bigInt({ min: BUFFER_AREA, max: BUFFER_AREA + 0x3000n }),
    len: fc.integer({ min: 0, max: 256 }),
    flags: fc.constantFrom(0, 1, 2, 3),
    // In range: a NEXT out of range is a driver's fault, whose handling is a VMM's choice
    // (queue.profile-pop-bad-head).
    next: fc.nat(size - 1),
  });

/**
 * What a driver may put in a table (VIRTIO 1.2 §2.7.4.2, §2.7.5.2): no loops (a NEXT only
 * to a later entry) and device-writable descriptors last on every path.
 */
export const driverTable = (ds: readonly RawDescriptor[]): RawDescriptor[] =>
  writableLast(ds.map((d, i) => (d.next > i ? d : { ...d, flags: d.flags & ~VIRTQ_DESC_F_NEXT })));

export type Weights = Partial<Record<Cmd["k"], number>>;

const cmdArb = (size: number, w: Weights): fc.Arbitrary<Cmd> => {
  const wt = (k: Cmd["k"], d: number): number => w[k] ?? d;
  const all: { weight: number; arbitrary: fc.Arbitrary<Cmd> }[] = [
    {
      weight: wt("avail", 6),
      arbitrary: fc.record({
        k: fc.constant("avail" as const),
        // A head >= size is a driver's fault too (queue.profile-pop-bad-head).
        head: fc.nat(size - 1),
      }),
    },
    {
      weight: wt("availIdx", 1),
      arbitrary: fc.record({
        k: fc.constant("availIdx" as const),
        ahead: fc.oneof(fc.integer({ min: size, max: size + 3 }), fc.nat(0xffff)),
      }),
    },
    {
      weight: wt("usedEvent", 2),
      arbitrary: fc.record({ k: fc.constant("usedEvent" as const), delta: fc.integer({ min: -3, max: 1 }) }),
    },
    {
      weight: wt("availFlags", 1),
      arbitrary: fc.record({ k: fc.constant("availFlags" as const), v: fc.constantFrom(0, 1) }),
    },
    { weight: wt("pop", 6), arbitrary: fc.constant({ k: "pop" as const }) },
    { weight: wt("undoPop", 1), arbitrary: fc.constant({ k: "undoPop" as const }) },
    {
      weight: wt("addUsed", 4),
      arbitrary: fc.record({
        k: fc.constant("addUsed" as const),
        head: fc.option(fc.integer({ min: 0, max: size + 2 }), { freq: 4, nil: null }),
        len: fc.nat(0x1000),
      }),
    },
    { weight: wt("publish", 3), arbitrary: fc.constant({ k: "publish" as const }) },
    {
      weight: wt("kick", 3),
      arbitrary: fc.constant({ k: "kick" as const }),
    },
    { weight: wt("tryEnable", 2), arbitrary: fc.constant({ k: "tryEnable" as const }) },
    { weight: wt("state", 1), arbitrary: fc.constant({ k: "state" as const }) },
    { weight: wt("reset", 0), arbitrary: fc.constant({ k: "reset" as const }) },
    { weight: wt("reinit", 0), arbitrary: fc.constant({ k: "reinit" as const }) },
    {
      weight: wt("scribble", 0),
      arbitrary: fc.record({
        k: fc.constant("scribble" as const),
        field: fc.constantFrom("usedIdx" as const, "usedEntry" as const, "availEvent" as const),
        slot: fc.nat(size - 1),
        v: fc.oneof(fc.nat(0xffff), fc.integer({ min: -2, max: 2 })),
      }),
    },
  ];
  return fc.oneof(...all.filter((a) => a.weight > 0));
};

export const queueArb = (w: Weights, o: { maxLength?: number } = {}): fc.Arbitrary<QueueInput> =>
  fc
    .record({
      log: fc.integer({ min: 0, max: 4 }),
      eventIdx: fc.boolean(),
      bigMax: fc.boolean(),
    })
    .chain(({ log, eventIdx, bigMax }) => {
      const size = 1 << log;
      return fc.record({
        size: fc.constant(size),
        maxSize: fc.constant(bigMax ? 256 : 16),
        eventIdx: fc.constant(eventIdx),
        table: fc.array(descArb(size), { minLength: size, maxLength: size }).map(driverTable),
        cmds: fc.array(cmdArb(size, w), { minLength: 1, maxLength: o.maxLength ?? 25 }),
      });
    });

/** queue.pop's answer for what the model popped (null: the ring was empty). */
const popValue = (p: SpecPopped | null): Json =>
  p === null ? { popped: false } : { popped: true, head: p.head, chain: acceptedWalkJson(p.walk) };

export const stateJson = (q: SpecQueue): Json => ({
  maxSize: q.maxSize,
  size: q.size,
  ready: q.ready,
  descTable: u64(q.descTable),
  availRing: u64(q.availRing),
  usedRing: u64(q.usedRing),
  eventIdx: q.eventIdx,
  active: q.active,
  nextAvail: q.nextAvail,
  nextUsed: q.nextUsed,
  numAdded: q.numAdded,
});

const configureArgs = (input: QueueInput) => ({
  queue: 0,
  maxSize: input.maxSize,
  size: input.size,
  ready: true,
  descTable: u64(TABLE_AREA),
  availRing: u64(AVAIL),
  usedRing: u64(USED),
  eventIdx: input.eventIdx,
});

const configured = (input: QueueInput, q: SpecQueue): SpecQueue => {
  const c = Q.configure(q, {
    size: input.size,
    ready: true,
    descTable: TABLE_AREA,
    availRing: AVAIL,
    usedRing: USED,
  });
  return input.eventIdx ? Q.enableNotifSuppression(c) : c;
};

/** Steps for a queue input; the model runs alongside to give each expected outcome. */
export const queueSteps = (input: QueueInput): Step[] => {
  let mem: SpecMemory = emptyChainMemory();
  const steps: Step[] = [memoryCreateStep()];
  const w = writeStep(mem, TABLE_AREA, encodeDescriptors(input.table));
  steps.push(w.step);
  mem = w.mem;
  let q = configured(input, Q.newQueue(input.maxSize)!);
  steps.push(step("queue.configure", configureArgs(input), expectOk(null)));
  let init = Q.initialize(q, mem);
  q = init.queue;
  steps.push(step("queue.initialize", { queue: 0 }, expectResult(init.result)));
  // The driver's own avail.idx (what it last wrote).
  let driverIdx = 0;
  const u16w = (addr: bigint, v: number): void => {
    const r = writeU16(mem, addr, v & 0xffff);
    if (!r.ok) throw new Error("queue case: ring outside memory");
    mem = r.value;
    const b = new Uint8Array([v & 0xff, (v >> 8) & 0xff]);
    steps.push(step("memory.write", { addr: u64(addr), data: toHex(b) }, expectOk(null)));
  };
  const usedIdxBytes = (v: number): Outcome => ({ ok: true, value: { data: toHex(u16le(v)) } });
  /**
   * used.idx as the driver sees it. Firecracker publishes it in its own step
   * (advance_used_ring_idx, VQ-PUBLISH-USED); rust-vmm's add_used stores next_used into it
   * itself (virtio-queue queue.rs add_used): a VMM's choice, so a profile step.
   */
  const usedIdxStep = (): Step => {
    const fc = readBytes(mem, USED + 2n, 2);
    return step(
      "memory.read",
      { addr: u64(USED + 2n), len: 2 },
      {
        profiles: {
          firecracker: fc.ok ? { ok: true, value: { data: toHex(fc.value) } } : usedIdxBytes(0),
          "rust-vmm": usedIdxBytes(rustUsedIdx ?? (fc.ok ? fc.value[0]! | (fc.value[1]! << 8) : 0)),
          "cloud-hypervisor": usedIdxBytes(rustUsedIdx ?? (fc.ok ? fc.value[0]! | (fc.value[1]! << 8) : 0)),
        },
      },
      ["VQ-PUBLISH-USED"],
    );
  };
  /** The used ring as the driver sees it: the entries (MUST) and used.idx (a profile). */
  const usedRingRead = (): void => {
    const len = Number(Q.usedRingBytes(input.size)) - 4;
    const r = readBytes(mem, USED + 4n, len);
    if (r.ok)
      steps.push(
        step("memory.read", { addr: u64(USED + 4n), len }, expectOk({ data: toHex(r.value) }), [
          "VQ-ADD-USED",
          "VQ-LAYOUT",
        ]),
      );
    steps.push(usedIdxStep());
  };
  /** What rust-vmm's add_used last stored in used.idx (null: it has not stored one). */
  let rustUsedIdx: number | null = null;
  let lastHead: number | null = null;
  for (const c of input.cmds) {
    switch (c.k) {
      case "avail":
        u16w(AVAIL + 4n + 2n * BigInt(driverIdx % input.size), c.head);
        driverIdx = (driverIdx + 1) & 0xffff;
        u16w(AVAIL + 2n, driverIdx);
        break;
      case "availIdx":
        driverIdx = (q.nextAvail + c.ahead) & 0xffff;
        u16w(AVAIL + 2n, driverIdx);
        break;
      case "usedEvent":
        u16w(AVAIL + 4n + 2n * BigInt(input.size), q.nextUsed + c.delta);
        break;
      case "availFlags":
        u16w(AVAIL, c.v);
        break;
      case "scribble": {
        // The driver's write lands in memory; the device's later writes overwrite what they own.
        if (c.field === "usedIdx") {
          u16w(USED + 2n, (q.nextUsed + c.v) & 0xffff);
          rustUsedIdx = null;
        } else if (c.field === "availEvent") u16w(USED + 4n + 8n * BigInt(input.size), c.v & 0xffff);
        else {
          const at = USED + 4n + 8n * BigInt(c.slot);
          const e = new Uint8Array(8);
          new DataView(e.buffer).setUint32(0, c.v >>> 0, true);
          new DataView(e.buffer).setUint32(4, (c.v * 7) >>> 0, true);
          const w = writeStep(mem, at, e);
          mem = w.mem;
          steps.push(w.step);
        }
        break;
      }
      case "pop": {
        const r = Q.pop(q, mem);
        q = r.queue;
        if (r.result.ok && r.result.value !== null) lastHead = r.result.value.head;
        steps.push(
          step("queue.pop", { queue: 0 }, expectResult(r.result, popValue), [
            "VQ-POP-EMPTY",
            "VQ-POP-ADVANCE",
            "VQ-LEN",
            "VQ-LAYOUT",
          ]),
        );
        break;
      }
      case "undoPop":
        q = Q.undoPop(q);
        steps.push(step("queue.undoPop", { queue: 0 }, expectOk(null), ["VQ-UNDO-POP"]));
        break;
      case "addUsed": {
        const head = c.head ?? lastHead ?? 0;
        const r = Q.addUsed(q, mem, head, c.len);
        q = r.queue;
        mem = r.memory;
        const outcome: Outcome = r.result.ok
          ? { ok: true, value: null }
          : { ok: false, error: { _tag: r.result.error._tag } };
        const expect: Expect = { outcome };
        steps.push(
          r.result.ok || r.result.error._tag !== "DescIndexOutOfBounds"
            ? step("queue.addUsed", { queue: 0, head, len: c.len }, expect, ["VQ-ADD-USED"])
            : // An id past the queue is the device's own mistake, not the guest's: both VMMs
              // refuse it (Firecracker DescIndexOutOfBounds, rust-vmm InvalidDescriptorIndex).
              step(
                "queue.addUsed",
                { queue: 0, head, len: c.len },
                {
                  profiles: {
                    firecracker: outcome,
                    "rust-vmm": outcome,
                    "cloud-hypervisor": outcome,
                  },
                },
                ["VQ-ADD-USED-INDEX"],
              ),
        );
        if (r.result.ok) rustUsedIdx = q.nextUsed;
        if (q.active) usedRingRead();
        break;
      }
      case "publish": {
        const r = Q.publishUsed(q, mem);
        q = r.queue;
        mem = r.memory;
        steps.push(step("queue.publish", { queue: 0 }, expectResult(r.result), ["VQ-PUBLISH-USED"]));
        if (q.active) {
          // After publish used.idx is next_used whatever the VMM (rust-vmm: already so).
          const idx = readBytes(mem, USED + 2n, 2);
          if (idx.ok)
            steps.push(
              step("memory.read", { addr: u64(USED + 2n), len: 2 }, expectOk({ data: toHex(idx.value) }), [
                "VQ-PUBLISH-USED",
              ]),
            );
          rustUsedIdx = q.nextUsed;
        }
        break;
      }
      case "kick": {
        const f = readU16(mem, AVAIL);
        const flags = f.ok ? f.value : 0;
        // Whether NO_INTERRUPT is honoured is the implementation's one choice for the whole
        // session (the reference adapter's --honour-no-interrupt), never a request argument: a
        // choice flipped per run would make the profiles a case matches depend on the draws.
        // The model does not honour it; honouring it changes only the answer (the profile step).
        const r = Q.prepareKick(q, mem, false);
        const args = { queue: 0 };
        if (q.active && !q.eventIdx && (flags & VRING_AVAIL_F_NO_INTERRUPT) !== 0) {
          // VIRTIO 1.2 §2.7.7.2: with NO_INTERRUPT set the device SHOULD NOT notify.
          // Firecracker's prepare_kick and rust-vmm's needs_notification notify anyway;
          // QEMU's virtio_should_notify does not.
          steps.push(
            step(
              "queue.prepareKick",
              args,
              {
                profiles: {
                  firecracker: { ok: true, value: true },
                  "rust-vmm": { ok: true, value: true },
                  "cloud-hypervisor": { ok: true, value: true },
                  qemu: { ok: true, value: false },
                },
              },
              ["VQ-NO-INTERRUPT"],
            ),
          );
        } else
          steps.push(
            // The answer is prepareKick's formula; VQ-EVENT-IDX (suppression on) shows in queue.state.
            step("queue.prepareKick", args, expectOk(r.result), ["VQ-PREPARE-KICK"]),
          );
        q = r.queue;
        break;
      }
      case "tryEnable": {
        const r = Q.tryEnableNotification(q, mem);
        q = r.queue;
        mem = r.memory;
        steps.push(
          step(
            "queue.tryEnableNotification",
            { queue: 0 },
            expectResult(r.result, (v) => v),
          ),
        );
        break;
      }
      case "state":
        steps.push(step("queue.state", { queue: 0 }, expectOk(stateJson(q))));
        break;
      case "reset":
        q = Q.reset(q);
        steps.push(step("queue.reset", { queue: 0 }, expectOk(null)));
        // The state right after reset is what VQ-RESET says; later refusals are VQ-INACTIVE's.
        steps.push(step("queue.state", { queue: 0 }, expectOk(stateJson(q)), ["VQ-RESET"]));
        break;
      case "reinit":
        q = configured(input, q);
        steps.push(step("queue.configure", configureArgs(input), expectOk(null)));
        init = Q.initialize(q, mem);
        q = init.queue;
        steps.push(step("queue.initialize", { queue: 0 }, expectResult(init.result)));
        driverIdx = Q.availIdx(q, mem);
        break;
    }
  }
  steps.push(step("queue.state", { queue: 0 }, expectOk(stateJson(q))));
  // Nothing written outside the used ring; used.idx itself is a profile (see usedIdxStep).
  return [...steps.map(citeRefusal), ...readBackSteps(mem, [[USED + 2n, 2]]), usedIdxStep()];
};

/** A refusal is charged to the rule that refuses: a hostile avail.idx, an inactive queue. */
const citeRefusal = (s: Step): Step => {
  if (!("outcome" in s.expect) || s.expect.outcome.ok) return s;
  const tag = s.expect.outcome.error._tag;
  return tag === "InvalidAvailIdx"
    ? { ...s, rules: ["VQ-POP-AVAIL-IDX"] }
    : tag === "NotReady"
      ? { ...s, rules: ["VQ-INACTIVE"] }
      : s;
};

const u16le = (v: number): Uint8Array => new Uint8Array([v & 0xff, (v >> 8) & 0xff]);

// ---- initialize -------------------------------------------------------------------------

interface InitInput {
  readonly maxSize: number;
  readonly size: number;
  readonly ready: boolean;
  readonly descTable: bigint;
  readonly availRing: bigint;
  readonly usedRing: bigint;
  /** Operations tried after initialize (all NotReady when it failed: VQ-INACTIVE). */
  readonly then: readonly ("pop" | "addUsed" | "publish" | "tryEnable" | "kick")[];
}

const ringAddr: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 6, arbitrary: fc.bigInt({ min: TABLE_AREA, max: TABLE_AREA + 0x7000n }) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 0x10000n }) },
  { weight: 1, arbitrary: fc.bigInt({ min: (1n << 64n) - 0x100n, max: (1n << 64n) - 1n }) },
);

const initArb: fc.Arbitrary<InitInput> = fc.record({
  maxSize: fc.constantFrom(16, 256),
  size: fc.oneof(fc.constantFrom(0, 1, 2, 4, 8, 16, 32, 256, 512), fc.nat(300)),
  ready: fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  descTable: ringAddr,
  availRing: ringAddr,
  usedRing: ringAddr,
  then: fc.array(
    fc.constantFrom(
      "pop" as const,
      "addUsed" as const,
      "publish" as const,
      "tryEnable" as const,
      "kick" as const,
    ),
    { maxLength: 4 },
  ),
});

const initSteps = (input: InitInput): Step[] => {
  const mem = emptyChainMemory();
  let q = Q.configure(Q.newQueue(input.maxSize)!, {
    size: input.size,
    ready: input.ready,
    descTable: input.descTable,
    availRing: input.availRing,
    usedRing: input.usedRing,
  });
  const steps: Step[] = [
    memoryCreateStep(),
    step(
      "queue.configure",
      {
        queue: 0,
        maxSize: input.maxSize,
        size: input.size,
        ready: input.ready,
        descTable: u64(input.descTable),
        availRing: u64(input.availRing),
        usedRing: u64(input.usedRing),
      },
      expectOk(null),
    ),
  ];
  const init = Q.initialize(q, mem);
  q = init.queue;
  steps.push(step("queue.initialize", { queue: 0 }, expectResult(init.result)));
  let m = mem;
  for (const t of input.then) {
    if (t === "pop") {
      const r = Q.pop(q, m);
      steps.push(step("queue.pop", { queue: 0 }, expectResult(r.result, popValue)));
      q = r.queue;
    } else if (t === "addUsed") {
      const r = Q.addUsed(q, m, 0, 1);
      steps.push(step("queue.addUsed", { queue: 0, head: 0, len: 1 }, expectResult(r.result)));
      q = r.queue;
      m = r.memory;
    } else if (t === "publish") {
      const r = Q.publishUsed(q, m);
      steps.push(step("queue.publish", { queue: 0 }, expectResult(r.result)));
      m = r.memory;
    } else if (t === "tryEnable") {
      const r = Q.tryEnableNotification(q, m);
      steps.push(
        step(
          "queue.tryEnableNotification",
          { queue: 0 },
          expectResult(r.result, (v) => v),
        ),
      );
      q = r.queue;
      m = r.memory;
    } else {
      const r = Q.prepareKick(q, m);
      steps.push(step("queue.prepareKick", { queue: 0 }, expectOk(r.result)));
      q = r.queue;
    }
  }
  steps.push(step("queue.state", { queue: 0 }, expectOk(stateJson(q))));
  return [...steps, ...readBackSteps(m)];
};

/** A popped head whose NEXT is out of range: Firecracker refuses it, rust-vmm pops it (CHAIN-CHECKED-NEW at pop). */
interface BadHeadInput {
  /** The avail ring names an entry at or past the queue size (else entry 0, whose NEXT is out of range). */
  readonly headPast?: boolean;
  readonly size: number;
  readonly over: number;
  readonly len: number;
  readonly eventIdx: boolean;
}

const badHeadSteps = (input: BadHeadInput): Step[] => {
  const table: RawDescriptor[] = Array.from({ length: input.size }, (_, i) => ({
    addr: BUFFER_AREA + BigInt(64 * i),
    len: input.len,
    flags: i === 0 && !input.headPast ? 1 : 0,
    next: i === 0 && !input.headPast ? input.size + input.over : 0,
  }));
  // The avail ring names entry 0 (its NEXT out of range) or an entry past the table.
  const availHead = input.headPast ? Math.min(0xffff, input.size + input.over) : 0;
  const steps = queueSteps({
    size: input.size,
    maxSize: 16,
    eventIdx: input.eventIdx,
    table,
    cmds: [{ k: "avail", head: availHead }],
  });
  // Drop the closing state and read-back: what follows is per profile.
  const setup = steps.slice(
    0,
    steps.findIndex((s) => s.op === "queue.state"),
  );
  const head = table[0]!;
  const chain = input.headPast
    ? { accepted: true, descriptors: [] }
    : {
        accepted: true,
        descriptors: [
          { index: 0, addr: u64(head.addr), len: head.len, flags: 1, next: head.next, indirect: false },
        ],
      };
  const popped = (yes: boolean): Outcome => ({
    ok: true,
    value: yes ? { popped: true, head: availHead, chain } : { popped: false },
  });
  const state = (nextAvail: number): Outcome => ({ ok: true, value: { nextAvail } });
  // Firecracker: checked_new refuses the head and pop does not advance. rust-vmm:
  // virtio-queue queue.rs AvailIter::next advances and returns DescriptorChain::new(head)
  // whatever the head; chain.rs yields the head and stops at its NEXT, or yields nothing for
  // a head >= size.
  return [
    ...setup,
    step(
      "queue.pop",
      { queue: 0 },
      {
        profiles: { firecracker: popped(false), "rust-vmm": popped(true), "cloud-hypervisor": popped(true) },
        keys: ["popped", "head"],
      },
    ),
    step(
      "queue.state",
      { queue: 0 },
      {
        profiles: { firecracker: state(0), "rust-vmm": state(1), "cloud-hypervisor": state(1) },
        keys: ["nextAvail"],
      },
    ),
  ];
};

const okTable = (size: number): RawDescriptor[] =>
  Array.from({ length: size }, (_, i) => ({
    addr: BUFFER_AREA + BigInt(64 * i),
    len: 16,
    flags: 0,
    next: 0,
  }));

/** What queue.ops checks at the must level (VQ-ADD-USED-INDEX, VQ-NO-INTERRUPT: profile only). */
const QUEUE_OPS_RULES = [
  "VQ-LAYOUT",
  "VQ-LEN",
  "VQ-POP-EMPTY",
  "VQ-POP-ADVANCE",
  "VQ-UNDO-POP",
  "VQ-ADD-USED",
  "VQ-PUBLISH-USED",
  "VQ-EVENT-IDX",
  "VQ-PREPARE-KICK",
  "VQ-TRY-ENABLE-NOTIFICATION",
];

const QUEUE_OPS = [
  "memory.create",
  "memory.write",
  "memory.read",
  "queue.configure",
  "queue.initialize",
  "queue.pop",
  "queue.undoPop",
  "queue.addUsed",
  "queue.publish",
  "queue.prepareKick",
  "queue.tryEnableNotification",
  "queue.reset",
  "queue.state",
];

export const queueCases = [
  defineCase<QueueInput>({
    id: "queue.ops",
    title:
      "pop, undoPop, addUsed, publish, prepareKick and tryEnableNotification agree with the model on random driver/device sequences",
    rules: [...QUEUE_OPS_RULES, "VQ-ADD-USED-INDEX", "VQ-NO-INTERRUPT"],
    setupRules: QUEUE_OPS_RULES,
    level: "must",
    ops: QUEUE_OPS.filter((op) => op !== "queue.reset"),
    arb: queueArb({ availIdx: 0 }),
    examples: [
      {
        // NO_INTERRUPT without EVENT_IDX (VQ-NO-INTERRUPT), an id past the queue (VQ-ADD-USED-INDEX).
        size: 2,
        maxSize: 16,
        eventIdx: false,
        table: okTable(2),
        cmds: [
          { k: "availFlags", v: 1 },
          { k: "avail", head: 0 },
          { k: "pop" },
          { k: "addUsed", head: 3, len: 1 },
          { k: "addUsed", head: null, len: 4 },
          { k: "kick" },
          { k: "publish" },
        ],
      },
      {
        size: 4,
        maxSize: 16,
        eventIdx: true,
        table: okTable(4),
        cmds: [
          { k: "avail", head: 1 },
          { k: "pop" },
          { k: "addUsed", head: null, len: 8 },
          { k: "usedEvent", delta: -1 },
          { k: "kick" },
          { k: "publish" },
        ],
      },
      {
        size: 4,
        maxSize: 16,
        eventIdx: true,
        table: okTable(4),
        cmds: [
          { k: "avail", head: 1 },
          { k: "pop" },
          { k: "addUsed", head: null, len: 8 },
          { k: "usedEvent", delta: 0 },
          { k: "kick" },
        ],
      },
    ],
    steps: queueSteps,
    numRuns: 40,
  }),
  defineCase<QueueInput>({
    id: "queue.hostile-avail",
    title:
      "an avail.idx far ahead of next_avail is InvalidAvailIdx, changes nothing, and the queue serves again once the driver repairs it",
    rules: ["VQ-POP-AVAIL-IDX", "VQ-LEN"],
    level: "safety",
    ops: QUEUE_OPS.filter((op) => op !== "queue.reset"),
    arb: queueArb({ availIdx: 4, undoPop: 0, kick: 0 }),
    examples: [
      {
        size: 4,
        maxSize: 16,
        eventIdx: false,
        table: okTable(4),
        cmds: [{ k: "availIdx", ahead: 5 }, { k: "pop" }, { k: "availIdx", ahead: 1 }, { k: "pop" }],
      },
      {
        size: 4,
        maxSize: 16,
        eventIdx: true,
        table: okTable(4),
        cmds: [{ k: "availIdx", ahead: 7 }, { k: "tryEnable" }, { k: "pop" }],
      },
    ],
    steps: queueSteps,
    numRuns: 30,
  }),
  defineCase<QueueInput>({
    id: "queue.reset",
    title:
      "after reset the queue is new: inactive, positions 0, and nothing reads the old rings until it is initialized again",
    rules: ["VQ-RESET", "VQ-INACTIVE"],
    level: "safety",
    ops: QUEUE_OPS,
    arb: queueArb({ reset: 3, reinit: 2, undoPop: 0 }),
    examples: [
      {
        size: 4,
        maxSize: 16,
        eventIdx: false,
        table: okTable(4),
        cmds: [{ k: "avail", head: 0 }, { k: "avail", head: 1 }, { k: "pop" }, { k: "reset" }, { k: "pop" }],
      },
    ],
    steps: queueSteps,
    numRuns: 30,
  }),
  defineCase<QueueInput>({
    id: "queue.device-owned",
    title:
      "a driver that writes device-owned fields (used.idx, used ring entries, avail_event) is not trusted: the device's used slots stay its own next_used",
    rules: ["VQ-DEVICE-ACCESS", "VQ-PUBLISH-USED"],
    setupRules: ["VQ-DEVICE-ACCESS"],
    level: "safety",
    ops: QUEUE_OPS.filter((op) => op !== "queue.reset"),
    arb: queueArb({ scribble: 5, undoPop: 0 }),
    examples: [
      {
        size: 4,
        maxSize: 16,
        eventIdx: false,
        table: okTable(4),
        cmds: [
          { k: "avail", head: 1 },
          { k: "pop" },
          { k: "scribble", field: "usedIdx", slot: 0, v: 2 },
          { k: "addUsed", head: null, len: 8 },
          { k: "publish" },
        ],
      },
    ],
    // Every exact step here is about what the device trusts (profile steps keep their rules).
    steps: (input) =>
      queueSteps(input).map((x) => ("outcome" in x.expect ? { ...x, rules: ["VQ-DEVICE-ACCESS"] } : x)),
    numRuns: 30,
  }),
  defineCase<BadHeadInput>({
    id: "queue.profile-pop-bad-head",
    title:
      "a head past the queue or whose NEXT is out of range: Firecracker's pop refuses it and does not advance, rust-vmm pops (an empty or one-descriptor chain) and advances",
    rules: ["VQ-POP-HEAD", "CHAIN-CHECKED-NEW"],
    level: "profile",
    ops: [
      "memory.create",
      "memory.write",
      "memory.read",
      "queue.configure",
      "queue.initialize",
      "queue.pop",
      "queue.state",
    ],
    arb: fc.record({
      headPast: fc.boolean(),
      size: fc.constantFrom(2, 4, 8),
      over: fc.nat(20),
      len: fc.integer({ min: 1, max: 64 }),
      eventIdx: fc.boolean(),
    }),
    examples: [],
    steps: badHeadSteps,
    numRuns: 10,
  }),
  defineCase<InitInput>({
    id: "queue.initialize",
    title:
      "initialize checks ready, size, alignment and ring memory in order; a refused queue touches no memory",
    rules: [
      "VQ-INIT-READY",
      "VQ-INIT-SIZE",
      "VQ-INIT-ALIGN",
      "VQ-INIT-MEMORY",
      "VQ-INIT-ORDER",
      "VQ-INACTIVE",
      "VQ-MAX-SIZE",
    ],
    level: "must",
    ops: [
      "memory.create",
      "memory.read",
      "queue.configure",
      "queue.initialize",
      "queue.pop",
      "queue.addUsed",
      "queue.publish",
      "queue.prepareKick",
      "queue.tryEnableNotification",
      "queue.state",
    ],
    arb: initArb,
    examples: [],
    steps: initSteps,
    numRuns: 50,
  }),
  defineCase<InitInput>({
    id: "queue.size-zero",
    title: "a queue of size 0 is refused and never indexes a ring modulo 0; the device keeps serving",
    rules: ["VQ-SIZE-ZERO", "VQ-INACTIVE"],
    level: "safety",
    ops: [
      "memory.create",
      "memory.read",
      "queue.configure",
      "queue.initialize",
      "queue.pop",
      "queue.addUsed",
      "queue.publish",
      "queue.prepareKick",
      "queue.tryEnableNotification",
      "queue.state",
    ],
    arb: initArb.map((i) => ({ ...i, size: 0, ready: true })),
    examples: [
      {
        maxSize: 16,
        size: 0,
        ready: true,
        descTable: TABLE_AREA,
        availRing: AVAIL,
        usedRing: USED,
        then: ["pop", "addUsed"],
      },
    ],
    // The refusal itself is VQ-SIZE-ZERO; what follows it (nothing served) is VQ-INACTIVE.
    steps: (input) =>
      initSteps(input).map((s) => (s.op === "queue.initialize" ? citing(s, "VQ-SIZE-ZERO") : s)),
    numRuns: 10,
  }),
];
