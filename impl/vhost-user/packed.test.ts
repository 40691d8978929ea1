/**
 * The vhost-user back-end serving a packed-ring device (VIRTIO_F_RING_PACKED): ring sizes
 * that are not powers of two, and SET_VRING_BASE / GET_VRING_BASE carrying both positions
 * with their wrap counters (QEMU docs/interop/vhost-user.rst: bits 0-14 and 15 the avail
 * index and wrap counter, 16-30 and 31 the used ones).
 */
import { Effect, type Scope } from "effect";
import { describe, expect, it } from "vitest";
import { F_PROTOCOL_FEATURES, ProtocolFeature, Req, bit } from "../../spec/vhost-user.ts";
import { loadFdio, signalEventFd } from "../native/fdio.ts";
import { LoopbackBackend } from "../net/backend.ts";
import { NetDevice } from "../net/device.ts";
import { PACKED_RING } from "../queue/device-queue.ts";
import { PackedDriver, packedLayoutAt } from "../queue/packed-driver.ts";
import { GUEST_BASE, expectAck, harness, toUser, type Harness } from "./testing.ts";

const io = loadFdio();
const skip = typeof io === "string" ? io : null;
if (skip !== null) console.log(`skipping vhost-user packed-ring tests: ${skip}`);

const VERSION_1 = 1n << 32n;
/** Not a power of two: a packed ring may have any size up to 32768. */
const SIZE = 12;
const run = <A, E>(e: Effect.Effect<A, E, Scope.Scope>): Promise<A> => Effect.runPromise(Effect.scoped(e));

const word = (avail: number, availWrap: boolean, used: number, usedWrap: boolean): number =>
  (avail | (availWrap ? 0x8000 : 0) | (used << 16) | (usedWrap ? 0x8000_0000 : 0)) >>> 0;

/** QEMU's start sequence for a packed device, each ring at `bases[i]`; the guest-side drivers. */
const startPacked = (h: Harness, bases: readonly number[]) =>
  Effect.gen(function* () {
    const fe = h.fe;
    yield* fe.call(Req.GET_FEATURES);
    yield* fe.call(Req.SET_PROTOCOL_FEATURES, { _tag: "U64", value: bit(ProtocolFeature.REPLY_ACK) });
    yield* fe.call(Req.SET_OWNER);
    yield* expectAck(
      fe.call(
        Req.SET_FEATURES,
        { _tag: "U64", value: VERSION_1 | PACKED_RING.featureBits | bit(F_PROTOCOL_FEATURES) },
        { needReply: true },
      ),
    );
    yield* expectAck(
      fe.call(
        Req.SET_MEM_TABLE,
        {
          _tag: "MemoryTable",
          regions: [
            {
              guestAddr: BigInt(GUEST_BASE),
              size: BigInt(1 << 20),
              userAddr: toUser(GUEST_BASE),
              mmapOffset: 0n,
            },
          ],
        },
        { fds: [h.memfd], needReply: true },
      ),
    );
    const drivers: PackedDriver[] = [];
    for (let i = 0; i < bases.length; i++) {
      const layout = packedLayoutAt(GUEST_BASE + 0x8000 * (i + 1), SIZE);
      drivers.push(new PackedDriver(h.guest, SIZE, layout));
      yield* expectAck(
        fe.call(Req.SET_VRING_NUM, { _tag: "VringState", index: i, num: SIZE }, { needReply: true }),
      );
      yield* fe.call(Req.SET_VRING_BASE, { _tag: "VringState", index: i, num: bases[i]! });
      yield* fe.call(Req.SET_VRING_ADDR, {
        _tag: "VringAddr",
        index: i,
        flags: 0,
        desc: toUser(layout.descTable),
        used: toUser(layout.usedRing),
        avail: toUser(layout.availRing),
        log: 0n,
      });
      yield* fe.call(Req.SET_VRING_CALL, { _tag: "U64", value: BigInt(i) }, { fds: [h.calls[i]!] });
      yield* fe.call(Req.SET_VRING_ENABLE, { _tag: "VringState", index: i, num: 1 });
      yield* expectAck(
        fe.call(
          Req.SET_VRING_KICK,
          { _tag: "U64", value: BigInt(i) },
          { fds: [h.kicks[i]!], needReply: true },
        ),
      );
    }
    return drivers;
  });

describe.skipIf(skip !== null)(
  "vhost-user back-end, packed ring [VU-RING-BASE VU-RING-START PVQ-WRAP]",
  () => {
    it("a packed net device runs on a ring of 12; GET_VRING_BASE gives both positions and wrap counters, SET_VRING_BASE restores them", async () => {
      await run(
        Effect.gen(function* () {
          const dev = new NetDevice({ mac: [2, 0, 0, 0, 0, 1], ring: PACKED_RING }, new LoopbackBackend());
          const h = yield* harness(dev);
          const drivers = yield* startPacked(h, [word(0, true, 0, true), word(0, true, 0, true)]);
          expect(dev.isActive).toBe(true);
          const frame = GUEST_BASE + 0x20000;
          for (let i = 0; i < 72; i++) h.guest.writeU8(frame + i, i < 12 ? 0 : i);
          const tx = drivers[1]!;
          const id = tx.addChain([{ addr: frame, len: 72 }]);
          signalEventFd(h.io, h.kicks[1]!);
          yield* Effect.asVoid(h.poller.wait([h.calls[1]!]));
          expect(tx.reapUsed().map((e) => [e.id, e.len])).toEqual([[id, 0]]);
          const base = yield* h.fe.call(Req.GET_VRING_BASE, { _tag: "VringState", index: 1, num: 0 });
          expect(base?.body).toEqual({ _tag: "VringState", index: 1, num: word(1, true, 1, true) });
          expect(dev.isActive).toBe(false);

          // Restart ring 1 at slot 11 of the second lap (wrap counters 0): the next chain wraps.
          tx.nextAvail = 11;
          tx.availWrap = false;
          tx.usedIdx = 11;
          tx.usedWrap = false;
          yield* h.fe.call(Req.SET_VRING_BASE, {
            _tag: "VringState",
            index: 1,
            num: word(11, false, 11, false),
          });
          yield* expectAck(
            h.fe.call(
              Req.SET_VRING_KICK,
              { _tag: "U64", value: 1n },
              { fds: [h.kicks[1]!], needReply: true },
            ),
          );
          expect(dev.isActive).toBe(true);
          const id2 = tx.addChain([
            { addr: frame, len: 40 },
            { addr: frame + 40, len: 32 },
          ]);
          signalEventFd(h.io, h.kicks[1]!);
          yield* Effect.asVoid(h.poller.wait([h.calls[1]!]));
          expect(tx.reapUsed().map((e) => [e.id, e.len])).toEqual([[id2, 0]]);
          const after = yield* h.fe.call(Req.GET_VRING_BASE, { _tag: "VringState", index: 1, num: 0 });
          // Two slots from (11, lap 0): (1, lap 1), wrap counters flipped back to 1.
          expect(after?.body).toEqual({ _tag: "VringState", index: 1, num: word(1, true, 1, true) });
          expect(dev.stats.txFrames).toBe(2);
        }),
      );
    });

    it("a split-ring device refuses VIRTIO_F_RING_PACKED it did not offer", async () => {
      await run(
        Effect.gen(function* () {
          const dev = new NetDevice({ mac: [2, 0, 0, 0, 0, 1] }, new LoopbackBackend());
          const h = yield* harness(dev);
          yield* h.fe.call(Req.SET_PROTOCOL_FEATURES, { _tag: "U64", value: bit(ProtocolFeature.REPLY_ACK) });
          const r = yield* Effect.exit(
            expectAck(
              h.fe.call(
                Req.SET_FEATURES,
                { _tag: "U64", value: VERSION_1 | PACKED_RING.featureBits | bit(F_PROTOCOL_FEATURES) },
                { needReply: true },
              ),
            ),
          );
          expect(r._tag).toBe("Failure");
        }),
      );
    });
  },
);
