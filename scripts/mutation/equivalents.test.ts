/**
 * The gate's check on the equivalent-mutant list (no Stryker run): every entry still names a
 * mutant that exists. Its file is one `npm run mutate` mutates, the original code still
 * stands at its line and column, it has a reason, and no entry is listed twice. An edit to
 * impl/ that moves or changes listed code fails here until the list is brought up to date
 * (re-run `npm run mutate -- <subject>` and copy the new place from its survivor list).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { root } from "../paths.ts";
import { loadEquivalents, mutantKey, offsetOf } from "./equivalents.ts";
import { MUTATED_FILES } from "./subjects.ts";

const entries = loadEquivalents(root);
const sources = new Map<string, string>();
const sourceOf = (file: string): string => {
  let s = sources.get(file);
  if (s === undefined) {
    s = readFileSync(join(root, file), "utf8");
    sources.set(file, s);
  }
  return s;
};

describe("scripts/mutation/equivalents.json", () => {
  it("every entry names a mutated file, the code at its place, a mutation and a reason", () => {
    const problems: string[] = [];
    for (const e of entries) {
      const where = `${e.file}:${e.line}:${e.column} ${e.mutator}`;
      if (!MUTATED_FILES.has(e.file)) {
        problems.push(`${where}: not a file npm run mutate mutates`);
        continue;
      }
      const source = sourceOf(e.file);
      const at = offsetOf(source, e.line, e.column);
      const found = at < 0 ? "" : source.slice(at, at + e.original.length);
      if (e.original === "" || found !== e.original)
        problems.push(
          `${where}: expected ${JSON.stringify(e.original)}, the source has ${JSON.stringify(found)}`,
        );
      if (e.replacement === e.original) problems.push(`${where}: the replacement is the original`);
      if (e.reason.trim().length < 20) problems.push(`${where}: no reason given`);
    }
    expect(problems).toEqual([]);
  });

  it("names each mutant once", () => {
    const keys = entries.map(mutantKey);
    expect(keys.filter((k, i) => keys.indexOf(k) !== i)).toEqual([]);
  });
});
