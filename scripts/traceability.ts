/**
 * Writes reports/traceability.md: every rule id the spec declares (the `RULES` export of
 * each spec/*.ts), the tests and properties that cite it (rule ids in square brackets in a
 * test's or describe's title), and their status. Rules nobody checks are listed as such;
 * ids cited by tests but declared nowhere are listed too (a typo or a missing rule).
 * Input: reports/.results/vitest.json from the gate's test step.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Rule } from "../spec/result.ts";
import { reportsDir, resultsDir, root } from "../lib/paths.ts";

interface Assertion {
  readonly fullName: string;
  readonly status: string;
}
interface VitestJson {
  readonly testResults: readonly { readonly name: string; readonly assertionResults: readonly Assertion[] }[];
}

const ruleIdsIn = (title: string): string[] => {
  const ids: string[] = [];
  for (const m of title.matchAll(/\[([A-Z0-9 -]+)\]/g)) {
    for (const id of (m[1] ?? "").split(/\s+/)) if (/^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$/.test(id)) ids.push(id);
  }
  return ids;
};

export const loadRules = async (): Promise<Rule[]> => {
  const specDir = join(root, "spec");
  const rules: Rule[] = [];
  for (const f of readdirSync(specDir).sort()) {
    if (!f.endsWith(".ts") || f.endsWith(".test.ts")) continue;
    const mod = (await import(pathToFileURL(join(specDir, f)).href)) as { RULES?: readonly Rule[] };
    if (mod.RULES !== undefined) rules.push(...mod.RULES);
  }
  return rules;
};

const main = async (): Promise<number> => {
  const rules = await loadRules();
  const dupes = rules.map((r) => r.id).filter((id, i, all) => all.indexOf(id) !== i);
  const vitestPath = join(resultsDir, "vitest.json");
  if (!existsSync(vitestPath)) {
    console.error(`traceability: ${vitestPath} is missing; run the tests first (npm test)`);
    return 1;
  }
  const report = JSON.parse(readFileSync(vitestPath, "utf8")) as VitestJson;
  const checks = new Map<string, { title: string; file: string; status: string }[]>();
  for (const file of report.testResults) {
    const rel = file.name.startsWith(root) ? file.name.slice(root.length + 1) : file.name;
    for (const a of file.assertionResults) {
      for (const id of new Set(ruleIdsIn(a.fullName))) {
        const list = checks.get(id) ?? [];
        list.push({ title: a.fullName.replace(/\s*\[[A-Z0-9 -]+\]/g, ""), file: rel, status: a.status });
        checks.set(id, list);
      }
    }
  }
  const known = new Set(rules.map((r) => r.id));
  const unchecked = rules.filter((r) => !checks.has(r.id));
  const failing = rules.filter((r) => (checks.get(r.id) ?? []).some((c) => c.status === "failed"));
  const undeclared = [...checks.keys()].filter((id) => !known.has(id)).sort();

  const lines: string[] = [
    "# Rule traceability",
    "",
    `${rules.length} rules; ${rules.length - unchecked.length} checked, ${unchecked.length} with no check, ${failing.length} with a failing check.`,
    "",
    "| rule | source | rule text | checked by | status |",
    "| --- | --- | --- | --- | --- |",
  ];
  const esc = (s: string): string => s.replaceAll("|", "\\|");
  for (const r of rules) {
    const cs = checks.get(r.id) ?? [];
    const status =
      cs.length === 0
        ? "**no check**"
        : cs.some((c) => c.status === "failed")
          ? "**failing**"
          : cs.every((c) => c.status === "passed")
            ? "passed"
            : "partly skipped";
    const by = cs.map((c) => `${esc(c.title)} (${c.file}, ${c.status})`).join("<br>");
    lines.push(`| ${r.id} | ${esc(r.source)} | ${esc(r.text)} | ${by || "—"} | ${status} |`);
  }
  if (undeclared.length > 0) {
    lines.push(
      "",
      "## Ids cited by tests but declared by no spec file",
      "",
      ...undeclared.map((id) => `- ${id}`),
    );
  }
  if (dupes.length > 0) lines.push("", "## Ids declared twice", "", ...dupes.map((id) => `- ${id}`));
  writeFileSync(join(reportsDir, "traceability.md"), lines.join("\n") + "\n");
  console.log(
    `traceability: ${rules.length} rules, ${rules.length - unchecked.length} checked, ${unchecked.length} unchecked, ${failing.length} failing -> reports/traceability.md`,
  );
  if (unchecked.length > 0) console.log(`  no check: ${unchecked.map((r) => r.id).join(", ")}`);
  if (undeclared.length > 0) console.log(`  cited but undeclared: ${undeclared.join(", ")}`);
  // Duplicate or undeclared ids are mistakes in the tree, so they fail the step.
  return dupes.length > 0 || undeclared.length > 0 ? 1 : 0;
};

process.exitCode = await main();
