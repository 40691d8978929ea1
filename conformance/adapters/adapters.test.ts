/**
 * The starter adapters (Rust std only, C, Python) build offline here and pass the memory
 * cases; every other case is skipped, never failed (they answer Unsupported). Build outputs
 * go to a temporary directory, removed afterwards.
 */
import { afterAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { conform } from "../conform.ts";
import { exitStatus, ruleLines } from "../report.ts";
import { conformanceDir, repoRoot } from "../suite.ts";

const here = join(conformanceDir, "adapters");
const out = mkdtempSync(join(tmpdir(), "vlab-starters-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

const has = (cmd: string, arg = "--version"): boolean => spawnSync(cmd, [arg]).status === 0;
const q = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

interface Starter {
  readonly name: string;
  readonly tool: string;
  /** Builds the starter into `out`; returns the command that starts it. */
  readonly build: () => string;
}

const run = (cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): void => {
  const r = spawnSync(cmd, args, { encoding: "utf8", env, cwd: repoRoot });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed:\n${r.stderr}${r.stdout}`);
};

const STARTERS: readonly Starter[] = [
  {
    name: "rust",
    tool: "cargo",
    build: () => {
      const target = join(out, "rust-target");
      run(
        "cargo",
        ["build", "--offline", "--release", "--quiet", "--manifest-path", join(here, "rust", "Cargo.toml")],
        { ...process.env, CARGO_TARGET_DIR: target },
      );
      return q(join(target, "release", "vlab-starter-adapter"));
    },
  },
  {
    name: "c",
    tool: "gcc",
    build: () => {
      const bin = join(out, "c-adapter");
      run("gcc", ["-O2", "-Wall", "-Wextra", "-Werror", "-o", bin, join(here, "c", "adapter.c")]);
      return q(bin);
    },
  },
  {
    name: "python",
    tool: "python3",
    build: () => `python3 ${q(join(here, "python", "adapter.py"))}`,
  },
];

describe("starter adapters build offline and run the suite: memory cases pass, the rest skip [MEM-RANGE-ONE-REGION MEM-ADDR-U64 MEM-REGION-DISJOINT]", () => {
  for (const s of STARTERS) {
    const missing = !has(s.tool);
    if (missing) console.log(`starter ${s.name}: skipped, ${s.tool} is not installed`);
    it.skipIf(missing)(`${s.name} (${s.tool})`, { timeout: 180_000 }, async () => {
      const command = s.build();
      const r = await conform({ command, runs: 10, seed: 11 });
      if (typeof r === "string") throw new Error(r);
      const memory = r.cases.filter((c) => c.id.startsWith("memory."));
      expect(memory.map((c) => `${c.id} ${c.status}`)).toEqual(memory.map((c) => `${c.id} pass`));
      const others = r.cases.filter((c) => !c.id.startsWith("memory."));
      expect(others.filter((c) => c.status !== "skipped").map((c) => c.id)).toEqual([]);
      expect(ruleLines(r.cases).filter((l) => l.status === "fail")).toEqual([]);
      expect(exitStatus(r.cases, ["memory.write"]).code).toBe(0);
    });
  }
});
