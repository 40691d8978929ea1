/**
 * Whole-suite runs: every case against one implementation (as properties or from vectors),
 * and the mutant run (the reference adapter with each known bug put back).
 */
import { Effect } from "effect";
import type { AnyCase, Level } from "./cases/types.ts";
import { ImplClient } from "./client.ts";
import type { Hello } from "./client.ts";
import { MUTANTS } from "./mutants.ts";
import type { MutantResult, SuiteResult } from "./report.ts";
import { ruleLines } from "./report.ts";
import { PROTOCOL_VERSION } from "./protocol.ts";
import type { CaseResult } from "./runner.ts";
import { runCaseProperty, runCaseVectors } from "./runner.ts";
import { allCases, referenceCommand, repoRoot } from "./suite.ts";
import { caseVectors, DEFAULT_VECTOR_SEED, readVectors } from "./vectors.ts";
import type { VectorCase } from "./vectors.ts";

export interface SelectOptions {
  /** Only cases whose id or a rule id contains this text. */
  readonly only?: string;
  readonly level?: Level;
}

export const selectCases = <C extends { id: string; rules: readonly string[]; level: Level }>(
  cases: readonly C[],
  o: SelectOptions,
): C[] =>
  cases.filter(
    (c) =>
      (o.level === undefined || c.level === o.level) &&
      (o.only === undefined || c.id.includes(o.only) || c.rules.some((r) => r.includes(o.only!))),
  );

export interface ConformOptions extends SelectOptions {
  readonly command: string;
  readonly cwd?: string;
  readonly timeoutMs?: number;
  /** Property runs per case (default: each case's own count). */
  readonly runs?: number;
  readonly seed?: number;
  /** Replay this vectors directory instead of drawing inputs. */
  readonly vectorsDir?: string;
  /** Vector mode without a directory: these in-memory vectors. */
  readonly vectors?: readonly VectorCase[];
  /** Stop at the first failing case (a mutant is killed by one). */
  readonly stopOnFail?: boolean;
  readonly log?: (line: string) => void;
}

const connect = async (o: ConformOptions): Promise<{ client: ImplClient; hello: Hello } | string> => {
  const client = new ImplClient(o.command, {
    ...(o.cwd !== undefined ? { cwd: o.cwd } : {}),
    timeoutMs: o.timeoutMs ?? 5000,
  });
  const hello = await client.hello();
  if (typeof hello === "string") {
    await client.close();
    return `${o.command}: ${hello}`;
  }
  if (hello.protocol !== PROTOCOL_VERSION) {
    await client.close();
    return `${o.command}: speaks protocol ${hello.protocol}, the suite speaks ${PROTOCOL_VERSION}`;
  }
  return { client, hello };
};

/**
 * The implementation under test as a scoped resource: started and greeted on acquire,
 * closed (stdin ended, process group killed if it lingers) on release, whatever happens.
 */
const implementation = (o: ConformOptions) =>
  Effect.acquireRelease(
    Effect.promise(() => connect(o)),
    (c) => (typeof c === "string" ? Effect.void : Effect.promise(() => c.client.close())),
  );

const runAll = async (
  client: ImplClient,
  hello: Hello,
  o: ConformOptions,
  vectors: readonly VectorCase[] | undefined,
): Promise<SuiteResult> => {
  const supported = new Set(hello.ops);
  const results: CaseResult[] = [];
  if (vectors !== undefined) {
    for (const v of selectCases(
      vectors.map((x) => ({ ...x, id: x.meta.id, rules: x.meta.rules, level: x.meta.level })),
      o,
    )) {
      const r = await runCaseVectors(client, v.meta, v.runs, supported, hello.errors);
      o.log?.(`${r.status.padEnd(7)} ${r.id}`);
      results.push(r);
      if (o.stopOnFail === true && r.status === "fail") break;
    }
  } else {
    // Unsigned, as `--seed` takes it back (fast-check draws the same from s and s | 0).
    const seed = (o.seed ?? Date.now() ^ (Math.random() * 0x100000000)) >>> 0;
    for (const k of selectCases(allCases(), o)) {
      const r = await runCaseProperty(client, k, supported, {
        numRuns: o.runs ?? k.numRuns,
        seed,
        ...(hello.errors !== undefined ? { errors: hello.errors } : {}),
      });
      o.log?.(
        `${r.status.padEnd(7)} ${r.id}${r.status === "fail" ? ` (${r.differed}/${r.runs} runs differ): ${r.reason}` : ""}`,
      );
      results.push(r);
    }
  }
  return {
    implementation: hello.name,
    command: o.command,
    mode: vectors !== undefined ? "vectors" : "properties",
    cases: results,
  };
};

/** Runs the suite against one implementation; a string is a setup error (cannot start, bad hello, bad vectors). */
export const conform = (o: ConformOptions): Promise<SuiteResult | string> => {
  if (o.runs !== undefined && !(Number.isInteger(o.runs) && o.runs >= 1))
    return Promise.resolve(`runs must be a whole number >= 1 (got ${o.runs}): 0 runs would test nothing`);
  let vectors: readonly VectorCase[] | undefined = o.vectors;
  if (o.vectorsDir !== undefined) {
    const v = readVectors(o.vectorsDir);
    if (typeof v === "string") return Promise.resolve(v);
    vectors = v.cases;
  }
  const selected =
    vectors !== undefined
      ? selectCases(
          vectors.map((x) => ({ id: x.meta.id, rules: x.meta.rules, level: x.meta.level })),
          o,
        ).length
      : selectCases(allCases(), o).length;
  if (selected === 0)
    return Promise.resolve(
      `no case matches the selection${o.only !== undefined ? ` --only ${JSON.stringify(o.only)}` : ""}${o.level !== undefined ? ` --level ${o.level}` : ""}`,
    );
  return Effect.runPromise(
    Effect.scoped(
      Effect.flatMap(implementation(o), (c): Effect.Effect<SuiteResult | string> =>
        typeof c === "string"
          ? Effect.succeed(c)
          : Effect.promise(() => runAll(c.client, c.hello, o, vectors)),
      ),
    ),
  );
};

/** In-memory vectors for every selected case (what `vectors --out` would write). */
export const suiteVectors = (
  cases: readonly AnyCase[],
  runs: number,
  seed = DEFAULT_VECTOR_SEED,
): VectorCase[] =>
  cases.map((c) => {
    const r = caseVectors(c, runs, seed);
    return {
      meta: {
        id: c.id,
        title: c.title,
        rules: c.rules,
        level: c.level,
        ops: c.ops,
        file: `${c.id}.jsonl`,
        runs: r.length,
      },
      runs: r,
    };
  });

export interface MutantOptions extends SelectOptions {
  /** Random vector runs per case besides the examples (default 20). */
  readonly runs?: number;
  /** Mutants checked at once (default 4). */
  readonly parallel?: number;
  readonly only?: string;
  readonly mutants?: readonly string[];
  /** Run every case against every mutant (default: stop at the first case that kills it). */
  readonly full?: boolean;
  readonly log?: (line: string) => void;
}

/** Case id prefixes of each mutant subject: a mutant's own subject's cases run first. */
const SUBJECT_PREFIX: Readonly<Record<string, string>> = {
  queue: "queue.",
  chain: "chain.",
  iovec: "iovec.",
  vsock: "vsock.",
  "usb-vsock": "usb.",
  net: "net.",
  packed: "packed.",
};

/**
 * Runs the deterministic vectors against every mutant (several at once); a mutant is
 * killed when some case fails against it.
 */
export const runMutants = (o: MutantOptions = {}): Promise<MutantResult[]> => {
  const vectors = suiteVectors(selectCases(allCases(), o), o.runs ?? 20);
  const todo = MUTANTS.filter((m) => o.mutants === undefined || o.mutants.includes(m.id));
  const one = async (m: (typeof MUTANTS)[number]): Promise<MutantResult> => {
    const base = { id: m.id, subject: m.subject, source: m.source, bug: m.bug, breaks: m.breaks };
    const prefix = SUBJECT_PREFIX[m.subject] ?? "";
    // Cases citing the rule the mutant breaks first, then its subject's, then the rest.
    const rank = (v: VectorCase): number =>
      v.meta.rules.includes(m.breaks) ? 0 : v.meta.id.startsWith(prefix) ? 1 : 2;
    const ordered = [...vectors].sort((a, b) => rank(a) - rank(b));
    const r = await conform({
      command: referenceCommand(m.id),
      cwd: repoRoot,
      vectors: ordered,
      stopOnFail: o.full !== true,
    });
    if (typeof r === "string") {
      // An adapter that cannot start tested nothing: never count it as a kill.
      o.log?.(`error    ${m.id}: ${r}`);
      return { ...base, status: "error", killedBy: [], failedRules: [] };
    }
    const killedBy = r.cases.filter((c) => c.status === "fail").map((c) => c.id);
    // Killed means a MUST or SAFETY rule failed; a profile difference alone is a VMM's choice.
    const failedRules = ruleLines(r.cases)
      .filter((l) => l.status === "fail")
      .map((l) => `${l.level} ${l.rule}`);
    const status = failedRules.some((k) => !k.startsWith("profile ")) ? "killed" : "survived";
    o.log?.(
      `${status.padEnd(8)} ${m.id}${killedBy.length > 0 ? ` by ${killedBy.join(", ")} (${failedRules.join(", ")})` : ""}`,
    );
    return { ...base, status, killedBy, failedRules };
  };
  // Each mutant is its own adapter process; a few run at once (order of results is kept).
  return Effect.runPromise(
    Effect.forEach(todo, (m) => Effect.promise(() => one(m)), { concurrency: Math.max(1, o.parallel ?? 4) }),
  );
};
