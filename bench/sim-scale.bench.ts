/**
 * Long simulator runs scale: peak memory (max RSS of a fresh process) and bytes written to
 * the report per 10^4 steps, for `queue --faults 0.2` (oracle off, so that 10^6 steps fit
 * in minutes; the oracle's own memory does not grow with the run) at 10^4 and 10^5 steps,
 * and 10^6 with SIM_SCALE_MAX=1000000. The baseline is the 10^4-step run in the same
 * process: flat memory means a peak-memory ratio near 1 at every length.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchFigure, BenchSuite } from "./harness.ts";
import { root } from "../lib/paths.ts";

interface Measured {
  readonly steps: number;
  readonly peakMB: number;
  readonly bytes: number;
  readonly faults: number;
  readonly wallS: number;
}

const dirBytes = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce(
    (a, e) => a + (e.isDirectory() ? dirBytes(join(dir, e.name)) : statSync(join(dir, e.name)).size),
    0,
  );

/** One run in a fresh process, so its max RSS is its own. */
const measure = (steps: number): Measured => {
  const report = mkdtempSync(join(tmpdir(), "sim-scale-"));
  try {
    const argv = ["run", "queue", "--seed", "1", "--steps", String(steps), "--faults", "0.2", "--no-oracle"];
    const code = [
      `import { main } from ${JSON.stringify(join(root, "sim", "cli.ts"))};`,
      `const argv = ${JSON.stringify([...argv, "--report", report, "--json"])};`,
      "const code = await main(argv, { out: (l) => process.stdout.write(l + '\\n'), err: (l) => process.stderr.write(l + '\\n'), progress: null });",
      "process.stderr.write('maxrss ' + process.resourceUsage().maxRSS + '\\n');",
      "process.exit(code);",
    ].join("\n");
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
      cwd: root,
      encoding: "utf8",
      maxBuffer: 1 << 26,
    });
    const wallS = (performance.now() - t0) / 1000;
    const rss = /maxrss (\d+)/.exec(r.stderr)?.[1];
    if (r.status !== 0 || rss === undefined)
      throw new Error(`sim ${argv.join(" ")} exited ${r.status}: ${r.stderr.slice(-500)}`);
    const summary = JSON.parse(r.stdout) as { faults: { injected: number } };
    return {
      steps,
      peakMB: Number(rss) / 1024,
      bytes: dirBytes(report),
      faults: summary.faults.injected,
      wallS,
    };
  } finally {
    rmSync(report, { recursive: true, force: true });
  }
};

const suite: BenchSuite = {
  name: "simulator at scale",
  async run(log) {
    const max = Number(process.env["SIM_SCALE_MAX"] ?? 1e5);
    const lengths = [1e4, 1e5, 1e6].filter((n) => n <= max);
    const runs: Measured[] = [];
    for (const steps of lengths) {
      const m = measure(steps);
      runs.push(m);
      log(
        `${steps.toLocaleString("en-US")} steps: peak ${m.peakMB.toFixed(0)} MB, ${(m.bytes / 1e6).toFixed(2)} MB written (${(
          (m.bytes / steps) *
          1e4
        ).toLocaleString("en-US", {
          maximumFractionDigits: 0,
        })} bytes per 10^4 steps), ${m.faults.toLocaleString("en-US")} faults, ${m.wallS.toFixed(0)} s`,
      );
    }
    const base = runs[0]!;
    const figures: BenchFigure[] = [];
    for (const m of runs) {
      const ratio = m.peakMB / base.peakMB;
      figures.push({
        case: `queue --faults 0.2 --no-oracle, ${m.steps.toLocaleString("en-US")} steps: peak memory`,
        value: m.peakMB,
        unit: "MB",
        baseline: { name: "10,000 steps", value: base.peakMB },
        ratio,
        target: { text: "flat: <= 1.5 x the 10^4-step run", met: ratio <= 1.5 },
        notes: `${m.faults.toLocaleString("en-US")} faults; max RSS of a fresh process`,
      });
      figures.push({
        case: `queue --faults 0.2 --no-oracle, ${m.steps.toLocaleString("en-US")} steps: report bytes per 10^4 steps`,
        value: (m.bytes / m.steps) * 1e4,
        unit: "bytes",
        baseline: { name: "10,000 steps", value: base.bytes },
        ratio: ((m.bytes / m.steps) * 1e4) / base.bytes,
        notes: `${(m.bytes / 1e6).toFixed(2)} MB in all (trace.jsonl.gz, summary.json/md, report.html)`,
      });
    }
    return figures;
  },
};

export default suite;
