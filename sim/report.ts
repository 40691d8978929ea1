/**
 * What a run leaves behind in reports/sim/<scenario>-<seed>/: the trace (trace.bin.br by
 * default, written while the run goes: trace-file.ts), summary.json, summary.md and
 * report.html (one self-contained page).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChartSpec, FaultRecord, RunResult, Scenario, Series, Violation } from "./engine.ts";
import { replayCommand } from "./engine.ts";
import { renderHtml } from "./html.ts";

/** A count with thousands separators. */
const n = (v: number): string => v.toLocaleString("en-US");

export interface ReportData {
  readonly scenario: string;
  readonly summaryLine: string;
  readonly seed: number;
  readonly status: RunResult["status"];
  readonly skipReason?: string;
  readonly violation?: Violation;
  readonly replay: string;
  readonly options: RunResult["options"];
  readonly steps: number;
  readonly virtualUs: number;
  readonly wallMs: number;
  readonly facts: Readonly<Record<string, string | number | boolean>>;
  readonly notes: readonly string[];
  readonly totals: readonly { readonly name: string; readonly label: string; readonly value: number }[];
  readonly faults: {
    readonly injected: number;
    readonly table: Record<string, Record<string, number>>;
    /** The first few faults of each kind (FaultLog.EXAMPLES_PER_KIND); the trace has all. */
    readonly examples: readonly FaultRecord[];
    /** Why the fault chart is empty (null when faults were injected). */
    readonly none: string | null;
  };
  readonly traceEvents: number;
  readonly traceSha256: string;
  readonly charts: readonly ChartSpec[];
  readonly series: Series;
}

/** Why a run has no faults: advice to use --faults only where it was not given and applies. */
const noFaultsReason = (scenario: Scenario, r: RunResult): string | null => {
  if (r.ctx.faults.count > 0) return null;
  if (scenario.noFaults !== undefined) return `${scenario.name} injects no faults: ${scenario.noFaults}.`;
  if (r.options.faults > 0)
    return `No fault was injected at rate ${r.options.faults}: no opportunity came up in ${r.steps.toLocaleString("en-US")} steps.`;
  return "No faults injected in this run (use --faults RATE).";
};

export const reportData = (scenario: Scenario, r: RunResult): ReportData => {
  const ctx = r.ctx;
  return {
    scenario: r.scenario,
    summaryLine: scenario.summary,
    seed: r.options.seed,
    status: r.status,
    ...(r.skipReason !== undefined ? { skipReason: r.skipReason } : {}),
    ...(r.violation !== undefined ? { violation: r.violation } : {}),
    replay: replayCommand(r.scenario, r.options),
    options: r.options,
    steps: r.steps,
    virtualUs: r.virtualUs,
    wallMs: Math.round(r.wallMs),
    facts: ctx.facts,
    notes: ctx.notes,
    totals: ctx.metrics.list
      .filter((m) => m.kind === "counter")
      .map((m) => ({ name: m.name, label: m.label, value: m.value })),
    faults: {
      injected: ctx.faults.count,
      table: ctx.faults.table(),
      examples: ctx.faults.examples,
      none: noFaultsReason(scenario, r),
    },
    traceEvents: r.traceEvents,
    traceSha256: r.traceSha256,
    charts: scenario.charts,
    series: ctx.metrics.series,
  };
};

export const summaryMarkdown = (d: ReportData): string => {
  const lines: string[] = [
    `# ${d.scenario}, seed ${d.seed}: ${d.status}${d.skipReason !== undefined ? ` (${d.skipReason})` : ""}`,
    "",
    d.summaryLine,
    "",
    `${n(d.steps)} steps, ${(d.virtualUs / 1000).toFixed(1)} ms virtual time, oracle ${
      d.options.oracle ? "on" : "off"
    }, fault rate ${d.options.faults}.`,
    "",
    `Replay: \`${d.replay}\``,
    "",
  ];
  if (d.violation !== undefined) {
    lines.push(
      `**Invariant broken: ${d.violation.rule}** at step ${d.violation.step}: ${d.violation.message}`,
      "",
    );
  }
  lines.push("| total | value |", "| --- | ---: |");
  for (const t of d.totals) lines.push(`| ${t.label} | ${n(t.value)} |`);
  lines.push("");
  if (Object.keys(d.facts).length > 0) {
    lines.push("| run | |", "| --- | --- |");
    for (const [k, v] of Object.entries(d.facts))
      lines.push(`| ${k} | ${typeof v === "number" ? n(v) : String(v)} |`);
    lines.push("");
  }
  const kinds = Object.keys(d.faults.table);
  if (kinds.length > 0) {
    lines.push(
      `## Faults (${n(d.faults.injected)})`,
      "",
      "| kind | outcome | count |",
      "| --- | --- | ---: |",
    );
    for (const k of kinds) {
      for (const [o, c] of Object.entries(d.faults.table[k]!)) lines.push(`| ${k} | ${o} | ${n(c)} |`);
    }
    lines.push("");
  }
  for (const n of d.notes) lines.push(`- ${n}`);
  if (d.notes.length > 0) lines.push("");
  lines.push(`Trace: ${n(d.traceEvents)} events, sha256 ${d.traceSha256}`, "");
  return lines.join("\n");
};

/** summary.json, summary.md and report.html into `dir` (trace.jsonl is already there). */
export const writeReport = (d: ReportData, dir: string): void => {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "summary.json"), JSON.stringify(d, null, 1) + "\n");
  writeFileSync(join(dir, "summary.md"), summaryMarkdown(d));
  writeFileSync(join(dir, "report.html"), renderHtml(d));
};

/** Columns the terminal summary fits in. */
export const TABLE_WIDTH = 100;

/**
 * Words of `text` in lines of at most `width` (a longer word is cut); the text's leading
 * spaces indent every line, continuation lines by two more.
 */
const wrap = (text: string, width: number): string[] => {
  const indent = /^ */.exec(text)![0];
  const lines: string[] = [];
  let cur = "";
  const room = (): number => width - indent.length - (lines.length > 0 ? 2 : 0);
  const push = (line: string): void => {
    lines.push(`${indent}${lines.length > 0 ? "  " : ""}${line}`);
  };
  for (const word of text.slice(indent.length).split(" ")) {
    let w = word;
    while (w.length > room() && room() > 0) {
      if (cur !== "") push(cur);
      cur = "";
      push(w.slice(0, room()));
      w = w.slice(room() + (lines.length === 1 ? 2 : 0));
    }
    if (cur === "") cur = w;
    else if (cur.length + 1 + w.length <= room()) cur += " " + w;
    else {
      push(cur);
      cur = w;
    }
  }
  push(cur);
  return lines;
};

/**
 * The terminal summary table, at most TABLE_WIDTH columns: labels left, values right, a
 * label or value too long for its column wrapped onto the next lines; every count with
 * thousands separators; the run's notes below it.
 */
export const summaryTable = (d: ReportData): string => {
  const rows: [string, string][] = d.totals.map((t) => [t.label, n(t.value)]);
  for (const [k, v] of Object.entries(d.facts)) rows.push([k, typeof v === "number" ? n(v) : String(v)]);
  rows.push(["faults injected", n(d.faults.injected)]);
  for (const k of Object.keys(d.faults.table)) {
    for (const [o, c] of Object.entries(d.faults.table[k]!)) rows.push([`  ${k}: ${o}`, n(c)]);
  }
  rows.push(["steps", n(d.steps)]);
  rows.push(["virtual time", `${n(Math.round(d.virtualUs / 100) / 10)} ms`]);
  rows.push(["wall time", `${(d.wallMs / 1000).toFixed(2)} s`]);
  const v = Math.min(Math.max(...rows.map((r) => r[1].length)), 32);
  const w = Math.min(Math.max(...rows.map((r) => r[0].length)), TABLE_WIDTH - 2 - v);
  const out = wrap(
    `${d.scenario} seed ${d.seed}: ${d.status}${d.skipReason !== undefined ? ` (${d.skipReason})` : ""}`,
    TABLE_WIDTH,
  );
  out.push(`${"".padEnd(w, "-")}  ${"".padEnd(v, "-")}`);
  for (const [a, b] of rows) {
    const label = wrap(a, w);
    const value = wrap(b, v);
    // The value sits on the label's last line; extra value lines follow, right-aligned.
    for (let i = 0; i < label.length - 1; i++) out.push(label[i]!);
    out.push(`${label[label.length - 1]!.padEnd(w)}  ${value[0]!.padStart(v)}`);
    for (const more of value.slice(1)) out.push(`${"".padEnd(w)}  ${more.padStart(v)}`);
  }
  for (const note of d.notes) out.push(...wrap(`note: ${note}`, TABLE_WIDTH));
  return out.join("\n");
};
