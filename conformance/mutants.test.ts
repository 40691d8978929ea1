import { describe, expect, it } from "vitest";
import { runMutants } from "./conform.ts";
import { MUTANTS } from "./mutants.ts";
import { killCount } from "./report.ts";
import { LANDED_SUBJECTS } from "./ops/subjects.ts";
import { MUTANT_WRAPPERS } from "./ops/mutant-wrappers.ts";
import { handlers } from "./adapter.ts";

const landed = MUTANTS.filter((m) => LANDED_SUBJECTS.has(m.subject));

// A mutant is a wrapper around the real handler table (the handlers have no mutant branches:
// World carries no mutant for them to test). Each wraps at least one op.
describe("mutants are wrappers", () => {
  it("every mutant has its wrapper and each replaces some op of the reference table", () => {
    expect(Object.keys(MUTANT_WRAPPERS).sort()).toEqual(MUTANTS.map((m) => m.id).sort());
    const real = handlers();
    for (const m of MUTANTS) {
      const t = handlers(m.id);
      expect(Object.keys(t).sort(), m.id).toEqual(Object.keys(real).sort());
      expect(Object.keys(t).filter((op) => t[op] !== real[op]).length, m.id).toBeGreaterThan(0);
    }
  });
});

// Each mutant adapter puts one known bug back around impl/; the deterministic vectors of the
// whole suite must fail against every one of them (a survivor means the suite is blind to it).
describe("every mutant adapter is killed by the conformance vectors [VQ-POP-AVAIL-IDX VQ-SIZE-ZERO VQ-RESET VQ-PREPARE-KICK VQ-DEVICE-ACCESS CHAIN-LEN-U32 CHAIN-INDIRECT-UNALIGNED IOV-MUT-READ-ONLY IOV-LEN-U32 USB-PARSE-PAYLOAD-LEN NET-CFG-LAYOUT NET-RX-HDR PVQ-WRAP PVQ-ADD-USED PVQ-NOTIFY-DRIVER]", () => {
  it(`kills ${landed.map((m) => m.id).join(", ")}`, async () => {
    const results = await runMutants({ runs: 5, parallel: 3 });
    console.log(killCount(results));
    const survivors = results.filter((m) => m.status === "survived").map((m) => m.id);
    expect(survivors).toEqual([]);
    expect(results.filter((m) => m.status === "killed").map((m) => m.id)).toEqual(landed.map((m) => m.id));
    // Each is killed on the rule it breaks, at the must or safety level (a profile difference
    // is a VMM's choice, never a kill). Other rules of the same case may fail beside it where
    // the case charges a difference to all its rules; the log says which.
    for (const m of results) {
      expect(
        m.failedRules.filter((k) => k === `must ${m.breaks}` || k === `safety ${m.breaks}`),
        `${m.id} breaks ${m.breaks}; failed: ${m.failedRules.join(", ")}`,
      ).not.toEqual([]);
      const extra = m.failedRules.filter((k) => !k.endsWith(` ${m.breaks}`));
      if (extra.length > 0) console.log(`${m.id}: also charged ${extra.join(", ")}`);
    }
  });
});
