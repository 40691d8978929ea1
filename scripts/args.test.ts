import { afterEach, describe, expect, it, vi } from "vitest";
import { duration, integer, parseCommand, rate, seed, UsageError, type CommandSpec } from "./args.ts";
import { main, type Io } from "../sim/cli.ts";
import { conformMain, vectorsMain } from "../conformance/cli.ts";
import { conformanceMain } from "../conformance/main.ts";

const capture = (): Io & { stdout: string[]; stderr: string[] } => {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: null };
};

/** The conformance commands print through console; collect both streams. */
const consoleLines = (): { out: string[]; err: string[] } => {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void out.push(a.join(" ")));
  vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void err.push(a.join(" ")));
  return { out, err };
};

afterEach(() => vi.restoreAllMocks());

describe("the shared argument parser", () => {
  it("numbers are decimal only, in range", () => {
    for (const bad of ["-1", "0x1", "1e3", "1.0", " 1", "", "4294967296"])
      expect(() => seed("--seed", bad)).toThrow(UsageError);
    expect(seed("--seed", "4294967295")).toBe(0xffffffff);
    expect(integer("--n", "-3", -5, 5)).toBe(-3);
    for (const bad of ["0x1", "1e-1", "2", "-0.1", "", "NaN", "Infinity", ".", "0.5.1"])
      expect(() => rate("--faults", bad)).toThrow(/--faults must be a rate between 0 and 1/);
    expect([rate("--f", "0.25"), rate("--f", ".5"), rate("--f", "1"), rate("--f", "0")]).toEqual([
      0.25, 0.5, 1, 0,
    ]);
    expect(duration("--duration", "20ms")).toBe(20_000);
    expect(() => duration("--duration", "0us")).toThrow(UsageError);
  });

  it("a string flag takes the next word even when it starts with a dash; a flag is not a value", () => {
    const spec: CommandSpec = {
      name: "t",
      help: "",
      flags: { seed: { kind: "string" }, json: { kind: "boolean" }, tag: { kind: "string", multiple: true } },
      positionals: { max: 1, what: "thing" },
    };
    const p = parseCommand(spec, ["x", "--seed", "-1", "--tag", "a", "--tag=b", "--json"]);
    if (p === "help") throw new Error("help");
    expect([p.positionals, p.string("seed"), p.strings("tag"), p.bool("json")]).toEqual([
      ["x"],
      "-1",
      ["a", "b"],
      true,
    ]);
    expect(() => parseCommand(spec, ["--seed", "--json"])).toThrow("--seed needs a value");
    expect(() => parseCommand(spec, ["--seed"])).toThrow("--seed needs a value");
    expect(() => parseCommand(spec, ["--json=1"])).toThrow("--json takes no value");
    expect(() => parseCommand(spec, ["a", "b"])).toThrow("t takes at most 1 thing, got a b");
    expect(() => parseCommand(spec, ["--nope"])).toThrow("unknown option --nope for t; valid options:");
    expect(parseCommand(spec, ["--nope", "-h"])).toBe("help");
  });
});

describe("every command reads its arguments the same way", () => {
  it("--seed -1 and --seed 0x1 are the same usage error (exit 2) in sim run, conform and vectors", async () => {
    for (const bad of ["-1", "0x1"]) {
      const io = capture();
      expect(await main(["run", "queue", "--seed", bad, "--no-report"], io)).toBe(2);
      const c = consoleLines();
      expect(await conformMain(["--reference", "--seed", bad, "--no-report"])).toBe(2);
      expect(await vectorsMain(["--out", "/nonexistent/never", "--seed", bad])).toBe(2);
      expect(await conformanceMain(["vectors", "--out", "/nonexistent/never", "--seed", bad])).toBe(2);
      const msg = `--seed must be an integer between 0 and 4294967295, got "${bad}"`;
      expect(io.stderr).toEqual([`sim run: ${msg}`, "try: npx tsx sim run --help"]);
      expect(c.err).toEqual([
        `sim conform: ${msg}`,
        "try: npx tsx sim conform --help",
        `sim vectors: ${msg}`,
        "try: npx tsx sim vectors --help",
        `conformance/main.ts vectors: ${msg}`,
        "try: npx tsx conformance/main.ts vectors --help",
      ]);
      vi.restoreAllMocks();
    }
  });

  it("--faults 0x1 and --runs 1.0 are rejected, not read as 1", async () => {
    const io = capture();
    expect(await main(["run", "queue", "--faults", "0x1", "--no-report"], io)).toBe(2);
    expect(io.stderr[0]).toBe('sim run: --faults must be a rate between 0 and 1, got "0x1"');
    const c = consoleLines();
    expect(await vectorsMain(["--out", "/nonexistent/never", "--runs", "1.0"])).toBe(2);
    expect(c.err[0]).toBe('sim vectors: --runs must be an integer >= 0, got "1.0"');
  });

  it("an unknown help topic is a usage error (exit 2) in sim and conformance/main.ts", async () => {
    const io = capture();
    expect(await main(["help", "bogus"], io)).toBe(2);
    expect(io.stderr[0]).toBe(
      'sim help: unknown command "bogus"; valid commands: run, list, smoke, trace, conform, vectors, vhost-user, help',
    );
    const c = consoleLines();
    expect(await conformanceMain(["help", "bogus"])).toBe(2);
    expect(await conformanceMain(["frob"])).toBe(2);
    expect(c.err[0]).toMatch(/^conformance\/main.ts: unknown command "bogus"/);
  });

  it("conformance/main.ts --help prints the full help of both commands", async () => {
    const c = consoleLines();
    expect(await conformanceMain(["--help"])).toBe(0);
    const text = c.out.join("\n");
    for (const flag of ["--impl", "--reference", "--mutants", "--timeout", "--out DIR", "--level L"])
      expect(text).toContain(flag);
    expect(text).toMatch(/Exit status/);
  });

  it("sim help lists every command and help <command> prints its help", async () => {
    const io = capture();
    expect(await main(["help"], io)).toBe(0);
    for (const c of ["run", "list", "smoke", "conform", "vectors", "help"])
      expect(io.stdout.join("\n")).toMatch(new RegExp(`^  ${c}\\b`, "m"));
    const c = consoleLines();
    expect(await main(["help", "vectors"], capture())).toBe(0);
    expect(c.out.join("\n")).toContain("--out DIR");
  });
});
