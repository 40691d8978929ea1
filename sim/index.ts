/**
 * Entry point: `npx tsx sim <command>` (see sim/cli.ts).
 *
 * SIGINT, SIGTERM and SIGHUP interrupt the running program: the scenario's fiber is
 * interrupted, every acquireRelease releases (network namespace, TAP, sockets, temp
 * directories), then the process exits 128 + the signal's number. A second signal while
 * that cleanup runs exits at once. (@effect/platform-node's runMain does this but does not
 * run on Node 20; this is the same thing by hand.)
 */
import { constants } from "node:os";
import { defaultIo, Interrupted, main } from "./cli.ts";

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

const controller = new AbortController();
let caught: (typeof SIGNALS)[number] | undefined;
const onSignal = (sig: (typeof SIGNALS)[number]): void => {
  const code = 128 + constants.signals[sig];
  if (caught !== undefined) {
    process.stderr.write(`\nsim: ${sig} again: exiting without cleaning up\n`);
    process.exit(code);
  }
  caught = sig;
  process.stderr.write(`\nsim: ${sig}: stopping and cleaning up (again to force)\n`);
  controller.abort();
};
for (const sig of SIGNALS) process.on(sig, () => onSignal(sig));
// `sim trace FILE | head`, `sim vhost-user ... | head`: a reader that stops reading stops the
// program as a signal does (what runs is interrupted and releases what it holds, e.g. a
// server's socket files), the rest of the output is dropped, and the exit is quiet.
let readerGone = false;
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code !== "EPIPE") throw e;
  if (readerGone) return;
  readerGone = true;
  controller.abort();
});

let code: number;
try {
  code = await main(process.argv.slice(2), { ...defaultIo(), signal: controller.signal });
} catch (e) {
  if (!(e instanceof Interrupted)) throw e;
  code = readerGone ? 0 : 1;
}
if (caught !== undefined) code = 128 + constants.signals[caught];
// Output still queued for a slow reader (`sim trace FILE | less`: a pipe takes writes
// asynchronously once it is full) would be cut off by exit: let it out first. The callback
// runs once everything written before it is out, or at once with an error when the reader
// is gone. Not after a signal: the user asked to stop, and a reader that is not reading
// would keep the program waiting.
if (!readerGone && caught === undefined)
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
// Exit explicitly: a scenario's sockets are closed by then, but a stray handle elsewhere
// must not keep the gate waiting.
process.exit(code);
