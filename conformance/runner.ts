/**
 * Runs conformance cases against an implementation: as properties (fast-check draws inputs,
 * the spec model gives the expected outcomes) or as fixed vectors. A run always starts with
 * `reset`, so runs are independent.
 *
 * Every run of a case is run (one difference never hides the next run's), and a difference is
 * charged to the rules of the step where it showed (Step.rules, else the case's rules), at
 * that step's level (a profile step counts at the profile level). Per rule the result keeps
 * how many runs differed, how many checked it, and the smallest counterexample for that rule:
 * in property mode shrunk by fast-check from the first run that differed on it.
 */
import fc from "fast-check";
import type { ImplClient } from "./client.ts";
import type { Outcome } from "./protocol.ts";
import {
  NOT_A_REFUSAL,
  SKIP_TAGS,
  normalizeOutcome,
  outcomeMatches,
  projectOutcome,
  showOutcome,
} from "./protocol.ts";
import type { AnyCase, Level, Profile, Step } from "./cases/types.ts";
import { PROFILES, expectOk, stepLevel } from "./cases/types.ts";

export const RESET_STEP: Step = { op: "reset", args: {}, expect: expectOk(null) };

/** What a run needs to know about its case: its level and rules (the default a step cites). */
export interface RunContext {
  readonly level: Level;
  readonly rules: readonly string[];
  /** The adapter's own error map (hello `errors`). */
  readonly errors?: Readonly<Record<string, string>>;
}

/** "level rule": what per-rule results are keyed by. */
export type RuleKey = string;
export const ruleKey = (level: Level, rule: string): RuleKey => `${level} ${rule}`;
export const splitKey = (k: RuleKey): { level: Level; rule: string } => {
  const i = k.indexOf(" ");
  return { level: k.slice(0, i) as Level, rule: k.slice(i + 1) };
};

export type RunStatus = "pass" | "fail" | "skipped";

export interface RunOutcome {
  readonly status: RunStatus;
  /** status !== "fail" (a skipped run is not a difference). */
  readonly pass: boolean;
  /** Profiles every profile step of the run agreed with (all profiles when there were none). */
  readonly profiles: readonly Profile[];
  /** Index (in `steps`, reset included) of the step that differed (or was unsupported), or -1. */
  readonly failedAt: number;
  readonly steps: readonly Step[];
  readonly actual: readonly Outcome[];
  readonly message: string;
  /** Rules (level + id) some step of this run checked with no difference. */
  readonly checked: readonly RuleKey[];
  /** Rules the difference is charged to (empty unless status is "fail"). */
  readonly charged: readonly RuleKey[];
  /** Profiles some step of the run had an opinion for. */
  readonly opined: readonly Profile[];
}

const DEFAULT_CONTEXT: RunContext = { level: "must", rules: [] };

const keysOf = (s: Step, ctx: RunContext): RuleKey[] =>
  (s.rules ?? ctx.rules).map((r) => ruleKey(stepLevel(s, ctx.level), r));

/**
 * An implementation may refuse a setup step earlier than the model does (at configure
 * rather than at initialize; a size its transport refuses): accepted when a later step of
 * the run expects exactly that error, i.e. the refusal is for the same rule. Returns the
 * index of that later step, or -1.
 */
export const earlyRefusal = (steps: readonly Step[], at: number, got: Outcome): number => {
  if (got.ok) return -1;
  for (let j = at + 1; j < steps.length; j++) {
    const e = steps[j]!.expect;
    if (!("outcome" in e) || e.outcome.ok) continue;
    return e.outcome.error._tag === got.error._tag ? j : -1;
  }
  return -1;
};

/** Sends the steps (after a reset) and checks each answer. A run ends at its first difference. */
export const execRun = async (
  client: Pick<ImplClient, "request">,
  caseSteps: readonly Step[],
  ctx: RunContext = DEFAULT_CONTEXT,
): Promise<RunOutcome> => {
  const steps = [RESET_STEP, ...caseSteps];
  const actual: Outcome[] = [];
  const checked = new Set<RuleKey>();
  const opined = new Set<Profile>();
  let profiles: Profile[] = [...PROFILES];
  const end = (
    status: RunStatus,
    failedAt: number,
    message: string,
    charged: RuleKey[] = [],
  ): RunOutcome => ({
    status,
    pass: status !== "fail",
    profiles: status === "fail" ? [] : profiles,
    failedAt,
    steps,
    actual,
    message,
    checked: [...checked],
    charged,
    opined: [...opined],
  });
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i]!;
    const got = normalizeOutcome(s.op, await client.request(s.op, s.args), ctx.errors);
    actual.push(got);
    const level = stepLevel(s, ctx.level);
    if ("outcome" in s.expect) {
      const want = s.expect.outcome;
      if (outcomeMatches(want, got, { op: s.op, anyRefusal: level === "safety" })) {
        if (i > 0) for (const k of keysOf(s, ctx)) checked.add(k);
        continue;
      }
      if (!got.ok && SKIP_TAGS.includes(got.error._tag))
        return end("skipped", i, `step ${i} ${s.op}: ${got.error._tag}`);
      const later = earlyRefusal(steps, i, got);
      if (later >= 0) {
        for (const k of keysOf(steps[later]!, ctx)) checked.add(k);
        return end("pass", -1, `step ${i} ${s.op}: refused early with ${showOutcome(got)} (step ${later})`);
      }
      return end(
        "fail",
        i,
        `step ${i} ${s.op}: expected ${showOutcome(want)}, got ${showOutcome(got)}`,
        keysOf(s, ctx),
      );
    }
    if ("safe" in s.expect) {
      if (got.ok || !NOT_A_REFUSAL.includes(got.error._tag)) {
        if (!got.ok && SKIP_TAGS.includes(got.error._tag))
          return end("skipped", i, `step ${i} ${s.op}: ${got.error._tag}`);
        if (i > 0) for (const k of keysOf(s, ctx)) checked.add(k);
        continue;
      }
      return end(
        "fail",
        i,
        `step ${i} ${s.op}: hostile input answered with ${showOutcome(got)}`,
        keysOf(s, ctx),
      );
    }
    const exp = s.expect.profiles;
    const keys = s.expect.keys;
    // Each profile step is a VMM's choice on its own rule: the answer must be one some VMM
    // gives (a profile with an opinion here matches it). Profiles are not held consistent
    // across steps (an implementation may choose like Firecracker on one rule and like
    // rust-vmm on another); the run records the profiles it agreed with on every step.
    for (const p of PROFILES) if (exp[p] !== undefined) opined.add(p);
    const matched = PROFILES.filter(
      (p) =>
        exp[p] !== undefined &&
        outcomeMatches(projectOutcome(exp[p]!, keys), projectOutcome(got, keys), { op: s.op }),
    );
    if (matched.length === 0) {
      if (!got.ok && SKIP_TAGS.includes(got.error._tag))
        return end("skipped", i, `step ${i} ${s.op}: ${got.error._tag}`);
      const wanted = PROFILES.filter((p) => exp[p] !== undefined)
        .map((p) => `${p}: ${showOutcome(exp[p]!)}`)
        .join("; ");
      return end(
        "fail",
        i,
        `step ${i} ${s.op}: got ${showOutcome(got)}, which matches no profile (${wanted})`,
        keysOf(s, ctx),
      );
    }
    profiles = profiles.filter((p) => exp[p] === undefined || matched.includes(p));
    for (const k of keysOf(s, ctx)) checked.add(k);
  }
  return end("pass", -1, "");
};

export type CaseStatus = "pass" | "fail" | "skipped";

/** One rule's result within one case. */
export interface RuleTally {
  readonly key: RuleKey;
  readonly level: Level;
  readonly rule: string;
  /** Runs whose difference was charged to this rule. */
  readonly differed: number;
  /** Runs that checked it with no difference. */
  readonly checked: number;
  /** The smallest run that differed on this rule (shrunk in property mode). */
  readonly counterexample?: RunOutcome;
}

export interface CaseResult {
  readonly id: string;
  readonly title: string;
  readonly rules: readonly string[];
  readonly level: Level;
  /** Operations the case needs (what a replay of its counterexample needs). */
  readonly ops: readonly string[];
  readonly status: CaseStatus;
  /** Why skipped, or what failed first. */
  readonly reason: string;
  readonly runs: number;
  /** Runs that differed somewhere. */
  readonly differed: number;
  /** Runs skipped because the implementation answered Unsupported / ResourceLimit. */
  readonly skippedRuns: number;
  readonly seed?: number;
  /** The smallest failing run of the case (any rule). */
  readonly counterexample?: RunOutcome;
  /** Per rule (level + id) of the case. */
  readonly tallies: readonly RuleTally[];
  /** For profile steps: the profiles the implementation agreed with on every run. */
  readonly profiles?: readonly Profile[];
  /** The profiles some step of the case had an opinion for. */
  readonly opined?: readonly Profile[];
  readonly ms: number;
}

export const missingOps = (c: Pick<AnyCase, "ops">, supported: ReadonlySet<string>): string[] =>
  c.ops.filter((op) => !supported.has(op));

type CaseMeta = Pick<AnyCase, "id" | "title" | "rules" | "level" | "ops">;

const meta = (c: CaseMeta) => ({ id: c.id, title: c.title, rules: c.rules, level: c.level, ops: c.ops });

const skippedCase = (c: CaseMeta, reason: string): CaseResult => ({
  ...meta(c),
  status: "skipped",
  reason,
  runs: 0,
  differed: 0,
  skippedRuns: 0,
  tallies: [],
  ms: 0,
});

const smaller = (a: RunOutcome | undefined, b: RunOutcome): RunOutcome =>
  a === undefined || b.failedAt < a.failedAt ? b : a;

/** Collects run outcomes into per-rule tallies and the case's verdict. */
class Tally {
  runs = 0;
  differed = 0;
  skipped = 0;
  firstSkip = "";
  agreed: Profile[] = [...PROFILES];
  sawProfileRun = false;
  readonly opined = new Set<Profile>();
  smallest: RunOutcome | undefined;
  readonly rules = new Map<RuleKey, { differed: number; checked: number; cx?: RunOutcome; first: number }>();

  entry(k: RuleKey) {
    let e = this.rules.get(k);
    if (e === undefined) {
      e = { differed: 0, checked: 0, first: -1 };
      this.rules.set(k, e);
    }
    return e;
  }

  add(r: RunOutcome, index: number): void {
    this.runs++;
    for (const k of r.checked) this.entry(k).checked++;
    for (const p of r.opined) this.opined.add(p);
    if (r.status === "skipped") {
      this.skipped++;
      if (this.firstSkip === "") this.firstSkip = r.message;
      return;
    }
    if (r.status === "pass") {
      this.agreed = this.agreed.filter((p) => r.profiles.includes(p));
      this.sawProfileRun = true;
      return;
    }
    this.differed++;
    this.smallest = smaller(this.smallest, r);
    for (const k of r.charged) {
      const e = this.entry(k);
      e.differed++;
      if (e.first < 0) e.first = index;
      e.cx = smaller(e.cx, r);
    }
  }

  result(c: CaseMeta, ms: number, extra: { seed?: number } = {}): CaseResult {
    const tallies: RuleTally[] = [...this.rules.entries()].map(([key, e]) => ({
      key,
      ...splitKey(key),
      differed: e.differed,
      checked: e.checked,
      ...(e.cx !== undefined ? { counterexample: e.cx } : {}),
    }));
    const status: CaseStatus = this.differed > 0 ? "fail" : this.skipped === this.runs ? "skipped" : "pass";
    const hasProfileSteps = tallies.some((t) => t.level === "profile");
    return {
      ...meta(c),
      status,
      reason:
        status === "fail"
          ? (this.smallest?.message ?? "")
          : status === "skipped"
            ? `every run skipped (${this.firstSkip})`
            : this.skipped > 0
              ? `${this.skipped} of ${this.runs} runs skipped (${this.firstSkip})`
              : "",
      runs: this.runs,
      differed: this.differed,
      skippedRuns: this.skipped,
      ...extra,
      ...(this.smallest !== undefined ? { counterexample: this.smallest } : {}),
      tallies,
      ...(c.level === "profile" || hasProfileSteps
        ? { profiles: this.agreed, opined: PROFILES.filter((p) => this.opined.has(p)) }
        : {}),
      ms,
    };
  }
}

export interface PropertyOptions {
  readonly numRuns: number;
  readonly seed: number;
  readonly errors?: Readonly<Record<string, string>>;
  /** Most runs spent shrinking one rule's counterexample (default 80). */
  readonly shrinkBudget?: number;
}

/**
 * Runs one case as a property: examples first, then `numRuns` random inputs, every one of
 * them. Then, for each rule some run differed on, fast-check replays the first such run
 * (same seed, its path) and shrinks it while it still differs on that rule.
 */
export const runCaseProperty = async (
  client: Pick<ImplClient, "request">,
  c: AnyCase,
  supported: ReadonlySet<string>,
  options: PropertyOptions,
): Promise<CaseResult> => {
  const missing = missingOps(c, supported);
  if (missing.length > 0) return skippedCase(c, `unsupported: ${missing.join(", ")}`);
  const started = performance.now();
  const ctx: RunContext = {
    level: c.level,
    rules: c.setupRules ?? c.rules,
    ...(options.errors !== undefined ? { errors: options.errors } : {}),
  };
  const tally = new Tally();
  let index = 0;
  const params = {
    numRuns: options.numRuns,
    seed: options.seed,
    examples: c.examples.map((e) => [e] as [unknown]),
  };
  await fc.check(
    fc.asyncProperty(c.arb, async (input) => {
      tally.add(await execRun(client, c.steps(input), ctx), index++);
      return true;
    }),
    params,
  );
  // Shrink per rule; one shrunk run serves every rule it also differs on.
  const budget = options.shrinkBudget ?? 80;
  const done = new Set<RuleKey>();
  for (const [key, e] of tally.rules) {
    if (e.differed === 0 || done.has(key)) continue;
    let spent = 0;
    let best: RunOutcome | undefined;
    await fc.check(
      fc.asyncProperty(c.arb, async (input) => {
        if (spent++ >= budget) return true;
        const r = await execRun(client, c.steps(input), ctx);
        if (!r.charged.includes(key)) return true;
        best = r;
        return false;
      }),
      { ...params, path: String(e.first) },
    );
    if (best === undefined) continue;
    for (const k of best.charged) {
      const o = tally.rules.get(k);
      if (o === undefined || done.has(k)) continue;
      // The shrunk run replaces the first one found (it is no longer, and its input smaller).
      o.cx = best;
      done.add(k);
    }
    if (tally.smallest === undefined || best.failedAt <= tally.smallest.failedAt) tally.smallest = best;
  }
  // Reported unsigned: a seed >= 2^31 given as a negative int32 prints as `--seed` takes it.
  return tally.result(c, Math.round(performance.now() - started), { seed: options.seed >>> 0 });
};

/** Runs fixed runs (vectors) of one case: every run is sent; the smallest failure per rule is kept. */
export const runCaseVectors = async (
  client: Pick<ImplClient, "request">,
  c: CaseMeta,
  runs: readonly (readonly Step[])[],
  supported: ReadonlySet<string>,
  errors?: Readonly<Record<string, string>>,
): Promise<CaseResult> => {
  const missing = missingOps(c, supported);
  if (missing.length > 0) return skippedCase(c, `unsupported: ${missing.join(", ")}`);
  const started = performance.now();
  const ctx: RunContext = { level: c.level, rules: c.rules, ...(errors !== undefined ? { errors } : {}) };
  const tally = new Tally();
  let index = 0;
  for (const steps of runs) {
    // A vectors file holds the reset explicitly; do not send it twice.
    const body = steps[0]?.op === "reset" ? steps.slice(1) : steps;
    tally.add(await execRun(client, body, ctx), index++);
  }
  return tally.result(c, Math.round(performance.now() - started));
};
