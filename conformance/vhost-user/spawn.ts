/**
 * `--spawn "CMD"`: the back-end under test as a child process in its own process group,
 * started with `sh -c`, killed (SIGTERM, then SIGKILL after a grace period) when the scope
 * closes, on every path. Its exit (code or signal) and the tail of its output are kept for
 * the crash report. The back-end's socket files we know of (its vhost-user socket, a vsock
 * host-side socket), when it left them, are removed after it: a back-end killed with its
 * process group (an `npx` wrapper included) may not get to remove them itself.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { lstatSync, rmSync } from "node:fs";
import { Effect, type Scope } from "effect";

export interface Spawned {
  readonly pid: number;
  readonly command: string;
  /** null while running. */
  exit(): { readonly code: number | null; readonly signal: string | null } | null;
  /** The last lines of stdout+stderr. */
  tail(): string;
}

const TAIL = 4000;

const killGroup = (child: ChildProcess, signal: NodeJS.Signals): void => {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
};

/** Removes each path that is a socket (a killed back-end's socket files: nothing is left behind). */
const removeSockets = (paths: readonly string[]): void => {
  for (const path of paths) {
    try {
      if (lstatSync(path).isSocket()) rmSync(path, { force: true });
    } catch {
      // not there
    }
  }
};

export const spawnBackend = (
  command: string,
  socketPaths: readonly string[] = [],
  graceMs = 2000,
): Effect.Effect<Spawned, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn("sh", ["-c", command], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      const keep = (b: Buffer): void => {
        out = (out + b.toString("utf8")).slice(-TAIL);
      };
      child.stdout?.on("data", keep);
      child.stderr?.on("data", keep);
      let exited: { code: number | null; signal: string | null } | null = null;
      child.on("exit", (code, signal) => {
        exited = { code, signal };
      });
      child.on("error", (e) => {
        exited = { code: 127, signal: null };
        keep(Buffer.from(String(e.message)));
      });
      const s: Spawned & { child: ChildProcess } = {
        child,
        pid: child.pid ?? -1,
        command,
        exit: () => exited,
        tail: () => out,
      };
      return s;
    }),
    (s) =>
      Effect.promise(
        () =>
          new Promise<void>((done) => {
            // SIGTERM to the group (the command's own cleanup: socket file, fds), then wait
            // until no process of the group is left; SIGKILL after the grace period.
            killGroup(s.child, "SIGTERM");
            const until = Date.now() + graceMs;
            const poll = (): void => {
              if (!groupAlive(s.child)) {
                removeSockets(socketPaths);
                return done();
              }
              if (Date.now() >= until) {
                killGroup(s.child, "SIGKILL");
                removeSockets(socketPaths);
                return done();
              }
              setTimeout(poll, 25);
            };
            poll();
          }),
      ),
  );

const groupAlive = (child: ChildProcess): boolean => {
  if (child.pid === undefined) return false;
  try {
    process.kill(-child.pid, 0);
    return true;
  } catch {
    return false;
  }
};
