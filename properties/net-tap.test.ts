/**
 * virtio-net on a real TAP, as properties: for any frame and any way the guest splits its
 * TX chain, the kernel sees exactly that frame (one writev straight from guest memory);
 * for any frame the kernel emits and any split of the RX chain, the guest reads exactly
 * that frame behind a well-formed header (one readv straight into guest memory).
 * Runs inside a namespace this file creates and removes; skipped, with the reason
 * printed, without root or /dev/net/tun.
 */
import { Effect, Exit, Scope } from "effect";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { NetDevice } from "../impl/net/device.ts";
import { NetGuest } from "../impl/net/guest.ts";
import {
  acquireNetns,
  acquireTapBackendIn,
  configureTapIn,
  tapUnavailableReason,
} from "../impl/native/netns.ts";
import { PacketSocket } from "../impl/native/packet-socket.ts";
import type { TapBackend } from "../impl/native/tap-backend.ts";
import { property } from "./harness.ts";

const reason = tapUnavailableReason();
if (reason !== undefined) console.log(`TAP properties skipped: ${reason}`);
const d = reason === undefined ? describe : describe.skip;

const GUEST_MAC = [0x02, 0, 0, 0, 0, 0x02];
const PEER_MAC = [0x02, 0, 0, 0, 0, 0x99];
/** IEEE local experimental ethertype: the kernel drops it quietly, and it marks our frames. */
const ETHERTYPE = [0x88, 0xb5];

const frameOf = (
  dst: readonly number[],
  src: readonly number[],
  tag: number,
  body: Uint8Array,
): Uint8Array => {
  const f = new Uint8Array(14 + 4 + body.length);
  f.set(dst, 0);
  f.set(src, 6);
  f.set(ETHERTYPE, 12);
  new DataView(f.buffer).setUint32(14, tag);
  f.set(body, 18);
  return f;
};

d("virtio-net over a real TAP", () => {
  let scope: Scope.Closeable;
  let backend: TapBackend;
  let sock: PacketSocket;
  let tag = 1;

  beforeAll(async () => {
    scope = Effect.runSync(Scope.make());
    const setup = Effect.gen(function* () {
      const ns = yield* acquireNetns("prop");
      const b = yield* acquireTapBackendIn(ns, "");
      configureTapIn(ns, b.tap.ifName, "10.202.0.1/24");
      const s = PacketSocket.open(ns, b.tap.ifName);
      if (!s.ok) throw new Error(s.error);
      yield* Effect.addFinalizer(() => Effect.sync(() => s.value.close()));
      return { b, s: s.value };
    });
    const r = await Effect.runPromise(Scope.provide(scope)(setup));
    backend = r.b;
    sock = r.s;
  });
  afterAll(async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void));
  });

  property(
    "anyTxSplitReachesTheKernelAsTheSameFrame",
    ["TAP-WRITEV", "NET-TX-GATHER", "NET-TX-HDR-STRIP", "TAP-VNET-HDR-SZ"],
    fc.asyncProperty(
      fc.integer({ min: 0, max: 1400 }),
      fc.array(fc.nat({ max: 1600 }), { maxLength: 6 }),
      fc.boolean(),
      async (bodyLen, splits, legacy) => {
        const dev = new NetDevice({ mac: GUEST_MAC, mtu: 1500 }, backend);
        const guest = NetGuest.create(dev, { queueSize: 16, features: legacy ? 0n : dev.offeredFeatures });
        const t = tag++;
        const frame = frameOf(
          PEER_MAC,
          GUEST_MAC,
          t,
          Uint8Array.from({ length: bodyLen }, (_, i) => (i * 7 + t) & 0xff),
        );
        guest.send(frame, splits);
        expect(dev.processTxNow()).toBe(1);
        expect(dev.stats.txBackendErrors).toBe(0);
        const got = new Uint8Array(2048);
        for (;;) {
          const n = await sock.recv(got, 2000);
          if (n === undefined) throw new Error(`frame ${t} never reached the kernel`);
          const seen = got.subarray(0, n);
          if (
            seen[12] === ETHERTYPE[0] &&
            seen[13] === ETHERTYPE[1] &&
            new DataView(seen.buffer).getUint32(14) === t
          ) {
            expect(seen).toEqual(frame);
            return;
          }
        }
      },
    ),
    { numRuns: 25 },
  );

  property(
    "anyKernelFrameLandsInAnyRxSplitBehindAWellFormedHeader",
    ["TAP-READV", "NET-RX-HDR", "NET-RX-USED-LEN", "NET-RX-FLAGS"],
    fc.asyncProperty(
      fc.integer({ min: 46, max: 1400 }),
      fc.array(fc.integer({ min: 1, max: 1599 }), { maxLength: 5 }),
      fc.boolean(),
      async (bodyLen, splits, legacy) => {
        const dev = new NetDevice({ mac: GUEST_MAC, mtu: 1500 }, backend);
        const guest = NetGuest.create(dev, { queueSize: 16, features: legacy ? 0n : dev.offeredFeatures });
        const t = tag++;
        const frame = frameOf(
          GUEST_MAC,
          PEER_MAC,
          t,
          Uint8Array.from({ length: bodyLen }, (_, i) => (i * 11 + t) & 0xff),
        );
        // Drain anything earlier runs left, then send ours from the kernel side.
        const scratch = new Uint8Array(65562);
        while (backend.tap.readInto(scratch) > 0) {
          // discard
        }
        expect(sock.send(frame)).toBe(frame.length);
        const deadline = Date.now() + 2000;
        expect(guest.postRx(1, 1600, splits)).toBe(1);
        for (;;) {
          dev.processRxNow();
          const reaped = guest.reapRx();
          // A frame that was not ours used the buffer: give the device a fresh one.
          if (reaped.length > 0) guest.postRx(1, 1600, splits);
          for (const p of reaped) {
            const f = p.frame;
            if (
              f[12] === ETHERTYPE[0] &&
              f[13] === ETHERTYPE[1] &&
              new DataView(f.buffer, f.byteOffset).getUint32(14) === t
            ) {
              expect(f).toEqual(frame);
              expect(p.usedLength).toBe(dev.headerLength + frame.length);
              expect(p.header.numBuffers).toBe(legacy ? 0 : 1);
              expect(p.header.flags).toBe(0);
              expect(p.header.gsoType).toBe(0);
              return;
            }
          }
          if (Date.now() > deadline) throw new Error(`frame ${t} never reached the guest`);
          await Effect.runPromise(Effect.timeoutOption(backend.waitReadable, "100 millis"));
        }
      },
    ),
    { numRuns: 25 },
  );
});
