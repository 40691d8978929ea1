/**
 * Prepares a real Linux guest for QEMU into a cache directory: Debian's kernel (downloaded
 * with `apt-get download`, unpacked with `dpkg-deb`, never installed), the uncompressed
 * `vmlinux` taken out of its bzImage (QEMU boots an ELF vmlinux through its PVH entry in
 * ~1.7 s under TCG, the bzImage in ~4.3 s), the virtio and vsock modules in load order, and
 * a busybox initramfs with our init (init.sh) and transfer helper (vlab-xfer.c, built here
 * with `gcc -static`).
 *
 * Cache: `$VIRTIO_LAB_GUEST_CACHE` if set, else `$XDG_CACHE_HOME/virtio-lab/guest` (default
 * `~/.cache/virtio-lab/guest`), one folder per kernel version:
 *   <kernel-version>/vmlinux, modules/*.ko, modules/order, kernel.json   (kernel part)
 *   <kernel-version>/initramfs-<hash>.cpio                              (per init/helper/busybox)
 * The kernel part is staged in a temporary folder and renamed into place, so a folder with
 * kernel.json is always whole; the initramfs is keyed by a hash of its inputs, so editing
 * init.sh or vlab-xfer.c rebuilds it and nothing else. The kernel package is the one
 * `linux-image-amd64` depends on (`$VIRTIO_LAB_KERNEL_PACKAGE` overrides it).
 *
 * `npm run guest:prepare` (this file's main) prepares and prints the paths;
 * `guestAvailable()` says whether a guest can run here, or why not (tests skip with it).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { err, ok, type Result } from "../../spec/result.ts";
import { writeCpio, type CpioEntry } from "./cpio.ts";
import { parseCommand, usageExit, UsageError, type CommandSpec, type Parsed } from "../../scripts/args.ts";

const here = dirname(fileURLToPath(import.meta.url));
const INIT_SOURCE = join(here, "init.sh");
const XFER_SOURCE = join(here, "vlab-xfer.c");
/** Bump when the layout of the cache or of the initramfs changes. */
const FORMAT = 1;

/** The drivers the guest needs; their dependencies are read from each module's modinfo. */
export const TARGET_MODULES: readonly string[] = ["virtio_pci", "virtio_net", "vmw_vsock_virtio_transport"];
/** Where those modules live in the package (tar patterns, `*` not matching `/`). */
const MODULE_DIRS: readonly string[] = [
  "kernel/drivers/virtio",
  "kernel/drivers/net",
  "kernel/net/core",
  "kernel/net/vmw_vsock",
];

export interface GuestImage {
  readonly kernelVersion: string;
  readonly packageName: string;
  readonly packageVersion: string;
  /** The cache folder of this kernel. */
  readonly dir: string;
  /** Uncompressed ELF kernel with a PVH entry note. */
  readonly vmlinux: string;
  /** cpio newc: busybox, /init, the modules, /vlab/vlab-xfer. */
  readonly initramfs: string;
  /** Module names in the order init loads them. */
  readonly modules: readonly string[];
}

export interface GuestPrepareError {
  readonly _tag: "GuestPrepareError";
  /** What was being done: "tools", "package", "download", "extract", "vmlinux", "modules", "initramfs". */
  readonly step: string;
  readonly message: string;
}

const fail = (step: string, message: string): GuestPrepareError => ({
  _tag: "GuestPrepareError",
  step,
  message,
});

class PrepareFailure extends Error {
  readonly error: GuestPrepareError;
  constructor(error: GuestPrepareError) {
    super(error.message);
    this.error = error;
  }
}

const die = (step: string, message: string): never => {
  throw new PrepareFailure(fail(step, message));
};

export const guestCacheRoot = (): string => {
  const env = process.env["VIRTIO_LAB_GUEST_CACHE"];
  if (env !== undefined && env !== "") return env;
  const xdg = process.env["XDG_CACHE_HOME"];
  return join(xdg !== undefined && xdg !== "" ? xdg : join(homedir(), ".cache"), "virtio-lab", "guest");
};

const which = (cmd: string): string | undefined => {
  for (const d of (process.env["PATH"] ?? "").split(":")) {
    if (d === "") continue;
    const p = join(d, cmd);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
};

const run = (
  step: string,
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; input?: Buffer } = {},
): Buffer => {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd,
    input: opts.input,
    maxBuffer: 1 << 30,
    stdio: ["pipe", "pipe", "pipe"],
  });
  if (r.error !== undefined) die(step, `${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    const stderr = r.stderr.toString().trim().split("\n").slice(-3).join(" / ");
    die(step, `${cmd} ${args.join(" ")} exited ${r.status ?? r.signal}: ${stderr}`);
  }
  return r.stdout;
};

/** The kernel package to use: `$VIRTIO_LAB_KERNEL_PACKAGE`, or what linux-image-amd64 depends on. */
export const kernelPackageName = (): Result<string, GuestPrepareError> => {
  const env = process.env["VIRTIO_LAB_KERNEL_PACKAGE"];
  if (env !== undefined && env !== "") return ok(env);
  if (which("apt-cache") === undefined)
    return err(fail("package", "apt-cache is missing (not Debian?); set VIRTIO_LAB_KERNEL_PACKAGE"));
  try {
    const out = execFileSync("apt-cache", ["depends", "linux-image-amd64"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    const m = /Depends:\s*(linux-image-\d\S*)/.exec(out);
    if (m?.[1] === undefined)
      return err(fail("package", "apt-cache depends linux-image-amd64 names no kernel"));
    return ok(m[1]);
  } catch (e) {
    return err(
      fail("package", `apt-cache depends linux-image-amd64: ${e instanceof Error ? e.message : String(e)}`),
    );
  }
};

const kernelVersionOf = (pkg: string): string => pkg.replace(/^linux-image-/, "");

// --- ELF and bzImage ------------------------------------------------------------------

const PT_INTERP = 3;
const PT_NOTE = 4;
/** XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry point QEMU's -kernel looks for. */
const XEN_ELFNOTE_PHYS32_ENTRY = 18;

interface ProgramHeader {
  readonly type: number;
  readonly offset: number;
  readonly filesz: number;
}

const elfProgramHeaders = (b: Buffer): ProgramHeader[] | undefined => {
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) return undefined;
  const phoff = Number(b.readBigUInt64LE(0x20));
  const phentsize = b.readUInt16LE(0x36);
  const phnum = b.readUInt16LE(0x38);
  const out: ProgramHeader[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (o + 56 > b.length) return undefined;
    out.push({
      type: b.readUInt32LE(o),
      offset: Number(b.readBigUInt64LE(o + 8)),
      filesz: Number(b.readBigUInt64LE(o + 32)),
    });
  }
  return out;
};

/** True when the 64-bit ELF has a PVH entry note (name "Xen", type 18). */
export const hasPvhNote = (b: Buffer): boolean => {
  const phs = elfProgramHeaders(b);
  if (phs === undefined) return false;
  for (const ph of phs) {
    if (ph.type !== PT_NOTE) continue;
    let o = ph.offset;
    const end = Math.min(ph.offset + ph.filesz, b.length);
    while (o + 12 <= end) {
      const namesz = b.readUInt32LE(o);
      const descsz = b.readUInt32LE(o + 4);
      const type = b.readUInt32LE(o + 8);
      const name = b
        .subarray(o + 12, o + 12 + namesz)
        .toString("latin1")
        .replace(/\0+$/, "");
      if (name === "Xen" && type === XEN_ELFNOTE_PHYS32_ENTRY) return true;
      o += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3);
    }
  }
  return false;
};

/** True when the ELF asks for a dynamic loader (a busybox that would not run in the initramfs). */
export const isDynamicElf = (b: Buffer): boolean =>
  (elfProgramHeaders(b) ?? []).some((p) => p.type === PT_INTERP);

/**
 * The uncompressed kernel inside a bzImage. The x86 boot protocol (2.08+) gives the
 * compressed payload's offset and length in the setup header (0x248, 0x24c), counted from
 * the protected-mode code at (setup_sects + 1) * 512; the payload's magic says the format.
 */
export const extractVmlinux = (bz: Buffer): Result<Buffer, GuestPrepareError> => {
  if (bz.length < 0x250 || bz.readUInt32LE(0x202) !== 0x53726448)
    return err(fail("vmlinux", "not a bzImage (no HdrS)"));
  const version = bz.readUInt16LE(0x206);
  if (version < 0x208)
    return err(fail("vmlinux", `boot protocol ${version.toString(16)} has no payload fields`));
  const setupSects = bz[0x1f1] === 0 ? 4 : bz[0x1f1]!;
  const start = (setupSects + 1) * 512 + bz.readUInt32LE(0x248);
  const payload = bz.subarray(start, start + bz.readUInt32LE(0x24c));
  const magic = payload.subarray(0, 6).toString("hex");
  let out: Buffer;
  try {
    if (magic === "fd377a585a00") {
      // The kernel appends the uncompressed size after the stream: read one stream only.
      out = run("vmlinux", "xz", ["-dc", "--single-stream"], { input: payload });
    } else if (magic.startsWith("28b52ffd")) {
      out = run("vmlinux", "zstd", ["-dcq"], { input: payload.subarray(0, payload.length - 4) });
    } else if (magic.startsWith("1f8b")) {
      out = gunzipSync(payload.subarray(0, payload.length - 4));
    } else {
      return err(
        fail("vmlinux", `unsupported kernel compression (payload magic ${magic}); gzip, xz and zstd are`),
      );
    }
  } catch (e) {
    return e instanceof PrepareFailure ? err(e.error) : err(fail("vmlinux", String(e)));
  }
  if (!hasPvhNote(out))
    return err(
      fail("vmlinux", "the kernel has no PVH entry note (CONFIG_PVH off?): QEMU cannot boot its vmlinux"),
    );
  return ok(out);
};

// --- modules ---------------------------------------------------------------------------

/** The `depends=` field of a module's .modinfo section (names, possibly empty). */
export const moduleDepends = (ko: Buffer): string[] => {
  const key = Buffer.from("\0depends=");
  const i = ko.indexOf(key);
  if (i < 0) return [];
  const start = i + key.length;
  const end = ko.indexOf(0, start);
  const s = ko.subarray(start, end < 0 ? ko.length : end).toString("latin1");
  return s === "" ? [] : s.split(",");
};

const moduleName = (file: string): string => basename(file, ".ko").replace(/-/g, "_");

/** Dependencies first (depth-first post-order), each module once; a missing one is an error. */
export const moduleLoadOrder = (
  targets: readonly string[],
  depends: (name: string) => string[] | undefined,
): Result<string[], GuestPrepareError> => {
  const order: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string, from: string): GuestPrepareError | undefined => {
    const s = state.get(name);
    if (s === "done") return undefined;
    if (s === "visiting") return fail("modules", `module dependency cycle at ${name}`);
    const deps = depends(name);
    if (deps === undefined)
      return fail("modules", `module ${name} (needed by ${from}) is not in the package`);
    state.set(name, "visiting");
    for (const d of deps) {
      const e = visit(d, name);
      if (e !== undefined) return e;
    }
    state.set(name, "done");
    order.push(name);
    return undefined;
  };
  for (const t of targets) {
    const e = visit(t, "the guest");
    if (e !== undefined) return err(e);
  }
  return ok(order);
};

const walk = (dir: string, out: string[] = []): string[] => {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
};

// --- the kernel part ---------------------------------------------------------------------

interface KernelManifest {
  readonly format: number;
  readonly kernelVersion: string;
  readonly packageName: string;
  readonly packageVersion: string;
  readonly modules: readonly string[];
}

const readManifest = (dir: string): KernelManifest | undefined => {
  try {
    const m = JSON.parse(readFileSync(join(dir, "kernel.json"), "utf8")) as KernelManifest;
    if (m.format !== FORMAT || !existsSync(join(dir, "vmlinux"))) return undefined;
    if (!m.modules.every((n) => existsSync(join(dir, "modules", `${n}.ko`)))) return undefined;
    return m;
  } catch {
    return undefined;
  }
};

const sleepSync = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** One preparer per kernel at a time (test files run in parallel workers): a lock folder. */
const withLock = <A>(root: string, name: string, f: () => A): A => {
  const lock = join(root, `.lock-${name}`);
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, "pid"), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      let owner = 0;
      try {
        owner = Number(readFileSync(join(lock, "pid"), "utf8"));
      } catch {
        // being created or removed
      }
      if (owner > 0 && !pidAlive(owner)) rmSync(lock, { recursive: true, force: true });
      else if (Date.now() > deadline) die("lock", `${lock} held by pid ${owner} for 10 minutes`);
      else sleepSync(200);
    }
  }
  try {
    return f();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
};

type Progress = (line: string) => void;

const prepareKernel = (root: string, pkg: string, progress: Progress): KernelManifest => {
  const kver = kernelVersionOf(pkg);
  const dir = join(root, kver);
  const have = readManifest(dir);
  if (have !== undefined) return have;
  for (const tool of ["apt-get", "dpkg-deb", "tar"]) {
    if (which(tool) === undefined) die("tools", `${tool} is missing: cannot fetch the kernel package ${pkg}`);
  }
  const stage = mkdtempSync(join(root, `.stage-${kver}-`));
  try {
    progress(`guest: downloading ${pkg} (apt-get download)`);
    const dl = join(stage, "dl");
    mkdirSync(dl);
    // Sandbox user root: the download folder is ours, _apt could not write into it.
    run("download", "apt-get", ["download", "-q", "-o", "APT::Sandbox::User=root", pkg], { cwd: dl });
    const deb = readdirSync(dl).find((f) => f.endsWith(".deb"));
    if (deb === undefined) die("download", `apt-get download ${pkg} left no .deb`);
    const debPath = join(dl, deb!);
    const packageVersion = run("download", "dpkg-deb", ["-f", debPath, "Version"]).toString().trim();
    progress(`guest: extracting the kernel and modules from ${deb!}`);
    const x = join(stage, "x");
    mkdirSync(x);
    const patterns = ["./boot/vmlinuz-*", ...MODULE_DIRS.map((d) => `./lib/modules/*/${d}/*.ko`)];
    const r = spawnSync(
      "bash",
      [
        "-o",
        "pipefail",
        "-c",
        'deb="$1"; dir="$2"; shift 2; dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards --no-wildcards-match-slash "$@"',
        "extract",
        debPath,
        x,
        ...patterns,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    if (r.status !== 0) die("extract", `dpkg-deb | tar: ${r.stderr.toString().trim()}`);
    rmSync(dl, { recursive: true, force: true });

    const bootDir = join(x, "boot");
    const vmlinuz = existsSync(bootDir)
      ? readdirSync(bootDir).find((f) => f.startsWith("vmlinuz-"))
      : undefined;
    if (vmlinuz === undefined) die("extract", `${pkg} has no /boot/vmlinuz-*`);
    progress(`guest: extracting vmlinux from ${vmlinuz!}`);
    const vm = extractVmlinux(readFileSync(join(bootDir, vmlinuz!)));
    if (!vm.ok) throw new PrepareFailure(vm.error);

    const files = new Map<string, string>();
    for (const f of walk(join(x, "lib", "modules"))) if (f.endsWith(".ko")) files.set(moduleName(f), f);
    const depCache = new Map<string, string[]>();
    const order = moduleLoadOrder(TARGET_MODULES, (name) => {
      const f = files.get(name);
      if (f === undefined) return undefined;
      let d = depCache.get(name);
      if (d === undefined) {
        d = moduleDepends(readFileSync(f));
        depCache.set(name, d);
      }
      return d;
    });
    if (!order.ok) throw new PrepareFailure(order.error);

    const out = join(stage, "out");
    mkdirSync(join(out, "modules"), { recursive: true });
    writeFileSync(join(out, "vmlinux"), vm.value);
    for (const m of order.value) copyFileSync(files.get(m)!, join(out, "modules", `${m}.ko`));
    writeFileSync(join(out, "modules", "order"), order.value.join("\n") + "\n");
    const manifest: KernelManifest = {
      format: FORMAT,
      kernelVersion: kver,
      packageName: pkg,
      packageVersion,
      modules: order.value,
    };
    writeFileSync(join(out, "kernel.json"), JSON.stringify(manifest, null, 2) + "\n");
    rmSync(dir, { recursive: true, force: true });
    renameSync(out, dir);
    progress(`guest: kernel ${kver} ready in ${dir} (modules: ${order.value.join(" ")})`);
    return manifest;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
};

// --- the initramfs -------------------------------------------------------------------------

const busyboxPath = (): string | undefined => {
  const env = process.env["VIRTIO_LAB_BUSYBOX"];
  if (env !== undefined && env !== "") return env;
  for (const p of ["/bin/busybox", "/usr/bin/busybox"]) if (existsSync(p)) return p;
  return which("busybox");
};

const initramfsName = (m: KernelManifest, busybox: Buffer): string => {
  const h = createHash("sha256");
  h.update(`format ${FORMAT}\n${m.kernelVersion}\n${m.modules.join(",")}\n`);
  h.update(readFileSync(INIT_SOURCE));
  h.update(readFileSync(XFER_SOURCE));
  h.update(busybox);
  return `initramfs-${h.digest("hex").slice(0, 16)}.cpio`;
};

const prepareInitramfs = (dir: string, m: KernelManifest, progress: Progress): string => {
  const bbPath = busyboxPath();
  if (bbPath === undefined) die("tools", "busybox is missing: apt-get install busybox-static");
  const busybox = readFileSync(bbPath!);
  if (isDynamicElf(busybox))
    die(
      "tools",
      `${bbPath!} is dynamically linked and cannot run alone in the guest: apt-get install busybox-static`,
    );
  const path = join(dir, initramfsName(m, busybox));
  if (existsSync(path)) return path;
  if (which("gcc") === undefined) die("tools", "gcc is missing: cannot build the guest helper vlab-xfer");
  progress("guest: building vlab-xfer (gcc -static) and the initramfs");
  const tmp = mkdtempSync(join(dir, ".initramfs-"));
  try {
    const xfer = join(tmp, "vlab-xfer");
    run("initramfs", "gcc", ["-static", "-O2", "-Wall", "-Werror", "-o", xfer, XFER_SOURCE]);
    const entries: CpioEntry[] = [
      ...[
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "lib",
        "lib/modules",
        "vlab",
      ].map((p): CpioEntry => ({ kind: "dir", path: p })),
      // The kernel opens /dev/console for init before anything is mounted.
      { kind: "chardev", path: "dev/console", major: 5, minor: 1 },
      { kind: "chardev", path: "dev/null", major: 1, minor: 3, mode: 0o666 },
      { kind: "file", path: "bin/busybox", data: busybox, mode: 0o755 },
      { kind: "symlink", path: "bin/sh", target: "busybox" },
      { kind: "file", path: "init", data: readFileSync(INIT_SOURCE), mode: 0o755 },
      { kind: "file", path: "vlab/vlab-xfer", data: readFileSync(xfer), mode: 0o755 },
      ...m.modules.map((n): CpioEntry => ({
        kind: "file",
        path: `lib/modules/${n}.ko`,
        data: readFileSync(join(dir, "modules", `${n}.ko`)),
      })),
      { kind: "file", path: "lib/modules/order", data: Buffer.from(m.modules.join("\n") + "\n") },
    ];
    const staged = join(tmp, "initramfs.cpio");
    writeFileSync(staged, writeCpio(entries));
    chmodSync(staged, 0o644);
    renameSync(staged, path);
    return path;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
};

// --- entry points -----------------------------------------------------------------------------

export interface PrepareOptions {
  /** Progress lines (default: none). */
  readonly progress?: Progress;
  /** Rebuild even when the cache has this kernel. */
  readonly force?: boolean;
}

/** Prepares (or finds, when cached) the kernel, modules and initramfs. Blocking. */
export const prepareGuest = (options: PrepareOptions = {}): Result<GuestImage, GuestPrepareError> => {
  const progress = options.progress ?? ((): void => {});
  if (process.platform !== "linux") return err(fail("tools", `not Linux (${process.platform})`));
  const pkg = kernelPackageName();
  if (!pkg.ok) return pkg;
  const root = guestCacheRoot();
  const kver = kernelVersionOf(pkg.value);
  try {
    mkdirSync(root, { recursive: true });
    return withLock(root, kver, () => {
      const dir = join(root, kver);
      if (options.force === true) rmSync(dir, { recursive: true, force: true });
      const m = prepareKernel(root, pkg.value, progress);
      const initramfs = prepareInitramfs(dir, m, progress);
      return ok({
        kernelVersion: m.kernelVersion,
        packageName: m.packageName,
        packageVersion: m.packageVersion,
        dir,
        vmlinux: join(dir, "vmlinux"),
        initramfs,
        modules: m.modules,
      });
    });
  } catch (e) {
    if (e instanceof PrepareFailure) return err(e.error);
    return err(fail("cache", `${root}: ${e instanceof Error ? e.message : String(e)}`));
  }
};

/** The QEMU binary: `$VIRTIO_LAB_QEMU`, or qemu-system-x86_64 on the PATH. */
export const qemuBinary = (): string | undefined => {
  const env = process.env["VIRTIO_LAB_QEMU"];
  if (env !== undefined && env !== "") return existsSync(env) ? env : undefined;
  return which("qemu-system-x86_64");
};

export type GuestAvailability =
  | { readonly ok: true; readonly image: GuestImage; readonly qemu: string }
  | { readonly ok: false; readonly reason: string };

/**
 * Whether a real guest can boot here, with the image, or the reason it cannot (tests skip
 * with it). Prepares the cache when it is empty (a download the first time, seconds after).
 */
export const guestAvailable = (options: PrepareOptions = {}): GuestAvailability => {
  if (process.platform !== "linux" || process.arch !== "x64")
    return { ok: false, reason: `needs Linux on x86-64 (this is ${process.platform}/${process.arch})` };
  const qemu = qemuBinary();
  if (qemu === undefined)
    return {
      ok: false,
      reason: "qemu-system-x86_64 is missing (apt-get install qemu-system-x86, or set VIRTIO_LAB_QEMU)",
    };
  const image = prepareGuest(options);
  if (!image.ok)
    return { ok: false, reason: `cannot prepare the guest (${image.error.step}): ${image.error.message}` };
  return { ok: true, image: image.value, qemu };
};

const HELP = `usage: npm run guest:prepare -- [--force] [--json]
   or: npx tsx sim/linux/prepare.ts [--force] [--json]

Prepares the real-guest files into the cache (downloads Debian's kernel package the first
time; later runs find it there):
  ${guestCacheRoot()}/<kernel-version>/{vmlinux,modules/,initramfs-<hash>.cpio}

  --force   download and extract the kernel again
  --json    print the prepared paths as JSON

Environment: VIRTIO_LAB_GUEST_CACHE (cache folder), VIRTIO_LAB_KERNEL_PACKAGE (e.g.
linux-image-6.1.0-57-amd64), VIRTIO_LAB_BUSYBOX (a static busybox), VIRTIO_LAB_QEMU.`;

const SPEC: CommandSpec = {
  name: "sim/linux/prepare.ts",
  help: HELP,
  flags: { force: { kind: "boolean" }, json: { kind: "boolean" } },
};

const main = (argv: readonly string[]): number => {
  let p: Parsed | "help";
  try {
    p = parseCommand(SPEC, argv);
  } catch (e) {
    if (e instanceof UsageError) return usageExit((l) => console.error(l), SPEC.name, e);
    throw e;
  }
  if (p === "help") {
    console.log(HELP);
    return 0;
  }
  const started = Date.now();
  const r = prepareGuest({ force: p.bool("force"), progress: (l) => console.error(l) });
  if (!r.ok) {
    console.error(`guest:prepare: ${r.error.step}: ${r.error.message}`);
    return 1;
  }
  if (p.bool("json")) console.log(JSON.stringify(r.value, null, 2));
  else {
    console.log(`kernel     ${r.value.packageName} ${r.value.packageVersion}`);
    console.log(`vmlinux    ${r.value.vmlinux}`);
    console.log(`initramfs  ${r.value.initramfs}`);
    console.log(`modules    ${r.value.modules.join(" ")}`);
    console.log(`qemu       ${qemuBinary() ?? "missing: apt-get install qemu-system-x86"}`);
    console.log(`ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  return 0;
};

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = main(process.argv.slice(2));
}
