/**
 * A TAP device on /dev/net/tun, through koffi (Firecracker `tap.rs`, TAP-*).
 *
 * `Tap.open` opens with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (TAP-OPEN-FLAGS), O_NONBLOCK so a
 * read never blocks the event loop (waiting is `poll` on koffi's worker thread, see
 * tap-backend.ts), and O_CLOEXEC. Names of 16 bytes or more are InvalidIfname
 * (TAP-IFNAME-LEN); "" or a pattern like "tap%d" gets a kernel-chosen name
 * (TAP-IFNAME-KERNEL). The interface lives while the fd is open: `acquireTap` ties both to
 * a Scope (TAP-SCOPE).
 *
 * `writeSegments` / `readSegments` do one writev / readv straight over guest-memory
 * segments (TAP-WRITEV, TAP-READV): the iovec array holds the host addresses of the guest
 * memory bytes, so no frame byte is copied in JavaScript.
 */
import { Effect, type Scope } from "effect";
import { err, ok, type Result } from "../../spec/result.ts";
import type { GuestSegments } from "../net/backend.ts";
import {
  IFF_NO_PI,
  IFF_TAP,
  IFF_VNET_HDR,
  IFNAMSIZ,
  IFREQ_SIZE,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
  TUNSETIFF,
  TUNSETOFFLOAD,
  TUNSETVNETHDRSZ,
  hostAddress,
  loadLibc,
  type Libc,
} from "./libc.ts";

export type TapError =
  | { readonly _tag: "NativeUnavailable"; readonly reason: string }
  | { readonly _tag: "OpenTun"; readonly errno: number; readonly message: string }
  | { readonly _tag: "InvalidIfname"; readonly name: string }
  | {
      readonly _tag: "IfreqExecuteError";
      readonly errno: number;
      readonly message: string;
      readonly name: string;
    }
  | { readonly _tag: "SetOffloadFlags"; readonly errno: number; readonly message: string }
  | { readonly _tag: "SetSizeOfVnetHdr"; readonly errno: number; readonly message: string };

/** readSegments: the segments cannot be handed to readv (too many, or not addressable); use readInto. */
export const NOT_ADDRESSABLE = -100_000;

/** Linux's UIO_MAXIOV: longer segment lists go through a bounce buffer. */
export const IOV_MAX = 1024;

/** TAP-IFNAME-LEN: the NUL-terminated 16-byte ifr_name, or InvalidIfname. */
export const terminatedIfName = (name: string): Result<Uint8Array, TapError> => {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length >= IFNAMSIZ) return err({ _tag: "InvalidIfname", name });
  const out = new Uint8Array(IFNAMSIZ);
  out.set(bytes);
  return ok(out);
};

const nameOf = (b: Uint8Array): string => {
  const end = b.indexOf(0);
  return new TextDecoder().decode(b.subarray(0, end < 0 ? IFNAMSIZ : end));
};

export class Tap {
  private closed = false;
  /** struct iovec[IOV_MAX] as u32 halves: [base lo, base hi, len lo, len hi]. */
  private readonly iov = new Uint32Array(IOV_MAX * 4);
  private readonly bufferAddress = new WeakMap<ArrayBufferLike, number>();
  private bounce: Uint8Array | undefined;

  private constructor(
    readonly libc: Libc,
    readonly fd: number,
    /** The 16-byte ifr_name the kernel reported. */
    readonly ifNameBytes: Uint8Array,
  ) {}

  get ifName(): string {
    return nameOf(this.ifNameBytes);
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Opens (and so creates) the interface `name` in the calling thread's network namespace. */
  static open(name: string): Result<Tap, TapError> {
    const libc = loadLibc();
    if (typeof libc === "string") return err({ _tag: "NativeUnavailable", reason: libc });
    // Name first: a bad name must not cost an fd (and cannot leak one).
    const ifName = terminatedIfName(name);
    if (!ifName.ok) return ifName;
    const fd = libc.open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      const e = libc.errno();
      return err({ _tag: "OpenTun", errno: e, message: libc.strerror(e) });
    }
    const ifr = new Uint8Array(IFREQ_SIZE);
    ifr.set(ifName.value);
    new DataView(ifr.buffer).setInt16(IFNAMSIZ, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, true);
    if (libc.ioctlPtr(fd, TUNSETIFF, ifr) < 0) {
      const e = libc.errno();
      libc.close(fd);
      return err({ _tag: "IfreqExecuteError", errno: e, message: libc.strerror(e), name });
    }
    return ok(new Tap(libc, fd, ifr.slice(0, IFNAMSIZ)));
  }

  /** TAP-OFFLOAD: TUN_F_* flags the kernel may leave to the guest. */
  setOffload(flags: number): Result<void, TapError> {
    if (this.libc.ioctlVal(this.fd, TUNSETOFFLOAD, flags >>> 0) < 0) {
      const e = this.libc.errno();
      return err({ _tag: "SetOffloadFlags", errno: e, message: this.libc.strerror(e) });
    }
    return ok(undefined);
  }

  /** TAP-VNET-HDR-SZ. */
  setVnetHdrSize(size: number): Result<void, TapError> {
    if (this.libc.ioctlPtr(this.fd, TUNSETVNETHDRSZ, new Int32Array([size])) < 0) {
      const e = this.libc.errno();
      return err({ _tag: "SetSizeOfVnetHdr", errno: e, message: this.libc.strerror(e) });
    }
    return ok(undefined);
  }

  /** Host address of view[0], or -1; one native call per ArrayBuffer, then a map lookup. */
  private addressOf(view: Uint8Array): number {
    const buf = view.buffer;
    let a = this.bufferAddress.get(buf);
    if (a === undefined) {
      const big = hostAddress(this.libc, new Uint8Array(buf, 0, buf.byteLength));
      a = big === undefined ? -1 : Number(big);
      this.bufferAddress.set(buf, a);
    }
    return a < 0 ? -1 : a + view.byteOffset;
  }

  /** Fills the iovec array from `segs`; the count, or -1 when they cannot be addressed directly. */
  private fillIov(segs: GuestSegments, limit: number): number {
    const n = segs.segmentCount;
    if (n > IOV_MAX) return -1;
    const iov = this.iov;
    let left = limit;
    let k = 0;
    for (let i = 0; i < n && left > 0; i++) {
      const view = segs.segment(i)!;
      const len = Math.min(view.length, left);
      if (len === 0) continue;
      const addr = this.addressOf(view);
      if (addr < 0) return -1;
      const j = k * 4;
      iov[j] = addr % 0x1_0000_0000;
      iov[j + 1] = Math.floor(addr / 0x1_0000_0000);
      iov[j + 2] = len;
      iov[j + 3] = 0;
      left -= len;
      k++;
    }
    return k;
  }

  private bounceBuffer(n: number): Uint8Array {
    if (this.bounce === undefined || this.bounce.length < n) this.bounce = new Uint8Array(Math.max(n, 65562));
    return this.bounce;
  }

  /** TAP-WRITEV: one writev of all segments. Bytes written, or a negative errno. */
  writeSegments(segs: GuestSegments, length: number): number {
    if (this.closed) return -9; // EBADF
    const k = this.fillIov(segs, length);
    if (k < 0) return this.writeBounced(segs, length);
    const r = this.libc.writev(this.fd, this.iov, k);
    return r < 0 ? -this.libc.errno() : r;
  }

  private writeBounced(segs: GuestSegments, length: number): number {
    const buf = this.bounceBuffer(length);
    let at = 0;
    for (let i = 0; i < segs.segmentCount && at < length; i++) {
      const view = segs.segment(i)!;
      const len = Math.min(view.length, length - at);
      buf.set(len === view.length ? view : view.subarray(0, len), at);
      at += len;
    }
    const r = this.libc.write(this.fd, buf, at);
    return r < 0 ? -this.libc.errno() : r;
  }

  /**
   * TAP-READV: one readv into the segments, at most `room` bytes. Bytes read, -EAGAIN
   * when nothing is waiting, NOT_ADDRESSABLE, or another negative errno.
   */
  readSegments(segs: GuestSegments, room: number): number {
    if (this.closed) return -9;
    const k = this.fillIov(segs, room);
    if (k < 0) return NOT_ADDRESSABLE;
    const r = this.libc.readv(this.fd, this.iov, k);
    return r < 0 ? -this.libc.errno() : r;
  }

  /** One read into `buf`: bytes read or a negative errno. */
  readInto(buf: Uint8Array): number {
    if (this.closed) return -9;
    const r = this.libc.read(this.fd, buf, buf.length);
    return r < 0 ? -this.libc.errno() : r;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.libc.close(this.fd);
  }
}

/** TAP-SCOPE: the fd (and with it the interface) is closed when the scope closes. */
export const acquireTap = (name: string): Effect.Effect<Tap, TapError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const t = Tap.open(name);
      return t.ok ? Effect.succeed(t.value) : Effect.fail(t.error);
    }),
    (tap) => Effect.sync(() => tap.close()),
  );
