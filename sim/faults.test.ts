/** --faults: every scenario injects faults that make sense for it, or refuses the option. */
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import { main, type Io } from "./cli.ts";
import { runScenario } from "./engine.ts";
import { reportData } from "./report.ts";
import { findScenario, scenarios } from "./scenarios/index.ts";

const capture = (): Io & { stdout: string[]; stderr: string[] } => {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: null };
};

describe("--faults in every scenario [SIM-HOSTILE-SERVE SIM-BOUNDS SIM-NO-THROW]", () => {
  for (const s of scenarios)
    if (s.noFaults !== undefined)
      it(`${s.name} refuses --faults above 0 with its reason (exit 2)`, async () => {
        const io = capture();
        expect(await main(["run", s.name, "--faults", "0.1", "--no-report"], io)).toBe(2);
        expect(io.stderr[0]).toBe(
          `sim run: ${s.name} takes no --faults: ${s.noFaults}; scenarios that inject: ${scenarios
            .filter((x) => x.noFaults === undefined)
            .map((x) => x.name)
            .join(", ")}`,
        );
        expect(io.stdout).toEqual([]);
      });
    else
      it(`${s.name} injects faults at --faults 0.2, each one handled, and still passes`, async () => {
        for (const seed of [1, 2]) {
          const r = await Effect.runPromise(
            runScenario(s, { seed, steps: 300, faults: 0.2, oracle: true, trace: false }),
          );
          expect(r.violation).toBeUndefined();
          if (r.status === "skipped") return;
          expect(r.status).toBe("passed");
          const list = r.ctx.faults.list;
          expect(list.length).toBeGreaterThan(10);
          expect(list.filter((f) => f.outcome === "pending")).toEqual([]);
          expect(reportData(s, r).faults.none).toBeNull();
        }
      });

  it("the report advises --faults only where it was not given and the scenario injects", async () => {
    const q = findScenario("queue")!;
    const none = async (faults: number) =>
      reportData(
        q,
        await Effect.runPromise(runScenario(q, { seed: 1, steps: 1, faults, oracle: true, trace: false })),
      ).faults.none;
    expect(await none(0)).toBe("No faults injected in this run (use --faults RATE).");
    expect(await none(1e-9)).toMatch(
      /^No fault was injected at rate 1e-9: no opportunity came up in \d+ steps\.$/,
    );
    const usb = scenarios.find((s) => s.noFaults !== undefined)!;
    const r = await Effect.runPromise(
      runScenario(usb, { seed: 1, steps: 1, faults: 0, oracle: true, trace: false }),
    );
    expect(reportData(usb, r).faults.none).toBe(`${usb.name} injects no faults: ${usb.noFaults}.`);
  });
});
