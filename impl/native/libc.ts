/**
 * The libc calls the native TAP backend makes, bound with koffi (Linux only). Loaded
 * lazily so that importing this module on a machine without libc (or koffi's native
 * part) does not fail; `loadLibc()` says why it is unavailable instead.
 *
 * Pointers to guest memory are passed as plain addresses (`uintptr_t` inside an iovec
 * array): see `hostAddress` for why the addresses of ArrayBuffer contents are stable.
 */
import koffi from "koffi";

export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const CLONE_NEWNET = 0x40000000;
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;

export const EAGAIN = 11;
export const EINTR = 4;

/** _IOW('T', nr, size) */
const iow = (nr: number, size: number): number => ((1 << 30) | (size << 16) | (0x54 << 8) | nr) >>> 0;
export const TUNSETIFF = iow(202, 4);
export const TUNSETOFFLOAD = iow(208, 4);
export const TUNSETVNETHDRSZ = iow(216, 4);

export const IFF_TAP = 0x0002;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;
export const IFNAMSIZ = 16;
export const IFREQ_SIZE = 40;

export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_UFO = 0x10;

type Fn<A extends unknown[], R> = (...args: A) => R;
interface AsyncFn<A extends unknown[], R> {
  async: (...args: [...A, (err: unknown, res: R) => void]) => void;
}

export interface Libc {
  readonly open: Fn<[path: string, flags: number], number>;
  readonly close: Fn<[fd: number], number>;
  /** ioctl with a pointer argument (ifreq, int *). */
  readonly ioctlPtr: Fn<[fd: number, req: number, arg: Uint8Array | Int32Array], number>;
  /** ioctl with a value argument (TUNSETOFFLOAD). */
  readonly ioctlVal: Fn<[fd: number, req: number, arg: number], number>;
  /** iov: an array of struct iovec { u64 base; u64 len }, each u64 as two u32 halves. */
  readonly readv: Fn<[fd: number, iov: Uint32Array, count: number], number>;
  readonly writev: Fn<[fd: number, iov: Uint32Array, count: number], number>;
  readonly read: Fn<[fd: number, buf: Uint8Array, len: number], number>;
  readonly write: Fn<[fd: number, buf: Uint8Array, len: number], number>;
  readonly eventfd: Fn<[initval: number, flags: number], number>;
  /** pollfd array as Int32Array pairs: [fd, events | revents << 16]. */
  readonly poll: Fn<[fds: Int32Array, n: number, timeoutMs: number], number> &
    AsyncFn<[fds: Int32Array, n: number, timeoutMs: number], number>;
  readonly setns: Fn<[fd: number, nstype: number], number>;
  readonly socket: Fn<[domain: number, type: number, protocol: number], number>;
  readonly bind: Fn<[fd: number, addr: Uint8Array, len: number], number>;
  readonly ifNameToIndex: Fn<[name: string], number>;
  readonly errno: () => number;
  readonly strerror: (errno: number) => string;
  /** The host address of the first byte of a Uint8Array's contents. */
  readonly addressOf: (bytes: Uint8Array) => bigint;
}

let cached: Libc | string | undefined;

/** The bindings, or a sentence saying why they cannot be loaded here. */
export const loadLibc = (): Libc | string => {
  if (cached !== undefined) return cached;
  if (process.platform !== "linux") return (cached = `native TAP needs Linux (this is ${process.platform})`);
  try {
    const lib = koffi.load("libc.so.6");
    const ioctl = lib.func("int ioctl(int fd, unsigned long req, ...)");
    const open = lib.func("int open(const char *path, int flags, ...)");
    const memmove = lib.func("void *memmove(void *dst, void *src, size_t n)");
    const strerror = lib.func("const char *strerror(int errnum)");
    const poll = lib.func("int poll(void *fds, unsigned long n, int timeout)");
    cached = {
      open: (path, flags) => open(path, flags) as number,
      close: lib.func("int close(int fd)") as Fn<[number], number>,
      ioctlPtr: (fd, req, arg) => ioctl(fd, req, "void *", arg) as number,
      ioctlVal: (fd, req, arg) => ioctl(fd, req, "unsigned long", arg) as number,
      readv: lib.func("intptr_t readv(int fd, void *iov, int cnt)") as Fn<
        [number, Uint32Array, number],
        number
      >,
      writev: lib.func("intptr_t writev(int fd, void *iov, int cnt)") as Fn<
        [number, Uint32Array, number],
        number
      >,
      read: lib.func("intptr_t read(int fd, void *buf, size_t len)") as Fn<
        [number, Uint8Array, number],
        number
      >,
      write: lib.func("intptr_t write(int fd, void *buf, size_t len)") as Fn<
        [number, Uint8Array, number],
        number
      >,
      eventfd: lib.func("int eventfd(unsigned int initval, int flags)") as Fn<[number, number], number>,
      poll: poll as unknown as Libc["poll"],
      setns: lib.func("int setns(int fd, int nstype)") as Fn<[number, number], number>,
      socket: lib.func("int socket(int domain, int type, int protocol)") as Fn<
        [number, number, number],
        number
      >,
      bind: lib.func("int bind(int fd, void *addr, uint32_t len)") as Fn<
        [number, Uint8Array, number],
        number
      >,
      ifNameToIndex: lib.func("unsigned int if_nametoindex(const char *name)") as Fn<[string], number>,
      errno: () => koffi.errno(),
      strerror: (e) => strerror(e) as string,
      // memmove(p, p, 0) returns p: koffi passes a TypedArray's own contents (no copy) to a
      // synchronous call, so this is the address of those contents.
      addressOf: (bytes) => koffi.address(memmove(bytes, bytes, 0)),
    };
    return cached;
  } catch (e) {
    return (cached = `koffi could not load libc: ${e instanceof Error ? e.message : String(e)}`);
  }
};

const addresses = new WeakMap<ArrayBufferLike, bigint>();

/**
 * The host address of `bytes[0]`. Guest memory regions sit on ArrayBuffers created once
 * (or on external memory such as an mmap'd view); V8 never moves the contents of such a
 * buffer once it exists (only small typed arrays created without an explicit buffer live
 * on the moving heap, and asking for their `.buffer` moves them off it first), so the
 * address is computed once per buffer and reused. Resizable buffers are refused: growing
 * one may move it.
 */
export const hostAddress = (libc: Libc, bytes: Uint8Array): bigint | undefined => {
  const buf = bytes.buffer;
  if ((buf as ArrayBuffer & { resizable?: boolean }).resizable === true) return undefined;
  if ((buf as SharedArrayBuffer & { growable?: boolean }).growable === true) return undefined;
  let base = addresses.get(buf);
  if (base === undefined) {
    const whole = new Uint8Array(buf, 0, buf.byteLength);
    if (whole.length === 0) return undefined;
    base = libc.addressOf(whole);
    addresses.set(buf, base);
  }
  return base + BigInt(bytes.byteOffset);
};
