/**
 * The equivalent-mutant list (`scripts/mutation/equivalents.json`): surviving mutants that no
 * test can kill because the mutated program behaves the same, each with its reason. An
 * entry names one mutant exactly: file, the line and column where the mutated code starts,
 * Stryker's mutator name, the original code and the replacement. `npm run mutate` counts a
 * survivor that matches an entry as equivalent; the gate (equivalents.test.ts) checks that
 * every entry still points at that code, so an edit to impl/ cannot leave a stale excuse.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

export interface Equivalent {
  readonly file: string;
  /** 1-based line and column where the mutated code starts (as in Stryker's HTML report). */
  readonly line: number;
  readonly column: number;
  readonly mutator: string;
  readonly original: string;
  readonly replacement: string;
  /** Why no test can tell the mutant from the original. */
  readonly reason: string;
}

export const EQUIVALENTS_FILE = join("scripts", "mutation", "equivalents.json");

export const loadEquivalents = (root: string): readonly Equivalent[] =>
  JSON.parse(readFileSync(join(root, EQUIVALENTS_FILE), "utf8")) as Equivalent[];

/** The offset in `source` of a 1-based line and column (-1 when there is no such line). */
export const offsetOf = (source: string, line: number, column: number): number => {
  let offset = 0;
  for (let l = 1; l < line; l++) {
    const nl = source.indexOf("\n", offset);
    if (nl < 0) return -1;
    offset = nl + 1;
  }
  return offset + column - 1;
};

/** A key that identifies one mutant across runs while the code it mutates is unchanged. */
export const mutantKey = (m: {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly mutator: string;
  readonly original: string;
  readonly replacement: string;
}): string => JSON.stringify([m.file, m.line, m.column, m.mutator, m.original, m.replacement]);
