/**
 * The equivalent-mutant list (`scripts/mutation/equivalents.json`): surviving mutants that no
 * test can kill because the mutated program behaves the same, grouped by file and reason.
 *
 * An entry names a mutant by what it is, not where it sits, so edits elsewhere in the file
 * (lines added above it, a function moved) leave it valid: Stryker's mutator name, the
 * original and the replacement code, the function it is in (`in`: "Class.method", "name", or
 * "(module)" outside any), and, only where that still fits several mutants, the code right
 * before and/or after it. Code is compared with runs of white space made one space, so
 * re-indenting does not break an entry either.
 *
 * Both users resolve an entry against a list of mutants of the current source: `npm run
 * mutate` against the mutants of its report, the gate (equivalents.test.ts) against the
 * mutants Stryker's own instrumenter makes of the file now. An entry must resolve to exactly
 * one mutant: none means the mutant is gone (the code changed; drop or rewrite the entry),
 * several means the entry needs a `before`/`after` snippet to tell them apart.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Instrumenter } from "@stryker-mutator/instrumenter";
import ts from "typescript";

/** One mutant as the list names it. */
export interface MutantName {
  /** The enclosing function: "Class.method", "function", "variable", or "(module)". */
  readonly in: string;
  readonly mutator: string;
  readonly original: string;
  readonly replacement: string;
  /** Code right before / after the original, only where needed to tell mutants apart. */
  readonly before?: string;
  readonly after?: string;
}

/** A group of equivalent mutants of one file that share one reason. */
export interface EquivalentGroup {
  readonly file: string;
  /** Why no test can tell these mutants from the original. */
  readonly reason: string;
  readonly mutants: readonly MutantName[];
}

/** One mutant of a source, as Stryker reports or instruments it (offsets into the source). */
export interface SourceMutant {
  readonly id: string;
  readonly mutator: string;
  readonly replacement: string;
  readonly start: number;
  readonly end: number;
}

export const EQUIVALENTS_FILE = join("scripts", "mutation", "equivalents.json");

export const loadEquivalents = (root: string): readonly EquivalentGroup[] =>
  JSON.parse(readFileSync(join(root, EQUIVALENTS_FILE), "utf8")) as EquivalentGroup[];

/**
 * Timeouts checked by hand (`scripts/mutation/checked-timeouts.json`), in the list's format:
 * each group's reason says what the check found (the mutant really hangs, or a named test
 * kills it in bounded time and Stryker only ran out of time on a loaded machine). They stay
 * counted as detected; `npm run mutate` no longer asks for them to be checked.
 */
export const CHECKED_TIMEOUTS_FILE = join("scripts", "mutation", "checked-timeouts.json");

export const loadCheckedTimeouts = (root: string): readonly EquivalentGroup[] =>
  JSON.parse(readFileSync(join(root, CHECKED_TIMEOUTS_FILE), "utf8")) as EquivalentGroup[];

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

const squeeze = (code: string): string => code.replace(/\s+/g, " ");

// ---------------------------------------------------------------------------------------------
// The enclosing function of an offset.

const nameOf = (node: ts.Node): string | undefined => {
  if (
    ts.isFunctionDeclaration(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node) ||
    ts.isPropertyDeclaration(node) ||
    ts.isVariableDeclaration(node) ||
    ts.isClassDeclaration(node) ||
    ts.isPropertyAssignment(node)
  ) {
    const n = node.name;
    if (n === undefined) return undefined;
    const text =
      ts.isIdentifier(n) || ts.isPrivateIdentifier(n) || ts.isStringLiteral(n) ? n.text : undefined;
    if (text === undefined) return undefined;
    if (ts.isGetAccessorDeclaration(node)) return `get ${text}`;
    if (ts.isSetAccessorDeclaration(node)) return `set ${text}`;
    return text;
  }
  if (ts.isConstructorDeclaration(node)) return "constructor";
  return undefined;
};

/**
 * Names of the enclosing functions of every offset of one source: the chain of named
 * declarations (class, function, method, accessor, property, variable, object property) that
 * contain it, outermost first, joined with dots ("GuestMemory.locate", "decode.step").
 */
export const enclosingNames = (file: string, source: string): ((offset: number) => string) => {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  return (offset) => {
    const names: string[] = [];
    let node: ts.Node = sf;
    for (;;) {
      const child: ts.Node | undefined = node
        .getChildren(sf)
        .find((c) => c.getStart(sf) <= offset && offset < c.getEnd());
      if (child === undefined) break;
      const name = nameOf(child);
      if (name !== undefined) names.push(name);
      node = child;
    }
    return names.length === 0 ? "(module)" : names.join(".");
  };
};

// ---------------------------------------------------------------------------------------------
// Resolving names to mutants and back.

/** What a mutant is, for matching: its function, original code and the code around it. */
export interface DescribedMutant extends SourceMutant {
  readonly in: string;
  readonly original: string;
}

export const describeMutants = (
  file: string,
  source: string,
  mutants: readonly SourceMutant[],
): readonly DescribedMutant[] => {
  const within = enclosingNames(file, source);
  return mutants.map((m) => ({ ...m, in: within(m.start), original: source.slice(m.start, m.end) }));
};

const endsWithCode = (source: string, end: number, code: string): boolean => {
  // Squeezing never lengthens code, so a window of the snippet's length plus the white space
  // squeezed out of it (at most its length again, plus one run at each end) is enough.
  const want = squeeze(code).trim();
  const have = squeeze(source.slice(Math.max(0, end - 2 * code.length - 64), end)).trimEnd();
  return have.endsWith(want);
};
const startsWithCode = (source: string, start: number, code: string): boolean => {
  const want = squeeze(code).trim();
  const have = squeeze(source.slice(start, start + 2 * code.length + 64)).trimStart();
  return have.startsWith(want);
};

/** The mutants of `source` a name fits (exactly one when the entry is good). */
export const resolve = (
  name: MutantName,
  source: string,
  mutants: readonly DescribedMutant[],
): readonly DescribedMutant[] =>
  mutants.filter(
    (m) =>
      m.mutator === name.mutator &&
      m.in === name.in &&
      squeeze(m.original) === squeeze(name.original) &&
      squeeze(m.replacement) === squeeze(name.replacement) &&
      (name.before === undefined || endsWithCode(source, m.start, name.before)) &&
      (name.after === undefined || startsWithCode(source, m.end, name.after)),
  );

/**
 * The shortest name of mutant `m` that fits it alone among `mutants`: its function, mutator,
 * original and replacement, then as much code before and after it (whole tokens, growing
 * by one token a side at a time) as it takes.
 */
export const nameMutant = (
  m: DescribedMutant,
  source: string,
  mutants: readonly DescribedMutant[],
): MutantName => {
  const base: MutantName = {
    in: m.in,
    mutator: m.mutator,
    original: squeeze(m.original),
    replacement: squeeze(m.replacement),
  };
  if (resolve(base, source, mutants).length === 1) return base;
  // Offsets one, two, ... tokens (a word, or a run of other characters) away from `from`.
  const tokenSteps = (from: number, step: 1 | -1): number[] => {
    const out: number[] = [];
    const at = (i: number): string => source[step === 1 ? i : i - 1] ?? "";
    const inside = (i: number): boolean => (step === 1 ? i < source.length : i > 0);
    let i = from;
    while (out.length < 40 && inside(i)) {
      while (inside(i) && /\s/.test(at(i))) i += step;
      if (!inside(i)) break;
      const word = /\w/.test(at(i));
      do i += step;
      while (inside(i) && !/\s/.test(at(i)) && /\w/.test(at(i)) === word);
      out.push(i);
    }
    return out;
  };
  const left = tokenSteps(m.start, -1);
  const right = tokenSteps(m.end, 1);
  for (let k = 1; k <= Math.max(left.length, right.length); k++) {
    for (const [b, a] of [
      [0, k],
      [k, 0],
      [k, k],
    ] as const) {
      const name: MutantName = {
        ...base,
        ...(b > 0
          ? { before: squeeze(source.slice(left[Math.min(b, left.length) - 1] ?? m.start, m.start)).trim() }
          : {}),
        ...(a > 0
          ? { after: squeeze(source.slice(m.end, right[Math.min(a, right.length) - 1] ?? m.end)).trim() }
          : {}),
      };
      if (resolve(name, source, mutants).length === 1) return name;
    }
  }
  return base;
};

// ---------------------------------------------------------------------------------------------
// The mutants Stryker makes of a source, without running anything.

const quiet = {
  isTraceEnabled: () => false,
  isDebugEnabled: () => false,
  isInfoEnabled: () => false,
  isWarnEnabled: () => false,
  isErrorEnabled: () => false,
  isFatalEnabled: () => false,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  fatal: () => undefined,
};

/**
 * Every mutant Stryker's instrumenter (the one `npm run mutate` runs, with its default
 * mutators) makes of `source`, with offsets into it.
 */
export const instrumentedMutants = async (file: string, source: string): Promise<readonly SourceMutant[]> => {
  const { mutants } = await new Instrumenter(quiet).instrument(
    [{ name: file, content: source, mutate: true }],
    {
      plugins: null,
      ignorers: [],
      excludedMutations: [],
    },
  );
  // The instrumenter's positions are 0-based lines and columns.
  return mutants.map((m) => ({
    id: m.id,
    mutator: m.mutatorName,
    replacement: m.replacement,
    start: offsetOf(source, m.location.start.line + 1, m.location.start.column + 1),
    end: offsetOf(source, m.location.end.line + 1, m.location.end.column + 1),
  }));
};

// ---------------------------------------------------------------------------------------------
// The gate's check.

/**
 * What is wrong with a list, checked against the mutants Stryker makes of each file's
 * source now (`sourceOf`): a file not mutated, a name that fits no mutant or several, a
 * mutant named twice, a replacement equal to its original, a group without a reason.
 */
export const problemsOf = async (
  groups: readonly EquivalentGroup[],
  mutated: ReadonlySet<string>,
  sourceOf: (file: string) => string,
): Promise<readonly string[]> => {
  const problems: string[] = [];
  const perFile = new Map<string, { source: string; mutants: readonly DescribedMutant[] }>();
  const named = new Map<string, string>();
  for (const group of groups) {
    if (!mutated.has(group.file)) {
      problems.push(`${group.file}: not a file npm run mutate mutates`);
      continue;
    }
    if (group.reason.trim().length < 20) problems.push(`${group.file}: a group has no reason`);
    let of = perFile.get(group.file);
    if (of === undefined) {
      const source = sourceOf(group.file);
      of = {
        source,
        mutants: describeMutants(group.file, source, await instrumentedMutants(group.file, source)),
      };
      perFile.set(group.file, of);
    }
    for (const name of group.mutants) {
      const what = `${group.file} in ${name.in}: ${name.mutator} ${JSON.stringify(name.original)} -> ${JSON.stringify(name.replacement)}`;
      if (squeeze(name.original) === squeeze(name.replacement))
        problems.push(`${what}: the replacement is the original`);
      const fits = resolve(name, of.source, of.mutants);
      if (fits.length === 0)
        problems.push(`${what}: no such mutant in the file now (its code changed or went)`);
      else if (fits.length > 1)
        problems.push(`${what}: fits ${fits.length} mutants; add "before"/"after" code to tell them apart`);
      else {
        const key = `${group.file}#${fits[0]?.id ?? ""}`;
        const earlier = named.get(key);
        if (earlier !== undefined) problems.push(`${what}: the same mutant as ${earlier}`);
        else named.set(key, what);
      }
    }
  }
  return problems;
};
