/**
 * Network namespaces for tests and benchmarks that need a real TAP: every interface and
 * every packet stays inside a namespace this process created and removes.
 *
 * A TAP belongs to the namespace of the thread that opened /dev/net/tun, so
 * `openTapIn(ns, name)` switches the main thread into `ns` with setns(2), opens the TAP,
 * and switches back before returning (in a finally): nothing else runs on the thread in
 * between, and libuv's and koffi's worker threads never change namespace.
 */
import { execFileSync } from "node:child_process";
import { accessSync, constants, existsSync } from "node:fs";
import { Effect, type Scope } from "effect";
import { err, ok, type Result } from "../../spec/result.ts";
import { CLONE_NEWNET, O_CLOEXEC, O_RDONLY, loadLibc } from "./libc.ts";
import { Tap, type TapError } from "./tap.ts";
import { TapBackend } from "./tap-backend.ts";

export const NETNS_PREFIX = "vlabnet";

/** Why TAP tests cannot run here, or undefined when they can. */
export const tapUnavailableReason = (): string | undefined => {
  if (process.platform !== "linux") return `not Linux (${process.platform})`;
  if (typeof process.getuid === "function" && process.getuid() !== 0) return "not running as root";
  if (!existsSync("/dev/net/tun")) return "/dev/net/tun is missing";
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
  } catch {
    return "/dev/net/tun is not readable and writable";
  }
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
  } catch {
    return "the ip command (iproute2) is missing";
  }
  const libc = loadLibc();
  if (typeof libc === "string") return libc;
  return undefined;
};

export const ip = (...args: string[]): string =>
  execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** Removes namespaces with our prefix left behind by processes that no longer run. */
export const removeStaleNamespaces = (): string[] => {
  const removed: string[] = [];
  let list: string;
  try {
    list = ip("netns", "list");
  } catch {
    return removed;
  }
  for (const line of list.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const m = /^vlabnet-(\d+)-/.exec(name);
    if (m === null || pidAlive(Number(m[1]))) continue;
    try {
      ip("netns", "delete", name);
      removed.push(name);
    } catch {
      // Another process removed it first.
    }
  }
  return removed;
};

let counter = 0;

/** A fresh namespace (loopback up), deleted when the scope closes, on failure too. */
export const acquireNetns = (
  tag: string,
): Effect.Effect<string, { readonly _tag: "NetnsError"; readonly message: string }, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        removeStaleNamespaces();
        const name = `${NETNS_PREFIX}-${process.pid}-${tag}-${counter++}-${Math.floor(Math.random() * 1e6)}`;
        ip("netns", "add", name);
        try {
          ip("-n", name, "link", "set", "lo", "up");
          // No IPv6 on new interfaces: keeps router solicitations and MLD reports out of
          // the frames a test reads back (ignored where the sysctl is missing).
          try {
            execFileSync(
              "ip",
              [
                "netns",
                "exec",
                name,
                "sysctl",
                "-qw",
                "net.ipv6.conf.default.disable_ipv6=1",
                "net.ipv6.conf.all.disable_ipv6=1",
              ],
              { stdio: "ignore" },
            );
          } catch {
            // IPv6 absent or sysctl missing: tests filter frames anyway.
          }
        } catch (e) {
          ip("netns", "delete", name);
          throw e;
        }
        return name;
      },
      catch: (e) => ({ _tag: "NetnsError" as const, message: e instanceof Error ? e.message : String(e) }),
    }),
    (name) =>
      Effect.sync(() => {
        try {
          ip("netns", "delete", name);
        } catch {
          // Already gone.
        }
      }),
  );

/** Runs `f` with the calling thread inside namespace `ns`, then switches back. */
export const inNetns = <A>(ns: string, f: () => A): Result<A, TapError> => {
  const libc = loadLibc();
  if (typeof libc === "string") return err({ _tag: "NativeUnavailable", reason: libc });
  const self = libc.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0)
    return err({ _tag: "OpenTun", errno: libc.errno(), message: "open /proc/thread-self/ns/net" });
  const target = libc.open(`/var/run/netns/${ns}`, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    libc.close(self);
    return err({ _tag: "OpenTun", errno: libc.errno(), message: `open netns ${ns}` });
  }
  try {
    if (libc.setns(target, CLONE_NEWNET) < 0) {
      return err({
        _tag: "OpenTun",
        errno: libc.errno(),
        message: `setns ${ns}: ${libc.strerror(libc.errno())}`,
      });
    }
    let out: A;
    try {
      out = f();
    } finally {
      // Failing here would leave the main thread (and every later socket) in the test
      // namespace; no caller could recover from that, so stop the process loudly.
      if (libc.setns(self, CLONE_NEWNET) < 0) {
        console.error(`setns back from ${ns} failed: ${libc.strerror(libc.errno())}`);
        process.abort();
      }
    }
    return ok(out);
  } finally {
    libc.close(target);
    libc.close(self);
  }
};

/** Opens a TAP inside namespace `ns`. */
export const openTapIn = (ns: string, name: string): Result<Tap, TapError> => {
  const r = inNetns(ns, () => Tap.open(name));
  return r.ok ? r.value : r;
};

/** TAP-SCOPE: a TAP inside `ns` with its backend, both released with the scope. */
export const acquireTapBackendIn = (
  ns: string,
  name: string,
): Effect.Effect<TapBackend, TapError, Scope.Scope> =>
  Effect.gen(function* () {
    const tap = yield* Effect.acquireRelease(
      Effect.suspend(() => {
        const t = openTapIn(ns, name);
        return t.ok ? Effect.succeed(t.value) : Effect.fail(t.error);
      }),
      (t) => Effect.sync(() => t.close()),
    );
    return yield* Effect.acquireRelease(
      Effect.suspend(() => {
        const b = TapBackend.make(tap);
        return b.ok ? Effect.succeed(b.value) : Effect.fail(b.error);
      }),
      (b) => b.close,
    );
  });

/** Brings the TAP up inside `ns` with `cidr` on it (e.g. 10.200.0.1/24). */
export const configureTapIn = (ns: string, ifName: string, cidr: string): void => {
  ip("-n", ns, "addr", "add", cidr, "dev", ifName);
  ip("-n", ns, "link", "set", ifName, "up");
};
