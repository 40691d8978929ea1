/**
 * virtio-net properties: the header codec round-trips; config space and feature
 * negotiation equal spec/net.ts for any configuration; for any TX chain the backend gets
 * exactly the readable bytes minus the header or a counted drop; for any RX chains the used
 * length is min(header + frame, writable capacity), nothing is written outside the
 * writable descriptors, frames arrive in order; intercepted frames never reach the
 * backend; hostile chains never throw and the device keeps serving.
 */
import fc from "fast-check";
import { describe, expect } from "vitest";
import { readBytes } from "../spec/memory.ts";
import * as spec from "../spec/net.ts";
import { walkChain } from "../spec/queue.ts";
import { CapturingBackend } from "../impl/net/backend.ts";
import { NetConfigSpace } from "../impl/net/config.ts";
import { NetDevice, RX_QUEUE } from "../impl/net/device.ts";
import { checkAck, offeredFeatures } from "../impl/net/features.ts";
import { NetGuest } from "../impl/net/guest.ts";
import { decodeNetHeader, encodeNetHeader } from "../impl/net/header.ts";
import { MacInterceptor } from "../impl/net/interceptor.ts";
import { property } from "./harness.ts";
import { VIRTIO_NET_F } from "../wire/features.ts";
import { NET_MTU_MAX, NET_MTU_MIN } from "../wire/net.ts";

const QSIZE = 16;
const SLOT = 512;

// ---------------------------------------------------------------------------------------
// Arbitraries

const u16 = fc.integer({ min: 0, max: 0xffff });
const u8 = fc.integer({ min: 0, max: 0xff });
const headerArb = fc.record({
  flags: u8,
  gsoType: u8,
  hdrLen: u16,
  gsoSize: u16,
  csumStart: u16,
  csumOffset: u16,
  numBuffers: u16,
});

const configArb: fc.Arbitrary<spec.NetConfig> = fc.record(
  {
    mac: fc.array(u8, { minLength: 6, maxLength: 6 }),
    mtu: fc.integer({ min: NET_MTU_MIN, max: NET_MTU_MAX }),
    status: fc.boolean(),
    csum: fc.boolean(),
    mrgRxbuf: fc.boolean(),
    eventIdx: fc.boolean(),
  },
  { requiredKeys: [] },
);

/** Feature sets: any subset of virtio-net's own bits (so dependencies are hit), or arbitrary bits. */
const featureBitsArb = fc
  .oneof(
    fc.subarray(Object.values(VIRTIO_NET_F) as number[]),
    fc.array(fc.integer({ min: 0, max: 63 }), { maxLength: 12 }),
  )
  .map((bits) => bits.reduce((acc, b) => acc | (1n << BigInt(b)), 0n));

/** The features a well-behaved driver might ack: any subset of the offered ones. */
const ackSubset = (offered: bigint, mask: bigint): bigint => offered & mask;

/** Fills the guest buffer area with bytes derived from `seed` so frames have content. */
const fillBuffers = (g: NetGuest, seed: number): void => {
  const start = g.txSlotAddr(0);
  const area = g.memory.slice(start, 2 * QSIZE * SLOT, true)!;
  for (let i = 0; i < area.length; i++) area[i] = (i * 131 + seed * 7 + (i >>> 8)) & 0xff;
};

/** A descriptor a driver (well-behaved or not) might put in a chain, relative to the buffer area. */
interface DescPick {
  readonly where: "inside" | "outside" | "edge";
  readonly at: number;
  readonly len: number;
  readonly write: boolean;
}
const descPickArb: fc.Arbitrary<DescPick> = fc.record({
  where: fc.constantFrom<DescPick["where"]>("inside", "inside", "inside", "inside", "outside", "edge"),
  at: fc.nat({ max: 2 * QSIZE * SLOT }),
  len: fc.oneof(fc.nat({ max: 16 }), fc.nat({ max: 400 })),
  write: fc.boolean(),
});

/** Guest address and length for a pick; `edge` straddles the end of memory. */
const place = (g: NetGuest, p: DescPick): { addr: number; len: number; write: boolean } => {
  const memEnd = g.memory.regions[0]!.end;
  if (p.where === "outside") return { addr: memEnd + p.at, len: p.len, write: p.write };
  if (p.where === "edge") return { addr: memEnd - (p.at % 32), len: p.len + 1, write: p.write };
  const base = g.txSlotAddr(0);
  const room = 2 * QSIZE * SLOT;
  const at = p.at % room;
  return { addr: base + at, len: Math.min(p.len, room - at), write: p.write };
};

const newDevice = (
  config: spec.NetConfig,
  backend = new CapturingBackend(),
  interceptor?: MacInterceptor,
): { dev: NetDevice; backend: CapturingBackend } => ({
  dev: new NetDevice(config, backend, interceptor),
  backend,
});

// ---------------------------------------------------------------------------------------

describe("virtio-net header, config space, features", () => {
  property(
    "netHeaderRoundTrip",
    ["NET-HDR-LAYOUT", "NET-HDR-LEN"],
    fc.property(headerArb, fc.constantFrom<10 | 12>(10, 12), (h, len) => {
      const b = new Uint8Array(len);
      expect(encodeNetHeader(h, len, b)).toBe(true);
      expect(b).toEqual(spec.encodeHeader(h, len));
      expect(decodeNetHeader(b, len)).toEqual(len === 12 ? h : { ...h, numBuffers: 0 });
      expect(decodeNetHeader(b, len)).toEqual(spec.decodeHeader(b, len));
    }),
    { numRuns: 300 },
  );

  property(
    "configReadsEqualSpecLayout",
    ["NET-CFG-LAYOUT", "NET-CFG-PAST-END", "NET-CFG-STATUS", "NET-CFG-WRITE", "NET-FEAT-OFFER"],
    fc.property(
      configArb,
      fc.boolean(),
      fc.integer({ min: -4, max: 40 }),
      fc.nat({ max: 32 }),
      fc.uint8Array({ maxLength: 16 }),
      (c, linkUp, offset, len, junk) => {
        const cs = new NetConfigSpace(c, linkUp);
        cs.write(offset, junk);
        const got = new Uint8Array(len).fill(0xa5);
        cs.read(offset, got);
        expect(got).toEqual(spec.readConfig(c, linkUp, offset, len));
        expect(offeredFeatures(c)).toBe(spec.offeredFeatures(c));
      },
    ),
    { numRuns: 300 },
  );

  property(
    "featureAckEqualsSpec",
    ["NET-FEAT-ACK-SUBSET", "NET-FEAT-DEPS", "NET-FEAT-RECORD", "NET-HDR-LEN"],
    fc.property(configArb, featureBitsArb, featureBitsArb, fc.boolean(), (c, extraOffered, acked, subset) => {
      // Any offered set (to reach every dependency), and a device's own offer.
      const offered = spec.offeredFeatures(c) | extraOffered;
      const ack = subset ? ackSubset(offered, acked | extraOffered) : acked;
      expect(checkAck(offered, ack)).toEqual(spec.validateAck(offered, ack));
      const { dev } = newDevice(c);
      const before = dev.ackedFeatures;
      const r = dev.ackFeatures(ack);
      expect(r).toEqual(spec.validateAck(dev.offeredFeatures, ack));
      expect(dev.ackedFeatures).toBe(r.ok ? ack : before);
      if (r.ok) expect(dev.headerLength).toBe(spec.headerLength(ack));
    }),
    { numRuns: 300 },
  );
});

describe("virtio-net TX", () => {
  property(
    "txBackendGetsReadableBytesMinusHeaderOrCountedDrop",
    [
      "NET-TX-GATHER",
      "NET-TX-HDR-STRIP",
      "NET-TX-SHORT",
      "NET-TX-MAX",
      "NET-TX-CHAIN-ERROR",
      "NET-TX-USED-LEN",
      "NET-NOTIFY",
    ],
    fc.property(
      fc.array(fc.array(descPickArb, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 6 }),
      fc.boolean(),
      fc.integer({ min: 68, max: 600 }),
      fc.nat(),
      fc.boolean(),
      (chains, legacy, mtu, seed, indirect) => {
        const { dev, backend } = newDevice({ mtu });
        const g = NetGuest.create(dev, {
          queueSize: QSIZE,
          bufferSize: SLOT,
          features: legacy ? 0n : dev.offeredFeatures,
        });
        fillBuffers(g, seed);
        const hdrLen = dev.headerLength;
        const expected: (Uint8Array | string)[] = [];
        const heads: number[] = [];
        // Indirect tables go past the buffer area, where no picked descriptor lies.
        let tableAt = g.rxSlotAddr(0) + QSIZE * SLOT;
        for (const picks of chains) {
          const bufs = picks.map((p) => place(g, p));
          const descs = bufs.map((b) => ({ write: b.write, bytes: g.memory.slice(b.addr, b.len)?.slice() }));
          const useIndirect = indirect && bufs.length > 1;
          const head = g.txDriver.addChain(bufs, useIndirect ? { indirectTable: tableAt } : {});
          if (head === undefined) break; // the descriptor table is full
          tableAt += 16 * bufs.length;
          heads.push(head);
          const r = spec.txFrame(descs, null, hdrLen, spec.maxFrameLength({ mtu }));
          expected.push(r.ok ? r.value : r.error._tag);
        }
        expect(dev.processTxNow()).toBe(heads.length);
        const frames = expected.filter((e): e is Uint8Array => typeof e !== "string");
        expect(backend.sent).toEqual(frames);
        const tally = (tag: string): number => expected.filter((e) => e === tag).length;
        expect(dev.stats.txTooShort).toBe(tally("TxFrameTooShort"));
        expect(dev.stats.txTooLong).toBe(tally("TxFrameTooLong"));
        expect(dev.stats.txChainErrors).toBe(tally("TxChainError"));
        expect(g.reapTx()).toEqual(heads.map((id) => ({ id, len: 0 })));
        expect(g.interrupts[1]).toBe(1);
      },
    ),
    { numRuns: 200 },
  );

  property(
    "interceptedFramesNeverReachTheBackend",
    ["NET-TX-INTERCEPT", "NET-INTERCEPT-MAC"],
    fc.property(
      fc.array(fc.record({ mmds: fc.boolean(), body: fc.uint8Array({ minLength: 0, maxLength: 100 }) }), {
        maxLength: 12,
      }),
      (frames) => {
        const mmds = [0x06, 0x01, 0x23, 0x45, 0x67, 0x01];
        const other = [0x06, 0x01, 0x23, 0x45, 0x67, 0x02];
        const interceptor = new MacInterceptor({ mac: mmds });
        const { dev, backend } = newDevice({ mtu: 1500 }, new CapturingBackend(), interceptor);
        const g = NetGuest.create(dev, { queueSize: QSIZE, bufferSize: SLOT });
        const built = frames.map((f) =>
          Uint8Array.from([...(f.mmds ? mmds : other), 2, 0, 0, 0, 0, 9, 0x08, 0, ...f.body]),
        );
        for (const f of built) g.send(f);
        dev.processTxNow();
        expect(interceptor.taken).toEqual(built.filter((_, i) => frames[i]!.mmds));
        expect(backend.sent).toEqual(built.filter((_, i) => !frames[i]!.mmds));
      },
    ),
    { numRuns: 150 },
  );
});

describe("virtio-net RX", () => {
  /** An RX chain: descriptor lengths and directions (readable ones must be skipped). */
  const rxChainArb = fc.array(
    fc.record({ len: fc.oneof(fc.nat({ max: 14 }), fc.nat({ max: 200 })), write: fc.boolean() }),
    { minLength: 1, maxLength: 4 },
  );

  property(
    "rxUsedLengthIsMinOfPacketAndWritableCapacity",
    ["NET-RX-USED-LEN", "NET-RX-WRITABLE-ONLY", "NET-RX-HDR", "NET-RX-ORDER", "NET-RX-NO-ROOM", "NET-NOTIFY"],
    fc.property(
      fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 8 }),
      fc.array(rxChainArb, { maxLength: 8 }),
      fc.boolean(),
      (frames, chains, legacy) => {
        const { dev, backend } = newDevice({ mtu: 1500 });
        const g = NetGuest.create(dev, {
          queueSize: QSIZE,
          bufferSize: SLOT,
          features: legacy ? 0n : dev.offeredFeatures,
        });
        const hdrLen = dev.headerLength;
        for (const f of frames) backend.inject(f);
        // Every chain gets its own slot; readable descriptors are pre-filled with a marker.
        const writable: { addr: number; len: number }[] = [];
        const posted: { head: number; descs: { addr: number; len: number; write: boolean }[] }[] = [];
        chains.forEach((c, k) => {
          let at = g.rxSlotAddr(k);
          const end = at + SLOT; // each chain stays in its own slot
          const descs = c.map((d) => {
            const out = { addr: at, len: Math.min(d.len, end - at), write: d.write };
            at += out.len;
            return out;
          });
          const head = g.rxDriver.addChain(descs);
          if (head === undefined) return; // the descriptor table is full
          for (const d of descs) {
            if (d.write) writable.push(d);
            else g.memory.slice(d.addr, d.len, true)!.fill(0xcc);
          }
          posted.push({ head, descs });
        });
        const ring = g.rxDriver.layout;
        const writes: { addr: number; len: number }[] = [];
        g.memory.recorder = (addr, len, write) => {
          if (write) writes.push({ addr, len });
        };
        dev.processRxNow();
        g.memory.recorder = null;
        // NET-RX-WRITABLE-ONLY: every write the device asked for lies in a writable
        // descriptor or in the used ring.
        const usedEnd = ring.usedRing + 6 + 8 * QSIZE;
        for (const w of writes) {
          const inDesc = writable.some((d) => w.addr >= d.addr && w.addr + w.len <= d.addr + d.len);
          const inUsed = w.addr >= ring.usedRing && w.addr + w.len <= usedEnd;
          expect(inDesc || inUsed).toBe(true);
        }
        const used = g.rxDriver.reapUsed();
        const writableLens = posted.map((p) => p.descs.filter((d) => d.write).map((d) => d.len));
        const assigned = spec.rxAssign(frames.length, writableLens);
        const n = assigned.length;
        expect(used.map((u) => u.id)).toEqual(posted.slice(0, n).map((p) => p.head));
        for (let k = 0; k < n; k++) {
          const p = posted[k]!;
          const lens = writableLens[k]!;
          const f = assigned[k]!;
          // NET-RX-NO-ROOM: a chain with no writable byte is used empty and takes no frame.
          const want =
            f < 0
              ? { used: 0, perDescriptor: lens.map(() => new Uint8Array(0)) }
              : spec.rxPlace(frames[f]!, hdrLen, lens);
          expect(used[k]!.len).toBe(want.used);
          p.descs
            .filter((d) => d.write)
            .forEach((d, i) => {
              const exp = want.perDescriptor[i]!;
              expect(g.memory.slice(d.addr, exp.length)).toEqual(exp);
            });
          for (const d of p.descs.filter((x) => !x.write)) {
            expect(g.memory.slice(d.addr, d.len)).toEqual(new Uint8Array(d.len).fill(0xcc));
          }
        }
        expect(backend.pending).toBe(frames.length - assigned.filter((f) => f >= 0).length);
        expect(g.interrupts[RX_QUEUE]).toBe(n > 0 ? 1 : 0);
      },
    ),
    { numRuns: 200 },
  );

  property(
    "rxMergeableSpreadsAFrameAsTheSpecSays",
    ["NET-RX-MRG", "NET-RX-HDR"],
    fc.property(
      fc.array(fc.integer({ min: 1, max: 120 }), { minLength: 1, maxLength: QSIZE }),
      fc.integer({ min: 1, max: 200 }),
      fc.integer({ min: 68, max: 150 }),
      fc.option(fc.nat(), { nil: undefined }),
      (caps, frameLen, mtu, exactCut) => {
        const { dev, backend } = newDevice({ mtu, mrgRxbuf: true });
        const g = NetGuest.create(dev, { queueSize: QSIZE, bufferSize: SLOT });
        const maxFrame = spec.maxFrameLength({ mtu });
        // Sometimes a frame that ends exactly at a chain boundary.
        const boundary =
          exactCut === undefined
            ? 0
            : caps.slice(0, 1 + (exactCut % caps.length)).reduce((a, b) => a + b, 0) - 12;
        const length = boundary >= 1 ? boundary : frameLen;
        const frame = Uint8Array.from({ length: Math.min(length, maxFrame) }, (_, i) => (i * 7) & 0xff);
        backend.inject(frame);
        const heads = caps.map((c, k) =>
          g.rxDriver.addChain([{ addr: g.rxSlotAddr(k), len: c, write: true }])!,
        );
        dev.processRxNow();
        const want = spec.rxMergeable(frame.length, 12, caps, maxFrame);
        const used = g.rxDriver.reapUsed();
        if (want === "wait") {
          expect(used).toEqual([]);
          expect(backend.pending).toBe(1);
          return;
        }
        expect(used).toEqual(want.used.map((len, k) => ({ id: heads[k]!, len })));
        const wire = new Uint8Array(12 + frame.length);
        wire.set(spec.rxHeader(12, want.used.length), 0);
        wire.set(frame, 12);
        let at = 0;
        want.used.forEach((len, k) => {
          expect(g.memory.slice(g.rxSlotAddr(k), len)).toEqual(wire.subarray(at, at + len));
          at += len;
        });
        // Chains taken but not used went back: the driver's avail idx minus the device's next_avail.
        expect(dev.queues[RX_QUEUE].nextAvail).toBe(want.used.length);
      },
    ),
    { numRuns: 200 },
  );
});

describe("virtio-net under a hostile guest", () => {
  /** A raw descriptor: any address, length, flags and next. */
  const rawDescArb = fc.record({
    pick: descPickArb,
    flags: fc.integer({ min: 0, max: 7 }),
    next: fc.nat({ max: QSIZE + 3 }),
  });

  property(
    "hostileChainsNeverThrowAndTheDeviceKeepsServing",
    ["NET-HOSTILE", "NET-TX-CHAIN-ERROR", "NET-TX-GATHER", "NET-TX-SHORT", "NET-TX-MAX", "NET-RX-MRG"],
    fc.property(
      fc.array(rawDescArb, { minLength: QSIZE, maxLength: QSIZE }),
      fc.array(rawDescArb, { minLength: QSIZE, maxLength: QSIZE }),
      fc.array(fc.nat({ max: QSIZE - 1 }), { minLength: 1, maxLength: QSIZE - 2 }),
      fc.array(fc.nat({ max: QSIZE - 1 }), { minLength: 0, maxLength: QSIZE - 2 }),
      fc.boolean(),
      (txTable, rxTable, txHeads, rxHeads, mrg) => {
        const lb = new CapturingBackend();
        const { dev } = newDevice({ mtu: 200, mrgRxbuf: mrg }, lb);
        const g = NetGuest.create(dev, { queueSize: QSIZE, bufferSize: SLOT });
        for (let i = 0; i < 6; i++) lb.inject(new Uint8Array(40 + i).fill(i));
        const writeTable = (
          drv: typeof g.txDriver,
          table: typeof txTable,
          heads: readonly number[],
        ): void => {
          const isHead = new Set(heads);
          table.forEach((d, i) => {
            const p = place(g, d.pick);
            // An indirect descriptor points at a table inside the buffer area.
            const addr = (d.flags & 4) !== 0 ? g.txSlotAddr(0) + (d.pick.at % (QSIZE * SLOT)) : p.addr;
            // Heads must pass CHAIN-CHECKED-NEW, or the queue (not the device) stops at them.
            const next = isHead.has(i) && (d.flags & 5) === 1 ? d.next % QSIZE : d.next;
            drv.writeDescriptor(i, { addr, len: p.len, flags: d.flags, next });
          });
          for (const h of heads) drv.pushAvail(h);
          drv.publish();
        };
        writeTable(g.txDriver, txTable, txHeads);
        writeTable(g.rxDriver, rxTable, rxHeads);
        // What spec/queue's walk and spec/net's txFrame say each hostile TX chain gives.
        const smem = { regions: [{ base: 0n, bytes: g.memory.regions[0]!.bytes.slice() }] };
        const expected = txHeads.map((h) => {
          const w = walkChain(smem, BigInt(g.txDriver.layout.descTable), QSIZE, h);
          const descs = w.descriptors.map((d) => {
            const b = readBytes(smem, d.addr, d.len);
            return { write: (d.flags & 2) !== 0, bytes: b.ok ? b.value : undefined };
          });
          return spec.txFrame(
            descs,
            w.end === null ? null : w.end._tag,
            12,
            spec.maxFrameLength({ mtu: 200 }),
          );
        });
        expect(() => {
          dev.processTxNow();
          dev.processRxNow();
        }).not.toThrow();
        expect(dev.stats.queueErrors).toBe(0);
        expect(g.txDriver.reapUsed()).toHaveLength(txHeads.length);
        // NET-TX-*: the backend got exactly the frames the model says, the rest were counted.
        expect(lb.sent).toEqual(expected.flatMap((r) => (r.ok ? [r.value] : [])));
        const drops = expected.filter((r) => !r.ok).length;
        expect(dev.stats.txTooShort + dev.stats.txTooLong + dev.stats.txChainErrors).toBe(drops);
        // The device keeps serving: a well-formed frame goes through next. The hostile
        // descriptors' indices are reused by a fresh, honest chain.
        const good = Uint8Array.from([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0, 1, 2, 3]);
        const at = g.txSlotAddr(QSIZE - 1);
        g.memory.slice(at, 12, true)!.fill(0);
        g.memory.slice(at + 12, good.length, true)!.set(good);
        g.txDriver.writeDescriptor(QSIZE - 1, { addr: at, len: 12 + good.length, flags: 0, next: 0 });
        g.txDriver.pushAvail(QSIZE - 1);
        g.txDriver.publish();
        const sentBefore = lb.sent.length;
        expect(dev.processTxNow()).toBe(1);
        expect(lb.sent.length).toBe(sentBefore + 1);
        expect(lb.sent[lb.sent.length - 1]).toEqual(good);
        // RX keeps serving too: an honest buffer large enough for any frame takes one.
        lb.inject(good);
        const pendingBefore = lb.pending;
        g.rxDriver.writeDescriptor(QSIZE - 1, {
          addr: g.rxSlotAddr(QSIZE - 1),
          len: SLOT,
          flags: 2,
          next: 0,
        });
        g.rxDriver.pushAvail(QSIZE - 1);
        g.rxDriver.publish();
        expect(() => dev.processRxNow()).not.toThrow();
        expect(lb.pending).toBeLessThan(pendingBefore);
        expect(dev.stats.queueErrors).toBe(0);
      },
    ),
    { numRuns: 200 },
  );
});
