/**
 * The conformance wire protocol (docs/conformance-protocol.md is the full description).
 *
 * One JSON object per line on the implementation's stdin (requests) and stdout (responses);
 * stderr is the implementation's log. Integers up to u32 are JSON numbers, u64 values are
 * decimal strings, bytes are lowercase hex strings.
 *
 *   request:  {"id": 1, "op": "memory.read", "args": {"addr": "4096", "len": 4}}
 *   response: {"id": 1, "ok": true, "value": {"data": "00000000"}}
 *             {"id": 1, "ok": false, "error": {"_tag": "InvalidGuestAddress"}}
 */

export const PROTOCOL_VERSION = 1;

export type Json = null | boolean | number | string | readonly Json[] | { readonly [k: string]: Json };
export type JsonObject = { readonly [k: string]: Json };

export interface Request {
  readonly id: number;
  readonly op: string;
  readonly args: JsonObject;
}

/** An error in the canonical vocabulary: the tag is the spec's error name. */
export interface WireError {
  readonly _tag: string;
  readonly [field: string]: Json;
}

export type Response =
  | { readonly id: number; readonly ok: true; readonly value: Json }
  | { readonly id: number; readonly ok: false; readonly error: WireError };

/** A response without its id: what a vector expects. */
export type Outcome =
  { readonly ok: true; readonly value: Json } | { readonly ok: false; readonly error: WireError };

/**
 * Errors that belong to the protocol rather than to a subject's spec. An adapter answers
 * `UnsupportedOperation` for an op it does not implement (the case is skipped, not failed),
 * `BadRequest` for a malformed request, `NotConfigured` when an op needs state a previous
 * op should have created (no memory yet, no such queue).
 */
export const PROTOCOL_ERRORS = ["UnsupportedOperation", "BadRequest", "NotConfigured"] as const;

// ---- codecs ----------------------------------------------------------------------------

export const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

/** Lowercase or uppercase hex, even length; undefined otherwise. */
export const fromHex = (hex: string): Uint8Array | undefined => {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return undefined;
  return new Uint8Array(Buffer.from(hex, "hex"));
};

export const U64_MAX = (1n << 64n) - 1n;

/** A u64 as a decimal string. */
export const u64 = (v: bigint | number): string => BigInt(v).toString(10);

/** A decimal u64 string, or a non-negative safe integer; undefined otherwise. */
export const parseU64 = (v: Json | undefined): bigint | undefined => {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : undefined;
  if (typeof v !== "string" || !/^[0-9]{1,20}$/.test(v)) return undefined;
  const n = BigInt(v);
  return n <= U64_MAX ? n : undefined;
};

/** A JSON number in [0, max]. */
export const parseUint = (v: Json | undefined, max = 0xffff_ffff): number | undefined =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max ? v : undefined;

export const isObject = (v: unknown): v is JsonObject =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Parses one response line; undefined when it is not a well-formed response. */
export const parseResponse = (line: string): Response | undefined => {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!isObject(v) || typeof v["id"] !== "number" || typeof v["ok"] !== "boolean") return undefined;
  if (v["ok"] === true) return { id: v["id"], ok: true, value: v["value"] ?? null };
  const e = v["error"];
  if (!isObject(e) || typeof e["_tag"] !== "string") return undefined;
  return { id: v["id"], ok: false, error: e as WireError };
};

/** Parses one request line; a string saying what is wrong otherwise. */
export const parseRequest = (line: string): Request | string => {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return "not JSON";
  }
  if (!isObject(v)) return "not an object";
  const id = v["id"];
  if (typeof id !== "number" || !Number.isInteger(id)) return "id must be an integer";
  if (typeof v["op"] !== "string") return "op must be a string";
  const args = v["args"] ?? {};
  if (!isObject(args)) return "args must be an object";
  return { id, op: v["op"], args };
};

/** Canonical JSON text (sorted keys) for comparing values. */
export const canonical = (v: Json): string => {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${(v as readonly Json[]).map(canonical).join(",")}]`;
  const o = v as JsonObject;
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(o[k]!)}`).join(",")}}`;
};

/**
 * Does an actual outcome satisfy an expected one? Errors compare by tag only (fields are
 * diagnostics and may differ between implementations); values compare exactly.
 */
export const outcomeMatches = (expected: Outcome, actual: Outcome): boolean => {
  if (expected.ok !== actual.ok) return false;
  if (!expected.ok) return !actual.ok && actual.error._tag === expected.error._tag;
  return actual.ok && canonical(expected.value) === canonical(actual.value);
};

/** The outcome with an ok object value cut down to `keys` (absent keys stay absent). */
export const projectOutcome = (o: Outcome, keys: readonly string[] | undefined): Outcome => {
  if (keys === undefined || !o.ok || !isObject(o.value)) return o;
  const v = o.value;
  const out: Record<string, Json> = {};
  for (const k of keys) if (v[k] !== undefined) out[k] = v[k]!;
  return { ok: true, value: out };
};

export const showOutcome = (o: Outcome): string =>
  o.ok ? `ok ${canonical(o.value)}` : `error ${o.error._tag}`;
