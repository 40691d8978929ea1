import { afterEach, describe, expect, it, vi } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { conformMain, vectorsMain } from "./cli.ts";

const quiet = () => {
  const out: string[] = [];
  vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void out.push(a.join(" ")));
  vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void out.push(a.join(" ")));
  return out;
};

afterEach(() => vi.restoreAllMocks());

describe("the conform and vectors commands [MEM-RANGE-ONE-REGION USB-PARSE-STOP]", () => {
  it("--help exits 0 with the usage; bad options exit 2 saying what is wrong", async () => {
    const out = quiet();
    expect(await conformMain(["--help"])).toBe(0);
    expect(out.join("\n")).toContain("--impl");
    expect(await vectorsMain(["--help"])).toBe(0);
    expect(await conformMain([])).toBe(2);
    expect(out.join("\n")).toContain("--impl");
    expect(await conformMain(["--impl", "x", "--runs", "-1"])).toBe(2);
    expect(await conformMain(["--impl", "x", "--level", "sometimes"])).toBe(2);
    expect(await conformMain(["--reference", "--mutant", "no-such-bug"])).toBe(2);
    expect(await conformMain(["--bogus"])).toBe(2);
    expect(await vectorsMain([])).toBe(2);
    expect(await vectorsMain(["--out", "/tmp/x", "--only", "no-such-case"])).toBe(2);
  });

  it("vectors --out writes a manifest; conform replays it against the reference (exit 0) and a mutant (exit 1)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "vlab-cli-"));
    try {
      const out = quiet();
      expect(await vectorsMain(["--out", dir, "--runs", "2", "--only", "usb"])).toBe(0);
      const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as {
        cases: { id: string }[];
      };
      expect(manifest.cases.map((c) => c.id)).toEqual(["usb.parse", "usb.parse-bounds", "usb.build"]);
      expect(await conformMain(["--reference", "--vectors", dir, "--no-report"])).toBe(0);
      expect(
        await conformMain([
          "--reference",
          "--mutant",
          "usb-payload-past-buffer",
          "--vectors",
          dir,
          "--no-report",
        ]),
      ).toBe(1);
      expect(out.join("\n")).toContain("smallest in usb.parse");
      expect(await conformMain(["--impl", "exit 3", "--vectors", dir, "--no-report"])).toBe(2);
      // A hostile vectors file is a usage error with a message, not a crash (exit 2).
      const file = join(dir, "usb.parse.jsonl");
      const lines = readFileSync(file, "utf8").split("\n");
      writeFileSync(file, [lines[0]!.replace(/"run":\s*0/, '"run":-1'), ...lines.slice(1)].join("\n"));
      expect(await conformMain(["--reference", "--vectors", dir, "--no-report"])).toBe(2);
      writeFileSync(join(dir, "manifest.json"), JSON.stringify({ ...manifest, cases: [null] }));
      expect(await conformMain(["--reference", "--vectors", dir, "--no-report"])).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
