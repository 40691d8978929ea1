/**
 * What a conformance case is: an input generator and a function that turns one input into
 * the requests to send and, for each, the outcome the spec model (spec/) says is right.
 */
import type fc from "fast-check";
import type { Result } from "../../spec/result.ts";
import type { Json, JsonObject, Outcome } from "../protocol.ts";

/**
 * must: what the VIRTIO spec (or the subject's reference) requires of every implementation.
 * safety: no access outside memory or outside the chain's buffers, no write to readable
 *   descriptors, no unbounded walk, keeps serving after a bad chain.
 * profile: where the reference VMMs legitimately differ; each step says what each profile does.
 */
export type Level = "must" | "safety" | "profile";
export const LEVELS: readonly Level[] = ["must", "safety", "profile"];

/**
 * The reference VMMs a profile step may name. `qemu` appears only where its choice differs
 * from all the others (VRING_AVAIL_F_NO_INTERRUPT); a profile a step does not name has no
 * opinion there and agrees with any answer.
 */
export const PROFILES = ["firecracker", "rust-vmm", "cloud-hypervisor", "qemu"] as const;
export type Profile = (typeof PROFILES)[number];

export type Expect =
  | { readonly outcome: Outcome }
  /**
   * Profile steps: the outcome each reference profile gives (a missing profile: no opinion).
   * With `keys`, only those fields of an ok value are compared (what the profiles define).
   */
  | { readonly profiles: { readonly [P in Profile]?: Outcome }; readonly keys?: readonly string[] }
  /**
   * Hostile input where VIRTIO leaves the device's answer open (the driver broke one of its
   * MUSTs): any answer passes except a crash, a hang or an internal error (NOT_A_REFUSAL).
   * What is checked is around it: memory read back, a well-formed step after it.
   */
  | { readonly safe: true };

export interface Step {
  readonly op: string;
  readonly args: JsonObject;
  readonly expect: Expect;
  /**
   * The rule ids this step checks (a subset of its case's `rules`); a difference at this step
   * is charged to them alone. Absent: the case's rules.
   */
  readonly rules?: readonly string[];
}

export interface Case<T> {
  /** Stable id, also the vectors file name: `<subject>.<what>`. */
  readonly id: string;
  readonly title: string;
  /** Spec rule ids (declared in spec/*.ts RULES) this case checks. */
  readonly rules: readonly string[];
  readonly level: Level;
  /**
   * What a step with no `rules` of its own cites (setup, reads, state): default `rules`. A case
   * whose steps name some rules only at the profile level leaves those out here.
   */
  readonly setupRules?: readonly string[];
  /** Operations the case needs besides hello and reset; missing ones skip the case. */
  readonly ops: readonly string[];
  readonly arb: fc.Arbitrary<T>;
  /** Inputs always run first (edges a random draw may miss); also written as vectors. */
  readonly examples: readonly T[];
  readonly steps: (input: T) => readonly Step[];
  /** Property run count at scale 1. */
  readonly numRuns: number;
}

/** A case with its input type erased, for lists of cases. */
export interface AnyCase {
  readonly id: string;
  readonly title: string;
  readonly rules: readonly string[];
  readonly level: Level;
  readonly setupRules?: readonly string[];
  readonly ops: readonly string[];
  readonly arb: fc.Arbitrary<unknown>;
  readonly examples: readonly unknown[];
  readonly steps: (input: unknown) => readonly Step[];
  readonly numRuns: number;
}

export const defineCase = <T>(c: Case<T>): AnyCase => c as unknown as AnyCase;

export const expectOk = (value: Json = null): Expect => ({
  outcome: { ok: true, value },
});
export const expectSafe = (): Expect => ({ safe: true });
export const expectErr = (tag: string): Expect => ({ outcome: { ok: false, error: { _tag: tag } } });
/** What a spec result expects: ok with `value` (null unless given), or its error's tag. */
export const expectResult = <T>(
  r: Result<T, { readonly _tag: string }>,
  value: (v: T) => Json = () => null,
): Expect => (r.ok ? expectOk(value(r.value)) : expectErr(r.error._tag));
export const step = (op: string, args: JsonObject, expect: Expect, rules?: readonly string[]): Step =>
  rules === undefined ? { op, args, expect } : { op, args, expect, rules };

/** The same step charged to `rules` (see Step.rules). */
export const citing = (s: Step, ...rules: string[]): Step => ({ ...s, rules });

/** The level a step's difference counts at: a profile step is always profile level. */
export const stepLevel = (s: Step, caseLevel: Level): Level =>
  "profiles" in s.expect ? "profile" : "safe" in s.expect ? "safety" : caseLevel;
