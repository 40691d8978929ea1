import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { brotliDecompressSync } from "node:zlib";
import { main, parseDuration, type Io } from "./cli.ts";
import { scenarios } from "./scenarios/index.ts";
import { SCENARIOS } from "./scenarios/registry.ts";
import { decodeTrace } from "./trace.ts";

const capture = (): Io & { stdout: string[]; stderr: string[] } => {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: null };
};

describe("sim CLI", () => {
  it("list prints one line per scenario", async () => {
    const io = capture();
    expect(await main(["list"], io)).toBe(0);
    expect(io.stdout).toHaveLength(scenarios.length);
    for (const s of scenarios)
      expect(io.stdout.some((l) => l.startsWith(s.name) && l.includes(s.summary))).toBe(true);
  });

  it("the registry names each scenario as the scenario names itself, once", async () => {
    const loaded = await Promise.all(SCENARIOS.map((e) => e.load()));
    expect(loaded.map((s) => s.name)).toEqual(SCENARIOS.map((e) => e.name));
    expect(new Set(SCENARIOS.map((e) => e.name)).size).toBe(SCENARIOS.length);
  });

  it("--help works at the top and for each command", async () => {
    for (const argv of [
      ["--help"],
      ["run", "--help"],
      ["list", "--help"],
      ["smoke", "--help"],
      ["help", "run"],
    ]) {
      const io = capture();
      expect(await main(argv, io)).toBe(0);
      expect(io.stdout.join("\n")).toMatch(/usage: npx tsx sim/);
    }
  });

  it("an unknown scenario is an error listing the valid ones", async () => {
    const io = capture();
    expect(await main(["run", "nope"], io)).toBe(2);
    const msg = io.stderr.join("\n");
    expect(msg).toContain('unknown scenario "nope"');
    for (const s of scenarios) expect(msg).toContain(s.name);
  });

  it("bad flags and values are clear errors with the valid choices", async () => {
    const cases: [string[], RegExp][] = [
      [["run", "queue", "--bogus"], /unknown option --bogus for run; valid options: --seed/],
      [["run", "queue", "--seed", "x"], /--seed must be an integer/],
      [["run", "queue", "--faults", "2"], /--faults must be a rate between 0 and 1/],
      [["run", "queue", "--steps", "5", "--duration", "1ms"], /exclusive/],
      [["run", "queue", "--duration", "5 parsecs"], /--duration must look like/],
      [["run"], /run needs a scenario; valid scenarios: queue/],
      [
        ["run", "vsock-echo", "--faults", "0.1"],
        /vsock-echo takes no --faults: .*; scenarios that inject: queue,/,
      ],
      [["run", "usb-vsock", "--ring", "packed"], /scenarios on the packed ring: queue, net-loopback/],
      [["frobnicate"], /unknown command "frobnicate"; valid commands: run, list, smoke/],
    ];
    for (const [argv, re] of cases) {
      const io = capture();
      expect(await main(argv, io)).toBe(2);
      expect(io.stderr.join("\n")).toMatch(re);
    }
  });

  it("durations parse to microseconds", () => {
    expect(parseDuration("500us")).toBe(500);
    expect(parseDuration("20ms")).toBe(20_000);
    expect(parseDuration("1.5s")).toBe(1_500_000);
  });

  it("run writes trace, summaries and the page, and prints the summary table [SIM-NO-LOSS SIM-USED-LEN]", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sim-cli-"));
    try {
      const io = capture();
      expect(await main(["run", "queue", "--seed", "7", "--steps", "300", "--report", dir], io)).toBe(0);
      const out = io.stdout.join("\n");
      expect(out).toMatch(/queue seed 7: passed/);
      expect(out).toMatch(/chains completed and reclaimed/);
      expect(out).toMatch(/notifications to the device suppressed/);
      const run = join(dir, "queue-7");
      for (const f of ["trace.bin.br", "summary.json", "summary.md", "report.html"])
        expect(existsSync(join(run, f))).toBe(true);
      const summary = JSON.parse(readFileSync(join(run, "summary.json"), "utf8")) as {
        status: string;
        totals: { name: string; value: number }[];
      };
      expect(summary.status).toBe("passed");
      const total = (n: string): number => summary.totals.find((t) => t.name === n)?.value ?? -1;
      expect(total("chains.added")).toBeGreaterThan(0);
      expect(total("chains.completed")).toBe(total("chains.added"));
      const lines = decodeTrace(brotliDecompressSync(readFileSync(join(run, "trace.bin.br"))));
      expect(JSON.parse(lines[0]!)).toMatchObject({ k: "start", scenario: "queue", seed: 7 });
      expect(JSON.parse(lines[lines.length - 1]!)).toMatchObject({ k: "end" });
      const html = readFileSync(join(run, "report.html"), "utf8");
      expect(html).not.toMatch(/<(script|link|img)[^>]+(src|href)=/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("--json prints one JSON summary on stdout", async () => {
    const io = capture();
    expect(await main(["run", "queue", "--seed", "3", "--steps", "100", "--no-report", "--json"], io)).toBe(
      0,
    );
    expect(io.stdout).toHaveLength(1);
    const s = JSON.parse(io.stdout[0]!) as { scenario: string; seed: number; status: string; replay: string };
    expect(s).toMatchObject({ scenario: "queue", seed: 3, status: "passed" });
    expect(s.replay).toBe("npx tsx sim run queue --seed 3 --steps 100 --faults 0");
  });
});
