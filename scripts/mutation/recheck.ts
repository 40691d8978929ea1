/**
 * `npm run mutate -- --recheck [subject|file ...]`: re-checks Stryker's Timeout mutants one by
 * one instead of by hand. Each is applied alone to a copy of the tree (a temporary folder with
 * the tracked and untracked-not-ignored files of the working tree and a node_modules symlink;
 * the working tree is never written), and only the test files that cover it run, on one
 * vitest worker, with the run's fast-check seed and the no-shrinking setup of the mutation
 * run, under a limit of max(60 s, 10x) the same files' unmutated time measured in this run.
 * The verdict: it hangs (still running at the limit; the process group is killed), a test
 * kills it in bounded time (named, with the time), or every test passes (a survivor Stryker
 * hid behind a timeout). Results go to reports/mutation/rechecked.json as groups in
 * checked-timeouts.json's format; `--record` appends the first two kinds there.
 *
 * Every copy is an Effect scope: success, failure or Ctrl-C/SIGTERM (the run's fiber is
 * interrupted) kills the running vitest's process group and removes the folder; a second
 * signal exits at once and the exit hook (sim/linux/exit-cleanup.ts) does the same.
 */
import { execFileSync, spawn } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { performance } from "node:perf_hooks";
import { Effect, Exit, Fiber } from "effect";
import { acquireTempDir } from "../../sim/linux/qemu.ts";
import { registerExitCleanup } from "../../sim/linux/exit-cleanup.ts";
import { CHECKED_TIMEOUTS_FILE, loadCheckedTimeouts, loadEquivalents } from "./equivalents.ts";
import {
  appendGroups,
  busyText,
  applyMutant,
  classify,
  firstFailure,
  groupVerdicts,
  limitMs,
  staleBecause,
  testSetKey,
  timeoutCandidates,
  type Candidate,
  type LimitRule,
  type Rechecked,
  type Report,
  type RunOutcome,
} from "./recheck-core.ts";
import { testFilesOf, type Subject } from "./subjects.ts";

export interface RecheckOptions {
  readonly root: string;
  /** Each subject with the files of it to re-check. */
  readonly jobs: readonly { readonly subject: Subject; readonly files: readonly string[] }[];
  /** --seed when given; otherwise the seed the run recorded (run.json), or 1. */
  readonly seed: number | undefined;
  /** Also the timeouts the lists name already (to compare with what was found by hand). */
  readonly all: boolean;
  readonly record: boolean;
  readonly concurrency: number;
  readonly rule: LimitRule;
  /** The command line, for the reasons. */
  readonly command: string;
}

/** One mutant to run, with its subject's seed. */
interface Work {
  readonly candidate: Candidate;
  readonly seed: number;
}

const RESULT = ".recheck-result.json";
const CONFIG = ".recheck.vitest.config.mjs";
/** The unmutated run of a set of files must end within this, or its mutants are skipped. */
const BASELINE_LIMIT_MS = 30 * 60_000;

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const clock = (ms: number): string => {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
};
const short = (code: string): string => {
  const one = code.replace(/\s+/g, " ");
  return one.length > 50 ? `${one.slice(0, 47)}...` : one;
};
const where = (c: Candidate): string =>
  `${c.file}:${c.line}:${c.column} ${c.name.mutator} ${short(c.original)} -> ${short(c.replacement)} (in ${c.name.in})`;

/** The working tree's tracked and untracked-not-ignored files, copied into `dir`, and node_modules linked. */
const copyTree = (root: string, dir: string): void => {
  const files = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: root,
    encoding: "utf8",
    maxBuffer: 64 << 20,
  })
    .split("\0")
    .filter((f) => f !== "");
  for (const f of new Set(files)) {
    const from = join(root, f);
    if (!existsSync(from)) continue; // deleted in the working tree
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    copyFileSync(from, join(dir, f));
  }
  symlinkSync(realpathSync(join(root, "node_modules")), join(dir, "node_modules"));
};

const COPY_PREFIX = "virtio-lab-recheck-";
/** In each copy: the pid of the recheck that made it. */
const OWNER = ".recheck-owner";

/**
 * Removes the copies left by a recheck that was killed outright (SIGKILL runs no cleanup):
 * those whose owner process is gone.
 */
const sweepOrphanCopies = (): void => {
  for (const name of readdirSync(tmpdir()).filter((n) => n.startsWith(COPY_PREFIX))) {
    const dir = join(tmpdir(), name);
    let owner: number;
    try {
      owner = Number(readFileSync(join(dir, OWNER), "utf8"));
    } catch {
      continue; // being made, or not ours
    }
    let alive = true;
    try {
      process.kill(owner, 0);
    } catch (e) {
      alive = (e as NodeJS.ErrnoException).code === "EPERM";
    }
    if (!alive) {
      console.log(`recheck: removing ${dir}, left by a recheck (pid ${owner}) that was killed`);
      rmSync(dir, { recursive: true, force: true });
    }
  }
};

/** A copy of the tree for one worker, removed when the scope closes. */
const treeCopy = (root: string) =>
  Effect.gen(function* () {
    const dir = yield* acquireTempDir(COPY_PREFIX);
    yield* Effect.sync(() => {
      writeFileSync(join(dir, OWNER), String(process.pid));
      copyTree(root, dir);
    });
    return dir;
  });

/**
 * CPU time (ms) used so far by the processes of process group `pgid` (Linux /proc; undefined
 * elsewhere). Fields after the command's ")" in /proc/<pid>/stat: state, ppid, pgrp, ...,
 * utime and stime (the 12th and 13th), in clock ticks of 1/100 s.
 */
const groupCpuMs = (pgid: number): number | undefined => {
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((p) => /^\d+$/.test(p));
  } catch {
    return undefined;
  }
  let ticks = 0;
  for (const pid of pids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(f[2]) === pgid) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks * 10;
};

/**
 * One `vitest run` of `tests` in the copy `dir`, as the mutation run runs them (the no-shrinking
 * setup, FC_SEED), on one worker, stopping at the first failure, killed (its whole process
 * group) at `limit` ms or when interrupted.
 */
const runVitest = (
  dir: string,
  tests: readonly string[],
  seed: number,
  limit: number,
): Effect.Effect<RunOutcome> =>
  Effect.callback<RunOutcome>((resume) => {
    const out = join(dir, RESULT);
    rmSync(out, { force: true });
    const config = join(dir, CONFIG);
    writeFileSync(
      config,
      `import base from "./vitest.config.ts";\n` +
        `export default { ...base, test: { ...base.test, include: ${JSON.stringify(tests)}, ` +
        `setupFiles: [...(base.test.setupFiles ?? []), ${JSON.stringify(join(dir, "scripts", "mutation", "fast-check-setup.ts"))}] } };\n`,
    );
    const started = performance.now();
    // Under coreutils' timeout, which kills the whole group a minute after the limit even if
    // this process was killed outright (SIGKILL runs no finalizer; a spinning test worker
    // would spin on).
    const child = spawn(
      "timeout",
      [
        "-s",
        "KILL",
        `${Math.ceil(limit / 1000) + 60}s`,
        join(dir, "node_modules", ".bin", "vitest"),
        "run",
        "--config",
        config,
        "--maxWorkers=1",
        "--bail=1",
        "--reporter=json",
        `--outputFile=${out}`,
      ],
      {
        cwd: dir,
        detached: true,
        stdio: ["ignore", "ignore", "pipe"],
        env: { ...process.env, FC_SEED: String(seed) },
      },
    );
    let tail = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      tail = (tail + chunk).slice(-4000);
    });
    let exited = false;
    let hitLimit = false;
    const killGroup = (): void => {
      const pid = child.pid;
      if (pid === undefined) return;
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    const unregister = registerExitCleanup(killGroup);
    // The group's CPU time at three quarters of the limit and at the limit: a spinning loop
    // keeps a core busy, a test waiting for what never comes does not.
    let sample: { readonly cpu: number; readonly at: number } | undefined;
    let busy: number | undefined;
    const sampleCpu = (): { readonly cpu: number; readonly at: number } | undefined => {
      const cpu = child.pid === undefined ? undefined : groupCpuMs(child.pid);
      return cpu === undefined ? undefined : { cpu, at: performance.now() };
    };
    const early = setTimeout(() => (sample = sampleCpu()), Math.floor(0.75 * limit));
    const timer = setTimeout(() => {
      const now = sampleCpu();
      if (sample !== undefined && now !== undefined && now.at > sample.at)
        busy = (now.cpu - sample.cpu) / (now.at - sample.at);
      hitLimit = true;
      killGroup();
    }, limit);
    child.once("error", (e) => {
      exited = true;
      clearTimeout(timer);
      clearTimeout(early);
      unregister();
      resume(
        Effect.succeed({
          kind: "exit",
          ms: performance.now() - started,
          code: null,
          signal: null,
          failed: undefined,
          stderrTail: `cannot start vitest: ${e.message}`,
        }),
      );
    });
    child.once("exit", (code, signal) => {
      exited = true;
      clearTimeout(timer);
      clearTimeout(early);
      // A worker left behind by its main process goes too.
      killGroup();
      unregister();
      const ms = performance.now() - started;
      if (hitLimit) {
        resume(
          Effect.succeed({ kind: "limit", ms, limitMs: limit, ...(busy !== undefined ? { busy } : {}) }),
        );
        return;
      }
      let failed;
      try {
        failed = firstFailure(JSON.parse(readFileSync(out, "utf8")) as unknown, dir);
      } catch {
        failed = undefined;
      }
      resume(Effect.succeed({ kind: "exit", ms, code, signal, failed, stderrTail: tail }));
    });
    // Interrupted (Ctrl-C): kill the group and wait until vitest is gone.
    return Effect.callback<void>((done) => {
      clearTimeout(timer);
      clearTimeout(early);
      if (exited) return done(Effect.void);
      child.once("exit", () => done(Effect.void));
      killGroup();
    });
  });

/** The file `file` of the copy with `c` applied while the scope lives, then the original back. */
const mutated = (dir: string, c: Candidate) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const path = join(dir, c.file);
      const original = readFileSync(path, "utf8");
      writeFileSync(path, applyMutant(original, c.start, c.end, c.replacement));
      return { path, original };
    }),
    ({ path, original }) => Effect.sync(() => writeFileSync(path, original)),
  );

interface Baseline {
  readonly ms: number;
  /** Why the files cannot serve as a baseline (they fail or hang unmutated). */
  readonly broken?: string;
}

type Done = Rechecked | { readonly candidate: Candidate; readonly skipped: string };

const commitOf = (root: string): string => {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], {
      cwd: root,
      encoding: "utf8",
    }).trim();
    const dirty =
      execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], {
        cwd: root,
        encoding: "utf8",
      }).trim() !== "";
    return dirty ? `${head} with uncommitted changes` : head;
  } catch {
    return "an unknown commit";
  }
};

/** The seed the mutation run used (run.json beside its report), if it recorded one. */
const recordedSeed = (dir: string): number | undefined => {
  try {
    const s = (JSON.parse(readFileSync(join(dir, "run.json"), "utf8")) as { seed?: unknown }).seed;
    return typeof s === "number" ? s : undefined;
  } catch {
    return undefined;
  }
};

/** Runs the re-check; resolves to the exit status (0, 1 when a timeout is not detected, 130 on a signal). */
export const recheck = async (o: RecheckOptions): Promise<number> => {
  const outDir = join(o.root, "reports", "mutation");
  sweepOrphanCopies();
  const checkedList = loadCheckedTimeouts(o.root);
  const equivalentList = loadEquivalents(o.root);
  const work: Work[] = [];
  const skipped: { readonly where: string; readonly why: string }[] = [];
  for (const { subject, files } of o.jobs) {
    const dir = join(outDir, subject.name);
    const path = join(dir, "mutation.json");
    if (!existsSync(path)) {
      console.log(
        `recheck: no report for ${subject.name} (${path}); run npm run mutate -- ${subject.name} first`,
      );
      continue;
    }
    let report: Report;
    try {
      report = JSON.parse(readFileSync(path, "utf8")) as Report;
    } catch (e) {
      console.log(`recheck: cannot read ${path}: ${(e as Error).message}; skipping ${subject.name}`);
      continue;
    }
    const seed = o.seed ?? recordedSeed(dir);
    if (seed === undefined)
      console.log(
        `recheck: ${subject.name}: the run recorded no seed (no run.json); using 1, mutate's default`,
      );
    const candidates = timeoutCandidates(report, {
      files,
      allTests: testFilesOf(o.root, subject),
      checked: checkedList,
      equivalents: equivalentList,
      all: o.all,
    });
    for (const file of files) {
      const was = report.files[file]?.source;
      if (was === undefined) continue;
      const now = existsSync(join(o.root, file)) ? readFileSync(join(o.root, file), "utf8") : "";
      if (now !== was)
        console.log(
          `recheck: ${file} changed since the run; its mutants are checked only where their code is unchanged`,
        );
      for (const c of candidates.filter((c) => c.file === file)) {
        const why = staleBecause(now, c);
        if (why !== undefined) {
          skipped.push({ where: where(c), why });
          console.log(`recheck: SKIPPED ${where(c)}: ${why}; re-run npm run mutate -- ${file}`);
        } else work.push({ candidate: c, seed: seed ?? 1 });
      }
    }
  }
  const total = work.length;
  const workers = Math.max(1, Math.min(o.concurrency, total));
  console.log(
    `recheck: ${total} timeout${total === 1 ? "" : "s"} to check${o.all ? " (--all: listed ones too)" : ""}, ` +
      `${workers} at a time, limit max(${secs(o.rule.minMs)}, ${o.rule.factor}x the covering files unmutated)`,
  );

  // The commit the copies are taken at (the run may take long; the tree may move meanwhile).
  const commit = commitOf(o.root);
  const started = performance.now();
  const results: Done[] = [];
  const baselines = new Map<string, Effect.Effect<Baseline>>();
  const baselineOf = (dir: string, w: Work): Effect.Effect<Baseline> =>
    Effect.suspend(() => {
      const key = `${w.seed} ${testSetKey(w.candidate.tests)}`;
      const known = baselines.get(key);
      if (known !== undefined) return known;
      const run = Effect.gen(function* () {
        yield* Effect.sync(() =>
          console.log(`recheck: timing ${w.candidate.tests.join(", ")} unmutated (FC_SEED=${w.seed}) ...`),
        );
        const out = yield* runVitest(dir, w.candidate.tests, w.seed, BASELINE_LIMIT_MS);
        const v = classify(out);
        const b: Baseline =
          v.kind === "not-detected"
            ? { ms: out.ms }
            : {
                ms: out.ms,
                broken:
                  v.kind === "hangs"
                    ? `they run past ${secs(BASELINE_LIMIT_MS)} unmutated`
                    : `they fail unmutated: ${"error" in v.by ? v.by.error : `${v.by.file} '${v.by.name}'`}`,
              };
        console.log(
          b.broken === undefined
            ? `recheck:   unmutated ${secs(b.ms)}, limit ${secs(limitMs(b.ms, o.rule))}`
            : `recheck:   ${b.broken}`,
        );
        return b;
      });
      // Built synchronously, so that every worker asking for the same files waits for one run.
      const once = Effect.runSync(Effect.cached(run));
      baselines.set(key, once);
      return once;
    });

  const report = (d: Done): void => {
    results.push(d);
    const n = results.length;
    const elapsed = performance.now() - started;
    const left = n < total ? `, ~${clock((elapsed / n) * (total - n))} left` : "";
    let what: string;
    if ("skipped" in d) what = `SKIPPED: ${d.skipped}`;
    else {
      const v = d.verdict;
      what =
        v.kind === "hangs"
          ? `hangs (still running at ${secs(v.limitMs)}, killed${busyText(v.busy)}; unmutated ${secs(d.baselineMs)})`
          : v.kind === "killed"
            ? `killed in bounded time, ${secs(v.ms)}: ${"error" in v.by ? v.by.error : `${v.by.file} '${v.by.name}'${v.by.ms === undefined ? "" : ` (${Math.round(v.by.ms)} ms)`}`}`
            : `NOT DETECTED: every covering test passes (${secs(v.ms)}): a survivor hidden behind a timeout`;
    }
    const listed =
      (d.candidate.strykerReason === undefined ? "" : ` [Stryker: ${d.candidate.strykerReason}]`) +
      (d.candidate.listed === undefined ? "" : ` [listed in ${d.candidate.listed}]`);
    console.log(`[${n}/${total}] ${where(d.candidate)}${listed}: ${what} | elapsed ${clock(elapsed)}${left}`);
  };

  const checkOne = (dir: string, w: Work): Effect.Effect<Done> =>
    Effect.gen(function* () {
      const base = yield* baselineOf(dir, w);
      if (base.broken !== undefined)
        return { candidate: w.candidate, skipped: `the covering files: ${base.broken}` };
      const limit = limitMs(base.ms, o.rule);
      const out = yield* Effect.scoped(
        Effect.flatMap(mutated(dir, w.candidate), () => runVitest(dir, w.candidate.tests, w.seed, limit)),
      );
      return {
        candidate: w.candidate,
        verdict: classify(out),
        baselineMs: base.ms,
        limitMs: limit,
        seed: w.seed,
      };
    });

  const queue = [...work];
  const worker = Effect.scoped(
    Effect.gen(function* () {
      const dir = yield* treeCopy(o.root);
      for (let w = queue.shift(); w !== undefined; w = queue.shift()) {
        const d = yield* checkOne(dir, w);
        yield* Effect.sync(() => report(d));
      }
    }),
  );
  const fiber = Effect.runFork(
    Effect.forEach(
      Array.from({ length: workers }, () => worker),
      (e) => e,
      { concurrency: workers, discard: true },
    ),
  );
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (signalled !== undefined) {
      console.error(`\nrecheck: ${sig} again: exiting now`);
      process.exit(130);
    }
    signalled = sig;
    console.error(`\nrecheck: ${sig}: stopping the tests and removing the copies (again to force)`);
    Effect.runFork(Fiber.interrupt(fiber));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const exit = await Effect.runPromise(Fiber.await(fiber));
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  if (Exit.isFailure(exit) && signalled === undefined)
    throw new Error(`recheck failed: ${String(exit.cause)}`);

  // Results, also those of a run stopped half-way.
  const rechecked = results.filter((d): d is Rechecked => "verdict" in d);
  for (const d of results) if ("skipped" in d) skipped.push({ where: where(d.candidate), why: d.skipped });
  const ctx = {
    command: o.command,
    commit,
    rule: o.rule,
  };
  const { checked, notDetected } = groupVerdicts(rechecked, ctx);
  const count = (k: string): number => rechecked.filter((r) => r.verdict.kind === k).length;
  mkdirSync(outDir, { recursive: true });
  const outFile = join(outDir, "rechecked.json");
  writeFileSync(
    outFile,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        command: o.command,
        commit: ctx.commit,
        complete: signalled === undefined,
        limit: o.rule,
        checked,
        notDetected,
        skipped,
      },
      null,
      2,
    ) + "\n",
  );
  console.log(
    `\nrecheck: ${rechecked.length} of ${total} checked in ${clock(performance.now() - started)}` +
      `${signalled !== undefined ? " (stopped early)" : ""}: ${count("hangs")} hang, ` +
      `${count("killed")} killed in bounded time, ${count("not-detected")} not detected, ${skipped.length} skipped`,
  );
  // Not detected and not listed as equivalent yet (with --all, listed ones are shown too).
  const hidden = rechecked.filter(
    (r) => r.verdict.kind === "not-detected" && r.candidate.listed !== "equivalents.json",
  );
  if (notDetected.length > 0) {
    console.log(
      `\n!!! recheck: ${count("not-detected")} timeout(s) NOT DETECTED: every covering test passes with the mutant.`,
    );
    console.log(
      `!!! Stryker hid these survivors behind a timeout; each needs a test or an equivalents.json entry:`,
    );
    for (const r of rechecked)
      if (r.verdict.kind === "not-detected")
        console.log(
          `!!!   ${where(r.candidate)}${r.candidate.listed === undefined ? "" : ` [listed in ${r.candidate.listed}${r.candidate.listed === "equivalents.json" ? ": has its reason" : ": the list is wrong"}]`}`,
        );
  }
  console.log(
    `recheck: groups in ${outFile.slice(o.root.length + 1)} (checked: ready for ${CHECKED_TIMEOUTS_FILE}; notDetected; skipped)`,
  );
  if (o.record) {
    const path = join(o.root, CHECKED_TIMEOUTS_FILE);
    const before = loadCheckedTimeouts(o.root);
    const after = appendGroups(before, checked);
    const added = after.slice(before.length).reduce((n, g) => n + g.mutants.length, 0);
    if (added > 0) {
      writeFileSync(path, JSON.stringify(after, null, 2) + "\n");
      execFileSync(join(o.root, "node_modules", ".bin", "prettier"), ["--write", path], {
        cwd: o.root,
        stdio: "ignore",
      });
    }
    console.log(
      `recheck: --record: ${added} mutant(s) appended to ${CHECKED_TIMEOUTS_FILE} in ${after.length - before.length} group(s)` +
        `${added < checked.reduce((n, g) => n + g.mutants.length, 0) ? " (the others are there already)" : ""}; not-detected ones are never recorded`,
    );
  }
  return signalled !== undefined ? 130 : hidden.length > 0 ? 1 : 0;
};
