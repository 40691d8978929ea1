/**
 * Our devices served to a real guest: virtio-net on a TAP in a namespace, or virtio-vsock
 * with its Unix-socket backend, each behind the vhost-user back-end (impl/vhost-user) on a
 * socket in a temporary folder, optionally watched by the reference model (RingWatch).
 * Everything is a resource of the caller's scope: the back-end fiber, the device, the TAP,
 * the Unix listeners, the folder.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Clock, Effect, Fiber, Layer, type Scope } from "effect";
import type { VirtioDevice } from "../../impl/device/virtio-device.ts";
import { VsockVirtioDevice } from "../../impl/device/vsock.ts";
import { NetBackend } from "../../impl/net/backend.ts";
import { NetDevice } from "../../impl/net/device.ts";
import { PACKED_RING, type DeviceQueue } from "../../impl/queue/device-queue.ts";
import { acquireNetns, acquireTapBackendIn, configureTapIn, inNetns, ip } from "../../impl/native/netns.ts";
import { describeError, serveVhostUser, type VhostUserEvent } from "../../impl/vhost-user/backend.ts";
import { GUEST_NET } from "./devices.ts";
import { registerExitCleanup } from "./exit-cleanup.ts";
import { checkPattern, fillPattern } from "./pattern.ts";
import { acquireTempDir } from "./qemu.ts";
import type { RingWatch } from "./ring-watch.ts";

export interface RigError {
  readonly _tag: "RigError";
  readonly message: string;
}

const rigError = (message: string): RigError => ({ _tag: "RigError", message });

/**
 * A network namespace of ours (impl/native's acquireNetns) that is also deleted if the
 * process is signalled before its scope closes (Ctrl-C on a command without a handler).
 */
export const acquireGuestNetns = (
  tag: string,
): Effect.Effect<string, { readonly _tag: "NetnsError"; readonly message: string }, Scope.Scope> =>
  Effect.gen(function* () {
    const ns = yield* acquireNetns(tag);
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        registerExitCleanup(() => {
          ip("netns", "delete", ns);
        }),
      ),
      (unregister) => Effect.sync(unregister),
    );
    return ns;
  });

/** The real clock, also under the simulator's TestClock (device timers follow wall time). */
const withLiveClock = <A, E, R>(e: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.provideService(e, Clock.Clock, Clock.Clock.defaultValue());

/**
 * Serves `device` on `socketPath` in a fiber of the caller's scope (one connection: the
 * guest's QEMU), on the live clock (the simulator runs scenarios under a TestClock), and
 * returns once the socket listens.
 */
export const serveInBackground = (
  device: VirtioDevice<DeviceQueue>,
  socketPath: string,
  onEvent: (e: VhostUserEvent) => void = () => {},
): Effect.Effect<void, RigError, Scope.Scope> =>
  Effect.gen(function* () {
    let listening: () => void = () => {};
    const ready = new Promise<void>((r) => (listening = r));
    const fiber = yield* Effect.forkScoped(
      withLiveClock(
        serveVhostUser({
          device,
          socketPath,
          connections: 1,
          onEvent: (e) => {
            if (e._tag === "Listening") listening();
            onEvent(e);
          },
        }),
      ),
    );
    const stopped = Fiber.join(fiber).pipe(
      Effect.mapError((e) => rigError(`vhost-user back-end: ${describeError(e)}`)),
      Effect.flatMap(() => Effect.fail(rigError("vhost-user back-end stopped before listening"))),
    );
    yield* Effect.raceFirst(
      Effect.promise(() => ready),
      stopped,
    );
  });

export interface OurNet {
  readonly device: NetDevice<DeviceQueue>;
  /** The vhost-user socket QEMU connects to. */
  readonly socket: string;
  /** The TAP our device writes to, inside the namespace (host end GUEST_NET.hostIp). */
  readonly ifName: string;
}

/**
 * Our virtio-net on a TAP in `ns` (host end addressed), served over vhost-user; `packed`
 * builds it on the packed ring (the ring watch covers the split ring only).
 */
export const acquireOurNet = (options: {
  readonly ns: string;
  readonly watch?: RingWatch;
  readonly packed?: boolean;
  readonly onEvent?: (e: VhostUserEvent) => void;
}): Effect.Effect<OurNet, RigError, Scope.Scope> =>
  Effect.gen(function* () {
    const tap = yield* acquireTapBackendIn(options.ns, "vlabu%d").pipe(
      Effect.mapError((e) => rigError(`TAP: ${describeError(e)}`)),
    );
    yield* Effect.try({
      try: () => configureTapIn(options.ns, tap.tap.ifName, `${GUEST_NET.hostIp}/${GUEST_NET.prefix}`),
      catch: (e) => rigError(`TAP address: ${String(e)}`),
    });
    const mac = GUEST_NET.guestMac.split(":").map((h) => parseInt(h, 16));
    const config = { mac, mrgRxbuf: true, eventIdx: true, csum: true };
    const built = <Q extends DeviceQueue>(
      e: Effect.Effect<NetDevice<Q>, unknown, NetBackend | Scope.Scope>,
    ) =>
      e.pipe(
        Effect.provide(Layer.succeed(NetBackend, tap)),
        Effect.mapError((e) => rigError(`net device: ${describeError(e as { readonly _tag: string })}`)),
      );
    const dir = yield* acquireTempDir("vlab-vhu-");
    const socket = join(dir, "net.sock");
    if (options.packed === true) {
      if (options.watch !== undefined)
        return yield* Effect.fail(rigError("the ring watch covers the split ring only"));
      const device = yield* built(NetDevice.scoped({ ...config, ring: PACKED_RING }));
      yield* serveInBackground(device, socket, options.onEvent);
      return { device, socket, ifName: tap.tap.ifName };
    }
    const device = yield* built(NetDevice.scoped(config));
    const served = options.watch?.wrap(device, ["net RX queue", "net TX queue"]) ?? device;
    yield* serveInBackground(served, socket, options.onEvent);
    return { device, socket, ifName: tap.tap.ifName };
  });

export interface OurVsock {
  readonly device: VsockVirtioDevice<DeviceQueue>;
  readonly socket: string;
  /** Host programs connect here and write "CONNECT <port>\n"; guest connections to port P go to `${uds}_P`. */
  readonly uds: string;
  readonly cid: number;
}

/**
 * Our virtio-vsock with its Unix-socket backend, served over vhost-user; `packed` builds it on
 * the packed ring (the ring watch covers the split ring only).
 */
export const acquireOurVsock = (options: {
  readonly cid?: number;
  readonly watch?: RingWatch;
  readonly packed?: boolean;
  readonly onEvent?: (e: VhostUserEvent) => void;
}): Effect.Effect<OurVsock, RigError, Scope.Scope> =>
  Effect.gen(function* () {
    const cid = options.cid ?? 3;
    const dir = yield* acquireTempDir("vlab-vhu-");
    const uds = join(dir, "vsock.uds");
    const refused = (e: { readonly _tag: string; readonly message?: string }): RigError =>
      rigError(
        e._tag === "UnixListenFailed"
          ? `vsock Unix backend: ${e.message}`
          : `vsock device: CID ${cid} refused`,
      );
    const socket = join(dir, "vsock.sock");
    if (options.packed === true) {
      if (options.watch !== undefined)
        return yield* Effect.fail(rigError("the ring watch covers the split ring only"));
      const device = yield* VsockVirtioDevice.withUnixHost(uds, BigInt(cid), PACKED_RING).pipe(
        Effect.mapError(refused),
      );
      yield* serveInBackground(device, socket, options.onEvent);
      return { device, socket, uds, cid };
    }
    const device = yield* VsockVirtioDevice.withUnixHost(uds, BigInt(cid)).pipe(Effect.mapError(refused));
    const served = options.watch?.wrap(device, ["vsock RX queue", "vsock TX queue"]) ?? device;
    yield* serveInBackground(served, socket, options.onEvent);
    return { device, socket, uds, cid };
  });

export interface EchoStats {
  connections: number;
  bytes: number;
}

/**
 * A Unix-socket server at `path` that echoes every byte back and half-closes when the peer
 * does (the host side of a guest's `vlab-xfer connect vsock 2 P N echo`), closed with the scope.
 */
export const acquireUnixEcho = (path: string): Effect.Effect<EchoStats, RigError, Scope.Scope> => {
  const stats: EchoStats = { connections: 0, bytes: 0 };
  return acquireUnixServer(path, (s) => {
    stats.connections++;
    s.on("data", (b: Buffer) => {
      stats.bytes += b.length;
    });
    s.pipe(s);
  }).pipe(Effect.as(stats));
};

export interface ExchangeResult {
  readonly sent: number;
  readonly received: number;
  /** Stream offset of the first byte that is not the pattern, or -1. */
  readonly firstBad: number;
  readonly ms: number;
}

/**
 * The host side of a host-initiated vsock stream: connects to the Unix backend at `uds`,
 * asks for guest port `port` ("CONNECT <port>" / "OK <n>"), sends `bytes` of the pattern,
 * half-closes, and reads the guest's echo back, checking it.
 */
export const hostVsockEcho = (
  uds: string,
  port: number,
  bytes: number,
  timeoutMs: number,
): Promise<ExchangeResult> =>
  new Promise((resolve, reject) => {
    const started = Date.now();
    const s = createConnection({ path: uds, allowHalfOpen: true });
    let handshake = "";
    let open = false;
    let sent = 0;
    let received = 0;
    let firstBad = -1;
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new Error(
          `vsock exchange with guest port ${port}: ${received} of ${bytes} bytes back after ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    const pump = (): void => {
      while (sent < bytes) {
        const n = Math.min(65536, bytes - sent);
        const chunk = Buffer.allocUnsafe(n);
        fillPattern(chunk, sent);
        sent += n;
        if (!s.write(chunk)) {
          s.once("drain", pump);
          return;
        }
      }
      s.end();
    };
    const onStream = (b: Buffer): void => {
      if (firstBad < 0) {
        const k = checkPattern(b, received);
        if (k >= 0) firstBad = k;
      }
      received += b.length;
    };
    s.on("data", (b: Buffer) => {
      if (open) return onStream(b);
      handshake += b.toString("latin1");
      const nl = handshake.indexOf("\n");
      if (nl < 0) return;
      const line = handshake.slice(0, nl);
      if (!/^OK \d+$/.test(line)) {
        clearTimeout(timer);
        s.destroy();
        reject(new Error(`vsock CONNECT ${port}: the backend answered ${JSON.stringify(line)}`));
        return;
      }
      open = true;
      const rest = Buffer.from(handshake.slice(nl + 1), "latin1");
      if (rest.length > 0) onStream(rest);
      pump();
    });
    s.on("end", () => {
      clearTimeout(timer);
      s.destroy();
      resolve({ sent, received, firstBad, ms: Date.now() - started });
    });
    s.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on("connect", () => s.write(`CONNECT ${port}\n`));
  });

/** A stream server's connections, closed with it. */
const serve = (
  listen: (server: Server) => void,
  onConnection: (s: Socket) => void,
  what: string,
): Effect.Effect<void, RigError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<{ server: Server; open: Set<Socket> }, RigError>((resume) => {
      const open = new Set<Socket>();
      const server = createServer({ allowHalfOpen: true }, (s) => {
        open.add(s);
        s.on("close", () => open.delete(s));
        s.on("error", () => s.destroy());
        onConnection(s);
      });
      server.once("error", (e) => resume(Effect.fail(rigError(`listen ${what}: ${e.message}`))));
      server.once("listening", () => resume(Effect.succeed({ server, open })));
      try {
        listen(server);
      } catch (e) {
        resume(Effect.fail(rigError(`listen ${what}: ${String(e)}`)));
      }
    }),
    ({ server, open }) =>
      Effect.sync(() => {
        server.close();
        for (const s of open) s.destroy();
      }),
  ).pipe(Effect.asVoid);

/** A TCP server on `port` inside namespace `ns` (its socket is made there), closed with the scope. */
export const acquireTcpServerIn = (
  ns: string,
  port: number,
  onConnection: (s: Socket) => void,
): Effect.Effect<void, RigError, Scope.Scope> =>
  serve(
    (server) => {
      // listen(port) without a host makes the socket at once, so inside the namespace.
      const r = inNetns(ns, () => server.listen(port));
      if (!r.ok) throw new Error(r.error._tag);
    },
    onConnection,
    `tcp ${port} in ${ns}`,
  );

/** A Unix-socket server at `path` (a stale file there is replaced; removed with the scope). */
export const acquireUnixServer = (
  path: string,
  onConnection: (s: Socket) => void,
): Effect.Effect<void, RigError, Scope.Scope> =>
  Effect.gen(function* () {
    yield* Effect.acquireRelease(
      Effect.sync(() => rmSync(path, { force: true })),
      () => Effect.sync(() => rmSync(path, { force: true })),
    );
    yield* serve((server) => server.listen(path), onConnection, path);
  });

export interface StreamStats {
  connections: number;
  bytes: number;
  /** Stream offset of the first byte that was not the pattern, or -1. */
  firstBad: number;
  /** performance.now() of the first and last byte (sink), or of accept and close (source). */
  firstMs: number;
  lastMs: number;
}

export const newStreamStats = (): StreamStats => ({
  connections: 0,
  bytes: 0,
  firstBad: -1,
  firstMs: 0,
  lastMs: 0,
});

/** Receives a stream, checks it is the pattern, closes its side when the peer has. */
export const patternSink =
  (st: StreamStats) =>
  (s: Socket): void => {
    st.connections++;
    s.on("data", (b: Buffer) => {
      const now = performance.now();
      if (st.bytes === 0) st.firstMs = now;
      st.lastMs = now;
      if (st.firstBad < 0) st.firstBad = checkPattern(b, st.bytes);
      st.bytes += b.length;
    });
    s.on("end", () => s.end());
  };

/** Sends `total` bytes of the pattern (with backpressure), then closes its side. */
export const patternSource =
  (total: number, st: StreamStats) =>
  (s: Socket): void => {
    st.connections++;
    st.firstMs = performance.now();
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(65536, total - sent);
        const chunk = Buffer.allocUnsafe(n);
        fillPattern(chunk, sent);
        sent += n;
        st.bytes = sent;
        if (!s.write(chunk)) {
          s.once("drain", pump);
          return;
        }
      }
      s.end();
    };
    s.on("close", () => (st.lastMs = performance.now()));
    s.resume();
    pump();
  };
