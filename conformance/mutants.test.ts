import { describe, expect, it } from "vitest";
import { runMutants, suiteVectors } from "./conform.ts";
import { MUTANTS, NO_MUTANT } from "./mutants.ts";
import { allCases } from "./suite.ts";
import { stepLevel } from "./cases/types.ts";
import { killCount } from "./report.ts";
import { MUTANT_WRAPPERS } from "./ops/mutant-wrappers.ts";
import { handlers } from "./adapter.ts";

const RUNS = 5;

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

/** Rules some step of these vectors checks at the must or safety level. */
const mustOrSafetyRules = (vectors: ReturnType<typeof suiteVectors>): Set<string> => {
  const out = new Set<string>();
  for (const v of vectors)
    for (const run of v.runs)
      for (const s of run.slice(1)) {
        if (stepLevel(s, v.meta.level) === "profile") continue;
        for (const r of s.rules ?? v.meta.rules) out.add(r);
      }
  return out;
};

// Each mutant adapter puts one known bug back around impl/; the deterministic vectors of the
// whole suite must fail against every one of them (a survivor means the suite is blind to it),
// and every case runs against every mutant (--full), so each failed rule is seen.
describe("every mutant adapter is killed by the conformance vectors, on its rule and no rule it should not fail [VQ-POP-AVAIL-IDX VQ-SIZE-ZERO VQ-RESET VQ-PREPARE-KICK VQ-DEVICE-ACCESS CHAIN-LEN-U32 CHAIN-INDIRECT-UNALIGNED IOV-MUT-READ-ONLY IOV-LEN-U32 USB-PARSE-PAYLOAD-LEN NET-CFG-LAYOUT NET-RX-HDR PVQ-WRAP PVQ-ADD-USED PVQ-NOTIFY-DRIVER]", () => {
  it(`kills ${MUTANTS.map((m) => m.id).join(", ")}`, async () => {
    const results = await runMutants({ runs: RUNS, parallel: 3, full: true });
    console.log(killCount(results));
    const survivors = results.filter((m) => m.status === "survived").map((m) => m.id);
    expect(survivors).toEqual([]);
    expect(results.filter((m) => m.status === "killed").map((m) => m.id)).toEqual(MUTANTS.map((m) => m.id));
    const unexplained: string[] = [];
    for (const m of results) {
      // Killed on the rule it breaks, at the must or safety level (a profile difference is a
      // VMM's choice, never a kill) ...
      expect(
        m.failedRules.filter((k) => k === `must ${m.breaks}` || k === `safety ${m.breaks}`),
        `${m.id} breaks ${m.breaks}; failed: ${m.failedRules.join(", ")}`,
      ).not.toEqual([]);
      // ... and on no other MUST/SAFETY rule but those its entry says why (alsoBreaks).
      const allowed = new Set([
        m.breaks,
        ...Object.keys(MUTANTS.find((x) => x.id === m.id)?.alsoBreaks ?? {}),
      ]);
      const extra = m.failedRules.filter(
        (k) => !k.startsWith("profile ") && !allowed.has(k.slice(k.indexOf(" ") + 1)),
      );
      if (extra.length > 0) unexplained.push(`${m.id}: ${extra.join(", ")}`);
    }
    expect(unexplained, "mutants that also fail rules they should not (no alsoBreaks reason)").toEqual([]);
  });
});

// For every MUST/SAFETY rule: a mutant that breaks it, or the recorded reason why not.
describe("every MUST/SAFETY rule has a mutant or a reason why not", () => {
  it("MUTANTS and NO_MUTANT cover each rule the suite checks at must or safety level once", () => {
    const checked = mustOrSafetyRules(suiteVectors(allCases(), RUNS));
    const broken = new Map(MUTANTS.map((m) => [m.breaks, m.id]));
    const w = Math.max(...[...checked].map((r) => r.length));
    const table = [...checked]
      .sort()
      .map(
        (r) => `${r.padEnd(w)}  ${broken.has(r) ? `mutant ${broken.get(r)}` : (NO_MUTANT[r] ?? "MISSING")}`,
      );
    console.log(
      `rule -> mutant or reason (${broken.size} mutants, ${Object.keys(NO_MUTANT).length} reasons)\n${table.join("\n")}`,
    );
    expect([...checked].filter((r) => !broken.has(r) && NO_MUTANT[r] === undefined)).toEqual([]);
    expect(Object.keys(NO_MUTANT).filter((r) => broken.has(r))).toEqual([]);
    // A reason for a rule no must/safety case cites any more is stale.
    const citable = new Set(
      allCases()
        .filter((c) => c.level !== "profile")
        .flatMap((c) => c.rules),
    );
    expect(Object.keys(NO_MUTANT).filter((r) => !citable.has(r) && !checked.has(r))).toEqual([]);
  });
});
