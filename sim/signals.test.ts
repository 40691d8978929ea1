/**
 * A signal to a running `sim run` interrupts it and every acquireRelease runs: no network
 * namespace, interface, socket, temp directory or child process is left behind.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { NETNS_PREFIX, tapUnavailableReason } from "../impl/native/netns.ts";
import { root } from "../lib/paths.ts";

interface Running {
  readonly child: ChildProcess;
  readonly stderr: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const start = (args: readonly string[], env: NodeJS.ProcessEnv): Running => {
  const child = spawn(process.execPath, ["--import", "tsx", "sim/index.ts", ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const stderr: string[] = [];
  child.stderr?.on("data", (c: Buffer) => stderr.push(c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.on("exit", (code, signal) => res({ code, signal })),
  );
  return { child, stderr, exited };
};

const until = async (what: string, cond: () => boolean, ms = 30_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

/** Pids of `pid`'s descendants (ps; empty when it has none or is gone). */
const descendants = (pid: number): number[] => {
  let out: string;
  try {
    out = execFileSync("ps", ["-e", "-o", "pid=,ppid="], { encoding: "utf8" });
  } catch {
    return [];
  }
  const rows = out
    .trim()
    .split("\n")
    .map((l) => l.trim().split(/\s+/).map(Number) as [number, number]);
  const found: number[] = [];
  const walk = (p: number): void => {
    for (const [c, pp] of rows)
      if (pp === p) {
        found.push(c);
        walk(c);
      }
  };
  walk(pid);
  return found;
};

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const namespacesOf = (pid: number): string[] => {
  try {
    return execFileSync("ip", ["netns", "list"], { encoding: "utf8" })
      .split("\n")
      .map((l) => l.split(" ")[0]!)
      .filter((n) => n.startsWith(`${NETNS_PREFIX}-${pid}-`));
  } catch {
    return [];
  }
};

describe("signals interrupt a running scenario and every resource is released", () => {
  for (const sig of ["SIGINT", "SIGHUP"] as const)
    it(`vsock-echo on ${sig}: temp directory and sockets removed, no child left, exit 128+n`, async () => {
      // A private TMPDIR: the scenario's temp directory (and its sockets) are made in it.
      const tmp = mkdtempSync(join(tmpdir(), "sim-sig-"));
      try {
        const r = start(["run", "vsock-echo", "--steps", "100000000", "--no-report"], { TMPDIR: tmp });
        // tsx keeps its cache in TMPDIR too (tsx-<uid>): look at the scenario's own only.
        const ours = (): string[] => readdirSync(tmp).filter((f) => f.startsWith("vsim-"));
        const sockets = (): string[] =>
          ours().flatMap((f) => readdirSync(join(tmp, f)).filter((s) => s.startsWith("v.sock")));
        await until("the scenario's sockets in its temp directory", () => sockets().length >= 2);
        await new Promise((res) => setTimeout(res, 300));
        const kids = descendants(r.child.pid!);
        r.child.kill(sig);
        const exit = await r.exited;
        expect(exit.code, r.stderr.join("")).toBe(128 + { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 }[sig]);
        expect(r.stderr.join("")).toContain(`sim: ${sig}: stopping and cleaning up`);
        expect(ours()).toEqual([]);
        // tsx's esbuild service leaves when its pipe to the parent closes: give it a moment.
        await until("the children to exit", () => kids.filter(alive).length === 0, 5000).catch(() => {});
        expect(kids.filter(alive)).toEqual([]);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    });

  const noTap = tapUnavailableReason();
  it.skipIf(noTap !== undefined)(
    `net-tap on SIGTERM: its namespace and TAP interface are removed${noTap !== undefined ? ` (skipped: ${noTap})` : ""}`,
    async () => {
      const r = start(["run", "net-tap", "--steps", "100000000", "--no-report"], {});
      const pid = r.child.pid!;
      try {
        await until("the scenario's namespace", () => namespacesOf(pid).length > 0);
        const ns = namespacesOf(pid)[0]!;
        await until("the TAP in the namespace", () =>
          execFileSync("ip", ["-n", ns, "-o", "link"], { encoding: "utf8" }).includes("vlab"),
        );
        const kids = descendants(pid);
        r.child.kill("SIGTERM");
        const exit = await r.exited;
        expect(exit.code, r.stderr.join("")).toBe(143);
        expect(namespacesOf(pid)).toEqual([]);
        expect(execFileSync("ip", ["-o", "link"], { encoding: "utf8" })).not.toMatch(/: vlab\d+/);
        // tsx's esbuild service leaves when its pipe to the parent closes: give it a moment.
        await until("the children to exit", () => kids.filter(alive).length === 0, 5000).catch(() => {});
        expect(kids.filter(alive)).toEqual([]);
      } finally {
        if (alive(pid)) r.child.kill("SIGKILL");
        for (const n of namespacesOf(pid)) execFileSync("ip", ["netns", "del", n]);
      }
    },
  );
});
