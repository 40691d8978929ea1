/** `npx tsx conformance/main.ts conform|vectors ...`: the CLI without the simulator. */
import { pathToFileURL } from "node:url";
import { EXIT_OK, UsageError, runWithUsage } from "../scripts/args.ts";
import { CONFORM_HELP, VECTORS_HELP, conformMain, vectorsMain } from "./cli.ts";

const PROG = "conformance/main.ts";

const HELP = `usage: npx tsx ${PROG} <command> [options]

commands:
  conform [options]   run the conformance suite against an implementation
  vectors [options]   write deterministic conformance vectors
  help [command]      this text, or a command's

Every command takes --help. Exit status: 0 ok, 1 a case failed or a mutant survived,
2 a usage or setup error.

conform
${CONFORM_HELP}

vectors
${VECTORS_HELP}`;

/** The exit status of `conformance/main.ts argv`. */
export const conformanceMain = async (argv: readonly string[]): Promise<number> => {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "--help" || cmd === "-h") {
    (cmd === undefined ? console.error : console.log)(HELP);
    return cmd === undefined ? 2 : EXIT_OK;
  }
  if (cmd === "conform") return conformMain(rest, PROG);
  if (cmd === "vectors") return vectorsMain(rest, PROG);
  return runWithUsage(
    (l) => console.error(l),
    PROG,
    async () => {
      if (cmd !== "help")
        throw new UsageError(
          `unknown command ${JSON.stringify(cmd)}; valid commands: conform, vectors, help`,
        );
      const [topic, ...extra] = rest;
      if (extra.length > 0) throw new UsageError(`help takes at most 1 command, got ${rest.join(" ")}`);
      if (topic === "conform" || topic === "vectors")
        return (topic === "conform" ? conformMain : vectorsMain)(["--help"], PROG);
      if (topic !== undefined && topic !== "help")
        throw new UsageError(
          `unknown command ${JSON.stringify(topic)}; valid commands: conform, vectors, help`,
        );
      console.log(HELP);
      return EXIT_OK;
    },
  );
};

if (process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url)
  process.exitCode = await conformanceMain(process.argv.slice(2));
