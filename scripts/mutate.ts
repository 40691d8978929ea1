/**
 * `npm run mutate [-- <subject|file>...]`: StrykerJS over impl/ (scripts/mutation/subjects.ts),
 * one subject at a time, each with only the tests that cover it, coverage per test,
 * incremental (a re-run mutates only what changed since the last run; `--force` redoes all).
 * Writes reports/mutation/<subject>/{index.html,mutation.json}, reports/mutation/summary.{md,json}
 * and prints a per-file table; survivors listed in scripts/mutation/equivalents.json count as
 * equivalent, every other survivor is printed with its place.
 * `--recheck` re-checks the report's Timeout mutants instead of running Stryker
 * (scripts/mutation/recheck.ts).
 */
import { spawn } from "node:child_process";
import { availableParallelism } from "node:os";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { integer, parseCommand, seed, UsageError, usageExit, type CommandSpec } from "./args.ts";
import {
  CHECKED_TIMEOUTS_FILE,
  EQUIVALENTS_FILE,
  loadCheckedTimeouts,
  loadEquivalents,
  nameMutant,
  resolve as resolveName,
  type EquivalentGroup,
  type MutantName,
} from "./mutation/equivalents.ts";
import { MUTATED_FILES, SUBJECTS, testFilesOf, type Subject } from "./mutation/subjects.ts";
import { DEFAULT_LIMIT, describeReportMutants, idsNamed, type Report } from "./mutation/recheck-core.ts";
import { recheck } from "./mutation/recheck.ts";
import { reportsDir, root } from "../lib/paths.ts";

const TARGET = 95;
const outDir = join(reportsDir, "mutation");
/** Stryker's sandboxes, one folder per subject so that runs of different subjects can overlap. */
const tmpDirOf = (subject: Subject): string => join(outDir, subject.name, ".stryker-tmp");

const usage = `usage: npm run mutate -- [options] [subject|file ...]

Mutation testing of impl/ with StrykerJS. With no subject, every subject, smallest first.
A file (impl/queue/split-queue.ts) mutates only that file, with its subject's tests.

subjects: ${SUBJECTS.map((s) => s.name).join(", ")}

options:
  --concurrency N  Stryker test-runner processes (default: half the cores, at least 1)
  --force          ignore the incremental results and mutate everything again
  --seed N         fast-check seed for every property (default 1; the same seed gives the same kills)
  --check          exit 1 when a file scores below ${TARGET}% (equivalents left out)
  --list           print the subjects, their files and tests, and exit
  --table          print the table (and survivors) from the last reports without running Stryker
  -h, --help       this text

re-checking timeouts (no Stryker run):
  --recheck        re-check every Timeout mutant of reports/mutation/<subject>/mutation.json
                   (of the subjects or files given) that neither list names yet
                   (scripts/mutation/checked-timeouts.json, equivalents.json): apply it alone to
                   a temporary copy of the working tree (removed on every exit, Ctrl-C included),
                   run only the test files that cover it on one vitest worker with the run's
                   FC_SEED (its run.json; --seed overrides), and say whether it
                     hangs             still running at the limit (process group killed),
                     killed            a test failed in bounded time (which one, when), or
                     NOT DETECTED      every test passed: a survivor Stryker hid behind a
                                       timeout; it needs a test or an equivalents entry.
                   Limit: max(--limit-min, --limit-factor x the same files' unmutated time,
                   measured in this run). Writes the groups, in the lists' format, to
                   reports/mutation/rechecked.json. Exit 1 when one is not detected (and not
                   listed as equivalent). --concurrency: mutants checked at once (default 1).
  --all            also re-check the timeouts the lists name already (to compare)
  --record         append those that hang or are killed to checked-timeouts.json, by file,
                   formatted by prettier (never the not-detected ones, nor one listed already);
                   review the reasons, then commit
  --limit-factor N default ${DEFAULT_LIMIT.factor}
  --limit-min S    seconds, default ${DEFAULT_LIMIT.minMs / 1000}

  npm run mutate -- --recheck iovec                        # iovec's unchecked timeouts
  npm run mutate -- --recheck impl/vsock/packet.ts --record`;

const fail = (e: UsageError): never =>
  process.exit(usageExit((l) => console.error(l), "scripts/mutate.ts", e));

const spec: CommandSpec = {
  name: "scripts/mutate.ts",
  help: usage,
  flags: {
    concurrency: { kind: "string" },
    force: { kind: "boolean" },
    seed: { kind: "string" },
    check: { kind: "boolean" },
    list: { kind: "boolean" },
    table: { kind: "boolean" },
    recheck: { kind: "boolean" },
    all: { kind: "boolean" },
    record: { kind: "boolean" },
    "limit-factor": { kind: "string" },
    "limit-min": { kind: "string" },
  },
  positionals: { max: Number.MAX_SAFE_INTEGER, what: "subjects or files" },
};
const options = (() => {
  try {
    const p = parseCommand(spec, process.argv.slice(2));
    if (p === "help") {
      console.log(usage);
      return process.exit(0);
    }
    const c = p.string("concurrency");
    const recheck = p.bool("recheck");
    for (const f of ["all", "record", "limit-factor", "limit-min"])
      if (p.has(f) && !recheck) throw new UsageError(`--${f} goes with --recheck`);
    const factor = p.string("limit-factor");
    const min = p.string("limit-min");
    return {
      positionals: p.positionals,
      concurrency:
        c !== undefined
          ? integer("--concurrency", c, 1, 256)
          : recheck
            ? 1
            : Math.max(1, Math.floor(availableParallelism() / 2)),
      seed: seed("--seed", p.string("seed") ?? "1"),
      seedGiven: p.has("seed"),
      recheck,
      all: p.bool("all"),
      record: p.bool("record"),
      rule: {
        factor: factor === undefined ? DEFAULT_LIMIT.factor : integer("--limit-factor", factor, 1, 1000),
        minMs: min === undefined ? DEFAULT_LIMIT.minMs : 1000 * integer("--limit-min", min, 1, 86_400),
      },
      force: p.bool("force"),
      check: p.bool("check"),
      list: p.bool("list"),
      table: p.bool("table"),
    };
  } catch (e) {
    if (e instanceof UsageError) return fail(e);
    throw e;
  }
})();
const { concurrency } = options;

/** What to run: each subject with the files of it to mutate. */
interface Job {
  readonly subject: Subject;
  readonly files: readonly string[];
}
const jobs: Job[] = [];
for (const p of options.positionals) {
  const bySubject = SUBJECTS.find((s) => s.name === p);
  const file = relative(root, resolve(p));
  const byFile = SUBJECTS.find((s) => s.files.includes(file));
  const subject = bySubject ?? byFile;
  if (subject === undefined)
    fail(
      new UsageError(
        `unknown subject or file ${JSON.stringify(p)}; subjects: ${SUBJECTS.map((s) => s.name).join(", ")}`,
      ),
    );
  else {
    const files = bySubject !== undefined ? subject.files : [file];
    const prev = jobs.find((j) => j.subject === subject);
    if (prev === undefined) jobs.push({ subject, files });
    else jobs[jobs.indexOf(prev)] = { subject, files: [...new Set([...prev.files, ...files])] };
  }
}
if (jobs.length === 0) for (const subject of SUBJECTS) jobs.push({ subject, files: subject.files });
jobs.sort((a, b) => SUBJECTS.indexOf(a.subject) - SUBJECTS.indexOf(b.subject));

if (options.list) {
  for (const { subject, files } of jobs) {
    console.log(
      `${subject.name}\n  mutate: ${files.join(" ")}\n  tests:  ${testFilesOf(root, subject).join(" ")}`,
    );
  }
  process.exit(0);
}

if (options.recheck) {
  const argv = process.argv.slice(2).filter((a) => a !== "--record");
  process.exit(
    await recheck({
      root,
      jobs,
      seed: options.seedGiven ? options.seed : undefined,
      all: options.all,
      record: options.record,
      concurrency,
      rule: options.rule,
      command: `npm run mutate -- ${argv.join(" ")}`,
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Running Stryker, with everything cleaned up on Ctrl-C.

let child: ReturnType<typeof spawn> | undefined;
let interrupted = false;
const cleanUp = (): void => {
  for (const { subject } of jobs) rmSync(tmpDirOf(subject), { recursive: true, force: true });
};
const onSignal = (signal: NodeJS.Signals): void => {
  if (interrupted) return;
  interrupted = true;
  console.error(`\nmutate: ${signal}: stopping Stryker and removing its sandboxes`);
  // Stryker and its test-runner processes run in their own process group.
  const pid = child?.pid;
  if (pid === undefined) {
    cleanUp();
    process.exit(130);
  }
  try {
    process.kill(-pid, "SIGTERM");
  } catch {
    // already gone
  }
  setTimeout(() => {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // already gone
    }
  }, 5000).unref();
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

/** A Stryker report (mutation.json, incremental.json), as far as merging needs it. */
interface AnyReport {
  files: Record<string, unknown>;
}
const readJson = (path: string): AnyReport | undefined =>
  existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as AnyReport) : undefined;

/**
 * Stryker writes into its report and incremental file only the files it mutated this time;
 * a run of one file of a subject keeps the other files' results from the run before, so the
 * table still lists them and their next run is still incremental.
 */
const keepOtherFiles = (path: string, before: AnyReport | undefined, mutated: readonly string[]): void => {
  const after = readJson(path);
  if (before === undefined || after === undefined) return;
  for (const [file, result] of Object.entries(before.files))
    if (!mutated.includes(file) && !(file in after.files) && MUTATED_FILES.has(file))
      after.files[file] = result;
  writeFileSync(path, JSON.stringify(after));
};

const runStryker = (job: Job): Promise<number> => {
  const dir = join(outDir, job.subject.name);
  mkdirSync(dir, { recursive: true });
  const rel = (p: string): string => relative(root, p);
  // The subject's tests are chosen by a vitest config of their own, not by Stryker's
  // `testFiles`: with `testFiles`, Stryker 9.6 activates static mutants (top-level constants)
  // only after the module has loaded, and reports them as survivors (stryker-js#6144).
  const vitestConfig = join(dir, "vitest.config.mjs");
  writeFileSync(
    vitestConfig,
    `import base from ${JSON.stringify(join(root, "vitest.config.ts"))};\n` +
      `export default { ...base, test: { ...base.test, include: ${JSON.stringify(testFilesOf(root, job.subject))}, ` +
      `setupFiles: [...(base.test.setupFiles ?? []), ${JSON.stringify(join(root, "scripts", "mutation", "fast-check-setup.ts"))}] } };\n`,
  );
  const config = {
    $schema: "../../../node_modules/@stryker-mutator/core/schema/stryker-schema.json",
    packageManager: "npm",
    testRunner: "vitest",
    plugins: ["@stryker-mutator/vitest-runner"],
    vitest: { configFile: vitestConfig, related: false },
    mutate: job.files,
    coverageAnalysis: "perTest",
    concurrency,
    incremental: true,
    incrementalFile: rel(join(dir, "incremental.json")),
    force: options.force,
    reporters: ["html", "json", process.stdout.isTTY ? "progress" : "progress-append-only"],
    htmlReporter: { fileName: rel(join(dir, "index.html")) },
    jsonReporter: { fileName: rel(join(dir, "mutation.json")) },
    tempDirName: rel(tmpDirOf(job.subject)),
    cleanTempDir: true,
    ignorePatterns: ["reports", "docs", ".ci"],
    // A loaded 2-core machine runs the properties slowly; the first (dry) run must not give up.
    dryRunTimeoutMinutes: 60,
    timeoutMS: 10_000,
    thresholds: { high: TARGET, low: 80, break: null },
  };
  const configFile = join(dir, "stryker.config.json");
  writeFileSync(configFile, JSON.stringify(config, null, 2) + "\n");
  // The seed of this run, for `--recheck` (the report does not carry it).
  const fcSeed = process.env["FC_SEED"] ?? String(options.seed);
  writeFileSync(
    join(dir, "run.json"),
    JSON.stringify({ seed: Number(fcSeed), date: new Date().toISOString() }) + "\n",
  );
  return new Promise((done) => {
    child = spawn(join(root, "node_modules", ".bin", "stryker"), ["run", rel(configFile)], {
      cwd: root,
      stdio: "inherit",
      detached: true,
      env: { ...process.env, FC_SEED: fcSeed },
    });
    child.on("error", (e) => {
      console.error(`mutate: cannot start Stryker: ${e.message}`);
      done(1);
    });
    child.on("exit", (code, signal) => done(code ?? (signal !== null ? 128 : 1)));
  });
};

// ---------------------------------------------------------------------------------------------
// The per-file table from Stryker's JSON reports.

interface FileRow {
  readonly file: string;
  mutants: number;
  killed: number;
  timeout: number;
  /** Timeouts not in checked-timeouts.json: not known to hang, so not counted in `adjusted`. */
  unchecked: number;
  survived: number;
  noCoverage: number;
  equivalent: number;
  errors: number;
  /** Stryker's score: detected / (detected + undetected), runtime and compile errors left out. */
  score: number;
  /**
   * Detected / all, with listed equivalents left out and only timeouts checked by hand
   * (checked-timeouts.json) counted as detected: issue 19 counts a timeout as killed only
   * where the mutant really hangs (or a named test kills it in bounded time).
   */
  adjusted: number;
}
interface Survivor {
  readonly where: string;
  readonly mutator: string;
  readonly original: string;
  readonly replacement: string;
  readonly status: string;
}

const short = (code: string): string => {
  const one = code.replace(/\s+/g, " ");
  return one.length > 70 ? `${one.slice(0, 67)}...` : one;
};
const equivalents = loadEquivalents(root);
const checkedTimeouts = loadCheckedTimeouts(root);
const pct = (n: number, d: number): number => (d === 0 ? 100 : Math.floor((10_000 * n) / d) / 100);

const summarise = (
  subjects: readonly Subject[],
): {
  rows: FileRow[];
  survivors: Survivor[];
  timeouts: Survivor[];
  missing: string[];
  /** Ready names (no reason yet) of the survivors, for the list. */
  unlisted: EquivalentGroup[];
  /** Ready names of the unlisted timeouts: one that does not really hang goes to the list too. */
  timedOut: EquivalentGroup[];
  /** Entries of the list that fit no survivor of the report, or several mutants. */
  stale: string[];
} => {
  const rows: FileRow[] = [];
  const survivors: Survivor[] = [];
  const timeouts: Survivor[] = [];
  const missing: string[] = [];
  const unlisted: EquivalentGroup[] = [];
  const timedOut: EquivalentGroup[] = [];
  const stale: string[] = [];
  for (const subject of subjects) {
    const path = join(outDir, subject.name, "mutation.json");
    if (!existsSync(path)) {
      missing.push(subject.name);
      continue;
    }
    const report = JSON.parse(readFileSync(path, "utf8")) as Report;
    for (const [file, { source, mutants }] of Object.entries(report.files).sort(([a], [b]) =>
      a.localeCompare(b),
    )) {
      const row: FileRow = {
        file,
        mutants: mutants.length,
        killed: 0,
        timeout: 0,
        survived: 0,
        noCoverage: 0,
        equivalent: 0,
        errors: 0,
        score: 0,
        adjusted: 0,
        unchecked: 0,
      };
      const described = describeReportMutants(file, source, mutants);
      const statusOf = new Map(mutants.map((m) => [m.id, m.status]));
      // The report's mutants each entry of the list names (the gate keeps each at one).
      const listed = new Set<string>();
      for (const group of equivalents.filter((g) => g.file === file))
        for (const name of group.mutants) {
          const fits = resolveName(name, source, described);
          const status = fits.length === 1 ? statusOf.get(fits[0]?.id ?? "") : undefined;
          const what = `${file} in ${name.in}: ${name.mutator} ${short(name.original)} -> ${short(name.replacement)}`;
          if (fits.length !== 1) stale.push(`${what}: fits ${fits.length} mutants of the report`);
          // A listed Timeout is a mutant that does not hang (the list says it behaves the
          // same): Stryker ran out of time on a loaded machine; it counts as equivalent.
          else if (status !== "Survived" && status !== "NoCoverage" && status !== "Timeout")
            stale.push(`${what}: ${status ?? "?"}`);
          else listed.add(fits[0]?.id ?? "");
        }
      // Timeouts already checked (by hand or --recheck): still detected, no longer listed as to check.
      const checked = idsNamed(checkedTimeouts, file, source, described);
      const names: MutantName[] = [];
      const slowNames: MutantName[] = [];
      for (const [i, m] of mutants.entries()) {
        const d = described[i];
        if (d === undefined) continue;
        const { line, column } = m.location.start;
        const detail = (): Survivor => ({
          where: `${file}:${line}:${column}`,
          mutator: m.mutatorName,
          original: d.original,
          replacement: d.replacement,
          status: m.status,
        });
        if (m.status === "Killed") row.killed++;
        else if (m.status === "Timeout" && listed.has(m.id)) row.equivalent++;
        else if (m.status === "Timeout" && checked.has(m.id)) row.timeout++;
        else if (m.status === "Timeout") {
          row.timeout++;
          row.unchecked++;
          timeouts.push(detail());
          slowNames.push(nameMutant(d, source, described));
        } else if (m.status === "Survived" || m.status === "NoCoverage") {
          if (listed.has(m.id)) row.equivalent++;
          else {
            if (m.status === "Survived") row.survived++;
            else row.noCoverage++;
            survivors.push(detail());
            names.push(nameMutant(d, source, described));
          }
        } else row.errors++;
      }
      if (names.length > 0) unlisted.push({ file, reason: "", mutants: names });
      if (slowNames.length > 0) timedOut.push({ file, reason: "", mutants: slowNames });
      const detected = row.killed + row.timeout;
      row.score = pct(detected, detected + row.survived + row.noCoverage + row.equivalent);
      row.adjusted = pct(detected - row.unchecked, detected + row.survived + row.noCoverage);
      rows.push(row);
    }
  }
  return { rows, survivors, timeouts, missing, unlisted, timedOut, stale };
};

const table = (rows: readonly FileRow[]): string => {
  const head = [
    "file",
    "mutants",
    "killed",
    "timeout",
    "unchecked",
    "survived",
    "no cov",
    "equivalent",
    "errors",
    "score",
    "w/o equiv.",
  ];
  const body = rows.map((r) => [
    r.file,
    String(r.mutants),
    String(r.killed),
    String(r.timeout),
    String(r.unchecked),
    String(r.survived),
    String(r.noCoverage),
    String(r.equivalent),
    String(r.errors),
    `${r.score.toFixed(2)}%`,
    `${r.adjusted.toFixed(2)}%${r.adjusted < TARGET ? " <" : ""}`,
  ]);
  const total = rows.reduce(
    (t, r) => ({
      m: t.m + r.mutants,
      k: t.k + r.killed,
      t: t.t + r.timeout,
      u: t.u + r.unchecked,
      s: t.s + r.survived,
      n: t.n + r.noCoverage,
      e: t.e + r.equivalent,
      x: t.x + r.errors,
    }),
    { m: 0, k: 0, t: 0, u: 0, s: 0, n: 0, e: 0, x: 0 },
  );
  body.push([
    "all files",
    String(total.m),
    String(total.k),
    String(total.t),
    String(total.u),
    String(total.s),
    String(total.n),
    String(total.e),
    String(total.x),
    `${pct(total.k + total.t, total.k + total.t + total.s + total.n + total.e).toFixed(2)}%`,
    `${pct(total.k + total.t - total.u, total.k + total.t + total.s + total.n).toFixed(2)}%`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(" | ")} |`;
  const rule = `| ${widths.map((w, i) => (i === 0 ? "-".repeat(w) : "-".repeat(w - 1) + ":")).join(" | ")} |`;
  return [line(head), rule, ...body.map(line)].join("\n");
};

// ---------------------------------------------------------------------------------------------

const started = Date.now();
let status = 0;
for (const [i, job] of jobs.entries()) {
  if (interrupted || options.table) break;
  const tests = testFilesOf(root, job.subject);
  console.log(
    `\nmutate: [${i + 1}/${jobs.length}] ${job.subject.name}: ${job.files.join(", ")} ` +
      `against ${tests.length} test files, concurrency ${concurrency}`,
  );
  const dir = join(outDir, job.subject.name);
  const kept = ["mutation.json", "incremental.json"].map((f) => ({
    path: join(dir, f),
    before: readJson(join(dir, f)),
  }));
  const code = await runStryker(job);
  child = undefined;
  if (interrupted) break;
  if (code === 0) for (const { path, before } of kept) keepOtherFiles(path, before, job.files);
  if (code !== 0) {
    console.error(`mutate: Stryker failed on ${job.subject.name} (exit ${code}); its output is above`);
    status = 1;
  }
}
cleanUp();
if (interrupted) process.exit(130);

const ran = jobs.map((j) => j.subject);
const { rows, survivors, timeouts, stale, missing } = summarise(ran);
const all = summarise(SUBJECTS);
const minutes = ((Date.now() - started) / 60_000).toFixed(1);
const relOut = relative(root, outDir);
mkdirSync(outDir, { recursive: true });
writeFileSync(
  join(outDir, "summary.json"),
  JSON.stringify(
    { date: new Date().toISOString(), target: TARGET, files: all.rows, survivors: all.survivors },
    null,
    2,
  ) + "\n",
);
writeFileSync(
  join(outDir, "summary.md"),
  `# Mutation scores (${new Date().toISOString()})\n\n${table(all.rows)}\n\n` +
    (all.missing.length > 0 ? `Not run yet: ${all.missing.join(", ")}.\n\n` : "") +
    all.survivors
      .map((s) => `- ${s.where} ${s.mutator} \`${s.original}\` -> \`${s.replacement}\``)
      .join("\n") +
    "\n",
);
// Every survivor not in the list, named as the list names mutants: kill it, or add a reason
// and move it to the list.
writeFileSync(join(outDir, "unlisted.json"), JSON.stringify(all.unlisted, null, 2) + "\n");
writeFileSync(join(outDir, "timeouts.json"), JSON.stringify(all.timedOut, null, 2) + "\n");
writeFileSync(
  join(outDir, "index.html"),
  `<!doctype html><meta charset="utf-8"><title>Mutation reports</title><h1>Mutation reports</h1><ul>` +
    SUBJECTS.filter((s) => !all.missing.includes(s.name))
      .map((s) => `<li><a href="${s.name}/index.html">${s.name}</a></li>`)
      .join("") +
    `</ul><p>Per-file table: <a href="summary.md">summary.md</a></p>\n`,
);

if (survivors.length > 0) {
  console.log(
    `\nSurvivors not in ${EQUIVALENTS_FILE} (named for it in ${relOut}/unlisted.json; kill each or give its reason):`,
  );
  for (const s of survivors)
    console.log(`  ${s.where} ${s.status} ${s.mutator}: ${short(s.original)} -> ${short(s.replacement)}`);
}
if (timeouts.length > 0) {
  console.log(
    `\nTimeouts not in ${CHECKED_TIMEOUTS_FILE} (Stryker's score counts them as killed, "w/o equiv." does not; check each by hand: one that really hangs, or that a test kills in bounded time, goes there with what was found; one that does neither needs a test or a reason in ${EQUIVALENTS_FILE}; named in ${relOut}/timeouts.json):`,
  );
  for (const s of timeouts)
    console.log(`  ${s.where} ${s.mutator}: ${short(s.original)} -> ${short(s.replacement)}`);
}
if (stale.length > 0) {
  console.log(`\nEntries of ${EQUIVALENTS_FILE} that name no survivor of this run:`);
  for (const s of stale) console.log(`  ${s}`);
}
console.log(`\n${table(rows)}`);
console.log(
  `\nmutate: ${options.table ? "table from the last reports" : `${minutes} min`}; reports in ${relOut}/ (index.html, <subject>/index.html, summary.md, summary.json)`,
);
if (missing.length > 0)
  console.log(`mutate: no report yet for ${missing.join(", ")} (run npm run mutate -- ${missing.join(" ")})`);
const below = rows.filter((r) => r.adjusted < TARGET);
if (below.length > 0) console.log(`mutate: below ${TARGET}%: ${below.map((r) => r.file).join(", ")}`);
process.exit(status !== 0 ? status : options.check && below.length > 0 ? 1 : 0);
