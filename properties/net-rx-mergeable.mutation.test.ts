/**
 * The merged RX path (MRG_RXBUF) over a whole pass: several frames, chains of several
 * descriptors (readable ones mixed in, empty writable ones), and broken chains between the
 * good ones (no writable byte, outside memory, a bad `next` after the head). A small model
 * of the pass, built on spec/net.ts's one-frame `rxMergeable`, says which chains are used
 * with how many bytes, which frames are delivered and which wait. Written for
 * `npm run mutate -- impl/net/device.ts`.
 */
import fc from "fast-check";
import { describe, expect } from "vitest";
import * as spec from "../spec/net.ts";
import { CapturingBackend } from "../impl/net/backend.ts";
import { NetDevice, RX_QUEUE } from "../impl/net/device.ts";
import { NetGuest } from "../impl/net/guest.ts";
import { property } from "./harness.ts";

const QSIZE = 32;
const SLOT = 512;
const NEXT = 1;
const WRITE = 2;

type ChainPick =
  | { readonly kind: "ok"; readonly descs: readonly { readonly len: number; readonly write: boolean }[] }
  | { readonly kind: "noRoom" | "outside" | "badNext" };

const okChainArb: fc.Arbitrary<ChainPick> = fc
  .array(
    fc.record({
      len: fc.oneof(fc.integer({ min: 1, max: 70 }), fc.constant(0)),
      write: fc.oneof(fc.constant(true), fc.constant(true), fc.constant(false)),
    }),
    { minLength: 1, maxLength: 3 },
  )
  .filter((ds) => ds.some((d) => d.write && d.len > 0))
  .map((descs) => ({ kind: "ok" as const, descs }));

const chainArb: fc.Arbitrary<ChainPick> = fc.oneof(
  { weight: 6, arbitrary: okChainArb },
  {
    weight: 1,
    arbitrary: fc.constantFrom<ChainPick>({ kind: "noRoom" }, { kind: "outside" }, { kind: "badNext" }),
  },
);

interface Posted {
  readonly head: number;
  readonly broken: boolean;
  /** Writable descriptors, in order. */
  readonly writable: readonly { readonly addr: number; readonly len: number }[];
  readonly readable: readonly { readonly addr: number; readonly len: number }[];
}

/** Writes chain k into the descriptor table (descriptors from `next`) and the avail ring. */
const post = (g: NetGuest, k: number, c: ChainPick, firstDesc: number): { posted: Posted; descs: number } => {
  const drv = g.rxDriver;
  const slot = g.rxSlotAddr(k);
  const memEnd = g.memory.regions[0]!.end;
  if (c.kind === "noRoom") {
    drv.writeDescriptor(firstDesc, { addr: slot, len: 40, flags: 0, next: 0 });
    g.memory.slice(slot, 40, true)!.fill(0xcc);
    drv.pushAvail(firstDesc);
    return {
      posted: { head: firstDesc, broken: true, writable: [], readable: [{ addr: slot, len: 40 }] },
      descs: 1,
    };
  }
  if (c.kind === "outside") {
    drv.writeDescriptor(firstDesc, { addr: memEnd + 64, len: 200, flags: WRITE, next: 0 });
    drv.pushAvail(firstDesc);
    return { posted: { head: firstDesc, broken: true, writable: [], readable: [] }, descs: 1 };
  }
  if (c.kind !== "ok") {
    drv.writeDescriptor(firstDesc, { addr: slot, len: 200, flags: WRITE | NEXT, next: firstDesc + 1 });
    drv.writeDescriptor(firstDesc + 1, { addr: slot + 200, len: 10, flags: WRITE | NEXT, next: QSIZE + 5 });
    drv.pushAvail(firstDesc);
    return { posted: { head: firstDesc, broken: true, writable: [], readable: [] }, descs: 2 };
  }
  let at = slot;
  const writable: { addr: number; len: number }[] = [];
  const readable: { addr: number; len: number }[] = [];
  c.descs.forEach((d, i) => {
    const last = i === c.descs.length - 1;
    drv.writeDescriptor(firstDesc + i, {
      addr: at,
      len: d.len,
      flags: (d.write ? WRITE : 0) | (last ? 0 : NEXT),
      next: last ? 0 : firstDesc + i + 1,
    });
    if (d.write) writable.push({ addr: at, len: d.len });
    else {
      g.memory.slice(at, d.len, true)!.fill(0xcc);
      readable.push({ addr: at, len: d.len });
    }
    at += d.len;
  });
  drv.pushAvail(firstDesc);
  return { posted: { head: firstDesc, broken: false, writable, readable }, descs: c.descs.length };
};

interface Outcome {
  /** Used entries in order: chain index and length. */
  readonly used: readonly { readonly chain: number; readonly len: number }[];
  /** Per delivered frame: its chains (indexes) and used lengths. */
  readonly packets: readonly {
    readonly frame: number;
    readonly chains: readonly number[];
    readonly lens: readonly number[];
  }[];
  readonly consumed: number;
  readonly delivered: number;
  readonly chainErrors: number;
  readonly noBuffers: number;
}

/** One RX pass with MRG_RXBUF, as NET-RX-MRG, NET-HOSTILE and NET-RX-NO-ROOM say. */
const model = (caps: readonly (number | null)[], frames: readonly number[], maxFrame: number): Outcome => {
  const need = 12 + maxFrame;
  const used: { chain: number; len: number }[] = [];
  const packets: { frame: number; chains: number[]; lens: number[] }[] = [];
  let i = 0;
  let f = 0;
  let chainErrors = 0;
  let noBuffers = 0;
  for (;;) {
    let gathered: number[] = [];
    let cap = 0;
    while (cap < need && i < caps.length) {
      const c = caps[i]!;
      if (c === null) {
        for (const k of gathered) used.push({ chain: k, len: 0 });
        used.push({ chain: i, len: 0 });
        chainErrors++;
        gathered = [];
        cap = 0;
        i++;
        continue;
      }
      gathered.push(i++);
      cap += c;
    }
    if (cap < need) {
      i -= gathered.length;
      if (f < frames.length) noBuffers++;
      break;
    }
    if (f >= frames.length) {
      i -= gathered.length;
      break;
    }
    const r = spec.rxMergeable(
      frames[f]!,
      12,
      gathered.map((k) => caps[k]!),
      maxFrame,
    );
    if (r === "wait" || r.taken !== gathered.length) throw new Error("model and spec disagree");
    packets.push({ frame: f, chains: gathered.slice(0, r.used.length), lens: [...r.used] });
    r.used.forEach((len, n) => used.push({ chain: gathered[n]!, len }));
    i -= gathered.length - r.used.length;
    f++;
  }
  return { used, packets, consumed: i, delivered: f, chainErrors, noBuffers };
};

describe("virtio-net merged RX over a whole pass", () => {
  property(
    "rxMergeablePassMatchesTheModel",
    ["NET-RX-MRG", "NET-RX-HDR", "NET-HOSTILE", "NET-RX-NO-ROOM", "NET-RX-WRITABLE-ONLY", "NET-RX-ORDER"],
    fc.property(
      fc.array(chainArb, { minLength: 0, maxLength: 10 }),
      fc.array(fc.integer({ min: 1, max: 120 }), { minLength: 0, maxLength: 4 }),
      fc.integer({ min: 68, max: 100 }),
      (chains, frameLens, mtu) => {
        const backend = new CapturingBackend();
        const dev = new NetDevice({ mtu, mrgRxbuf: true }, backend);
        const g = NetGuest.create(dev, { queueSize: QSIZE, bufferSize: SLOT });
        const maxFrame = spec.maxFrameLength({ mtu });
        const frames = frameLens.map((n, k) =>
          Uint8Array.from({ length: Math.min(n, maxFrame) }, (_, i) => (i * 31 + k * 7 + 1) & 0xff),
        );
        for (const f of frames) backend.inject(f);
        const posted: Posted[] = [];
        let desc = 0;
        chains.forEach((c, k) => {
          const r = post(g, k, c, desc);
          posted.push(r.posted);
          desc += r.descs;
        });
        g.rxDriver.publish();
        const caps = posted.map((p) => (p.broken ? null : p.writable.reduce((a, d) => a + d.len, 0)));
        const want = model(
          caps,
          frames.map((f) => f.length),
          maxFrame,
        );
        expect(dev.processRxNow()).toBe(want.used.length);
        expect(g.rxDriver.reapUsed()).toEqual(
          want.used.map((u) => ({ id: posted[u.chain]!.head, len: u.len })),
        );
        expect(dev.queues[RX_QUEUE].nextAvail).toBe(want.consumed);
        expect(backend.pending).toBe(frames.length - want.delivered);
        expect(dev.stats.rxChainErrors).toBe(want.chainErrors);
        expect(dev.stats.rxFrames).toBe(want.delivered);
        expect(dev.stats.rxNoBuffers).toBe(want.noBuffers);
        expect(g.interrupts[RX_QUEUE]).toBe(want.used.length > 0 ? 1 : 0);
        for (const p of want.packets) {
          const frame = frames[p.frame]!;
          const wire = new Uint8Array(12 + frame.length);
          wire.set(spec.rxHeader(12, p.chains.length), 0);
          wire.set(frame, 12);
          let at = 0;
          p.chains.forEach((k, n) => {
            let left = p.lens[n]!;
            for (const d of posted[k]!.writable) {
              const m = Math.min(d.len, left);
              expect(g.memory.slice(d.addr, m)).toEqual(wire.subarray(at, at + m));
              at += m;
              left -= m;
            }
            expect(left).toBe(0);
          });
          expect(at).toBe(wire.length);
        }
        for (const p of posted) {
          for (const d of p.readable)
            expect(g.memory.slice(d.addr, d.len)).toEqual(new Uint8Array(d.len).fill(0xcc));
        }
      },
    ),
    { numRuns: 300 },
  );
});
