/**
 * A writer for the cpio "newc" format, the only archive format the Linux kernel unpacks
 * into its initramfs (Documentation/driver-api/early-userspace/buffer-format.rst). Written
 * here rather than calling `cpio` because Debian does not install it by default, and
 * because device nodes (/dev/console) can then be archived without root.
 *
 * Each entry is a 110-byte ASCII header ("070701" and 13 eight-digit hex fields), the
 * NUL-terminated name padded to a multiple of 4 (counting the header), then the data
 * padded to a multiple of 4; the archive ends with an entry named "TRAILER!!!". Several
 * archives concatenated are one initramfs to the kernel: later entries add to (or
 * replace) earlier ones, which is how a run appends its own script to the shared image.
 */

export type CpioEntry =
  | { readonly kind: "dir"; readonly path: string; readonly mode?: number }
  | { readonly kind: "file"; readonly path: string; readonly data: Uint8Array; readonly mode?: number }
  | { readonly kind: "symlink"; readonly path: string; readonly target: string }
  | {
      readonly kind: "chardev";
      readonly path: string;
      readonly major: number;
      readonly minor: number;
      readonly mode?: number;
    };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const HEADER_LEN = 110;

const pad4 = (n: number): number => (4 - (n % 4)) % 4;

const hex8 = (n: number): string => {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio field out of range: ${n}`);
  return n.toString(16).padStart(8, "0");
};

interface Header {
  readonly ino: number;
  readonly mode: number;
  readonly nlink: number;
  readonly size: number;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
  readonly nameSize: number;
}

const header = (h: Header): string =>
  "070701" +
  hex8(h.ino) +
  hex8(h.mode) +
  hex8(0) + // uid: root
  hex8(0) + // gid
  hex8(h.nlink) +
  hex8(0) + // mtime: fixed, so the same inputs give the same bytes
  hex8(h.size) +
  hex8(0) + // devmajor
  hex8(0) + // devminor
  hex8(h.rdevMajor) +
  hex8(h.rdevMinor) +
  hex8(h.nameSize) +
  hex8(0); // check: only used by the "070702" variant

/** Archive paths are relative ("bin/busybox"); a leading "/" or "./" is dropped. */
const archivePath = (p: string): string => {
  const s = p.replace(/^(\.\/|\/)+/, "");
  if (s === "" || s.split("/").some((part) => part === ".." || part === "")) {
    throw new RangeError(`cpio: bad path ${JSON.stringify(p)}`);
  }
  return s;
};

/** The newc archive of `entries`, in order, with its trailer. */
export const writeCpio = (entries: readonly CpioEntry[]): Uint8Array => {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  let total = 0;
  const push = (b: Uint8Array): void => {
    parts.push(b);
    total += b.length;
  };
  const emit = (name: string, h: Omit<Header, "nameSize">, data: Uint8Array): void => {
    const nameBytes = enc.encode(name);
    const nameSize = nameBytes.length + 1;
    push(enc.encode(header({ ...h, nameSize })));
    push(nameBytes);
    push(new Uint8Array(1 + pad4(HEADER_LEN + nameSize)));
    push(data);
    push(new Uint8Array(pad4(data.length)));
  };
  let ino = 1;
  for (const e of entries) {
    const name = archivePath(e.path);
    switch (e.kind) {
      case "dir":
        emit(
          name,
          { ino: ino++, mode: S_IFDIR | (e.mode ?? 0o755), nlink: 2, size: 0, rdevMajor: 0, rdevMinor: 0 },
          new Uint8Array(0),
        );
        break;
      case "file":
        emit(
          name,
          {
            ino: ino++,
            mode: S_IFREG | (e.mode ?? 0o644),
            nlink: 1,
            size: e.data.length,
            rdevMajor: 0,
            rdevMinor: 0,
          },
          e.data,
        );
        break;
      case "symlink": {
        const target = enc.encode(e.target);
        emit(
          name,
          { ino: ino++, mode: S_IFLNK | 0o777, nlink: 1, size: target.length, rdevMajor: 0, rdevMinor: 0 },
          target,
        );
        break;
      }
      case "chardev":
        emit(
          name,
          {
            ino: ino++,
            mode: S_IFCHR | (e.mode ?? 0o600),
            nlink: 1,
            size: 0,
            rdevMajor: e.major,
            rdevMinor: e.minor,
          },
          new Uint8Array(0),
        );
        break;
    }
  }
  emit("TRAILER!!!", { ino: 0, mode: 0, nlink: 1, size: 0, rdevMajor: 0, rdevMinor: 0 }, new Uint8Array(0));
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
};

/** One entry as read back by `readCpio` (tests, and checking what an image holds). */
export interface CpioRecord {
  readonly name: string;
  readonly mode: number;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
  readonly data: Uint8Array;
}

/** Reads a newc archive (up to its trailer); undefined if it is not one. */
export const readCpio = (bytes: Uint8Array): CpioRecord[] | undefined => {
  const dec = new TextDecoder();
  const out: CpioRecord[] = [];
  let off = 0;
  while (off + HEADER_LEN <= bytes.length) {
    const h = dec.decode(bytes.subarray(off, off + HEADER_LEN));
    if (!h.startsWith("070701")) return undefined;
    const field = (i: number): number => parseInt(h.slice(6 + i * 8, 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const nameStart = off + HEADER_LEN;
    const name = dec.decode(bytes.subarray(nameStart, nameStart + nameSize - 1));
    const dataStart = nameStart + nameSize + pad4(HEADER_LEN + nameSize);
    if (dataStart + size > bytes.length) return undefined;
    if (name === "TRAILER!!!") return out;
    out.push({
      name,
      mode,
      rdevMajor: field(9),
      rdevMinor: field(10),
      data: bytes.subarray(dataStart, dataStart + size),
    });
    off = dataStart + size + pad4(size);
  }
  return undefined;
};
