import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { conform } from "./conform.ts";
import type { CaseResult } from "./runner.ts";
import { allCases, conformanceDir, repoRoot } from "./suite.ts";
import { generateVectors } from "./vectors.ts";

const python = spawnSync("python3", ["--version"]).status === 0;
const replayer = join(conformanceDir, "replay", "replay_vectors.py");
const adapter = [process.execPath, "--import", "tsx", join(conformanceDir, "adapter-main.ts")];
const shell = (argv: readonly string[]): string => argv.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");

/**
 * A peer-like adapter in front of the reference one: its own error names (one through hello's
 * `errors`, one through the §4.1 table, one in neither, which only a safety step accepts),
 * chain walks without index / indirect, a size-0 queue refused at configure (early), usb.build
 * Unsupported, the legacy 10-byte net header Unsupported (a few runs skip), no iovec.write.
 */
const PEER = `
import json, subprocess, sys
ref = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
RENAME = {"NotReady": "PeerNotReady", "InvalidAvailIdx": "InvalidAvailRingIndex"}
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in ("index", "indirect")}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
for line in sys.stdin:
    req = json.loads(line)
    op, args = req["op"], req.get("args", {})
    if op == "queue.configure" and args.get("size") == 0:
        print(json.dumps({"id": req["id"], "ok": False, "error": {"_tag": "InvalidSize"}}), flush=True)
        continue
    if op == "usb.build" or (op.startswith("net.") and args.get("hdrLen") == 10):
        print(json.dumps({"id": req["id"], "ok": False, "error": {"_tag": "Unsupported"}}), flush=True)
        continue
    ref.stdin.write(line if line.endswith("\\n") else line + "\\n")
    ref.stdin.flush()
    a = json.loads(ref.stdout.readline())
    if op == "hello":
        a["value"]["ops"] = [o for o in a["value"]["ops"] if o != "iovec.write"]
        a["value"]["errors"] = {"PeerNotReady": "NotReady"}
    elif a["ok"] and op in ("chain.walk", "queue.pop"):
        a["value"] = strip(a["value"])
    elif not a["ok"]:
        a["error"]["_tag"] = RENAME.get(a["error"]["_tag"], a["error"]["_tag"])
        if op == "vsock.rx" and a["error"]["_tag"] == "HdrDescTooSmall":
            a["error"]["_tag"] = "PeerHeaderTooSmall"
    print(json.dumps(a), flush=True)
`;

interface Judged {
  readonly status: string;
  readonly reason: string;
  readonly runs: number;
  readonly differed: number;
  readonly skippedRuns: number;
  readonly tallies: Record<string, { differed: number; checked: number; counterexample?: string }>;
  readonly profiles?: readonly string[];
  readonly opined?: readonly string[];
}

/** What both judges report per case, in the replayer's JSON shape. */
const fromRunner = (c: CaseResult): [string, Judged] => [
  c.id,
  {
    status: c.status,
    reason: c.reason,
    runs: c.runs,
    differed: c.differed,
    skippedRuns: c.skippedRuns,
    tallies: Object.fromEntries(
      c.tallies.map((t) => [
        t.key,
        {
          differed: t.differed,
          checked: t.checked,
          ...(t.counterexample !== undefined ? { counterexample: t.counterexample.message } : {}),
        },
      ]),
    ),
    ...(c.profiles !== undefined ? { profiles: c.profiles, opined: c.opined ?? [] } : {}),
  },
];

// The vectors format is meant for other projects: the Python replayer (standard library
// only) must reach the same verdict as `sim conform --vectors`, case by case and rule by rule:
// runs, differences, checks, counterexamples and profiles. Each adapter below exercises part
// of the judging: mutants at must and safety level, a crashing one (size-zero exits, both
// restart it), and a peer with its own error names, optional walk fields and Unsupported.
describe.skipIf(!python)(
  "the Python replayer judges exported vectors exactly as the TypeScript runner [USB-PARSE-PAYLOAD-LEN USB-PARSE-STOP IOV-MUT-READ-ONLY VQ-SIZE-ZERO VSOCK-LAYOUT-SINGLE VQ-NO-INTERRUPT]",
  () => {
    const dir = mkdtempSync(join(tmpdir(), "vlab-py-"));
    const peer = join(dir, "peer.py");
    const vectors = join(dir, "vectors");
    beforeAll(() => {
      writeFileSync(peer, PEER);
      generateVectors(vectors, allCases(), 2);
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const both = async (argv: readonly string[]) => {
      const out = join(dir, "out.json");
      const py = spawnSync("python3", [replayer, "--json", out, vectors, "--", ...argv], {
        cwd: repoRoot,
        encoding: "utf8",
        timeout: 240_000,
      });
      const ts = await conform({ command: shell(argv), cwd: repoRoot, vectorsDir: vectors });
      if (typeof ts === "string") throw new Error(ts);
      const pyJson = JSON.parse(readFileSync(out, "utf8")) as {
        verdict: string;
        cases: (Judged & { id: string; level: string; rules: readonly string[] })[];
      };
      return { py, pyJson, ts };
    };
    const cases = [
      ["the reference", adapter, 0],
      ["mutant write-readable (safety)", [...adapter, "--mutant", "write-readable"], 1],
      ["mutant usb-payload-past-buffer (must)", [...adapter, "--mutant", "usb-payload-past-buffer"], 1],
      ["mutant size-zero (the adapter exits)", [...adapter, "--mutant", "size-zero"], 1],
      ["a peer: own error names, optional walk fields, Unsupported", ["python3", peer, ...adapter], 0],
    ] as const;
    it.each(cases)("%s", { timeout: 300_000 }, async (_name, argv, status) => {
      const { py, pyJson, ts } = await both(argv);
      expect(py.status, py.stderr).toBe(status);
      expect(
        Object.fromEntries(pyJson.cases.map(({ id, level: _l, rules: _r, ...rest }) => [id, rest])),
      ).toEqual(Object.fromEntries(ts.cases.map(fromRunner)));
      if (argv[0] === "python3") {
        // The peer did exercise what it is for: skipped runs and a case without its op.
        expect(ts.cases.some((c) => c.skippedRuns > 0 && c.status !== "skipped")).toBe(true);
        expect(ts.cases.find((c) => c.id === "iovec.write")?.status).toBe("skipped");
      }
    });
  },
);
