/**
 * Seeded randomness for the simulator: sfc32 seeded through splitmix32, so the same seed
 * gives the same stream on every platform (SIM-DETERMINISM). Only 32-bit integer maths;
 * nothing here reads the wall clock or Math.random.
 */

const splitmix32 = (state: { s: number }): number => {
  state.s = (state.s + 0x9e3779b9) | 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
};

export class Rng {
  /**
   * sfc32's a, b, c, d as int32 words: fields would hold them as boxed doubles (most are
   * outside the small-integer range), a typed array keeps them as plain 32-bit words.
   */
  private readonly s = new Int32Array(4);

  constructor(seed: number) {
    const st = { s: seed | 0 };
    const s = this.s;
    s[0] = splitmix32(st);
    s[1] = splitmix32(st);
    s[2] = splitmix32(st);
    s[3] = splitmix32(st) | 1;
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A uniform unsigned 32-bit integer. */
  u32(): number {
    const s = this.s;
    const a = s[0]!;
    const b = s[1]!;
    const c = s[2]!;
    const d = s[3]!;
    const t = (((a + b) | 0) + d) | 0;
    s[3] = d + 1;
    s[0] = b ^ (b >>> 9);
    s[1] = c + (c << 3);
    s[2] = ((c << 21) | (c >>> 11)) + t;
    return t >>> 0;
  }

  /** A uniform integer in [0, n) for 1 <= n <= 2^32 (rejection sampling: no modulo bias). */
  int(n: number): number {
    if (n <= 1) return 0;
    const limit = Math.floor(0x1_0000_0000 / n) * n;
    for (;;) {
      const x = this.u32();
      if (x < limit) {
        // x % n without a float modulo (x may be above 2^31, out of int32). Exact: x / n
        // is a whole number or at least 1/n below the next one, and with x < 2^32 that gap
        // is far above the rounding error of the quotient, so the floor is right.
        return x - Math.floor(x / n) * n;
      }
    }
  }

  /** A uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p (p in [0, 1]), in steps of 2^-32. */
  chance(p: number): boolean {
    if (p <= 0) return false;
    if (p >= 1) return true;
    return this.u32() < p * 0x1_0000_0000;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("Rng.pick: empty list");
    return items[this.int(items.length)]!;
  }

  /** Fills bytes with random data. */
  fill(bytes: Uint8Array): void {
    let i = 0;
    for (; i + 4 <= bytes.length; i += 4) {
      const x = this.u32();
      bytes[i] = x & 0xff;
      bytes[i + 1] = (x >>> 8) & 0xff;
      bytes[i + 2] = (x >>> 16) & 0xff;
      bytes[i + 3] = x >>> 24;
    }
    if (i < bytes.length) {
      let x = this.u32();
      for (; i < bytes.length; i++, x >>>= 8) bytes[i] = x & 0xff;
    }
  }

  /** An independent stream derived from this one (for a second actor), deterministic too. */
  fork(): Rng {
    return new Rng(this.u32());
  }
}
