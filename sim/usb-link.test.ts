import { Effect, Fiber } from "effect";
import type { Scope } from "effect";
import { TestClock } from "effect/testing";
import { describe, expect, it } from "vitest";
import { UsbVsockEndpoint, type EndpointOptions } from "../impl/usb-vsock/endpoint.ts";
import { connectUsbLink, makeUsbVsockRig, type UsbLink } from "./usb-link.ts";
import { encodePackets, PacketType, type Version } from "../spec/usb-vsock.ts";

const A = { deviceCid: 3, hostCid: 2, devicePort: 5, hostPort: 7 };
const B = { deviceCid: 3, hostCid: 2, devicePort: 6, hostPort: 8 };
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);

/**
 * Runs `body` on the TestClock, moving virtual time 100 µs at a time until it ends
 * (deterministic: no wall-clock timing reaches the program).
 */
const runSim = <A, E>(body: Effect.Effect<A, E, Scope.Scope>): Promise<A> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const fiber = yield* Effect.forkChild(body);
        for (let i = 0; i < 200_000; i++) {
          const done = fiber.pollUnsafe();
          if (done !== undefined) break;
          yield* TestClock.adjust("100 micros");
        }
        return yield* Fiber.join(fiber);
      }),
    ).pipe(Effect.provide(TestClock.layer())),
  );

const pair = (
  host: Partial<EndpointOptions> = {},
  device: Partial<EndpointOptions> = {},
  maxTransferSize = 512,
): Effect.Effect<{ host: UsbVsockEndpoint; device: UsbVsockEndpoint; link: UsbLink }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const h = yield* UsbVsockEndpoint.make({ role: "host", ...host });
    const d = yield* UsbVsockEndpoint.make({ role: "device", ...device });
    const link = yield* Effect.orDie(connectUsbLink(h, d, { maxTransferSize, latencyUs: 250 }));
    return { host: h, device: d, link };
  });

const negotiated = (host: Version, device: Version) =>
  runSim(
    Effect.gen(function* () {
      const { host: h, device: d } = yield* pair({ preferred: host }, { preferred: device });
      const v = yield* h.sync(0xbeef);
      const dv = yield* d.awaitSynced;
      return [v, dv] as const;
    }),
  );

describe("usb-vsock endpoints over the simulated link", () => {
  it("Sync negotiates the version, confirming a downgrade with a final Sync [USB-SYNC-VERSION USB-SYNC-NEGOTIATE USB-LINK-LATENCY]", async () => {
    expect(await negotiated({ v: 2, nonce: 0 }, { v: 2, nonce: 0 })).toEqual([
      { v: 2, nonce: 0xbeef },
      { v: 2, nonce: 0xbeef },
    ]);
    expect(await negotiated({ v: 2, nonce: 0 }, { v: 1 })).toEqual([{ v: 1 }, { v: 1 }]);
    expect(await negotiated({ v: 1 }, { v: 2, nonce: 0 })).toEqual([{ v: 1 }, { v: 1 }]);
    expect(await negotiated({ v: 2, nonce: 0 }, { v: 0 })).toEqual([{ v: 0 }, { v: 0 }]);
  });

  it("connect, accept, data both ways in order, Finish answered by Reset [USB-CONN-CONNECT USB-CONN-ACCEPT USB-CONN-DATA USB-CONN-FINISH USB-CONN-STATES]", async () => {
    const out = await runSim(
      Effect.gen(function* () {
        const { host, device } = yield* pair();
        yield* host.sync();
        yield* device.awaitSynced;
        const connecting = yield* Effect.forkChild(host.connect(A));
        const req = yield* device.incoming;
        expect(req).toEqual(A);
        expect(device.core.connection(A)?.state).toBe("ConnectingIncoming");
        expect(host.core.connection(A)?.state).toBe("ConnectingOutgoing");
        const ds = yield* device.accept(req);
        const hs = yield* Fiber.join(connecting);
        expect(host.core.connection(A)?.state).toBe("Connected");
        for (const size of [1, 2, 8, 16, 32, 64, 128, 255, 1000]) {
          yield* hs.write(new Uint8Array(size).fill(size & 0xff));
        }
        const got: number[] = [];
        while (got.length < 1 + 2 + 8 + 16 + 32 + 64 + 128 + 255 + 1000) got.push(...(yield* ds.read));
        const want: number[] = [];
        for (const size of [1, 2, 8, 16, 32, 64, 128, 255, 1000])
          want.push(...new Array<number>(size).fill(size & 0xff));
        expect(got).toEqual(want);
        yield* ds.write(text("reply"));
        expect(str(yield* hs.read)).toBe("reply");
        yield* hs.close;
        const hostClosed = yield* hs.closed;
        const deviceClosed = yield* ds.closed;
        return { hostClosed, deviceClosed, h: host.core.connection(A), d: device.core.connection(A) };
      }),
    );
    expect(out.hostClosed.reset).toBe(false);
    expect(out.deviceClosed.reset).toBe(false);
    expect(out.h).toBeUndefined();
    expect(out.d).toBeUndefined();
  });

  it("reject refuses the connect; reset closes the other end [USB-CONN-REJECT USB-CONN-RESET]", async () => {
    const out = await runSim(
      Effect.gen(function* () {
        const { host, device } = yield* pair();
        yield* host.sync();
        yield* device.awaitSynced;
        const refused = yield* Effect.forkChild(Effect.result(host.connect(A)));
        yield* device.reject(yield* device.incoming);
        const r = yield* Fiber.join(refused);
        const c = yield* Effect.forkChild(host.connect(B));
        const ds = yield* device.accept(yield* device.incoming);
        const hs = yield* Fiber.join(c);
        yield* ds.reset;
        const closed = yield* hs.closed;
        const readAfter = yield* Effect.result(hs.read);
        const writeAfter = yield* Effect.result(hs.write(text("x")));
        return { r, closed, readAfter, writeAfter };
      }),
    );
    expect(out.r).toMatchObject({ _tag: "Failure", failure: { _tag: "ConnectionRefused", address: A } });
    expect(out.closed).toEqual({ _tag: "StreamClosed", address: B, reset: true });
    expect(out.readAfter).toMatchObject({ _tag: "Failure", failure: { _tag: "StreamClosed", reset: true } });
    expect(out.writeAfter).toMatchObject({ _tag: "Failure", failure: { _tag: "NoSuchConnection" } });
  });

  it("the all-zero address is the control stream, and Echo is answered with EchoReply [USB-CONTROL-STREAM USB-ECHO]", async () => {
    const out = await runSim(
      Effect.gen(function* () {
        const { host, device } = yield* pair();
        yield* host.sync();
        yield* device.awaitSynced;
        yield* host.control.send(text("to device"));
        yield* device.control.send(text("to host"));
        const a = yield* device.control.read;
        const b = yield* host.control.read;
        const echo = yield* host.echo(text("ping"));
        const echo2 = yield* device.echo(text("pong"));
        return [str(a), str(b), str(echo), str(echo2)];
      }),
    );
    expect(out).toEqual(["to device", "to host", "ping", "pong"]);
  });

  it("nothing but Sync is accepted before synchronisation [USB-SYNC-FIRST]", async () => {
    const out = await runSim(
      Effect.gen(function* () {
        const { host, device } = yield* pair();
        const early = yield* Effect.result(host.connect(A));
        const earlyCtl = yield* Effect.result(device.control.send(text("x")));
        return { early, earlyCtl };
      }),
    );
    expect(out.early).toMatchObject({ _tag: "Failure", failure: { _tag: "NotSynced" } });
    expect(out.earlyCtl).toMatchObject({ _tag: "Failure", failure: { _tag: "NotSynced" } });
  });

  it("a receiver over its high-water mark pauses the sender until it reads (vsock:1+), not in vsock:0 [USB-PAUSE]", async () => {
    const run = (device: Version) =>
      runSim(
        Effect.gen(function* () {
          const { host, device: dev } = yield* pair({}, { preferred: device, highWater: 100 });
          yield* host.sync();
          yield* dev.awaitSynced;
          const c = yield* Effect.forkChild(host.connect(A));
          const ds = yield* dev.accept(yield* dev.incoming);
          const hs = yield* Fiber.join(c);
          const writer = yield* Effect.forkChild(
            Effect.forEach(
              Array.from({ length: 20 }, (_, i) => i),
              // An application producing one chunk per millisecond.
              (i) => Effect.andThen(Effect.sleep("1 millis"), hs.write(new Uint8Array(50).fill(i))),
              { discard: true },
            ),
          );
          // Let the link run with nobody reading on the device.
          yield* Effect.sleep("50 millis");
          const pausedWhileUnread = host.core.connection(A)?.pausedByPeer ?? false;
          const writerBlocked = writer.pollUnsafe() === undefined;
          const got: number[] = [];
          while (got.length < 1000) got.push(...(yield* ds.read));
          yield* Fiber.join(writer);
          return { pausedWhileUnread, writerBlocked, got };
        }),
      );
    const want = Array.from({ length: 20 }, (_, i) => new Array<number>(50).fill(i)).flat();
    const v1 = await run({ v: 1 });
    expect(v1.pausedWhileUnread).toBe(true);
    expect(v1.writerBlocked).toBe(true);
    expect(v1.got).toEqual(want);
    const v0 = await run({ v: 0 });
    expect(v0.pausedWhileUnread).toBe(false);
    expect(v0.writerBlocked).toBe(false);
    expect(v0.got).toEqual(want);
  });

  it("a Sync mid-stream resets every connection on both ends [USB-SYNC-MIDSTREAM]", async () => {
    const out = await runSim(
      Effect.gen(function* () {
        const { host, device } = yield* pair();
        yield* host.sync();
        yield* device.awaitSynced;
        const streams = [];
        for (const a of [A, B]) {
          const c = yield* Effect.forkChild(host.connect(a));
          const ds = yield* device.accept(yield* device.incoming);
          streams.push(yield* Fiber.join(c), ds);
        }
        const v = yield* host.sync(42);
        const closed = yield* Effect.forEach(streams, (s) => s.closed);
        return { v, closed, host: [...host.core.connections()], device: [...device.core.connections()] };
      }),
    );
    expect(out.v).toEqual({ v: 2, nonce: 42 });
    expect(out.closed.every((c) => c.reset)).toBe(true);
    expect(out.host).toEqual([]);
    expect(out.device).toEqual([]);
  });

  it("a malformed transfer is dropped from its first error and the endpoint keeps serving [USB-PARSE-STOP USB-PARSE-BOUNDS]", async () => {
    const out = await runSim(
      Effect.gen(function* () {
        const { host, device } = yield* pair();
        yield* host.sync();
        yield* device.awaitSynced;
        const e = yield* device.handleTransfer(Uint8Array.of(0x66, 0x66, 0x78, 0x44, 1, 2, 3));
        yield* host.control.send(text("still here"));
        return { e, after: str(yield* device.control.read), parseErrors: device.parseErrors };
      }),
    );
    expect(out.e).toEqual({ _tag: "InsufficientData", offset: 0, remaining: 7 });
    expect(out.after).toBe("still here");
    expect(out.parseErrors).toBe(1);
  });

  it("a hostile peer's unrequested EchoReplies and Connect-then-Reset leave echo() and incoming() correct [USB-ECHO USB-CONN-RESET]", async () => {
    const zero = { deviceCid: 0, hostCid: 0, devicePort: 0, hostPort: 0 };
    const out = await runSim(
      Effect.gen(function* () {
        const { host, device } = yield* pair();
        yield* host.sync();
        yield* device.awaitSynced;
        const stale = text("stale");
        const reply = {
          header: { ...zero, type: PacketType.EchoReply, payloadLen: stale.length },
          payload: stale,
        };
        // Replies nobody asked for, then a connection the peer withdraws before it is accepted.
        yield* device.handleTransfer(encodePackets([reply, reply, reply]));
        yield* device.handleTransfer(
          encodePackets([
            { header: { ...A, type: PacketType.Connect, payloadLen: 0 }, payload: new Uint8Array(0) },
            { header: { ...A, type: PacketType.Reset, payloadLen: 0 }, payload: new Uint8Array(0) },
          ]),
        );
        const echo = yield* device.echo(text("ping"));
        const pending = yield* Effect.forkChild(device.incoming);
        const connecting = yield* Effect.forkChild(host.connect(B));
        const incoming = yield* Fiber.join(pending);
        yield* device.accept(incoming);
        yield* Fiber.join(connecting);
        return { echo: str(echo), incoming };
      }),
    );
    expect(out.echo).toBe("ping");
    expect(out.incoming).toEqual(B);
  });

  it("many connections with small transfers: every byte once, in order, no transfer over the size [USB-LINK-MTU USB-FILL-SPLIT USB-CONN-DATA]", async () => {
    const stats = await runSim(
      Effect.gen(function* () {
        const rig = yield* Effect.orDie(
          makeUsbVsockRig({ connections: 16, maxTransferSize: 128, latencyUs: 125 }),
        );
        yield* rig.start;
        for (let round = 0; round < 10; round++) {
          for (let i = 0; i < 16; i++) {
            const bytes = Uint8Array.from({ length: 40 + i * 7 }, (_, k) => (k * 31 + i + round) & 0xff);
            // Half the traffic through the non-blocking path the simulator uses.
            yield* i % 2 === 0 ? rig.send(i, bytes) : rig.offer(i, bytes);
          }
        }
        yield* rig.drain;
        return rig.stats();
      }),
    );
    const total = Array.from({ length: 16 }, (_, i) => (40 + i * 7) * 10).reduce((a, b) => a + b, 0);
    expect(stats.sentBytes).toBe(total);
    expect(stats.receivedBytes).toBe(total);
    expect(stats.orderViolations).toBe(0);
    expect(stats.connected).toBe(16);
    expect(stats.link.h2d.maxTransfer).toBeLessThanOrEqual(128);
    expect(stats.link.d2h.maxTransfer).toBeLessThanOrEqual(128);
    expect(stats.link.h2d.parseErrors + stats.link.d2h.parseErrors).toBe(0);
  });
});
