/** The simulator's seeded randomness: int(n) is exactly the rejection-sampled x % n of the u32 stream [SIM-DETERMINISM]. */
import { describe, expect, it } from "vitest";
import { Rng } from "./rng.ts";

/** int(n) as its contract says, on a second stream of the same seed. */
const reference = (r: Rng, n: number): number => {
  if (n <= 1) return 0;
  const limit = Math.floor(0x1_0000_0000 / n) * n;
  for (;;) {
    const x = r.u32();
    if (x < limit) return Number(BigInt(x) % BigInt(n));
  }
};

describe("Rng.int", () => {
  it("draws what x % n of the u32 stream gives, for small and large n alike", () => {
    const ns = [
      1,
      2,
      3,
      6,
      7,
      64,
      1000,
      65_535,
      2 ** 21 + 1,
      2 ** 31 - 1,
      2 ** 31,
      2 ** 31 + 1,
      3e9,
      2 ** 32 - 1,
      2 ** 32,
    ];
    for (const seed of [1, 2, 0xdead_beef]) {
      const a = new Rng(seed);
      const b = new Rng(seed);
      for (let i = 0; i < 20_000; i++) {
        const n = ns[i % ns.length]!;
        const got = a.int(n);
        const want = reference(b, n);
        if (got !== want) expect(got, `seed ${seed}, draw ${i}, int(${n})`).toBe(want);
      }
    }
  });

  it("covers [0, n) and nothing else", () => {
    const r = new Rng(3);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const v = r.int(7);
      expect(v >= 0 && v < 7 && Number.isInteger(v)).toBe(true);
      seen.add(v);
    }
    expect(seen.size).toBe(7);
  });
});
