/**
 * The pure parts of `npm run mutate -- --recheck` (scripts/mutation/recheck.ts): which
 * Timeout mutants of a Stryker report to re-check and with which tests, applying one to its
 * file by location, the time limit, the verdict from one vitest run, and the ready-to-review
 * groups (the format of checked-timeouts.json) the verdicts make.
 *
 * Issue 19 counts a timeout as killed only where the mutant really hangs the code (or a test
 * kills it in bounded time and Stryker only ran out of time on a loaded machine); a timeout
 * whose tests all pass is a survivor Stryker hid.
 */
import {
  describeMutants,
  nameMutant,
  offsetOf,
  resolve,
  type DescribedMutant,
  type EquivalentGroup,
  type MutantName,
} from "./equivalents.ts";

// ---------------------------------------------------------------------------------------------
// Stryker's JSON report (mutation-testing-report-schema), as far as the tools read it.

export interface ReportPosition {
  /** 1-based. */
  readonly line: number;
  /** 1-based. */
  readonly column: number;
}

export interface ReportMutant {
  readonly id: string;
  readonly mutatorName: string;
  readonly replacement?: string;
  readonly status: string;
  /** Why Stryker gave that status ("Hit limit reached (n/m)" for a loop counted past its limit). */
  readonly statusReason?: string;
  /** Ids of the tests that ran the mutated code (coverage per test); empty or absent: all. */
  readonly coveredBy?: readonly string[];
  readonly location: { readonly start: ReportPosition; readonly end: ReportPosition };
}

export interface Report {
  readonly files: Readonly<
    Record<string, { readonly source: string; readonly mutants: readonly ReportMutant[] }>
  >;
  readonly testFiles?: Readonly<
    Record<string, { readonly tests: readonly { readonly id: string; readonly name: string }[] }>
  >;
}

/** The mutants of one file of a report, described for matching against the lists' names. */
export const describeReportMutants = (
  file: string,
  source: string,
  mutants: readonly ReportMutant[],
): readonly DescribedMutant[] =>
  describeMutants(
    file,
    source,
    mutants.map((m) => ({
      id: m.id,
      mutator: m.mutatorName,
      replacement: m.replacement ?? "",
      start: offsetOf(source, m.location.start.line, m.location.start.column),
      end: offsetOf(source, m.location.end.line, m.location.end.column),
    })),
  );

/** The ids of the mutants of `file` that an entry of `groups` names alone. */
export const idsNamed = (
  groups: readonly EquivalentGroup[],
  file: string,
  source: string,
  described: readonly DescribedMutant[],
): Set<string> => {
  const ids = new Set<string>();
  for (const g of groups)
    if (g.file === file)
      for (const name of g.mutants) {
        const fits = resolve(name, source, described);
        if (fits.length === 1) ids.add(fits[0]?.id ?? "");
      }
  return ids;
};

// ---------------------------------------------------------------------------------------------
// What to re-check.

/** One Timeout mutant to re-check. */
export interface Candidate {
  readonly file: string;
  readonly id: string;
  readonly line: number;
  readonly column: number;
  readonly endLine: number;
  readonly endColumn: number;
  /** Offsets into the report's source. */
  readonly start: number;
  readonly end: number;
  /** The code the mutant replaces, from the report's source. */
  readonly original: string;
  readonly replacement: string;
  /** Its name in the lists' format (function, mutator, code, and before/after if needed). */
  readonly name: MutantName;
  /** The test files that cover it (every test file of the subject when coverage names none). */
  readonly tests: readonly string[];
  /** Stryker's reason for the timeout, if it gave one. */
  readonly strykerReason?: string;
  /** Where the lists already name it (only with `all`). */
  readonly listed?: "checked-timeouts.json" | "equivalents.json";
}

/**
 * The Timeout mutants of `files` in `report` not yet in `checked` or `equivalents` (all of
 * them with `all`, marked with the list that names them), each with the test files that
 * cover it: those of its `coveredBy` tests, or `allTests` when it names none.
 */
export const timeoutCandidates = (
  report: Report,
  options: {
    readonly files: readonly string[];
    readonly allTests: readonly string[];
    readonly checked: readonly EquivalentGroup[];
    readonly equivalents: readonly EquivalentGroup[];
    readonly all: boolean;
  },
): readonly Candidate[] => {
  const fileOfTest = new Map<string, string>();
  for (const [testFile, { tests }] of Object.entries(report.testFiles ?? {}))
    for (const t of tests) fileOfTest.set(t.id, testFile);
  const out: Candidate[] = [];
  for (const file of options.files) {
    const entry = report.files[file];
    if (entry === undefined) continue;
    const { source, mutants } = entry;
    const described = describeReportMutants(file, source, mutants);
    const checked = idsNamed(options.checked, file, source, described);
    const equivalent = idsNamed(options.equivalents, file, source, described);
    for (const [i, m] of mutants.entries()) {
      const d = described[i];
      if (m.status !== "Timeout" || d === undefined) continue;
      const listed = checked.has(m.id)
        ? ("checked-timeouts.json" as const)
        : equivalent.has(m.id)
          ? ("equivalents.json" as const)
          : undefined;
      if (listed !== undefined && !options.all) continue;
      const covering = new Set<string>();
      for (const t of m.coveredBy ?? []) {
        const f = fileOfTest.get(t);
        if (f !== undefined) covering.add(f);
      }
      out.push({
        file,
        id: m.id,
        line: m.location.start.line,
        column: m.location.start.column,
        endLine: m.location.end.line,
        endColumn: m.location.end.column,
        start: d.start,
        end: d.end,
        original: d.original,
        replacement: d.replacement,
        name: nameMutant(d, source, described),
        tests: covering.size > 0 ? [...covering].sort() : [...options.allTests],
        ...(m.statusReason !== undefined ? { strykerReason: m.statusReason } : {}),
        ...(listed !== undefined ? { listed } : {}),
      });
    }
  }
  return out;
};

/**
 * Why `current` (the file as it is now) no longer has the mutant's original code at its
 * line and column, or undefined when it still does.
 */
export const staleBecause = (current: string, c: Candidate): string | undefined => {
  const start = offsetOf(current, c.line, c.column);
  const end = offsetOf(current, c.endLine, c.endColumn);
  const now = start < 0 || end < start ? undefined : current.slice(start, end);
  if (now === c.original) return undefined;
  const show = (s: string): string => JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s);
  return now === undefined
    ? `the file is shorter now than at the run (no line ${c.endLine})`
    : `the code there is now ${show(now)}, the run mutated ${show(c.original)}`;
};

/** `source` with the mutant applied: the code from `start` to `end` replaced. */
export const applyMutant = (source: string, start: number, end: number, replacement: string): string =>
  source.slice(0, start) + replacement + source.slice(end);

/** A stable key of a set of test files, to measure each set unmutated once. */
export const testSetKey = (tests: readonly string[]): string => [...tests].sort().join(" ");

// ---------------------------------------------------------------------------------------------
// The limit and the verdict.

export interface LimitRule {
  /** The limit is `factor` times the covering files' unmutated time ... */
  readonly factor: number;
  /** ... but at least this. */
  readonly minMs: number;
}

export const DEFAULT_LIMIT: LimitRule = { factor: 10, minMs: 60_000 };

export const limitMs = (baselineMs: number, rule: LimitRule): number =>
  Math.max(rule.minMs, Math.ceil(rule.factor * baselineMs));

/** The first failing test of a vitest run, from its JSON report. */
export interface FailedTest {
  readonly file: string;
  readonly name: string;
  /** The test's own duration (ms), when the report gives one. */
  readonly ms?: number;
}

/** How one vitest run of the covering files ended. */
export type RunOutcome =
  /**
   * Still running at the limit: its process group was killed. `busy`: the share of one core
   * its processes used over the last quarter of the limit (near 1: a loop spins; near 0: a
   * test waits for something that never comes), where it could be measured.
   */
  | { readonly kind: "limit"; readonly ms: number; readonly limitMs: number; readonly busy?: number }
  | {
      readonly kind: "exit";
      readonly ms: number;
      readonly code: number | null;
      readonly signal: string | null;
      readonly failed: FailedTest | undefined;
      /** The end of vitest's stderr, for a failure without a failed test. */
      readonly stderrTail: string;
    };

export type Verdict =
  | { readonly kind: "hangs"; readonly limitMs: number; readonly busy?: number }
  | {
      readonly kind: "killed";
      readonly ms: number;
      /** The failed test, or what else ended the run (an error outside tests, a signal). */
      readonly by: FailedTest | { readonly error: string };
    }
  | { readonly kind: "not-detected"; readonly ms: number };

export const classify = (o: RunOutcome): Verdict => {
  if (o.kind === "limit")
    return { kind: "hangs", limitMs: o.limitMs, ...(o.busy !== undefined ? { busy: o.busy } : {}) };
  if (o.code === 0 && o.signal === null) return { kind: "not-detected", ms: o.ms };
  if (o.failed !== undefined) return { kind: "killed", ms: o.ms, by: o.failed };
  const tail = o.stderrTail.trim().split("\n").slice(-3).join(" | ").slice(0, 300);
  const how = o.signal !== null ? `vitest ended by ${o.signal}` : `vitest exited ${o.code ?? "?"}`;
  return {
    kind: "killed",
    ms: o.ms,
    by: { error: `${how} with no failed test${tail === "" ? "" : `: ${tail}`}` },
  };
};

/** The first failed test (or failed file) of a vitest JSON report (`--reporter=json`). */
export const firstFailure = (json: unknown, root: string): FailedTest | undefined => {
  interface Assertion {
    readonly status?: string;
    readonly fullName?: string;
    readonly duration?: number | null;
  }
  interface FileResult {
    readonly name?: string;
    readonly status?: string;
    readonly message?: string;
    readonly assertionResults?: readonly Assertion[];
  }
  const results = (json as { testResults?: readonly FileResult[] } | null)?.testResults ?? [];
  const rel = (p: string): string => (p.startsWith(`${root}/`) ? p.slice(root.length + 1) : p);
  for (const r of results) {
    const failed = (r.assertionResults ?? []).find((a) => a.status === "failed");
    if (failed !== undefined)
      return {
        file: rel(r.name ?? "?"),
        name: failed.fullName ?? "?",
        ...(typeof failed.duration === "number" ? { ms: failed.duration } : {}),
      };
  }
  for (const r of results)
    if (r.status === "failed")
      return { file: rel(r.name ?? "?"), name: `(the file failed: ${(r.message ?? "").slice(0, 200)})` };
  return undefined;
};

// ---------------------------------------------------------------------------------------------
// Ready-to-review groups.

export interface Rechecked {
  readonly candidate: Candidate;
  readonly verdict: Verdict;
  /** The covering files' unmutated time in the same run. */
  readonly baselineMs: number;
  readonly limitMs: number;
  /** The FC_SEED it ran with (its subject's mutation run's). */
  readonly seed: number;
}

export interface RecheckContext {
  /** The command that re-checks them, for the reason. */
  readonly command: string;
  readonly commit: string;
  readonly rule: LimitRule;
}

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** How busy a hung run was, for the reasons and the progress lines. */
export const busyText = (busy: number | undefined): string =>
  busy === undefined
    ? ""
    : `, ${Math.round(100 * busy)}% of a core in its last quarter${busy < 0.05 ? ": waiting, not spinning" : ""}`;

const describeOne = (r: Rechecked): string => {
  const c = r.candidate;
  const what = `${c.name.in} ${c.name.original} -> ${c.name.replacement} at ${c.line}:${c.column}`;
  const base = `unmutated ${secs(r.baselineMs)}`;
  const v = r.verdict;
  switch (v.kind) {
    case "hangs":
      return `${what} (${c.tests.join(", ")}: ${base}, still running when killed at ${secs(v.limitMs)}${busyText(v.busy)})`;
    case "killed":
      return "error" in v.by
        ? `${what} (${v.by.error}, after ${secs(v.ms)}; ${base})`
        : `${what} (${v.by.file} '${v.by.name}' failed${v.by.ms === undefined ? "" : ` in ${Math.round(v.by.ms)} ms`}, run ended at ${secs(v.ms)} of a ${secs(r.limitMs)} limit; ${base})`;
    case "not-detected":
      return `${what} (${c.tests.join(", ")}: all pass in ${secs(v.ms)}; ${base})`;
  }
};

const howChecked = (ctx: RecheckContext, seed: number): string =>
  `\`${ctx.command}\` at ${ctx.commit}: the mutant applied alone to a copy of the tree, the test files that cover it ` +
  `run by \`vitest run --maxWorkers=1 --bail=1\` with FC_SEED=${seed}, limit max(${secs(ctx.rule.minMs)}, ${ctx.rule.factor}x the same files unmutated in the same run)`;

const HEADS = {
  hangs: (how: string) => `Really hangs (rechecked by ${how}; process group killed at the limit): `,
  killed: (how: string) =>
    `Does not hang; killed in bounded time (rechecked by ${how}; Stryker ran out of time): `,
  "not-detected": (how: string) =>
    `NOT DETECTED (rechecked by ${how}): every covering test passes with the mutant, so it is a survivor Stryker hid behind a timeout; kill it with a test or list it in equivalents.json with a reason: `,
} as const;

/**
 * The verdicts as groups in checked-timeouts.json's format, one per file and verdict (files in
 * order of first appearance; hangs, then killed, then not detected), each reason stating how
 * it was checked and every mutant's figures. `checked` are the ones that may be recorded.
 */
export const groupVerdicts = (
  results: readonly Rechecked[],
  ctx: RecheckContext,
): { readonly checked: readonly EquivalentGroup[]; readonly notDetected: readonly EquivalentGroup[] } => {
  const files = [...new Set(results.map((r) => r.candidate.file))];
  const group = (file: string, kind: Verdict["kind"]): EquivalentGroup[] => {
    const of = results.filter((r) => r.candidate.file === file && r.verdict.kind === kind);
    return of.length === 0
      ? []
      : [
          {
            file,
            reason: HEADS[kind](howChecked(ctx, of[0]?.seed ?? 1)) + of.map(describeOne).join("; ") + ".",
            mutants: of.map((r) => r.candidate.name),
          },
        ];
  };
  const checked = files.flatMap((file) => [...group(file, "hangs"), ...group(file, "killed")]);
  return { checked, notDetected: files.flatMap((file) => group(file, "not-detected")) };
};

/** `existing` (checked-timeouts.json) with `groups` appended, leaving out mutants named there already. */
export const appendGroups = (
  existing: readonly EquivalentGroup[],
  groups: readonly EquivalentGroup[],
): readonly EquivalentGroup[] => {
  const key = (file: string, m: MutantName): string =>
    JSON.stringify([file, m.in, m.mutator, m.original, m.replacement, m.before ?? null, m.after ?? null]);
  const named = new Set(existing.flatMap((g) => g.mutants.map((m) => key(g.file, m))));
  const fresh = groups
    .map((g) => ({ ...g, mutants: g.mutants.filter((m) => !named.has(key(g.file, m))) }))
    .filter((g) => g.mutants.length > 0);
  return [...existing, ...fresh];
};
