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
import { F, bit } from "../../spec/net.ts";
import { GuestMemory } from "../memory/guest-memory.ts";
import type { NetBackendShape, NetBackendStats, RxBuffer, TxPacket } from "./backend.ts";
import { CapturingBackend, CapturingLayer } from "./backend.ts";
import { NetDevice, RX_QUEUE, TX_QUEUE } from "./device.ts";
import { NetGuest } from "./guest.ts";
import { CLAIM_HEAD_BYTES } from "./interceptor.ts";

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
    ] as const) {
      const dst = new Uint8Array(size).fill(0xee);
      const got = n === undefined ? p.copyFrame(dst, at) : p.copyFrame(dst, at, n);
      reads.push({ at, n, size, got, bytes: dst });
    }
    this.probes.push({
      headerLength: p.headerLength,
      frameLength: L,
      segments,
      beyond: p.segment(p.segmentCount),
      reads,
    });
    return super.send(p);
  }
}

describe("what the backend sees of a TX chain", () => {
  it("copyFrame copies the frame (never the header) into dst from `at`, at most n and dst's length, nothing for negative arguments; segments are the readable descriptors [NET-TX-HDR-STRIP NET-TX-GATHER]", () => {
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
