/**
 * The conformance front door: `npx tsx sim conform ...` and `npx tsx sim vectors ...`
 * dispatch here (conformance/main.ts runs them without the simulator).
 */
import { resolve } from "node:path";
import type { Level } from "./cases/types.ts";
import { LEVELS } from "./cases/types.ts";
import { conform, runMutants, selectCases } from "./conform.ts";
import { terminalReport, writeReport, killCount, mutantLines, counts } from "./report.ts";
import { allCases, referenceCommand, repoRoot } from "./suite.ts";
import { DEFAULT_VECTOR_SEED, generateVectors } from "./vectors.ts";
import { MUTANTS } from "./mutants.ts";
import {
  EXIT_USAGE,
  UsageError,
  choice,
  integer,
  nonEmpty,
  parseCommand,
  runWithUsage,
  seed as parseSeed,
  writableDir,
  type CommandSpec,
  type Parsed,
} from "../scripts/args.ts";

export const CONFORM_HELP = `usage: tsx sim conform --impl "<command>" [options]
       tsx sim conform --reference [--mutant <id>] [options]
       tsx sim conform --mutants [--runs N] [--parallel N]

Runs the conformance suite against a program that speaks the protocol of
docs/conformance-protocol.md on its stdin/stdout.

  --impl "<command>"   start the implementation under test with this shell command
  --reference          test the in-repo reference adapter over impl/
  --mutant <id>        with --reference: one of the mutant adapters (${MUTANTS.length} known)
  --mutants            run the vectors against every mutant adapter; prints the kill count
  --vectors DIR        replay a vectors directory (from \`tsx sim vectors --out DIR\`)
                       instead of drawing random inputs
  --runs N             property runs per case (default: each case's own); with --mutants,
                       random vector runs per case (default 20)
  --seed N             fast-check seed (printed in the report; replays a run)
  --only TEXT          only cases whose id or a rule id contains TEXT
  --level L            only cases of level must | safety | profile
  --timeout MS         per-request timeout (default 5000); a request past it fails its case
  --report DIR         where to write the report (default reports/conformance)
  --no-report          print only
  --parallel N         mutants checked at once (default 4)
  --full               with --mutants: run every case against every mutant (default: stop
                       at the first case that kills it, own subject's cases first)
  -h, --help           this text

Exit status: 0 when nothing failed (skipped cases are fine), 1 when a case failed or a
mutant survived, 2 on a usage or setup error.`;

export const VECTORS_HELP = `usage: tsx sim vectors --out DIR [--runs N] [--seed N] [--only TEXT] [--level L]

Writes deterministic request / expected-response files for every conformance case:
DIR/manifest.json and one DIR/<case>.jsonl per case (format in docs/conformance-protocol.md).
Replay them with \`tsx sim conform --vectors DIR --impl "<command>"\`, or with any program
that can send a line, read a line and compare JSON.

  --out DIR      the directory to write (created; existing case files are replaced)
  --runs N       random runs per case besides its fixed examples (default 20)
  --seed N       the seed the runs are drawn from (default ${DEFAULT_VECTOR_SEED}); same seed, same files
  --only TEXT    only cases whose id or a rule id contains TEXT
  --level L      only cases of level must | safety | profile
  -h, --help     this text`;

const CONFORM_SPEC = (prog: string): CommandSpec => ({
  name: `${prog} conform`,
  help: CONFORM_HELP,
  flags: {
    impl: { kind: "string" },
    mutant: { kind: "string" },
    vectors: { kind: "string" },
    runs: { kind: "string" },
    seed: { kind: "string" },
    only: { kind: "string" },
    level: { kind: "string" },
    timeout: { kind: "string" },
    report: { kind: "string" },
    parallel: { kind: "string" },
    reference: { kind: "boolean" },
    mutants: { kind: "boolean" },
    "no-report": { kind: "boolean" },
    full: { kind: "boolean" },
  },
});

const VECTORS_SPEC = (prog: string): CommandSpec => ({
  name: `${prog} vectors`,
  help: VECTORS_HELP,
  flags: {
    out: { kind: "string" },
    runs: { kind: "string" },
    seed: { kind: "string" },
    only: { kind: "string" },
    level: { kind: "string" },
  },
});

/** `f(flag, value)` when the flag was given. */
const opt = <T>(p: Parsed, name: string, f: (flag: string, raw: string) => T): T | undefined => {
  const v = p.string(name);
  return v === undefined ? undefined : f(`--${name}`, v);
};

const count = (flag: string, raw: string): number => integer(flag, raw, 0, Number.MAX_SAFE_INTEGER);
const positive = (flag: string, raw: string): number => integer(flag, raw, 1, Number.MAX_SAFE_INTEGER);
const level = (flag: string, raw: string): Level => choice(flag, raw, LEVELS);
const err = (line: string): void => console.error(line);

export async function conformMain(argv: string[], prog = "sim"): Promise<number> {
  const spec = CONFORM_SPEC(prog);
  return runWithUsage(err, spec.name, () => conformBody(spec, argv));
}

async function conformBody(spec: CommandSpec, argv: string[]): Promise<number> {
  const p = parseCommand(spec, argv);
  if (p === "help") {
    console.log(CONFORM_HELP);
    return 0;
  }
  const runs = opt(p, "runs", count);
  // fast-check prints the seed it used; a default below 2^31 prints as given.
  const seed = opt(p, "seed", parseSeed) ?? Math.floor(Math.random() * 0x80000000);
  const timeout = opt(p, "timeout", positive);
  const parallel = opt(p, "parallel", positive);
  const lvl = opt(p, "level", level);
  const only = opt(p, "only", nonEmpty);
  const select = {
    ...(only !== undefined ? { only } : {}),
    ...(lvl !== undefined ? { level: lvl } : {}),
  };
  const reportDir = resolve(opt(p, "report", nonEmpty) ?? `${repoRoot}/reports/conformance`);
  if (!p.bool("no-report")) writableDir("--report", reportDir);
  const log = (line: string): void => console.error(line);

  if (p.bool("mutants")) {
    if (p.has("impl") || p.bool("reference"))
      throw new UsageError("--mutants runs the reference adapter's mutants; drop --impl/--reference");
    const mutants = await runMutants({
      ...select,
      ...(runs !== undefined ? { runs } : {}),
      ...(parallel !== undefined ? { parallel } : {}),
      full: p.bool("full"),
      log,
    });
    console.log(mutantLines(mutants).join("\n"));
    if (!p.bool("no-report")) {
      const ref = await conform({
        command: referenceCommand(),
        cwd: repoRoot,
        vectors: undefined,
        runs: 5,
        ...select,
      });
      if (typeof ref !== "string") console.log(`report: ${writeReport(reportDir, ref, mutants)}/report.md`);
    }
    if (mutants.some((m) => m.status === "error")) return 2;
    return mutants.some((m) => m.status === "survived") ? 1 : 0;
  }

  const impl = opt(p, "impl", nonEmpty);
  const mutant = opt(p, "mutant", nonEmpty);
  if (impl !== undefined && p.bool("reference")) throw new UsageError("give --impl or --reference, not both");
  if (mutant !== undefined && !p.bool("reference")) throw new UsageError("--mutant goes with --reference");
  if (mutant !== undefined && !MUTANTS.some((m) => m.id === mutant))
    throw new UsageError(`unknown mutant ${mutant}; known: ${MUTANTS.map((m) => m.id).join(", ")}`);
  if (impl === undefined && !p.bool("reference"))
    throw new UsageError('--impl "<command>" or --reference is required');
  const command = impl ?? referenceCommand(mutant);
  const vectorsDir = opt(p, "vectors", nonEmpty);
  const result = await conform({
    command,
    ...(impl === undefined ? { cwd: repoRoot } : {}),
    ...(vectorsDir !== undefined ? { vectorsDir: resolve(vectorsDir) } : {}),
    ...(runs !== undefined ? { runs } : {}),
    seed,
    ...(timeout !== undefined ? { timeoutMs: timeout } : {}),
    ...select,
    log,
  });
  if (typeof result === "string") {
    err(`${spec.name}: ${result}`);
    return EXIT_USAGE;
  }
  console.log(terminalReport(result));
  if (!p.bool("no-report")) console.log(`report: ${writeReport(reportDir, result)}/report.md`);
  return counts(result.cases).fail > 0 ? 1 : 0;
}

export async function vectorsMain(argv: string[], prog = "sim"): Promise<number> {
  const spec = VECTORS_SPEC(prog);
  return runWithUsage(err, spec.name, () => vectorsBody(spec, argv));
}

function vectorsBody(spec: CommandSpec, argv: string[]): number {
  const p = parseCommand(spec, argv);
  if (p === "help") {
    console.log(VECTORS_HELP);
    return 0;
  }
  const out = opt(p, "out", nonEmpty);
  if (out === undefined) throw new UsageError("--out DIR is required");
  const runs = opt(p, "runs", count) ?? 20;
  const seed = opt(p, "seed", parseSeed) ?? DEFAULT_VECTOR_SEED;
  const lvl = opt(p, "level", level);
  const only = opt(p, "only", nonEmpty);
  const cases = selectCases(allCases(), {
    ...(only !== undefined ? { only } : {}),
    ...(lvl !== undefined ? { level: lvl } : {}),
  });
  if (cases.length === 0) throw new UsageError("no case matches the selection");
  writableDir("--out", resolve(out));
  const manifest = generateVectors(resolve(out), cases, runs, seed);
  const steps = manifest.cases.reduce((a, c) => a + c.runs, 0);
  console.log(`vectors: ${manifest.cases.length} cases, ${steps} runs written to ${resolve(out)}`);
  return 0;
}

export { killCount };
