/**
 * Simulator throughput: virtio-net chains (TX and RX) simulated per second of wall time in
 * the net-loopback scenario, with the oracle (reference model, bounds guard, notification
 * and delivery checks) on and off. The ratio says what the checking costs.
 */
import { Effect } from "effect";
import type { BenchFigure, BenchSuite } from "./harness.ts";
import { runScenario } from "../sim/engine.ts";
import { netLoopbackScenario } from "../sim/scenarios/net-loopback.ts";

const chainsOf = (get: (name: string) => number): number =>
  ["evt", "noevt"].reduce((a, p) => a + get(`${p}.frames.sent`) + get(`${p}.frames.received`), 0);

const measure = async (oracle: boolean, steps: number): Promise<{ chainsPerSec: number; chains: number }> => {
  let best = 0;
  let chains = 0;
  for (let rep = 0; rep < 3; rep++) {
    const t0 = performance.now();
    const r = await Effect.runPromise(
      runScenario(netLoopbackScenario, { seed: 7 + rep, steps, faults: 0, oracle, trace: false }),
    );
    const dt = (performance.now() - t0) / 1000;
    if (r.status !== "passed")
      throw new Error(`net-loopback ${r.status}: ${r.violation?.message ?? r.skipReason}`);
    chains = chainsOf((n) => r.ctx.metrics.get(n));
    best = Math.max(best, chains / dt);
  }
  return { chainsPerSec: best, chains };
};

const suite: BenchSuite = {
  name: "simulator",
  async run(log) {
    const steps = 3000;
    await measure(false, 300); // warm-up: JIT the device and the driver model
    const off = await measure(false, steps);
    log(`oracle off: ${off.chainsPerSec.toFixed(0)} chains/s (${off.chains} chains per run)`);
    const on = await measure(true, steps);
    log(`oracle on:  ${on.chainsPerSec.toFixed(0)} chains/s`);
    const figures: BenchFigure[] = [
      {
        case: `net-loopback, ${steps} steps, oracle off`,
        value: off.chainsPerSec,
        unit: "chains/s",
        notes: "TX and RX chains of both devices (with and without EVENT_IDX), trace off",
      },
      {
        case: `net-loopback, ${steps} steps, oracle on`,
        value: on.chainsPerSec,
        unit: "chains/s",
        baseline: { name: "same run, oracle off", value: off.chainsPerSec },
        ratio: on.chainsPerSec / off.chainsPerSec,
      },
    ];
    return figures;
  },
};

export default suite;
