/**
 * Benchmarks: each `bench/<subject>.bench.ts` default-exports a `BenchSuite`. Figures are
 * reported beside a baseline measured in the same process (a bare DataView loop, one
 * memcpy, raw writev), because these machines are noisy: the ratio is what to compare.
 *
 * A figure with a target: build it with `row` (the ratio and met / not met are computed, in
 * one way for every suite), e.g.
 *
 *   row({ case: "echo, 64 KiB writes", value: mbps, unit: "MB/s", issue: "18",
 *         reference: { name: "raw Unix-socket echo", value: raw }, target: { atLeast: 0.6 } })
 *
 * Figures written by hand as `BenchFigure` objects keep working as they are.
 */

export interface BenchFigure {
  /** What was measured, e.g. `pop+addUsed+publish, 1-descriptor chains, size 256`. */
  readonly case: string;
  readonly value: number;
  /** e.g. `chains/s`, `MB/s`, `frames/s`. */
  readonly unit: string;
  /** The baseline measured in the same process, same unit. */
  readonly baseline?: { readonly name: string; readonly value: number };
  /** value / baseline.value, or how the target is phrased (`>= 0.8`). */
  readonly ratio?: number;
  /**
   * The target, in words, whether this run met it, and whether a floor measured in this run
   * (the best a correct implementation reaches against the same reference) misses it too.
   */
  readonly target?: { readonly text: string; readonly met: boolean; readonly floor?: boolean };
  readonly notes?: string;
  /** The issue whose target this is (reports/bench.md lists them first), e.g. "18". */
  readonly issue?: string;
  /**
   * Where the baseline came from when it was not measured in this run (an older version
   * recorded once, with the command and the date), shown beside it.
   */
  readonly recorded?: string;
}

/** A target on the ratio value / reference (or on the value itself with `on: "value"`). */
export interface RowTarget {
  readonly atLeast?: number;
  readonly atMost?: number;
  /** What the bound applies to: the ratio (default) or the value in its unit. */
  readonly on?: "ratio" | "value";
  /** Words for the target; default: ">= 0.7 of <reference name>" and the like. */
  readonly text?: string;
  /**
   * The floor measured in the same run, on the same scale as the bound: what the best
   * correct implementation reaches (a class with only the checks guest input needs, the
   * ceiling the parts allow). A target this floor misses too is reported as "floor".
   */
  readonly floor?: number;
}

export interface RowInput {
  readonly case: string;
  readonly value: number;
  readonly unit: string;
  readonly reference?: { readonly name: string; readonly value: number; readonly recorded?: string };
  readonly target?: RowTarget;
  readonly notes?: string;
  readonly issue?: string;
}

/**
 * One figure beside its reference: the ratio value / reference, and the target with
 * met / not met. A ratio target needs a reference.
 */
export const row = (r: RowInput): BenchFigure => {
  const ratio = r.reference === undefined ? undefined : r.value / r.reference.value;
  let target: BenchFigure["target"];
  if (r.target !== undefined) {
    const t = r.target;
    const on = t.on ?? "ratio";
    const x = on === "ratio" ? ratio : r.value;
    if (x === undefined)
      throw new Error(`bench row ${JSON.stringify(r.case)}: a ratio target needs a reference`);
    const bounds = [
      ...(t.atLeast !== undefined ? [`>= ${t.atLeast}`] : []),
      ...(t.atMost !== undefined ? [`<= ${t.atMost}`] : []),
    ].join(" and ");
    const of = on === "ratio" ? ` of ${r.reference!.name}` : ` ${r.unit}`;
    const within = (y: number): boolean =>
      (t.atLeast === undefined || y >= t.atLeast) && (t.atMost === undefined || y <= t.atMost);
    const met = Number.isFinite(x) && within(x);
    target = {
      text: t.text ?? `${bounds}${of}`,
      met,
      ...(t.floor !== undefined ? { floor: !met && !within(t.floor) } : {}),
    };
  }
  return {
    case: r.case,
    value: r.value,
    unit: r.unit,
    ...(r.reference !== undefined ? { baseline: { name: r.reference.name, value: r.reference.value } } : {}),
    ...(r.reference?.recorded !== undefined ? { recorded: r.reference.recorded } : {}),
    ...(ratio !== undefined ? { ratio } : {}),
    ...(target !== undefined ? { target } : {}),
    ...(r.notes !== undefined ? { notes: r.notes } : {}),
    ...(r.issue !== undefined ? { issue: r.issue } : {}),
  };
};

/** The middle value (the upper one of an even count). */
export const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((x, y) => x - y);
  return sorted[sorted.length >> 1]!;
};

export interface BenchSuite {
  readonly name: string;
  run(log: (line: string) => void): Promise<readonly BenchFigure[]>;
}

/** Seconds of CPU time this process has used (all its threads), for `opsPerSecond`'s `clock: "cpu"`. */
const cpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/**
 * Runs `body(n)` with n growing until one call lasts at least `minMs`, then reports the
 * best of `repeats` timed calls as operations per second. `body` returns a value the
 * caller folds so the work cannot be optimised away.
 *
 * `clock: "cpu"` times with the process's CPU time instead of the wall clock: for a loop that
 * only computes (no I/O, no waiting) on a shared machine, the time it was not scheduled then
 * does not count, so ratios of two such loops hold under load. Wall clock is the default.
 */
export const opsPerSecond = (
  body: (n: number) => number,
  opts: { minMs?: number; repeats?: number; clock?: "wall" | "cpu" } = {},
): number => {
  const minMs = opts.minMs ?? 200;
  const repeats = opts.repeats ?? 5;
  const now = opts.clock === "cpu" ? (): number => cpuSeconds() * 1000 : (): number => performance.now();
  let n = 1000;
  let sink = 0;
  for (;;) {
    const t0 = now();
    sink += body(n);
    const dt = now() - t0;
    if (dt >= minMs / 4 || n > 1e9) break;
    n *= 4;
  }
  let best = 0;
  for (let r = 0; r < repeats; r++) {
    const t0 = now();
    sink += body(n);
    const dt = (now() - t0) / 1000;
    best = Math.max(best, n / dt);
  }
  if (sink === Number.MIN_VALUE) console.log(sink); // keep `sink` observable
  return best;
};

/** Bytes allocated on the heap while running `body` once (after a GC when exposed). */
export const heapGrowth = (body: () => void): number => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage().heapUsed;
  body();
  const after = process.memoryUsage().heapUsed;
  return after - before;
};
