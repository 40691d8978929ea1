import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { selectCases } from "./conform.ts";
import { allCases, conformanceDir, repoRoot } from "./suite.ts";
import { generateVectors } from "./vectors.ts";

const python = spawnSync("python3", ["--version"]).status === 0;
const replayer = join(conformanceDir, "replay", "replay_vectors.py");
const adapter = [process.execPath, "--import", "tsx", join(conformanceDir, "adapter-main.ts")];

// The vectors format is meant for other projects: a 100-line Python replayer (standard
// library only) must reach the same verdicts as the suite.
describe("vectors replay without Node [USB-PARSE-PAYLOAD-LEN USB-PARSE-STOP]", () => {
  it.skipIf(!python)("the Python replayer passes the reference and fails a mutant", () => {
    const dir = mkdtempSync(join(tmpdir(), "vlab-py-"));
    try {
      generateVectors(dir, selectCases(allCases(), { only: "usb" }), 5);
      const ok = spawnSync("python3", [replayer, dir, "--", ...adapter], { cwd: repoRoot, encoding: "utf8" });
      expect(ok.stdout).toContain("pass    usb.parse-bounds");
      expect(ok.status).toBe(0);
      const bad = spawnSync(
        "python3",
        [replayer, dir, "--", ...adapter, "--mutant", "usb-payload-past-buffer"],
        {
          cwd: repoRoot,
          encoding: "utf8",
        },
      );
      expect(bad.stdout).toContain("fail    usb.parse-bounds");
      expect(bad.status).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
