/**
 * The packed benchmark's loops must do the same work: the impl, the bare packed loop and the
 * split loop walk the same descriptors (same addresses, so the same sums) over many laps, so
 * both wrap counters flip hundreds of times. No timing here.
 */
import { describe, expect, it } from "vitest";
import { packedBaselineLoop, packedImplLoop } from "./packed-queue.bench.ts";
import { implLoop as splitLoop } from "./queue.bench.ts";

describe("packed queue benchmark loops", () => {
  for (const perChain of [1, 4]) {
    it(`packed impl, bare packed loop and split loop walk the same descriptors (${perChain}-descriptor chains)`, () => {
      const n = 256 * 300;
      const sums = [packedImplLoop, packedBaselineLoop, splitLoop].map((make) => make(perChain)(n));
      expect(sums[0]).toBeGreaterThan(0);
      expect(new Set(sums).size).toBe(1);
    });
  }
});
