/**
 * The deterministic engine: a scenario is a set of actors (guest driver, devices, backends)
 * advanced one step at a time on a virtual clock, with seeded randomness, a trace of what
 * happened, counters sampled into time series for the report, a log of injected faults and
 * how each was handled, and an oracle that stops the run at the first broken invariant.
 *
 * Determinism (SIM-DETERMINISM): nothing a scenario records may depend on the wall clock,
 * Math.random or I/O timing; the trace carries virtual time only. Effect-based devices see
 * the same virtual time through Effect's TestClock, which the engine moves in step with its
 * own clock.
 */
// Effect's modules by path, not through the `effect` and `effect/testing` indexes: an index
// loads every module of the package, about a second of start-up under tsx for `sim run`.
import * as Cause from "effect/Cause";
import * as Duration from "effect/Duration";
import * as Effect from "effect/Effect";
import * as Exit from "effect/Exit";
import type * as Scope from "effect/Scope";
import * as TestClock from "effect/testing/TestClock";
import { Rng } from "./rng.ts";
import { Trace, type TraceSink } from "./trace.ts";

export { Trace, type TraceFields, type TraceValue, type TraceSink } from "./trace.ts";

/**
 * Virtual time; only the engine and scenarios move it. Kept in whole nanoseconds so sums
 * of fractional microseconds stay exact (and traces tidy).
 */
export class VirtualClock {
  private ns = 0;
  /** Told of every advance (the engine samples the drain phase through it). */
  onAdvance: ((nowUs: number) => void) | null = null;
  get nowUs(): number {
    return this.ns / 1000;
  }
  get nowNs(): number {
    return this.ns;
  }
  advance(us: number): void {
    if (us > 0) {
      this.ns += Math.round(us * 1000);
      this.onAdvance?.(this.ns / 1000);
    }
  }
}

/** A named number the scenario updates in place (no allocation per update). */
export interface Metric {
  readonly name: string;
  readonly label: string;
  /** "counter" only grows; "gauge" is a level (occupancy, credit). */
  readonly kind: "counter" | "gauge";
  value: number;
}

export interface Series {
  readonly step: number[];
  readonly t: number[];
  readonly values: Record<string, number[]>;
}

/** Counters and gauges, sampled into series at most ~MAX_SAMPLES points per run. */
export class Metrics {
  readonly list: Metric[] = [];
  private readonly byName = new Map<string, Metric>();
  readonly series: Series = { step: [], t: [], values: {} };
  private every = 1;
  private static readonly MAX_SAMPLES = 600;

  private add(name: string, label: string, kind: "counter" | "gauge"): Metric {
    const have = this.byName.get(name);
    if (have !== undefined) return have;
    const m: Metric = { name, label, kind, value: 0 };
    this.list.push(m);
    this.byName.set(name, m);
    this.series.values[name] = this.series.step.map(() => 0);
    return m;
  }

  counter(name: string, label: string): Metric {
    return this.add(name, label, "counter");
  }

  gauge(name: string, label: string): Metric {
    return this.add(name, label, "gauge");
  }

  get(name: string): number {
    return this.byName.get(name)?.value ?? 0;
  }

  /**
   * Drain phase (the step number no longer moves, time does): a sample when at least the
   * mean spacing of the samples so far has passed since the last one, so the charts go on
   * at the same density until the run ends.
   */
  sampleByTime(step: number, t: number): void {
    const ts = this.series.t;
    const n = ts.length;
    if (n > 0) {
      const gap = n > 1 ? (ts[n - 1]! - ts[0]!) / (n - 1) : 1;
      if (t - ts[n - 1]! < Math.max(1, gap)) return;
    }
    this.sample(step, t, true, true);
  }

  /** Called by the engine after each step; keeps every `every`-th, halving when full. */
  sample(step: number, t: number, force = false, sameStep = false): void {
    if (!force && step % this.every !== 0) return;
    const s = this.series;
    const last = s.step.length - 1;
    if (force && last >= 0 && s.step[last] === step && (!sameStep || s.t[last] === t)) return;
    s.step.push(step);
    s.t.push(t);
    for (const m of this.list) s.values[m.name]!.push(m.value);
    if (s.step.length > Metrics.MAX_SAMPLES) {
      // Decimate deterministically: keep the even samples, double the interval.
      const keep = (a: number[]): number[] => a.filter((_, i) => i % 2 === 0);
      const st = keep(s.step);
      const tt = keep(s.t);
      s.step.length = 0;
      s.step.push(...st);
      s.t.length = 0;
      s.t.push(...tt);
      for (const k of Object.keys(s.values)) s.values[k] = keep(s.values[k]!);
      this.every *= 2;
    }
  }
}

export interface FaultRecord {
  readonly id: number;
  readonly step: number;
  readonly t: number;
  readonly kind: string;
  readonly detail: string;
  outcome: string;
}

/**
 * Every fault injected, and what the device did about it, in memory bounded by the number
 * of kinds and outcomes, not of faults: counts per kind and outcome, the faults still
 * pending, and the first EXAMPLES_PER_KIND of each kind as examples (the trace has them
 * all).
 */
export class FaultLog {
  static readonly EXAMPLES_PER_KIND = 20;
  /** Faults injected so far. */
  count = 0;
  /** The first few of each kind, in injection order (their outcomes fill in as handled). */
  readonly examples: FaultRecord[] = [];
  private readonly perKind = new Map<string, number>();
  private readonly counts = new Map<string, Map<string, number>>();
  private readonly pending = new Set<FaultRecord>();
  private readonly trace: Trace;
  private readonly clock: VirtualClock;

  constructor(trace: Trace, clock: VirtualClock) {
    this.trace = trace;
    this.clock = clock;
  }

  private bump(kind: string, outcome: string, by: number): void {
    let row = this.counts.get(kind);
    if (row === undefined) this.counts.set(kind, (row = new Map()));
    const n = (row.get(outcome) ?? 0) + by;
    if (n === 0) row.delete(outcome);
    else row.set(outcome, n);
  }

  inject(kind: string, detail: string): FaultRecord {
    const f: FaultRecord = {
      id: this.count++,
      step: this.trace.step,
      t: this.clock.nowUs,
      kind,
      detail,
      outcome: "pending",
    };
    this.pending.add(f);
    this.bump(kind, "pending", 1);
    const seen = this.perKind.get(kind) ?? 0;
    this.perKind.set(kind, seen + 1);
    if (seen < FaultLog.EXAMPLES_PER_KIND) this.examples.push(f);
    this.trace.event("fault", { id: f.id, kind, detail });
    return f;
  }

  handled(f: FaultRecord, outcome: string): void {
    if (f.outcome !== "pending") return;
    f.outcome = outcome;
    this.pending.delete(f);
    this.bump(f.kind, "pending", -1);
    this.bump(f.kind, outcome, 1);
    this.trace.event("fault-handled", { id: f.id, outcome });
  }

  /** The faults nothing has reacted to yet. */
  stillPending(): FaultRecord[] {
    return [...this.pending];
  }

  /** kind → outcome → count. */
  table(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [kind, row] of this.counts) {
      if (row.size === 0) continue;
      out[kind] = Object.fromEntries(row);
    }
    return out;
  }
}

/** Thrown (internally, by the oracle) to stop a run at a broken invariant. */
export class SimViolation extends Error {
  readonly rule: string;
  readonly step: number;
  constructor(rule: string, step: number, message: string) {
    super(message);
    this.rule = rule;
    this.step = step;
  }
}

/** The two virtqueue layouts (VIRTIO 1.2 §2.7 split, §2.8 packed). */
export type RingName = "split" | "packed";
export const RING_NAMES: readonly RingName[] = ["split", "packed"];

export interface RunOptions {
  readonly seed: number;
  /** Steps to run; ignored when durationUs is set. */
  readonly steps: number;
  /** Virtual time to run for, in µs. */
  readonly durationUs?: number;
  /** Probability per opportunity of injecting a fault (0 = none). */
  readonly faults: number;
  /** Check invariants with the reference model beside the devices. */
  readonly oracle: boolean;
  /** The virtqueue layout the guest and the devices use (default split; a scenario lists what it runs on in `rings`). */
  readonly ring?: RingName;
  /** Record the trace (the bench turns it off). */
  readonly trace: boolean;
  /** Where trace chunks go (a file, memory); null keeps only the hash (sim/trace.ts). */
  readonly traceSink?: TraceSink | null;
  /** Called every ~0.25 s of wall time with the step reached. */
  readonly onProgress?: (step: number, ctx: SimContext) => void;
}

/** What a scenario step sees. */
export class SimContext {
  readonly rng: Rng;
  readonly clock = new VirtualClock();
  readonly trace: Trace;
  readonly metrics = new Metrics();
  readonly faults: FaultLog;
  readonly oracle: boolean;
  readonly ring: RingName;
  readonly faultRate: number;
  readonly options: RunOptions;
  /** Facts about the run shown in the summary (features negotiated, queue sizes...). */
  readonly facts: Record<string, string | number | boolean> = {};
  /** Human notes shown in the summary (why a check was skipped, backend used...). */
  readonly notes: string[] = [];
  /** Set by the first failure, so that checks on the way out of a failed turn stay quiet. */
  failed = false;

  constructor(options: RunOptions) {
    this.options = options;
    this.rng = new Rng(options.seed);
    this.trace = new Trace(this.clock, options.trace, options.traceSink ?? null);
    this.faults = new FaultLog(this.trace, this.clock);
    this.oracle = options.oracle;
    this.ring = options.ring ?? "split";
    this.faultRate = options.faults;
  }

  get step(): number {
    return this.trace.step;
  }

  /** Stops the run: the invariant `rule` does not hold. */
  fail(rule: string, message: string): never {
    this.failed = true;
    this.trace.event("violation", { rule, message });
    throw new SimViolation(rule, this.step, message);
  }

  /** Oracle check; the message is built only on failure. */
  check(rule: string, holds: boolean, message: () => string): void {
    if (!holds) this.fail(rule, message());
  }
}

export interface ScenarioInstance {
  /** One step of the scenario: advance the clock, move the actors, check invariants. */
  step(ctx: SimContext): void | Effect.Effect<void>;
  /** Stop injecting new work, let what is in flight finish, check the end invariants. */
  drain(ctx: SimContext): void | Effect.Effect<void>;
}

export interface Skip {
  readonly skip: string;
}

export interface ChartSpec {
  readonly title: string;
  /** "level": the values as sampled; "rate": per-second rate of a counter over virtual time. */
  readonly kind: "level" | "rate";
  readonly unit: string;
  readonly series: readonly { readonly metric: string; readonly label: string }[];
}

export interface Scenario {
  readonly name: string;
  /** One line: what the scenario shows. */
  readonly summary: string;
  readonly defaultSteps: number;
  /** Steps and seeds `sim smoke` uses (fast, fixed). */
  readonly smoke: { readonly steps: number; readonly seeds: readonly number[]; readonly faults?: number };
  /** Default fault rate (hostile-guest injects by default). */
  readonly defaultFaults: number;
  /**
   * Why this scenario injects no faults, when it does not: `sim run` then refuses a
   * --faults rate above 0 with this reason. A scenario without it must inject at --faults.
   */
  readonly noFaults?: string;
  /**
   * What outside the simulator decides part of the run (a kernel's replies, how real sockets
   * split bytes), when something does: such a run is left out of the byte-for-byte promise.
   */
  readonly realIo?: string;
  /** Boots a real Linux guest under QEMU (seconds each under TCG): its own tests cover it. */
  readonly realGuest?: true;
  /** The rings `--ring` may choose (default: split only). */
  readonly rings?: readonly RingName[];
  readonly charts: readonly ChartSpec[];
  create(ctx: SimContext): Effect.Effect<ScenarioInstance | Skip, never, Scope.Scope>;
}

export interface Violation {
  readonly rule: string;
  readonly step: number;
  readonly message: string;
}

export interface RunResult {
  readonly scenario: string;
  readonly status: "passed" | "violated" | "skipped";
  readonly skipReason?: string;
  readonly violation?: Violation;
  readonly options: Omit<RunOptions, "traceSink" | "onProgress">;
  readonly steps: number;
  readonly virtualUs: number;
  readonly wallMs: number;
  readonly traceEvents: number;
  readonly traceSha256: string;
  /** Virtual time in set-up (before step 0), in the steps, and draining. */
  readonly phases: { readonly setupUs: number; readonly loadUs: number; readonly drainUs: number };
  readonly ctx: SimContext;
}

/** Plain steps run between two moves of Effect's TestClock (a power of two). */
const CLOCK_BATCH = 256;

const awaitTrace = (ctx: SimContext): Effect.Effect<void> => {
  const p = ctx.trace.pending!;
  ctx.trace.pending = null;
  return Effect.promise(() => p);
};

const isSkip = (x: ScenarioInstance | Skip): x is Skip => "skip" in x;

const runStepEffect = (r: void | Effect.Effect<void>): Effect.Effect<void> =>
  Effect.isEffect(r) ? (r as Effect.Effect<void>) : Effect.void;

/**
 * Runs a scenario to its end (or its first violation). Resources the scenario acquires
 * are released when this returns, whatever happened. Exceptions escaping device code are
 * SIM-NO-THROW violations: guest input must never make a device throw.
 */
export const runScenario = (scenario: Scenario, options: RunOptions): Effect.Effect<RunResult> => {
  const ctx = new SimContext(options);
  const started = performance.now();
  let lastProgress = started;
  const phase = { setupEnd: -1, loadEnd: -1 };
  const body = Effect.gen(function* () {
    ctx.trace.event("start", {
      scenario: scenario.name,
      seed: options.seed,
      faults: options.faults,
      oracle: options.oracle,
    });
    const made = yield* scenario.create(ctx);
    if (isSkip(made)) return made;
    const limitSteps = options.durationUs === undefined ? options.steps : Number.MAX_SAFE_INTEGER;
    phase.setupEnd = ctx.clock.nowUs;
    // The charts start where the steps do.
    ctx.metrics.sample(0, ctx.clock.nowUs, true);
    // Effect's TestClock follows the virtual clock. A step that returns an Effect runs with
    // it caught up (as it was when the step began) and moves it by what it took; a run of
    // plain steps moves it once per CLOCK_BATCH steps, since nothing can read it in
    // between (the fiber only yields there).
    let clockNs = ctx.clock.nowNs;
    const catchUp = (): Effect.Effect<void> => {
      const lag = ctx.clock.nowNs - clockNs;
      clockNs = ctx.clock.nowNs;
      return TestClock.adjust(Duration.nanos(BigInt(lag)));
    };
    for (let step = 0; step < limitSteps; step++) {
      if (options.durationUs !== undefined && ctx.clock.nowUs >= options.durationUs) break;
      ctx.trace.step = step;
      const before = ctx.clock.nowNs;
      const r = made.step(ctx);
      const effect = Effect.isEffect(r);
      if (effect) {
        if (before !== clockNs) {
          // The clock as the step found it; what the step itself took comes after.
          const lag = before - clockNs;
          clockNs = before;
          yield* TestClock.adjust(Duration.nanos(BigInt(lag)));
        }
        yield* r as Effect.Effect<void>;
      }
      // Every step takes at least a microsecond so a --duration run always ends.
      if (ctx.clock.nowNs === before) ctx.clock.advance(1);
      if (effect || (step & (CLOCK_BATCH - 1)) === CLOCK_BATCH - 1) yield* catchUp();
      ctx.metrics.sample(step, ctx.clock.nowUs);
      // The trace's writer is behind (back-pressure): let it catch up.
      if (ctx.trace.pending !== null) yield* awaitTrace(ctx);
      if (options.onProgress !== undefined && (step & 63) === 0) {
        const now = performance.now();
        if (now - lastProgress >= 250) {
          lastProgress = now;
          options.onProgress(step, ctx);
        }
      }
    }
    yield* catchUp();
    ctx.trace.step++;
    phase.loadEnd = ctx.clock.nowUs;
    ctx.trace.event("drain");
    const drainStep = ctx.trace.step;
    ctx.clock.onAdvance = (t) => ctx.metrics.sampleByTime(drainStep, t);
    yield* runStepEffect(made.drain(ctx));
    ctx.clock.onAdvance = null;
    ctx.metrics.sample(ctx.trace.step, ctx.clock.nowUs, true, true);
    ctx.trace.event("end");
    ctx.trace.flush();
    if (ctx.trace.pending !== null) yield* awaitTrace(ctx);
    return undefined;
  });
  return Effect.scoped(body).pipe(
    Effect.provide(TestClock.layer()),
    Effect.exit,
    Effect.map((exit): RunResult => {
      let status: RunResult["status"] = "passed";
      let violation: Violation | undefined;
      let skipReason: string | undefined;
      if (Exit.isSuccess(exit)) {
        if (exit.value !== undefined) {
          status = "skipped";
          skipReason = exit.value.skip;
          ctx.trace.event("skip", { reason: skipReason });
        }
      } else {
        status = "violated";
        const thrown = Cause.squash(exit.cause);
        if (thrown instanceof SimViolation) {
          violation = { rule: thrown.rule, step: thrown.step, message: thrown.message };
        } else {
          // Where it was thrown: a device file (a device bug) or the simulator's own (the
          // last such folder on the line: the checkout itself may sit under a "sim" folder).
          const at =
            thrown instanceof Error
              ? (/.*\/((?:impl|sim|spec)\/[^:)]+:\d+)/.exec(thrown.stack ?? "")?.[1] ?? "unknown place")
              : "unknown place";
          const message = `${thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown)} at ${at}`;
          violation = { rule: "SIM-NO-THROW", step: ctx.step, message: `exception escaped: ${message}` };
          ctx.trace.event("violation", { rule: violation.rule, message: violation.message });
        }
      }
      ctx.clock.onAdvance = null;
      const { traceSink: _s, onProgress: _p, ...rest } = options;
      const end = ctx.clock.nowUs;
      const setupEnd = phase.setupEnd < 0 ? end : phase.setupEnd;
      const loadEnd = phase.loadEnd < 0 ? end : phase.loadEnd;
      const phases = { setupUs: setupEnd, loadUs: loadEnd - setupEnd, drainUs: end - loadEnd };
      const ranOn = options.durationUs !== undefined ? ranOnReason(options.durationUs, phases) : undefined;
      if (ranOn !== undefined) ctx.notes.push(ranOn);
      const sha = ctx.trace.digest();
      return {
        scenario: scenario.name,
        status,
        ...(skipReason !== undefined ? { skipReason } : {}),
        ...(violation !== undefined ? { violation } : {}),
        options: rest,
        steps: ctx.trace.step,
        virtualUs: ctx.clock.nowUs,
        wallMs: performance.now() - started,
        traceEvents: ctx.trace.events,
        traceSha256: sha,
        phases,
        ctx,
      };
    }),
  );
};

const ms = (us: number): string => `${(us / 1000).toFixed(1)} ms`;

/**
 * Why a --duration run ended past its duration, or undefined when it did not: the steps
 * stop at the duration, but set-up (before the first step) and the drain (what is in
 * flight must complete for the end checks) take virtual time of their own.
 */
export const ranOnReason = (
  durationUs: number,
  p: { readonly setupUs: number; readonly loadUs: number; readonly drainUs: number },
): string | undefined => {
  const total = p.setupUs + p.loadUs + p.drainUs;
  if (total <= durationUs) return undefined;
  const why: string[] = [];
  if (p.setupUs > 0) why.push(`set-up took ${ms(p.setupUs)}`);
  if (p.setupUs + p.loadUs > durationUs)
    why.push(`the last step ended at ${ms(p.setupUs + p.loadUs)} (a step is not cut short)`);
  if (p.drainUs > 0)
    why.push(`draining what was in flight took ${ms(p.drainUs)} (the end checks need it all delivered)`);
  return `ran ${ms(total - durationUs)} past --duration ${ms(durationUs)}: steps stopped at ${ms(
    p.setupUs + p.loadUs,
  )}; ${why.join("; ")}`;
};

/** The one-line command that replays a run exactly. */
export const replayCommand = (scenario: string, o: Omit<RunOptions, "traceSink" | "onProgress">): string => {
  const parts = ["npx tsx sim run", scenario, `--seed ${o.seed}`];
  parts.push(o.durationUs !== undefined ? `--duration ${o.durationUs}us` : `--steps ${o.steps}`);
  // Always: a scenario's default rate may differ from the rate this run used (e.g. 0).
  parts.push(`--faults ${o.faults}`);
  if (!o.oracle) parts.push("--no-oracle");
  return parts.join(" ");
};
