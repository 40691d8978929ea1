/**
 * Runs conformance cases against an implementation: as properties (fast-check draws inputs,
 * the spec model gives the expected outcomes, failures shrink to a minimal request list) or
 * as fixed vectors. A run always starts with `reset`, so runs are independent.
 */
import fc from "fast-check";
import type { ImplClient } from "./client.ts";
import type { Outcome } from "./protocol.ts";
import { outcomeMatches, projectOutcome, showOutcome } from "./protocol.ts";
import type { AnyCase, Level, Profile, Step } from "./cases/types.ts";
import { PROFILES, expectOk } from "./cases/types.ts";

export const RESET_STEP: Step = { op: "reset", args: {}, expect: expectOk(null) };

export interface RunOutcome {
  readonly pass: boolean;
  /** Profiles every profile step of the run agreed with (all profiles when there were none). */
  readonly profiles: readonly Profile[];
  /** Index (in `steps`, reset included) of the first step that failed, or -1. */
  readonly failedAt: number;
  readonly steps: readonly Step[];
  readonly actual: readonly Outcome[];
  readonly message: string;
}

/** Sends the steps (after a reset) and checks each answer. Stops at the first failure. */
export const execRun = async (client: ImplClient, caseSteps: readonly Step[]): Promise<RunOutcome> => {
  const steps = [RESET_STEP, ...caseSteps];
  const actual: Outcome[] = [];
  let profiles: Profile[] = [...PROFILES];
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i]!;
    const got = await client.request(s.op, s.args);
    actual.push(got);
    if ("outcome" in s.expect) {
      if (!outcomeMatches(s.expect.outcome, got)) {
        return {
          pass: false,
          profiles,
          failedAt: i,
          steps,
          actual,
          message: `step ${i} ${s.op}: expected ${showOutcome(s.expect.outcome)}, got ${showOutcome(got)}`,
        };
      }
      continue;
    }
    const exp = s.expect.profiles;
    const keys = s.expect.keys;
    const agreeing = profiles.filter((p) => {
      const e = exp[p];
      return e === undefined || outcomeMatches(projectOutcome(e, keys), projectOutcome(got, keys));
    });
    if (agreeing.length === 0) {
      const wanted = PROFILES.filter((p) => exp[p] !== undefined)
        .map((p) => `${p}: ${showOutcome(exp[p]!)}`)
        .join("; ");
      return {
        pass: false,
        profiles: [],
        failedAt: i,
        steps,
        actual,
        message: `step ${i} ${s.op}: got ${showOutcome(got)}, which matches no profile (${wanted})`,
      };
    }
    profiles = agreeing;
  }
  return { pass: true, profiles, failedAt: -1, steps, actual, message: "" };
};

export type CaseStatus = "pass" | "fail" | "skipped";

export interface CaseResult {
  readonly id: string;
  readonly title: string;
  readonly rules: readonly string[];
  readonly level: Level;
  /** Operations the case needs (what a replay of its counterexample needs). */
  readonly ops: readonly string[];
  readonly status: CaseStatus;
  /** Why skipped, or what failed. */
  readonly reason: string;
  readonly runs: number;
  readonly seed?: number;
  /** The shrunk failing run: the request list (reset first) with expected and actual outcomes. */
  readonly counterexample?: RunOutcome;
  /** For profile cases: the profiles the implementation agreed with on every run. */
  readonly profiles?: readonly Profile[];
  readonly ms: number;
}

export const missingOps = (c: AnyCase, supported: ReadonlySet<string>): string[] =>
  c.ops.filter((op) => !supported.has(op));

const skipped = (c: AnyCase, reason: string): CaseResult => ({
  id: c.id,
  title: c.title,
  rules: c.rules,
  level: c.level,
  ops: c.ops,
  status: "skipped",
  reason,
  runs: 0,
  ms: 0,
});

/** Runs one case as a property: examples first, then `numRuns` random inputs, shrinking on failure. */
export const runCaseProperty = async (
  client: ImplClient,
  c: AnyCase,
  supported: ReadonlySet<string>,
  options: { readonly numRuns: number; readonly seed: number },
): Promise<CaseResult> => {
  const missing = missingOps(c, supported);
  if (missing.length > 0) return skipped(c, `unsupported: ${missing.join(", ")}`);
  const started = performance.now();
  let agreed: Profile[] = [...PROFILES];
  let last: RunOutcome | undefined;
  const prop = fc.asyncProperty(c.arb, async (input) => {
    const r = await execRun(client, c.steps(input));
    if (!r.pass) last = r;
    else agreed = agreed.filter((p) => r.profiles.includes(p));
    return r.pass;
  });
  const out = await fc.check(prop, {
    numRuns: options.numRuns,
    seed: options.seed,
    examples: c.examples.map((e) => [e] as [unknown]),
    // A program that stopped answering makes every later run slow; a few shrinks are enough.
    endOnFailure: false,
  });
  const ms = Math.round(performance.now() - started);
  if (out.failed) {
    // Re-run the shrunk input so the counterexample is exactly what the last failure saw.
    const input = out.counterexample?.[0];
    const shrunk = input === undefined ? last : await execRun(client, c.steps(input));
    const cx = shrunk !== undefined && !shrunk.pass ? shrunk : last;
    return {
      id: c.id,
      title: c.title,
      rules: c.rules,
      level: c.level,
      ops: c.ops,
      status: "fail",
      reason:
        cx?.message ?? (out.errorInstance instanceof Error ? out.errorInstance.message : "property failed"),
      runs: out.numRuns,
      seed: out.seed,
      ...(cx !== undefined ? { counterexample: cx } : {}),
      ...(c.level === "profile" ? { profiles: [] } : {}),
      ms,
    };
  }
  return {
    id: c.id,
    title: c.title,
    rules: c.rules,
    level: c.level,
    ops: c.ops,
    status: "pass",
    reason: "",
    runs: out.numRuns,
    seed: out.seed,
    ...(c.level === "profile" ? { profiles: agreed } : {}),
    ms,
  };
};

/** Runs fixed runs (vectors) of one case: every run is sent; the first failure is kept. */
export const runCaseVectors = async (
  client: ImplClient,
  c: Pick<AnyCase, "id" | "title" | "rules" | "level" | "ops">,
  runs: readonly (readonly Step[])[],
  supported: ReadonlySet<string>,
): Promise<CaseResult> => {
  const missing = c.ops.filter((op) => !supported.has(op));
  if (missing.length > 0) {
    return { ...pick(c), status: "skipped", reason: `unsupported: ${missing.join(", ")}`, runs: 0, ms: 0 };
  }
  const started = performance.now();
  let agreed: Profile[] = [...PROFILES];
  let failure: RunOutcome | undefined;
  for (const steps of runs) {
    // A vectors file holds the reset explicitly; do not send it twice.
    const body = steps[0]?.op === "reset" ? steps.slice(1) : steps;
    const r = await execRun(client, body);
    if (!r.pass) {
      if (failure === undefined || r.steps.length < failure.steps.length) failure = r;
    } else agreed = agreed.filter((p) => r.profiles.includes(p));
  }
  const ms = Math.round(performance.now() - started);
  return {
    ...pick(c),
    status: failure === undefined ? "pass" : "fail",
    reason: failure?.message ?? "",
    runs: runs.length,
    ...(failure !== undefined ? { counterexample: failure } : {}),
    ...(c.level === "profile" ? { profiles: failure === undefined ? agreed : [] } : {}),
    ms,
  };
};

const pick = (c: Pick<AnyCase, "id" | "title" | "rules" | "level" | "ops">) => ({
  id: c.id,
  title: c.title,
  rules: c.rules,
  level: c.level,
  ops: c.ops,
});
