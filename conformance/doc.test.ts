import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { conformanceDir, repoRoot } from "./suite.ts";

// The worked exchange in the protocol document is what the reference adapter really says:
// its requests are replayed through the adapter and every answer must be the documented line.
describe("docs/conformance-protocol.md worked exchange [VQ-POP-ADVANCE VQ-ADD-USED VQ-PUBLISH-USED VQ-POP-AVAIL-IDX]", () => {
  it("matches the reference adapter's answers byte for byte", () => {
    const doc = readFileSync(join(repoRoot, "docs", "conformance-protocol.md"), "utf8");
    const requests = doc
      .split("\n")
      .filter((l) => l.startsWith("> {"))
      .map((l) => l.slice(2));
    const answers = doc
      .split("\n")
      .filter((l) => l.startsWith("< {"))
      .map((l) => l.slice(2));
    expect(requests.length).toBeGreaterThan(10);
    const run = spawnSync(process.execPath, ["--import", "tsx", join(conformanceDir, "adapter-main.ts")], {
      cwd: repoRoot,
      input: requests.join("\n") + "\n",
      encoding: "utf8",
      env: { ...process.env, VLAB_MUTANT: "" },
    });
    expect(run.stdout.trim().split("\n")).toEqual(answers);
  });
});
