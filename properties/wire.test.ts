/**
 * The wire vocabulary (wire/) against the model's own readings: where a rule is about the
 * layout, spec/ reads bytes itself, obviously right (spec/queue.ts `readDescriptor` and its
 * ring field addresses, spec/vsock.ts `HEADER_FIELDS`, spec/net.ts `encodeHeader` and
 * `configSpace`), and everything else reads them through wire/. These properties tie the two
 * together, so a wrong constant in wire/ fails here by name.
 */
import fc from "fast-check";
import { describe } from "vitest";
import { createMemory } from "../spec/memory.ts";
import * as N from "../spec/net.ts";
import * as S from "../spec/queue.ts";
import * as V from "../spec/vsock.ts";
import {
  NET_CONFIG,
  NET_CONFIG_SIZE,
  NET_HDR,
  NET_HDR_LEGACY_SIZE,
  NET_HDR_SIZE,
  NET_MAC_LEN,
  VIRTIO_NET_S_LINK_UP,
} from "../wire/net.ts";
import {
  AVAIL_FLAGS,
  AVAIL_IDX,
  DESC_SIZE,
  MAX_QUEUE_SIZE,
  USED_ELEM_ID,
  USED_ELEM_LEN,
  USED_FLAGS,
  USED_IDX,
  availEventOffset,
  availRingBytes,
  availSlotOffset,
  decodeDescriptor,
  descOffset,
  descTableBytes,
  encodeDescriptor,
  usedEventOffset,
  usedRingBytes,
  usedSlotOffset,
  vringNeedEvent,
} from "../wire/split.ts";
import { HDROFF, VSOCK_PKT_HDR_SIZE } from "../wire/vsock.ts";
import { property } from "./harness.ts";

const fail = (what: string): never => {
  throw new Error(what);
};

const queueArb = fc.record({
  size: fc.integer({ min: 0, max: 15 }).map((l) => 2 ** l),
  availRing: fc.nat(1 << 20).map((x) => 2 * x),
  usedRing: fc.nat(1 << 20).map((x) => 4 * x),
  slot: fc.nat(0xffff),
});

describe("wire vocabulary [CHAIN-DESC-LAYOUT VQ-LAYOUT VSOCK-HDR-LAYOUT NET-HDR-LAYOUT NET-CFG-LAYOUT]", () => {
  property(
    "descriptorCodecEqualsSpecReading",
    ["CHAIN-DESC-LAYOUT", "CHAIN-ADDR-U64"],
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.nat(64), (raw, index) => {
      // 16 arbitrary bytes as entry `index` of a table: the model's byte-by-byte reading and
      // the wire codec read the same fields, and encoding them gives the bytes back.
      const table = new Uint8Array(descOffset(index + 1));
      table.set(raw, descOffset(index));
      const mem = createMemory([{ base: 0n, bytes: table }]);
      if (!mem.ok) return fail("memory");
      const spec = S.readDescriptor(mem.value, 0n, index, false);
      if (!spec.ok) return fail("spec could not read the entry");
      const d = decodeDescriptor(table, descOffset(index));
      const want = spec.value;
      if (d.addr !== want.addr || d.len !== want.len || d.flags !== want.flags || d.next !== want.next)
        fail(`wire ${JSON.stringify({ ...d, addr: String(d.addr) })} != spec`);
      const back = encodeDescriptor(d);
      if (back.length !== DESC_SIZE || back.some((x, i) => x !== raw[i])) fail("encode(decode(b)) != b");
    }),
    { numRuns: 300 },
  );

  property(
    "descriptorBeyondMemoryIsAnError",
    ["CHAIN-DESC-LAYOUT", "MEM-ADDR-U64"],
    fc.property(
      fc.oneof(
        fc.integer({ min: 4, max: 0x7fffffff }),
        fc.integer({ min: 53, max: 1023 }).map((k) => 2 ** k),
        fc.integer({ min: -0x7fffffff, max: -1 }),
      ),
      (index) => {
        // Any integer index past a 4-entry table, huge ones included (16 * 2^1023 is no
        // number): a memory error (InvalidGuestAddress or GuestAddressOverflow), never a throw.
        const mem = createMemory([{ base: 0n, bytes: new Uint8Array(descOffset(4)) }]);
        if (!mem.ok) return fail("memory");
        const r = S.readDescriptor(mem.value, 0n, index, false);
        if (r.ok) fail(`entry ${index} read from a 4-entry table`);
      },
    ),
    { numRuns: 200 },
  );

  property(
    "ringOffsetsEqualSpecReading",
    ["VQ-LAYOUT"],
    fc.property(queueArb, ({ size, availRing, usedRing, slot }) => {
      const q = {
        ...S.newQueue(size)!,
        availRing: BigInt(availRing),
        usedRing: BigInt(usedRing),
      };
      const at = (base: number, off: number): bigint => BigInt(base + off);
      const pairs: [string, bigint, bigint][] = [
        ["avail.idx", at(availRing, AVAIL_IDX), S.availIdxAddr(q)],
        ["avail.ring[slot]", at(availRing, availSlotOffset(slot % size)), S.availSlotAddr(q, slot)],
        ["used_event", at(availRing, usedEventOffset(size)), S.usedEventAddr(q)],
        ["used.idx", at(usedRing, USED_IDX), S.usedIdxAddr(q)],
        [
          "used.ring[slot]",
          at(usedRing, usedSlotOffset(slot % size) + USED_ELEM_ID),
          S.usedSlotAddr(q, slot),
        ],
        ["avail_event", at(usedRing, availEventOffset(size)), S.availEventAddr(q)],
        ["avail.flags", at(availRing, AVAIL_FLAGS), q.availRing],
        ["used.flags", at(usedRing, USED_FLAGS), q.usedRing],
      ];
      for (const [what, wire, spec] of pairs) if (wire !== spec) fail(`${what}: wire ${wire}, spec ${spec}`);
      if (USED_ELEM_LEN !== 4) fail("used elem len not after the u32 id");
      if (BigInt(descTableBytes(size)) !== S.descTableBytes(size)) fail("desc table bytes");
      if (BigInt(availRingBytes(size)) !== S.availRingBytes(size)) fail("avail ring bytes");
      if (BigInt(usedRingBytes(size)) !== S.usedRingBytes(size)) fail("used ring bytes");
      if (S.newQueue(MAX_QUEUE_SIZE) === undefined || S.newQueue(2 * MAX_QUEUE_SIZE) !== undefined)
        fail("MAX_QUEUE_SIZE is not the model's largest size");
    }),
    { numRuns: 300 },
  );

  property(
    "vringNeedEventIsTheInterval",
    ["VQ-PREPARE-KICK"],
    fc.property(fc.nat(0xffff), fc.nat(0xffff), fc.nat(64), (event, newIdx, added) => {
      // Linux's formula says yes exactly when event lies in [newIdx - added, newIdx - 1] (u16).
      const old = (newIdx - added) & 0xffff;
      let inside = false;
      for (let k = 1; k <= added; k++) if (((newIdx - k) & 0xffff) === event) inside = true;
      if (vringNeedEvent(event, newIdx, old) !== inside) fail(`event ${event} new ${newIdx} old ${old}`);
    }),
    { numRuns: 500 },
  );

  property(
    "vsockHeaderOffsetsEqualSpecFields",
    ["VSOCK-HDR-LAYOUT"],
    fc.property(fc.constant(null), () => {
      let at = 0;
      for (const [field, width] of V.HEADER_FIELDS) {
        if (HDROFF[field] !== at) fail(`${field}: wire @${HDROFF[field]}, spec @${at}`);
        at += width;
      }
      if (at !== VSOCK_PKT_HDR_SIZE) fail(`header size: wire ${VSOCK_PKT_HDR_SIZE}, spec ${at}`);
      if (Object.keys(HDROFF).length !== V.HEADER_FIELDS.length) fail("field count");
    }),
    { numRuns: 1 },
  );

  property(
    "netHeaderOffsetsEqualSpecEncoding",
    ["NET-HDR-LAYOUT", "NET-HDR-LEN"],
    fc.property(fc.nat(0xff), fc.nat(0xffff), (u8, u16) => {
      // One field at a time set to a marker: the spec's encoding puts it at wire's offset.
      const zero: N.NetHeader = {
        flags: 0,
        gsoType: 0,
        hdrLen: 0,
        gsoSize: 0,
        csumStart: 0,
        csumOffset: 0,
        numBuffers: 0,
      };
      for (const field of Object.keys(NET_HDR) as (keyof typeof NET_HDR)[]) {
        const wide = field !== "flags" && field !== "gsoType";
        const v = wide ? u16 : u8;
        const b = N.encodeHeader({ ...zero, [field]: v }, NET_HDR_SIZE);
        const got = wide ? b[NET_HDR[field]]! | (b[NET_HDR[field] + 1]! << 8) : b[NET_HDR[field]]!;
        if (got !== v) fail(`${field}: not at wire offset ${NET_HDR[field]}`);
      }
      if (N.encodeHeader(zero, NET_HDR_LEGACY_SIZE).length !== NET_HDR.numBuffers) fail("legacy size");
    }),
    { numRuns: 100 },
  );

  property(
    "netConfigOffsetsEqualSpecLayout",
    ["NET-CFG-LAYOUT"],
    fc.property(
      fc.array(fc.nat(0xff), { minLength: 6, maxLength: 6 }),
      fc.integer({ min: 68, max: 0xffff }),
      (mac, mtu) => {
        const b = N.configSpace({ mac, mtu, status: true }, true);
        if (b.length !== NET_CONFIG_SIZE) fail(`config size: spec ${b.length}, wire ${NET_CONFIG_SIZE}`);
        for (let i = 0; i < NET_MAC_LEN; i++) if (b[NET_CONFIG.mac + i] !== mac[i]) fail("mac");
        const u16 = (o: number): number => b[o]! | (b[o + 1]! << 8);
        if (u16(NET_CONFIG.mtu) !== mtu) fail("mtu");
        if (u16(NET_CONFIG.status) !== VIRTIO_NET_S_LINK_UP) fail("status");
        if (u16(NET_CONFIG.maxVirtqueuePairs) !== 1) fail("max_virtqueue_pairs");
      },
    ),
    { numRuns: 100 },
  );
});
