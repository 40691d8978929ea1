/**
 * The one command-line parser: every command (`sim run|list|smoke|help`, `sim conform`,
 * `sim vectors`, `conformance/main.ts`) reads its argv through `parseCommand` and its numbers
 * through the value parsers below, so errors read the same and `--seed -1` or `--faults 0x1`
 * are rejected the same way everywhere.
 *
 * Why `node:util` parseArgs and not effect/cli: `Command.run` needs FileSystem, Path,
 * Terminal, Stdio and ChildProcessSpawner services, which only `@effect/platform-node`
 * provides, and that does not run on Node 20; its help and error formats would also replace
 * the help texts users already know. parseArgs is synchronous and dependency-free; this
 * module adds what it lacks (values that start with `-`, our messages, number parsing).
 *
 * Adding a flag: add `name: { kind: "string" | "boolean" }` (`multiple: true` to repeat
 * it) to the command's `CommandSpec.flags`, read it with `p.string("name")` /
 * `p.strings("name")` / `p.bool("name")`, convert a value with `integer`, `seed`, `rate`,
 * `duration` or `choice` (they throw `UsageError`), and add a line to the help text.
 * Adding a command: write a `CommandSpec` and a handler `(argv, io) => Promise<number>` that
 * calls `parseCommand(spec, argv)` first (it returns `"help"` for -h/--help: print
 * `spec.help`, return 0); add it to the dispatch table in sim/cli.ts (`COMMANDS`).
 * Exit status everywhere: 0 ok, 1 a finding (a broken invariant, a failed case), 2 usage;
 * `runWithUsage` turns a thrown `UsageError` into its one line, a hint, and 2.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";

export const EXIT_OK = 0;
export const EXIT_FINDING = 1;
export const EXIT_USAGE = 2;

/** A bad command line or setup (unwritable --report...): one line, exit 2. */
export class UsageError extends Error {
  readonly _tag = "UsageError";
}

export interface FlagSpec {
  readonly kind: "string" | "boolean";
  /** May be given more than once (`p.strings`). */
  readonly multiple?: boolean;
}

export interface CommandSpec {
  /** As typed after `npx tsx`: "sim run", "conformance/main.ts conform". */
  readonly name: string;
  readonly help: string;
  /** Long names without the dashes; -h/--help is implied. */
  readonly flags: Readonly<Record<string, FlagSpec>>;
  /** Positional arguments allowed (default 0) and what they are, for the error. */
  readonly positionals?: { readonly max: number; readonly what: string };
}

export interface Parsed {
  readonly positionals: readonly string[];
  has(name: string): boolean;
  /** The value of a string flag (the last one when repeated). */
  string(name: string): string | undefined;
  strings(name: string): readonly string[];
  bool(name: string): boolean;
}

const shortName = (spec: CommandSpec): string => spec.name.split(" ").pop() ?? spec.name;

const validOptions = (spec: CommandSpec): string =>
  [...Object.keys(spec.flags).map((f) => `--${f}`), "--help"].join(", ");

/**
 * Parses `argv` for `spec`; `"help"` when -h/--help is given (anywhere before `--`).
 * Throws UsageError on an unknown flag, a missing value or too many arguments.
 */
export const parseCommand = (spec: CommandSpec, argv: readonly string[]): Parsed | "help" => {
  const end = argv.indexOf("--");
  const head = end < 0 ? argv : argv.slice(0, end);
  if (head.includes("--help") || head.includes("-h")) return "help";
  // parseArgs refuses `--seed -1` as ambiguous; a string flag takes the next word as its
  // value whatever it looks like (so the value parser, not the tokenizer, judges `-1`),
  // unless that word is another flag of this command.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (i === end) {
      args.push(...argv.slice(i));
      break;
    }
    const name = a.startsWith("--") && !a.includes("=") ? a.slice(2) : undefined;
    if (name !== undefined && spec.flags[name]?.kind === "string") {
      const v = argv[i + 1];
      const isFlag = v !== undefined && v.startsWith("--") && v.slice(2).split("=")[0]! in spec.flags;
      if (v === undefined || isFlag || i + 1 === end) throw new UsageError(`${a} needs a value`);
      args.push(`${a}=${v}`);
      i++;
    } else args.push(a);
  }
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = {};
  for (const [k, f] of Object.entries(spec.flags))
    options[k] = { type: f.kind, ...(f.multiple === true ? { multiple: true } : {}) };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (e) {
    const code = (e as { code?: string }).code;
    const quoted = /'([^']+)'/.exec(String((e as Error).message))?.[1] ?? "";
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION")
      throw new UsageError(
        `unknown option ${quoted} for ${shortName(spec)}; valid options: ${validOptions(spec)}`,
      );
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE")
      throw new UsageError(`${quoted.split(" ")[0]} takes no value`);
    throw e;
  }
  const max = spec.positionals?.max ?? 0;
  if (parsed.positionals.length > max)
    throw new UsageError(
      max === 0
        ? `${shortName(spec)} takes no arguments, got ${JSON.stringify(parsed.positionals[0])}`
        : `${shortName(spec)} takes at most ${max} ${spec.positionals?.what ?? "argument"}, got ${parsed.positionals.join(" ")}`,
    );
  const values = parsed.values as Record<string, string | boolean | (string | boolean)[] | undefined>;
  const all = (name: string): readonly string[] => {
    const v = values[name];
    return v === undefined
      ? []
      : (Array.isArray(v) ? v : [v]).filter((x): x is string => typeof x === "string");
  };
  return {
    positionals: parsed.positionals,
    has: (name) => values[name] !== undefined,
    string: (name) => all(name).at(-1),
    strings: all,
    bool: (name) => values[name] === true,
  };
};

/** An integer in [min, max], decimal digits only (no `0x1`, `1e3`, `1.0`, spaces). */
export const integer = (flag: string, raw: string, min: number, max: number): number => {
  const ok = min < 0 ? /^-?\d+$/ : /^\d+$/;
  const n = Number(raw);
  if (!ok.test(raw) || n < min || n > max)
    throw new UsageError(
      `${flag} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`}, got ${JSON.stringify(raw)}`,
    );
  return n;
};

export const SEED_MAX = 0xffffffff;
/** A seed: an integer in [0, 2^32). */
export const seed = (flag: string, raw: string): number => integer(flag, raw, 0, SEED_MAX);

/** A rate in [0, 1], written as a decimal (`0.2`, `.05`, `1`). */
export const rate = (flag: string, raw: string): number => {
  const n = Number(raw);
  if (!/^(\d+\.?\d*|\.\d+)$/.test(raw) || !(n >= 0 && n <= 1))
    throw new UsageError(`${flag} must be a rate between 0 and 1, got ${JSON.stringify(raw)}`);
  return n;
};

/** `500us`, `20ms`, `2s`, `1.5s` → microseconds, in [1 µs, 3600 s]. */
export const duration = (flag: string, raw: string): number => {
  const m = /^(\d+(?:\.\d+)?)(us|ms|s)$/.exec(raw);
  if (m === null)
    throw new UsageError(`${flag} must look like 500us, 20ms or 2s, got ${JSON.stringify(raw)}`);
  const v = Number(m[1]) * (m[2] === "us" ? 1 : m[2] === "ms" ? 1000 : 1_000_000);
  if (!(v >= 1) || v > 3600e6) throw new UsageError(`${flag} must be between 1us and 3600s, got ${raw}`);
  return Math.round(v);
};

/** One of `choices`. */
export const choice = <T extends string>(flag: string, raw: string, choices: readonly T[]): T => {
  if (!(choices as readonly string[]).includes(raw))
    throw new UsageError(`${flag} must be one of ${choices.join(", ")}, got ${JSON.stringify(raw)}`);
  return raw as T;
};

/** A non-empty value (a path, a command). */
export const nonEmpty = (flag: string, raw: string): string => {
  if (raw === "") throw new UsageError(`${flag} needs a value`);
  return raw;
};

/** The two lines every usage error prints, then EXIT_USAGE. */
export const usageExit = (err: (line: string) => void, command: string, e: UsageError): number => {
  err(`${command}: ${e.message}`);
  err(`try: npx tsx ${command} --help`);
  return EXIT_USAGE;
};

/** Runs a command body; a UsageError it throws becomes `usageExit`. */
export const runWithUsage = async (
  err: (line: string) => void,
  command: string,
  body: () => number | Promise<number>,
): Promise<number> => {
  try {
    return await body();
  } catch (e) {
    if (e instanceof UsageError) return usageExit(err, command, e);
    throw e;
  }
};

const FS_REASONS: Readonly<Record<string, string>> = {
  ENOTDIR: "a file is in the way (not a directory)",
  EEXIST: "a file is in the way (not a directory)",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
};

/**
 * Makes sure `dir` is (or can be made) a directory this process can write, before any work
 * is done: creates it, then creates and removes a probe file in it (root passes access()
 * checks a read-only mount still refuses). Throws UsageError naming `flag` otherwise.
 */
export const writableDir = (flag: string, dir: string): string => {
  try {
    mkdirSync(dir, { recursive: true });
    const probe = mkdtempSync(join(dir, ".write-probe-"));
    rmSync(probe, { recursive: true, force: true });
  } catch (e0) {
    const e = e0 as NodeJS.ErrnoException;
    // A recursive mkdir reports ENOENT on a read-only mount: ask the first missing folder.
    if (e.code === "ENOENT") {
      let first = resolve(dir);
      while (!existsSync(dirname(first)) && dirname(first) !== first) first = dirname(first);
      try {
        mkdirSync(first);
        rmSync(first, { recursive: true, force: true });
      } catch (e1) {
        Object.assign(e, { code: (e1 as NodeJS.ErrnoException).code });
      }
    }
    const code = e.code ?? "";
    throw new UsageError(`${flag} ${dir}: cannot write there: ${FS_REASONS[code] ?? (e as Error).message}`);
  }
  return dir;
};
