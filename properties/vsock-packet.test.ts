/**
 * virtio-vsock header and packet assembly: impl agrees with spec/vsock.ts, and assembly never
 * touches memory outside the chain's buffers.
 */
import fc from "fast-check";
import { describe, expect } from "vitest";
import { GuestMemory } from "../impl/memory/guest-memory.ts";
import { ListChain } from "../impl/vsock/chain.ts";
import { VsockHeaderView } from "../impl/vsock/header.ts";
import { VsockPacket } from "../impl/vsock/packet.ts";
import { createMemory } from "../spec/memory.ts";
import {
  assembleRx,
  assembleTx,
  decodeHeader,
  encodeHeader,
  MAX_PKT_BUF_SIZE,
  PROFILES,
  setFlag,
  type SpecPacket,
  type VsockHeader,
  type VsockProfileName,
} from "../spec/vsock.ts";
import type { Result } from "../spec/result.ts";
import { property } from "./harness.ts";
import { DescriptorChain } from "../impl/queue/descriptor-chain.ts";
import { SplitDriver } from "../impl/queue/split-driver.ts";
import { SplitQueue } from "../impl/queue/split-queue.ts";
import { walkChain } from "../spec/queue.ts";
import { HDROFF } from "../wire/vsock.ts";

const headerArb: fc.Arbitrary<VsockHeader> = fc.record({
  srcCid: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  dstCid: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  srcPort: fc.nat({ max: 0xffffffff }),
  dstPort: fc.nat({ max: 0xffffffff }),
  len: fc.nat({ max: 0xffffffff }),
  type: fc.nat({ max: 0xffff }),
  op: fc.nat({ max: 0xffff }),
  flags: fc.nat({ max: 0xffffffff }),
  bufAlloc: fc.nat({ max: 0xffffffff }),
  fwdCnt: fc.nat({ max: 0xffffffff }),
});

const viewHeader = (v: VsockHeaderView): VsockHeader => ({
  srcCid: v.srcCid(),
  dstCid: v.dstCid(),
  srcPort: v.srcPort(),
  dstPort: v.dstPort(),
  len: v.len(),
  type: v.type(),
  op: v.op(),
  flags: v.flags(),
  bufAlloc: v.bufAlloc(),
  fwdCnt: v.fwdCnt(),
});

describe("vsock header", () => {
  property(
    "header round-trips every field over its full range; impl accessors agree with the spec codec",
    ["VSOCK-HDR-LAYOUT", "VSOCK-HDR-ACCESSORS"],
    fc.property(headerArb, fc.nat({ max: 64 }), fc.nat({ max: 0xffffffff }), (h, at, flag) => {
      const bytes = encodeHeader(h);
      expect(decodeHeader(bytes)).toEqual(h);
      // Impl getters over the spec's bytes, at an arbitrary offset inside a larger buffer.
      const buf = new Uint8Array(at + 44 + 8).fill(0xa5);
      buf.set(bytes, at);
      const view = new VsockHeaderView(new DataView(buf.buffer), at);
      expect(viewHeader(view)).toEqual(h);
      // Impl setters on fresh bytes produce the spec's encoding.
      const out = VsockHeaderView.alloc()
        .setSrcCid(h.srcCid)
        .setDstCid(h.dstCid)
        .setSrcPort(h.srcPort)
        .setDstPort(h.dstPort)
        .setLen(h.len)
        .setType(h.type)
        .setOp(h.op)
        .setFlags(h.flags)
        .setBufAlloc(h.bufAlloc)
        .setFwdCnt(h.fwdCnt);
      expect(out.bytes()).toEqual(bytes);
      out.setFlag(flag);
      expect(viewHeader(out)).toEqual(setFlag(h, flag));
      // Nothing outside the 44-byte window changed.
      view.setFlag(flag);
      expect(buf.subarray(0, at).every((b) => b === 0xa5)).toBe(true);
      expect(buf.subarray(at + 44).every((b) => b === 0xa5)).toBe(true);
    }),
    { numRuns: 300 },
  );
});

// ---------------------------------------------------------------------------------------
// Packet assembly over arbitrary chains

const REGION_A = 0x1000;
const SIZE_A = 0x3000;
const REGION_B = 0x8000;
const SIZE_B = 0x12000; // large enough for a 64 KiB buffer

const addrArb: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: SIZE_A - 1 }).map((o) => BigInt(REGION_A + o)) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: SIZE_B - 1 }).map((o) => BigInt(REGION_B + o)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 64 }).map((o) => BigInt(REGION_A + SIZE_A - o)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x20000 }).map(BigInt) },
  { weight: 1, arbitrary: fc.bigInt({ min: 1n << 53n, max: (1n << 64n) - 1n }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 64 }).map((o) => (1n << 64n) - 1n - BigInt(o)) },
);

const lenArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(0, 1, 43, 44, 45, 100, 4096) },
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 3000 }) },
  { weight: 1, arbitrary: fc.constantFrom(MAX_PKT_BUF_SIZE - 1, MAX_PKT_BUF_SIZE, MAX_PKT_BUF_SIZE + 1) },
  { weight: 1, arbitrary: fc.nat({ max: 0xffffffff }) },
);

const descArb = fc.record({ addr: addrArb, len: lenArb, flags: fc.nat({ max: 7 }) });

const chainCase = fc.record({
  descs: fc.array(descArb, { minLength: 0, maxLength: 6 }),
  /** The header's len field, written at the head's address when that is in memory. */
  pktLen: lenArb,
  seed: fc.nat(),
  profile: fc.constantFrom<VsockProfileName>("cloud-hypervisor", "rust-vmm", "virtio"),
  // Most chains are well-formed: NEXT on every descriptor but the last, head readable (TX).
  shape: fc.constantFrom("wellformed-tx", "wellformed-rx", "raw"),
});

const fill = (bytes: Uint8Array, seed: number): void => {
  let x = seed | 1;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
};

type Projected = Result<SpecPacket, unknown>;

const project = (pkt: VsockPacket, error: unknown, tx: boolean): Projected => {
  if (error !== null) return { ok: false, error };
  const data = [];
  for (let i = 0; i < pkt.data.segmentCount; i++)
    data.push({ addr: BigInt(pkt.data.segmentAddr(i)), len: pkt.data.segment(i)!.length });
  return {
    ok: true,
    value: { hdrAddr: BigInt(pkt.hdrAddr), header: tx ? decodeHeader(pkt.header.bytes()) : null, data },
  };
};

describe("vsock packet assembly", () => {
  property(
    "TX and RX assembly: impl and spec give the same packet or the same error, touching only the chain's buffers",
    [
      "VSOCK-TX-ORDER",
      "VSOCK-TX-EMPTY",
      "VSOCK-RX-ORDER",
      "VSOCK-RX-DATA-WRITABLE",
      "VSOCK-LAYOUT-SINGLE",
      "VSOCK-LAYOUT-SCATTER",
      "VSOCK-PROFILE",
      "VSOCK-BOUNDS",
    ],
    fc.property(chainCase, ({ descs: raw, pktLen, seed, profile, shape }) => {
      const descs = raw.map((d, i) => {
        if (shape === "raw") return d;
        const last = i === raw.length - 1;
        const write = shape === "wellformed-rx" ? 2 : i === 0 ? 0 : d.flags & 2;
        return { ...d, flags: (last ? 0 : 1) | write };
      });
      const a = new Uint8Array(SIZE_A);
      const b = new Uint8Array(SIZE_B);
      fill(a, seed);
      fill(b, seed + 1);
      const mem = GuestMemory.of([
        { base: REGION_A, bytes: a },
        { base: REGION_B, bytes: b },
      ]);
      const head = descs[0];
      if (head !== undefined && head.addr < 1n << 53n) mem.writeU32(Number(head.addr) + HDROFF.len, pktLen);
      const specMem = createMemory([
        { base: BigInt(REGION_A), bytes: a },
        { base: BigInt(REGION_B), bytes: b },
      ]);
      if (!specMem.ok) throw new Error("layout");
      const before = [a.slice(), b.slice()];
      const list = descs.map((d) => ({ addr: Number(d.addr), len: d.len, flags: d.flags }));
      const accesses: [number, number][] = [];
      mem.recorder = (addr, len) => accesses.push([addr, len]);
      const p = PROFILES[profile];
      const pkt = new VsockPacket();
      const txImpl = project(pkt, pkt.assembleTx(new ListChain(mem, list), p), true);
      expect(txImpl).toEqual(assembleTx(specMem.value, descs, p));
      const rxImpl = project(pkt, pkt.assembleRx(new ListChain(mem, list), p), false);
      expect(rxImpl).toEqual(assembleRx(specMem.value, descs, p));
      mem.recorder = null;
      // VSOCK-BOUNDS: every range looked up lies inside one of the chain's buffers.
      for (const [addr, len] of accesses) {
        const inside = list.some((d) => addr >= d.addr && addr + len <= d.addr + d.len);
        expect(inside, `access [${addr}, +${len}) outside the chain's buffers`).toBe(true);
      }
      // Assembly reads only.
      expect(Buffer.compare(a, before[0]!)).toBe(0);
      expect(Buffer.compare(b, before[1]!)).toBe(0);
    }),
    { numRuns: 1500 },
  );
});

// ---------------------------------------------------------------------------------------
// The same through a real split queue: impl/queue's DescriptorChain (indirect tables, ttl,
// out-of-range next) against spec/queue's walkChain.

const QSIZE = 8;
const MEM = 0x30000;
const RING = 0x100;
const TABLE = 0x2000; // an indirect table lives here when the head is INDIRECT
const BUFS = 0x4000;

const rawDescArb = fc.record({
  addr: fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: BUFS, max: MEM - 1 }) },
    fc.integer({ min: 0, max: MEM + 64 }),
    fc.constantFrom(2 ** 53, 2 ** 62),
  ),
  len: lenArb,
  flags: fc.oneof({ weight: 6, arbitrary: fc.nat({ max: 3 }) }, fc.nat({ max: 7 })),
  next: fc.oneof({ weight: 6, arbitrary: fc.nat({ max: QSIZE - 1 }) }, fc.nat({ max: 20 })),
});

const queueCase = fc.record({
  table: fc.array(rawDescArb, { minLength: QSIZE, maxLength: QSIZE }),
  indirect: fc.array(rawDescArb, { minLength: 1, maxLength: 6 }),
  /** Head is an INDIRECT descriptor pointing at the indirect table (len may be off). */
  viaIndirect: fc.boolean(),
  indirectLenDelta: fc.constantFrom(0, 0, 0, 1, -16),
  head: fc.nat({ max: QSIZE - 1 }),
  pktLen: lenArb,
  seed: fc.nat(),
  profile: fc.constantFrom<VsockProfileName>("cloud-hypervisor", "rust-vmm", "virtio"),
  rx: fc.boolean(),
});

describe("vsock packet assembly over a split queue", () => {
  property(
    "assembly from popped DescriptorChains equals the spec over walkChain, touching only the rings, tables and buffers",
    ["VSOCK-TX-ORDER", "VSOCK-RX-ORDER", "VSOCK-PROFILE", "VSOCK-BOUNDS", "VSOCK-LAYOUT-SCATTER"],
    fc.property(queueCase, (c) => {
      const bytes = new Uint8Array(MEM);
      fill(bytes, c.seed);
      const mem = GuestMemory.of([{ base: 0, bytes }]);
      const drv = SplitDriver.at(mem, QSIZE, RING);
      const descTable = drv.layout.descTable;
      c.table.forEach((d, i) => drv.writeDescriptor(i, d));
      c.indirect.forEach((d, i) => drv.writeDescriptor(i, d, TABLE));
      if (c.viaIndirect) {
        drv.writeDescriptor(c.head, {
          addr: TABLE,
          len: 16 * c.indirect.length + c.indirectLenDelta,
          flags: 4,
          next: 0,
        });
      }
      // The header's len field, where the first data descriptor points (when in memory).
      const first = c.viaIndirect ? c.indirect[0]! : c.table[c.head]!;
      if (first.addr + 44 <= MEM) mem.writeU32(first.addr + HDROFF.len, c.pktLen);
      drv.writeAvailRing(0, c.head);
      drv.setAvailIdx(1);
      const q = new SplitQueue(QSIZE);
      const l = drv.layout;
      q.configure({ size: QSIZE, ready: true, descTable, availRing: l.availRing, usedRing: l.usedRing });
      expect(q.initialize(mem).ok).toBe(true);
      const chain = new DescriptorChain(mem);
      if (!q.popInto(chain)) return; // a head the queue refuses never reaches the device
      const specMem = createMemory([{ base: 0n, bytes }]);
      if (!specMem.ok) throw new Error("layout");
      const walk = walkChain(specMem.value, BigInt(descTable), QSIZE, c.head);
      const p = PROFILES[c.profile];
      const pkt = new VsockPacket();
      const accesses: [number, number][] = [];
      mem.recorder = (addr, len) => accesses.push([addr, len]);
      const got = c.rx
        ? project(pkt, pkt.assembleRx(chain, p), false)
        : project(pkt, pkt.assembleTx(chain, p), true);
      mem.recorder = null;
      const want = c.rx
        ? assembleRx(specMem.value, walk.descriptors, p)
        : assembleTx(specMem.value, walk.descriptors, p);
      expect(got).toEqual(want);
      const allowed: [number, number][] = [
        [descTable, 16 * QSIZE],
        [TABLE, 16 * 4096],
        // Any indirect table the walk may enter.
        ...c.table.filter((d) => (d.flags & 4) !== 0).map((d): [number, number] => [d.addr, d.len]),
        ...walk.descriptors.map((d): [number, number] => [Number(d.addr), d.len]),
      ];
      for (const [addr, len] of accesses) {
        // A range not inside memory is only ever refused by locate, never accessed.
        if (!(addr >= 0 && addr + len <= MEM)) continue;
        const inside = allowed.some(([a, n]) => addr >= a && addr + len <= a + n);
        expect(inside, `access [${addr}, +${len}) outside the chain`).toBe(true);
      }
    }),
    { numRuns: 1500 },
  );
});
