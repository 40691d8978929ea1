/**
 * vsock over USB: framing, builder and filler properties (spec/usb-vsock.ts rules USB-*).
 */
import fc from "fast-check";
import { isDeepStrictEqual } from "node:util";
import { Effect } from "effect";
import { describe } from "vitest";
import { property } from "./harness.ts";
import {
  HEADER_SIZE,
  PACKET_TYPES,
  builderWrite,
  encodeHeader,
  encodePackets,
  parseTransfer,
  type Header,
  type Packet,
  type SpecBuilder,
} from "../spec/usb-vsock.ts";
import { UsbPacketBuilder, VsockPacketIterator, type PacketView } from "../impl/usb-vsock/packet.ts";
import { UsbPacketFiller } from "../impl/usb-vsock/filler.ts";
import type { Result } from "../spec/result.ts";

const u32 = fc.nat({ max: 0xffffffff });
const typeArb = fc.constantFrom(...PACKET_TYPES);

const headerArb = (payloadLen: fc.Arbitrary<number>): fc.Arbitrary<Header> =>
  fc.record({ type: typeArb, deviceCid: u32, hostCid: u32, devicePort: u32, hostPort: u32, payloadLen });

const packetArb = (maxPayload: number): fc.Arbitrary<Packet> =>
  fc
    .tuple(headerArb(fc.constant(0)), fc.uint8Array({ maxLength: maxPayload, size: "max" }))
    .map(([h, payload]) => ({ header: { ...h, payloadLen: payload.length }, payload }));

/** Comparable plain form of a parse result, impl or spec. */
const plainView = (p: PacketView) => ({
  header: {
    type: p.type,
    deviceCid: p.deviceCid,
    hostCid: p.hostCid,
    devicePort: p.devicePort,
    hostPort: p.hostPort,
    payloadLen: p.payloadLen,
  },
  payload: [...p.payload],
});
const plainPacket = (p: Packet) => ({ header: { ...p.header }, payload: [...p.payload] });

const implParse = (buf: Uint8Array, start = 0, end = buf.length) => {
  const it = new VsockPacketIterator().reset(buf, start, end);
  const out: Result<PacketView, unknown>[] = [];
  for (const r of it) out.push(r);
  return out;
};

const same = (a: unknown, b: unknown): boolean => isDeepStrictEqual(a, b);

describe("usb-vsock framing", () => {
  property(
    "header round-trips through the builder and the parser, byte-identical to the spec",
    ["USB-HDR-LAYOUT", "USB-HDR-TYPES"],
    fc.property(headerArb(fc.constant(0)), (h) => {
      const b = new UsbPacketBuilder(new Uint8Array(HEADER_SIZE));
      if (b.write(h.type, h) !== undefined) return false;
      const bytes = b.take()!;
      if (!same([...bytes], [...encodeHeader(h)])) return false;
      const parsed = implParse(bytes);
      return (
        parsed.length === 1 &&
        parsed[0]!.ok &&
        same(plainView(parsed[0]!.value), { header: { ...h }, payload: [] })
      );
    }),
    { numRuns: 300 },
  );

  property(
    "any list of packets, serialised back to back, parses to the same list",
    ["USB-PARSE-STOP", "USB-HDR-LAYOUT", "USB-BUILDER-TAKE"],
    fc.property(fc.array(packetArb(64), { maxLength: 20 }), (ps) => {
      const want = ps.map(plainPacket);
      const bytes = encodePackets(ps);
      // The builder writes exactly the spec's bytes.
      const b = new UsbPacketBuilder(new Uint8Array(bytes.length + 7));
      for (const p of ps) if (b.write(p.header.type, p.header, p.payload) !== undefined) return false;
      const built = b.take() ?? new Uint8Array(0);
      if (!same([...built], [...bytes])) return false;
      const got = implParse(bytes);
      return (
        got.every((r) => r.ok) &&
        same(
          got.map((r) => (r.ok ? plainView(r.value) : null)),
          want,
        )
      );
    }),
    { numRuns: 200 },
  );

  /** Valid packets, some bytes flipped or cut: reaches every error and the valid prefixes. */
  const transferArb = fc.oneof(
    fc.uint8Array({ maxLength: 80 }),
    fc
      .tuple(
        fc.array(packetArb(16), { maxLength: 5 }),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 3 }),
        fc.nat(),
      )
      .map(([ps, flips, cut]) => {
        const b = encodePackets(ps);
        for (const [at, v] of flips) if (b.length > 0) b[at % b.length] = v;
        return b.length === 0 ? b : b.slice(0, b.length - (cut % Math.min(b.length, 30)));
      }),
  );

  property(
    "any byte string parses to a prefix of packets then at most one error, never throws, never reads past the buffer",
    [
      "USB-PARSE-STOP",
      "USB-PARSE-BOUNDS",
      "USB-PARSE-SHORT",
      "USB-PARSE-TYPE",
      "USB-PARSE-MAGIC",
      "USB-PARSE-PAYLOAD-LEN",
    ],
    fc.property(
      transferArb,
      fc.uint8Array({ minLength: 1, maxLength: 64 }),
      fc.nat({ max: 16 }),
      (t, outside, pre) => {
        // The transfer sits inside a larger buffer whose other bytes are a valid packet
        // stream: reading past the end would change the result.
        const tail = encodePackets([
          {
            header: {
              type: 0x44,
              deviceCid: 1,
              hostCid: 1,
              devicePort: 1,
              hostPort: 1,
              payloadLen: outside.length,
            },
            payload: outside,
          },
        ]);
        const big = new Uint8Array(pre + t.length + tail.length);
        big.fill(0x66, 0, pre);
        big.set(t, pre);
        big.set(tail, pre + t.length);
        const got = implParse(big, pre, pre + t.length);
        const spec = parseTransfer(t);
        const errors = got.filter((r) => !r.ok).length;
        if (errors > 1 || (errors === 1 && got.at(-1)!.ok)) return false;
        // Offsets are relative to the transfer start in the spec; shift the impl's.
        const implPlain = got.map((r) =>
          r.ok
            ? plainView(r.value)
            : { ...(r.error as { offset: number }), offset: (r.error as { offset: number }).offset - pre },
        );
        const specPlain = [
          ...spec.packets.map(plainPacket),
          ...(spec.error === undefined ? [] : [spec.error]),
        ];
        // Every packet yielded must lie inside the transfer.
        const it = new VsockPacketIterator().reset(big, pre, pre + t.length);
        while (it.next())
          if (it.payloadOffset + it.payloadLen > pre + t.length || it.packetOffset < pre) return false;
        return same(implPlain, specPlain);
      },
    ),
    { numRuns: 1000 },
  );

  property(
    "the builder never exceeds its capacity and take returns exactly what was written",
    ["USB-BUILDER-TAKE", "USB-BUILD-TOO-BIG"],
    fc.property(
      fc.integer({ min: 0, max: 300 }),
      fc.array(
        fc.oneof(
          packetArb(120).map((p) => ({ take: false as const, p })),
          fc.constant({ take: true as const }),
        ),
        {
          maxLength: 30,
        },
      ),
      (capacity, ops) => {
        const b = new UsbPacketBuilder(new Uint8Array(capacity));
        let model: SpecBuilder = { capacity, written: new Uint8Array(0) };
        for (const op of ops) {
          if (op.take) {
            const got = b.take();
            const want = model.written;
            if (want.length === 0 ? got !== undefined : got === undefined || !same([...got], [...want]))
              return false;
            model = { capacity, written: new Uint8Array(0) };
          } else {
            const r = builderWrite(model, op.p);
            const e = b.write(op.p.header.type, op.p.header, op.p.payload);
            if (r.ok !== (e === undefined)) return false;
            if (!r.ok && !same(e, r.error)) return false;
            if (r.ok) model = r.value;
          }
          if (b.available() !== capacity - model.written.length || b.available() < 0) return false;
          if (b.written !== model.written.length || b.written > capacity) return false;
        }
        return true;
      },
    ),
    { numRuns: 300 },
  );
});

describe("usb-vsock filler", () => {
  interface WriterPlan {
    readonly packets: readonly { readonly payload: Uint8Array; readonly split: boolean }[];
  }
  const planArb = fc.record({
    transferSize: fc.integer({ min: HEADER_SIZE + 40, max: 300 }),
    writers: fc.array(
      fc.record({
        packets: fc.array(
          fc
            .record({ payload: fc.uint8Array({ maxLength: 40 }), split: fc.boolean() })
            .chain((p) =>
              p.split
                ? fc.uint8Array({ minLength: 1, maxLength: 400 }).map((payload) => ({ payload, split: true }))
                : fc.constant(p),
            ),
          { maxLength: 8 },
        ),
      }),
      { minLength: 1, maxLength: 5 },
    ),
  });

  property(
    "N concurrent writers and one reader: every packet once, each writer's in order, no transfer over its size",
    ["USB-FILL-ORDER", "USB-FILL-WAIT-ROOM", "USB-FILL-WAIT-DATA", "USB-FILL-SPLIT", "USB-LINK-MTU"],
    fc.asyncProperty(fc.scheduler(), planArb, async (s, plan) => {
      const filler = new UsbPacketFiller();
      const writers: readonly WriterPlan[] = plan.writers;
      // Writer w's packets carry devicePort = w and hostPort = its sequence number; split
      // data keeps one sequence number for all its pieces.
      const received: { seq: number; bytes: number[] }[][] = writers.map(() => []);
      const expectedBytes = writers.map((w) =>
        w.packets.reduce((n, p) => n + Math.max(1, p.payload.length), 0),
      );
      const receivedBytes = writers.map(() => 0);
      let overSize = 0;

      const writerTasks = writers.map(async (w, wi) => {
        for (let seq = 0; seq < w.packets.length; seq++) {
          const p = w.packets[seq]!;
          await s.schedule(Promise.resolve(), `w${wi}#${seq}`);
          const a = { deviceCid: 9, hostCid: 9, devicePort: wi, hostPort: seq };
          if (p.split) await Effect.runPromise(filler.writeDataAll(a, p.payload));
          // Empty payloads still make a packet: count it as one byte of progress below.
          else await Effect.runPromise(filler.writePacket(0x44, a, p.payload));
        }
      });
      const done = (): boolean => receivedBytes.every((n, i) => n >= expectedBytes[i]!);
      const reader = (async () => {
        let builder = new UsbPacketBuilder(new Uint8Array(plan.transferSize));
        while (!done()) {
          await s.schedule(Promise.resolve(), "reader");
          builder = await Effect.runPromise(filler.fill(builder));
          const bytes = builder.take()!;
          if (bytes.length > plan.transferSize) overSize++;
          for (const r of new VsockPacketIterator(bytes)) {
            if (!r.ok) throw new Error(`parse error ${r.error._tag}`);
            const wi = r.value.devicePort;
            const seq = r.value.hostPort;
            const list = received[wi]!;
            const last = list.at(-1);
            const split = writers[wi]!.packets[seq]!.split;
            if (split && last !== undefined && last.seq === seq) last.bytes.push(...r.value.payload);
            else list.push({ seq, bytes: [...r.value.payload] });
            receivedBytes[wi] = receivedBytes[wi]! + Math.max(1, r.value.payloadLen);
          }
        }
      })();
      await s.waitFor(Promise.all([...writerTasks, reader]));
      if (overSize > 0) return false;
      return writers.every((w, wi) =>
        same(
          received[wi],
          w.packets.map((p, seq) => ({ seq, bytes: [...p.payload] })),
        ),
      );
    }),
    // A run whose reader or writers are never woken fails on its own time limit, not the test's.
    { numRuns: 200, params: { timeout: 10_000 } },
  );
});
