/**
 * `npx tsx sim <command>`: the simulator's front door.
 *
 *   run <scenario> [--seed N] [--steps N | --duration T] [--faults RATE] [--report DIR] [--json] ...
 *   list, smoke, conform ..., vectors ..., --help everywhere.
 *
 * `main(argv, io)` returns the exit status: 0 passed or skipped, 1 an invariant broke,
 * 2 a usage error.
 */
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Effect } from "effect";
import { replayCommand, runScenario, type RunOptions, type RunResult, type Scenario } from "./engine.ts";
import { reportData, summaryTable, writeReport, type ReportData } from "./report.ts";
import { scenarios, findScenario } from "./scenarios/index.ts";
import { root } from "../scripts/paths.ts";

export interface Io {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  /** Progress (a line that may be redrawn with \r); null when not wanted. */
  readonly progress: ((text: string) => void) | null;
}

export const defaultIo = (): Io => ({
  out: (l) => process.stdout.write(l + "\n"),
  err: (l) => process.stderr.write(l + "\n"),
  progress: process.stderr.isTTY ? (t) => process.stderr.write(`\r${t}\x1b[K`) : null,
});

class UsageError extends Error {}

const MAIN_HELP = `usage: npx tsx sim <command> [options]

commands:
  run <scenario> [options]   run one scenario (see: sim run --help)
  list                       the scenarios, one line each
  smoke                      every scenario briefly with fixed seeds (the gate runs this)
  conform [options]          run the conformance suite against another implementation
  vectors [options]          write deterministic conformance vectors
  vhost-user [options]       serve our net or vsock device to a VMM over vhost-user
  help [command]             this text, or a command's

Every command takes --help.`;

const RUN_HELP = `usage: npx tsx sim run <scenario> [options]

options:
  --seed N          seed of the run (an integer; default: random, printed)
  --steps N         steps to run (default: the scenario's)
  --duration T      virtual time to run instead of steps: 500us, 20ms, 2s
  --faults RATE     fault injection rate in [0, 1] (default: the scenario's; hostile-guest injects)
  --report DIR      write the report under DIR/<scenario>-<seed>/ (default: reports/sim)
  --no-report       write no report
  --no-oracle       do not check invariants against the reference model (faster)
  --json            print the summary as JSON on stdout instead of a table
  --help            this text

Exit status: 0 passed (or skipped, with the reason), 1 an invariant broke, 2 usage error.`;

const LIST_HELP = `usage: npx tsx sim list
Prints each scenario with one line on what it shows.`;

const SMOKE_HELP = `usage: npx tsx sim smoke [--report DIR] [--json]
Runs every scenario for a few steps with fixed seeds and the oracle on; exits 1 if any
invariant broke. Writes reports only with --report.`;

const scenarioNames = (): string => scenarios.map((s) => s.name).join(", ");

interface RunArgs {
  scenario: Scenario;
  seed: number;
  steps: number;
  durationUs: number | undefined;
  faults: number;
  report: string | null;
  oracle: boolean;
  json: boolean;
}

const parseInteger = (flag: string, raw: string | undefined, min: number, max: number): number => {
  if (raw === undefined) throw new UsageError(`${flag} needs a value`);
  if (!/^-?\d+$/.test(raw)) throw new UsageError(`${flag} must be an integer, got ${JSON.stringify(raw)}`);
  const n = Number(raw);
  if (n < min || n > max) throw new UsageError(`${flag} must be between ${min} and ${max}, got ${raw}`);
  return n;
};

/** `500us`, `20ms`, `2s`, `1.5s` → microseconds. */
export const parseDuration = (raw: string | undefined): number => {
  if (raw === undefined) throw new UsageError("--duration needs a value");
  const m = /^(\d+(?:\.\d+)?)(us|ms|s)$/.exec(raw);
  if (m === null)
    throw new UsageError(`--duration must look like 500us, 20ms or 2s, got ${JSON.stringify(raw)}`);
  const v = Number(m[1]) * (m[2] === "us" ? 1 : m[2] === "ms" ? 1000 : 1_000_000);
  if (!(v >= 1) || v > 3600e6) throw new UsageError(`--duration must be between 1us and 3600s, got ${raw}`);
  return Math.round(v);
};

const RUN_FLAGS = [
  "--seed",
  "--steps",
  "--duration",
  "--faults",
  "--report",
  "--no-report",
  "--no-oracle",
  "--json",
];

const parseRun = (argv: readonly string[]): RunArgs | "help" => {
  let name: string | undefined;
  let seed: number | undefined;
  let steps: number | undefined;
  let durationUs: number | undefined;
  let faults: number | undefined;
  let report: string | null = join(root, "reports", "sim");
  let oracle = true;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] =
      a.startsWith("--") && a.includes("=")
        ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
        : [a, undefined];
    const value = (): string | undefined => (inline !== undefined ? inline : argv[++i]);
    switch (flag) {
      case "--help":
      case "-h":
        return "help";
      case "--seed":
        seed = parseInteger("--seed", value(), 0, 0xffffffff);
        break;
      case "--steps":
        steps = parseInteger("--steps", value(), 1, 1e9);
        break;
      case "--duration":
        durationUs = parseDuration(value());
        break;
      case "--faults": {
        const raw = value();
        const f = Number(raw);
        if (raw === undefined || raw === "" || !Number.isFinite(f) || f < 0 || f > 1)
          throw new UsageError(`--faults must be a rate between 0 and 1, got ${JSON.stringify(raw ?? "")}`);
        faults = f;
        break;
      }
      case "--report": {
        const dir = value();
        if (dir === undefined || dir === "") throw new UsageError("--report needs a directory");
        report = dir;
        break;
      }
      case "--no-report":
        report = null;
        break;
      case "--no-oracle":
        oracle = false;
        break;
      case "--json":
        json = true;
        break;
      default:
        if (a.startsWith("-"))
          throw new UsageError(`unknown option ${a} for run; valid options: ${RUN_FLAGS.join(", ")}, --help`);
        if (name !== undefined) throw new UsageError(`run takes one scenario, got ${name} and ${a}`);
        name = a;
    }
  }
  if (steps !== undefined && durationUs !== undefined)
    throw new UsageError("--steps and --duration are exclusive: give one");
  if (name === undefined) throw new UsageError(`run needs a scenario; valid scenarios: ${scenarioNames()}`);
  const scenario = findScenario(name);
  if (scenario === undefined)
    throw new UsageError(`unknown scenario ${JSON.stringify(name)}; valid scenarios: ${scenarioNames()}`);
  return {
    scenario,
    seed: seed ?? (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) >>> 0,
    steps: steps ?? scenario.defaultSteps,
    durationUs,
    faults: faults ?? scenario.defaultFaults,
    report,
    oracle,
    json,
  };
};

/** Runs one scenario, streaming its trace into `reportDir` when given. */
export const runOne = async (
  scenario: Scenario,
  options: Omit<RunOptions, "traceSink" | "trace" | "onProgress">,
  reportBase: string | null,
  io: Io,
): Promise<{ result: RunResult; data: ReportData; dir: string | null }> => {
  const dir = reportBase === null ? null : join(reportBase, `${scenario.name}-${options.seed}`);
  let fd: number | null = null;
  if (dir !== null) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    fd = openSync(join(dir, "trace.jsonl"), "w");
  }
  const out = fd;
  const wallStart = performance.now();
  let shownProgress = false;
  let lastLine = wallStart;
  const total = options.durationUs ?? options.steps;
  const onProgress = (step: number, ctx: { clock: { nowUs: number } }): void => {
    const now = performance.now();
    const frac = options.durationUs !== undefined ? ctx.clock.nowUs / total : step / total;
    const text = `${scenario.name} seed ${options.seed}: step ${step.toLocaleString("en-US")} (${(
      frac * 100
    ).toFixed(0)}%), ${((now - wallStart) / 1000).toFixed(1)} s`;
    if (io.progress !== null) {
      io.progress(text);
      shownProgress = true;
    } else if (now - wallStart > 5000 && now - lastLine > 5000) {
      // Not a TTY: a plain line every 5 s, only for long runs.
      lastLine = now;
      io.err(text);
    }
  };
  try {
    const result = await Effect.runPromise(
      runScenario(scenario, {
        ...options,
        trace: true,
        traceSink: out === null ? null : (chunk) => void writeSync(out, chunk),
        onProgress,
      }),
    );
    if (shownProgress && io.progress !== null) io.progress("");
    const data = reportData(scenario, result);
    if (dir !== null) writeReport(data, dir);
    return { result, data, dir };
  } finally {
    if (fd !== null) closeSync(fd);
  }
};

const printResult = (io: Io, d: ReportData, dir: string | null, json: boolean): void => {
  if (json) {
    const { series: _series, ...rest } = d;
    io.out(
      JSON.stringify({
        ...rest,
        faults: { injected: d.faults.injected, table: d.faults.table },
        report: dir,
      }),
    );
    return;
  }
  io.out(summaryTable(d));
  if (d.violation !== undefined) {
    io.out(
      `\nINVARIANT BROKEN ${d.violation.rule} at step ${d.violation.step} (seed ${d.seed}): ${d.violation.message}`,
    );
    io.out(`replay: ${d.replay}`);
  }
  if (dir !== null) io.out(`report: ${join(dir, "report.html")}`);
};

const cmdRun = async (argv: readonly string[], io: Io): Promise<number> => {
  const args = parseRun(argv);
  if (args === "help") {
    io.out(RUN_HELP);
    io.out(`\nscenarios: ${scenarioNames()}`);
    return 0;
  }
  const { data, dir, result } = await runOne(
    args.scenario,
    {
      seed: args.seed,
      steps: args.steps,
      ...(args.durationUs !== undefined ? { durationUs: args.durationUs } : {}),
      faults: args.faults,
      oracle: args.oracle,
    },
    args.report,
    io,
  );
  printResult(io, data, dir, args.json);
  return result.status === "violated" ? 1 : 0;
};

const cmdList = (argv: readonly string[], io: Io): number => {
  if (argv.includes("--help") || argv.includes("-h")) {
    io.out(LIST_HELP);
    return 0;
  }
  if (argv.length > 0) throw new UsageError(`list takes no arguments, got ${argv.join(" ")}`);
  const w = Math.max(...scenarios.map((s) => s.name.length));
  for (const s of scenarios) io.out(`${s.name.padEnd(w)}  ${s.summary}`);
  return 0;
};

const cmdSmoke = async (argv: readonly string[], io: Io): Promise<number> => {
  let report: string | null = null;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--help" || a === "-h") {
      io.out(SMOKE_HELP);
      return 0;
    } else if (a === "--report") {
      const d = argv[++i];
      if (d === undefined) throw new UsageError("--report needs a directory");
      report = d;
    } else if (a === "--json") json = true;
    else throw new UsageError(`unknown option ${a} for smoke; valid options: --report DIR, --json, --help`);
  }
  let broken = 0;
  const started = performance.now();
  const rows: string[] = [];
  for (const s of scenarios) {
    for (const seed of s.smoke.seeds) {
      const options = { seed, steps: s.smoke.steps, faults: s.smoke.faults ?? s.defaultFaults, oracle: true };
      const { result, data } = await runOne(s, options, report, { ...io, progress: null });
      if (result.status === "violated") broken++;
      const what =
        result.status === "violated"
          ? `BROKEN ${result.violation?.rule}: ${result.violation?.message}\n    replay: ${replayCommand(s.name, result.options)}`
          : result.status === "skipped"
            ? `skipped: ${result.skipReason}`
            : "passed";
      rows.push(
        `${s.name.padEnd(14)} seed ${String(seed).padEnd(6)} ${String(result.steps).padStart(6)} steps ${(result.wallMs / 1000).toFixed(2).padStart(6)} s  ${what}`,
      );
      if (json)
        io.out(
          JSON.stringify({
            scenario: s.name,
            seed,
            status: data.status,
            violation: data.violation ?? null,
            skipReason: data.skipReason ?? null,
          }),
        );
    }
  }
  if (!json) {
    for (const r of rows) io.out(r);
    io.out(
      `smoke: ${rows.length} runs, ${broken} broken, ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
  }
  return broken > 0 ? 1 : 0;
};

/** conform / vectors live in conformance/cli.ts (another subject); loaded only when asked. */
const cmdConformance = async (
  which: "conform" | "vectors",
  argv: readonly string[],
  io: Io,
): Promise<number> => {
  const path = join(root, "conformance", "cli.ts");
  let mod: { conformMain?: (a: string[]) => Promise<number>; vectorsMain?: (a: string[]) => Promise<number> };
  try {
    mod = (await import(pathToFileURL(path).href)) as typeof mod;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ERR_MODULE_NOT_FOUND" && String((e as Error).message).includes("conformance/cli.ts")) {
      io.err(`sim ${which}: the conformance suite is not installed (conformance/cli.ts is missing)`);
      return 2;
    }
    throw e;
  }
  const fn = which === "conform" ? mod.conformMain : mod.vectorsMain;
  if (fn === undefined) {
    io.err(
      `sim ${which}: conformance/cli.ts does not export ${which}Main; the conformance suite is not installed`,
    );
    return 2;
  }
  return fn([...argv]);
};

const COMMANDS = ["run", "list", "smoke", "conform", "vectors", "vhost-user", "help"];

export const main = async (argv: readonly string[], io: Io = defaultIo()): Promise<number> => {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case undefined:
      case "--help":
      case "-h":
        io.out(MAIN_HELP);
        return cmd === undefined ? 2 : 0;
      case "help": {
        const topic = rest[0];
        // The conformance commands keep their own help text.
        if (topic === "conform" || topic === "vectors") return await cmdConformance(topic, ["--help"], io);
        io.out(
          topic === "run"
            ? RUN_HELP
            : topic === "list"
              ? LIST_HELP
              : topic === "smoke"
                ? SMOKE_HELP
                : MAIN_HELP,
        );
        return 0;
      }
      case "run":
        return await cmdRun(rest, io);
      case "list":
        return cmdList(rest, io);
      case "smoke":
        return await cmdSmoke(rest, io);
      case "conform":
      case "vectors":
        return await cmdConformance(cmd, rest, io);
      case "vhost-user":
        return await (await import("./vhost-user.ts")).vhostUserMain(rest, io);
      default:
        throw new UsageError(
          `unknown command ${JSON.stringify(cmd)}; valid commands: ${COMMANDS.join(", ")}`,
        );
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`sim: ${e.message}`);
      io.err("try: npx tsx sim --help");
      return 2;
    }
    throw e;
  }
};
