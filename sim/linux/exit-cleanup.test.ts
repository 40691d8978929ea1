import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

/** A child Node process that registers a cleanup (creating `marker`), says "ready", and idles. */
const child = (marker: string, withOwnHandler: boolean) => {
  const src = `
    import { writeFileSync } from "node:fs";
    import { registerExitCleanup } from ${JSON.stringify(join(import.meta.dirname, "exit-cleanup.ts"))};
    registerExitCleanup(() => writeFileSync(${JSON.stringify(marker)}, "cleaned"));
    const drop = registerExitCleanup(() => writeFileSync(${JSON.stringify(marker + ".dropped")}, "x"));
    drop();
    ${withOwnHandler ? 'process.on("SIGINT", () => { console.log("own handler"); setTimeout(() => process.exit(0), 50); });' : ""}
    console.log("ready");
    setInterval(() => {}, 1000);
  `;
  return spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", src], {
    stdio: ["ignore", "pipe", "inherit"],
  });
};

const runUntilSignalled = (marker: string, withOwnHandler: boolean) =>
  new Promise<{ code: number | null; signal: string | null; out: string }>((resolve) => {
    const p = child(marker, withOwnHandler);
    let out = "";
    p.stdout.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes("ready")) p.kill("SIGINT");
    });
    p.on("exit", (code, signal) => resolve({ code, signal, out }));
  });

describe("exit-time cleanup of what a real-guest run leaves outside the process", () => {
  it("Ctrl-C on a process without a handler runs the registered cleanups, then ends it by the signal", async () => {
    const dir = mkdtempSync(join(tmpdir(), "vlab-exit-"));
    try {
      const marker = join(dir, "m");
      const r = await runUntilSignalled(marker, false);
      expect(existsSync(marker)).toBe(true);
      expect(existsSync(`${marker}.dropped`)).toBe(false);
      expect(r.signal).toBe("SIGINT");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("with a handler of its own, the cleanups run and the process's handler decides", async () => {
    const dir = mkdtempSync(join(tmpdir(), "vlab-exit-"));
    try {
      const marker = join(dir, "m");
      const r = await runUntilSignalled(marker, true);
      expect(existsSync(marker)).toBe(true);
      expect(r.out).toContain("own handler");
      expect(r.code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
