import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { conform } from "./conform.ts";
import { counts, ruleLines, verdict } from "./report.ts";
import { allCases, referenceCommand, repoRoot } from "./suite.ts";
import { generateVectors } from "./vectors.ts";
import { runsFor } from "../properties/harness.ts";

const ruleIds = [...new Set(allCases().flatMap((c) => c.rules))].sort();

// The reference adapter runs in its own process and is reached through the real stdio
// protocol, exactly as an external implementation would be.
describe(`the reference adapter over impl/ passes every case through the stdio protocol [${ruleIds.join(" ")}]`, () => {
  it("as properties", async () => {
    const r = await conform({ command: referenceCommand(), cwd: repoRoot, runs: runsFor(5) });
    if (typeof r === "string") throw new Error(r);
    const failed = r.cases.filter((c) => c.status === "fail");
    expect(failed.map((c) => `${c.id}: ${c.reason}`)).toEqual([]);
    expect(counts(r.cases).skipped).toBe(0);
    // Zero differences: no rule at any level (profiles included) saw a run differ, and every
    // rule was checked by some run.
    const lines = ruleLines(r.cases);
    expect(lines.filter((l) => l.differed > 0).map((l) => `${l.level} ${l.rule}: ${l.note}`)).toEqual([]);
    expect(lines.filter((l) => l.status !== "pass").map((l) => `${l.level} ${l.rule}`)).toEqual([]);
    expect(verdict(r.cases)).toBe("pass");
  });

  it("from vectors written to disk and read back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "vlab-vectors-"));
    try {
      generateVectors(dir, allCases(), 3);
      const r = await conform({ command: referenceCommand(), cwd: repoRoot, vectorsDir: dir });
      if (typeof r === "string") throw new Error(r);
      expect(r.mode).toBe("vectors");
      expect(r.cases.filter((c) => c.status !== "pass").map((c) => `${c.id}: ${c.reason}`)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// The reference adapter chooses on NO_INTERRUPT once per session (--honour-no-interrupt), as
// an implementation does: a profile is judged the same whatever runs a seed draws, and the
// two choices match two different profiles.
describe("a profile is judged consistently: the same profiles on every seed [VQ-NO-INTERRUPT]", () => {
  it("queue.ops: like Firecracker by default, like QEMU with --honour-no-interrupt", async () => {
    for (const [honourNoInterrupt, want] of [
      // Firecracker's alone: rust-vmm's add_used publishes used.idx (VQ-PUBLISH-USED), impl/ does not.
      [false, ["firecracker"]],
      [true, ["qemu"]],
    ] as const) {
      for (const seed of [1, 2]) {
        const r = await conform({
          command: referenceCommand(undefined, { honourNoInterrupt }),
          cwd: repoRoot,
          only: "queue.ops",
          runs: 20,
          seed,
        });
        if (typeof r === "string") throw new Error(r);
        const c = r.cases.find((x) => x.id === "queue.ops")!;
        expect(c.status, c.reason).toBe("pass");
        expect(c.opined).toContain("qemu");
        expect(c.profiles, `seed ${seed}, honour ${honourNoInterrupt}`).toEqual(want);
      }
    }
  });
});
