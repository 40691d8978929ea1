/**
 * File descriptors, mappings and sockets as Effect Scope resources, and `Poller`: waiting
 * for any of a set of fds with `poll` run on koffi's worker thread (`poll.async`), so the
 * event loop is never blocked. Closing a scope releases everything in reverse order, on
 * failure and interruption too; a poll parked on a worker is woken (its own eventfd) and
 * has returned before any fd it watches is closed, so a worker never polls a closed or
 * reused descriptor.
 */
import { Effect, type Scope } from "effect";
import { POLLIN } from "./libc.ts";
import {
  acceptUnix,
  connectUnix,
  createEventFd,
  createMemfd,
  drainEventFd,
  listenUnix,
  loadFdio,
  mapShared,
  signalEventFd,
  unmap,
  type Fdio,
  type Mapping,
} from "./fdio.ts";

export type NativeError =
  | { readonly _tag: "NativeUnavailable"; readonly reason: string }
  | {
      readonly _tag: "SyscallFailed";
      readonly call: string;
      readonly errno: number;
      readonly message: string;
    };

export const syscallFailed = (io: Fdio, call: string, negErrno: number): NativeError => ({
  _tag: "SyscallFailed",
  call,
  errno: -negErrno,
  message: io.libc.strerror(-negErrno),
});

/** The bindings as an Effect (NativeUnavailable where they cannot load). */
export const fdio: Effect.Effect<Fdio, NativeError> = Effect.suspend(() => {
  const io = loadFdio();
  return typeof io === "string" ? Effect.fail({ _tag: "NativeUnavailable", reason: io }) : Effect.succeed(io);
});

/** Takes ownership of an open fd: closed when the scope closes. */
export const ownFd = (io: Fdio, fd: number): Effect.Effect<number, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.succeed(fd), (f) => Effect.sync(() => void io.libc.close(f)));

const acquire = (
  io: Fdio,
  call: string,
  open: () => number,
): Effect.Effect<number, NativeError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const fd = open();
      return fd < 0 ? Effect.fail(syscallFailed(io, call, fd)) : Effect.succeed(fd);
    }),
    (fd) => Effect.sync(() => void io.libc.close(fd)),
  );

export const acquireEventFd = (io: Fdio): Effect.Effect<number, NativeError, Scope.Scope> =>
  acquire(io, "eventfd", () => createEventFd(io));

export const acquireMemfd = (
  io: Fdio,
  name: string,
  size: number,
): Effect.Effect<number, NativeError, Scope.Scope> =>
  acquire(io, "memfd_create", () => createMemfd(io, name, size));

/** A listening socket at `path`; the fd is closed and the socket file removed with the scope. */
export const acquireUnixListener = (
  io: Fdio,
  path: string,
): Effect.Effect<number, NativeError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const fd = listenUnix(io, path);
      return fd < 0 ? Effect.fail(syscallFailed(io, `bind ${path}`, fd)) : Effect.succeed(fd);
    }),
    (fd) =>
      Effect.sync(() => {
        io.libc.close(fd);
        io.unlink(path);
      }),
  );

export const acquireUnixConnection = (
  io: Fdio,
  path: string,
): Effect.Effect<number, NativeError, Scope.Scope> =>
  acquire(io, `connect ${path}`, () => connectUnix(io, path));

/** A shared mapping, unmapped with the scope (after everything released later than it). */
export const acquireMapping = (
  io: Fdio,
  fd: number,
  offset: number,
  length: number,
): Effect.Effect<Mapping, NativeError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const m = mapShared(io, fd, offset, length);
      return typeof m === "number" ? Effect.fail(syscallFailed(io, "mmap", m)) : Effect.succeed(m);
    }),
    (m) => Effect.sync(() => void unmap(io, m)),
  );

/** How many fds one wait may watch (besides the poller's own eventfd). */
const MAX_POLL_FDS = 63;

/**
 * Waits for fds on koffi's worker thread. One wait at a time. `wait` is interruptible: the
 * interrupt writes the poller's eventfd, the worker's poll returns, and only then may the
 * scope close the fds (the release waits for it).
 */
export class Poller {
  private readonly pollfds = new Int32Array(2 * (MAX_POLL_FDS + 1));
  /** revents of the last wait, one per fd given (index as given). */
  readonly revents = new Int32Array(MAX_POLL_FDS);
  private polling = false;
  private closed = false;
  private afterPoll: (() => void) | null = null;
  /** Completed polls (to show waiting is not a busy loop). */
  wakeups = 0;

  private constructor(
    private readonly io: Fdio,
    private readonly wakeFd: number,
  ) {}

  /** A poller whose eventfd is closed with the scope, after a parked poll has returned. */
  static make(io: Fdio): Effect.Effect<Poller, NativeError, Scope.Scope> {
    return Effect.gen(function* () {
      const wakeFd = yield* acquireEventFd(io);
      return yield* Effect.acquireRelease(
        Effect.sync(() => new Poller(io, wakeFd)),
        (p) => p.stop,
      );
    });
  }

  /** Wake a parked wait (it completes with no fd ready). Safe from any callback. */
  wake(): void {
    if (!this.closed) signalEventFd(this.io, this.wakeFd);
  }

  /**
   * Waits until one of `fds` has one of `events` (default POLLIN; errors and hang-ups are
   * always reported) or `wake()` is called, then fills `revents` and completes with how
   * many fds are ready. At most MAX_POLL_FDS fds.
   */
  wait(fds: readonly number[], events = POLLIN, timeoutMs = -1): Effect.Effect<number> {
    return Effect.callback<number>((resume) => {
      if (this.closed || this.polling || fds.length > MAX_POLL_FDS) {
        resume(Effect.succeed(0));
        return;
      }
      const p = this.pollfds;
      p[0] = this.wakeFd;
      p[1] = POLLIN;
      for (let i = 0; i < fds.length; i++) {
        p[2 + 2 * i] = fds[i]!;
        p[3 + 2 * i] = events;
      }
      let interrupted = false;
      this.polling = true;
      this.io.libc.poll.async(p, fds.length + 1, timeoutMs, () => {
        this.polling = false;
        this.wakeups++;
        if (((p[1]! >>> 16) & POLLIN) !== 0) drainEventFd(this.io, this.wakeFd);
        let ready = 0;
        for (let i = 0; i < fds.length; i++) {
          const r = (p[3 + 2 * i]! >>> 16) & 0xffff;
          this.revents[i] = r;
          if (r !== 0) ready++;
        }
        const after = this.afterPoll;
        this.afterPoll = null;
        if (after !== null) after();
        if (!interrupted) resume(Effect.succeed(ready));
      });
      return Effect.sync(() => {
        interrupted = true;
        if (this.polling) signalEventFd(this.io, this.wakeFd);
      });
    });
  }

  /** Stops: a parked poll is woken and has returned before this completes. */
  private get stop(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (!this.polling) {
        this.closed = true;
        resume(Effect.void);
        return;
      }
      this.afterPoll = () => {
        this.closed = true;
        resume(Effect.void);
      };
      signalEventFd(this.io, this.wakeFd);
    });
  }
}

/** Waits for a connection on a listener (interruptible); the connection fd is owned by the scope. */
export const acceptOne = (
  io: Fdio,
  poller: Poller,
  listener: number,
): Effect.Effect<number, NativeError, Scope.Scope> =>
  Effect.gen(function* () {
    for (;;) {
      const fd = acceptUnix(io, listener);
      if (fd >= 0) return yield* ownFd(io, fd);
      if (fd !== -11 && fd !== -4) return yield* Effect.fail(syscallFailed(io, "accept4", fd));
      yield* poller.wait([listener]);
    }
  });
