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
import type { CaseResult, CaseStatus } from "./runner.ts";
import { writeVectors } from "./vectors.ts";

export interface RuleLine {
  readonly rule: string;
  readonly level: Level;
  readonly status: CaseStatus;
  readonly cases: readonly string[];
  readonly note: string;
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
  readonly status: "killed" | "survived" | "error" | "not done";
  /** Cases that failed against the mutant. */
  readonly killedBy: readonly string[];
}

/** Rule lines per level: a rule fails if any case citing it failed at that level. */
export const ruleLines = (cases: readonly CaseResult[]): RuleLine[] => {
  const map = new Map<string, { level: Level; rule: string; cases: CaseResult[] }>();
  for (const c of cases) {
    for (const r of c.rules) {
      const key = `${c.level} ${r}`;
      const e = map.get(key) ?? { level: c.level, rule: r, cases: [] };
      e.cases.push(c);
      map.set(key, e);
    }
  }
  const out: RuleLine[] = [];
  for (const e of map.values()) {
    const failed = e.cases.filter((c) => c.status === "fail");
    const passed = e.cases.filter((c) => c.status === "pass");
    const status: CaseStatus = failed.length > 0 ? "fail" : passed.length > 0 ? "pass" : "skipped";
    const note =
      status === "fail"
        ? failed.map((c) => `${c.id}: ${c.reason}`).join("; ")
        : status === "skipped"
          ? e.cases[0]!.reason
          : "";
    out.push({ rule: e.rule, level: e.level, status, cases: e.cases.map((c) => c.id), note });
  }
  return out.sort(
    (a, b) => LEVELS.indexOf(a.level) - LEVELS.indexOf(b.level) || a.rule.localeCompare(b.rule),
  );
};

export interface ProfileSummary {
  readonly profile: Profile;
  readonly agreed: number;
  readonly total: number;
  readonly departsIn: readonly string[];
}

export const profileSummary = (cases: readonly CaseResult[]): ProfileSummary[] => {
  const prof = cases.filter((c) => c.level === "profile" && c.status !== "skipped");
  return PROFILES.map((p) => {
    const departs = prof.filter((c) => !(c.profiles ?? []).includes(p)).map((c) => c.id);
    return { profile: p, agreed: prof.length - departs.length, total: prof.length, departsIn: departs };
  });
};

/** "matches rust-vmm" / "matches firecracker, rust-vmm" / "matches no profile wholly". */
export const profileVerdict = (cases: readonly CaseResult[]): string => {
  const s = profileSummary(cases);
  if (s.every((p) => p.total === 0)) return "no profile case ran";
  const full = s.filter((p) => p.departsIn.length === 0).map((p) => p.profile);
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
    ...("outcome" in s.expect ? { expect: s.expect.outcome } : { profiles: s.expect.profiles }),
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
  for (const f of r.cases.filter((x) => x.status === "fail" && x.counterexample !== undefined)) {
    lines.push("");
    lines.push(`FAIL ${f.id} [${f.rules.join(" ")}] ${f.reason}`);
    const cx = f.counterexample!;
    cx.steps.forEach((s, i) => {
      const got = cx.actual[i];
      const mark = i === cx.failedAt ? ">>" : "  ";
      lines.push(
        `  ${mark} ${clip(showStep(s), 160)}${got !== undefined && i === cx.failedAt ? `\n     got ${clip(showOutcome(got), 150)}` : ""}`,
      );
    });
  }
  lines.push("");
  lines.push(`cases: ${c.pass} passed, ${c.fail} failed, ${c.skipped} skipped`);
  if (mutants !== undefined) lines.push(...mutantLines(mutants));
  return lines.join("\n");
};

export const killCount = (mutants: readonly MutantResult[]): string => {
  const done = mutants.filter((m) => m.status !== "not done");
  const killed = done.filter((m) => m.status === "killed").length;
  const notDone = mutants.length - done.length;
  const errors = done.filter((m) => m.status === "error").length;
  return `mutants killed: ${killed}/${done.length}${errors > 0 ? ` (${errors} could not be started: not tested)` : ""}${notDone > 0 ? ` (${notDone} not done: subject not landed)` : ""}`;
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
      "| rule | status | cases | note |",
      "| --- | --- | --- | --- |",
    );
    for (const l of rl)
      out.push(`| ${l.rule} | ${l.status} | ${l.cases.join(", ")} | ${l.note.replaceAll("|", "\\|")} |`);
    out.push("");
  }
  const ps = profileSummary(r.cases).filter((p) => p.total > 0);
  if (ps.length > 0) {
    out.push("## Profiles", "", "| profile | agreed | departs in |", "| --- | --- | --- |");
    for (const p of ps) out.push(`| ${p.profile} | ${p.agreed}/${p.total} | ${p.departsIn.join(", ")} |`);
    out.push("");
  }
  const fails = r.cases.filter((x) => x.status === "fail");
  if (fails.length > 0) {
    out.push(
      "## Failures",
      "",
      'Replay: `npx tsx sim conform --vectors counterexamples --impl "<command>"` (from this folder).',
      "",
    );
    for (const f of fails) {
      out.push(`### ${f.id} [${f.rules.join(" ")}]`, "", f.reason, "");
      if (f.seed !== undefined) out.push(`seed ${f.seed}`, "");
      const cx = f.counterexample;
      if (cx !== undefined) {
        out.push("```");
        cx.steps.forEach((s, i) => {
          out.push(`${i === cx.failedAt ? ">> " : "   "}${showStep(s)}`);
          const got = cx.actual[i];
          if (i === cx.failedAt && got !== undefined)
            out.push(
              `   got ${canonical(got.ok ? { ok: true, value: got.value } : { ok: false, error: got.error })}`,
            );
        });
        out.push("```", "");
      }
    }
  }
  out.push(
    "## Cases",
    "",
    "| case | level | status | runs | ms | rules |",
    "| --- | --- | --- | --- | --- | --- |",
  );
  for (const x of r.cases)
    out.push(`| ${x.id} | ${x.level} | ${x.status} | ${x.runs} | ${x.ms} | ${x.rules.join(" ")} |`);
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
        rules: ruleLines(r.cases),
        cases: r.cases.map((c) => ({ ...c, counterexample: c.counterexample?.steps.map(showStep) })),
        ...(mutants !== undefined ? { mutants, killCount: killCount(mutants) } : {}),
      },
      null,
      2,
    ) + "\n",
  );
  const fails = r.cases.filter((c) => c.status === "fail" && c.counterexample !== undefined);
  if (fails.length > 0) {
    writeVectors(
      join(folder, "counterexamples"),
      fails.map((f) => ({
        meta: { id: f.id, title: f.title, rules: f.rules, level: f.level, ops: f.ops },
        runs: [f.counterexample!.steps.slice(0, f.counterexample!.failedAt + 1)],
      })),
      f0seed(fails),
    );
  }
  return folder;
};

const f0seed = (fails: readonly CaseResult[]): number => fails[0]?.seed ?? 0;
