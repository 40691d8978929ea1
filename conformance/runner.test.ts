import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { conform } from "./conform.ts";
import { memoryCases } from "./cases/memory.ts";
import { generateVectors, readVectors } from "./vectors.ts";
import { markdownReport, ruleLines, writeReport } from "./report.ts";
import { seed as parseSeed } from "../scripts/args.ts";

// A tiny "implementation" written in plain JavaScript: it answers hello, reset and
// memory.create (accepting every layout), and reads return zeros everywhere and never fail;
// it does not offer memory.write, so nothing needing it may fail, only be skipped.
const fakeSource = `
const rl = require("readline").createInterface({ input: process.stdin });
rl.on("line", (l) => {
  const r = JSON.parse(l);
  const out = (v) => process.stdout.write(JSON.stringify({ id: r.id, ...v }) + "\\n");
  if (r.op === "hello") return out({ ok: true, value: { protocol: 1, name: "fake", ops: ["hello", "reset", "memory.create", "memory.read"] } });
  if (r.op === "reset" || r.op === "memory.create") return out({ ok: true, value: null });
  if (r.op === "memory.read") return out({ ok: true, value: { data: "00".repeat(r.args.len) } });
  out({ ok: false, error: { _tag: "UnsupportedOperation" } });
});
`;
const fakeDir = mkdtempSync(join(tmpdir(), "vlab-fake-"));
writeFileSync(join(fakeDir, "fake.cjs"), fakeSource);
const fakeImpl = `'${process.execPath}' '${join(fakeDir, "fake.cjs")}'`;
afterAll(() => rmSync(fakeDir, { recursive: true, force: true }));

describe("the runner [MEM-RANGE-ONE-REGION MEM-REGION-DISJOINT]", () => {
  it("fails a wrong implementation with a shrunk, replayable counterexample and skips what it does not support", async () => {
    const r = await conform({ command: fakeImpl, runs: 30, seed: 7 });
    if (typeof r === "string") throw new Error(r);
    const byId = new Map(r.cases.map((c) => [c.id, c]));
    // memory.create accepts overlapping regions, so the create case fails...
    expect(byId.get("memory.create")?.status).toBe("fail");
    // ...and memory.access needs memory.write, which it does not offer.
    expect(byId.get("memory.access")?.status).toBe("skipped");
    const cx = byId.get("memory.create")!.counterexample!;
    expect(cx.steps[0]!.op).toBe("reset");
    expect(cx.failedAt).toBeGreaterThan(0);
    const dir = mkdtempSync(join(tmpdir(), "vlab-report-"));
    try {
      const folder = writeReport(dir, r);
      expect(readFileSync(join(folder, "report.md"), "utf8")).toContain("memory.create");
      // The counterexample is itself a vectors directory that fails again on replay.
      const again = await conform({ command: fakeImpl, vectorsDir: join(folder, "counterexamples") });
      if (typeof again === "string") throw new Error(again);
      // One counterexample per rule that differed, each failing again on its own.
      const failedRules = ruleLines(r.cases).filter((l) => l.status === "fail");
      expect(again.cases.map((c) => c.status)).toEqual(failedRules.map(() => "fail"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a seed at or above 2^31 is printed unsigned, and the printed seed replays the same runs", async () => {
    const signed = 3_000_000_000 | 0; // what an int32 computation hands over
    const r = await conform({ command: fakeImpl, runs: 10, seed: signed, only: "memory.create" });
    if (typeof r === "string") throw new Error(r);
    const c = r.cases[0]!;
    expect(c.seed).toBe(3_000_000_000);
    expect(markdownReport(r)).toContain("seed 3000000000");
    // What the report prints goes back through the CLI's --seed parser and gives the same result.
    const again = await conform({
      command: fakeImpl,
      runs: 10,
      seed: parseSeed("--seed", String(c.seed)),
      only: "memory.create",
    });
    if (typeof again === "string") throw new Error(again);
    expect(again.cases[0]!.counterexample?.message).toBe(c.counterexample?.message);
    expect(again.cases[0]!.differed).toBe(c.differed);
    // A drawn seed is unsigned too.
    const drawn = await conform({ command: fakeImpl, runs: 1, only: "memory.create" });
    if (typeof drawn === "string") throw new Error(drawn);
    expect(drawn.cases[0]!.seed).toBeGreaterThanOrEqual(0);
  });

  it("vectors are deterministic: the same seed writes the same files", () => {
    const a = mkdtempSync(join(tmpdir(), "vlab-va-"));
    const b = mkdtempSync(join(tmpdir(), "vlab-vb-"));
    try {
      generateVectors(a, memoryCases, 5, 42);
      generateVectors(b, memoryCases, 5, 42);
      for (const c of memoryCases) {
        expect(readFileSync(join(a, `${c.id}.jsonl`), "utf8")).toBe(
          readFileSync(join(b, `${c.id}.jsonl`), "utf8"),
        );
      }
      const v = readVectors(a);
      if (typeof v === "string") throw new Error(v);
      expect(v.cases.map((c) => c.runs.length)).toEqual(memoryCases.map((c) => c.examples.length + 5));
    } finally {
      rmSync(a, { recursive: true, force: true });
      rmSync(b, { recursive: true, force: true });
    }
  });

  it("a program that hangs fails its case with Timeout and one that dies with ProcessExited; both are restarted for the next case", async () => {
    // Hangs on memory.write at 0 (never answers), exits on memory.write elsewhere; reads are fine.
    const src = `
const rl = require("readline").createInterface({ input: process.stdin });
rl.on("line", (l) => {
  const r = JSON.parse(l);
  const out = (v) => process.stdout.write(JSON.stringify({ id: r.id, ...v }) + "\\n");
  if (r.op === "hello") return out({ ok: true, value: { protocol: 1, name: "flaky", ops: ["hello", "reset", "memory.create", "memory.read", "memory.write"] } });
  if (r.op === "memory.write") { if (process.env.FLAKY === "hang") return; process.exit(7); }
  if (r.op === "reset" || r.op === "memory.create") return out({ ok: true, value: null });
  out({ ok: false, error: { _tag: "InvalidGuestAddress" } });
});
`;
    writeFileSync(join(fakeDir, "flaky.cjs"), src);
    for (const [mode, tag] of [
      ["hang", "Timeout"],
      ["exit", "ProcessExited"],
    ] as const) {
      const r = await conform({
        command: `FLAKY=${mode} '${process.execPath}' '${join(fakeDir, "flaky.cjs")}'`,
        runs: 3,
        seed: 1,
        timeoutMs: 300,
      });
      if (typeof r === "string") throw new Error(r);
      const access = r.cases.find((c) => c.id === "memory.access")!;
      expect(access.status).toBe("fail");
      // The counterexample is re-run after shrinking; it still fails with the program's own
      // fault (a killed, unrestarted program would answer ProcessExited to a hang).
      expect(access.reason).toContain(tag);
      expect(access.counterexample!.steps[access.counterexample!.failedAt]!.op).toBe("memory.write");
    }
  });

  it("a program that cannot start is a setup error, not a pass", async () => {
    const r = await conform({ command: "exit 3", timeoutMs: 2000 });
    expect(typeof r).toBe("string");
  });
});
