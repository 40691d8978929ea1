/**
 * The libc calls vhost-user needs, bound with koffi (Linux, x86-64/aarch64 LP64 layouts):
 * Unix stream sockets with SCM_RIGHTS (recvmsg/sendmsg, cmsghdr built and parsed here),
 * shared mappings of a file descriptor (mmap/munmap; `koffi.view` turns one into an
 * ArrayBuffer over the mapping itself, no copy), memfd_create + ftruncate, eventfds.
 * Loaded lazily: `loadFdio()` gives the bindings or a sentence saying why there are none.
 *
 * Everything returns plain numbers (>= 0, or -errno) so that callers decide what is an
 * error; `scoped.ts` wraps them as Effect Scope resources.
 */
import koffi from "koffi";
import { hostAddress, loadLibc, type Libc } from "./libc.ts";

export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SCM_RIGHTS = 1;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_CTRUNC = 0x8;
export const MSG_CMSG_CLOEXEC = 0x40000000;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
export const MFD_CLOEXEC = 1;
export const EAGAIN = 11;
export const EINTR = 4;
export const EBADF = 9;
export const ENOENT = 2;
export const ECONNREFUSED = 111;
export const SUN_PATH_MAX = 107;
/** vhost-user sends at most 8 fds with a message (VHOST_MEMORY_BASELINE_NREGIONS). */
export const MAX_FDS = 8;

const SOCKADDR_UN_SIZE = 110;
const MSGHDR_SIZE = 56;
const CMSG_HDR = 16;
/** CMSG_SPACE(MAX_FDS * 4) */
const CONTROL_SIZE = CMSG_HDR + MAX_FDS * 4;

type Fn<A extends unknown[], R> = (...args: A) => R;

/** An opaque pointer koffi gave us (mmap's result). */
export type Pointer = unknown;

export interface Fdio {
  readonly libc: Libc;
  readonly socket: Fn<[domain: number, type: number, protocol: number], number>;
  readonly bind: Fn<[fd: number, addr: Uint8Array, len: number], number>;
  readonly connect: Fn<[fd: number, addr: Uint8Array, len: number], number>;
  readonly listen: Fn<[fd: number, backlog: number], number>;
  readonly accept4: Fn<[fd: number, addr: null, len: null, flags: number], number>;
  readonly recvmsg: Fn<[fd: number, msg: Uint8Array, flags: number], number>;
  readonly sendmsg: Fn<[fd: number, msg: Uint8Array, flags: number], number>;
  readonly mmap: Fn<[addr: null, len: number, prot: number, flags: number, fd: number, off: number], Pointer>;
  readonly munmap: Fn<[addr: Pointer, len: number], number>;
  readonly memfdCreate: Fn<[name: string, flags: number], number>;
  readonly ftruncate: Fn<[fd: number, len: number], number>;
  readonly fcntl: Fn<[fd: number, cmd: number, arg: number], number>;
  readonly unlink: Fn<[path: string], number>;
  readonly lseek: Fn<[fd: number, off: number, whence: number], number>;
}

let cached: Fdio | string | undefined;

/** The bindings, or why they cannot be loaded here. */
export const loadFdio = (): Fdio | string => {
  if (cached !== undefined) return cached;
  const libc = loadLibc();
  if (typeof libc === "string") return (cached = libc);
  if (process.arch !== "x64" && process.arch !== "arm64") {
    return (cached = `vhost-user bindings assume an LP64 Linux (this is ${process.arch})`);
  }
  try {
    const lib = koffi.load("libc.so.6");
    // ssize_t is not a koffi primitive: name it once (intptr_t has its size and sign).
    try {
      koffi.alias("ssize_t", "intptr_t");
    } catch {
      // already declared by an earlier load in this process
    }
    const fcntl = lib.func("int fcntl(int fd, int cmd, ...)");
    cached = {
      libc,
      socket: lib.func("int socket(int domain, int type, int protocol)") as Fdio["socket"],
      bind: lib.func("int bind(int fd, void *addr, uint32_t len)") as Fdio["bind"],
      connect: lib.func("int connect(int fd, void *addr, uint32_t len)") as Fdio["connect"],
      listen: lib.func("int listen(int fd, int backlog)") as Fdio["listen"],
      accept4: lib.func("int accept4(int fd, void *addr, void *len, int flags)") as Fdio["accept4"],
      recvmsg: lib.func("ssize_t recvmsg(int fd, void *msg, int flags)") as Fdio["recvmsg"],
      sendmsg: lib.func("ssize_t sendmsg(int fd, void *msg, int flags)") as Fdio["sendmsg"],
      mmap: lib.func(
        "void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)",
      ) as Fdio["mmap"],
      munmap: lib.func("int munmap(void *addr, size_t len)") as Fdio["munmap"],
      memfdCreate: lib.func("int memfd_create(const char *name, unsigned int flags)") as Fdio["memfdCreate"],
      ftruncate: lib.func("int ftruncate(int fd, int64_t len)") as Fdio["ftruncate"],
      fcntl: (fd, cmd, arg) => fcntl(fd, cmd, "int", arg) as number,
      unlink: lib.func("int unlink(const char *path)") as Fdio["unlink"],
      lseek: lib.func("int64_t lseek(int fd, int64_t off, int whence)") as Fdio["lseek"],
    };
    return cached;
  } catch (e) {
    return (cached = `koffi could not bind the socket/mmap calls: ${e instanceof Error ? e.message : String(e)}`);
  }
};

/** -errno of the last failed call. */
const fail = (io: Fdio): number => -io.libc.errno();

/** struct sockaddr_un for `path`, or undefined when the path does not fit (107 bytes + NUL). */
export const sockaddrUn = (path: string): Uint8Array | undefined => {
  const name = Buffer.from(path, "utf8");
  if (name.length === 0 || name.length > SUN_PATH_MAX || name.includes(0)) return undefined;
  const addr = new Uint8Array(SOCKADDR_UN_SIZE);
  addr[0] = AF_UNIX;
  addr.set(name, 2);
  return addr;
};

/** A listening Unix stream socket at `path` (non-blocking, close-on-exec): fd or -errno; -ENAMETOOLONG for a bad path. */
export const listenUnix = (io: Fdio, path: string, backlog = 4): number => {
  const addr = sockaddrUn(path);
  if (addr === undefined) return -36;
  const fd = io.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(io);
  if (io.bind(fd, addr, addr.length) < 0 || io.listen(fd, backlog) < 0) {
    const e = fail(io);
    io.libc.close(fd);
    return e;
  }
  return fd;
};

/** A connected Unix stream socket (blocking connect, then non-blocking): fd or -errno. */
export const connectUnix = (io: Fdio, path: string): number => {
  const addr = sockaddrUn(path);
  if (addr === undefined) return -36;
  const fd = io.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(io);
  if (io.connect(fd, addr, addr.length) < 0) {
    const e = fail(io);
    io.libc.close(fd);
    return e;
  }
  setNonBlocking(io, fd);
  return fd;
};

const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

export const setNonBlocking = (io: Fdio, fd: number): boolean => {
  const fl = io.fcntl(fd, F_GETFL, 0);
  return fl >= 0 && io.fcntl(fd, F_SETFL, fl | O_NONBLOCK) >= 0;
};

/** accept4 on a listener: the connection's fd (non-blocking, close-on-exec), or -errno (-EAGAIN: none waiting). */
export const acceptUnix = (io: Fdio, listener: number): number => {
  const fd = io.accept4(listener, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
  return fd < 0 ? fail(io) : fd;
};

/**
 * One socket's message I/O buffers: a msghdr, one iovec and a control buffer with room for
 * MAX_FDS descriptors, allocated once and addressed through `hostAddress` (their contents
 * never move), so a receive or send allocates only the array of fds it returns.
 */
export class MsgIo {
  private readonly msg = new Uint8Array(MSGHDR_SIZE);
  private readonly msgView = new DataView(this.msg.buffer);
  private readonly iov = new Uint8Array(16);
  private readonly iovView = new DataView(this.iov.buffer);
  private readonly control = new Uint8Array(CONTROL_SIZE);
  private readonly controlView = new DataView(this.control.buffer);
  private readonly iovAddr: bigint;
  private readonly controlAddr: bigint;
  /** Set by the last receive: the kernel dropped descriptors (MSG_CTRUNC). */
  truncatedFds = false;

  constructor(private readonly io: Fdio) {
    this.iovAddr = addressOf(io, this.iov);
    this.controlAddr = addressOf(io, this.control);
  }

  private setup(buf: Uint8Array, controlLen: number): void {
    const v = this.msgView;
    this.iovView.setBigUint64(0, addressOf(this.io, buf), true);
    this.iovView.setBigUint64(8, BigInt(buf.length), true);
    v.setBigUint64(0, 0n, true); // msg_name
    v.setUint32(8, 0, true); // msg_namelen
    v.setBigUint64(16, this.iovAddr, true); // msg_iov
    v.setBigUint64(24, 1n, true); // msg_iovlen
    v.setBigUint64(32, controlLen === 0 ? 0n : this.controlAddr, true);
    v.setBigUint64(40, BigInt(controlLen), true);
    v.setInt32(48, 0, true); // msg_flags
  }

  /**
   * recvmsg into `buf` (all of it, or fewer bytes), without blocking. Descriptors that
   * arrived with those bytes are pushed onto `fds` (they are the caller's to close).
   * Returns the byte count (0: the peer closed), or -errno (-EAGAIN: nothing to read).
   */
  recv(fd: number, buf: Uint8Array, fds: number[]): number {
    if (buf.length === 0) return 0;
    this.setup(buf, CONTROL_SIZE);
    const n = this.io.recvmsg(fd, this.msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return fail(this.io);
    this.truncatedFds = (this.msgView.getInt32(48, true) & MSG_CTRUNC) !== 0;
    const controlLen = Number(this.msgView.getBigUint64(40, true));
    const c = this.controlView;
    let at = 0;
    // Walk every cmsghdr (CMSG_FIRSTHDR/CMSG_NXTHDR): lengths are 8-byte aligned.
    while (at + CMSG_HDR <= controlLen) {
      const len = Number(c.getBigUint64(at, true));
      if (len < CMSG_HDR || at + len > controlLen) break;
      if (c.getInt32(at + 8, true) === SOL_SOCKET && c.getInt32(at + 12, true) === SCM_RIGHTS) {
        for (let p = at + CMSG_HDR; p + 4 <= at + len; p += 4) fds.push(c.getInt32(p, true));
      }
      at += (len + 7) & ~7;
    }
    return n;
  }

  /** sendmsg of `buf` with `fds` attached (SCM_RIGHTS); bytes sent or -errno. At most MAX_FDS fds. */
  send(fd: number, buf: Uint8Array, fds: readonly number[]): number {
    if (fds.length > MAX_FDS) return -22;
    const controlLen = fds.length === 0 ? 0 : CMSG_HDR + ((fds.length * 4 + 7) & ~7);
    this.setup(buf, controlLen);
    if (fds.length > 0) {
      const c = this.controlView;
      this.control.fill(0);
      c.setBigUint64(0, BigInt(CMSG_HDR + fds.length * 4), true);
      c.setInt32(8, SOL_SOCKET, true);
      c.setInt32(12, SCM_RIGHTS, true);
      for (let i = 0; i < fds.length; i++) c.setInt32(CMSG_HDR + 4 * i, fds[i]!, true);
    }
    const n = this.io.sendmsg(fd, this.msg, MSG_NOSIGNAL);
    return n < 0 ? fail(this.io) : n;
  }
}

/** The contents' address, cached per buffer (`hostAddress`); a resizable buffer is asked each time. */
const addressOf = (io: Fdio, bytes: Uint8Array): bigint =>
  hostAddress(io.libc, bytes) ?? io.libc.addressOf(bytes);

/** A shared mapping of a file descriptor: `bytes` are the mapped pages themselves. */
export interface Mapping {
  readonly pointer: Pointer;
  readonly length: number;
  /** The whole mapping (valid until `unmap`: touching it afterwards faults the process). */
  readonly buffer: ArrayBuffer;
}

/** mmap(fd, offset, length) shared read/write; `offset` must be page aligned. Mapping or -errno. */
export const mapShared = (io: Fdio, fd: number, offset: number, length: number): Mapping | number => {
  if (!(Number.isSafeInteger(length) && length > 0 && Number.isSafeInteger(offset) && offset >= 0))
    return -22;
  const p = io.mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  const addr = p === null ? 0n : koffi.address(p);
  if (p === null || addr === 0xffff_ffff_ffff_ffffn) return fail(io);
  return { pointer: p, length, buffer: koffi.view(p, length) };
};

export const unmap = (io: Fdio, m: Mapping): number => (io.munmap(m.pointer, m.length) < 0 ? fail(io) : 0);

const SEEK_END = 2;

/** The size of the file behind `fd` (a memfd, a shm or hugetlbfs file), or -errno. */
export const fileSize = (io: Fdio, fd: number): number => {
  const n = io.lseek(fd, 0, SEEK_END);
  return n < 0 ? fail(io) : n;
};

/** A memfd of `size` bytes (close-on-exec): fd or -errno. */
export const createMemfd = (io: Fdio, name: string, size: number): number => {
  const fd = io.memfdCreate(name, MFD_CLOEXEC);
  if (fd < 0) return fail(io);
  if (io.ftruncate(fd, size) < 0) {
    const e = fail(io);
    io.libc.close(fd);
    return e;
  }
  return fd;
};

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;

/** A non-blocking eventfd: fd or -errno. */
export const createEventFd = (io: Fdio): number => {
  const fd = io.libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return fd < 0 ? fail(io) : fd;
};

const ONE = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]);
const drainBuf = new Uint8Array(8);
const drainView = new DataView(drainBuf.buffer);

/** Adds 1 to an eventfd's counter; true when written (a full counter, EAGAIN, still wakes the reader). */
export const signalEventFd = (io: Fdio, fd: number): boolean => {
  const n = io.libc.write(fd, ONE, 8);
  return n === 8 || io.libc.errno() === EAGAIN;
};

/** Reads (and so resets) an eventfd's counter: its value, 0 when it was 0 (non-blocking), or -errno. */
export const drainEventFd = (io: Fdio, fd: number): number => {
  const n = io.libc.read(fd, drainBuf, 8);
  if (n !== 8) {
    const e = io.libc.errno();
    return e === EAGAIN ? 0 : -e;
  }
  return Number(drainView.getBigUint64(0, true));
};
