/** Long runs stay bounded: faults are counted with a few examples, the trace is compressed or off, old runs pruned. */
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { brotliDecompressSync, gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main, pruneRuns, type Io } from "./cli.ts";
import { FaultLog } from "./engine.ts";
import { decodeTrace } from "./trace.ts";

const quiet = (): Io => ({ out: () => {}, err: () => {}, progress: null });

describe("long runs stay bounded", () => {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "sim-scale-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const summary = (name: string) =>
    JSON.parse(readFileSync(join(dir, name, "summary.json"), "utf8")) as {
      traceSha256: string;
      traceEvents: number;
      faults: { injected: number; table: Record<string, Record<string, number>>; examples: unknown[] };
    };

  it("faults are counts plus a few examples of each kind: the summary does not grow with the run", async () => {
    const sizes: number[] = [];
    for (const steps of [500, 4000]) {
      const base = join(dir, `s${steps}`);
      mkdirSync(base);
      expect(
        await main(
          [
            "run",
            "queue",
            "--seed",
            "2",
            "--steps",
            String(steps),
            "--faults",
            "0.3",
            "--no-oracle",
            "--report",
            base,
          ],
          quiet(),
        ),
      ).toBe(0);
      const s = JSON.parse(readFileSync(join(base, "queue-2", "summary.json"), "utf8")) as {
        faults: { injected: number; table: Record<string, Record<string, number>>; examples: unknown[] };
      };
      const kinds = Object.keys(s.faults.table).length;
      const counted = Object.values(s.faults.table).reduce(
        (a, row) => a + Object.values(row).reduce((x, y) => x + y, 0),
        0,
      );
      expect(counted).toBe(s.faults.injected);
      expect(s.faults.examples.length).toBeLessThanOrEqual(kinds * FaultLog.EXAMPLES_PER_KIND);
      sizes.push(statSync(join(base, "queue-2", "summary.json")).size);
      if (steps === 4000) expect(s.faults.injected).toBeGreaterThan(5 * s.faults.examples.length);
    }
    // 8 times the steps and faults; the summary (series decimated, faults counted) barely moves.
    expect(sizes[1]! / sizes[0]!).toBeLessThan(1.5);
  });

  it("the trace is binary brotli by default (its SHA-256 that of the stream), gzip, raw, jsonl or none by --trace", async () => {
    const args = ["run", "queue", "--seed", "3", "--steps", "300", "--report", dir];
    expect(await main(args, quiet())).toBe(0);
    const bin = brotliDecompressSync(readFileSync(join(dir, "queue-3", "trace.bin.br")));
    expect(createHash("sha256").update(bin).digest("hex")).toBe(summary("queue-3").traceSha256);
    const lines = decodeTrace(bin);
    expect(lines).toHaveLength(summary("queue-3").traceEvents);
    // Compact: a few bytes an event, and the JSON it stands for is far larger.
    expect(bin.length * 4).toBeLessThan(lines.join("\n").length);
    expect(await main([...args, "--trace", "gz"], quiet())).toBe(0);
    expect(gunzipSync(readFileSync(join(dir, "queue-3", "trace.bin.gz")))).toEqual(bin);
    expect(existsSync(join(dir, "queue-3", "trace.bin.br"))).toBe(false);
    expect(await main([...args, "--trace", "raw"], quiet())).toBe(0);
    expect(readFileSync(join(dir, "queue-3", "trace.bin"))).toEqual(bin);
    expect(existsSync(join(dir, "queue-3", "trace.bin.gz"))).toBe(false);
    expect(await main([...args, "--trace", "jsonl"], quiet())).toBe(0);
    expect(readFileSync(join(dir, "queue-3", "trace.jsonl"), "utf8")).toBe(lines.join("\n") + "\n");
    expect(await main([...args, "--trace", "none"], quiet())).toBe(0);
    expect(readdirSync(join(dir, "queue-3")).sort()).toEqual(["report.html", "summary.json", "summary.md"]);
    expect(summary("queue-3").traceSha256).toBe(createHash("sha256").update(bin).digest("hex"));
  });

  it("sim trace prints a binary trace as the JSON lines it stands for, brotli, gzip (older runs) or raw, and refuses other files", async () => {
    const args = ["run", "queue", "--seed", "4", "--steps", "200", "--report", dir];
    expect(await main(args, quiet())).toBe(0);
    const bin = brotliDecompressSync(readFileSync(join(dir, "queue-4", "trace.bin.br")));
    const want = decodeTrace(bin);
    const print = async (file: string): Promise<string[]> => {
      const out: string[] = [];
      const io: Io = { out: (l) => out.push(l), err: () => {}, progress: null };
      expect(await main(["trace", file], io)).toBe(0);
      return out;
    };
    expect(await print(join(dir, "queue-4", "trace.bin.br"))).toEqual(want);
    expect(JSON.parse(want[0]!)).toMatchObject({ k: "start", scenario: "queue", seed: 4 });
    writeFileSync(join(dir, "old.bin.gz"), gzipSync(bin));
    expect(await print(join(dir, "old.bin.gz"))).toEqual(want);
    writeFileSync(join(dir, "plain.bin"), bin);
    expect(await print(join(dir, "plain.bin"))).toEqual(want);
    const errs: string[] = [];
    const bad: Io = { out: () => {}, err: (l) => errs.push(l), progress: null };
    expect(await main(["trace", join(dir, "queue-4", "summary.json")], bad)).toBe(1);
    expect(errs.join("\n")).toMatch(/not a simulator trace/);
    writeFileSync(join(dir, "broken.bin.br"), readFileSync(join(dir, "queue-4", "summary.json")));
    expect(await main(["trace", join(dir, "broken.bin.br")], bad)).toBe(1);
    expect(errs.join("\n")).toMatch(/broken\.bin\.br: not a brotli-compressed simulator trace/);
    // Cut short (a run killed at once, a copy stopped): said so, not "not a trace".
    const br = readFileSync(join(dir, "queue-4", "trace.bin.br"));
    writeFileSync(join(dir, "cut.bin.br"), br.subarray(0, br.length >> 1));
    writeFileSync(join(dir, "cut.bin.gz"), gzipSync(bin).subarray(0, 300));
    for (const f of ["cut.bin.br", "cut.bin.gz"]) {
      errs.length = 0;
      expect(await main(["trace", join(dir, f)], bad)).toBe(1);
      expect(errs.join("\n")).toMatch(/: the trace is cut short: its (brotli|gzip) stream ends early$/);
    }
  });

  it("pruneRuns keeps the newest run directories and nothing else is touched", () => {
    const base = join(dir, "prune");
    mkdirSync(base);
    for (let i = 0; i < 25; i++) {
      const d = join(base, `queue-${i}`);
      mkdirSync(d);
      utimesSync(d, 1_700_000_000 + i, 1_700_000_000 + i);
    }
    mkdirSync(join(base, "my notes"));
    expect(pruneRuns(base, 20).sort()).toEqual(["queue-0", "queue-1", "queue-2", "queue-3", "queue-4"]);
    expect(readdirSync(base)).toHaveLength(21);
    expect(existsSync(join(base, "my notes"))).toBe(true);
  });
});
