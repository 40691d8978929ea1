/** The pure parts of `npm run mutate -- --recheck` (scripts/mutation/recheck-core.ts). */
import { describe, expect, it } from "vitest";
import type { EquivalentGroup } from "./equivalents.ts";
import {
  appendGroups,
  applyMutant,
  classify,
  DEFAULT_LIMIT,
  firstFailure,
  groupVerdicts,
  limitMs,
  staleBecause,
  timeoutCandidates,
  type Candidate,
  type Rechecked,
  type Report,
  type ReportMutant,
} from "./recheck-core.ts";

const SOURCE = [
  "export class Walk {",
  "  total = 0;",
  "  sum(n: number): number {",
  "    for (let i = 0; i < n; i++) this.total += i;",
  "    return this.total;",
  "  }",
  "  step(n: number): number {",
  "    for (let j = 0; j < n; j++) this.total -= j;",
  "    return this.total;",
  "  }",
  "}",
  "",
].join("\n");

/** The 1-based line/column span of the `nth` occurrence of `code` in `source`. */
const span = (source: string, code: string, nth = 0): ReportMutant["location"] => {
  let at = -1;
  for (let k = 0; k <= nth; k++) at = source.indexOf(code, at + 1);
  if (at < 0) throw new Error(`no ${code}`);
  const pos = (offset: number): { line: number; column: number } => {
    const before = source.slice(0, offset).split("\n");
    return { line: before.length, column: (before.at(-1)?.length ?? 0) + 1 };
  };
  return { start: pos(at), end: pos(at + code.length) };
};

const mutant = (
  id: string,
  status: string,
  code: string,
  replacement: string,
  coveredBy: readonly string[],
  nth = 0,
  mutatorName = "UpdateOperator",
): ReportMutant => ({ id, mutatorName, replacement, status, coveredBy, location: span(SOURCE, code, nth) });

const FILE = "impl/x/walk.ts";
const report: Report = {
  files: {
    [FILE]: {
      source: SOURCE,
      mutants: [
        mutant("1", "Timeout", "i++", "i--", ["t1"]),
        mutant("2", "Killed", "this.total += i", "this.total -= i", ["t1"], 0, "AssignmentOperator"),
        mutant("3", "Timeout", "j++", "j--", []),
        mutant("4", "Timeout", "i < n", "true", ["t1", "t2", "t3"], 0, "ConditionalExpression"),
      ],
    },
  },
  testFiles: {
    "impl/x/walk.test.ts": { tests: [{ id: "t1", name: "sums" }] },
    "properties/x.test.ts": {
      tests: [
        { id: "t2", name: "any n" },
        { id: "t3", name: "n = 0" },
      ],
    },
  },
};
const ALL_TESTS = ["impl/x/walk.test.ts", "impl/x/other.test.ts", "properties/x.test.ts"];
const listOf = (name: EquivalentGroup["mutants"][number]): EquivalentGroup[] => [
  { file: FILE, reason: "checked by hand before", mutants: [name] },
];
const candidates = (
  checked: readonly EquivalentGroup[] = [],
  equivalents: readonly EquivalentGroup[] = [],
  all = false,
): readonly Candidate[] =>
  timeoutCandidates(report, { files: [FILE], allTests: ALL_TESTS, checked, equivalents, all });
const byId = (id: string): Candidate => {
  const c = candidates().find((c) => c.id === id);
  if (c === undefined) throw new Error(`no candidate ${id}`);
  return c;
};

describe("recheck: which timeouts, with which tests", () => {
  it("takes only the Timeout mutants, each with the test files of its covering tests, all of them when none is named", () => {
    expect(candidates().map((c) => [c.id, c.tests])).toEqual([
      ["1", ["impl/x/walk.test.ts"]],
      ["3", ALL_TESTS],
      ["4", ["impl/x/walk.test.ts", "properties/x.test.ts"]],
    ]);
  });

  it("names each as the lists do: function, mutator, code", () => {
    expect(byId("1").name).toEqual({
      in: "Walk.sum",
      mutator: "UpdateOperator",
      original: "i++",
      replacement: "i--",
    });
    expect(byId("3").name.in).toBe("Walk.step");
  });

  it("leaves out the timeouts the lists name, unless all, then marks them", () => {
    const checked = listOf(byId("1").name);
    const equivalents = listOf(byId("4").name);
    expect(candidates(checked, equivalents).map((c) => c.id)).toEqual(["3"]);
    expect(candidates(checked, equivalents, true).map((c) => [c.id, c.listed])).toEqual([
      ["1", "checked-timeouts.json"],
      ["3", undefined],
      ["4", "equivalents.json"],
    ]);
  });
});

describe("recheck: applying a mutant by its location", () => {
  it("replaces exactly the code at the report's line and column", () => {
    const c = byId("3");
    const out = applyMutant(SOURCE, c.start, c.end, c.replacement);
    expect(out).toBe(SOURCE.replace("j++", "j--"));
    expect(out.split("\n")[3]).toBe("    for (let i = 0; i < n; i++) this.total += i;");
    const first = byId("4");
    expect(applyMutant(SOURCE, first.start, first.end, first.replacement).split("\n")[3]).toBe(
      "    for (let i = 0; true; i++) this.total += i;",
    );
  });

  it("is stale when the file has other code there now, not when only later lines changed", () => {
    const c = byId("3");
    expect(staleBecause(SOURCE, c)).toBeUndefined();
    expect(
      staleBecause(SOURCE.replace("return this.total;\n  }\n}", "return 0;\n  }\n}"), c),
    ).toBeUndefined();
    expect(staleBecause(`// a line above\n${SOURCE}`, c)).toMatch(
      /the code there is now .*, the run mutated "j\+\+"/,
    );
    expect(staleBecause("export {};\n", c)).toMatch(/shorter/);
  });
});

describe("recheck: the limit and the verdict", () => {
  it("gives max(60 s, 10x the unmutated time)", () => {
    expect(limitMs(2_000, DEFAULT_LIMIT)).toBe(60_000);
    expect(limitMs(11_250, DEFAULT_LIMIT)).toBe(112_500);
  });

  it("still running at the limit is a hang; a failed test kills; all passing is not detected", () => {
    expect(classify({ kind: "limit", ms: 60_004, limitMs: 60_000 })).toEqual({
      kind: "hangs",
      limitMs: 60_000,
    });
    expect(classify({ kind: "limit", ms: 60_004, limitMs: 60_000, busy: 0.01 })).toEqual({
      kind: "hangs",
      limitMs: 60_000,
      busy: 0.01,
    });
    const ended = { kind: "exit", ms: 4_000, signal: null, stderrTail: "" } as const;
    expect(classify({ ...ended, code: 0, failed: undefined })).toEqual({ kind: "not-detected", ms: 4_000 });
    const failed = { file: "impl/x/walk.test.ts", name: "Walk sums", ms: 12 };
    expect(classify({ ...ended, code: 1, failed })).toEqual({ kind: "killed", ms: 4_000, by: failed });
  });

  it("a run that ends badly without a failed test is killed, with the cause", () => {
    const v = classify({
      kind: "exit",
      ms: 900,
      code: null,
      signal: "SIGABRT",
      failed: undefined,
      stderrTail: "one\ntwo\nFATAL ERROR: heap out of memory\n",
    });
    expect(v).toEqual({
      kind: "killed",
      ms: 900,
      by: {
        error: "vitest ended by SIGABRT with no failed test: one | two | FATAL ERROR: heap out of memory",
      },
    });
  });

  it("finds the first failed test of vitest's JSON report, or a file that failed to run", () => {
    const json = {
      testResults: [
        {
          name: "/tmp/copy/a.test.ts",
          status: "passed",
          assertionResults: [{ status: "passed", fullName: "a" }],
        },
        {
          name: "/tmp/copy/b.test.ts",
          status: "failed",
          assertionResults: [
            { status: "passed", fullName: "b ok" },
            { status: "failed", fullName: "b breaks [RULE-X]", duration: 41.7 },
          ],
        },
      ],
    };
    expect(firstFailure(json, "/tmp/copy")).toEqual({
      file: "b.test.ts",
      name: "b breaks [RULE-X]",
      ms: 41.7,
    });
    expect(
      firstFailure(
        { testResults: [{ name: "/tmp/copy/c.test.ts", status: "failed", message: "SyntaxError" }] },
        "/tmp/copy",
      ),
    ).toEqual({ file: "c.test.ts", name: "(the file failed: SyntaxError)" });
    expect(firstFailure({ testResults: [] }, "/tmp/copy")).toBeUndefined();
  });
});

describe("recheck: ready-to-review groups", () => {
  const ctx = { command: "npm run mutate -- --recheck x", commit: "abc1234", rule: DEFAULT_LIMIT };
  const results: Rechecked[] = [
    {
      candidate: byId("1"),
      verdict: { kind: "hangs", limitMs: 80_000, busy: 0.97 },
      baselineMs: 8_000,
      limitMs: 80_000,
      seed: 7,
    },
    {
      candidate: byId("3"),
      verdict: { kind: "killed", ms: 2_500, by: { file: "impl/x/walk.test.ts", name: "Walk sums", ms: 30 } },
      baselineMs: 2_000,
      limitMs: 60_000,
      seed: 7,
    },
    {
      candidate: byId("4"),
      verdict: { kind: "not-detected", ms: 9_000 },
      baselineMs: 8_500,
      limitMs: 85_000,
      seed: 7,
    },
  ];

  it("one group per file and verdict, hangs then killed; not detected apart, never among the checked", () => {
    const { checked, notDetected } = groupVerdicts(results, ctx);
    expect(checked.map((g) => [g.file, g.mutants.map((m) => m.replacement)])).toEqual([
      [FILE, ["i--"]],
      [FILE, ["j--"]],
    ]);
    expect(notDetected.map((g) => g.mutants.map((m) => m.replacement))).toEqual([["true"]]);
  });

  it("reasons state the verdict, the command, the seed and each mutant's figures", () => {
    const { checked, notDetected } = groupVerdicts(results, ctx);
    const [hangs, killed] = checked;
    expect(hangs?.reason).toMatch(/^Really hangs \(rechecked by `npm run mutate -- --recheck x` at abc1234/);
    expect(hangs?.reason).toContain("FC_SEED=7");
    expect(hangs?.reason).toContain("limit max(60.0 s, 10x");
    expect(hangs?.reason).toContain(
      "unmutated 8.0 s, still running when killed at 80.0 s, 97% of a core in its last quarter)",
    );
    expect(killed?.reason).toMatch(/^Does not hang; killed in bounded time/);
    expect(killed?.reason).toContain(
      "impl/x/walk.test.ts 'Walk sums' failed in 30 ms, run ended at 2.5 s of a 60.0 s limit",
    );
    expect(notDetected[0]?.reason).toMatch(/^NOT DETECTED/);
    expect(notDetected[0]?.reason).toContain("all pass in 9.0 s; unmutated 8.5 s");
  });

  it("appending keeps the list and adds only mutants it does not name yet", () => {
    const { checked } = groupVerdicts(results, ctx);
    const existing = listOf(byId("1").name);
    const after = appendGroups(existing, checked);
    expect(after.slice(0, 1)).toEqual(existing);
    expect(after.slice(1).map((g) => g.mutants.map((m) => m.replacement))).toEqual([["j--"]]);
    expect(appendGroups(after, checked)).toEqual(after);
  });
});
