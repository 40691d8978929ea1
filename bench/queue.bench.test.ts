/**
 * The queue benchmark compares loops that must do the same work: each walks the same chains
 * and folds the same descriptor addresses. If one of them skipped descriptors or chains its
 * figure would mean nothing, so their sums are compared here (no timing).
 */
import { describe, expect, it } from "vitest";
import { baselineLoop, checkedLoop, fusedLoop, implLoop, minimalLoop } from "./queue.bench.ts";

describe("queue benchmark loops", () => {
  for (const perChain of [1, 4]) {
    it(`impl, baseline, minimal, checked and fused loops walk the same descriptors (${perChain}-descriptor chains)`, () => {
      // 1000 batches: every avail.idx and used.idx wraps past 2^16 at least once.
      const n = 256 * 1000;
      const sums = [implLoop, baselineLoop, minimalLoop, checkedLoop, fusedLoop].map((make) =>
        make(perChain)(n),
      );
      expect(sums[0]).toBeGreaterThan(0);
      expect(new Set(sums).size).toBe(1);
    });
  }
});
