/**
 * `npx tsx sim <command>`: the simulator's front door.
 *
 *   run <scenario> [--seed N] [--steps N | --duration T] [--faults RATE] [--report DIR] [--json] ...
 *   list, smoke, conform ..., vectors ..., --help everywhere.
 *
 * `main(argv, io)` returns the exit status: 0 passed or skipped, 1 an invariant broke,
 * 2 a usage error.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
// By path, not the `effect` index (start-up; see engine.ts).
import * as Cause from "effect/Cause";
import * as Effect from "effect/Effect";
import * as Exit from "effect/Exit";
import {
  RING_NAMES,
  replayCommand,
  runScenario,
  type RingName,
  type RunOptions,
  type RunResult,
  type Scenario,
} from "./engine.ts";
import { reportData, summaryTable, writeReport, type ReportData } from "./report.ts";
import { loadScenario, loadScenarios, scenarioNames as names } from "./scenarios/registry.ts";
import {
  DEFAULT_TRACE_MODE,
  TRACE_FILES,
  TRACE_MODES,
  openTraceWriter,
  readTraceFile,
  type TraceMode,
  type TraceWriter,
} from "./trace-file.ts";
import { root } from "../lib/paths.ts";
import {
  EXIT_FINDING,
  EXIT_OK,
  EXIT_USAGE,
  UsageError,
  duration,
  integer,
  nonEmpty,
  parseCommand,
  rate,
  runWithUsage,
  seed as parseSeed,
  writableDir,
  choice,
  type CommandSpec,
  type Parsed,
} from "../scripts/args.ts";

export interface Io {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  /** Progress (a line that may be redrawn with \r); null when not wanted. */
  readonly progress: ((text: string) => void) | null;
  /** Aborted by sim/index.ts on SIGINT/SIGTERM/SIGHUP: the running scenario is interrupted. */
  readonly signal?: AbortSignal;
}

/** The run was interrupted by a signal; every finalizer has run by the time this is thrown. */
export class Interrupted extends Error {
  readonly _tag = "Interrupted";
}

export const defaultIo = (): Io => ({
  out: (l) => process.stdout.write(l + "\n"),
  err: (l) => process.stderr.write(l + "\n"),
  progress: process.stderr.isTTY ? (t) => process.stderr.write(`\r${t}\x1b[K`) : null,
});

const RUN_HELP = `usage: npx tsx sim run <scenario> [options]

options:
  --seed N          seed of the run (an integer; default: random, printed)
  --steps N         steps to run (default: the scenario's)
  --duration T      virtual time to run instead of steps: 500us, 20ms, 2s
  --faults RATE     fault injection rate in [0, 1] (default: the scenario's; hostile-guest injects)
  --report DIR      write the report under DIR/<scenario>-<seed>/ (default: reports/sim,
                    where only the newest 20 runs are kept)
  --no-report       write no report
  --trace MODE      the trace in the report: br (trace.bin.br, brotli, default), gz
                    (trace.bin.gz), raw (trace.bin), jsonl (trace.jsonl, decoded as the
                    run goes: slower) or none; the summary has the SHA-256 of the binary
                    stream in every mode; read a binary trace with: npx tsx sim trace FILE
  --no-oracle       do not check invariants against the reference model (faster)
  --ring R          split (default) or packed (VIRTIO_F_RING_PACKED), where the scenario runs on it
  --json            print the summary as JSON on stdout instead of a table
  --help            this text

Exit status: 0 passed (or skipped, with the reason), 1 an invariant broke, 2 usage error.`;

const LIST_HELP = `usage: npx tsx sim list
Prints each scenario with one line on what it shows.`;

const SMOKE_HELP = `usage: npx tsx sim smoke [--report DIR] [--json]
Runs every scenario for a few steps with fixed seeds and the oracle on; exits 1 if any
invariant broke. Writes reports only with --report.`;

const TRACE_HELP = `usage: npx tsx sim trace FILE
Prints a run's binary trace (trace.bin, trace.bin.br or trace.bin.gz under the run's report
directory) as
JSON lines: {"s":step,"t":virtual µs,"k":kind,...}.`;

const TRACE_SPEC: CommandSpec = {
  name: "sim trace",
  help: TRACE_HELP,
  flags: {},
  positionals: { max: 1, what: "file" },
};

const cmdTrace = async (argv: readonly string[], io: Io): Promise<number> => {
  const p = parseCommand(TRACE_SPEC, argv);
  if (p === "help") {
    io.out(TRACE_HELP);
    return EXIT_OK;
  }
  const file = p.positionals[0];
  if (file === undefined)
    throw new UsageError("trace needs a file: a run's trace.bin, trace.bin.br or trace.bin.gz");
  if (!existsSync(file)) throw new UsageError(`no such file: ${file}`);
  try {
    await readTraceFile(file, (lines) => {
      // Stopped (a signal, or the reader of the output went away): read no further.
      if (io.signal?.aborted === true) throw new Interrupted("sim trace stopped");
      for (const l of lines) io.out(l);
    });
  } catch (e) {
    if (e instanceof Interrupted) throw e;
    io.err(`sim trace: ${file}: ${e instanceof Error ? e.message : String(e)}`);
    return EXIT_FINDING;
  }
  return EXIT_OK;
};

const scenarioNames = (): string => names.join(", ");

/** The scenarios `f` holds for, by name (for a usage error: it loads every scenario). */
const namesWhere = async (f: (s: Scenario) => boolean): Promise<string> =>
  (await loadScenarios())
    .filter(f)
    .map((s) => s.name)
    .join(", ");

const RUN_SPEC: CommandSpec = {
  name: "sim run",
  help: RUN_HELP,
  flags: {
    seed: { kind: "string" },
    steps: { kind: "string" },
    duration: { kind: "string" },
    faults: { kind: "string" },
    report: { kind: "string" },
    "no-report": { kind: "boolean" },
    "no-oracle": { kind: "boolean" },
    ring: { kind: "string" },
    json: { kind: "boolean" },
    trace: { kind: "string" },
  },
  positionals: { max: 1, what: "scenario" },
};

const LIST_SPEC: CommandSpec = { name: "sim list", help: LIST_HELP, flags: {} };

const SMOKE_SPEC: CommandSpec = {
  name: "sim smoke",
  help: SMOKE_HELP,
  flags: { report: { kind: "string" }, json: { kind: "boolean" } },
};

interface RunArgs {
  scenario: Scenario;
  seed: number;
  steps: number;
  durationUs: number | undefined;
  faults: number;
  report: string | null;
  /** The report is under the default reports/sim (old runs are pruned there). */
  defaultReport: boolean;
  trace: TraceMode;
  oracle: boolean;
  ring: RingName;
  json: boolean;
}

/** `500us`, `20ms`, `2s`, `1.5s` → microseconds. */
export const parseDuration = (raw: string): number => duration("--duration", raw);

/** `f(flag, value)` when the flag was given. */
const opt = <T>(p: Parsed, name: string, f: (flag: string, raw: string) => T): T | undefined => {
  const v = p.string(name);
  return v === undefined ? undefined : f(`--${name}`, v);
};

const parseRun = async (argv: readonly string[]): Promise<RunArgs | "help"> => {
  const p = parseCommand(RUN_SPEC, argv);
  if (p === "help") return "help";
  const seedArg = opt(p, "seed", parseSeed);
  const steps = opt(p, "steps", (f, v) => integer(f, v, 1, 1e9));
  const durationUs = opt(p, "duration", duration);
  const faults = opt(p, "faults", rate);
  const reportArg = opt(p, "report", nonEmpty);
  if (steps !== undefined && durationUs !== undefined)
    throw new UsageError("--steps and --duration are exclusive: give one");
  if (reportArg !== undefined && p.bool("no-report"))
    throw new UsageError("--report and --no-report are exclusive: give one");
  const name = p.positionals[0];
  if (name === undefined) throw new UsageError(`run needs a scenario; valid scenarios: ${scenarioNames()}`);
  const scenario = await loadScenario(name);
  if (scenario === undefined)
    throw new UsageError(`unknown scenario ${JSON.stringify(name)}; valid scenarios: ${scenarioNames()}`);
  if (faults !== undefined && faults > 0 && scenario.noFaults !== undefined)
    throw new UsageError(
      `${scenario.name} takes no --faults: ${scenario.noFaults}; scenarios that inject: ${await namesWhere(
        (s) => s.noFaults === undefined,
      )}`,
    );
  const ring = opt(p, "ring", (f, v) => choice(f, v, RING_NAMES)) ?? "split";
  const rings = scenario.rings ?? ["split"];
  if (!rings.includes(ring))
    throw new UsageError(
      `${scenario.name} runs on the ${rings.join(" or ")} ring, not ${ring}; scenarios on the ${ring} ring: ${
        (await namesWhere((s) => (s.rings ?? ["split"]).includes(ring))) || "none"
      }`,
    );
  return {
    scenario,
    ring,
    seed: seedArg ?? (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) >>> 0,
    steps: steps ?? scenario.defaultSteps,
    durationUs,
    faults: faults ?? scenario.defaultFaults,
    report: p.bool("no-report") ? null : writableDir("--report", reportArg ?? join(root, "reports", "sim")),
    defaultReport: reportArg === undefined,
    // "plain" (the text trace of earlier versions) is jsonl now.
    trace:
      opt(p, "trace", (f, v) => (v === "plain" ? "jsonl" : choice(f, v, TRACE_MODES))) ?? DEFAULT_TRACE_MODE,
    oracle: !p.bool("no-oracle"),
    json: p.bool("json"),
  };
};

export type { TraceMode } from "./trace-file.ts";

/** Run directories kept under the default reports/sim (the oldest go first). */
export const KEEP_DEFAULT_RUNS = 20;

/**
 * Keeps the newest `keep` run directories (`<scenario>-<seed>`) under `base`, so default
 * runs with random seeds do not fill the disk; other files are left alone.
 */
export const pruneRuns = (base: string, keep: number): string[] => {
  const runs = readdirSync(base, { withFileTypes: true })
    .filter((e) => e.isDirectory() && /^[a-z0-9-]+-\d+$/.test(e.name))
    .map((e) => ({ name: e.name, mtime: statSync(join(base, e.name)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime || a.name.localeCompare(b.name));
  const gone = runs.slice(keep).map((r) => r.name);
  for (const name of gone) rmSync(join(base, name), { recursive: true, force: true });
  return gone;
};

/** Runs one scenario, streaming its trace into `reportDir` when given. */
export const runOne = async (
  scenario: Scenario,
  options: Omit<RunOptions, "traceSink" | "trace" | "onProgress">,
  reportBase: string | null,
  io: Io,
  traceMode: TraceMode = DEFAULT_TRACE_MODE,
): Promise<{ result: RunResult; data: ReportData; dir: string | null }> => {
  const dir = reportBase === null ? null : join(reportBase, `${scenario.name}-${options.seed}`);
  let writer: TraceWriter | null = null;
  if (dir !== null) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    if (traceMode !== "none") writer = openTraceWriter(join(dir, TRACE_FILES[traceMode]), traceMode);
  }
  const sink = writer === null ? null : writer.sink;
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
    if (io.signal?.aborted === true) throw new Interrupted("interrupted before the run started");
    // With a signal, an abort interrupts the scenario's fiber; the promise settles only
    // after every acquireRelease of the scenario has released.
    const exit = await Effect.runPromiseExit(
      runScenario(scenario, {
        ...options,
        trace: true,
        traceSink: sink,
        onProgress,
      }),
      io.signal !== undefined ? { signal: io.signal } : undefined,
    );
    if (Exit.isFailure(exit)) {
      if (Cause.hasInterruptsOnly(exit.cause)) throw new Interrupted(`${scenario.name} interrupted`);
      throw Cause.squash(exit.cause);
    }
    const result = exit.value;
    const w = writer;
    writer = null;
    await w?.close();
    if (shownProgress && io.progress !== null) io.progress("");
    const data = reportData(scenario, result);
    if (dir !== null) writeReport(data, dir);
    return { result, data, dir };
  } finally {
    writer?.abort();
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
  const args = await parseRun(argv);
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
      ring: args.ring,
    },
    args.report,
    io,
    args.trace,
  );
  if (args.report !== null && args.defaultReport) pruneRuns(args.report, KEEP_DEFAULT_RUNS);
  printResult(io, data, dir, args.json);
  return result.status === "violated" ? EXIT_FINDING : EXIT_OK;
};

const cmdList = async (argv: readonly string[], io: Io): Promise<number> => {
  if (parseCommand(LIST_SPEC, argv) === "help") {
    io.out(LIST_HELP);
    return EXIT_OK;
  }
  const scenarios = await loadScenarios();
  const w = Math.max(...scenarios.map((s) => s.name.length));
  for (const s of scenarios) io.out(`${s.name.padEnd(w)}  ${s.summary}`);
  return EXIT_OK;
};

const cmdSmoke = async (argv: readonly string[], io: Io): Promise<number> => {
  const p = parseCommand(SMOKE_SPEC, argv);
  if (p === "help") {
    io.out(SMOKE_HELP);
    return EXIT_OK;
  }
  const report = opt(p, "report", (f, v) => writableDir(f, nonEmpty(f, v))) ?? null;
  const json = p.bool("json");
  const scenarios = await loadScenarios();
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
  return broken > 0 ? EXIT_FINDING : EXIT_OK;
};

type ConformanceModule = {
  conformMain?: (a: string[], prog?: string) => Promise<number>;
  vectorsMain?: (a: string[], prog?: string) => Promise<number>;
};

/** conform / vectors live in conformance/cli.ts (another subject); loaded only when asked. */
const cmdConformance = async (
  which: "conform" | "vectors",
  argv: readonly string[],
  io: Io,
): Promise<number> => {
  const path = join(root, "conformance", "cli.ts");
  let mod: ConformanceModule;
  try {
    mod = (await import(pathToFileURL(path).href)) as ConformanceModule;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ERR_MODULE_NOT_FOUND" && String((e as Error).message).includes("conformance/cli.ts")) {
      io.err(`sim ${which}: the conformance suite is not installed (conformance/cli.ts is missing)`);
      return EXIT_USAGE;
    }
    throw e;
  }
  const fn = which === "conform" ? mod.conformMain : mod.vectorsMain;
  if (fn === undefined) {
    io.err(
      `sim ${which}: conformance/cli.ts does not export ${which}Main; the conformance suite is not installed`,
    );
    return EXIT_USAGE;
  }
  return fn([...argv], "sim");
};

/**
 * The commands, in the order the help lists them. A new command adds one entry here
 * (see scripts/args.ts for its flags): `usage` and `summary` make its line in `sim --help`.
 */
interface SimCommand {
  readonly name: string;
  readonly usage: string;
  readonly summary: string;
  readonly run: (argv: readonly string[], io: Io) => number | Promise<number>;
}

const COMMANDS: readonly SimCommand[] = [
  {
    name: "run",
    usage: "run <scenario> [options]",
    summary: "run one scenario (see: sim run --help)",
    run: (a, io) => cmdRun(a, io),
  },
  { name: "list", usage: "list", summary: "the scenarios, one line each", run: cmdList },
  {
    name: "smoke",
    usage: "smoke",
    summary: "every scenario briefly with fixed seeds (the gate runs this)",
    run: cmdSmoke,
  },
  {
    name: "trace",
    usage: "trace FILE",
    summary: "print a run's binary trace as JSON lines",
    run: cmdTrace,
  },
  {
    name: "conform",
    usage: "conform [options]",
    summary: "run the conformance suite against another implementation",
    run: (a, io) => cmdConformance("conform", a, io),
  },
  {
    name: "vectors",
    usage: "vectors [options]",
    summary: "write deterministic conformance vectors",
    run: (a, io) => cmdConformance("vectors", a, io),
  },
  {
    name: "vhost-user",
    usage: "vhost-user [options]",
    summary: "serve our net or vsock device to a VMM over vhost-user",
    run: async (a, io) => (await import("./vhost-user.ts")).vhostUserMain(a, io),
  },
  {
    name: "help",
    usage: "help [command]",
    summary: "this text, or a command's",
    run: (a, io) => cmdHelp(a, io),
  },
];

const mainHelp = (): string => {
  const w = Math.max(...COMMANDS.map((c) => c.usage.length));
  return [
    "usage: npx tsx sim <command> [options]",
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.usage.padEnd(w)}   ${c.summary}`),
    "",
    "Every command takes --help. Exit status: 0 ok, 1 a finding (an invariant broke, a case",
    "failed), 2 a usage error.",
  ].join("\n");
};

const HELP_SPEC: CommandSpec = {
  name: "sim help",
  help: "usage: npx tsx sim help [command]",
  flags: {},
  positionals: { max: 1, what: "command" },
};

const cmdHelp = async (argv: readonly string[], io: Io): Promise<number> => {
  const p = parseCommand(HELP_SPEC, argv);
  const topic = p === "help" ? undefined : p.positionals[0];
  if (topic === undefined || topic === "help") {
    io.out(mainHelp());
    return EXIT_OK;
  }
  const cmd = COMMANDS.find((c) => c.name === topic);
  if (cmd === undefined)
    throw new UsageError(
      `unknown command ${JSON.stringify(topic)}; valid commands: ${COMMANDS.map((c) => c.name).join(", ")}`,
    );
  return await cmd.run(["--help"], io);
};

export const main = async (argv: readonly string[], io: Io = defaultIo()): Promise<number> => {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "--help" || cmd === "-h") {
    io.out(mainHelp());
    return cmd === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const found = COMMANDS.find((c) => c.name === cmd);
  return runWithUsage(io.err, found === undefined ? "sim" : `sim ${found.name}`, () => {
    if (found === undefined)
      throw new UsageError(
        `unknown command ${JSON.stringify(cmd)}; valid commands: ${COMMANDS.map((c) => c.name).join(", ")}`,
      );
    return found.run(rest, io);
  });
};
