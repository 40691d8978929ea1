/**
 * A reader slower than the program (`sim trace FILE | less`) still gets every line: the
 * program exits only once its queued output is out.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { root } from "../lib/paths.ts";
import { main, type Io } from "./cli.ts";
import { decodeTrace } from "./trace.ts";

const quiet: Io = { out: () => {}, err: () => {}, progress: null };

describe("sim trace to a slow reader", () => {
  it("prints every line of the trace before it exits", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sim-slow-reader-"));
    try {
      const args = ["run", "queue", "--seed", "1", "--steps", "3000", "--report", dir, "--trace", "raw"];
      expect(await main(args, quiet)).toBe(0);
      const file = join(dir, "queue-1", "trace.bin");
      const want = decodeTrace(readFileSync(file));
      // Far more than a pipe holds (64 KiB): the program's writes queue while nobody reads.
      expect(want.join("\n").length).toBeGreaterThan(1 << 20);
      const child = spawn(process.execPath, ["--import", "tsx", "sim/index.ts", "trace", file], {
        cwd: root,
        stdio: ["ignore", "pipe", "inherit"],
      });
      const parts: Buffer[] = [];
      child.stdout.pause();
      const exited = new Promise<number | null>((res) => child.on("exit", (code) => res(code)));
      const closed = new Promise<void>((res) => child.stdout.on("close", () => res()));
      child.stdout.on("data", (c: Buffer) => parts.push(c));
      // Read nothing until the program is done with its reading and writing.
      await new Promise((r) => setTimeout(r, 3000));
      child.stdout.resume();
      expect(await exited).toBe(0);
      await closed;
      const got = Buffer.concat(parts).toString().split("\n");
      expect(got.pop()).toBe("");
      expect(got.length).toBe(want.length);
      expect(got[got.length - 1]).toBe(want[want.length - 1]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
