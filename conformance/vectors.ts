/**
 * Vectors: deterministic request / expected-response files, replayable without Node.
 *
 * DIR/manifest.json  {format, version, protocol, seed, judging, cases: [{id, title, rules, level, ops, file, runs}]}
 * DIR/<case>.jsonl   one step per line: {"run": k, "op", "args", "rules"?, "expect": Outcome}
 *                    or, for profile steps, {"run": k, "op", "args", "profiles": {profile: Outcome}}
 *                    or, for hostile input, {"run": k, "op", "args", "safe": true} (any answer but a crash)
 * Every run starts with a `reset` step. docs/conformance-protocol.md describes how to compare.
 */
import fc from "fast-check";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { JsonObject, Outcome } from "./protocol.ts";
import {
  ERROR_ALIASES,
  NOT_A_REFUSAL,
  OPTIONAL_WALK_KEYS,
  OPTIONAL_WALK_OPS,
  PROTOCOL_VERSION,
  SKIP_TAGS,
  isObject,
} from "./protocol.ts";
import type { AnyCase, Level, Profile, Step } from "./cases/types.ts";
import { LEVELS, PROFILES } from "./cases/types.ts";
import { RESET_STEP } from "./runner.ts";

export const VECTORS_FORMAT = "virtio-lab-conformance-vectors";
export const VECTORS_VERSION = 1;
export const DEFAULT_VECTOR_SEED = 0x5eed;

export interface ManifestCase {
  readonly id: string;
  readonly title: string;
  readonly rules: readonly string[];
  readonly level: Level;
  readonly ops: readonly string[];
  readonly file: string;
  readonly runs: number;
}

/**
 * The tables a replayer judges with (docs/conformance-protocol.md §4, §4.1, §6, §8), written
 * into every manifest so a replayer in another language copies none of them.
 */
export interface Judging {
  readonly profiles: readonly string[];
  readonly skipTags: readonly string[];
  readonly notARefusal: readonly string[];
  readonly optionalWalkKeys: readonly string[];
  readonly optionalWalkOps: readonly string[];
  readonly errorAliases: readonly { readonly op: string; readonly peer: string; readonly tag: string }[];
}

export const JUDGING: Judging = {
  profiles: PROFILES,
  skipTags: SKIP_TAGS,
  notARefusal: NOT_A_REFUSAL,
  optionalWalkKeys: OPTIONAL_WALK_KEYS,
  optionalWalkOps: OPTIONAL_WALK_OPS,
  errorAliases: ERROR_ALIASES.map((a) => ({ op: a.op, peer: a.peer, tag: a.tag })),
};

export interface Manifest {
  readonly format: string;
  readonly version: number;
  readonly protocol: number;
  readonly seed: number;
  /** Absent in manifests written before it was added; `conform --vectors` does not need it. */
  readonly judging?: Judging;
  readonly cases: readonly ManifestCase[];
}

export interface VectorCase {
  readonly meta: ManifestCase;
  readonly runs: readonly (readonly Step[])[];
}

/** The runs of one case: its examples, then `runs` draws from a seed derived from the case id. */
export const caseVectors = (c: AnyCase, runs: number, seed: number): (readonly Step[])[] => {
  let h = seed | 0;
  for (const ch of c.id) h = (Math.imul(h, 31) + ch.charCodeAt(0)) | 0;
  const inputs = [...c.examples, ...(runs > 0 ? fc.sample(c.arb, { seed: h, numRuns: runs }) : [])];
  // Steps citing the case's setup rules say so, so a replay charges them alike.
  const cite = (s: Step): Step =>
    s.rules === undefined && c.setupRules !== undefined ? { ...s, rules: c.setupRules } : s;
  return inputs.map((input) => [RESET_STEP, ...c.steps(input).map(cite)]);
};

const stepLine = (run: number, s: Step): string => {
  const base = { run, op: s.op, args: s.args, ...(s.rules !== undefined ? { rules: s.rules } : {}) };
  return JSON.stringify(
    "outcome" in s.expect
      ? { ...base, expect: s.expect.outcome }
      : "safe" in s.expect
        ? { ...base, safe: true }
        : {
            ...base,
            profiles: s.expect.profiles,
            ...(s.expect.keys !== undefined ? { keys: s.expect.keys } : {}),
          },
  );
};

/** Writes one file per case and the manifest; returns the manifest. */
export const writeVectors = (
  dir: string,
  cases: readonly { meta: Omit<ManifestCase, "file" | "runs">; runs: readonly (readonly Step[])[] }[],
  seed: number,
): Manifest => {
  mkdirSync(dir, { recursive: true });
  const entries: ManifestCase[] = [];
  for (const c of cases) {
    const file = `${c.meta.id}.jsonl`;
    const lines: string[] = [];
    c.runs.forEach((steps, k) => {
      for (const s of steps) lines.push(stepLine(k, s));
    });
    writeFileSync(join(dir, file), lines.join("\n") + "\n");
    entries.push({ ...c.meta, file, runs: c.runs.length });
  }
  const manifest: Manifest = {
    format: VECTORS_FORMAT,
    version: VECTORS_VERSION,
    protocol: PROTOCOL_VERSION,
    seed,
    judging: JUDGING,
    cases: entries,
  };
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  return manifest;
};

export const generateVectors = (
  dir: string,
  cases: readonly AnyCase[],
  runs: number,
  seed = DEFAULT_VECTOR_SEED,
): Manifest =>
  writeVectors(
    dir,
    cases.map((c) => ({
      meta: { id: c.id, title: c.title, rules: c.rules, level: c.level, ops: c.ops },
      runs: caseVectors(c, runs, seed),
    })),
    seed,
  );

const isOutcome = (v: unknown): v is Outcome =>
  isObject(v) &&
  (v["ok"] === true
    ? "value" in v
    : v["ok"] === false && isObject(v["error"]) && typeof v["error"]["_tag"] === "string");

/** Reads a vectors directory; a string says what is wrong with it. */
export const readVectors = (dir: string): { manifest: Manifest; cases: VectorCase[] } | string => {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as Manifest;
  } catch (e) {
    return `cannot read ${join(dir, "manifest.json")}: ${e instanceof Error ? e.message : String(e)}`;
  }
  if (manifest.format !== VECTORS_FORMAT || !Array.isArray(manifest.cases))
    return `${join(dir, "manifest.json")} is not a ${VECTORS_FORMAT} manifest`;
  const cases: VectorCase[] = [];
  const strings = (x: unknown): boolean => Array.isArray(x) && x.every((k) => typeof k === "string");
  for (const meta of manifest.cases as unknown[]) {
    // A hand-edited or hostile manifest is a usage error with a message, never a crash.
    if (
      !isObject(meta) ||
      typeof meta["id"] !== "string" ||
      typeof meta["file"] !== "string" ||
      !strings(meta["ops"]) ||
      !strings(meta["rules"])
    )
      return `${join(dir, "manifest.json")}: each case needs a string id and file and string lists ops and rules`;
    if (!LEVELS.includes(meta["level"] as (typeof LEVELS)[number]))
      return `case ${meta["id"]}: unknown level ${String(meta["level"])}`;
    const c = meta as unknown as Manifest["cases"][number];
    let text: string;
    try {
      text = readFileSync(join(dir, c.file), "utf8");
    } catch (e) {
      return `cannot read ${c.file}: ${e instanceof Error ? e.message : String(e)}`;
    }
    const runs: Step[][] = [];
    let lineNo = 0;
    for (const line of text.split("\n")) {
      lineNo++;
      if (line.trim() === "") continue;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        return `${c.file}:${lineNo}: not JSON`;
      }
      if (!isObject(v) || typeof v["run"] !== "number" || typeof v["op"] !== "string" || !isObject(v["args"]))
        return `${c.file}:${lineNo}: expected {run, op, args, expect | profiles}`;
      // Runs are numbered 0, 1, 2, ... as the writer numbers them: bound them to this file.
      if (!Number.isInteger(v["run"]) || v["run"] < 0 || v["run"] > lineNo)
        return `${c.file}:${lineNo}: run must be a whole number from 0 to the line number`;
      const rules = v["rules"];
      if (rules !== undefined && !strings(rules))
        return `${c.file}:${lineNo}: rules must be a list of strings`;
      const cites = rules !== undefined ? { rules: rules as string[] } : {};
      let s: Step;
      if (isOutcome(v["expect"]))
        s = { op: v["op"], args: v["args"] as JsonObject, expect: { outcome: v["expect"] }, ...cites };
      else if (v["safe"] === true)
        s = { op: v["op"], args: v["args"] as JsonObject, expect: { safe: true }, ...cites };
      else if (isObject(v["profiles"])) {
        const profiles: { [P in Profile]?: Outcome } = {};
        for (const p of PROFILES) {
          const o = v["profiles"][p];
          if (o !== undefined) {
            if (!isOutcome(o)) return `${c.file}:${lineNo}: profile ${p} is not an outcome`;
            profiles[p] = o;
          }
        }
        const keys = v["keys"];
        if (keys !== undefined && !(Array.isArray(keys) && keys.every((k) => typeof k === "string")))
          return `${c.file}:${lineNo}: keys must be a list of strings`;
        s = {
          op: v["op"],
          args: v["args"] as JsonObject,
          expect: { profiles, ...(keys !== undefined ? { keys: keys as string[] } : {}) },
          ...cites,
        };
      } else return `${c.file}:${lineNo}: expected an "expect" outcome or "profiles"`;
      const k = v["run"];
      while (runs.length <= k) runs.push([]);
      runs[k]!.push(s);
    }
    cases.push({ meta: c, runs: runs.filter((r) => r.length > 0) });
  }
  return { manifest, cases };
};
