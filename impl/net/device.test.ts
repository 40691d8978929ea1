/**
 * squib net.rs's own cases, re-expressed, and the device rules of spec/net.ts, driven
 * through NetGuest (a guest driver model) and real split queues.
 */
import { Effect, Layer } from "effect";
import { describe, expect, it } from "vitest";
import { SplitDriver } from "../queue/split-driver.ts";
import { CapturingBackend, CapturingLayer, LoopbackBackend } from "./backend.ts";
import { NetDevice, RX_QUEUE, TX_QUEUE } from "./device.ts";
import { NetGuest } from "./guest.ts";
import { FrameInterceptor, MacInterceptor } from "./interceptor.ts";
import { ARP_REPLY, arpRequest, parseArp } from "./packets.ts";
import { VIRTIO_NET_F as F, featureBit as bit } from "../../wire/features.ts";

const MAC = [0x06, 0x00, 0xac, 0x10, 0x00, 0x02];
const MMDS_MAC = [0x06, 0x01, 0x23, 0x45, 0x67, 0x01];
const config = { mac: MAC, mtu: 1500 };
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

const setup = (
  opts: {
    backend?: CapturingBackend | LoopbackBackend;
    interceptor?: MacInterceptor;
    features?: bigint;
    cfg?: object;
  } = {},
) => {
  const backend = opts.backend ?? new CapturingBackend();
  const dev = new NetDevice({ ...config, ...(opts.cfg ?? {}) }, backend, opts.interceptor);
  const guest = NetGuest.create(dev, {
    queueSize: 8,
    ...(opts.features !== undefined ? { features: opts.features } : {}),
  });
  return { dev, guest, backend };
};

describe("features and config space", () => {
  it("offers MAC and MTU when configured, not otherwise [NET-FEAT-OFFER]", () => {
    const d = new NetDevice(config, new LoopbackBackend());
    expect(d.offeredFeatures & bit(F.MAC)).not.toBe(0n);
    expect(d.offeredFeatures & bit(F.MTU)).not.toBe(0n);
    expect(d.offeredFeatures & bit(F.VERSION_1)).not.toBe(0n);
    const bare = new NetDevice({}, new LoopbackBackend());
    expect(bare.offeredFeatures).toBe(bit(F.VERSION_1));
  });

  it("publishes the MAC at 0 and the MTU at offset 10, zeros past the end [NET-CFG-LAYOUT NET-CFG-PAST-END]", () => {
    const d = new NetDevice({ mac: MAC, mtu: 9000, status: true }, new LoopbackBackend());
    const mac = new Uint8Array(6);
    d.readConfig(0, mac);
    expect(Array.from(mac)).toEqual(MAC);
    const mtu = new Uint8Array(2);
    d.readConfig(10, mtu);
    expect(mtu[0]! | (mtu[1]! << 8)).toBe(9000);
    const past = new Uint8Array(8).fill(0xaa);
    d.readConfig(10, past);
    expect(Array.from(past.subarray(2))).toEqual([0, 0, 0, 0, 0, 0]);
    const status = new Uint8Array(2);
    d.readConfig(6, status);
    expect(status[0]).toBe(1);
  });

  it("config writes change nothing [NET-CFG-WRITE]", () => {
    const d = new NetDevice(config, new LoopbackBackend());
    d.writeConfig(0, new Uint8Array(12).fill(0xff));
    const mac = new Uint8Array(6);
    d.readConfig(0, mac);
    expect(Array.from(mac)).toEqual(MAC);
  });

  it("an MTU outside 68..65535 and a MAC not of 6 bytes are refused [NET-CFG-MTU NET-CFG-MAC]", async () => {
    const make = (c: object) =>
      Effect.runPromise(
        Effect.flip(NetDevice.make(c).pipe(Effect.provide(CapturingLayer(new CapturingBackend())))),
      );
    expect(await make({ mtu: 67 })).toEqual({ _tag: "InvalidMtu", mtu: 67 });
    expect(await make({ mtu: 65536 })).toEqual({ _tag: "InvalidMtu", mtu: 65536 });
    expect(await make({ mac: [1, 2, 3] })).toEqual({ _tag: "InvalidMac", length: 3 });
    const ok = await Effect.runPromise(
      NetDevice.make({ mtu: 68 }).pipe(Effect.provide(CapturingLayer(new CapturingBackend()))),
    );
    expect(ok.maxFrame).toBe(68 + 18);
  });

  it("CSUM pass-through needs a backend that carries the header [NET-CSUM-PASSTHROUGH]", async () => {
    const e = await Effect.runPromise(
      Effect.flip(
        NetDevice.make({ csum: true }).pipe(Effect.provide(CapturingLayer(new CapturingBackend()))),
      ),
    );
    expect(e).toEqual({ _tag: "CsumNeedsHeaderBackend", backend: "capturing" });
  });

  it("acks outside the offer or breaking a dependency are refused and not recorded [NET-FEAT-ACK-SUBSET NET-FEAT-DEPS NET-FEAT-RECORD]", () => {
    const d = new NetDevice({ ...config, csum: true }, new LoopbackBackend());
    expect(d.ackFeatures(bit(F.GUEST_TSO4))).toEqual({
      ok: false,
      error: { _tag: "FeatureNotOffered", bits: bit(F.GUEST_TSO4) },
    });
    expect(d.ackedFeatures).toBe(0n);
    const good = bit(F.MAC) | bit(F.VERSION_1) | bit(F.CSUM);
    expect(d.ackFeatures(good)).toEqual({ ok: true, value: good });
    expect(d.ackedFeatures).toBe(good);
  });

  it("header length: 12 with VERSION_1 or MRG_RXBUF, 10 for legacy [NET-HDR-LEN]", () => {
    const d = new NetDevice({ mrgRxbuf: true }, new LoopbackBackend());
    d.ackFeatures(0n);
    expect(d.headerLength).toBe(10);
    d.ackFeatures(bit(F.MRG_RXBUF));
    expect(d.headerLength).toBe(12);
    d.ackFeatures(bit(F.VERSION_1));
    expect(d.headerLength).toBe(12);
  });
});

describe("TX", () => {
  it("sends the frame without its header to the backend, used length 0 [NET-QUEUES NET-TX-GATHER NET-TX-HDR-STRIP NET-TX-USED-LEN]", () => {
    const { dev, guest, backend } = setup();
    guest.send(enc("helloeth"));
    expect(dev.processTxNow()).toBe(1);
    expect((backend as CapturingBackend).sent).toEqual([enc("helloeth")]);
    expect(guest.reapTx()).toEqual([{ id: expect.any(Number), len: 0 }]);
    expect(guest.interrupts[TX_QUEUE]).toBe(1);
  });

  it("gathers a frame split over descriptors, the header split too [NET-TX-GATHER]", () => {
    const { dev, guest, backend } = setup();
    const frame = Uint8Array.from({ length: 100 }, (_, i) => i);
    guest.send(frame, [3, 12, 13, 50]);
    dev.processTxNow();
    expect((backend as CapturingBackend).sent).toEqual([frame]);
  });

  it("a chain not longer than the header is completed and counted, then the next one is served [NET-TX-SHORT NET-HOSTILE]", () => {
    const { dev, guest, backend } = setup();
    guest.txDriver.addChain([{ addr: guest.txSlotAddr(5), len: 12 }]);
    guest.txDriver.addChain([{ addr: guest.txSlotAddr(6), len: 3 }]);
    guest.send(enc("next"));
    expect(dev.processTxNow()).toBe(3);
    expect(dev.stats.txTooShort).toBe(2);
    expect(dev.lastTxDrop).toEqual({ _tag: "TxFrameTooShort", readable: 3, headerLength: 12 });
    expect((backend as CapturingBackend).sent).toEqual([enc("next")]);
    expect(guest.reapTx().map((e) => e.len)).toEqual([0, 0, 0]);
  });

  it("a frame longer than the maximum is dropped and counted [NET-TX-MAX]", () => {
    const { dev, guest } = setup({ cfg: { mtu: 100 } });
    guest.send(new Uint8Array(119));
    guest.send(new Uint8Array(118));
    dev.processTxNow();
    expect(dev.stats.txTooLong).toBe(1);
    expect(dev.stats.txFrames).toBe(1);
  });

  it("a descriptor outside memory or a broken chain is dropped, counted, the device keeps serving [NET-TX-CHAIN-ERROR NET-HOSTILE]", () => {
    const { dev, guest, backend } = setup();
    guest.txDriver.addChain([{ addr: 0x7fff_0000, len: 64 }]);
    // A second descriptor whose NEXT points outside the table (a refused head would stop
    // the queue itself: CHAIN-CHECKED-NEW).
    const d = guest.txDriver;
    const head = d.addChain(
      [
        { addr: guest.txSlotAddr(3), len: 20 },
        { addr: guest.txSlotAddr(3) + 20, len: 20 },
      ],
      { publish: false },
    )!;
    const second = d.readDescriptor(head).next;
    d.writeDescriptor(second, { addr: guest.txSlotAddr(3) + 20, len: 20, flags: 1, next: 200 });
    d.publish();
    guest.send(enc("fine"));
    expect(dev.processTxNow()).toBe(3);
    expect(dev.stats.txChainErrors).toBe(2);
    expect((backend as CapturingBackend).sent).toEqual([enc("fine")]);
  });

  it("a backend failure is counted and the chain completed [NET-TX-USED-LEN]", () => {
    const b = new CapturingBackend();
    b.failSendWith = -5;
    const { dev, guest } = setup({ backend: b });
    guest.send(enc("x".repeat(20)));
    expect(dev.processTxNow()).toBe(1);
    expect(dev.stats.txBackendErrors).toBe(1);
    expect(guest.reapTx()).toHaveLength(1);
  });

  it("intercepted frames never reach the backend [NET-TX-INTERCEPT NET-INTERCEPT-MAC]", () => {
    const interceptor = new MacInterceptor({ mac: MMDS_MAC });
    const { dev, guest, backend } = setup({ interceptor });
    guest.send(Uint8Array.from([...MMDS_MAC, ...MAC, 0x08, 0x00, ...enc("rest")]));
    guest.send(Uint8Array.from([...MAC, ...MAC, 0x08, 0x00, ...enc("wire")]));
    dev.processTxNow();
    expect(interceptor.taken).toHaveLength(1);
    expect((backend as CapturingBackend).sent).toHaveLength(1);
    expect(dev.stats.txIntercepted).toBe(1);
  });
});

describe("RX", () => {
  it("injects interceptor frames with a zero header and num_buffers 1 [NET-RX-HDR NET-RX-USED-LEN]", () => {
    const interceptor = new MacInterceptor({ mac: MMDS_MAC });
    interceptor.inject(enc("hello-rx"));
    const { dev, guest } = setup({ interceptor });
    guest.postRx(1, 32);
    expect(dev.processRxNow()).toBe(1);
    const [p] = guest.reapRx();
    expect(p!.usedLength).toBe(20);
    expect(p!.header).toEqual({
      flags: 0,
      gsoType: 0,
      hdrLen: 0,
      gsoSize: 0,
      csumStart: 0,
      csumOffset: 0,
      numBuffers: 1,
    });
    expect(p!.frame).toEqual(enc("hello-rx"));
    expect(guest.interrupts[RX_QUEUE]).toBe(1);
  });

  it("interceptor frames come before backend frames, each in order [NET-RX-ORDER]", () => {
    const interceptor = new MacInterceptor({ mac: MMDS_MAC });
    const b = new CapturingBackend();
    b.inject(enc("b1"));
    b.inject(enc("b2"));
    interceptor.inject(enc("i1"));
    interceptor.inject(enc("i2"));
    const { dev, guest } = setup({ backend: b, interceptor });
    guest.postRx(8, 64);
    expect(dev.processRxNow()).toBe(4);
    expect(guest.reapRx().map((p) => new TextDecoder().decode(p.frame))).toEqual(["i1", "i2", "b1", "b2"]);
  });

  it("answers an ARP request for its IP on RX, the backend never sees it [NET-INTERCEPT-MAC NET-TX-INTERCEPT]", () => {
    const interceptor = new MacInterceptor({ mac: MMDS_MAC, ip: [169, 254, 169, 254] });
    const { dev, guest, backend } = setup({ interceptor });
    guest.send(arpRequest(MAC, [169, 254, 0, 2], [169, 254, 169, 254]));
    guest.send(arpRequest(MAC, [169, 254, 0, 2], [169, 254, 0, 1])); // someone else's: to the wire
    dev.processTxNow();
    expect((backend as CapturingBackend).sent).toHaveLength(1);
    guest.postRx(2);
    dev.processRxNow();
    const [reply] = guest.reapRx();
    const arp = parseArp(reply!.frame)!;
    expect(arp.op).toBe(ARP_REPLY);
    expect(arp.senderMac).toEqual(MMDS_MAC);
    expect(arp.targetMac).toEqual(MAC);
  });

  it("a frame larger than the buffer is truncated to the writable capacity [NET-RX-USED-LEN]", () => {
    const b = new CapturingBackend();
    b.inject(new Uint8Array(100).fill(7));
    const { dev, guest } = setup({ backend: b });
    guest.postRx(1, 40, [5, 30]);
    dev.processRxNow();
    const [p] = guest.reapRx();
    expect(p!.usedLength).toBe(40);
    expect(p!.frame).toEqual(new Uint8Array(28).fill(7));
  });

  it("frames wait while the guest has no buffers; beyond the bound they are dropped and counted [NET-RX-PENDING-BOUND NET-BACKEND-LOOPBACK]", () => {
    const lb = new LoopbackBackend({ queueLimit: 2 });
    const { dev, guest } = setup({ backend: lb });
    for (const s of ["a1", "a2", "a3"]) guest.send(enc(s));
    dev.processTxNow();
    expect(dev.processRxNow()).toBe(0);
    expect(lb.pending).toBe(2);
    expect(lb.stats.dropped).toBe(1);
    expect(dev.stats.rxNoBuffers).toBe(1);
    guest.postRx(4);
    expect(dev.processRxNow()).toBe(2);
    expect(guest.reapRx().map((p) => new TextDecoder().decode(p.frame))).toEqual(["a1", "a2"]);
  });

  it("never writes into a readable descriptor of an RX chain [NET-RX-WRITABLE-ONLY]", () => {
    const b = new CapturingBackend();
    b.inject(new Uint8Array(50).fill(9));
    const { dev, guest } = setup({ backend: b });
    const ro = guest.rxSlotAddr(7);
    guest.memory.slice(ro, 16, true)!.fill(0x55);
    const head = guest.rxDriver.addChain([
      { addr: ro, len: 16 },
      { addr: guest.rxSlotAddr(6), len: 100, write: true },
    ]);
    dev.processRxNow();
    expect(guest.memory.slice(ro, 16)).toEqual(new Uint8Array(16).fill(0x55));
    expect(guest.rxDriver.reapUsed()).toEqual([{ id: head, len: 62 }]);
  });

  it("a legacy 10-byte header has no num_buffers [NET-HDR-LEN NET-RX-HDR]", () => {
    const b = new CapturingBackend();
    b.inject(enc("legacy"));
    const { dev, guest } = setup({ backend: b, features: bit(F.MAC) });
    expect(dev.headerLength).toBe(10);
    guest.postRx(1, 64);
    dev.processRxNow();
    const [p] = guest.reapRx();
    expect(p!.usedLength).toBe(16);
    expect(p!.frame).toEqual(enc("legacy"));
  });

  it("with MRG_RXBUF a frame spans chains, num_buffers counts them, unused chains go back [NET-RX-MRG NET-RX-HDR]", () => {
    const b = new CapturingBackend();
    const frame = Uint8Array.from({ length: 250 }, (_, i) => i & 0xff);
    b.inject(frame);
    const { dev, guest } = setup({ backend: b, cfg: { mtu: 400, mrgRxbuf: true } });
    guest.postRx(3, 100); // 300 < 12 + 418: too little room, the frame waits
    expect(dev.processRxNow()).toBe(0);
    expect(b.pending).toBe(1);
    guest.postRx(3, 100);
    expect(dev.processRxNow()).toBe(3);
    const got = guest.reapRx();
    expect(got.map((p) => p.usedLength)).toEqual([100, 100, 62]);
    expect(got[0]!.header.numBuffers).toBe(3);
    const joined = new Uint8Array(250);
    joined.set(got[0]!.frame, 0);
    joined.set(guest.memory.slice(guest.rxSlotAddr(1), 100)!, 88);
    joined.set(guest.memory.slice(guest.rxSlotAddr(2), 62)!, 188);
    expect(joined).toEqual(frame);
    // The three chains not used are still available for the next frame.
    b.inject(enc("short"));
    expect(dev.processRxNow()).toBe(0); // 300 bytes left < 430 needed
    guest.postRx(2, 100);
    expect(dev.processRxNow()).toBe(1);
    expect(guest.reapRx()[0]!.header.numBuffers).toBe(1);
  });
});

describe("notifications", () => {
  it("with EVENT_IDX the device interrupts only when used_event is crossed [NET-NOTIFY]", () => {
    const b = new CapturingBackend();
    const { dev, guest } = setup({ backend: b, cfg: { eventIdx: true } });
    expect(guest.eventIdx).toBe(true);
    guest.txDriver.setUsedEvent(5); // the driver wants an interrupt once used idx passes 5
    for (let i = 0; i < 3; i++) guest.send(enc(`f${i}xxxxxxxxxxxxxx`));
    dev.processTxNow();
    expect(guest.interrupts[TX_QUEUE]).toBe(0);
    guest.reapTx();
    for (let i = 0; i < 4; i++) guest.send(enc(`g${i}xxxxxxxxxxxxxx`));
    dev.processTxNow();
    expect(guest.interrupts[TX_QUEUE]).toBe(1);
  });

  it("without EVENT_IDX every batch that completes chains interrupts once [NET-NOTIFY]", () => {
    const { dev, guest } = setup();
    guest.send(enc("one"));
    guest.send(enc("two"));
    dev.processTxNow();
    expect(guest.interrupts[TX_QUEUE]).toBe(1);
    expect(dev.processTxNow()).toBe(0);
    expect(guest.interrupts[TX_QUEUE]).toBe(1);
  });
});

describe("Effect edges", () => {
  it("run delivers loopback frames as they arrive, without a kick [NET-BACKEND-LOOPBACK]", async () => {
    const lb = new LoopbackBackend();
    const dev = new NetDevice(config, lb);
    const guest = NetGuest.create(dev, { queueSize: 8 });
    guest.postRx(4);
    const program = Effect.scoped(
      Effect.gen(function* () {
        yield* dev.start;
        guest.send(enc("via-run"));
        yield* dev.processTx;
        yield* Effect.sleep("20 millis");
        return guest.reapRx();
      }),
    );
    const got = await Effect.runPromise(program);
    expect(got.map((p) => new TextDecoder().decode(p.frame))).toEqual(["via-run"]);
  });

  it("run waits for an RX kick, not the backend, while the guest has no buffers [TAP-WAIT NET-RX-PENDING-BOUND]", async () => {
    const lb = new LoopbackBackend();
    const dev = new NetDevice(config, lb);
    const guest = NetGuest.create(dev, { queueSize: 8 });
    const program = Effect.scoped(
      Effect.gen(function* () {
        yield* dev.start;
        guest.send(enc("waits"));
        yield* dev.processTx;
        yield* Effect.sleep("50 millis");
        const passesWhileStarved = dev.stats.rxPasses;
        const pending = lb.pending;
        guest.postRx(2);
        yield* dev.processRx; // the RX kick
        guest.send(enc("after"));
        yield* dev.processTx;
        yield* Effect.sleep("20 millis");
        return { passesWhileStarved, pending, got: guest.reapRx() };
      }),
    );
    const r = await Effect.runPromise(program);
    expect(r.pending).toBe(1);
    expect(r.passesWhileStarved).toBeLessThanOrEqual(2);
    expect(r.got.map((p) => new TextDecoder().decode(p.frame))).toEqual(["waits", "after"]);
  });

  it("make takes the backend and the interceptor from the context [NET-TX-INTERCEPT]", async () => {
    const b = new CapturingBackend();
    const i = new MacInterceptor({ mac: MMDS_MAC });
    const dev = await Effect.runPromise(
      NetDevice.make(config).pipe(
        Effect.provide(Layer.merge(CapturingLayer(b), Layer.succeed(FrameInterceptor, i))),
      ),
    );
    expect(dev.backend).toBe(b);
    expect(dev.interceptor).toBe(i);
  });
});

it("SplitDriver layout keeps the queues apart [NET-QUEUES]", () => {
  const dev = new NetDevice(config, new LoopbackBackend());
  const g = NetGuest.create(dev, { queueSize: 4 });
  expect(g.rxDriver).toBeInstanceOf(SplitDriver);
  expect(g.txDriver.layout.descTable).toBeGreaterThan(g.rxDriver.layout.usedRing);
});

describe("the background RX loop", () => {
  it("delivers the interceptor's reply to a frame it took on TX without any other wake-up [NET-TX-INTERCEPT NET-RX-ORDER]", async () => {
    const mac = [0x06, 0x00, 0xac, 0x10, 0x00, 0x02];
    const interceptor = new MacInterceptor({ mac: [6, 1, 0x23, 0x45, 0x67, 1], ip: [169, 254, 169, 254] });
    const backend = new LoopbackBackend();
    const dev = new NetDevice({ mac, mtu: 1500 }, backend, interceptor);
    const guest = NetGuest.create(dev, { queueSize: 8 });
    const got = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          yield* dev.start;
          guest.postRx(4);
          yield* dev.processRx; // buffers posted; nothing to deliver yet
          yield* Effect.sleep("10 millis"); // the loop is now waiting on the backend
          guest.send(arpRequest(mac, [169, 254, 0, 2], [169, 254, 169, 254]));
          yield* dev.processTx;
          // Only the interceptor has RX traffic; the backend never becomes readable.
          for (let i = 0; i < 200 && interceptor.pendingRx > 0; i++) yield* Effect.sleep("5 millis");
          return guest.reapRx();
        }),
      ),
    );
    expect(dev.stats.txIntercepted).toBe(1);
    expect(got).toHaveLength(1);
    const reply = parseArp(got[0]!.frame);
    expect(reply?.op).toBe(ARP_REPLY);
  });
});

describe("feature negotiation after activation", () => {
  it("an ack after activate is FeaturesLocked and leaves the header length as negotiated [NET-FEAT-LOCKED]", () => {
    const backend = new CapturingBackend();
    const dev = new NetDevice({ mac: [6, 0, 0, 0, 0, 1], mtu: 1500 }, backend);
    const guest = NetGuest.create(dev, { queueSize: 8 });
    expect(dev.headerLength).toBe(12);
    const r = dev.ackFeatures(0n);
    expect(r.ok ? "ok" : r.error._tag).toBe("FeaturesLocked");
    expect(dev.headerLength).toBe(12);
    const frame = Uint8Array.from({ length: 60 }, (_, i) => i);
    guest.send(frame);
    dev.processTxNow();
    expect(backend.sent).toEqual([frame]);
  });
});
