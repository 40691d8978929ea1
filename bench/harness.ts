/**
 * Benchmarks: each `bench/<subject>.bench.ts` default-exports a `BenchSuite`. Figures are
 * reported beside a baseline measured in the same process (a bare DataView loop, one
 * memcpy, raw writev), because these machines are noisy: the ratio is what to compare.
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
  /** The target, in words, and whether this run met it. */
  readonly target?: { readonly text: string; readonly met: boolean };
  readonly notes?: string;
}

export interface BenchSuite {
  readonly name: string;
  run(log: (line: string) => void): Promise<readonly BenchFigure[]>;
}

/**
 * Runs `body(n)` with n growing until one call lasts at least `minMs`, then reports the
 * best of `repeats` timed calls as operations per second. `body` returns a value the
 * caller folds so the work cannot be optimised away.
 */
export const opsPerSecond = (
  body: (n: number) => number,
  opts: { minMs?: number; repeats?: number } = {},
): number => {
  const minMs = opts.minMs ?? 200;
  const repeats = opts.repeats ?? 5;
  let n = 1000;
  let sink = 0;
  for (;;) {
    const t0 = performance.now();
    sink += body(n);
    const dt = performance.now() - t0;
    if (dt >= minMs / 4 || n > 1e9) break;
    n *= 4;
  }
  let best = 0;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    sink += body(n);
    const dt = (performance.now() - t0) / 1000;
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
