/**
 * Boots the prepared guest (prepare.ts) in QEMU and owns it for the life of an Effect
 * scope: the QEMU process (its own process group, killed with SIGKILL; with `setpriv
 * --pdeathsig` it also dies if Node is killed outright), the per-run initramfs and the
 * temporary folder. Closing the scope — success, failure, timeout or interruption (Ctrl-C)
 * — kills QEMU, waits for it to be gone and removes the folder.
 *
 * QEMU runs under TCG (no usable KVM here) with the uncompressed vmlinux (PVH entry), guest
 * RAM in a shared memfd (a vhost-user back-end maps it), no default devices, and the
 * serial console on stdout, read line by line: `waitFor` waits for a console line
 * matching a pattern (the VLAB-* markers init.sh prints), with a wall-clock timeout that
 * does not depend on Effect's clock (scenarios run under a TestClock).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect, type Scope } from "effect";
import { writeCpio, type CpioEntry } from "./cpio.ts";
import { registerExitCleanup } from "./exit-cleanup.ts";
import type { GuestImage } from "./prepare.ts";

export type GuestError =
  | { readonly _tag: "GuestLaunchError"; readonly message: string }
  | {
      readonly _tag: "GuestTimeout";
      readonly waitingFor: string;
      readonly ms: number;
      readonly tail: readonly string[];
    }
  | {
      readonly _tag: "GuestExited";
      readonly waitingFor: string;
      readonly code: number | null;
      readonly signal: string | null;
      readonly tail: readonly string[];
    };

/** A one-line description of a guest error, with the console's last lines. */
export const describeGuestError = (e: GuestError): string => {
  switch (e._tag) {
    case "GuestLaunchError":
      return `cannot start QEMU: ${e.message}`;
    case "GuestTimeout":
      return `no ${e.waitingFor} within ${e.ms} ms; console ends: ${e.tail.join(" | ")}`;
    case "GuestExited":
      return `QEMU exited (${e.signal ?? `code ${e.code}`}) before ${e.waitingFor}; console ends: ${e.tail.join(" | ")}`;
  }
};

export interface GuestFile {
  /** Path inside the guest, e.g. "vlab/run.sh". */
  readonly path: string;
  readonly data: Uint8Array | string;
  readonly mode?: number;
}

export interface LaunchOptions {
  readonly image: GuestImage;
  readonly qemu: string;
  /** Shell script the guest's init runs as /vlab/run.sh (after modules and network). */
  readonly script?: string;
  /** More files for the guest (added to the initramfs of this run). */
  readonly files?: readonly GuestFile[];
  /** Extra kernel parameters, e.g. "vlab.ip=10.0.0.2/24". */
  readonly cmdline?: readonly string[];
  /** Device arguments: -netdev/-device/-chardev ... */
  readonly devices?: readonly string[];
  /** Start QEMU inside this network namespace (`ip netns exec`), e.g. for -netdev tap. */
  readonly netns?: string;
  /** Guest RAM in MiB (default 256). */
  readonly memMiB?: number;
  /** Every console line as it arrives (e.g. to print the guest's output). */
  readonly onLine?: (line: string, msSinceStart: number) => void;
}

export interface ConsoleLine {
  readonly text: string;
  /** Wall milliseconds since QEMU was started. */
  readonly ms: number;
}

export interface WaitOptions {
  /** Search lines from this index (default 0: everything since boot). */
  readonly from?: number;
  readonly timeoutMs: number;
  /** What is awaited, for the error message (default: the pattern). */
  readonly what?: string;
}

export interface Guest {
  readonly pid: number;
  /** The run's temporary folder (initramfs; free for sockets), removed with the scope. */
  readonly runDir: string;
  /** Console lines so far. */
  readonly lines: readonly ConsoleLine[];
  /** QEMU's own messages (stderr). */
  readonly stderr: readonly string[];
  /** The first line from `from` matching `pattern`, with its index and match. */
  waitFor(
    pattern: RegExp,
    options: WaitOptions,
  ): Effect.Effect<
    { readonly index: number; readonly match: RegExpExecArray; readonly line: ConsoleLine },
    GuestError
  >;
  /** Waits for QEMU to exit by itself; its exit code (or a timeout error). */
  waitExit(timeoutMs: number): Effect.Effect<number | null, GuestError>;
  readonly exited: boolean;
}

const hasSetprivPdeathsig = ((): (() => boolean) => {
  let cached: boolean | undefined;
  return () => (cached ??= existsSync("/usr/bin/setpriv") || existsSync("/bin/setpriv"));
})();

/** The QEMU command line (without the program), for logs and for running by hand. */
export const qemuArgs = (o: LaunchOptions, initrd: string): string[] => {
  const mem = o.memMiB ?? 256;
  const append = ["console=ttyS0", "quiet", "panic=-1", "mitigations=off", ...(o.cmdline ?? [])].join(" ");
  return [
    "-accel",
    "tcg",
    "-M",
    "pc",
    "-smp",
    "1",
    "-m",
    `${mem}M`,
    // Shared guest RAM: a vhost-user back-end maps the same memfd.
    "-object",
    `memory-backend-memfd,id=mem,size=${mem}M,share=on`,
    "-numa",
    "node,memdev=mem",
    "-nodefaults",
    "-display",
    "none",
    "-monitor",
    "none",
    "-serial",
    "stdio",
    "-no-reboot",
    "-kernel",
    o.image.vmlinux,
    "-initrd",
    initrd,
    "-append",
    append,
    ...(o.devices ?? []),
  ];
};

const TAIL = 12;

class GuestProcess implements Guest {
  readonly lines: ConsoleLine[] = [];
  readonly stderr: string[] = [];
  exited = false;
  exitCode: number | null = null;
  exitSignal: string | null = null;
  private readonly listeners = new Set<() => void>();
  private readonly started = Date.now();
  private partial = "";
  readonly child: ChildProcess;
  readonly pid: number;
  readonly runDir: string;

  constructor(child: ChildProcess, runDir: string, onLine: LaunchOptions["onLine"]) {
    this.child = child;
    this.pid = child.pid ?? -1;
    this.runDir = runDir;
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      const parts = (this.partial + chunk).split("\n");
      this.partial = parts.pop() ?? "";
      for (const p of parts) {
        const line = { text: p.replace(/\r$/, ""), ms: Date.now() - this.started };
        this.lines.push(line);
        onLine?.(line.text, line.ms);
      }
      if (parts.length > 0) this.notify();
    });
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      for (const l of chunk.split("\n")) if (l.trim() !== "") this.stderr.push(l.trim());
    });
    child.on("exit", (code, signal) => {
      this.exited = true;
      this.exitCode = code;
      this.exitSignal = signal;
      if (this.partial !== "") {
        this.lines.push({ text: this.partial.replace(/\r$/, ""), ms: Date.now() - this.started });
        this.partial = "";
      }
      this.notify();
    });
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  tail(): string[] {
    return [...this.lines.slice(-TAIL).map((l) => l.text), ...this.stderr.slice(-3).map((l) => `qemu: ${l}`)];
  }

  waitFor(
    pattern: RegExp,
    options: WaitOptions,
  ): Effect.Effect<
    { readonly index: number; readonly match: RegExpExecArray; readonly line: ConsoleLine },
    GuestError
  > {
    const what = options.what ?? String(pattern);
    return Effect.callback((resume) => {
      let next = options.from ?? 0;
      const check = (): boolean => {
        for (; next < this.lines.length; next++) {
          const line = this.lines[next]!;
          const m = pattern.exec(line.text);
          if (m !== null) {
            resume(Effect.succeed({ index: next, match: m, line }));
            return true;
          }
        }
        if (this.exited) {
          resume(
            Effect.fail({
              _tag: "GuestExited",
              waitingFor: what,
              code: this.exitCode,
              signal: this.exitSignal,
              tail: this.tail(),
            }),
          );
          return true;
        }
        return false;
      };
      if (check()) return;
      const listener = (): void => {
        if (check()) cleanup();
      };
      const timer = setTimeout(() => {
        cleanup();
        resume(
          Effect.fail({ _tag: "GuestTimeout", waitingFor: what, ms: options.timeoutMs, tail: this.tail() }),
        );
      }, options.timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      this.listeners.add(listener);
      return Effect.sync(cleanup);
    });
  }

  waitExit(timeoutMs: number): Effect.Effect<number | null, GuestError> {
    return Effect.callback((resume) => {
      if (this.exited) {
        resume(Effect.succeed(this.exitCode));
        return;
      }
      const listener = (): void => {
        if (!this.exited) return;
        cleanup();
        resume(Effect.succeed(this.exitCode));
      };
      const timer = setTimeout(() => {
        cleanup();
        resume(
          Effect.fail({ _tag: "GuestTimeout", waitingFor: "QEMU to exit", ms: timeoutMs, tail: this.tail() }),
        );
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      this.listeners.add(listener);
      return Effect.sync(cleanup);
    });
  }

  /** Set by the launcher: drops the exit-time cleanup once the scope has killed QEMU. */
  unregister: () => void = () => {};

  /** SIGKILL to the process group now, without waiting (the exit-time cleanup). */
  killNow(): void {
    if (this.exited || this.pid < 0) return;
    try {
      process.kill(-this.pid, "SIGKILL");
    } catch {
      try {
        process.kill(this.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }

  /** SIGKILL to the whole process group, then wait (bounded) until the exit is seen. */
  kill(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.exited || this.pid < 0) {
        resume(Effect.void);
        return;
      }
      const done = (): void => {
        if (!this.exited) return;
        clearTimeout(timer);
        this.listeners.delete(done);
        resume(Effect.void);
      };
      this.listeners.add(done);
      this.killNow();
      // A process in uninterruptible sleep may take a moment; never hang the release.
      const timer = setTimeout(() => {
        this.listeners.delete(done);
        resume(Effect.void);
      }, 10_000);
    });
  }
}

/** A temporary folder removed when the scope closes (sockets, per-run files). */
export const acquireTempDir = (prefix: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = mkdtempSync(join(tmpdir(), prefix));
      const remove = (): void => rmSync(dir, { recursive: true, force: true });
      return { dir, remove, unregister: registerExitCleanup(remove) };
    }),
    (d) =>
      Effect.sync(() => {
        d.unregister();
        d.remove();
      }),
  ).pipe(Effect.map((d) => d.dir));

/** The initramfs of one run: the shared image with this run's files appended. */
const writeRunInitrd = (o: LaunchOptions, dir: string): string => {
  const files: GuestFile[] = [...(o.files ?? [])];
  if (o.script !== undefined) files.push({ path: "vlab/run.sh", data: o.script, mode: 0o755 });
  if (files.length === 0) return o.image.initramfs;
  const enc = new TextEncoder();
  const entries: CpioEntry[] = files.map((f) => ({
    kind: "file",
    path: f.path,
    data: typeof f.data === "string" ? enc.encode(f.data) : f.data,
    mode: f.mode ?? 0o644,
  }));
  const base = readFileSync(o.image.initramfs);
  const extra = writeCpio(entries);
  const out = Buffer.allocUnsafe(base.length + extra.length);
  base.copy(out, 0);
  out.set(extra, base.length);
  const path = join(dir, "initramfs.cpio");
  writeFileSync(path, out);
  return path;
};

/**
 * Starts QEMU with the guest; the scope owns it. Fails with GuestLaunchError when QEMU
 * cannot be spawned; a QEMU that exits early shows up as GuestExited in `waitFor`.
 */
export const launchGuest = (o: LaunchOptions): Effect.Effect<Guest, GuestError, Scope.Scope> =>
  Effect.gen(function* () {
    const runDir = yield* acquireTempDir("vlab-guest-");
    const initrd = yield* Effect.try({
      try: () => writeRunInitrd(o, runDir),
      catch: (e): GuestError => ({ _tag: "GuestLaunchError", message: `initramfs: ${String(e)}` }),
    });
    const args = qemuArgs(o, initrd);
    let cmd = o.qemu;
    let full = args;
    if (o.netns !== undefined) {
      full = ["netns", "exec", o.netns, cmd, ...full];
      cmd = "ip";
    }
    if (hasSetprivPdeathsig()) {
      // QEMU dies with us even if this process is killed without running finalizers.
      full = ["--pdeathsig", "KILL", "--", cmd, ...full];
      cmd = "setpriv";
    }
    return yield* Effect.acquireRelease(
      Effect.callback<GuestProcess, GuestError>((resume) => {
        const child = spawn(cmd, full, { detached: true, stdio: ["ignore", "pipe", "pipe"] });
        child.once("error", (e) =>
          resume(Effect.fail({ _tag: "GuestLaunchError", message: `${cmd}: ${e.message}` })),
        );
        child.once("spawn", () => {
          const g = new GuestProcess(child, runDir, o.onLine);
          g.unregister = registerExitCleanup(() => g.killNow());
          resume(Effect.succeed(g));
        });
      }),
      (g) => g.kill().pipe(Effect.ensuring(Effect.sync(() => g.unregister()))),
    );
  });
