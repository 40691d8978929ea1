/**
 * The vhost-user FRONT-END (the VMM's side of QEMU docs/interop/vhost-user.rst): connects to
 * (or listens for) a back-end, negotiates features and protocol features, shares guest RAM
 * from a memfd (SCM_RIGHTS in SET_MEM_TABLE), sets up rings with kick eventfds we write and
 * call eventfds we poll, and reads GET_VRING_BASE / GET_CONFIG. One codec for both
 * directions (codec.ts); the socket end is a `Channel` with `receives: "reply"`.
 *
 * Lifetimes: everything (socket, listener and its file, memfd, mapping, eventfds, the
 * poller's worker) is an Effect Scope resource, released when the caller's scope closes,
 * on every path. Every wait is bounded: a back-end that never answers is a typed
 * `FrontendTimeout` naming the step; a closed socket, garbage or a reply to another
 * request are typed too (`FrontendError`).
 *
 * The one front-end: `sim conform --vhost-user` drives back-ends with the high-level calls
 * (`getFeatures`, `setupRing`, ...; `send` asks NEED_REPLY whenever REPLY_ACK was
 * negotiated), and tests drive ours with the low-level ones (`call` with the exact flags,
 * `receive`, `sendRaw`, `channel`), bounded the same way.
 */
import { Effect, type Scope } from "effect";
import {
  FLAG_NEED_REPLY,
  ProtocolFeature,
  Req,
  VERSION,
  bit,
  hasExplicitReply,
  requestName,
  type Body,
  type MemoryRegionDesc,
  type Message,
  type SessionError,
} from "../../spec/vhost-user.ts";
import { GuestMemory } from "../memory/guest-memory.ts";
import { POLLIN } from "../native/libc.ts";
import { acceptUnix, connectUnix, drainEventFd, signalEventFd, type Fdio } from "../native/fdio.ts";
import {
  Poller,
  acquireEventFd,
  acquireMapping,
  acquireMemfd,
  acquireUnixListener,
  fdio,
  ownFd,
  type NativeError,
} from "../native/scoped.ts";
import { Channel } from "./channel.ts";
import { describeError } from "./describe.ts";

/** What can go wrong on the front-end's side; `step` names the request or phase. */
export type FrontendError =
  | { readonly _tag: "FrontendTimeout"; readonly step: string; readonly ms: number }
  | { readonly _tag: "FrontendClosed"; readonly step: string }
  | { readonly _tag: "FrontendGarbage"; readonly step: string; readonly error: SessionError }
  | { readonly _tag: "FrontendWrongReply"; readonly step: string; readonly got: string }
  | { readonly _tag: "FrontendBadBody"; readonly step: string; readonly got: string }
  | { readonly _tag: "FrontendNack"; readonly step: string }
  | { readonly _tag: "FrontendNative"; readonly step: string; readonly error: NativeError };

/** One line for a front-end error, naming the step. */
export const describeFrontendError = (e: FrontendError): string => {
  switch (e._tag) {
    case "FrontendTimeout":
      return `${e.step}: the back-end did not answer within ${e.ms} ms`;
    case "FrontendClosed":
      return `${e.step}: the back-end closed the connection`;
    case "FrontendGarbage":
      return `${e.step}: unreadable reply (${describeError(e.error)})`;
    case "FrontendWrongReply":
      return `${e.step}: the back-end answered another request (${e.got})`;
    case "FrontendBadBody":
      return `${e.step}: reply payload of the wrong kind (${e.got})`;
    case "FrontendNack":
      return `${e.step}: the back-end refused it (REPLY_ACK failure)`;
    case "FrontendNative":
      return `${e.step}: ${describeError(e.error)}`;
  }
};

/** A send that failed: the peer gone (EPIPE, ECONNRESET) or another socket error. */
const sendFailed = (step: string, e: SessionError): FrontendError =>
  e._tag === "SocketError" && (e.errno === 32 || e.errno === 104)
    ? { _tag: "FrontendClosed", step }
    : { _tag: "FrontendGarbage", step, error: e };

const native =
  (step: string) =>
  (error: NativeError): FrontendError => ({ _tag: "FrontendNative", step, error });

/** The guest RAM this front-end shares: one memfd, mapped once, split into regions. */
export interface GuestRam {
  readonly memfd: number;
  readonly memory: GuestMemory;
  /** What SET_MEM_TABLE sends (user address = guest address + userOffset, as QEMU does). */
  readonly regions: readonly MemoryRegionDesc[];
  /** The whole mapping (snapshots compare it). */
  readonly bytes: Uint8Array;
  /** Guest address ranges of the regions, [base, end). */
  readonly ranges: readonly (readonly [number, number])[];
}

export interface RamLayout {
  /** Guest address of each region; the memfd is split into equal parts, one per region. */
  readonly guestBases: readonly number[];
  /** Bytes per region (a multiple of 4096). */
  readonly regionSize: number;
  /** Added to guest addresses to make the user addresses the back-end translates. */
  readonly userOffset: bigint;
}

/** memfd_create + ftruncate + mmap (shared), as a GuestMemory of `layout.guestBases.length` regions. */
export const acquireGuestRam = (
  io: Fdio,
  layout: RamLayout,
): Effect.Effect<GuestRam, FrontendError, Scope.Scope> =>
  Effect.gen(function* () {
    const n = layout.guestBases.length;
    const total = n * layout.regionSize;
    const memfd = yield* acquireMemfd(io, "virtio-lab-guest", total).pipe(Effect.mapError(native("memfd")));
    const m = yield* acquireMapping(io, memfd, 0, total).pipe(Effect.mapError(native("mmap")));
    const bytes = new Uint8Array(m.buffer);
    const parts = layout.guestBases.map((base, i) => ({
      base: BigInt(base),
      bytes: bytes.subarray(i * layout.regionSize, (i + 1) * layout.regionSize),
    }));
    const mem = GuestMemory.create(parts);
    if (!mem.ok) {
      return yield* Effect.fail<FrontendError>({
        _tag: "FrontendNative",
        step: "guest memory",
        error: { _tag: "NativeUnavailable", reason: `bad region layout (${mem.error._tag})` },
      });
    }
    const regions = layout.guestBases.map((base, i): MemoryRegionDesc => ({
      guestAddr: BigInt(base),
      size: BigInt(layout.regionSize),
      userAddr: BigInt(base) + layout.userOffset,
      mmapOffset: BigInt(i * layout.regionSize),
    }));
    const ranges = layout.guestBases.map((b) => [b, b + layout.regionSize] as const);
    return { memfd, memory: mem.value, regions, bytes, ranges };
  });

export interface RingSetup {
  readonly index: number;
  readonly size: number;
  /** Guest addresses. */
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  /** Start at this avail index (SET_VRING_BASE). */
  readonly base?: number;
}

/** A ring's eventfds: `kick` we write, `call` we poll. */
export interface RingFds {
  readonly kick: number;
  readonly call: number;
}

export class Frontend {
  /** The socket end (tests send hand-made messages through it). */
  readonly channel: Channel;
  /** Protocol features acknowledged (REPLY_ACK decides whether NEED_REPLY is asked). */
  protocolFeatures = 0n;

  constructor(
    readonly io: Fdio,
    readonly fd: number,
    readonly poller: Poller,
    /** Bound on every wait for a reply. */
    readonly timeoutMs: number,
  ) {
    this.channel = new Channel(io, fd, "reply", Math.min(timeoutMs, 1000));
  }

  get replyAck(): boolean {
    return (this.protocolFeatures & bit(ProtocolFeature.REPLY_ACK)) !== 0n;
  }

  /** The next whole message from the back-end, waiting at most `timeoutMs`; fds that came with it are closed. */
  receive(step: string): Effect.Effect<Message, FrontendError> {
    return Effect.gen({ self: this }, function* () {
      const deadline = Date.now() + this.timeoutMs;
      for (;;) {
        const r = this.channel.read();
        if (r._tag === "Closed") return yield* Effect.fail<FrontendError>({ _tag: "FrontendClosed", step });
        if (r._tag === "Refused")
          return yield* Effect.fail<FrontendError>({ _tag: "FrontendGarbage", step, error: r.error });
        if (r._tag === "Message") {
          for (const f of r.message.fds) this.io.libc.close(f);
          return r.message;
        }
        const left = deadline - Date.now();
        if (left <= 0)
          return yield* Effect.fail<FrontendError>({ _tag: "FrontendTimeout", step, ms: this.timeoutMs });
        yield* this.poller.wait([this.fd], POLLIN, left);
      }
    });
  }

  /** Sends bytes as they are (a hostile front-end in tests), fds with the first byte. */
  sendRaw(bytes: Uint8Array, fds: readonly number[] = []): Effect.Effect<void, FrontendError> {
    return Effect.suspend(() => {
      const s = this.channel.sendBytes(bytes, fds);
      return s.ok ? Effect.void : Effect.fail(sendFailed("raw message", s.error));
    });
  }

  /**
   * Sends `request` with exactly the flags asked (NEED_REPLY when `needReply`), then waits
   * for its explicit reply or the REPLY_ACK u64, returned as received; null when none is due.
   * A reply to another request is FrontendWrongReply.
   */
  call(
    request: number,
    body: Body = { _tag: "Empty" },
    opts: { readonly fds?: readonly number[]; readonly needReply?: boolean } = {},
  ): Effect.Effect<Message | null, FrontendError> {
    return Effect.gen({ self: this }, function* () {
      const step = requestName(request);
      const needReply = opts.needReply === true;
      const s = this.channel.send(
        { request, flags: VERSION | (needReply ? FLAG_NEED_REPLY : 0), body },
        opts.fds ?? [],
      );
      if (!s.ok) return yield* Effect.fail(sendFailed(step, s.error));
      if (!hasExplicitReply(request) && !needReply) return null;
      const m = yield* this.receive(step);
      if (m.request !== request)
        return yield* Effect.fail<FrontendError>({
          _tag: "FrontendWrongReply",
          step,
          got: requestName(m.request),
        });
      return m;
    });
  }

  /**
   * Sends `request` with `body` and `fds`; waits for its explicit reply, or for the
   * REPLY_ACK u64 when REPLY_ACK is negotiated (a non-zero one is FrontendNack). Null when
   * no reply is expected.
   */
  send(request: number, body: Body, fds: readonly number[] = []): Effect.Effect<Body | null, FrontendError> {
    return Effect.gen({ self: this }, function* () {
      const step = requestName(request);
      const ack = !hasExplicitReply(request) && this.replyAck;
      const m = yield* this.call(request, body, { fds, needReply: ack });
      if (m === null) return null;
      if (!ack) return m.body;
      if (m.body._tag !== "U64")
        return yield* Effect.fail<FrontendError>({ _tag: "FrontendBadBody", step, got: m.body._tag });
      if (m.body.value !== 0n) return yield* Effect.fail<FrontendError>({ _tag: "FrontendNack", step });
      return null;
    });
  }

  private u64(request: number): Effect.Effect<bigint, FrontendError> {
    return Effect.flatMap(this.send(request, { _tag: "Empty" }), (b) =>
      b !== null && b._tag === "U64"
        ? Effect.succeed(b.value)
        : Effect.fail<FrontendError>({
            _tag: "FrontendBadBody",
            step: requestName(request),
            got: b?._tag ?? "none",
          }),
    );
  }

  getFeatures(): Effect.Effect<bigint, FrontendError> {
    return this.u64(Req.GET_FEATURES);
  }
  setFeatures(features: bigint): Effect.Effect<void, FrontendError> {
    return Effect.asVoid(this.send(Req.SET_FEATURES, { _tag: "U64", value: features }));
  }
  getProtocolFeatures(): Effect.Effect<bigint, FrontendError> {
    return this.u64(Req.GET_PROTOCOL_FEATURES);
  }
  /** Acknowledges `features`; from here on NEED_REPLY is asked when REPLY_ACK is among them. */
  setProtocolFeatures(features: bigint): Effect.Effect<void, FrontendError> {
    return Effect.gen({ self: this }, function* () {
      yield* this.send(Req.SET_PROTOCOL_FEATURES, { _tag: "U64", value: features });
      this.protocolFeatures = features;
    });
  }
  setOwner(): Effect.Effect<void, FrontendError> {
    return Effect.asVoid(this.send(Req.SET_OWNER, { _tag: "Empty" }));
  }
  getQueueNum(): Effect.Effect<bigint, FrontendError> {
    return this.u64(Req.GET_QUEUE_NUM);
  }
  /** SET_MEM_TABLE with the RAM's regions, the memfd once per region. */
  setMemTable(ram: GuestRam): Effect.Effect<void, FrontendError> {
    return Effect.asVoid(
      this.send(
        Req.SET_MEM_TABLE,
        { _tag: "MemoryTable", regions: ram.regions },
        ram.regions.map(() => ram.memfd),
      ),
    );
  }

  /** SET_VRING_NUM, BASE, ADDR (user addresses), CALL, KICK, then ENABLE when `enable`. */
  setupRing(
    ring: RingSetup,
    fds: RingFds,
    userOffset: bigint,
    enable: boolean,
  ): Effect.Effect<void, FrontendError> {
    return Effect.gen({ self: this }, function* () {
      const i = ring.index;
      yield* this.send(Req.SET_VRING_NUM, { _tag: "VringState", index: i, num: ring.size });
      yield* this.send(Req.SET_VRING_BASE, { _tag: "VringState", index: i, num: ring.base ?? 0 });
      yield* this.send(Req.SET_VRING_ADDR, {
        _tag: "VringAddr",
        index: i,
        flags: 0,
        desc: BigInt(ring.desc) + userOffset,
        used: BigInt(ring.used) + userOffset,
        avail: BigInt(ring.avail) + userOffset,
        log: 0n,
      });
      yield* this.send(Req.SET_VRING_CALL, { _tag: "U64", value: BigInt(i) }, [fds.call]);
      yield* this.send(Req.SET_VRING_KICK, { _tag: "U64", value: BigInt(i) }, [fds.kick]);
      if (enable) yield* this.setVringEnable(i, true);
    });
  }

  setVringEnable(index: number, enabled: boolean): Effect.Effect<void, FrontendError> {
    return Effect.asVoid(
      this.send(Req.SET_VRING_ENABLE, { _tag: "VringState", index, num: enabled ? 1 : 0 }),
    );
  }

  /** Stops ring `index` and returns the back-end's next avail index for it. */
  getVringBase(index: number): Effect.Effect<number, FrontendError> {
    return Effect.flatMap(this.send(Req.GET_VRING_BASE, { _tag: "VringState", index, num: 0 }), (b) =>
      b !== null && b._tag === "VringState" && b.index === index
        ? Effect.succeed(b.num)
        : Effect.fail<FrontendError>({
            _tag: "FrontendBadBody",
            step: "GET_VRING_BASE",
            got: b === null ? "none" : b._tag === "VringState" ? `ring ${b.index}` : b._tag,
          }),
    );
  }

  /** GET_CONFIG of `size` bytes at `offset` (empty data: the back-end's error answer). */
  getConfig(offset: number, size: number): Effect.Effect<Uint8Array, FrontendError> {
    return Effect.flatMap(
      this.send(Req.GET_CONFIG, { _tag: "Config", offset, flags: 0, data: new Uint8Array(size) }),
      (b) =>
        b !== null && b._tag === "Config"
          ? Effect.succeed(b.data)
          : Effect.fail<FrontendError>({
              _tag: "FrontendBadBody",
              step: "GET_CONFIG",
              got: b?._tag ?? "none",
            }),
    );
  }

  /** Writes ring `fds`'s kick eventfd. */
  kick(fds: RingFds): void {
    signalEventFd(this.io, fds.kick);
  }

  /** Reads and resets a call eventfd: how many signals since the last read (coalesced). */
  drainCall(fds: RingFds): number {
    const n = drainEventFd(this.io, fds.call);
    return n < 0 ? 0 : n;
  }

  /** Waits up to `ms` for any of `calls` (call fds) to be signalled; how many are ready. */
  waitCalls(calls: readonly number[], ms: number): Effect.Effect<number> {
    return this.poller.wait(calls, POLLIN, Math.max(0, Math.round(ms)));
  }
}

/** The two eventfds of a ring, closed with the scope. */
export const acquireRingFds = (io: Fdio): Effect.Effect<RingFds, FrontendError, Scope.Scope> =>
  Effect.gen(function* () {
    const kick = yield* acquireEventFd(io).pipe(Effect.mapError(native("eventfd (kick)")));
    const call = yield* acquireEventFd(io).pipe(Effect.mapError(native("eventfd (call)")));
    return { kick, call };
  });

export interface ConnectOptions {
  readonly socketPath: string;
  /** "connect" (default): the back-end listens; "listen": we listen and the back-end connects. */
  readonly mode?: "connect" | "listen";
  /** How long to wait for the socket to accept (or for the back-end to connect). */
  readonly timeoutMs: number;
  /** Bound on each wait for a reply once connected (default `timeoutMs`). */
  readonly replyTimeoutMs?: number;
  /** Called before each connect retry (e.g. to notice that a spawned back-end died); a string stops waiting with that reason. */
  readonly stillWaiting?: () => string | null;
}

const ENOENT = 2;
const ECONNREFUSED = 111;

/** A front-end on a connected socket (owned by the scope), with its poller. */
export const connectFrontend = (
  options: ConnectOptions,
): Effect.Effect<Frontend, FrontendError, Scope.Scope> =>
  Effect.gen(function* () {
    const io = yield* fdio.pipe(Effect.mapError(native("load native bindings")));
    const poller = yield* Poller.make(io).pipe(Effect.mapError(native("poller")));
    const deadline = Date.now() + options.timeoutMs;
    const replyMs = options.replyTimeoutMs ?? options.timeoutMs;
    const step =
      options.mode === "listen" ? `accept on ${options.socketPath}` : `connect ${options.socketPath}`;
    const timeout: FrontendError = { _tag: "FrontendTimeout", step, ms: options.timeoutMs };
    if (options.mode === "listen") {
      const listener = yield* acquireUnixListener(io, options.socketPath).pipe(Effect.mapError(native(step)));
      for (;;) {
        const fd = acceptUnix(io, listener);
        if (fd >= 0) return new Frontend(io, yield* ownFd(io, fd), poller, replyMs);
        if (fd !== -11 && fd !== -4)
          return yield* Effect.fail(
            native(step)({
              _tag: "SyscallFailed",
              call: "accept4",
              errno: -fd,
              message: io.libc.strerror(-fd),
            }),
          );
        const left = deadline - Date.now();
        if (left <= 0) return yield* Effect.fail(timeout);
        yield* poller.wait([listener], POLLIN, Math.min(left, 100));
        const why = options.stillWaiting?.() ?? null;
        if (why !== null)
          return yield* Effect.fail<FrontendError>({ _tag: "FrontendClosed", step: `${step} (${why})` });
      }
    }
    for (;;) {
      const fd = connectUnix(io, options.socketPath);
      if (fd >= 0) return new Frontend(io, yield* ownFd(io, fd), poller, replyMs);
      if (fd !== -ENOENT && fd !== -ECONNREFUSED)
        return yield* Effect.fail(
          native(step)({
            _tag: "SyscallFailed",
            call: "connect",
            errno: -fd,
            message: io.libc.strerror(-fd),
          }),
        );
      const why = options.stillWaiting?.() ?? null;
      if (why !== null)
        return yield* Effect.fail<FrontendError>({ _tag: "FrontendClosed", step: `${step} (${why})` });
      if (Date.now() >= deadline) return yield* Effect.fail(timeout);
      // Nothing listening yet (a back-end still starting): wait a little and retry.
      yield* Effect.sleep(50);
    }
  });
