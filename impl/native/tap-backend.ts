/**
 * The TAP NetBackend: packets cross with their virtio_net_hdr, one writev per TX chain
 * and one readv per RX packet straight over guest memory (TAP-WRITEV, TAP-READV).
 *
 * Waiting for RX (TAP-WAIT). The fd is non-blocking; `waitReadable` runs
 * `poll([tap fd, eventfd], -1)` as a koffi async call, which blocks one of koffi's worker
 * threads, not the event loop, and burns no CPU while the link is idle. The eventfd is the
 * way out: an interrupted wait, or closing the scope, writes it so the worker's poll
 * returns, and the fds are closed only after that, so the worker never polls a closed
 * (or reused) fd. Alternatives measured and rejected (impl/native/README.md): Node's
 * net.Socket refuses a character-device fd, and fs.read on a blocking fd parks a libuv
 * threadpool thread per wait with no way to cancel it.
 */
import { Effect, type Scope } from "effect";
import { err, ok, type Result } from "../../spec/result.ts";
import { type NetBackendShape, type NetBackendStats, type RxBuffer, type TxPacket } from "../net/backend.ts";
import { EAGAIN, EFD_CLOEXEC, EFD_NONBLOCK, POLLIN, TUN_F_CSUM, loadLibc, type Libc } from "./libc.ts";
import type { Tap } from "./tap.ts";
import { VIRTIO_NET_F, hasFeatureBit } from "../../wire/features.ts";
import { NOT_ADDRESSABLE, acquireTap, type TapError } from "./tap.ts";

export interface TapBackendStats extends NetBackendStats {
  /** Completed async polls (wake-ups), to show waiting is not a busy loop. */
  wakeups: number;
}

export class TapBackend implements NetBackendShape {
  readonly name: string;
  readonly carriesHeader = true;
  readonly stats: TapBackendStats = { sent: 0, received: 0, dropped: 0, errors: 0, wakeups: 0 };
  /** The last negative errno from the kernel, for diagnostics. */
  lastError = 0;
  private headerLength: 10 | 12 = 12;
  private readonly pollfds = new Int32Array(4);
  private polling = false;
  private closing = false;
  private waiters: (() => void)[] = [];
  private pollDone: (() => void) | null = null;
  private readonly eventBuf = new Uint8Array(8);
  private scratch: Uint8Array | undefined;

  private constructor(
    readonly tap: Tap,
    private readonly libc: Libc,
    private readonly eventFd: number,
  ) {
    this.name = `tap:${tap.ifName}`;
  }

  /** Wraps an open TAP; fails only if the eventfd cannot be made. */
  static make(tap: Tap): Result<TapBackend, TapError> {
    const libc = loadLibc();
    if (typeof libc === "string") return err({ _tag: "NativeUnavailable", reason: libc });
    const efd = libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) {
      const e = libc.errno();
      return err({ _tag: "OpenTun", errno: e, message: `eventfd: ${libc.strerror(e)}` });
    }
    return ok(new TapBackend(tap, libc, efd));
  }

  /** TAP-VNET-HDR-SZ and TAP-OFFLOAD from what the driver acknowledged. */
  configure(headerLength: 10 | 12, acked: bigint): boolean {
    this.headerLength = headerLength;
    if (!this.tap.setVnetHdrSize(headerLength).ok) return false;
    // GUEST_CSUM: the guest accepts partially checksummed frames, so the kernel may send
    // them (NEEDS_CSUM); without it the kernel completes every checksum first.
    return this.tap.setOffload(hasFeatureBit(acked, VIRTIO_NET_F.GUEST_CSUM) ? TUN_F_CSUM : 0).ok;
  }

  send(p: TxPacket): number {
    const n = this.tap.writeSegments(p, p.headerLength + p.frameLength);
    if (n < 0) {
      this.stats.errors++;
      this.lastError = n;
      return n;
    }
    this.stats.sent++;
    return n;
  }

  receive(dst: RxBuffer): number {
    let n: number;
    if (dst.capacity >= this.headerLength) {
      n = this.tap.readSegments(dst, dst.capacity);
      if (n === NOT_ADDRESSABLE) n = this.receiveBounced(dst);
    } else {
      // The kernel refuses (and drops the packet for) room smaller than the vnet header;
      // read it whole and keep what fits, as for any other backend (NET-RX-USED-LEN).
      n = this.receiveBounced(dst);
    }
    if (n === -EAGAIN) return -1;
    if (n < 0) {
      this.stats.errors++;
      this.lastError = n;
      return -1;
    }
    this.stats.received++;
    return n;
  }

  private receiveBounced(dst: RxBuffer): number {
    if (this.scratch === undefined) this.scratch = new Uint8Array(65562 + 12);
    const n = this.tap.readInto(this.scratch);
    if (n < 0) return n;
    return dst.write(this.scratch, 0, n, 0);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private kickEventFd(): void {
    const b = this.eventBuf;
    b.fill(0);
    b[0] = 1;
    this.libc.write(this.eventFd, b, 8);
  }

  private startPoll(): void {
    if (this.polling || this.closing) return;
    this.polling = true;
    const p = this.pollfds;
    p[0] = this.tap.fd;
    p[1] = POLLIN;
    p[2] = this.eventFd;
    p[3] = POLLIN;
    this.libc.poll.async(p, 2, -1, (_e, _r) => {
      this.polling = false;
      this.stats.wakeups++;
      const tapReady = p[1]! >>> 16 !== 0;
      if (p[3]! >>> 16 !== 0) this.libc.read(this.eventFd, this.eventBuf, 8);
      if (this.closing) {
        const done = this.pollDone;
        this.pollDone = null;
        done?.();
        return;
      }
      if (tapReady) this.wake();
      if (this.waiters.length > 0) this.startPoll();
    });
  }

  readonly waitReadable: Effect.Effect<void> = Effect.callback<void>((resume) => {
    if (this.closing) {
      resume(Effect.void);
      return;
    }
    const done = (): void => resume(Effect.void);
    this.waiters.push(done);
    this.startPoll();
    return Effect.sync(() => {
      this.waiters = this.waiters.filter((w) => w !== done);
      // Nobody waits any more: let the worker go rather than keep it parked.
      if (this.waiters.length === 0 && this.polling) this.kickEventFd();
    });
  });

  /** Stops waiting (the worker's poll returns first), then closes the eventfd. */
  readonly close: Effect.Effect<void> = Effect.callback<void>((resume) => {
    if (this.closing && !this.polling) {
      resume(Effect.void);
      return;
    }
    this.closing = true;
    const finish = (): void => {
      this.libc.close(this.eventFd);
      this.wake();
      resume(Effect.void);
    };
    if (!this.polling) {
      finish();
      return;
    }
    this.pollDone = finish;
    this.kickEventFd();
  });
}

/**
 * TAP-SCOPE: a TAP (fd and interface) and its backend, released in reverse order when the
 * scope closes (the backend's waiter first, then the fd), on failure too.
 */
export const acquireTapBackend = (name: string): Effect.Effect<TapBackend, TapError, Scope.Scope> =>
  Effect.gen(function* () {
    const tap = yield* acquireTap(name);
    return yield* Effect.acquireRelease(
      Effect.suspend(() => {
        const b = TapBackend.make(tap);
        return b.ok ? Effect.succeed(b.value) : Effect.fail(b.error);
      }),
      (b) => b.close,
    );
  });
