/**
 * `npx tsx sim conform --vhost-user SOCKET --device net|vsock|generic [options]`: the
 * command around run.ts. Parses through scripts/args.ts, prints progress on stderr, the
 * results table on stdout, writes reports/conformance/vhost-user-<device>/ (report.md,
 * results.json). Exit 0 pass, 1 a MUST/SAFETY finding, 2 usage or setup (one line naming
 * the step). Ctrl-C / SIGTERM interrupt the run: everything (socket, memfd, mapping,
 * eventfds, a spawned back-end) is released before exit.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Cause, Effect, Exit, Fiber } from "effect";
import { RULES } from "../../spec/vhost-user-frontend.ts";
import {
  EXIT_USAGE,
  UsageError,
  choice,
  integer,
  nonEmpty,
  parseCommand,
  rate,
  runWithUsage,
  seed as parseSeed,
  type CommandSpec,
} from "../../scripts/args.ts";
import {
  DEVICE_KINDS,
  PAYLOADS,
  exitStatus,
  runConformance,
  type RunOptions,
  type RunResult,
} from "./run.ts";

export const VHOST_USER_CONFORM_HELP = `usage: npx tsx sim conform --vhost-user SOCKET --device net|vsock|generic [options]

Plays the VMM and the guest for a vhost-user back-end: negotiates, shares guest memory
(a memfd), drives the rings with the spec's split-ring driver, and checks everything the
device writes (rules VUF-* in spec/vhost-user-frontend.ts).

  --vhost-user SOCKET   the back-end's socket (connect; with --listen we listen there)
  --device KIND         net (loopback far side: TX comes back on RX), vsock (REQUEST to a
                        port without listener -> RST), generic (any device: ring rules only)
  --payload KIND        generic: random (default) or fuse (FUSE_INIT then GETATTR: virtiofsd)
  --spawn "CMD"         start the back-end with this shell command (own process group),
                        wait for its socket, kill it after, on every path
  --listen              listen on SOCKET and wait for the back-end to connect
  --steps N             rounds of chains (default 50)
  --seed N              PRNG seed (default random; printed, replays the run)
  --hostile RATE        corrupt the rings in that fraction of rounds (0..1; SAFETY verdicts only)
  --timeout MS          bound on every wait (default 2000)
  --queues N            generic: rings to set up (default 2)
  --vsock-uds PATH      vsock: the back-end's host-side Unix socket (its guest connections to
                        port P go to PATH_P, cloud-hypervisor style): connections, credit,
                        CREDIT_REQUEST, SHUTDOWN/RST order and stream bytes are checked
  --event-idx on|off    ack VIRTIO_F_EVENT_IDX when offered (default: from the seed)
  --report DIR          where to write (default reports/conformance/vhost-user-<device>)
  --no-report           print only
  -h, --help            this text

Exit status: 0 pass (advisory findings allowed), 1 a MUST or SAFETY finding, 2 usage or
setup error (garbage reply, reply to another request, closed socket, no answer: the step is named).`;

export const VHOST_USER_CONFORM_SPEC: CommandSpec = {
  name: "sim conform",
  help: VHOST_USER_CONFORM_HELP,
  flags: {
    "vhost-user": { kind: "string" },
    device: { kind: "string" },
    payload: { kind: "string" },
    spawn: { kind: "string" },
    listen: { kind: "boolean" },
    steps: { kind: "string" },
    seed: { kind: "string" },
    hostile: { kind: "string" },
    timeout: { kind: "string" },
    queues: { kind: "string" },
    "event-idx": { kind: "string" },
    "vsock-uds": { kind: "string" },
    report: { kind: "string" },
    "no-report": { kind: "boolean" },
  },
};

const levelName = (l: string): string => l.toUpperCase();

/** The terminal table: one line per rule. */
export const resultTable = (r: RunResult): string => {
  const rows = r.rules.map((x) => {
    const verdict = x.checks === 0 ? "not run" : x.failures === 0 ? "pass" : "FAIL";
    return [x.id, levelName(x.level), String(x.checks), String(x.failures), verdict];
  });
  const head = ["rule", "level", "checks", "failed", "verdict"];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => c.padEnd(w[i]!))
      .join("  ")
      .trimEnd();
  const out = [line(head), line(w.map((n) => "-".repeat(n))), ...rows.map(line)];
  const o = r.options;
  out.push(
    "",
    `device ${o.device}${o.device === "generic" ? ` (${o.payload})` : ""}, seed ${o.seed}, ${r.stepsRun}/${o.steps} steps, ${r.completions} completions, hostile rounds ${r.hostileRounds}, features 0x${r.features.toString(16)}, protocol 0x${r.protocolFeatures.toString(16)}, EVENT_IDX ${r.eventIdx ? "on" : "off"}`,
  );
  for (const x of r.rules)
    if (x.first !== null) out.push(`${x.id} first failure at step ${x.first.step}: ${x.first.detail}`);
  for (const n of r.notes) out.push(`note: ${n}`);
  if (r.crash !== null) {
    out.push(`CRASH at step ${r.crash.step}: ${r.crash.signal}; input: ${r.crash.input}`);
    out.push(`replay: ${replayTo(r, r.crash.step)}`);
  } else if (r.findings.length > 0) {
    out.push(`replay: ${replayTo(r, Math.max(...r.findings.map((f) => f.step)))}`);
  }
  return out.join("\n");
};

const replayTo = (r: RunResult, step: number): string => r.replay.replace(/--steps \d+/, `--steps ${step}`);

const big = (_k: string, v: unknown): unknown => (typeof v === "bigint" ? `0x${v.toString(16)}` : v);

export const writeVhostUserReport = (dir: string, r: RunResult): string => {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "results.json"), JSON.stringify(r, big, 2));
  const text = RULES.map((x) => `- **${x.id}** (${x.source}): ${x.text}`).join("\n");
  const md = [
    `# vhost-user conformance: ${r.options.device}`,
    "",
    `Command: \`${r.replay}\``,
    "",
    "```",
    resultTable(r),
    "```",
    "",
    r.corruptions.length > 0
      ? `## Corruptions sent\n\n${r.corruptions.map((c) => `- ${c}`).join("\n")}\n`
      : "",
    "## Rules",
    "",
    text,
    "",
  ].join("\n");
  writeFileSync(join(dir, "report.md"), md);
  return dir;
};

/** The command (argv without `conform`). */
export async function vhostUserConformMain(argv: readonly string[], repoRoot: string): Promise<number> {
  const err = (line: string): void => console.error(line);
  return runWithUsage(err, VHOST_USER_CONFORM_SPEC.name, async () => {
    const p = parseCommand(VHOST_USER_CONFORM_SPEC, argv);
    if (p === "help") {
      console.log(VHOST_USER_CONFORM_HELP);
      return 0;
    }
    const socket = nonEmpty("--vhost-user", p.string("vhost-user") ?? "");
    const dev = p.string("device");
    if (dev === undefined) throw new UsageError("--device net|vsock|generic is required");
    const device = choice("--device", dev, DEVICE_KINDS);
    const payloadRaw = p.string("payload");
    if (payloadRaw !== undefined && device !== "generic")
      throw new UsageError("--payload goes with --device generic");
    const payload = choice("--payload", payloadRaw ?? "random", PAYLOADS);
    const num = (name: string, min: number, max: number, dflt: number): number => {
      const v = p.string(name);
      return v === undefined ? dflt : integer(`--${name}`, v, min, max);
    };
    const seedRaw = p.string("seed");
    const eventIdxRaw = p.string("event-idx");
    const spawnCmd = p.string("spawn");
    const queuesRaw = p.string("queues");
    const vsockUds = p.string("vsock-uds");
    if (vsockUds !== undefined && device !== "vsock")
      throw new UsageError("--vsock-uds goes with --device vsock");
    const options: RunOptions = {
      socket,
      device,
      payload,
      ...(spawnCmd !== undefined ? { spawn: nonEmpty("--spawn", spawnCmd) } : {}),
      listen: p.bool("listen"),
      steps: num("steps", 1, 1_000_000, 50),
      seed: seedRaw === undefined ? Math.floor(Math.random() * 0x80000000) : parseSeed("--seed", seedRaw),
      hostile: p.string("hostile") === undefined ? 0 : rate("--hostile", p.string("hostile")!),
      timeoutMs: num("timeout", 10, 600_000, 2000),
      ...(queuesRaw !== undefined ? { queues: integer("--queues", queuesRaw, 1, 64) } : {}),
      ...(vsockUds !== undefined ? { vsockHost: nonEmpty("--vsock-uds", vsockUds) } : {}),
      ...(eventIdxRaw !== undefined
        ? { eventIdx: choice("--event-idx", eventIdxRaw, ["on", "off"]) === "on" }
        : {}),
      log: err,
    };
    if (options.listen && options.spawn === undefined)
      err("sim conform: --listen: waiting for the back-end to connect to " + socket);
    const reportDir = resolve(p.string("report") ?? `${repoRoot}/reports/conformance/vhost-user-${device}`);
    err(`sim conform --vhost-user: seed ${options.seed}`);

    const fiber = Effect.runFork(runConformance(options));
    let signalled = "";
    const stop = (sig: string) => (): void => {
      signalled = sig;
      err(`${sig}: stopping (socket, memory, eventfds, spawned back-end)`);
      Effect.runFork(Fiber.interrupt(fiber));
    };
    const onInt = stop("SIGINT");
    const onTerm = stop("SIGTERM");
    process.once("SIGINT", onInt);
    process.once("SIGTERM", onTerm);
    const exit = await Effect.runPromise(Fiber.await(fiber));
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
    if (Exit.isFailure(exit)) {
      if (signalled !== "") return 130;
      const f = Cause.findErrorOption(exit.cause);
      if (f._tag === "Some") {
        err(`sim conform --vhost-user: ${f.value.message}`);
        return EXIT_USAGE;
      }
      err(`sim conform --vhost-user: ${Cause.pretty(exit.cause)}`);
      return EXIT_USAGE;
    }
    const result = exit.value;
    console.log(resultTable(result));
    if (!p.bool("no-report")) console.log(`report: ${writeVhostUserReport(reportDir, result)}/report.md`);
    return exitStatus(result);
  });
}
