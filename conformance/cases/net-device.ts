/**
 * virtio-net device cases: TX frames out of the TX queue's chains and RX frames into the RX
 * queue's chains, with spec/net.ts (txFrame, rxPlace) over the spec/queue.ts model playing
 * the device loop (NET-TX-*, NET-RX-*).
 */
import fc from "fast-check";
import type { SpecMemory } from "../../spec/memory.ts";
import { readBytes, writeBytes } from "../../spec/memory.ts";
import { headerLength, maxFrameLength, offeredFeatures, rxPlace, txFrame } from "../../spec/net.ts";
import type { NetConfig, SpecTxDescriptor } from "../../spec/net.ts";
import * as Q from "../../spec/queue.ts";
import type { SpecQueue } from "../../spec/queue.ts";
import { appendChain, emptyIoVecMut } from "../../spec/iovec.ts";
import { toHex, u64 } from "../protocol.ts";
import type { RawDescriptor } from "./chain.ts";
import { CHAIN_REGION, emptyChainMemory, encodeDescriptors, memoryCreateStep } from "./chain.ts";
import type { Step } from "./types.ts";
import { defineCase, expectOk, step } from "./types.ts";
import { VIRTIO_NET_F as F, featureBit as bit } from "../../wire/features.ts";
import {
  AVAIL_IDX,
  VIRTQ_DESC_F_WRITE,
  availRingBytes,
  availSlotOffset,
  usedEventOffset,
} from "../../wire/split.ts";

const B = CHAIN_REGION.base;
const RINGS = {
  rx: { size: 8, descTable: B, availRing: B + 0x1000n, usedRing: B + 0x1800n },
  tx: { size: 8, descTable: B + 0x2000n, availRing: B + 0x3000n, usedRing: B + 0x3800n },
};
const BUFFERS = B + 0x4000n;
const REGION_END = B + BigInt(CHAIN_REGION.size);

interface BufInput {
  readonly len: number;
  readonly write: boolean;
  readonly outside: boolean;
}

interface DeviceInput {
  readonly mtu: number | null;
  readonly legacy: boolean;
  readonly eventIdx: boolean;
  readonly usedEvent: number | null;
  readonly chains: readonly (readonly BufInput[])[];
  readonly frames: readonly Uint8Array[];
  readonly seed: number;
}

const bufArb = (write: boolean): fc.Arbitrary<BufInput> =>
  fc.record({
    len: fc.integer({ min: 0, max: 160 }),
    write: fc.oneof(
      { weight: 8, arbitrary: fc.constant(write) },
      { weight: 1, arbitrary: fc.constant(!write) },
    ),
    outside: fc.oneof(
      { weight: 20, arbitrary: fc.constant(false) },
      { weight: 1, arbitrary: fc.constant(true) },
    ),
  });

const deviceArb = (write: boolean): fc.Arbitrary<DeviceInput> =>
  fc.record({
    mtu: fc.option(fc.integer({ min: 68, max: 200 }), { nil: null }),
    legacy: fc.boolean(),
    eventIdx: fc.boolean(),
    usedEvent: fc.option(fc.integer({ min: 0, max: 4 }), { nil: null }),
    chains: fc.array(fc.array(bufArb(write), { minLength: 1, maxLength: 3 }), { minLength: 0, maxLength: 4 }),
    frames: fc.array(fc.uint8Array({ minLength: 1, maxLength: 180 }), { minLength: 0, maxLength: 4 }),
    seed: fc.integer(),
  });

const configOf = (i: DeviceInput): NetConfig => ({
  ...(i.mtu !== null ? { mtu: i.mtu } : {}),
  status: false,
  eventIdx: i.eventIdx,
});

const ackedOf = (i: DeviceInput): bigint =>
  (i.legacy ? 0n : bit(F.VERSION_1)) |
  (i.eventIdx ? bit(F.RING_EVENT_IDX) : 0n) |
  (i.mtu !== null ? bit(F.MTU) : 0n);

const ringJson = (r: typeof RINGS.rx) => ({
  size: r.size,
  descTable: u64(r.descTable),
  availRing: u64(r.availRing),
  usedRing: u64(r.usedRing),
});

/** Lays the chains out in one queue: descriptors, buffers (with a pattern), avail ring. */
const layChains = (
  mem0: SpecMemory,
  ring: typeof RINGS.rx,
  chains: readonly (readonly BufInput[])[],
  bufBase: bigint,
  seed: number,
  usedEvent: number | null,
): { mem: SpecMemory; steps: Step[] } => {
  let mem = mem0;
  const steps: Step[] = [];
  const put = (addr: bigint, data: Uint8Array): void => {
    const r = writeBytes(mem, addr, data);
    if (!r.ok) throw new Error("net layout");
    mem = r.value;
    steps.push(step("memory.write", { addr: u64(addr), data: toHex(data) }, expectOk(null)));
  };
  const table: RawDescriptor[] = [];
  const heads: number[] = [];
  let at = bufBase;
  for (const c of chains) {
    heads.push(table.length);
    c.forEach((b, k) => {
      const idx = table.length;
      table.push({
        addr: b.outside ? REGION_END + 0x100n : at,
        len: b.len,
        flags: (b.write ? 2 : 0) | (k + 1 < c.length ? 1 : 0),
        next: idx + 1,
      });
      at += BigInt(b.len) + 8n;
    });
  }
  if (table.length > 0) put(ring.descTable, encodeDescriptors(table));
  const fill = new Uint8Array(Number(at - bufBase));
  for (let i = 0; i < fill.length; i++) fill[i] = (Math.imul(i + 7, seed | 1) >>> 9) & 0xff;
  if (fill.length > 0) put(bufBase, fill);
  // avail: flags 0, idx = chains, ring = heads, used_event.
  const avail = new Uint8Array(availRingBytes(ring.size));
  const v = new DataView(avail.buffer);
  v.setUint16(AVAIL_IDX, chains.length, true);
  heads.forEach((h, i) => v.setUint16(availSlotOffset(i), h, true));
  v.setUint16(usedEventOffset(ring.size), usedEvent ?? 0, true);
  put(ring.availRing, avail);
  return { mem, steps };
};

const startQueue = (ring: typeof RINGS.rx, eventIdx: boolean, mem: SpecMemory): SpecQueue => {
  let q = Q.configure(Q.newQueue(256)!, { ...ring, ready: true });
  if (eventIdx) q = Q.enableNotifSuppression(q);
  const r = Q.initialize(q, mem);
  if (!r.result.ok) throw new Error("net rings");
  return r.queue;
};

const setup = (i: DeviceInput, which: "rx" | "tx"): { mem: SpecMemory; steps: Step[]; q: SpecQueue } => {
  const cfg = configOf(i);
  const acked = ackedOf(i);
  let mem = emptyChainMemory();
  const steps: Step[] = [memoryCreateStep()];
  const laid = layChains(mem, RINGS[which], i.chains, BUFFERS, i.seed, i.usedEvent);
  mem = laid.mem;
  steps.push(...laid.steps);
  steps.push(
    step(
      "net.device",
      { mac: null, mtu: i.mtu, status: false, mrgRxbuf: false, eventIdx: i.eventIdx, acked: u64(acked) },
      expectOk({
        offered: u64(offeredFeatures(cfg)),
        headerLength: headerLength(acked),
        maxFrame: maxFrameLength(cfg),
      }),
    ),
    step("net.activate", { rx: ringJson(RINGS.rx), tx: ringJson(RINGS.tx) }, expectOk(null)),
  );
  return { mem, steps, q: startQueue(RINGS[which], i.eventIdx, mem) };
};

/** Publishes and asks whether to notify, as the device does after completing chains. */
const finish = (
  q: SpecQueue,
  mem: SpecMemory,
  done: number,
): { q: SpecQueue; mem: SpecMemory; notified: boolean } => {
  if (done === 0) return { q, mem, notified: false };
  const p = Q.publishUsed(q, mem);
  const k = Q.prepareKick(p.queue, p.memory);
  return { q: k.queue, mem: k.memory, notified: k.result };
};

const readBack = (mem: SpecMemory): Step[] => {
  const r = readBytes(mem, CHAIN_REGION.base, CHAIN_REGION.size);
  return r.ok
    ? [
        step(
          "memory.read",
          { addr: u64(CHAIN_REGION.base), len: CHAIN_REGION.size },
          expectOk({ data: toHex(r.value) }),
        ),
      ]
    : [];
};

const txSteps = (i: DeviceInput): Step[] => {
  const s = setup(i, "tx");
  let { q, mem } = s;
  const hdr = headerLength(ackedOf(i));
  const max = maxFrameLength(configOf(i));
  const frames: string[] = [];
  let tooShort = 0;
  let tooLong = 0;
  let chainErrors = 0;
  let done = 0;
  for (;;) {
    const p = Q.popOrEnableNotification(q, mem);
    q = p.queue;
    mem = p.memory;
    if (!p.result.ok || p.result.value === null) break;
    const { head, walk } = p.result.value;
    const descs: SpecTxDescriptor[] = walk.descriptors.map((d) => {
      const b = readBytes(mem, d.addr, d.len);
      return { write: (d.flags & VIRTQ_DESC_F_WRITE) !== 0, bytes: b.ok ? b.value : undefined };
    });
    const f = txFrame(descs, walk.end === null ? null : walk.end._tag, hdr, max);
    if (f.ok) frames.push(toHex(f.value));
    else if (f.error._tag === "TxFrameTooShort") tooShort++;
    else if (f.error._tag === "TxFrameTooLong") tooLong++;
    else chainErrors++;
    const u = Q.addUsed(q, mem, head, 0);
    q = u.queue;
    mem = u.memory;
    done++;
  }
  const fin = finish(q, mem, done);
  return [
    ...s.steps,
    step(
      "net.tx",
      {},
      expectOk({ completed: done, frames, tooShort, tooLong, chainErrors, notified: fin.notified }),
    ),
    ...readBack(fin.mem),
  ];
};

const rxSteps = (i: DeviceInput): Step[] => {
  const s = setup(i, "rx");
  let { q, mem } = s;
  const hdr = headerLength(ackedOf(i));
  const pending = [...i.frames];
  let frames = 0;
  let chainErrors = 0;
  let done = 0;
  for (;;) {
    const p = Q.popOrEnableNotification(q, mem);
    q = p.queue;
    mem = p.memory;
    if (!p.result.ok || p.result.value === null) break;
    const { head, walk } = p.result.value;
    // NET-RX-WRITABLE-ONLY: only the chain's writable descriptors take the packet.
    const writable = walk.descriptors.filter((d) => (d.flags & VIRTQ_DESC_F_WRITE) !== 0);
    const loaded = appendChain(emptyIoVecMut(256), mem, head, writable);
    // NET-RX-NO-ROOM: a chain with no writable byte is given back empty, like a broken one.
    const room = writable.reduce((a, d) => a + d.len, 0);
    if (!loaded.ok || walk.end !== null || room === 0) {
      const u = Q.addUsed(q, mem, head, 0);
      q = u.queue;
      mem = u.memory;
      chainErrors++;
      done++;
      continue;
    }
    const frame = pending.shift();
    if (frame === undefined) {
      q = Q.undoPop(q);
      break;
    }
    const placed = rxPlace(
      frame,
      hdr,
      writable.map((d) => d.len),
    );
    writable.forEach((d, k) => {
      const bytes = placed.perDescriptor[k]!;
      if (bytes.length === 0) return;
      const w = writeBytes(mem, d.addr, bytes);
      if (w.ok) mem = w.value;
    });
    const u = Q.addUsed(q, mem, head, placed.used);
    q = u.queue;
    mem = u.memory;
    frames++;
    done++;
  }
  const fin = finish(q, mem, done);
  return [
    ...s.steps,
    step(
      "net.rx",
      { frames: i.frames.map(toHex) },
      expectOk({ completed: done, pending: pending.length, frames, chainErrors, notified: fin.notified }),
    ),
    ...readBack(fin.mem),
  ];
};

export const netDeviceCases = [
  defineCase<DeviceInput>({
    id: "net.tx",
    title:
      "TX: each chain's readable bytes minus the header reach the backend, short / long / broken chains are completed and counted, used len 0",
    rules: [
      "NET-TX-GATHER",
      "NET-TX-HDR-STRIP",
      "NET-TX-SHORT",
      "NET-TX-MAX",
      "NET-TX-CHAIN-ERROR",
      "NET-TX-USED-LEN",
      "NET-HDR-LEN",
    ],
    level: "must",
    ops: ["memory.create", "memory.write", "memory.read", "net.device", "net.activate", "net.tx"],
    arb: deviceArb(false),
    examples: [],
    steps: txSteps,
    numRuns: 30,
  }),
  defineCase<DeviceInput>({
    id: "net.rx",
    title:
      "RX: header (num_buffers 1) and frame go only into writable descriptors, used len = bytes written, frames wait without buffers",
    rules: [
      "NET-RX-HDR",
      "NET-RX-USED-LEN",
      "NET-RX-WRITABLE-ONLY",
      "NET-RX-ORDER",
      "NET-RX-NO-ROOM",
      "NET-HDR-LAYOUT",
    ],
    level: "safety",
    ops: ["memory.create", "memory.write", "memory.read", "net.device", "net.activate", "net.rx"],
    arb: deviceArb(true),
    examples: [
      {
        mtu: null,
        legacy: false,
        eventIdx: false,
        usedEvent: null,
        chains: [[{ len: 100, write: true, outside: false }]],
        frames: [new Uint8Array([1, 2, 3, 4])],
        seed: 1,
      },
    ],
    steps: rxSteps,
    numRuns: 30,
  }),
];
