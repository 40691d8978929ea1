/**
 * A reader that stops reading (`sim ... | head`) stops the program as a signal would: what
 * runs releases what it holds, the rest of the output is dropped, the exit is quiet.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { root } from "../lib/paths.ts";
import { main, type Io } from "./cli.ts";

interface Piped {
  readonly child: ChildProcess;
  readonly stderr: string[];
  readonly exited: Promise<number | null>;
  /** Resolves at the first stdout bytes; the reader then closes its end (as `head -1`). */
  readonly firstOut: Promise<void>;
}

const startPiped = (args: readonly string[]): Piped => {
  const child = spawn(process.execPath, ["--import", "tsx", "sim/index.ts", ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stderr: string[] = [];
  child.stderr?.on("data", (c: Buffer) => stderr.push(c.toString()));
  const exited = new Promise<number | null>((res) => child.on("exit", (code) => res(code)));
  const firstOut = new Promise<void>((res) =>
    child.stdout?.once("data", () => {
      child.stdout?.destroy();
      res();
    }),
  );
  return { child, stderr, exited, firstOut };
};

const until = async (what: string, cond: () => boolean, ms = 30_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe("sim with its output closed", () => {
  it("vhost-user releases its sockets and exits 0 when its reader goes away", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sim-epipe-"));
    const sock = join(dir, "v.sock");
    const p = startPiped(["vhost-user", "--device", "vsock", "--socket", sock, "--verbose"]);
    try {
      await p.firstOut;
      // The reader is gone: the next line the server prints (the rest of its start-up, or a
      // request it is sent, --verbose) finds the pipe closed.
      const getFeatures = Buffer.alloc(12);
      getFeatures.writeUInt32LE(1, 0); // VHOST_USER_GET_FEATURES
      getFeatures.writeUInt32LE(1, 4); // version 1
      let c: Socket | undefined;
      await until("the exit", () => {
        if (c === undefined && existsSync(sock)) {
          c = connect(sock);
          c.on("error", () => {});
          c.write(getFeatures);
        }
        return p.child.exitCode !== null;
      });
      c?.destroy();
      expect(await p.exited).toBe(0);
      expect(p.stderr.join("")).toBe("");
      expect(existsSync(sock)).toBe(false);
      expect(existsSync(`${sock}.vsock`)).toBe(false);
    } finally {
      p.child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("trace exits 0 without a word when its reader goes away", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sim-epipe-"));
    try {
      const quiet: Io = { out: () => {}, err: () => {}, progress: null };
      expect(await main(["run", "queue", "--seed", "3", "--steps", "20000", "--report", dir], quiet)).toBe(0);
      const p = startPiped(["trace", join(dir, "queue-3", "trace.bin.br")]);
      await p.firstOut;
      expect(await p.exited).toBe(0);
      expect(p.stderr.join("")).toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
