/**
 * Test support: a guest (memfd RAM mapped here too, queue drivers on it), our back-end
 * serving a device on one end of a Unix socket, and the front-end (frontend.ts) on the other, all in one
 * process and one Scope. Used by backend.test.ts and properties/vhost-user*.test.ts.
 */
import { readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect, type Fiber, type Scope } from "effect";
import { F_PROTOCOL_FEATURES, ProtocolFeature, Req, bit, type Message } from "../../spec/vhost-user.ts";
import type { VirtioDevice } from "../device/virtio-device.ts";
import type { DeviceQueue } from "../queue/device-queue.ts";
import { GuestMemory } from "../memory/guest-memory.ts";
import { SplitDriver } from "../queue/split-driver.ts";
import { splitLayoutAt, type SplitLayout } from "../../wire/split.ts";
import { acceptUnix, connectUnix, type Fdio } from "../native/fdio.ts";
import {
  Poller,
  acquireEventFd,
  acquireMapping,
  acquireMemfd,
  acquireUnixListener,
  fdio,
  ownFd,
  syscallFailed,
  type NativeError,
} from "../native/scoped.ts";
import { serveConnection, type ConnectionEnd, type VhostUserEvent } from "./backend.ts";
import { Frontend, type FrontendError } from "./frontend.ts";

/** Guest RAM: one region at this guest address, "mapped" in the pretend VMM at USER_BASE. */
export const GUEST_BASE = 0x10_0000;
export const GUEST_SIZE = 1 << 20;
export const USER_BASE = 0x7f00_0000_0000n;
export const QSIZE = 16;
/** Bound on each wait for a reply from our back-end (a hang fails the test with the step named). */
export const REPLY_TIMEOUT_MS = 5000;

export const openFds = (): number => readdirSync("/proc/self/fd").length;
export const mappingsOf = (name: string): number =>
  readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .filter((l) => l.includes(`memfd:${name}`)).length;

/**
 * Bytes of this process's address space mapped from the memfd `name`. Unlike a count of
 * /proc/self/maps lines, this does not change when the kernel merges two mappings of
 * adjacent file ranges that it placed next to each other into one line.
 */
export const mappedBytesOf = (name: string): bigint =>
  readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .filter((l) => l.includes(`memfd:${name}`))
    .reduce((sum, l) => {
      const [lo = "0", hi = "0"] = (l.split(" ")[0] ?? "").split("-");
      return sum + BigInt(`0x${hi}`) - BigInt(`0x${lo}`);
    }, 0n);

let counter = 0;

export interface Harness {
  readonly io: Fdio;
  readonly fe: Frontend;
  readonly memfd: number;
  readonly memfdName: string;
  readonly guest: GuestMemory;
  readonly layouts: readonly SplitLayout[];
  readonly drivers: readonly SplitDriver[];
  readonly kicks: readonly number[];
  readonly calls: readonly number[];
  readonly poller: Poller;
  readonly events: VhostUserEvent[];
  readonly served: Fiber.Fiber<ConnectionEnd, NativeError>;
  /** The front-end goes away (its socket closed); also done when the scope closes. */
  readonly hangUp: Effect.Effect<void>;
}

/** A connected pair of Unix stream sockets (listen, connect, accept on a temporary path). */
const socketPair = (io: Fdio): Effect.Effect<readonly [number, number], NativeError, Scope.Scope> =>
  Effect.gen(function* () {
    const path = join(tmpdir(), `vlab-vu-${process.pid}-${counter++}.sock`);
    const pair = yield* Effect.scoped(
      Effect.gen(function* () {
        const listener = yield* acquireUnixListener(io, path);
        const client = connectUnix(io, path);
        if (client < 0) return yield* Effect.fail(syscallFailed(io, "connect", client));
        const server = acceptUnix(io, listener);
        if (server < 0) {
          io.libc.close(client);
          return yield* Effect.fail(syscallFailed(io, "accept4", server));
        }
        return [server, client] as const;
      }),
    );
    return [yield* ownFd(io, pair[0]), pair[1]] as const;
  });

/** Our back-end serving `device` to an in-process front-end over guest RAM in a memfd. */
export const harness = (
  device: VirtioDevice<DeviceQueue>,
): Effect.Effect<Harness, NativeError, Scope.Scope> =>
  Effect.gen(function* () {
    const io = yield* fdio;
    const memfdName = `vlab-vu-guest-${process.pid}-${counter++}`;
    const memfd = yield* acquireMemfd(io, memfdName, GUEST_SIZE);
    const map = yield* acquireMapping(io, memfd, 0, GUEST_SIZE);
    const guest = GuestMemory.of([{ base: GUEST_BASE, bytes: map.buffer }]);
    const [server, client] = yield* socketPair(io);
    const events: VhostUserEvent[] = [];
    const served = yield* Effect.forkScoped(
      serveConnection(io, server, { device, onEvent: (e) => events.push(e) }),
    );
    const poller = yield* Poller.make(io);
    let clientOpen = true;
    const hangUp = Effect.sync(() => {
      if (clientOpen) io.libc.close(client);
      clientOpen = false;
    });
    yield* Effect.addFinalizer(() => hangUp);
    const fe = new Frontend(io, client, poller, REPLY_TIMEOUT_MS);
    const n = device.queues.length;
    const layouts = Array.from({ length: n }, (_, i) => splitLayoutAt(GUEST_BASE + 0x1000 * (i + 1), QSIZE));
    const drivers = layouts.map((l) => new SplitDriver(guest, QSIZE, l));
    const kicks: number[] = [];
    const calls: number[] = [];
    for (let i = 0; i < n; i++) {
      kicks.push(yield* acquireEventFd(io));
      calls.push(yield* acquireEventFd(io));
    }
    return {
      io,
      fe,
      memfd,
      memfdName,
      guest,
      layouts,
      drivers,
      kicks,
      calls,
      poller,
      events,
      served,
      hangUp,
    };
  });

export const toUser = (gpa: number): bigint => USER_BASE + BigInt(gpa - GUEST_BASE);

/** What QEMU sends up to a running device (features, table, every ring), REPLY_ACK on. */
export type HarnessError = FrontendError | { readonly _tag: "Nack"; readonly value: bigint };

export const startDevice = (h: Harness, features: bigint): Effect.Effect<void, HarnessError> =>
  Effect.gen(function* () {
    const fe = h.fe;
    yield* fe.call(Req.GET_FEATURES);
    yield* fe.call(Req.SET_PROTOCOL_FEATURES, {
      _tag: "U64",
      value: bit(ProtocolFeature.REPLY_ACK) | bit(ProtocolFeature.MQ),
    });
    yield* fe.call(Req.SET_OWNER);
    for (let i = 0; i < h.drivers.length; i++) {
      yield* fe.call(Req.SET_VRING_ENABLE, { _tag: "VringState", index: i, num: 1 }, { needReply: true });
    }
    yield* expectAck(
      fe.call(
        Req.SET_FEATURES,
        { _tag: "U64", value: features | bit(F_PROTOCOL_FEATURES) },
        { needReply: true },
      ),
    );
    yield* expectAck(
      fe.call(
        Req.SET_MEM_TABLE,
        {
          _tag: "MemoryTable",
          regions: [
            { guestAddr: BigInt(GUEST_BASE), size: BigInt(GUEST_SIZE), userAddr: USER_BASE, mmapOffset: 0n },
          ],
        },
        { fds: [h.memfd], needReply: true },
      ),
    );
    for (let i = 0; i < h.drivers.length; i++) {
      const l = h.layouts[i]!;
      yield* fe.call(Req.SET_VRING_NUM, { _tag: "VringState", index: i, num: QSIZE });
      yield* fe.call(Req.SET_VRING_BASE, { _tag: "VringState", index: i, num: 0 });
      yield* fe.call(Req.SET_VRING_ADDR, {
        _tag: "VringAddr",
        index: i,
        flags: 0,
        desc: toUser(l.descTable),
        used: toUser(l.usedRing),
        avail: toUser(l.availRing),
        log: 0n,
      });
      yield* fe.call(Req.SET_VRING_CALL, { _tag: "U64", value: BigInt(i) }, { fds: [h.calls[i]!] });
      yield* expectAck(
        fe.call(
          Req.SET_VRING_KICK,
          { _tag: "U64", value: BigInt(i) },
          { fds: [h.kicks[i]!], needReply: true },
        ),
      );
    }
  });

/** A REPLY_ACK reply that says success. */
export const expectAck = (
  e: Effect.Effect<Message | null, FrontendError>,
): Effect.Effect<void, HarnessError> =>
  Effect.flatMap(e, (m) =>
    m !== null && m.body._tag === "U64" && m.body.value !== 0n
      ? Effect.fail({ _tag: "Nack", value: m.body.value } as const)
      : Effect.void,
  );
