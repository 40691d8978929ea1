/** --duration is honoured (or the run says why it went on), and the charts cover the whole run. */
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import { ranOnReason, runScenario } from "./engine.ts";
import { findScenario, scenarios } from "./scenarios/index.ts";

const run = (name: string, o: { steps?: number; durationUs?: number; seed?: number }) =>
  Effect.runPromise(
    runScenario(findScenario(name)!, {
      seed: o.seed ?? 1,
      steps: o.steps ?? 0,
      ...(o.durationUs !== undefined ? { durationUs: o.durationUs } : {}),
      faults: 0,
      oracle: true,
      trace: false,
    }),
  );

/** The largest gap between consecutive samples, as a fraction of the run's virtual time. */
const worstGap = (t: readonly number[], total: number): number => {
  let g = 0;
  for (let i = 1; i < t.length; i++) g = Math.max(g, t[i]! - t[i - 1]!);
  return g / total;
};

describe("--duration and the drain phase", () => {
  it("usb-vsock --duration 20ms: the steps stop at 20 ms; what ran on is set-up and drain, and the run says so", async () => {
    const r = await run("usb-vsock", { durationUs: 20_000 });
    expect(r.status).toBe("passed");
    const { setupUs, loadUs, drainUs } = r.phases;
    expect(setupUs + loadUs).toBeGreaterThanOrEqual(20_000);
    // A step moves the clock by the link latency / 5 at most (250 µs / 5).
    expect(setupUs + loadUs).toBeLessThanOrEqual(20_000 + 50);
    expect(setupUs + loadUs + drainUs).toBe(r.virtualUs);
    expect(r.virtualUs).toBeGreaterThan(20_000);
    expect(r.ctx.notes.join("\n")).toMatch(
      /^ran [\d.]+ ms past --duration 20\.0 ms: steps stopped at 20\.0 ms; set-up took [\d.]+ ms; draining what was in flight took [\d.]+ ms/m,
    );
  });

  it("a note about running on exactly when the run ended past its duration", async () => {
    expect(ranOnReason(2_000, { setupUs: 0, loadUs: 2_000, drainUs: 0 })).toBeUndefined();
    const r = await run("queue", { durationUs: 2_000 });
    expect(r.phases.setupUs + r.phases.loadUs).toBeGreaterThanOrEqual(2_000);
    expect(r.phases.setupUs + r.phases.loadUs).toBeLessThan(2_002);
    expect(r.ctx.notes.some((n) => n.startsWith("ran "))).toBe(r.virtualUs > 2_000);
  });

  // linux-* scenarios boot a kernel under QEMU (minutes under TCG): their own tests cover them.
  for (const s of scenarios.filter((x) => x.realGuest !== true))
    it(`${s.name}: the samples span the run from its first step to its end, with no gap over 1/50 of it`, async () => {
      const r = await run(s.name, { steps: 200 });
      if (r.status === "skipped") return;
      expect(r.status).toBe("passed");
      const t = r.ctx.metrics.series.t;
      expect(t[0]).toBe(r.phases.setupUs);
      expect(t[t.length - 1]).toBe(r.virtualUs);
      expect(worstGap(t, r.virtualUs - r.phases.setupUs)).toBeLessThanOrEqual(1 / 50);
    });
});
