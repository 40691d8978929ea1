/**
 * The oracle checks the code that runs: with it armed the queue still takes its fast paths
 * (no memory recorder), and a bug planted only there is caught.
 */
import { Effect } from "effect";
import { afterEach, describe, expect, it } from "vitest";
import type { GuestMemory } from "../impl/memory/guest-memory.ts";
import { SplitQueue } from "../impl/queue/split-queue.ts";
import { runScenario, type Scenario } from "./engine.ts";
import { hostileGuestScenario } from "./scenarios/hostile-guest.ts";
import { queueScenario } from "./scenarios/queue.ts";

const realAddUsed = SplitQueue.prototype.addUsed;
afterEach(() => {
  SplitQueue.prototype.addUsed = realAddUsed;
});

/** The memory a queue was initialized with (private in the class; read for the test). */
const memOf = (q: SplitQueue): GuestMemory | null => (q as unknown as { mem: GuestMemory | null }).mem;

/**
 * Plants an off-by-one used length in addUsed's fast path only: the path split-queue.ts
 * takes when no memory recorder is set. Counts the calls that went each way.
 */
const plantFastPathBug = (): { fast: number; general: number } => {
  const seen = { fast: 0, general: 0 };
  SplitQueue.prototype.addUsed = function (this: SplitQueue, index: number, len: number) {
    const mem = memOf(this);
    if (mem !== null && mem.recorder === null && index >>> 0 === index && index < this.state().size) {
      seen.fast++;
      return realAddUsed.call(this, index, len + 1);
    }
    seen.general++;
    return realAddUsed.call(this, index, len);
  };
  return seen;
};

const run = (s: Scenario, oracle: boolean) =>
  Effect.runPromise(runScenario(s, { seed: 1, steps: 300, faults: s.defaultFaults, oracle, trace: false }));

describe("the oracle watches the queue's fast path [SIM-QUEUE-REFINES]", () => {
  for (const s of [queueScenario, hostileGuestScenario])
    it(`${s.name}: an off-by-one length planted in addUsed's fast path is caught at once`, async () => {
      const seen = plantFastPathBug();
      const r = await run(s, true);
      expect(seen.fast).toBeGreaterThan(0);
      expect(r.status).toBe("violated");
      expect(r.violation).toMatchObject({ rule: "SIM-QUEUE-REFINES", step: 0 });
      expect(r.violation?.message).toMatch(
        /addUsed: byte at \d+ is \d+ after the device, \d+ after the reference/,
      );
    });

  it("with the oracle on, every addUsed of a correct queue takes the fast path, and the run passes", async () => {
    const seen = { fast: 0, general: 0 };
    SplitQueue.prototype.addUsed = function (this: SplitQueue, index: number, len: number) {
      if (memOf(this)?.recorder === null) seen.fast++;
      else seen.general++;
      return realAddUsed.call(this, index, len);
    };
    const r = await run(queueScenario, true);
    expect(r.status).toBe("passed");
    expect(seen.fast).toBeGreaterThan(100);
    expect(seen.general).toBe(0);
  });
});
