/** Every conformance case, and the commands that start the reference and mutant adapters. */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AnyCase } from "./cases/types.ts";
import { memoryCases } from "./cases/memory.ts";
import { subjectCases } from "./cases/subjects.ts";

export const allCases = (): readonly AnyCase[] => [...memoryCases, ...subjectCases()];

export const conformanceDir = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(conformanceDir, "..");

const shellQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * The command that starts the reference adapter (optionally one of its mutants, or choosing
 * like QEMU on NO_INTERRUPT for the whole session); run it from repoRoot.
 */
export const referenceCommand = (mutant?: string, o: { honourNoInterrupt?: boolean } = {}): string =>
  [
    shellQuote(process.execPath),
    "--import",
    "tsx",
    shellQuote(join(conformanceDir, "adapter-main.ts")),
    ...(mutant !== undefined ? ["--mutant", shellQuote(mutant)] : []),
    ...(o.honourNoInterrupt === true ? ["--honour-no-interrupt"] : []),
  ].join(" ");
