/**
 * How every property in this project runs.
 *
 * - `FC_SEED` and `FC_PATH` replay a failure exactly (both are printed when one fails).
 * - `FC_NUM_RUNS` sets every property's run count; `FC_SCALE` multiplies each property's
 *   default (the deep run uses `FC_SCALE=100`).
 * - `FC_ONLY=<name>` runs only the property with exactly that name.
 * Each result (name, rules, runs, seed, status, counterexample) is appended to
 * `reports/.results/properties-<pid>.jsonl`; scripts/ turn those into reports.
 */
import fc from "fast-check";
import { it } from "vitest";
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { resultsDir } from "../lib/paths.ts";

const intEnv = (name: string): number | undefined => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  return n;
};

/** The run count a property with this default gets in this process. */
export const runsFor = (defaultRuns: number): number => {
  const fixed = intEnv("FC_NUM_RUNS");
  if (fixed !== undefined) return Math.max(1, fixed);
  const scale = Number(process.env["FC_SCALE"] ?? "1");
  return Math.max(1, Math.round(defaultRuns * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
};

export interface PropertyOptions {
  /** Default run count at scale 1 (fast-check's default is 100). */
  readonly numRuns?: number;
  /** Extra fast-check parameters (e.g. `endOnFailure`). */
  readonly params?: Omit<fc.Parameters<unknown>, "numRuns" | "seed" | "path">;
}

export interface PropertyRecord {
  readonly name: string;
  readonly rules: readonly string[];
  readonly file: string;
  readonly numRuns: number;
  readonly seed: number;
  readonly status: "passed" | "failed";
  readonly path?: string;
  readonly counterexample?: string;
  readonly ms: number;
}

const record = (r: PropertyRecord): void => {
  try {
    mkdirSync(resultsDir, { recursive: true });
    appendFileSync(join(resultsDir, `properties-${process.pid}.jsonl`), JSON.stringify(r) + "\n");
  } catch {
    // Reports are a by-product; a read-only checkout must not fail the property.
  }
};

const callerFile = (): string => {
  const stack = new Error().stack ?? "";
  const line = stack.split("\n").find((l) => l.includes("/properties/") && !l.includes("harness.ts"));
  const m = line?.match(/(properties\/[^:)]+)/);
  return m?.[1] ?? "properties";
};

/**
 * Register a property as a test named `<name> [RULE-ID ...]`. The rule ids are what
 * reports/traceability.md credits this property with.
 */
export function property<Ts>(
  name: string,
  rules: readonly string[],
  prop: fc.IProperty<Ts> | fc.IAsyncProperty<Ts>,
  options: PropertyOptions = {},
): void {
  const file = callerFile();
  const only = process.env["FC_ONLY"];
  const title = rules.length > 0 ? `${name} [${rules.join(" ")}]` : name;
  // Exact match, so a replay command never applies one property's seed and path to another.
  const register = only !== undefined && only !== "" && name !== only ? it.skip : it;
  register(title, async () => {
    const numRuns = runsFor(options.numRuns ?? 100);
    const seed = intEnv("FC_SEED") ?? (Date.now() ^ (Math.random() * 0x100000000)) | 0;
    const path = process.env["FC_PATH"];
    const started = performance.now();
    const params: fc.Parameters<Ts> = {
      ...(options.params as fc.Parameters<Ts> | undefined),
      numRuns,
      seed,
      ...(path !== undefined && path !== "" ? { path } : {}),
    };
    const out = await fc.check(prop as fc.IRawProperty<Ts>, params);
    const ms = Math.round(performance.now() - started);
    if (out.failed) {
      // fast-check 4's report leaves out what the predicate threw; add it.
      const thrown = out.errorInstance === null ? "" : `\nThrown: ${String(out.errorInstance)}`;
      const message = (fc.defaultReportMessage(out) ?? "property failed") + thrown;
      const counterexample = out.counterexample === null ? undefined : fc.stringify(out.counterexample);
      record({
        name,
        rules,
        file,
        numRuns,
        seed,
        status: "failed",
        ...(out.counterexamplePath !== null ? { path: out.counterexamplePath } : {}),
        ...(counterexample !== undefined ? { counterexample } : {}),
        ms,
      });
      const quoted = `'${name.replaceAll("'", `'\\''`)}'`; // names have spaces: quote for the shell
      const replay = `FC_SEED=${out.seed} FC_PATH=${out.counterexamplePath ?? ""} FC_ONLY=${quoted} npx vitest run ${file}`;
      throw new Error(`${name}: ${message}\nReplay: ${replay}`);
    }
    record({ name, rules, file, numRuns, seed, status: "passed", ms });
  });
}
