/**
 * `npm test`: the gate. Type-check, lint, unit tests and properties (default run counts),
 * rule traceability, and a short simulator smoke run. Every step runs even when an earlier
 * one fails, so one CI log shows everything that is wrong; the exit status is non-zero if
 * any step failed. The last line is `gate: N passed, N failed, N skipped` (test counts).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { root, resultsDir } from "../lib/paths.ts";

interface Step {
  readonly name: string;
  readonly cmd: string;
  readonly args: readonly string[];
  readonly when?: () => boolean;
  /** A step still running after this long is killed and fails (a hung test must not hang CI). */
  readonly timeoutMinutes?: number;
}

const bin = (name: string): string => join(root, "node_modules", ".bin", name);
const vitestJson = join(resultsDir, "vitest.json");

const steps: readonly Step[] = [
  { name: "typecheck", cmd: bin("tsc"), args: ["--noEmit", "-p", "tsconfig.json"] },
  { name: "lint", cmd: bin("eslint"), args: ["--max-warnings", "0", "."] },
  { name: "format", cmd: bin("prettier"), args: ["--check", "--log-level", "warn", "."] },
  {
    name: "tests and properties",
    cmd: bin("vitest"),
    args: ["run", "--reporter=default", "--reporter=json", `--outputFile.json=${vitestJson}`],
    timeoutMinutes: 20,
  },
  { name: "traceability", cmd: bin("tsx"), args: [join(root, "scripts", "traceability.ts")] },
  {
    name: "simulator smoke",
    cmd: bin("tsx"),
    args: [join(root, "sim"), "smoke"],
    when: () => existsSync(join(root, "sim", "index.ts")),
  },
];

rmSync(resultsDir, { recursive: true, force: true });
mkdirSync(resultsDir, { recursive: true });

const outcomes: { step: string; status: "passed" | "failed" | "skipped"; seconds: number }[] = [];
for (const step of steps) {
  if (step.when !== undefined && !step.when()) {
    console.log(`\n== ${step.name}: skipped (not present)`);
    outcomes.push({ step: step.name, status: "skipped", seconds: 0 });
    continue;
  }
  console.log(`\n== ${step.name}`);
  const started = Date.now();
  const res = spawnSync(step.cmd, step.args, {
    cwd: root,
    stdio: "inherit",
    env: process.env,
    timeout: (step.timeoutMinutes ?? 5) * 60_000,
    killSignal: "SIGKILL",
  });
  const seconds = (Date.now() - started) / 1000;
  const status = res.status === 0 ? "passed" : "failed";
  if (res.error !== undefined) console.error(`${step.name}: ${res.error.message}`);
  if (res.signal !== null) console.error(`${step.name}: killed by ${res.signal} (time limit or crash)`);
  console.log(`== ${step.name}: ${status} in ${seconds.toFixed(1)} s`);
  outcomes.push({ step: step.name, status, seconds });
}

let passed = 0;
let failed = 0;
let skipped = 0;
if (existsSync(vitestJson)) {
  const report = JSON.parse(readFileSync(vitestJson, "utf8")) as {
    numPassedTests: number;
    numFailedTests: number;
    numPendingTests: number;
    numTodoTests: number;
  };
  passed = report.numPassedTests;
  failed = report.numFailedTests;
  skipped = report.numPendingTests + report.numTodoTests;
}
const stepsFailed = outcomes.filter((o) => o.status === "failed");
mkdirSync(join(root, "reports"), { recursive: true });
writeFileSync(
  join(root, "reports", "gate.json"),
  JSON.stringify({ steps: outcomes, tests: { passed, failed, skipped } }, null, 2) + "\n",
);

console.log("\nGate summary:");
for (const o of outcomes) console.log(`  ${o.status.padEnd(7)} ${o.step} (${o.seconds.toFixed(1)} s)`);
if (stepsFailed.length > 0) console.log(`Failed steps: ${stepsFailed.map((o) => o.step).join(", ")}`);
// A failed non-test step counts as a failure in the closing line too.
const failedLine = failed + (failed === 0 && stepsFailed.length > 0 ? stepsFailed.length : 0);
console.log(`gate: ${passed} passed, ${failedLine} failed, ${skipped} skipped`);
process.exit(stepsFailed.length > 0 ? 1 : 0);
