/**
 * The reference adapter: a program that speaks the conformance protocol over impl/.
 *
 *   npx tsx conformance/adapter-main.ts [--mutant <id>] [--honour-no-interrupt]
 *
 * `--honour-no-interrupt` makes it choose like QEMU where VMMs differ on
 * VRING_AVAIL_F_NO_INTERRUPT (default: like Firecracker and rust-vmm), for the whole session.
 * With `--mutant` (or VLAB_MUTANT) it reintroduces one known bug (conformance/mutants.ts)
 * around the same impl/ code, so the suite can prove it catches that bug.
 */
import { createInterface } from "node:readline";
import { PROTOCOL_VERSION, parseRequest } from "./protocol.ts";
import type { Json, Outcome, Request } from "./protocol.ts";
import { MUTANTS } from "./mutants.ts";
import { memoryOps } from "./ops/memory.ts";
import { BadRequest, NotConfigured, World, errv, okv } from "./ops/world.ts";
import type { Handler } from "./ops/world.ts";
import { subjectOps } from "./ops/subjects.ts";
import { MUTANT_WRAPPERS } from "./ops/mutant-wrappers.ts";

export const IMPLEMENTATION_NAME = "virtio-lab reference (impl/)";

/** The reference handler table, with one mutant's wrapper around it when given one. */
export const handlers = (mutant: string | null = null): Record<string, Handler> => {
  const base = { ...memoryOps, ...subjectOps() };
  const wrap = mutant === null ? undefined : MUTANT_WRAPPERS[mutant];
  return wrap === undefined ? base : { ...wrap(base) };
};

/** Answers one request; never throws. `name` is what hello says (the mutant's, if one). */
export const answer = (
  req: Request,
  world: { current: World },
  table: Record<string, Handler>,
  name: string = IMPLEMENTATION_NAME,
): Outcome => {
  if (req.op === "hello") {
    return okv({
      protocol: PROTOCOL_VERSION,
      name,
      ops: ["hello", "reset", ...Object.keys(table)].sort() as Json[],
    });
  }
  if (req.op === "reset") {
    world.current = new World(world.current.config);
    return okv(null);
  }
  const h = table[req.op];
  if (h === undefined) return errv({ _tag: "UnsupportedOperation", op: req.op });
  try {
    return h(req.args, world.current);
  } catch (e) {
    if (e instanceof BadRequest) return errv({ _tag: "BadRequest", message: e.message });
    if (e instanceof NotConfigured) return errv({ _tag: "NotConfigured", message: e.message });
    // A throw out of impl/ on any input is itself a finding; report it, keep serving.
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`adapter: ${req.op} threw: ${message}\n`);
    return errv({ _tag: "InternalError", message });
  }
};

export const mutantFromArgv = (argv: readonly string[]): string | null => {
  const i = argv.indexOf("--mutant");
  const m = i >= 0 ? argv[i + 1] : process.env["VLAB_MUTANT"];
  return m === undefined || m === "" ? null : m;
};

/** Serves the protocol on stdin/stdout until stdin closes. */
export const runAdapter = (argv: readonly string[]): void => {
  const mutant = mutantFromArgv(argv);
  if (mutant !== null && !MUTANTS.some((m) => m.id === mutant)) {
    process.stderr.write(
      `adapter: unknown mutant ${mutant}; known: ${MUTANTS.map((m) => m.id).join(", ")}\n`,
    );
    process.exit(2);
  }
  const world = { current: new World({ honourNoInterrupt: argv.includes("--honour-no-interrupt") }) };
  const table = handlers(mutant);
  const name = mutant === null ? IMPLEMENTATION_NAME : `${IMPLEMENTATION_NAME} mutant ${mutant}`;
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on("line", (line) => {
    if (line.trim() === "") return;
    const req = parseRequest(line);
    if (typeof req === "string") {
      // Without an id there is nothing to answer to; the log says why.
      process.stderr.write(`adapter: bad request line (${req}): ${line.slice(0, 200)}\n`);
      let id = -1;
      try {
        const v = JSON.parse(line) as { id?: unknown };
        if (typeof v.id === "number") id = v.id;
      } catch {
        // not JSON: answer with id -1
      }
      process.stdout.write(
        JSON.stringify({ id, ok: false, error: { _tag: "BadRequest", message: req } }) + "\n",
      );
      return;
    }
    const out = answer(req, world, table, name);
    process.stdout.write(JSON.stringify({ id: req.id, ...out }) + "\n");
  });
  rl.on("close", () => process.exit(0));
};
