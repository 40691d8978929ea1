/** The binary trace: what goes in comes out as the JSON lines it stands for, however it is cut [SIM-DETERMINISM]. */
import { describe, expect, it } from "vitest";
import { Trace, TraceDecoder, decodeTrace, type TraceFields } from "./trace.ts";

const clock = { nowNs: 0 };

const EVENTS: [string, TraceFields | undefined][] = [
  ["start", { scenario: "queue", seed: 7, faults: 0.02, oracle: true }],
  ["add", { q: "", head: 3, seq: 0, shape: "net-tx", indirect: false, end: null }],
  ["odd", { neg: -5, big: 2 ** 52 + 1, frac: 0.1, minusZero: -0, inf: 1e300 * 10 }],
  ["list", { ids: [1, -2, 3.5], names: ["a", "é", ""], empty: [] }],
  ["long", { text: "x".repeat(70_000), again: "x".repeat(70_000) }],
  ["drain", undefined],
  ["add", { q: "", head: 4, seq: 1, shape: "net-tx", indirect: true, end: "Cycle" }],
];

const encode = (long = true): { bytes: Uint8Array; want: string[] } => {
  const chunks: Uint8Array[] = [];
  const t = new Trace(clock, true, (c) => void chunks.push(c));
  const want: string[] = [];
  clock.nowNs = 0;
  EVENTS.forEach(([k, f], i) => {
    if (!long && k === "long") return;
    t.step = i === 5 ? 2 : i;
    clock.nowNs += i * 250;
    t.event(k, f);
    // JSON.stringify turns -0 into 0 and Infinity into null, as the old text trace did.
    want.push(JSON.stringify({ s: t.step, t: clock.nowNs / 1000, k, ...f }));
  });
  const fast = t.kind("serve", ["q", "head", "end"]);
  if (t.begin(fast, 3)) {
    t.str("rx");
    t.num(9);
    t.strOrNull(null);
  }
  want.push(JSON.stringify({ s: t.step, t: clock.nowNs / 1000, k: "serve", q: "rx", head: 9, end: null }));
  t.flush();
  const all = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    all.set(c, o);
    o += c.length;
  }
  return { bytes: all, want };
};

describe("trace encoding", () => {
  it("decodes to the JSON of each event, in order", () => {
    const { bytes, want } = encode();
    expect(decodeTrace(bytes)).toEqual(want);
  });

  it("decodes the same whatever the chunk boundaries", () => {
    for (const [size, long] of [
      [1, false],
      [2, false],
      [7, false],
      [64, true],
      [4096, true],
    ] as const) {
      const { bytes, want } = encode(long);
      const d = new TraceDecoder();
      const got: string[] = [];
      for (let i = 0; i < bytes.length; i += size) got.push(...d.push(bytes.subarray(i, i + size)));
      d.end();
      expect(got).toEqual(want);
    }
  });

  it("writes each number as the format says, at the edges of every encoding path", () => {
    // The format, written independently: a tag, then an unsigned LEB128 varint (3: the
    // value, 4: the magnitude of a negative) for a safe integer, else a float64 (5).
    const varint = (v: bigint): number[] => {
      const out: number[] = [];
      for (; v >= 0x80n; v >>= 7n) out.push(Number(v & 0x7fn) | 0x80);
      return [...out, Number(v)];
    };
    const expected = (v: number): number[] => {
      if (Number.isSafeInteger(v) && !Object.is(v, -0))
        return v >= 0 ? [3, ...varint(BigInt(v))] : [4, ...varint(BigInt(-v))];
      const f = new Uint8Array(8);
      new DataView(f.buffer).setFloat64(0, v, true);
      return [5, ...f];
    };
    const values = [
      0,
      -0,
      1,
      0x7f,
      0x80,
      0x3fff,
      0x4000,
      0x1fffff,
      0x7fff_ffff,
      0x8000_0000,
      0xffff_ffff,
      2 ** 32,
      2 ** 53 - 1,
      2 ** 53,
      -1,
      -0x80,
      -(2 ** 31),
      -(2 ** 53 - 1),
      0.5,
      -0.5,
      0x3fff + 0.5,
      NaN,
      Infinity,
    ];
    for (const v of values) {
      const chunks: Uint8Array[] = [];
      const t = new Trace({ nowNs: 0 }, true, (c) => void chunks.push(c.slice()));
      const k = t.kind("n", ["v"]);
      t.flush();
      chunks.length = 0;
      t.begin(k, 1);
      t.num(v);
      t.flush();
      // After the event's code and its step and time deltas (one byte each here).
      expect([...chunks[0]!.subarray(3)], `num(${Object.is(v, -0) ? "-0" : v})`).toEqual(expected(v));
    }
  });

  it("refuses bytes that are not a trace, and a trace cut short", () => {
    expect(() => decodeTrace(new TextEncoder().encode('{"s":0}\n'))).toThrow(/not a simulator trace/);
    const { bytes } = encode();
    expect(() => decodeTrace(bytes.subarray(0, bytes.length - 1))).toThrow(/cut short/);
  });

  it("a hot-path event with a value missing is a simulator bug, caught at the next event", () => {
    const t = new Trace(clock, true, null);
    const k = t.kind("x", ["a", "b"]);
    t.begin(k, 2);
    t.num(1);
    expect(() => t.begin(k, 2)).toThrow(/1 values short/);
  });

  it("off: nothing is written and begin says so", () => {
    const chunks: Uint8Array[] = [];
    const t = new Trace(clock, false, (c) => void chunks.push(c));
    expect(t.begin(t.kind("x", []), 0)).toBe(false);
    t.event("y", { a: 1 });
    t.flush();
    expect(chunks).toHaveLength(0);
  });
});
