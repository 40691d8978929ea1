import { Effect, Fiber } from "effect";
import { describe, expect, it } from "vitest";
import { UsbPacketFiller } from "./filler.ts";
import { HEADER_SIZE, PacketType, UsbPacketBuilder, VsockPacketIterator } from "./packet.ts";
import { splitPayload } from "../../spec/usb-vsock.ts";

const addr = { deviceCid: 1, hostCid: 2, devicePort: 3, hostPort: 4 };
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
/**
 * Runs a test's effect with a time limit of its own: a filler that never wakes a waiter (a
 * broken hasData, take or write) fails the test in seconds instead of leaving it waiting.
 */
const run = <A, E>(e: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(Effect.timeout(e, "10 seconds"));

/** Lets every runnable fiber run, then says whether `fiber` is still waiting. */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow;
});
const pending = <A, E>(f: Fiber.Fiber<A, E>) => Effect.map(settle, () => f.pollUnsafe() === undefined);

const numbered = (n: number) => ({
  address: { deviceCid: n, hostCid: n, devicePort: n, hostPort: n },
  payload: text(`packet #${n}!`),
});

describe("usb-vsock filler", () => {
  it("round trip: reader waits for data, writer fills, full transfer makes writers wait [USB-FILL-WAIT-DATA USB-FILL-WAIT-ROOM]", () =>
    run(
      Effect.gen(function* () {
        const payload = text("hello world!");
        const filler = new UsbPacketFiller();
        const filled = yield* Effect.forkChild(
          filler.fill(new UsbPacketBuilder(new Uint8Array(HEADER_SIZE + 12))),
        );
        expect(yield* pending(filled)).toBe(true);
        yield* filler.writePacket(PacketType.Data, addr, payload);
        const more = yield* Effect.forkChild(filler.waitForFillable(1));
        const builder = yield* Fiber.join(filled);
        expect(yield* pending(more)).toBe(true);
        yield* Fiber.interrupt(more);
        const got = [...new VsockPacketIterator(builder.take()!)];
        expect(got).toHaveLength(1);
        expect(got[0]).toMatchObject({ ok: true, value: { type: PacketType.Data, ...addr, payload } });
      }),
    ));

  it("1024 numbered packets through a 256-byte transfer arrive once and in order [USB-FILL-ORDER USB-FILL-WAIT-ROOM]", () =>
    run(
      Effect.gen(function* () {
        const filler = new UsbPacketFiller();
        const sender = yield* Effect.forkChild(
          Effect.forEach(
            Array.from({ length: 1024 }, (_, i) => i),
            (i) => {
              const p = numbered(i);
              return filler.writePacket(PacketType.Data, p.address, p.payload);
            },
            { discard: true },
          ),
        );
        let builder = new UsbPacketBuilder(new Uint8Array(256));
        let next = 0;
        let transfers = 0;
        while (next < 1024) {
          builder = yield* filler.fill(builder);
          const bytes = builder.take()!;
          expect(bytes.length).toBeLessThanOrEqual(256);
          transfers++;
          for (const r of new VsockPacketIterator(bytes)) {
            if (!r.ok) throw new Error(`parse error ${r.error._tag}`);
            const want = numbered(next++);
            expect(r.value).toMatchObject({ ...want.address, payload: want.payload });
          }
        }
        yield* Fiber.join(sender);
        expect(next).toBe(1024);
        // Each transfer carries at least one packet; how many share one depends on when the
        // reader's fiber runs, which the reference leaves open too.
        expect(transfers).toBeGreaterThan(0);
        expect(transfers).toBeLessThanOrEqual(1024);
      }),
    ));

  it("fillable/filled waits, ten times over [USB-FILL-WAIT-ROOM USB-FILL-WAIT-DATA]", () =>
    run(
      Effect.gen(function* () {
        const filler = new UsbPacketFiller();
        for (let round = 0; round < 10; round++) {
          const fillable = yield* Effect.forkChild(filler.waitForFillable(1));
          expect(yield* pending(fillable)).toBe(true);
          const filled = yield* Effect.forkChild(filler.fill(new UsbPacketBuilder(new Uint8Array(1024))));
          expect(yield* pending(filled)).toBe(true);
          const b = yield* Fiber.join(fillable);
          expect(b.write(PacketType.Data, addr, new Uint8Array(99).fill(0x61))).toBeUndefined();
          const b2 = yield* filler.waitForFillable(1);
          expect(b2.write(PacketType.Data, addr, new Uint8Array(99).fill(0x61))).toBeUndefined();
          const tooMuch = yield* Effect.forkChild(filler.waitForFillable(1024 - 2 * (HEADER_SIZE + 99) + 1));
          expect(yield* pending(tooMuch)).toBe(true);
          yield* Fiber.interrupt(tooMuch);
          // The writes above bypassed writePacket's wake-up; a zero-room wait wakes nobody,
          // so wake the reader the way writers do: through the filler.
          yield* filler.writePacket(PacketType.Reset, addr);
          const out = yield* Fiber.join(filled);
          const packets = [...new VsockPacketIterator(out.take()!)];
          expect(packets).toHaveLength(3);
          expect(packets.every((p) => p.ok)).toBe(true);
        }
      }),
    ));

  it("a second concurrent fill is AlreadyFilling, and a withdrawn fill frees the slot [USB-FILL-ONE]", () =>
    run(
      Effect.gen(function* () {
        const filler = new UsbPacketFiller();
        const first = yield* Effect.forkChild(filler.fill(new UsbPacketBuilder(new Uint8Array(64))));
        yield* settle;
        const second = yield* Effect.result(filler.fill(new UsbPacketBuilder(new Uint8Array(64))));
        expect(second).toMatchObject({ _tag: "Failure", failure: { _tag: "AlreadyFilling" } });
        yield* Fiber.interrupt(first);
        expect(filler.filling).toBe(false);
        const third = yield* Effect.forkChild(filler.fill(new UsbPacketBuilder(new Uint8Array(64))));
        yield* filler.writePacket(PacketType.Connect, addr);
        const b = yield* Fiber.join(third);
        expect(b.written).toBe(HEADER_SIZE);
        // A builder that already holds data comes straight back without being offered.
        const again = yield* filler.fill(b);
        expect(again).toBe(b);
      }),
    ));

  it("a packet written as last ends its transfer; the next packet starts a new one [USB-SYNC-LAST]", () =>
    run(
      Effect.gen(function* () {
        const filler = new UsbPacketFiller();
        const zero = { deviceCid: 0, hostCid: 0, devicePort: 0, hostPort: 0 };
        const writer = yield* Effect.forkChild(
          Effect.andThen(
            filler.writePacket(PacketType.Sync, zero, text("vsock:1"), true),
            filler.writePacket(PacketType.Connect, addr),
          ),
        );
        let builder = new UsbPacketBuilder(new Uint8Array(1024));
        builder = yield* filler.fill(builder);
        yield* settle; // give the writer every chance to add the Connect to this transfer
        const first = [...new VsockPacketIterator(builder.take()!)];
        expect(first.map((r) => r.ok && r.value.type)).toEqual([PacketType.Sync]);
        builder = yield* filler.fill(builder);
        const second = [...new VsockPacketIterator(builder.take()!)];
        yield* Fiber.join(writer);
        expect(second.map((r) => r.ok && r.value.type)).toEqual([PacketType.Connect]);
      }),
    ));

  it("a packet larger than the whole transfer is PacketTooBig, not a wait forever [USB-FILL-WAIT-ROOM USB-BUILD-TOO-BIG]", () =>
    run(
      Effect.gen(function* () {
        const filler = new UsbPacketFiller();
        const reader = yield* Effect.forkChild(filler.fill(new UsbPacketBuilder(new Uint8Array(40))));
        const r = yield* Effect.result(filler.writePacket(PacketType.Data, addr, new Uint8Array(17)));
        expect(r).toMatchObject({
          _tag: "Failure",
          failure: { _tag: "PacketTooBig", size: 41, available: 40 },
        });
        yield* Fiber.interrupt(reader);
      }),
    ));

  it("data larger than the room is split across packets and transfers, in order [USB-FILL-SPLIT]", () =>
    run(
      Effect.gen(function* () {
        const filler = new UsbPacketFiller();
        const data = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
        const writer = yield* Effect.forkChild(filler.writeDataAll(addr, data));
        const got: number[] = [];
        const sizes: number[] = [];
        let builder = new UsbPacketBuilder(new Uint8Array(100));
        while (got.length < data.length) {
          builder = yield* filler.fill(builder);
          const bytes = builder.take()!;
          sizes.push(bytes.length);
          for (const r of new VsockPacketIterator(bytes)) {
            if (!r.ok) throw new Error(r.error._tag);
            expect(r.value).toMatchObject({ type: PacketType.Data, ...addr });
            got.push(...r.value.payload);
          }
        }
        yield* Fiber.join(writer);
        expect(got).toEqual([...data]);
        expect(Math.max(...sizes)).toBeLessThanOrEqual(100);
        expect(sizes.length).toBe(Math.ceil(300 / (100 - HEADER_SIZE)));
        // Each piece fills the room left, as the spec's cut says.
        expect(sizes.map((n) => n - HEADER_SIZE)).toEqual(splitPayload(300, [100, 100, 100, 100, 100]));
      }),
    ));
});
