/** An unusable --report / --out is one clear line and exit 2, before any work is done. */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { main, type Io } from "./cli.ts";

const capture = (): Io & { stdout: string[]; stderr: string[] } => {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: null };
};

/** Mounts a read-only tmpfs at `at` (root only); false where that is not possible. */
const mountReadOnly = (at: string): boolean => {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", at], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};

describe("filesystem errors on --report and --out", () => {
  let dir = "";
  let file = "";
  let ro = "";
  let roMounted = false;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "sim-fs-"));
    file = join(dir, "a-file");
    writeFileSync(file, "x");
    ro = join(dir, "ro");
    mkdirSync(ro);
    roMounted = process.getuid?.() === 0 && mountReadOnly(ro);
  });
  afterAll(() => {
    if (roMounted) execFileSync("umount", [ro]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("sim run/smoke --report on a file, under a file, or on a read-only mount: one line, exit 2, nothing run", async () => {
    const targets: [string, string][] = [
      [file, "a file is in the way (not a directory)"],
      [join(file, "sub"), "a file is in the way (not a directory)"],
    ];
    if (roMounted) targets.push([join(ro, "reports"), "read-only file system"]);
    else console.log("read-only mount case skipped: needs root and mount");
    for (const [target, reason] of targets)
      for (const argv of [
        ["run", "queue", "--seed", "1", "--steps", "50", "--report", target],
        ["smoke", "--report", target],
      ]) {
        const io = capture();
        expect(await main(argv, io)).toBe(2);
        const cmd = `sim ${argv[0]}`;
        expect(io.stderr).toEqual([
          `${cmd}: --report ${target}: cannot write there: ${reason}`,
          `try: npx tsx ${cmd} --help`,
        ]);
        expect(io.stdout).toEqual([]);
      }
    expect(readdirSync(dir).sort()).toEqual(["a-file", "ro"]);
  });

  it("vectors --out and conform --report on a file: one line, exit 2, nothing written", async () => {
    const lines: string[] = [];
    vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
    vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
    try {
      const io = capture();
      expect(await main(["vectors", "--out", file, "--only", "usb"], io)).toBe(2);
      expect(await main(["conform", "--reference", "--only", "usb", "--report", file], io)).toBe(2);
      expect(lines).toEqual([
        `sim vectors: --out ${file}: cannot write there: a file is in the way (not a directory)`,
        "try: npx tsx sim vectors --help",
        `sim conform: --report ${file}: cannot write there: a file is in the way (not a directory)`,
        "try: npx tsx sim conform --help",
      ]);
      expect(existsSync(join(dir, "manifest.json"))).toBe(false);
    } finally {
      vi.restoreAllMocks();
    }
  });
});
