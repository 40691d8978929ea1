/**
 * The vhost-user back-end: serves any VirtioDevice to a front-end (QEMU, cloud-hypervisor,
 * crosvm) over a Unix socket. One loop per connection waits (async poll on koffi's worker)
 * for the socket and every started ring's kick eventfd; a message is applied by the
 * Session, a kick runs the device's processing of that queue, and used buffers are signalled
 * on the ring's call eventfd. The device's own background work (`run`: frames arriving
 * from a TAP, host sockets for vsock) is forked while the device is active.
 *
 * Lifetimes (VU-DISCONNECT): the listener (and its socket file), the connection, every fd
 * and mapping the session took, the poller and the device's run fiber all live in Effect
 * scopes: a disconnect, a refused message, an interrupt or Ctrl-C releases them all, in
 * this order: run fiber interrupted, a parked poll woken and returned, device reset, fds
 * closed and regions unmapped, then the connection and (at the end) the listener.
 */
import { Effect, Fiber, type Scope } from "effect";
import { Req, type SessionError } from "../../spec/vhost-user.ts";
import type { VirtioDevice } from "../device/virtio-device.ts";
import type { DeviceQueue } from "../queue/device-queue.ts";
import { drainEventFd, type Fdio } from "../native/fdio.ts";
import { Poller, acceptOne, acquireUnixListener, fdio, type NativeError } from "../native/scoped.ts";
import { Channel } from "./channel.ts";
import { describeError } from "./describe.ts";
import { Session, type SessionEvent } from "./session.ts";

export type { SessionEvent } from "./session.ts";

export interface ConnectionStats {
  readonly messages: number;
  readonly kicks: readonly number[];
  readonly calls: readonly number[];
}

/** How a connection ended. */
export type ConnectionEnd =
  | { readonly _tag: "PeerClosed"; readonly stats: ConnectionStats }
  | { readonly _tag: "Refused"; readonly error: SessionError; readonly stats: ConnectionStats };

export type VhostUserEvent =
  | SessionEvent
  | { readonly _tag: "Listening"; readonly path: string }
  | { readonly _tag: "Connected"; readonly connection: number }
  | { readonly _tag: "Disconnected"; readonly connection: number; readonly end: ConnectionEnd };

export interface BackendOptions {
  readonly device: VirtioDevice<DeviceQueue>;
  /** Everything that happens, for logs and tests (called synchronously; must not throw). */
  readonly onEvent?: (e: VhostUserEvent) => void;
  /** Protocol features to offer (default `protocolFeaturesFor(device)`; a subset of SUPPORTED_PROTOCOL_FEATURES). */
  readonly protocolFeatures?: bigint;
}

const stats = (session: Session, channel: Channel): ConnectionStats => ({
  messages: channel.received,
  kicks: session.rings.map((r) => r.kicks),
  calls: session.rings.map((r) => r.calls),
});

/**
 * Serves one front-end on the connected socket `fd` (the caller owns it) until the peer
 * closes or breaks a rule; everything the connection set up is released before this
 * completes, on interruption too.
 */
export const serveConnection = (
  io: Fdio,
  fd: number,
  options: BackendOptions,
): Effect.Effect<ConnectionEnd, NativeError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const emit = options.onEvent ?? (() => {});
      // Acquired first, released last: the device is reset and the fds/mappings go only
      // after the run fiber stopped and the poller's worker returned.
      const session = yield* Effect.acquireRelease(
        Effect.sync(() => new Session(io, options.device, emit, options.protocolFeatures)),
        (s) => Effect.sync(() => s.close()),
      );
      const poller = yield* Poller.make(io);
      const channel = new Channel(io, fd, "request");
      let runFiber: Fiber.Fiber<never> | null = null;
      yield* Effect.addFinalizer(() => (runFiber === null ? Effect.void : Fiber.interrupt(runFiber)));

      const stopRun = Effect.suspend(() => {
        const f = runFiber;
        runFiber = null;
        return f === null ? Effect.void : Fiber.interrupt(f);
      });
      // The device's background loop runs while it is active, and is stopped before reset.
      const syncRun = Effect.gen(function* () {
        const dev = options.device;
        if (dev.isActive && runFiber === null && dev.run !== null) {
          runFiber = yield* Effect.forkChild(dev.run);
        } else if (!dev.isActive) {
          yield* stopRun;
        }
      });

      const fds: number[] = [];
      const rings: number[] = [];
      for (;;) {
        fds.length = 0;
        rings.length = 0;
        fds.push(fd);
        session.kickFds(fds, rings);
        yield* poller.wait(fds);
        if (poller.revents[0] !== 0) {
          for (;;) {
            const r = channel.read();
            if (r._tag === "WouldBlock") break;
            if (r._tag === "Closed") return { _tag: "PeerClosed", stats: stats(session, channel) } as const;
            if (r._tag === "Refused") {
              return { _tag: "Refused", error: r.error, stats: stats(session, channel) } as const;
            }
            // Stop the run loop before a request may reset the device under it.
            const stops =
              r.message.request === Req.GET_VRING_BASE ||
              r.message.request === Req.SET_MEM_TABLE ||
              r.message.request === Req.RESET_OWNER;
            if (stops) yield* stopRun;
            const h = session.handle(r.message);
            if (h.reply !== null) {
              const s = channel.send(h.reply);
              if (!s.ok && h.error === null) {
                return { _tag: "Refused", error: s.error, stats: stats(session, channel) } as const;
              }
            }
            if (h.error !== null)
              return { _tag: "Refused", error: h.error, stats: stats(session, channel) } as const;
            yield* syncRun;
          }
        }
        for (let i = 0; i < rings.length; i++) {
          if (poller.revents[i + 1] !== 0) {
            // A message of this pass may have closed or replaced the ring's kick fd (and the
            // number may already name another file): drain only the fd the ring still has.
            if (session.rings[rings[i]!]!.kick === fds[i + 1]) drainEventFd(io, fds[i + 1]!);
            session.kick(rings[i]!);
          }
        }
      }
    }),
  );

/**
 * Listens at `socketPath` (a stale socket file must be removed first; the file is removed
 * when the scope closes) and serves one connection after another: a front-end that goes
 * away can come back (reconnect). With `connections`, stops after that many.
 */
export const serveVhostUser = (
  options: BackendOptions & { readonly socketPath: string; readonly connections?: number },
): Effect.Effect<void, NativeError, Scope.Scope> =>
  Effect.gen(function* () {
    const io = yield* fdio;
    const emit = options.onEvent ?? (() => {});
    const listener = yield* acquireUnixListener(io, options.socketPath);
    const poller = yield* Poller.make(io);
    emit({ _tag: "Listening", path: options.socketPath });
    for (let n = 1; options.connections === undefined || n <= options.connections; n++) {
      const end = yield* Effect.scoped(
        Effect.gen(function* () {
          const fd = yield* acceptOne(io, poller, listener);
          emit({ _tag: "Connected", connection: n });
          return yield* serveConnection(io, fd, options);
        }),
      );
      emit({ _tag: "Disconnected", connection: n, end });
    }
  });

/** One line for an event (the command's output). */
export const describeEvent = (e: VhostUserEvent): string => {
  const hex = (v: bigint): string => `0x${v.toString(16)}`;
  switch (e._tag) {
    case "Listening":
      return `listening on ${e.path}`;
    case "Connected":
      return `front-end connected (connection ${e.connection})`;
    case "Disconnected": {
      const s = e.end.stats;
      const why =
        e.end._tag === "PeerClosed"
          ? "front-end closed the connection"
          : `refused: ${describeError(e.end.error)}`;
      return `disconnected (connection ${e.connection}): ${why}; ${s.messages} messages, kicks [${s.kicks.join(", ")}], calls [${s.calls.join(", ")}]`;
    }
    case "Request":
      return `<- ${e.request}`;
    case "FeaturesAcked":
      return `features acked ${hex(e.features)}${e.protocolBit ? " (+ PROTOCOL_FEATURES)" : ""}`;
    case "ProtocolFeaturesAcked":
      return `protocol features acked ${hex(e.features)}`;
    case "MemoryTable":
      return `memory table: ${e.regions
        .map(
          (r) => `gpa ${hex(r.guestAddr)} size ${hex(r.size)} ua ${hex(r.userAddr)} off ${hex(r.mmapOffset)}`,
        )
        .join("; ")}`;
    case "RingStarted":
      return `ring ${e.index} started (size ${e.size}, base ${e.base})`;
    case "RingEnabled":
      return `ring ${e.index} ${e.enabled ? "enabled" : "disabled"}`;
    case "DeviceActivated":
      return `device activated with features ${hex(e.features)}`;
    case "DeviceStopped":
      return `device stopped at avail [${e.bases.join(", ")}]`;
  }
};

/** Re-exported for the commands that print a back-end's errors (the one copy is describe.ts). */
export { describeError };
