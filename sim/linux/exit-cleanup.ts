/**
 * The last line of cleanup for what a real-guest run leaves outside this process (QEMU,
 * its folders, network namespaces): Effect scopes release them on every path the program
 * itself takes, but a Ctrl-C (SIGINT), SIGTERM or SIGHUP to a Node process without a
 * handler ends it at once, running no finalizer. Each resource registers a synchronous
 * cleanup here while it lives; on such a signal they all run, and then, if nobody else
 * handles the signal, it is raised again so the process ends as it would have. Cleanups
 * also run at `process.exit`.
 */

const cleanups = new Set<() => void>();
const SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
let installed = false;

const runAll = (): void => {
  for (const c of [...cleanups]) {
    cleanups.delete(c);
    try {
      c();
    } catch {
      // best effort: the others still run
    }
  }
};

const onSignal = (sig: NodeJS.Signals): void => {
  // Another handler (sim/index.ts interrupts the fibers, whose scopes release everything in
  // order) decides what happens next; the exit hook stays as the fallback.
  if (process.listenerCount(sig) > 1) return;
  runAll();
  uninstall();
  // Nobody else handles it: end the process the way the signal would have.
  process.kill(process.pid, sig);
};

const onExit = (): void => runAll();

const install = (): void => {
  if (installed) return;
  installed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
  process.on("exit", onExit);
};

const uninstall = (): void => {
  if (!installed) return;
  installed = false;
  for (const s of SIGNALS) process.off(s, onSignal);
  process.off("exit", onExit);
};

/** Runs `cleanup` if the process is signalled or exits first; the returned function unregisters it. */
export const registerExitCleanup = (cleanup: () => void): (() => void) => {
  cleanups.add(cleanup);
  install();
  return () => {
    cleanups.delete(cleanup);
    if (cleanups.size === 0) uninstall();
  };
};
