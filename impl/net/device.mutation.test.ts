/**
 * Edge cases of the net device, written for `npm run mutate -- impl/net/device.ts`: a
 * backend that carries the virtio_net_hdr (as a TAP does) on every header path, the TX and
 * RX views the backend sees at their bounds, queue errors, the merged RX path across
 * several frames and broken chains, reset and re-activation, and the run loop's waits.
 * Expected values come from spec/net.ts where it has a model.
 */
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import * as spec from "../../spec/net.ts";
import { GuestMemory } from "../memory/guest-memory.ts";
import type { NetBackendShape, NetBackendStats, RxBuffer, TxPacket } from "./backend.ts";
import { CapturingBackend, CapturingLayer } from "./backend.ts";
import { NetDevice, RX_QUEUE, TX_QUEUE } from "./device.ts";
import { NetGuest } from "./guest.ts";
import { PACKED_RING } from "../queue/device-queue.ts";
import { CLAIM_HEAD_BYTES, MacInterceptor, noInterceptor } from "./interceptor.ts";
import { VIRTIO_NET_F as F, featureBit as bit } from "../../wire/features.ts";

const MAC = [0x06, 0x00, 0xac, 0x10, 0x00, 0x02];
const frameOf = (n: number, seed = 1): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);

/**
 * A backend that, like a TAP with IFF_VNET_HDR, writes the virtio_net_hdr itself: each
 * queued packet is its header bytes (as the kernel would fill them) then the frame. It
 * cannot tell how many packets wait (`pending` undefined), as a TAP cannot.
 */
class HeaderBackend implements NetBackendShape {
  readonly name = "header";
  readonly carriesHeader = true;
  readonly stats: NetBackendStats = { sent: 0, received: 0, dropped: 0, errors: 0 };
  readonly waitReadable: Effect.Effect<void> = Effect.never;
  readonly packets: Uint8Array[] = [];
  headerLength: 10 | 12 | undefined;
  configure(headerLength: 10 | 12): boolean {
    this.headerLength = headerLength;
    return true;
  }
  send(): number {
    return 0;
  }
  receive(dst: RxBuffer): number {
    const p = this.packets.shift();
    if (p === undefined) return -1;
    return dst.write(p, 0, p.length, 0);
  }
}

/** A kernel-filled header: DATA_VALID set, gso fields and num_buffers holding junk. */
const kernelHeader = (hdrLen: 10 | 12): Uint8Array =>
  spec.encodeHeader(
    {
      flags: 0x02,
      gsoType: 0,
      hdrLen: 0x1111,
      gsoSize: 0x2222,
      csumStart: 0x3333,
      csumOffset: 0x4444,
      numBuffers: 0x7777,
    },
    hdrLen,
  );

const packet = (hdr: Uint8Array, frame: Uint8Array): Uint8Array => {
  const p = new Uint8Array(hdr.length + frame.length);
  p.set(hdr, 0);
  p.set(frame, hdr.length);
  return p;
};

/** The bytes the guest should see for a packet from a header backend (NET-RX-FLAGS, NET-RX-HDR). */
const expectedFromHeaderBackend = (
  p: Uint8Array,
  hdrLen: 10 | 12,
  numBuffers: number,
  guestCsum: boolean,
): Uint8Array => {
  const out = p.slice();
  if (!guestCsum) out[0] = 0;
  if (hdrLen === 12) {
    out[10] = numBuffers & 0xff;
    out[11] = numBuffers >>> 8;
  }
  return out;
};

/** The bytes of a chain's writable descriptors, concatenated, `n` of them. */
const readChain = (g: NetGuest, descs: readonly { addr: number; len: number }[], n: number): Uint8Array => {
  const out = new Uint8Array(n);
  let at = 0;
  for (const d of descs) {
    if (at >= n) break;
    const k = Math.min(d.len, n - at);
    out.set(g.memory.slice(d.addr, k)!, at);
    at += k;
  }
  return out;
};

describe("a backend that carries the header (TAP)", () => {
  // Each writable-descriptor layout takes another header path: the whole header in the first
  // segment, the header split (num_buffers and flags written through the buffer), and an
  // empty first segment (flags cleared through the buffer).
  const layouts: readonly (readonly number[])[] = [[200], [5, 195], [11, 1, 188], [0, 200], [0, 3, 197]];
  for (const hdrLen of [10, 12] as const) {
    for (const guestCsum of [false, true]) {
      it(`${hdrLen}-byte header, GUEST_CSUM ${guestCsum ? "acked" : "not acked"}: flags cleared unless acked, num_buffers 1, the rest as the backend wrote it [NET-RX-FLAGS NET-RX-HDR NET-RX-USED-LEN]`, () => {
        for (const lens of layouts) {
          const b = new HeaderBackend();
          const dev = new NetDevice({ mac: MAC, mtu: 1500, csum: true }, b);
          const features =
            (guestCsum ? bit(F.CSUM) | bit(F.GUEST_CSUM) : bit(F.CSUM)) |
            (hdrLen === 12 ? bit(F.VERSION_1) : 0n);
          const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512, features });
          expect(dev.headerLength).toBe(hdrLen);
          expect(b.headerLength).toBe(hdrLen);
          const p = packet(kernelHeader(hdrLen), frameOf(60));
          b.packets.push(p);
          let at = g.rxSlotAddr(0);
          const descs = lens.map((len) => {
            const d = { addr: at, len, write: true };
            at += len;
            return d;
          });
          g.memory.slice(g.rxSlotAddr(0), 200, true)!.fill(0xee);
          const head = g.rxDriver.addChain(descs)!;
          expect(dev.processRxNow()).toBe(1);
          expect(g.rxDriver.reapUsed()).toEqual([{ id: head, len: p.length }]);
          expect(readChain(g, descs, p.length)).toEqual(expectedFromHeaderBackend(p, hdrLen, 1, guestCsum));
          // Nothing past the packet was written.
          expect(g.memory.slice(g.rxSlotAddr(0) + p.length, 200 - p.length)).toEqual(
            new Uint8Array(200 - p.length).fill(0xee),
          );
          expect(dev.stats.rxFrames).toBe(1);
          expect(dev.stats.rxBytes).toBe(p.length);
        }
      });
    }
  }

  it("with MRG_RXBUF num_buffers is the count of chains the packet used, written into the first [NET-RX-MRG NET-RX-HDR NET-RX-FLAGS]", () => {
    for (const firstLen of [100, 6, 0]) {
      const b = new HeaderBackend();
      const dev = new NetDevice({ mac: MAC, mtu: 100, mrgRxbuf: true, csum: true }, b);
      const g = NetGuest.create(dev, {
        queueSize: 8,
        bufferSize: 512,
        features: bit(F.MRG_RXBUF) | bit(F.VERSION_1),
      });
      const p = packet(kernelHeader(12), frameOf(110));
      b.packets.push(p);
      // First chain: [firstLen] (+ 100 more when it is short), then chains of 50.
      const first =
        firstLen >= 12
          ? [{ addr: g.rxSlotAddr(0), len: firstLen, write: true }]
          : [
              { addr: g.rxSlotAddr(0), len: firstLen, write: true },
              { addr: g.rxSlotAddr(0) + firstLen, len: 100, write: true },
            ];
      const chains = [first, ...[1, 2, 3].map((k) => [{ addr: g.rxSlotAddr(k), len: 50, write: true }])];
      const heads = chains.map((c) => g.rxDriver.addChain(c)!);
      const caps = chains.map((c) => c.reduce((a, d) => a + d.len, 0));
      const want = spec.rxMergeable(110, 12, caps, spec.maxFrameLength({ mtu: 100 }));
      expect(want).not.toBe("wait");
      if (want === "wait") return;
      expect(dev.processRxNow()).toBe(want.used.length);
      expect(g.rxDriver.reapUsed()).toEqual(want.used.map((len, k) => ({ id: heads[k]!, len })));
      const descs = chains.flat();
      expect(readChain(g, descs, p.length)).toEqual(
        expectedFromHeaderBackend(p, 12, want.used.length, false),
      );
    }
  });
});

/** A backend that, on send, asks the TX view everything a backend may ask, and records the answers. */
class ProbeBackend extends CapturingBackend {
  probes: {
    headerLength: number;
    frameLength: number;
    segments: Uint8Array[];
    beyond: Uint8Array | undefined;
    reads: { at: number; n: number | undefined; size: number; got: number; bytes: Uint8Array }[];
    /** copyFrame(dst, at, n, into): into a 16-byte dst from `into`. */
    intoReads: { at: number; n: number; into: number; got: number; bytes: Uint8Array }[];
  }[] = [];
  override send(p: TxPacket): number {
    const segments: Uint8Array[] = [];
    for (let i = 0; i < p.segmentCount; i++) segments.push(p.segment(i)!.slice());
    const reads = [];
    const L = p.frameLength;
    for (const [at, n, size] of [
      [0, undefined, L],
      [0, undefined, L + 5],
      [3, 7, L],
      [0, L + 10, 4],
      [L - 2, undefined, 8],
      [L, undefined, 4],
      [-1, undefined, L],
      [-12, undefined, L],
      [0, -1, L],
      [2, 0, L],
      [0, NaN, L],
    ] as const) {
      const dst = new Uint8Array(size).fill(0xee);
      const got = n === undefined ? p.copyFrame(dst, at) : p.copyFrame(dst, at, n);
      reads.push({ at, n, size, got, bytes: dst });
    }
    const intoReads = [];
    for (const [at, n, into] of [
      [0, 16, 10],
      [2, 20, 4],
      [0, 3, 12],
      [5, 16, 0],
      [0, 16, 16],
      [0, 16, 20],
      [0, 16, -1],
    ] as const) {
      const dst = new Uint8Array(16).fill(0xee);
      intoReads.push({ at, n, into, got: p.copyFrame(dst, at, n, into), bytes: dst });
    }
    this.probes.push({
      headerLength: p.headerLength,
      frameLength: L,
      segments,
      beyond: p.segment(p.segmentCount),
      reads,
      intoReads,
    });
    return super.send(p);
  }
}

describe("what the backend sees of a TX chain", () => {
  it("copyFrame copies the frame (never the header) from `at` into dst (from `into`), at most n and the room left in dst, nothing for negative arguments; segments are the readable descriptors [NET-TX-HDR-STRIP NET-TX-GATHER]", () => {
    for (const [features, hdrLen] of [
      [bit(F.VERSION_1), 12],
      [bit(F.MAC), 10],
    ] as const) {
      const b = new ProbeBackend();
      const dev = new NetDevice({ mac: MAC, mtu: 1500 }, b);
      const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512, features });
      const frame = frameOf(40, 3);
      const header = Uint8Array.from({ length: 12 }, (_, i) => 0xa0 + i); // a header that must not leak
      g.send(frame, [4, hdrLen + 9], header);
      expect(dev.processTxNow()).toBe(1);
      const [p] = b.probes;
      expect(p!.headerLength).toBe(hdrLen);
      expect(p!.frameLength).toBe(40);
      const wire = new Uint8Array(hdrLen + 40);
      wire.set(header.subarray(0, hdrLen), 0);
      wire.set(frame, hdrLen);
      expect(p!.segments).toEqual([wire.slice(0, 4), wire.slice(4, hdrLen + 9), wire.slice(hdrLen + 9)]);
      expect(p!.beyond).toBeUndefined();
      for (const r of p!.reads) {
        const n = r.n === undefined ? r.size : r.n;
        const want = r.at >= 0 && n >= 0 ? frame.slice(r.at, r.at + Math.min(n, r.size)) : new Uint8Array(0);
        expect({ ...r, bytes: r.bytes.slice(0, r.got) }).toEqual({ ...r, got: want.length, bytes: want });
        expect(r.bytes.subarray(r.got).every((x) => x === 0xee)).toBe(true);
      }
      // From `into`: at most the room left in dst after it; an `into` outside dst moves nothing.
      for (const r of p!.intoReads) {
        const room = r.into >= 0 && r.into <= 16 ? 16 - r.into : 0;
        const want = frame.slice(r.at, r.at + Math.min(r.n, room));
        const put = new Uint8Array(16).fill(0xee);
        if (room > 0) put.set(want, r.into);
        expect({ ...r, bytes: Array.from(r.bytes) }).toEqual({
          ...r,
          got: want.length,
          bytes: Array.from(put),
        });
      }
      expect(b.sent).toEqual([frame]);
      expect(dev.stats.txFrames).toBe(1);
      expect(dev.stats.txBytes).toBe(40);
    }
  });
});

describe("queue errors", () => {
  it("a refused head or an avail idx too far ahead is counted as a queue error on either queue, an empty queue is not [NET-HOSTILE]", () => {
    for (const mrgRxbuf of [false, true]) {
      const b = new CapturingBackend();
      const dev = new NetDevice({ mac: MAC, mtu: 1500, mrgRxbuf }, b);
      const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
      b.inject(frameOf(20));
      // Empty queues: nothing counted.
      expect(dev.processTxNow()).toBe(0);
      expect(dev.processRxNow()).toBe(0);
      expect(dev.stats.queueErrors).toBe(0);
      expect(dev.lastQueueError).toBeNull();
      // A head outside the descriptor table (PopStatus.InvalidHead).
      g.txDriver.pushAvail(99);
      g.txDriver.publish();
      expect(dev.processTxNow()).toBe(0);
      expect(dev.stats.queueErrors).toBe(1);
      g.rxDriver.pushAvail(99);
      g.rxDriver.publish();
      expect(dev.processRxNow()).toBe(0);
      expect(dev.stats.queueErrors).toBe(2);
      expect(b.pending).toBe(1);
      // An avail idx more than the queue size ahead (PopStatus.Error, with its error).
      g.rxDriver.setAvailIdx(g.rxDriver.readAvailIdx() + 20);
      expect(dev.processRxNow()).toBe(0);
      expect(dev.stats.queueErrors).toBe(3);
      expect(dev.lastQueueError).toEqual({ _tag: "InvalidAvailIdx", len: 21, size: 8 });
      g.txDriver.setAvailIdx(g.txDriver.readAvailIdx() + 30);
      expect(dev.processTxNow()).toBe(0);
      expect(dev.stats.queueErrors).toBe(4);
      expect(dev.lastQueueError).toEqual({ _tag: "InvalidAvailIdx", len: 31, size: 8 });
      expect(dev.stats.interrupts).toEqual([0, 0]);
    }
  });
});

describe("dispatch, notification counts", () => {
  it("processQueue runs TX for queue 1, RX for queue 0, nothing for others; each batch that completes chains counts one interrupt [NET-QUEUES NET-NOTIFY]", () => {
    const b = new CapturingBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 1500 }, b);
    const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    g.send(frameOf(30));
    b.inject(frameOf(20));
    g.postRx(1);
    expect(dev.processQueue(2)).toBe(0);
    expect(dev.processQueue(-1)).toBe(0);
    expect(b.sent).toHaveLength(0);
    expect(b.pending).toBe(1);
    expect(dev.processQueue(TX_QUEUE)).toBe(1);
    expect(b.sent).toHaveLength(1);
    expect(b.pending).toBe(1);
    expect(dev.stats.interrupts).toEqual([0, 1]);
    expect(dev.processQueue(RX_QUEUE)).toBe(1);
    expect(b.pending).toBe(0);
    expect(dev.stats.interrupts).toEqual([1, 1]);
    expect(g.interrupts).toEqual([1, 1]);
    expect(dev.processQueue(RX_QUEUE)).toBe(0);
    expect(dev.processQueue(TX_QUEUE)).toBe(0);
    expect(dev.stats.interrupts).toEqual([1, 1]);
  });

  it("with EVENT_IDX a batch the driver does not want signalled is not counted as an interrupt [NET-NOTIFY]", () => {
    const b = new CapturingBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 1500, eventIdx: true }, b);
    const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    g.txDriver.setUsedEvent(5);
    g.send(frameOf(30));
    expect(dev.processTxNow()).toBe(1);
    expect(dev.stats.interrupts).toEqual([0, 0]);
    expect(g.interrupts).toEqual([0, 0]);
  });
});

describe("reset and re-activation", () => {
  it("reset drops memory, features and header length; the next driver negotiates afresh and is served by what it acked [NET-FEAT-RECORD NET-HDR-LEN NET-RX-MRG NET-RX-FLAGS]", () => {
    const b = new HeaderBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 100, mrgRxbuf: true, csum: true }, b);
    // First driver: MRG_RXBUF and GUEST_CSUM.
    const g1 = NetGuest.create(dev, {
      queueSize: 8,
      bufferSize: 512,
      features: bit(F.MRG_RXBUF) | bit(F.CSUM) | bit(F.GUEST_CSUM),
    });
    expect(dev.isActive).toBe(true);
    g1.postRx(1, 40); // too little for a merged packet (12 + 118): starved
    b.packets.push(packet(kernelHeader(12), frameOf(20)));
    expect(dev.processRxNow()).toBe(0);
    dev.reset();
    expect(dev.isActive).toBe(false);
    expect(dev.ackedFeatures).toBe(0n);
    expect(dev.headerLength).toBe(12);
    expect(dev.processRxNow()).toBe(0);
    expect(dev.processTxNow()).toBe(0);
    expect(dev.queues[RX_QUEUE].nextAvail).toBe(0);
    // Second driver: legacy header, nothing else; a fresh memory.
    const g2 = NetGuest.create(dev, { queueSize: 8, bufferSize: 512, features: bit(F.CSUM) });
    expect(dev.headerLength).toBe(10);
    expect(b.headerLength).toBe(10);
    b.packets.length = 0;
    const p = packet(kernelHeader(10), frameOf(20));
    b.packets.push(p);
    g2.postRx(1, 40); // enough for this packet alone: no merging now
    expect(dev.processRxNow()).toBe(1);
    const [u] = g2.rxDriver.reapUsed();
    expect(u!.len).toBe(30);
    expect(g2.memory.slice(g2.rxSlotAddr(0), 30)).toEqual(expectedFromHeaderBackend(p, 10, 1, false));
  });

  it("reset while the loop waits for a kick: after re-activation the loop waits for the backend again [TAP-WAIT NET-BACKEND-LOOPBACK]", async () => {
    const b = new CapturingBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 1500 }, b);
    NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    const got = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          yield* dev.start;
          b.inject(frameOf(20)); // no buffers: the pass starves
          yield* Effect.sleep("20 millis");
          const starvedPasses = dev.stats.rxPasses;
          dev.reset();
          const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
          g.postRx(2);
          b.inject(frameOf(21)); // the backend is readable; nobody kicks RX
          for (let i = 0; i < 100 && b.pending > 0; i++) yield* Effect.sleep("5 millis");
          return { starvedPasses, pending: b.pending, rx: g.reapRx() };
        }),
      ),
    );
    expect(got.starvedPasses).toBeGreaterThan(0);
    expect(got.pending).toBe(0);
    expect(got.rx.map((p) => p.frame.length)).toEqual([20, 21]);
  });

  it("a device in a scope is reset when the scope closes [TAP-SCOPE]", async () => {
    const b = new CapturingBackend();
    const dev = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const d = yield* NetDevice.scoped({ mac: MAC, mtu: 1500 });
          NetGuest.create(d, { queueSize: 8, bufferSize: 512 });
          expect(d.isActive).toBe(true);
          return d;
        }),
      ).pipe(Effect.provide(CapturingLayer(b))),
    );
    expect(dev.isActive).toBe(false);
    expect(dev.ackedFeatures).toBe(0n);
  });
});

describe("activation errors", () => {
  it("a queue that is not ready, or a backend that refuses the configuration, fails activation and leaves the device inactive [NET-FEAT-LOCKED]", () => {
    const memory = GuestMemory.of([{ base: 0, bytes: new ArrayBuffer(NetGuest.memoryBytes(8, 512)) }]);
    const dev = new NetDevice({ mac: MAC, mtu: 1500 }, new CapturingBackend());
    dev.ackFeatures(bit(F.VERSION_1));
    const r = dev.activate(memory, () => {});
    expect(r.ok ? "ok" : r.error._tag).toBe("QueueInit");
    expect(r.ok ? -1 : r.error._tag === "QueueInit" ? r.error.queue : -1).toBe(0);
    expect(dev.isActive).toBe(false);
    expect(dev.ackFeatures(bit(F.VERSION_1)).ok).toBe(true);

    class Refusing extends CapturingBackend {
      override configure(): boolean {
        return false;
      }
    }
    const dev2 = new NetDevice({ mac: MAC, mtu: 1500 }, new Refusing());
    expect(() => NetGuest.create(dev2, { queueSize: 8, bufferSize: 512 })).toThrow(/BackendConfigure/);
    expect(dev2.isActive).toBe(false);
    expect(dev2.processTxNow()).toBe(0);
  });
});

describe("the interceptor on TX", () => {
  it("claims sees the first min(frame length, CLAIM_HEAD_BYTES) frame bytes, never the header; a taken frame is whole and counted, not sent [NET-TX-INTERCEPT]", () => {
    const heads: { head: Uint8Array; frameLength: number }[] = [];
    const taken: Uint8Array[] = [];
    const interceptor = {
      claims(head: Uint8Array, frameLength: number): boolean {
        heads.push({ head: head.slice(), frameLength });
        return head[0] === 0x77;
      },
      take(frame: Uint8Array): void {
        taken.push(frame);
      },
      nextRx: (): Uint8Array | undefined => undefined,
    };
    const b = new CapturingBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 1500 }, b, interceptor);
    const g = NetGuest.create(dev, { queueSize: 16, bufferSize: 512 });
    const frames = [1, 20, CLAIM_HEAD_BYTES - 1, CLAIM_HEAD_BYTES, CLAIM_HEAD_BYTES + 1, 300].map((n, k) => {
      const f = frameOf(n, k);
      f[0] = k % 2 === 0 ? 0x77 : 0x11;
      return f;
    });
    for (const f of frames) g.send(f, [5], new Uint8Array(12).fill(0x99));
    expect(dev.processTxNow()).toBe(frames.length);
    expect(heads).toEqual(
      frames.map((f) => ({ head: f.slice(0, Math.min(f.length, CLAIM_HEAD_BYTES)), frameLength: f.length })),
    );
    expect(taken).toEqual(frames.filter((_, k) => k % 2 === 0));
    expect(b.sent).toEqual(frames.filter((_, k) => k % 2 === 1));
    expect(dev.stats.txIntercepted).toBe(3);
    expect(dev.stats.txFrames).toBe(3);
    expect(dev.stats.txBytes).toBe(frames.filter((_, k) => k % 2 === 1).reduce((a, f) => a + f.length, 0));
  });
});

/** Configures both queues like NetGuest.create but activates without any feature ack. */
const activateUnacked = (dev: NetDevice): NetGuest => {
  const probe = new NetDevice({ mac: MAC, mtu: 1500 }, new CapturingBackend());
  const g = NetGuest.create(probe, { queueSize: 8, bufferSize: 512, features: 0n });
  for (const [q, d] of [
    [RX_QUEUE, g.rxDriver],
    [TX_QUEUE, g.txDriver],
  ] as const) {
    probe.queues[q].reset();
    dev.queues[q].configure({
      size: 8,
      descTable: d.layout.descTable,
      availRing: d.layout.availRing,
      usedRing: d.layout.usedRing,
      ready: true,
    });
  }
  probe.reset();
  const r = dev.activate(g.memory, (q) => {
    g.interrupts[q]!++;
  });
  expect(r.ok).toBe(true);
  return g;
};

describe("before negotiation and outside activation", () => {
  it("a device activated without an ack has no merged buffers and no GUEST_CSUM [NET-FEAT-RECORD NET-RX-FLAGS NET-RX-USED-LEN]", () => {
    const b = new HeaderBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 1500, mrgRxbuf: true, csum: true }, b);
    const g = activateUnacked(dev);
    expect(dev.ackedFeatures).toBe(0n);
    expect(dev.headerLength).toBe(12);
    const p = packet(kernelHeader(12), frameOf(30));
    b.packets.push(p);
    g.postRx(1, 100); // far less than a merged packet needs: only the one-chain path fills it
    expect(dev.processRxNow()).toBe(1);
    expect(g.rxDriver.reapUsed()[0]!.len).toBe(p.length);
    expect(g.memory.slice(g.rxSlotAddr(0), p.length)).toEqual(expectedFromHeaderBackend(p, 12, 1, false));
  });

  it("a reset device forgets MRG_RXBUF and GUEST_CSUM: activated again without an ack, RX is one chain per packet with flags cleared [NET-FEAT-RECORD NET-RX-MRG NET-RX-FLAGS]", () => {
    const b = new HeaderBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 1500, mrgRxbuf: true, csum: true }, b);
    NetGuest.create(dev, {
      queueSize: 8,
      bufferSize: 512,
      features: bit(F.MRG_RXBUF) | bit(F.CSUM) | bit(F.GUEST_CSUM) | bit(F.VERSION_1),
    });
    dev.reset();
    const g = activateUnacked(dev);
    expect(dev.ackedFeatures).toBe(0n);
    const p = packet(kernelHeader(12), frameOf(30));
    b.packets.push(p);
    // Far less room than a merged packet needs (12 + 1514): only the one-chain path fills it.
    g.postRx(1, 100);
    expect(dev.processRxNow()).toBe(1);
    expect(g.rxDriver.reapUsed()[0]!.len).toBe(p.length);
    // DATA_VALID (flags 0x02) from the backend is cleared: GUEST_CSUM is no longer acked.
    expect(g.memory.slice(g.rxSlotAddr(0), p.length)).toEqual(expectedFromHeaderBackend(p, 12, 1, false));
  });

  it("TX and RX before activation and after reset complete nothing and report no queue error [NET-HOSTILE]", () => {
    const b = new CapturingBackend();
    b.inject(frameOf(20));
    const dev = new NetDevice({ mac: MAC, mtu: 1500 }, b);
    expect(dev.name).toBe("net");
    expect(dev.isActive).toBe(false);
    expect(dev.processTxNow()).toBe(0);
    expect(dev.processRxNow()).toBe(0);
    NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    dev.reset();
    expect(dev.processTxNow()).toBe(0);
    expect(dev.processRxNow()).toBe(0);
    expect(dev.stats.queueErrors).toBe(0);
    expect(dev.stats.rxPasses).toBe(0);
    expect(dev.lastQueueError).toBeNull();
  });

  it("a packed-ring device refuses an ack without VIRTIO_F_RING_PACKED and takes one with it [NET-FEAT-ACK-SUBSET]", () => {
    const dev = new NetDevice({ mac: MAC, mtu: 1500, ring: PACKED_RING }, new CapturingBackend());
    const r = dev.ackFeatures(bit(F.VERSION_1));
    expect(r.ok ? "ok" : r.error).toEqual({ _tag: "RingNotAcked", ring: "packed" });
    expect(dev.ackedFeatures).toBe(0n);
    const all = bit(F.VERSION_1) | PACKED_RING.featureBits;
    expect(dev.ackFeatures(all).ok).toBe(true);
    expect(dev.ackedFeatures).toBe(all);
  });

  it("make without a FrameInterceptor in the context uses none [NET-TX-INTERCEPT]", async () => {
    const b = new CapturingBackend();
    const dev = await Effect.runPromise(
      NetDevice.make({ mac: MAC, mtu: 1500 }).pipe(Effect.provide(CapturingLayer(b))),
    );
    expect(dev.interceptor).toBe(noInterceptor);
    const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    g.send(frameOf(30));
    expect(dev.processTxNow()).toBe(1);
    expect(b.sent).toEqual([frameOf(30)]);
  });

  it("without EVENT_IDX acked, used_event is not read: every batch interrupts [NET-NOTIFY]", () => {
    const dev = new NetDevice({ mac: MAC, mtu: 1500, eventIdx: true }, new CapturingBackend());
    const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512, features: bit(F.VERSION_1) });
    g.txDriver.setUsedEvent(5);
    g.rxDriver.setUsedEvent(5);
    g.send(frameOf(30));
    expect(dev.processTxNow()).toBe(1);
    expect(g.interrupts).toEqual([0, 1]);
  });
});

describe("drops are typed", () => {
  it("lastTxDrop names the rule a dropped TX chain broke, with its figures [NET-TX-CHAIN-ERROR NET-TX-MAX NET-TX-SHORT]", () => {
    const dev = new NetDevice({ mac: MAC, mtu: 100 }, new CapturingBackend());
    const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    g.send(frameOf(200));
    dev.processTxNow();
    expect(dev.lastTxDrop).toEqual({ _tag: "TxFrameTooLong", length: 200, max: 118 });
    g.txDriver.addChain([{ addr: g.memory.regions[0]!.end + 16, len: 40 }]);
    dev.processTxNow();
    expect(dev.lastTxDrop).toEqual({ _tag: "TxChainError", reason: "GuestMemory" });
    // A bad next after a good head: the walk ends with an error.
    g.txDriver.writeDescriptor(6, { addr: g.txSlotAddr(6), len: 30, flags: 1, next: 7 });
    g.txDriver.writeDescriptor(7, { addr: g.txSlotAddr(7), len: 30, flags: 1, next: 40 });
    g.txDriver.pushAvail(6);
    g.txDriver.publish();
    dev.processTxNow();
    expect(dev.lastTxDrop?._tag).toBe("TxChainError");
    expect(dev.lastTxDrop).not.toEqual({ _tag: "TxChainError", reason: "GuestMemory" });
    g.send(new Uint8Array(0));
    dev.processTxNow();
    expect(dev.lastTxDrop).toEqual({ _tag: "TxFrameTooShort", readable: 12, headerLength: 12 });
    expect(dev.stats.txChainErrors).toBe(2);
  });
});

describe("one-chain RX edges", () => {
  it("a chain whose walk breaks after a writable descriptor is used empty and counted; the frame goes to the next chain [NET-HOSTILE NET-RX-NO-ROOM]", () => {
    const b = new CapturingBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 1500 }, b);
    const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    b.inject(frameOf(20));
    g.rxDriver.writeDescriptor(0, { addr: g.rxSlotAddr(0), len: 100, flags: 3, next: 1 });
    g.rxDriver.writeDescriptor(1, { addr: g.rxSlotAddr(0) + 100, len: 100, flags: 3, next: 50 });
    g.rxDriver.pushAvail(0);
    g.rxDriver.writeDescriptor(2, { addr: g.rxSlotAddr(2), len: 100, flags: 2, next: 0 });
    g.rxDriver.pushAvail(2);
    g.rxDriver.publish();
    expect(dev.processRxNow()).toBe(2);
    expect(g.rxDriver.reapUsed()).toEqual([
      { id: 0, len: 0 },
      { id: 2, len: 32 },
    ]);
    expect(dev.stats.rxChainErrors).toBe(1);
    expect(dev.stats.rxFrames).toBe(1);
  });

  it("a chain with more writable segments than rxSegments is used empty and counted [NET-HOSTILE]", () => {
    const b = new CapturingBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 1500, rxSegments: 3 }, b);
    const g = NetGuest.create(dev, { queueSize: 16, bufferSize: 512 });
    b.inject(frameOf(20));
    g.postRx(1, 400, [100, 200, 300]); // 4 segments
    g.postRx(1, 400, [100, 200]); // 3 segments: fits (one slot is kept free)
    expect(dev.processRxNow()).toBe(2);
    const used = g.rxDriver.reapUsed();
    expect(used.map((u) => u.len)).toEqual([0, 32]);
    expect(dev.stats.rxChainErrors).toBe(1);
  });

  it("an injected frame in a chain smaller than the header: the used length is the chain's capacity [NET-RX-USED-LEN NET-RX-HDR]", () => {
    const interceptor = new MacInterceptor({ mac: [6, 1, 2, 3, 4, 5] });
    interceptor.inject(frameOf(30));
    interceptor.inject(frameOf(31));
    const dev = new NetDevice({ mac: MAC, mtu: 1500 }, new CapturingBackend(), interceptor);
    const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    g.postRx(1, 5);
    g.postRx(1, 12);
    g.postRx(1, 50);
    expect(dev.processRxNow()).toBe(2);
    expect(g.rxDriver.reapUsed().map((u) => u.len)).toEqual([5, 12]);
    expect(dev.stats.rxInjected).toBe(2);
    expect(dev.stats.rxFrames).toBe(2);
    expect(dev.stats.rxBytes).toBe(17);
  });

  it("a packet the backend reports as 0 bytes uses its chain with 0 and the pass goes on [NET-RX-USED-LEN NET-RX-MRG]", () => {
    for (const mrgRxbuf of [false, true]) {
      const b = new HeaderBackend();
      const dev = new NetDevice({ mac: MAC, mtu: 68, mrgRxbuf, csum: true }, b);
      const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
      const p = packet(kernelHeader(12), frameOf(20));
      b.packets.push(new Uint8Array(0), p);
      g.postRx(3, 100);
      expect(dev.processRxNow()).toBe(2);
      expect(g.rxDriver.reapUsed().map((u) => u.len)).toEqual([0, p.length]);
      expect(dev.stats.rxFrames).toBe(2);
    }
  });
});

describe("counting passes that find too few buffers", () => {
  it("rxNoBuffers counts a pass that stops for want of buffers while frames wait, the interceptor's included; not an empty pass, not a queue error [NET-RX-PENDING-BOUND]", () => {
    for (const mrgRxbuf of [false, true]) {
      const interceptor = new MacInterceptor({ mac: [6, 1, 2, 3, 4, 5] });
      const b = new CapturingBackend();
      const dev = new NetDevice({ mac: MAC, mtu: 1500, mrgRxbuf }, b, interceptor);
      const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
      dev.processRxNow(); // nothing waits
      expect(dev.stats.rxNoBuffers).toBe(0);
      interceptor.inject(frameOf(20));
      dev.processRxNow();
      expect(dev.stats.rxNoBuffers).toBe(1);
      interceptor.nextRx();
      b.inject(frameOf(20));
      dev.processRxNow();
      expect(dev.stats.rxNoBuffers).toBe(2);
      expect(dev.stats.rxPasses).toBe(3);
      if (!mrgRxbuf) {
        g.rxDriver.pushAvail(99);
        g.rxDriver.publish();
        dev.processRxNow();
        expect(dev.stats.queueErrors).toBe(1);
        expect(dev.stats.rxNoBuffers).toBe(2);
      }
    }
  });

  it("a backend that cannot tell what waits (a TAP) is not counted [NET-RX-PENDING-BOUND]", () => {
    const b = new HeaderBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 1500 }, b);
    NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    b.packets.push(packet(kernelHeader(12), frameOf(20)));
    dev.processRxNow();
    expect(dev.stats.rxNoBuffers).toBe(0);
  });

  it("with MRG_RXBUF, a ring full of chains too small for a packet is a pass without buffers [NET-RX-MRG NET-RX-PENDING-BOUND]", () => {
    const b = new CapturingBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 1500, mrgRxbuf: true, queueMaxSize: 8 }, b);
    const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    b.inject(frameOf(20));
    expect(g.postRx(8, 100)).toBe(8); // 800 bytes < 12 + 1518
    expect(dev.processRxNow()).toBe(0);
    expect(dev.queues[RX_QUEUE].nextAvail).toBe(0);
    expect(b.pending).toBe(1);
    expect(dev.stats.rxNoBuffers).toBe(1);
  });
});

/** A MacInterceptor that counts how often the run loop asks it for pending replies. */
class CountingInterceptor extends MacInterceptor {
  asked = 0;
  override get pendingRx(): number {
    this.asked++;
    return super.pendingRx;
  }
}

describe("what the run loop waits for", () => {
  it("without an interceptor it waits for the backend only: RX kicks do not wake it [TAP-WAIT]", async () => {
    const b = new CapturingBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 1500 }, b);
    NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    const passes = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          yield* dev.start;
          yield* Effect.sleep("10 millis");
          for (let i = 0; i < 3; i++) {
            dev.processRxNow();
            yield* Effect.sleep("5 millis");
          }
          return dev.stats.rxPasses;
        }),
      ),
    );
    expect(passes).toBe(3);
  });

  it("with an interceptor and nothing pending it does not spin; replies queued before it starts are delivered without a kick [TAP-WAIT NET-RX-ORDER]", async () => {
    const interceptor = new CountingInterceptor({ mac: [6, 1, 2, 3, 4, 5] });
    const dev = new NetDevice({ mac: MAC, mtu: 1500 }, new CapturingBackend(), interceptor);
    const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    const r = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          yield* dev.start;
          yield* Effect.sleep("30 millis");
          const idle = { passes: dev.stats.rxPasses, asked: interceptor.asked };
          return idle;
        }),
      ),
    );
    expect(r.passes).toBeLessThanOrEqual(1);
    expect(r.asked).toBeLessThanOrEqual(4);
    // A reply already queued, buffers posted, nobody kicks: the loop delivers it.
    interceptor.inject(frameOf(40));
    g.postRx(1);
    const got = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          yield* dev.start;
          for (let i = 0; i < 100 && interceptor.pendingRx > 0; i++) yield* Effect.sleep("5 millis");
          return g.reapRx();
        }),
      ),
    );
    expect(got.map((p) => p.frame)).toEqual([frameOf(40)]);
  });

  it("with replies pending on an inactive device it waits instead of spinning [TAP-WAIT]", async () => {
    const interceptor = new CountingInterceptor({ mac: [6, 1, 2, 3, 4, 5] });
    interceptor.inject(frameOf(40));
    const dev = new NetDevice({ mac: MAC, mtu: 1500 }, new CapturingBackend(), interceptor);
    const asked = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          yield* dev.start;
          yield* Effect.sleep("30 millis");
          return interceptor.asked;
        }),
      ),
    );
    expect(asked).toBeLessThanOrEqual(4);
  });

  it("with MRG_RXBUF a pass without room starves the loop until the next kick [TAP-WAIT NET-RX-MRG]", async () => {
    const b = new CapturingBackend();
    const dev = new NetDevice({ mac: MAC, mtu: 1500, mrgRxbuf: true }, b);
    const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
    const r = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          yield* dev.start;
          b.inject(frameOf(20)); // readable, but one 100-byte buffer cannot hold a merged packet
          g.postRx(1, 100);
          yield* Effect.sleep("30 millis");
          const starved = dev.stats.rxPasses;
          g.postRx(4, 500);
          dev.processRxNow();
          return { starved, pending: b.pending };
        }),
      ),
    );
    expect(r.starved).toBeLessThanOrEqual(2);
    expect(r.pending).toBe(0);
  });
});

/** A header backend that fills the RX segments itself, as readv does (TAP-READV). */
class ReadvBackend extends HeaderBackend {
  seen: { capacity: number; lens: number[]; beyond: Uint8Array | undefined }[] = [];
  override receive(dst: RxBuffer): number {
    const p = this.packets.shift();
    if (p === undefined) return -1;
    const lens: number[] = [];
    let at = 0;
    for (let i = 0; i < dst.segmentCount; i++) {
      const s = dst.segment(i)!;
      lens.push(s.length);
      const n = Math.min(s.length, p.length - at);
      s.set(p.subarray(at, at + n));
      at += n;
    }
    this.seen.push({ capacity: dst.capacity, lens, beyond: dst.segment(dst.segmentCount) });
    return at;
  }
}

it("a backend that reads into the RX segments sees the chain's writable descriptors, in order [TAP-READV NET-RX-WRITABLE-ONLY]", () => {
  const b = new ReadvBackend();
  const dev = new NetDevice({ mac: MAC, mtu: 1500, csum: true }, b);
  const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512, features: bit(F.VERSION_1) | bit(F.CSUM) });
  const p = packet(kernelHeader(12), frameOf(100));
  b.packets.push(p);
  const base = g.rxSlotAddr(0);
  g.memory.slice(base + 30, 10, true)!.fill(0xcc);
  const head = g.rxDriver.addChain([
    { addr: base, len: 30, write: true },
    { addr: base + 30, len: 10 },
    { addr: base + 40, len: 50, write: true },
    { addr: base + 90, len: 200, write: true },
  ])!;
  expect(dev.processRxNow()).toBe(1);
  expect(b.seen).toEqual([{ capacity: 280, lens: [30, 50, 200], beyond: undefined }]);
  expect(g.rxDriver.reapUsed()).toEqual([{ id: head, len: p.length }]);
  const want = expectedFromHeaderBackend(p, 12, 1, false);
  expect(g.memory.slice(base, 30)).toEqual(want.subarray(0, 30));
  expect(g.memory.slice(base + 30, 10)).toEqual(new Uint8Array(10).fill(0xcc));
  expect(g.memory.slice(base + 40, p.length - 30)).toEqual(want.subarray(30));
});

it("with MRG_RXBUF chains whose room is exactly header + largest frame take a packet; a broken chain after them does not undo it [NET-RX-MRG NET-HOSTILE]", () => {
  const b = new CapturingBackend();
  const dev = new NetDevice({ mac: MAC, mtu: 68, mrgRxbuf: true }, b); // need 12 + 86 = 98
  const g = NetGuest.create(dev, { queueSize: 8, bufferSize: 512 });
  const frame = frameOf(60);
  b.inject(frame);
  const h0 = g.rxDriver.addChain([{ addr: g.rxSlotAddr(0), len: 50, write: true }])!;
  const h1 = g.rxDriver.addChain([{ addr: g.rxSlotAddr(1), len: 48, write: true }])!;
  const h2 = g.rxDriver.addChain([{ addr: g.rxSlotAddr(2), len: 48 }])!; // no writable byte
  expect(dev.processRxNow()).toBe(3);
  expect(g.rxDriver.reapUsed()).toEqual([
    { id: h0, len: 50 },
    { id: h1, len: 22 },
    { id: h2, len: 0 },
  ]);
  expect(dev.stats.rxChainErrors).toBe(1);
  expect(b.pending).toBe(0);
  const wire = new Uint8Array(72);
  wire.set(spec.rxHeader(12, 2), 0);
  wire.set(frame, 12);
  expect(g.memory.slice(g.rxSlotAddr(0), 50)).toEqual(wire.subarray(0, 50));
  expect(g.memory.slice(g.rxSlotAddr(1), 22)).toEqual(wire.subarray(50));
});
