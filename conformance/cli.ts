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

interface Parsed {
  readonly flags: Map<string, string | true>;
  readonly error?: string;
}

const parse = (argv: readonly string[], withValue: readonly string[], bare: readonly string[]): Parsed => {
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-h" || a === "--help") {
      flags.set("help", true);
      continue;
    }
    if (!a.startsWith("--")) return { flags, error: `unexpected argument ${JSON.stringify(a)}` };
    const eq = a.indexOf("=");
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (bare.includes(name)) {
      flags.set(name, true);
      continue;
    }
    if (!withValue.includes(name)) return { flags, error: `unknown option --${name}` };
    const v = eq >= 0 ? a.slice(eq + 1) : argv[++i];
    if (v === undefined) return { flags, error: `--${name} needs a value` };
    flags.set(name, v);
  }
  return { flags };
};

const str = (p: Parsed, name: string): string | undefined => {
  const v = p.flags.get(name);
  return typeof v === "string" ? v : undefined;
};

/** A parse failure, kept apart from valid values (a level is a string too). */
interface Invalid {
  readonly invalid: string;
}
const isInvalid = (v: unknown): v is Invalid => typeof v === "object" && v !== null && "invalid" in v;

const int = (p: Parsed, name: string, min: number): number | undefined | Invalid => {
  const v = str(p, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= min
    ? n
    : { invalid: `--${name} must be an integer >= ${min}, got ${JSON.stringify(v)}` };
};

const level = (p: Parsed): Level | undefined | Invalid => {
  const v = str(p, "level");
  if (v === undefined) return undefined;
  return (LEVELS as readonly string[]).includes(v)
    ? (v as Level)
    : { invalid: `--level must be one of ${LEVELS.join(", ")}` };
};

const usage = (msg: string, help: string): number => {
  console.error(`error: ${msg}\n\n${help}`);
  return 2;
};

export async function conformMain(argv: string[]): Promise<number> {
  const p = parse(
    argv,
    ["impl", "mutant", "vectors", "runs", "seed", "only", "level", "timeout", "report", "parallel"],
    ["reference", "mutants", "no-report", "full"],
  );
  if (p.flags.has("help")) {
    console.log(CONFORM_HELP);
    return 0;
  }
  if (p.error !== undefined) return usage(p.error, CONFORM_HELP);
  const runs = int(p, "runs", 0);
  const seed = int(p, "seed", -(2 ** 31));
  const timeout = int(p, "timeout", 1);
  const parallel = int(p, "parallel", 1);
  const lvl = level(p);
  for (const v of [runs, seed, timeout, parallel, lvl])
    if (isInvalid(v)) return usage(v.invalid, CONFORM_HELP);
  const only = str(p, "only");
  const select = {
    ...(only !== undefined ? { only } : {}),
    ...(typeof lvl === "string" ? { level: lvl as Level } : {}),
  };
  const reportDir = resolve(str(p, "report") ?? `${repoRoot}/reports/conformance`);
  const log = (line: string): void => console.error(line);

  if (p.flags.has("mutants")) {
    if (p.flags.has("impl") || p.flags.has("reference"))
      return usage("--mutants runs the reference adapter's mutants; drop --impl/--reference", CONFORM_HELP);
    const mutants = await runMutants({
      ...select,
      ...(typeof runs === "number" ? { runs } : {}),
      ...(typeof parallel === "number" ? { parallel } : {}),
      full: p.flags.has("full"),
      log,
    });
    console.log(mutantLines(mutants).join("\n"));
    if (!p.flags.has("no-report")) {
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

  const impl = str(p, "impl");
  const mutant = str(p, "mutant");
  if (impl !== undefined && p.flags.has("reference"))
    return usage("give --impl or --reference, not both", CONFORM_HELP);
  if (mutant !== undefined && !p.flags.has("reference"))
    return usage("--mutant goes with --reference", CONFORM_HELP);
  if (mutant !== undefined && !MUTANTS.some((m) => m.id === mutant))
    return usage(`unknown mutant ${mutant}; known: ${MUTANTS.map((m) => m.id).join(", ")}`, CONFORM_HELP);
  if (impl === undefined && !p.flags.has("reference"))
    return usage('--impl "<command>" is required', CONFORM_HELP);
  const command = impl ?? referenceCommand(mutant);
  const vectorsDir = str(p, "vectors");
  const result = await conform({
    command,
    ...(impl === undefined ? { cwd: repoRoot } : {}),
    ...(vectorsDir !== undefined ? { vectorsDir: resolve(vectorsDir) } : {}),
    ...(typeof runs === "number" ? { runs } : {}),
    ...(typeof seed === "number" ? { seed } : {}),
    ...(typeof timeout === "number" ? { timeoutMs: timeout } : {}),
    ...select,
    log,
  });
  if (typeof result === "string") {
    console.error(`error: ${result}`);
    return 2;
  }
  console.log(terminalReport(result));
  if (!p.flags.has("no-report")) console.log(`report: ${writeReport(reportDir, result)}/report.md`);
  return counts(result.cases).fail > 0 ? 1 : 0;
}

export async function vectorsMain(argv: string[]): Promise<number> {
  const p = parse(argv, ["out", "runs", "seed", "only", "level"], []);
  if (p.flags.has("help")) {
    console.log(VECTORS_HELP);
    return 0;
  }
  if (p.error !== undefined) return usage(p.error, VECTORS_HELP);
  const out = str(p, "out");
  if (out === undefined) return usage("--out DIR is required", VECTORS_HELP);
  const runs = int(p, "runs", 0);
  const seed = int(p, "seed", -(2 ** 31));
  const lvl = level(p);
  for (const v of [runs, seed, lvl]) if (isInvalid(v)) return usage(v.invalid, VECTORS_HELP);
  const only = str(p, "only");
  const cases = selectCases(allCases(), {
    ...(only !== undefined ? { only } : {}),
    ...(lvl !== undefined ? { level: lvl as Level } : {}),
  });
  if (cases.length === 0) return usage("no case matches the selection", VECTORS_HELP);
  const manifest = generateVectors(
    resolve(out),
    cases,
    typeof runs === "number" ? runs : 20,
    typeof seed === "number" ? seed : DEFAULT_VECTOR_SEED,
  );
  const steps = manifest.cases.reduce((a, c) => a + c.runs, 0);
  console.log(`vectors: ${manifest.cases.length} cases, ${steps} runs written to ${resolve(out)}`);
  return 0;
}

export { killCount };
