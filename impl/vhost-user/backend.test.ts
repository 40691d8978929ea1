import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect, Exit, Fiber, type Scope } from "effect";
import { describe, expect, it } from "vitest";
import { F_PROTOCOL_FEATURES, ProtocolFeature, Req, bit } from "../../spec/vhost-user.ts";
import { VsockVirtioDevice } from "../device/vsock.ts";
import { loadFdio, signalEventFd } from "../native/fdio.ts";
import { Poller, acquireUnixConnection, fdio } from "../native/scoped.ts";
import { serveVhostUser, type VhostUserEvent } from "./backend.ts";
import { Frontend } from "./frontend.ts";
import { LoopbackBackend } from "../net/backend.ts";
import { NetDevice } from "../net/device.ts";
import {
  GUEST_BASE,
  GUEST_SIZE,
  REPLY_TIMEOUT_MS,
  USER_BASE,
  expectAck,
  harness,
  mappingsOf,
  openFds,
  startDevice,
  type Harness,
} from "./testing.ts";

const io = loadFdio();
const skip = typeof io === "string" ? io : null;
if (skip !== null) console.log(`skipping vhost-user back-end tests: ${skip}`);

const VERSION_1 = 1n << 32n;
const netDevice = (): NetDevice => new NetDevice({ mac: [2, 0, 0, 0, 0, 1] }, new LoopbackBackend());

/** Waits until the call eventfd of ring `q` fired. */
const waitCall = (h: Harness, q: number): Effect.Effect<void> => Effect.asVoid(h.poller.wait([h.calls[q]!]));

const run = <A, E>(e: Effect.Effect<A, E, Scope.Scope>): Promise<A> => Effect.runPromise(Effect.scoped(e));

describe.skipIf(skip !== null)("vhost-user back-end over a Unix socket", () => {
  it("QEMU's sequence starts the device; a frame goes TX -> loopback -> RX with call eventfds; GET_VRING_BASE says where each ring stopped; a hang-up releases everything [VU-RING-START VU-RING-ADDR-TRANSLATE VU-CALL VU-RING-STOP VU-DISCONNECT VU-MEM-MAP]", async () => {
    const fdsBefore = openFds();
    let name = "";
    await run(
      Effect.gen(function* () {
        const dev = netDevice();
        const h = yield* harness(dev);
        name = h.memfdName;
        yield* startDevice(h, VERSION_1);
        expect(dev.isActive).toBe(true);
        // The back-end maps the region too: two mappings of the memfd now.
        expect(mappingsOf(name)).toBe(2);
        const rxBuf = GUEST_BASE + 0x10000;
        const rxHead = h.drivers[0]!.addChain([{ addr: rxBuf, len: 2048, write: true }]);
        signalEventFd(h.io, h.kicks[0]!);
        const frame = GUEST_BASE + 0x20000;
        for (let i = 0; i < 72; i++) h.guest.writeU8(frame + i, i < 12 ? 0 : i);
        // A TX head that is not 0 (the RX chain's head is 0): used ids must not be confused.
        const txHead = 5;
        h.drivers[1]!.writeDescriptor(txHead, { addr: frame, len: 72, flags: 0, next: 0 });
        h.drivers[1]!.pushAvail(txHead);
        h.drivers[1]!.publish();
        signalEventFd(h.io, h.kicks[1]!);
        yield* waitCall(h, 1);
        expect(h.drivers[1]!.reapUsed()).toEqual([{ id: txHead, len: 0 }]);
        // The loopback frame comes back through RX (the device's run loop delivers it).
        yield* waitCall(h, 0);
        expect(h.drivers[0]!.reapUsed()).toEqual([{ id: rxHead, len: 72 }]);
        for (let i = 12; i < 72; i++) expect(h.guest.readU8(rxBuf + i)).toBe(i);
        const base1 = yield* h.fe.call(Req.GET_VRING_BASE, { _tag: "VringState", index: 1, num: 0 });
        expect(base1?.body).toEqual({ _tag: "VringState", index: 1, num: 1 });
        expect(dev.isActive).toBe(false);
        const base0 = yield* h.fe.call(Req.GET_VRING_BASE, { _tag: "VringState", index: 0, num: 0 });
        expect(base0?.body).toEqual({ _tag: "VringState", index: 0, num: 1 });
        yield* h.hangUp;
        const end = yield* Fiber.join(h.served);
        expect(end._tag).toBe("PeerClosed");
        expect(end.stats.calls[1]).toBeGreaterThanOrEqual(1);
        // The back-end's mapping is gone; the test's own remains until the scope closes.
        expect(mappingsOf(name)).toBe(1);
      }),
    );
    expect(mappingsOf(name)).toBe(0);
    expect(openFds()).toBe(fdsBefore);
  });

  it("a restart resumes from SET_VRING_BASE and the used ring's index [VU-RING-BASE]", async () => {
    await run(
      Effect.gen(function* () {
        const dev = netDevice();
        const h = yield* harness(dev);
        yield* startDevice(h, VERSION_1);
        // Stop ring 1 and pretend the guest had gone on to entry 5 meanwhile (a VMM migrating
        // or reconnecting): avail and used idx both at 5.
        yield* h.fe.call(Req.GET_VRING_BASE, { _tag: "VringState", index: 1, num: 0 });
        const d = h.drivers[1]!;
        d.availIdx = 5;
        d.lastUsedIdx = 5;
        d.publish();
        h.guest.writeU16(h.layouts[1]!.usedRing + 2, 5);
        const none = yield* h.fe.call(Req.SET_VRING_BASE, { _tag: "VringState", index: 1, num: 5 });
        expect(none).toBeNull();
        yield* expectAck(
          h.fe.call(Req.SET_VRING_KICK, { _tag: "U64", value: 1n }, { fds: [h.kicks[1]!], needReply: true }),
        );
        expect(dev.isActive).toBe(true);
        expect(dev.queues[1]!.nextAvail).toBe(5);
        expect(dev.queues[1]!.nextUsed).toBe(5);
        const frame = GUEST_BASE + 0x20000;
        for (let i = 0; i < 72; i++) h.guest.writeU8(frame + i, 0);
        const head = h.drivers[1]!.addChain([{ addr: frame, len: 72 }]);
        signalEventFd(h.io, h.kicks[1]!);
        yield* waitCall(h, 1);
        expect(h.drivers[1]!.reapUsed()).toEqual([{ id: head, len: 0 }]);
        // The restarted device read the chain through this activation's chain objects.
        expect(dev.stats.txFrames).toBe(1);
        expect(dev.stats.txChainErrors).toBe(0);
      }),
    );
  });

  it("a disabled ring's kicks wait until SET_VRING_ENABLE enables it [VU-RING-ENABLE]", async () => {
    await run(
      Effect.gen(function* () {
        const dev = netDevice();
        const h = yield* harness(dev);
        yield* startDevice(h, VERSION_1);
        yield* expectAck(
          h.fe.call(Req.SET_VRING_ENABLE, { _tag: "VringState", index: 1, num: 0 }, { needReply: true }),
        );
        const frame = GUEST_BASE + 0x20000;
        for (let i = 0; i < 72; i++) h.guest.writeU8(frame + i, 0);
        const head = h.drivers[1]!.addChain([{ addr: frame, len: 72 }]);
        signalEventFd(h.io, h.kicks[1]!);
        // The kick is read but the ring is not served while disabled.
        for (let i = 0; i < 20 && h.events.filter((e) => e._tag === "RingEnabled").length === 0; i++) {
          yield* Effect.sleep(5);
        }
        yield* Effect.sleep(50);
        expect(h.drivers[1]!.reapUsed()).toEqual([]);
        expect(dev.stats.txFrames).toBe(0);
        yield* expectAck(
          h.fe.call(Req.SET_VRING_ENABLE, { _tag: "VringState", index: 1, num: 1 }, { needReply: true }),
        );
        yield* waitCall(h, 1);
        expect(h.drivers[1]!.reapUsed()).toEqual([{ id: head, len: 0 }]);
      }),
    );
  });

  it("a refused SET_MEM_TABLE is nacked, closes the connection and leaves nothing mapped [VU-MEM-OVERLAP VU-REPLY-ACK VU-DISCONNECT]", async () => {
    const fdsBefore = openFds();
    let name = "";
    await run(
      Effect.gen(function* () {
        const dev = netDevice();
        const h = yield* harness(dev);
        name = h.memfdName;
        yield* startDevice(h, VERSION_1);
        const region = {
          guestAddr: BigInt(GUEST_BASE),
          size: BigInt(GUEST_SIZE),
          userAddr: USER_BASE,
          mmapOffset: 0n,
        };
        const r = yield* h.fe.call(
          Req.SET_MEM_TABLE,
          { _tag: "MemoryTable", regions: [region, { ...region, userAddr: USER_BASE + 0x1000_0000n }] },
          { fds: [h.memfd, h.memfd], needReply: true },
        );
        expect(r?.body).toEqual({ _tag: "U64", value: 1n });
        const end = yield* Fiber.join(h.served);
        expect(end).toMatchObject({ _tag: "Refused", error: { _tag: "OverlappingRegions", space: "guest" } });
        expect(dev.isActive).toBe(false);
        expect(mappingsOf(name)).toBe(1);
      }),
    );
    expect(mappingsOf(name)).toBe(0);
    expect(openFds()).toBe(fdsBefore);
  });

  it("interrupting the back-end while the device runs releases every mapping and fd [VU-DISCONNECT]", async () => {
    const fdsBefore = openFds();
    let name = "";
    await run(
      Effect.gen(function* () {
        const dev = netDevice();
        const h = yield* harness(dev);
        name = h.memfdName;
        yield* startDevice(h, VERSION_1);
        expect(mappingsOf(name)).toBe(2);
        yield* Fiber.interrupt(h.served);
        const exit = yield* Fiber.await(h.served);
        expect(Exit.hasInterrupts(exit)).toBe(true);
        expect(dev.isActive).toBe(false);
        expect(mappingsOf(name)).toBe(1);
      }),
    );
    expect(openFds()).toBe(fdsBefore);
  });

  it("a front-end that goes away can come back: the back-end accepts the next connection on the same socket [VU-DISCONNECT]", async () => {
    const sock = join(tmpdir(), `vlab-vu-reconnect-${process.pid}.sock`);
    const events: VhostUserEvent[] = [];
    const fdsBefore = openFds();
    await run(
      Effect.gen(function* () {
        const io = yield* fdio;
        let listening: () => void = () => {};
        const ready = new Promise<void>((r) => (listening = r));
        const server = yield* Effect.forkChild(
          serveVhostUser({
            device: netDevice(),
            socketPath: sock,
            connections: 2,
            onEvent: (e) => {
              events.push(e);
              if (e._tag === "Listening") listening();
            },
          }),
        );
        yield* Effect.promise(() => ready);
        for (let round = 0; round < 2; round++) {
          yield* Effect.scoped(
            Effect.gen(function* () {
              const fd = yield* acquireUnixConnection(io, sock);
              const fe = new Frontend(io, fd, yield* Poller.make(io), REPLY_TIMEOUT_MS);
              const f = yield* fe.call(Req.GET_FEATURES);
              expect(f?.body._tag).toBe("U64");
            }),
          );
        }
        yield* Fiber.join(server);
      }),
    );
    expect(events.filter((e) => e._tag === "Connected").length).toBe(2);
    expect(events.filter((e) => e._tag === "Disconnected").length).toBe(2);
    expect(existsSync(sock)).toBe(false);
    expect(openFds()).toBe(fdsBefore);
  });

  it("vsock: GET_CONFIG answers the guest CID with CONFIG negotiated; without it the request is refused; bit 30 is offered [VU-CONFIG VU-REQ-GATED VU-FEATURES-PROTOCOL-BIT]", async () => {
    await run(
      Effect.gen(function* () {
        const d = VsockVirtioDevice.create({ guestCid: 42n }, { queueCount: 2 });
        if (!d.ok) throw new Error(d.error._tag);
        const h = yield* harness(d.value);
        const features = yield* h.fe.call(Req.GET_FEATURES);
        expect(features?.body._tag === "U64" && (features.body.value & bit(F_PROTOCOL_FEATURES)) !== 0n).toBe(
          true,
        );
        const pf = yield* h.fe.call(Req.GET_PROTOCOL_FEATURES);
        expect(pf?.body._tag === "U64" && (pf.body.value & bit(ProtocolFeature.CONFIG)) !== 0n).toBe(true);
        yield* h.fe.call(Req.SET_PROTOCOL_FEATURES, { _tag: "U64", value: bit(ProtocolFeature.CONFIG) });
        const cfg = yield* h.fe.call(Req.GET_CONFIG, {
          _tag: "Config",
          offset: 0,
          flags: 0,
          data: new Uint8Array(8),
        });
        expect(cfg?.body).toEqual({
          _tag: "Config",
          offset: 0,
          flags: 0,
          data: new Uint8Array([42, 0, 0, 0, 0, 0, 0, 0]),
        });
        // Past the 8-byte config: a zero-length answer (the protocol's error indication).
        const past = yield* h.fe.call(Req.GET_CONFIG, {
          _tag: "Config",
          offset: 4,
          flags: 0,
          data: new Uint8Array(8),
        });
        expect(past?.body).toEqual({ _tag: "Config", offset: 4, flags: 0, data: new Uint8Array(0) });
        const n = yield* h.fe.call(Req.GET_QUEUE_NUM);
        expect(n?.body).toEqual({ _tag: "U64", value: 2n });
      }),
    );
    await run(
      Effect.gen(function* () {
        const d = VsockVirtioDevice.create({ guestCid: 42n }, { queueCount: 2 });
        if (!d.ok) throw new Error(d.error._tag);
        const h = yield* harness(d.value);
        yield* h.fe.call(Req.SET_PROTOCOL_FEATURES, { _tag: "U64", value: 0n });
        h.fe.channel.send({
          request: Req.GET_CONFIG,
          flags: 1,
          body: { _tag: "Config", offset: 0, flags: 0, data: new Uint8Array(8) },
        });
        const end = yield* Fiber.join(h.served);
        expect(end).toMatchObject({
          _tag: "Refused",
          error: { _tag: "ProtocolFeatureNotNegotiated", feature: 9 },
        });
      }),
    );
  });
});
