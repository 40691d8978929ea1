/**
 * `npm run test:deep`: every property at 100x its default run count (FC_SCALE, overridable),
 * then reports/properties.json with each property's runs, seed, status and counterexample.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { PropertyRecord } from "../properties/harness.ts";
import { reportsDir, resultsDir, root } from "../lib/paths.ts";

const scale = process.env["FC_SCALE"] ?? "100";
rmSync(resultsDir, { recursive: true, force: true });
mkdirSync(resultsDir, { recursive: true });
console.log(`test:deep: properties at FC_SCALE=${scale}`);
const res = spawnSync(
  join(root, "node_modules", ".bin", "vitest"),
  [
    "run",
    "properties",
    // At 100x a property may run for many minutes: the gate's per-test limit does not apply.
    "--testTimeout=7200000",
    ...process.argv.slice(2),
  ],
  {
    cwd: root,
    stdio: "inherit",
    env: { ...process.env, FC_SCALE: scale },
  },
);
const records: PropertyRecord[] = [];
for (const f of readdirSync(resultsDir)) {
  if (!f.startsWith("properties-")) continue;
  for (const line of readFileSync(join(resultsDir, f), "utf8").split("\n")) {
    if (line.trim() !== "") records.push(JSON.parse(line) as PropertyRecord);
  }
}
records.sort((a, b) => a.name.localeCompare(b.name));
const failed = records.filter((r) => r.status === "failed");
writeFileSync(
  join(reportsDir, "properties.json"),
  JSON.stringify({ date: new Date().toISOString(), scale: Number(scale), properties: records }, null, 2) +
    "\n",
);
console.log(`test:deep: ${records.length} properties, ${failed.length} failed -> reports/properties.json`);
// A property killed by a time limit or a crash leaves no record: say so.
if (res.status !== 0 && failed.length === 0)
  console.log(`test:deep: vitest exited ${res.status ?? res.signal}; see its output above`);
for (const f of failed)
  console.log(`  FAILED ${f.name}: seed ${f.seed} path ${f.path ?? "?"}\n    ${f.counterexample ?? ""}`);
process.exit(res.status === 0 && failed.length === 0 ? 0 : 1);
