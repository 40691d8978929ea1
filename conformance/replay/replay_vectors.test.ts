import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { selectCases } from "../conform.ts";
import { allCases, conformanceDir, repoRoot } from "../suite.ts";
import { generateVectors } from "../vectors.ts";

const python = spawnSync("python3", ["--version"]).status === 0;
const replayer = join(conformanceDir, "replay", "replay_vectors.py");
const replay = (args: readonly string[]) =>
  spawnSync("python3", [replayer, ...args], { cwd: repoRoot, encoding: "utf8", timeout: 60_000 });

describe.skipIf(!python)("replay_vectors.py: usage errors in one line, a per-request timeout", () => {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "vlab-pyargs-"));
    generateVectors(dir, selectCases(allCases(), { only: "usb" }), 1);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("bad arguments, a missing manifest or adapter: one line on stderr (and the hint), exit 2", () => {
    const file = join(dir, "usb.parse.jsonl");
    for (const [args, msg] of [
      [["--timeout", "0x1", dir, "--", "true"], '--timeout must be an integer >= 1, got "0x1"'],
      [["--timeout", "-1", dir, "--", "true"], '--timeout must be an integer >= 1, got "-1"'],
      [["--bogus", dir, "--", "true"], "unknown option --bogus"],
      [[dir, "true"], "missing -- before the adapter command"],
      [[join(dir, "nope"), "--", "true"], "manifest.json: cannot read: No such file or directory"],
      [[file, "--", "true"], "manifest.json: cannot read: Not a directory"],
      [[dir, "--", "/no/such/adapter"], "cannot start the adapter /no/such/adapter"],
    ] as const) {
      const r = replay(args);
      expect(r.status, r.stderr).toBe(2);
      const lines = r.stderr.trim().split("\n");
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(/^replay_vectors\.py: /);
      expect(lines[0]).toContain(msg);
      expect(lines[1]).toBe("try: python3 replay_vectors.py --help");
      expect(r.stdout).toBe("");
    }
  });

  it("a hanging adapter: each request past --timeout is a Timeout difference, the adapter restarted, the replay goes on", () => {
    const ops = (
      JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as { cases: { ops: string[] }[] }
    ).cases.flatMap((c) => c.ops);
    // Answers hello, then never answers again.
    const hang = join(dir, "hang.py");
    writeFileSync(
      hang,
      [
        "import json, sys, time",
        "r = json.loads(sys.stdin.readline())",
        `print(json.dumps({"id": r["id"], "ok": True, "value": {"ops": ${JSON.stringify(ops)}}}), flush=True)`,
        "time.sleep(600)",
      ].join("\n"),
    );
    const started = Date.now();
    const r = replay(["--timeout", "200", dir, "--", "python3", hang]);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^fail {4}usb\.parse: step 0 reset: expected ok null, got error Timeout$/m);
    expect(r.stdout).toMatch(/^verdict: fail$/m);
    expect(r.stdout.match(/^fail {4}/gm)).toHaveLength(3);
    expect(Date.now() - started).toBeLessThan(55_000);
  });
});
