/**
 * `npm run bench [-- <filter>...]`: runs every bench/*.bench.ts (or those whose file name
 * contains one of the filters) and writes reports/bench.json and reports/bench.md.
 */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { cpus } from "node:os";
import type { BenchFigure, BenchSuite } from "./harness.ts";
import { reportsDir, root } from "../lib/paths.ts";

const filters = process.argv.slice(2);
const filter = filters[0];
if (filter === "--help" || filter === "-h") {
  console.log(
    "usage: npm run bench [-- <filter>...]\n  runs bench/*.bench.ts whose name contains one of the filters",
  );
  process.exit(0);
}
const dir = join(root, "bench");
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".bench.ts") && (filters.length === 0 || filters.some((x) => f.includes(x))))
  .sort();
if (files.length === 0) {
  console.error(
    `bench: no benchmark matches ${filters.map((x) => JSON.stringify(x)).join(" or ")}; have: ${readdirSync(
      dir,
    )
      .filter((f) => f.endsWith(".bench.ts"))
      .join(", ")}`,
  );
  process.exit(2);
}

const results: { suite: string; figures: readonly BenchFigure[]; error?: string }[] = [];
for (const f of files) {
  const mod = (await import(pathToFileURL(join(dir, f)).href)) as { default: BenchSuite };
  const suite = mod.default;
  console.log(`\n== ${suite.name} (${f})`);
  try {
    const figures = await suite.run((line) => console.log(`  ${line}`));
    results.push({ suite: suite.name, figures });
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    console.error(`  failed: ${error}`);
    results.push({ suite: suite.name, figures: [], error });
  }
}

const fmt = (v: number): string =>
  v >= 1e6 ? `${(v / 1e6).toFixed(2)} M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} k` : v.toFixed(2);
const machine = { node: process.version, cpus: cpus().length, cpu: cpus()[0]?.model ?? "unknown" };
mkdirSync(reportsDir, { recursive: true });
writeFileSync(
  join(reportsDir, "bench.json"),
  JSON.stringify({ date: new Date().toISOString(), machine, results }, null, 2) + "\n",
);
const baseCell = (x: BenchFigure): string =>
  x.baseline === undefined
    ? ""
    : `${x.baseline.name}: ${fmt(x.baseline.value)} ${x.unit}${x.recorded !== undefined ? ` (recorded: ${x.recorded})` : ""}`;
const md: string[] = [
  "# Benchmarks",
  "",
  `Node ${machine.node}, ${machine.cpus} × ${machine.cpu}, ${new Date().toISOString()}`,
  "",
];
/** met, not met, or floor: not met, and the floor measured in the same run misses it too. */
const status = (x: BenchFigure): string =>
  x.target!.met ? "met" : x.target!.floor === true ? "floor" : "**not met**";
// Every figure with a target first, each beside its reference, met, not met or floor.
const targeted = results.flatMap((r) =>
  r.figures.filter((x) => x.target !== undefined).map((x) => ({ r, x })),
);
if (targeted.length > 0) {
  md.push(
    "## Targets",
    "",
    "| issue | suite | case | value | reference | ratio | target | met |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const { r, x } of targeted)
    md.push(
      `| ${x.issue ?? ""} | ${r.suite} | ${x.case} | ${fmt(x.value)} ${x.unit} | ${baseCell(x)} | ${
        x.ratio === undefined ? "" : x.ratio.toFixed(2)
      } | ${x.target!.text} | ${status(x)} |`,
    );
  md.push("", "## All figures", "");
}
md.push("| suite | case | value | baseline | ratio | target |", "| --- | --- | --- | --- | --- | --- |");
for (const r of results) {
  if (r.error !== undefined) md.push(`| ${r.suite} | **failed** | ${r.error} | | | |`);
  for (const x of r.figures) {
    const ratio = x.ratio === undefined ? "" : x.ratio.toFixed(2);
    const target = x.target === undefined ? "" : `${x.target.text}: ${status(x)}`;
    md.push(`| ${r.suite} | ${x.case} | ${fmt(x.value)} ${x.unit} | ${baseCell(x)} | ${ratio} | ${target} |`);
  }
}
const notes = results.flatMap((r) => r.figures.filter((x) => x.notes !== undefined).map((x) => ({ r, x })));
if (notes.length > 0) {
  md.push("", "## Notes", "");
  for (const { r, x } of notes) md.push(`- ${r.suite}, ${x.case}: ${x.notes}`);
}
writeFileSync(join(reportsDir, "bench.md"), md.join("\n") + "\n");
console.log(`\nbench: wrote reports/bench.json and reports/bench.md`);
process.exitCode = results.some((r) => r.error !== undefined) ? 1 : 0;
