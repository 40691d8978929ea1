/**
 * The conformance report: one line per rule id (pass / fail / skipped) for each level, the
 * profile the implementation matches, failing cases with their shrunk request list, and
 * (for the mutant run) the kill count. Printed as a terminal table and written to
 * reports/conformance/<implementation>/ (report.md, results.json, counterexamples/ as a
 * vectors directory that `conform --vectors` replays).
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Level, Profile, Step } from "./cases/types.ts";
import { LEVELS, PROFILES } from "./cases/types.ts";
import { canonical, showOutcome } from "./protocol.ts";
import type { CaseResult, CaseStatus, RunOutcome } from "./runner.ts";
import { writeVectors } from "./vectors.ts";
import { allCases } from "./suite.ts";

export interface RuleLine {
  readonly rule: string;
  readonly level: Level;
  readonly status: CaseStatus;
  readonly cases: readonly string[];
  /** Runs that differed on this rule (at this level), over every case citing it. */
  readonly differed: number;
  /** Runs that checked it with no difference. */
  readonly checked: number;
  readonly note: string;
  /** The smallest counterexample for this rule, and the case it came from. */
  readonly counterexample?: { readonly case: string; readonly run: RunOutcome };
}

export interface SuiteResult {
  readonly implementation: string;
  readonly command: string;
  readonly mode: "properties" | "vectors";
  readonly cases: readonly CaseResult[];
}

export interface MutantResult {
  readonly id: string;
  readonly subject: string;
  readonly source: string;
  readonly bug: string;
  /** "error": the mutant's adapter could not be started, so nothing was tested. */
  readonly status: "killed" | "survived" | "error";
  /** Cases that failed against the mutant. */
  readonly killedBy: readonly string[];
  /** The rule the mutant breaks (conformance/mutants.ts). */
  readonly breaks: string;
  /** "level rule" of every rule that failed against it (MUST/SAFETY kill; profile is a choice). */
  readonly failedRules: readonly string[];
}

/**
 * Rule lines per level: every rule of every case, with the runs that differed on it (a
 * difference is charged to the rules of the step where it showed) and its own smallest
 * counterexample. A rule fails when some run differed on it, passes when some run checked it
 * and none differed, and is skipped when nothing checked it.
 */
export const ruleLines = (cases: readonly CaseResult[]): RuleLine[] => {
  interface Acc {
    level: Level;
    rule: string;
    cases: Set<string>;
    differed: number;
    checked: number;
    cx?: { case: string; run: RunOutcome };
    skipNote: string;
  }
  const map = new Map<string, Acc>();
  const acc = (level: Level, rule: string): Acc => {
    const key = `${level} ${rule}`;
    let e = map.get(key);
    if (e === undefined) {
      e = { level, rule, cases: new Set(), differed: 0, checked: 0, skipNote: "" };
      map.set(key, e);
    }
    return e;
  };
  for (const c of cases) {
    for (const t of c.tallies) {
      const e = acc(t.level, t.rule);
      e.cases.add(c.id);
      e.differed += t.differed;
      e.checked += t.checked;
      const run = t.counterexample;
      if (run !== undefined && (e.cx === undefined || run.failedAt < e.cx.run.failedAt))
        e.cx = { case: c.id, run };
    }
    // Rules the case cites that no run checked at any level: skipped at the case's level.
    for (const r of c.rules) {
      if (c.tallies.some((t) => t.rule === r)) continue;
      const e = acc(c.level, r);
      e.cases.add(c.id);
      if (e.skipNote === "") e.skipNote = c.reason === "" ? "not checked" : c.reason;
    }
  }
  const out: RuleLine[] = [];
  for (const e of map.values()) {
    const status: CaseStatus = e.differed > 0 ? "fail" : e.checked > 0 ? "pass" : "skipped";
    const note =
      status === "fail"
        ? `${e.differed} run${e.differed === 1 ? "" : "s"} differed; smallest in ${e.cx?.case ?? "?"}: ${e.cx?.run.message ?? ""}`
        : status === "skipped"
          ? e.skipNote
          : "";
    out.push({
      rule: e.rule,
      level: e.level,
      status,
      cases: [...e.cases],
      differed: e.differed,
      checked: e.checked,
      note,
      ...(e.cx !== undefined ? { counterexample: e.cx } : {}),
    });
  }
  return out.sort(
    (a, b) => LEVELS.indexOf(a.level) - LEVELS.indexOf(b.level) || a.rule.localeCompare(b.rule),
  );
};

/**
 * The verdict a caller exits on: "fail" when a MUST or SAFETY rule differed, "untested"
 * when no rule was checked at all (everything skipped, or nothing selected), else "pass".
 * Profile rules never fail the verdict: they say which VMM the implementation behaves like.
 */
export const verdict = (cases: readonly CaseResult[]): "pass" | "fail" | "untested" => {
  const lines = ruleLines(cases);
  if (lines.some((l) => l.status === "fail" && l.level !== "profile")) return "fail";
  return lines.some((l) => l.status === "pass" || l.status === "fail") ? "pass" : "untested";
};

/**
 * Ops or rule ids that must not be skipped (`--require`): each names an op some case needing
 * it ran, or a rule some run checked. Returns what was required but skipped.
 */
export const unmetRequirements = (cases: readonly CaseResult[], required: readonly string[]): string[] => {
  const lines = ruleLines(cases);
  return required.filter((x) => {
    const asRule = lines.filter((l) => l.rule === x);
    if (asRule.length > 0) return !asRule.some((l) => l.status !== "skipped");
    const ran = cases.filter((c) => c.ops.includes(x) && c.status !== "skipped");
    return ran.length === 0;
  });
};

/** The exit status of a conform run and the line that explains a non-zero one. */
export const exitStatus = (
  cases: readonly CaseResult[],
  required: readonly string[],
): { code: 0 | 1; message: string } => {
  const v = verdict(cases);
  if (v === "fail") return { code: 1, message: "verdict: a MUST or SAFETY rule failed" };
  if (v === "untested")
    return { code: 1, message: "verdict: nothing was tested (every case or run was skipped)" };
  const unmet = unmetRequirements(cases, required);
  if (unmet.length > 0) return { code: 1, message: `verdict: required but skipped: ${unmet.join(", ")}` };
  return { code: 0, message: "" };
};

/** One line per case: id, level, the ops it needs, the rules it checks (`--list-cases`). */
export const listCases = (
  cases: readonly Pick<CaseResult, "id" | "level" | "ops" | "rules">[] = allCases(),
): string => {
  const w = Math.max(...cases.map((c) => c.id.length));
  return cases
    .map(
      (c) =>
        `${pad(c.id, w)}  ${pad(c.level, 7)}  ops: ${c.ops.join(" ")}\n${" ".repeat(w + 11)}rules: ${c.rules.join(" ")}`,
    )
    .join("\n");
};

export interface ProfileSummary {
  readonly profile: Profile;
  readonly agreed: number;
  readonly total: number;
  readonly departsIn: readonly string[];
}

export const profileSummary = (cases: readonly CaseResult[]): ProfileSummary[] => {
  const prof = cases.filter((c) => c.profiles !== undefined && c.status !== "skipped");
  return PROFILES.map((p) => {
    // Only the cases where this profile says something count for it.
    const mine = prof.filter((c) => c.opined === undefined || c.opined.includes(p));
    const departs = mine.filter((c) => !(c.profiles ?? []).includes(p)).map((c) => c.id);
    return { profile: p, agreed: mine.length - departs.length, total: mine.length, departsIn: departs };
  });
};

/** "matches rust-vmm" / "matches firecracker, rust-vmm" / "matches no profile wholly". */
export const profileVerdict = (cases: readonly CaseResult[]): string => {
  const s = profileSummary(cases);
  if (s.every((p) => p.total === 0)) return "no profile case ran";
  const full = s.filter((p) => p.total > 0 && p.departsIn.length === 0).map((p) => p.profile);
  if (full.length > 0) return `matches ${full.join(", ")}`;
  const best = [...s].sort((a, b) => b.agreed - a.agreed)[0]!;
  return `matches no profile wholly; closest ${best.profile} (${best.agreed}/${best.total})`;
};

export const counts = (cases: readonly CaseResult[]): Record<CaseStatus, number> => ({
  pass: cases.filter((c) => c.status === "pass").length,
  fail: cases.filter((c) => c.status === "fail").length,
  skipped: cases.filter((c) => c.status === "skipped").length,
});

const pad = (s: string, n: number): string => (s.length >= n ? s : s + " ".repeat(n - s.length));
const clip = (s: string, n: number): string => (s.length <= n ? s : s.slice(0, n - 1) + "…");

export const showStep = (s: Step): string =>
  JSON.stringify({
    op: s.op,
    args: s.args,
    ...("outcome" in s.expect
      ? { expect: s.expect.outcome }
      : "safe" in s.expect
        ? { safe: true }
        : { profiles: s.expect.profiles }),
  });

export const terminalReport = (r: SuiteResult, mutants?: readonly MutantResult[]): string => {
  const lines: string[] = [];
  const c = counts(r.cases);
  lines.push(`conformance: ${r.implementation} (${r.mode})`);
  for (const level of LEVELS) {
    const rl = ruleLines(r.cases).filter((l) => l.level === level);
    if (rl.length === 0) continue;
    lines.push("");
    const n = (st: CaseStatus): number => rl.filter((l) => l.status === st).length;
    lines.push(
      `${level.toUpperCase()}  (rules: ${n("pass")} pass, ${n("fail")} fail, ${n("skipped")} skipped)`,
    );
    const w = Math.max(...rl.map((l) => l.rule.length), 4);
    for (const l of rl) lines.push(`  ${pad(l.rule, w)}  ${pad(l.status, 7)}  ${clip(l.note, 100)}`);
  }
  lines.push("");
  lines.push(`profiles: ${profileVerdict(r.cases)}`);
  for (const p of profileSummary(r.cases)) {
    if (p.total === 0) continue;
    lines.push(
      `  ${pad(p.profile, 16)} ${p.agreed}/${p.total}${p.departsIn.length > 0 ? `  departs in ${p.departsIn.join(", ")}` : ""}`,
    );
  }
  for (const l of ruleLines(r.cases).filter((x) => x.counterexample !== undefined)) {
    const cx = l.counterexample!;
    lines.push("");
    lines.push(
      `${l.level === "profile" ? "DIFFERS" : "FAIL"} ${l.level} ${l.rule}: ${l.differed} run${l.differed === 1 ? "" : "s"} differed (smallest in ${cx.case}) ${cx.run.message}`,
    );
    cx.run.steps.slice(0, cx.run.failedAt + 1).forEach((s, i) => {
      const got = cx.run.actual[i];
      const mark = i === cx.run.failedAt ? ">>" : "  ";
      lines.push(
        `  ${mark} ${clip(showStep(s), 160)}${got !== undefined && i === cx.run.failedAt ? `\n     got ${clip(showOutcome(got), 150)}` : ""}`,
      );
    });
  }
  lines.push("");
  lines.push(`cases: ${c.pass} passed, ${c.fail} failed, ${c.skipped} skipped`);
  if (mutants !== undefined) lines.push(...mutantLines(mutants));
  return lines.join("\n");
};

export const killCount = (mutants: readonly MutantResult[]): string => {
  const killed = mutants.filter((m) => m.status === "killed").length;
  const errors = mutants.filter((m) => m.status === "error").length;
  return `mutants killed: ${killed}/${mutants.length}${errors > 0 ? ` (${errors} could not be started: not tested)` : ""}`;
};

export const mutantLines = (mutants: readonly MutantResult[]): string[] => {
  const lines = ["", "MUTANTS"];
  const w = Math.max(...mutants.map((m) => m.id.length));
  for (const m of mutants) {
    const by =
      m.killedBy.length > 0
        ? ` by ${m.killedBy.slice(0, 3).join(", ")}${m.killedBy.length > 3 ? ", …" : ""}`
        : "";
    lines.push(`  ${pad(m.id, w)}  ${pad(m.status, 8)}  ${m.source}${by}`);
  }
  lines.push(killCount(mutants));
  return lines;
};

export const slug = (name: string): string =>
  name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "")
    .slice(0, 60) || "implementation";

export const markdownReport = (r: SuiteResult, mutants?: readonly MutantResult[]): string => {
  const out: string[] = [];
  const c = counts(r.cases);
  out.push(`# Conformance: ${r.implementation}`, "");
  out.push(
    `- command: \`${r.command}\``,
    `- mode: ${r.mode}`,
    `- cases: ${c.pass} passed, ${c.fail} failed, ${c.skipped} skipped`,
  );
  out.push(`- profile: ${profileVerdict(r.cases)}`, "");
  for (const level of LEVELS) {
    const rl = ruleLines(r.cases).filter((l) => l.level === level);
    if (rl.length === 0) continue;
    const n = (st: CaseStatus): number => rl.filter((l) => l.status === st).length;
    out.push(
      `## ${level}`,
      "",
      `rules: ${n("pass")} pass, ${n("fail")} fail, ${n("skipped")} skipped`,
      "",
      "| rule | status | runs differed | runs agreed | cases | note |",
      "| --- | --- | --- | --- | --- | --- |",
    );
    for (const l of rl)
      out.push(
        `| ${l.rule} | ${l.status} | ${l.differed} | ${l.checked} | ${l.cases.join(", ")} | ${l.note.replaceAll("|", "\\|")} |`,
      );
    out.push("");
  }
  const ps = profileSummary(r.cases).filter((p) => p.total > 0);
  if (ps.length > 0) {
    out.push("## Profiles", "", "| profile | agreed | departs in |", "| --- | --- | --- |");
    for (const p of ps) out.push(`| ${p.profile} | ${p.agreed}/${p.total} | ${p.departsIn.join(", ")} |`);
    out.push("");
  }
  const diffs = ruleLines(r.cases).filter((l) => l.counterexample !== undefined);
  if (diffs.length > 0) {
    out.push(
      "## Differences, per rule",
      "",
      'Each rule\'s smallest counterexample. Replay: `npx tsx sim conform --vectors counterexamples --impl "<command>"` (from this folder).',
      "",
    );
    for (const l of diffs) {
      const cx = l.counterexample!;
      const seed = r.cases.find((c) => c.id === cx.case)?.seed;
      out.push(
        `### ${l.level} ${l.rule}`,
        "",
        `${l.differed} run${l.differed === 1 ? "" : "s"} differed, ${l.checked} agreed; smallest in \`${cx.case}\`${seed !== undefined ? ` (seed ${seed})` : ""}: ${cx.run.message}`,
        "",
        "```",
      );
      cx.run.steps.slice(0, cx.run.failedAt + 1).forEach((s, i) => {
        out.push(`${i === cx.run.failedAt ? ">> " : "   "}${showStep(s)}`);
        const got = cx.run.actual[i];
        if (i === cx.run.failedAt && got !== undefined)
          out.push(
            `   got ${canonical(got.ok ? { ok: true, value: got.value } : { ok: false, error: got.error })}`,
          );
      });
      out.push("```", "");
    }
  }
  out.push(
    "## Cases",
    "",
    "| case | level | status | runs | differed | skipped runs | ms | rules |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const x of r.cases)
    out.push(
      `| ${x.id} | ${x.level} | ${x.status} | ${x.runs} | ${x.differed} | ${x.skippedRuns} | ${x.ms} | ${x.rules.join(" ")} |`,
    );
  if (mutants !== undefined) {
    out.push(
      "",
      "## Mutants",
      "",
      `${killCount(mutants)}`,
      "",
      "| mutant | subject | source | status | killed by |",
      "| --- | --- | --- | --- | --- |",
    );
    for (const m of mutants)
      out.push(`| ${m.id} | ${m.subject} | ${m.source} | ${m.status} | ${m.killedBy.join(", ")} |`);
  }
  return out.join("\n") + "\n";
};

/** Writes report.md, results.json and counterexamples/ under dir/<slug>; returns that folder. */
export const writeReport = (dir: string, r: SuiteResult, mutants?: readonly MutantResult[]): string => {
  const folder = join(dir, slug(r.implementation));
  rmSync(folder, { recursive: true, force: true });
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, "report.md"), markdownReport(r, mutants));
  writeFileSync(
    join(folder, "results.json"),
    JSON.stringify(
      {
        implementation: r.implementation,
        command: r.command,
        mode: r.mode,
        counts: counts(r.cases),
        profile: profileVerdict(r.cases),
        verdict: verdict(r.cases),
        rules: ruleLines(r.cases).map((l) => ({
          ...l,
          counterexample:
            l.counterexample === undefined
              ? undefined
              : {
                  case: l.counterexample.case,
                  steps: l.counterexample.run.steps.slice(0, l.counterexample.run.failedAt + 1).map(showStep),
                  got: l.counterexample.run.actual[l.counterexample.run.failedAt],
                },
        })),
        cases: r.cases.map(({ counterexample, tallies, ...c }) => ({
          ...c,
          counterexample: counterexample?.steps.map(showStep),
          rules: tallies.map((t) => ({
            level: t.level,
            rule: t.rule,
            differed: t.differed,
            checked: t.checked,
          })),
        })),
        ...(mutants !== undefined ? { mutants, killCount: killCount(mutants) } : {}),
      },
      null,
      2,
    ) + "\n",
  );
  const diffs = ruleLines(r.cases).filter((l) => l.counterexample !== undefined);
  if (diffs.length > 0) {
    const byId = new Map(r.cases.map((c) => [c.id, c]));
    writeVectors(
      join(folder, "counterexamples"),
      diffs.map((l) => {
        const c = byId.get(l.counterexample!.case)!;
        const run = l.counterexample!.run;
        return {
          meta: {
            id: `${c.id}--${l.level}-${l.rule}`,
            title: `${l.rule} (${l.level}) in ${c.title}`,
            rules: [l.rule],
            level: c.level,
            ops: c.ops,
          },
          runs: [run.steps.slice(0, run.failedAt + 1)],
        };
      }),
      r.cases.find((c) => c.seed !== undefined)?.seed ?? 0,
    );
  }
  return folder;
};
