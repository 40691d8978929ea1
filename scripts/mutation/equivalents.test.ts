/**
 * The gate's check on the equivalent-mutant list (no Stryker run, only its instrumenter): every
 * entry still names exactly one mutant that Stryker makes of the file as it is now. Lines
 * moving do not matter (entries name a mutant by function, mutator and code, not by place);
 * an edit that changes or removes the listed code fails here until the entry is rewritten or
 * dropped (`npm run mutate -- <subject>` prints a ready name for every survivor).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { root } from "../../lib/paths.ts";
import {
  describeMutants,
  instrumentedMutants,
  loadCheckedTimeouts,
  loadEquivalents,
  nameMutant,
  problemsOf,
  type EquivalentGroup,
} from "./equivalents.ts";
import { MUTATED_FILES } from "./subjects.ts";

const sourceOf = (file: string): string => readFileSync(join(root, file), "utf8");

describe("scripts/mutation/equivalents.json", () => {
  it("every entry names exactly one mutant of a mutated file as it is now, once, with a reason", async () => {
    expect(await problemsOf(loadEquivalents(root), MUTATED_FILES, sourceOf)).toEqual([]);
  });
});

describe("scripts/mutation/checked-timeouts.json", () => {
  it("every timeout checked by hand names exactly one mutant of a mutated file as it is now, once, with what was found", async () => {
    expect(await problemsOf(loadCheckedTimeouts(root), MUTATED_FILES, sourceOf)).toEqual([]);
  });
});

describe("the check itself, on a small file", () => {
  const file = "impl/example.ts";
  const source = [
    "export const clamp = (n: number, max: number): number => (n > max ? max : n);",
    "export const floor = (n: number, min: number): number => (n > min ? n : min);",
    "",
  ].join("\n");
  const listOf = async (code: string): Promise<EquivalentGroup[]> => {
    const mutants = describeMutants(file, code, await instrumentedMutants(file, code));
    const m = mutants.find(
      (x) => x.in === "clamp" && x.mutator === "EqualityOperator" && x.replacement === "n >= max",
    );
    if (m === undefined) throw new Error("no n > max to n >= max mutant in clamp");
    return [{ file, reason: "n = max gives max either way", mutants: [nameMutant(m, code, mutants)] }];
  };
  const check = (list: EquivalentGroup[], code: string): Promise<readonly string[]> =>
    problemsOf(list, new Set([file]), () => code);

  it("accepts an entry after lines are added above it or the file is re-indented", async () => {
    const list = await listOf(source);
    expect(await check(list, source)).toEqual([]);
    expect(await check(list, `// a note\nexport const one = 1;\n\n${source}`)).toEqual([]);
    expect(await check(list, source.replace("? max", "?\n    max"))).toEqual([]);
  });

  it("rejects an entry whose code changed, went, or now appears twice in its function", async () => {
    const list = await listOf(source);
    const [changed] = await check(list, source.replace("n > max", "n >= max"));
    expect(changed).toMatch(/no such mutant/);
    const [gone] = await check(list, source.replace(/^export const clamp.*$/m, ""));
    expect(gone).toMatch(/no such mutant/);
    const [twice] = await check(list, source.replace("? max : n", "? max : n > max ? 0 : n"));
    expect(twice).toMatch(/fits 2 mutants/);
  });

  it("rejects a file not mutated, a missing reason and a mutant named twice", async () => {
    const [group] = await listOf(source);
    if (group === undefined) throw new Error("no group");
    expect(await problemsOf([group], new Set(), () => source)).toEqual([
      `${file}: not a file npm run mutate mutates`,
    ]);
    const problems = await check([{ ...group, reason: "" }, group], source);
    expect(problems[0]).toMatch(/no reason/);
    expect(problems[1]).toMatch(/the same mutant as/);
  });
});
