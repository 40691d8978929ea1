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

// Errors that belong to the protocol rather than to a subject's spec. An adapter answers
// `UnsupportedOperation` for an op it does not implement (the case is skipped, not failed),
// `BadRequest` for a malformed request, `NotConfigured` when an op needs state a previous
// op should have created (no memory yet, no such queue).

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
 * Answers that mean "this implementation cannot do that here", not a verdict: the run that
 * needs them is skipped (only that run), never failed. `Unsupported` may be answered for one
 * op or for one shape of its arguments; `ResourceLimit` when the adapter will not allocate
 * (or address) what was asked.
 */
export const SKIP_TAGS: readonly string[] = ["Unsupported", "UnsupportedOperation", "ResourceLimit"];

/**
 * Answers that never stand for a refusal of the guest's input, even where only "some error"
 * is required (safety steps): the implementation threw, hung, died, or the adapter did not
 * understand the request.
 */
export const NOT_A_REFUSAL: readonly string[] = [
  "InternalError",
  "Timeout",
  "ProcessExited",
  "MalformedResponse",
  "BadRequest",
  "NotConfigured",
];

/**
 * Peer error names mapped onto the vocabulary (docs/conformance-protocol.md §4.1). `op` "*"
 * applies to every op. An adapter may also give its own map in hello's `errors`.
 */
export interface ErrorAlias {
  readonly op: string;
  readonly peer: string;
  readonly tag: string;
  readonly source: string;
}

export const ERROR_ALIASES: readonly ErrorAlias[] = [
  { op: "*", peer: "QueueNotReady", tag: "NotReady", source: "rust-vmm virtio-queue Error" },
  { op: "*", peer: "InvalidAvailRingIndex", tag: "InvalidAvailIdx", source: "rust-vmm virtio-queue Error" },
  {
    op: "queue.addUsed",
    peer: "InvalidDescriptorIndex",
    tag: "DescIndexOutOfBounds",
    source: "rust-vmm virtio-queue queue.rs add_used",
  },
  {
    op: "*",
    peer: "AddressOverflow",
    tag: "GuestAddressOverflow",
    source: "rust-vmm virtio-queue Error",
  },
  { op: "memory.read", peer: "PartialBuffer", tag: "InvalidGuestAddress", source: "vm-memory Error" },
  { op: "memory.write", peer: "PartialBuffer", tag: "InvalidGuestAddress", source: "vm-memory Error" },
  {
    op: "memory.create",
    peer: "MemoryRegionOverlap",
    tag: "OverlappingRegions",
    source: "vm-memory GuestRegionCollectionError",
  },
  {
    op: "memory.create",
    peer: "UnsortedMemoryRegions",
    tag: "OverlappingRegions",
    source: "vm-memory GuestRegionCollectionError (the suite sends regions sorted)",
  },
  {
    op: "*",
    peer: "UnexpectedReadOnlyDescriptor",
    tag: "UnwritableDescriptor",
    source: "rust-vmm virtio-vsock packet.rs",
  },
  {
    op: "*",
    peer: "UnexpectedWriteOnlyDescriptor",
    tag: "UnreadableDescriptor",
    source: "rust-vmm virtio-vsock packet.rs",
  },
  {
    op: "*",
    peer: "DescriptorLengthTooSmall",
    tag: "HdrDescTooSmall",
    source: "rust-vmm virtio-vsock packet.rs",
  },
  {
    op: "*",
    peer: "DescriptorChainTooShort",
    tag: "HdrDescMissing",
    source: "rust-vmm virtio-vsock packet.rs (no head descriptor)",
  },
  { op: "*", peer: "InvalidMemoryAccess", tag: "GuestMemory", source: "rust-vmm virtio-vsock packet.rs" },
  {
    op: "*",
    peer: "GuestMemoryError",
    tag: "GuestMemory",
    source: "rust-vmm virtio-queue descriptor_utils.rs Error",
  },
];

/** A peer's tag in the vocabulary: its own hello map first, then ERROR_ALIASES. */
export const canonicalTag = (
  op: string,
  tag: string,
  own: Readonly<Record<string, string>> | undefined,
): string => {
  const mine = own?.[tag];
  if (mine !== undefined) return mine;
  const a = ERROR_ALIASES.find((x) => x.peer === tag && (x.op === "*" || x.op === op));
  return a === undefined ? tag : a.tag;
};

/** The answer with its error tag put into the vocabulary (the original kept as `peerTag`). */
export const normalizeOutcome = (
  op: string,
  o: Outcome,
  own: Readonly<Record<string, string>> | undefined,
): Outcome => {
  if (o.ok) return o;
  const tag = canonicalTag(op, o.error._tag, own);
  return tag === o.error._tag ? o : { ok: false, error: { ...o.error, _tag: tag, peerTag: o.error._tag } };
};

/**
 * Fields of a chain walk an adapter may leave out (a peer's chain iterator may not know a
 * descriptor's table index, whether it came from an indirect table, or why the walk ended):
 * compared only when the answer gives them.
 */
export const OPTIONAL_WALK_KEYS: readonly string[] = ["index", "indirect", "end"];
/** The ops whose answers hold a chain walk (where OPTIONAL_WALK_KEYS apply). */
export const OPTIONAL_WALK_OPS: readonly string[] = ["chain.walk", "queue.pop"];
const OPTIONAL_IN: ReadonlySet<string> = new Set(OPTIONAL_WALK_OPS);

/** `expected` without the optional keys that `actual` leaves out (at any depth, arrays pairwise). */
const dropAbsent = (expected: Json, actual: Json): Json => {
  if (Array.isArray(expected) && Array.isArray(actual))
    return (expected as readonly Json[]).map((e, i) =>
      i < actual.length ? dropAbsent(e, (actual as readonly Json[])[i]!) : e,
    );
  if (!isObject(expected) || !isObject(actual)) return expected;
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(expected)) {
    if (OPTIONAL_WALK_KEYS.includes(k) && !(k in actual)) continue;
    out[k] = k in actual ? dropAbsent(v, actual[k]!) : v;
  }
  return out;
};

/**
 * Does an actual outcome satisfy an expected one? Errors compare by tag only (fields are
 * diagnostics and may differ between implementations); values compare exactly, except the
 * optional walk fields of chain.walk / queue.pop. With `anyRefusal` (safety steps: the only
 * requirement is that the input is refused) any error that is a refusal matches an expected
 * error, whatever its tag.
 */
export const outcomeMatches = (
  expected: Outcome,
  actual: Outcome,
  o: { readonly op?: string; readonly anyRefusal?: boolean } = {},
): boolean => {
  if (expected.ok !== actual.ok) return false;
  if (!expected.ok) {
    if (actual.ok) return false;
    if (actual.error._tag === expected.error._tag) return true;
    return o.anyRefusal === true && !NOT_A_REFUSAL.includes(actual.error._tag);
  }
  if (!actual.ok) return false;
  const want =
    o.op !== undefined && OPTIONAL_IN.has(o.op) ? dropAbsent(expected.value, actual.value) : expected.value;
  return canonical(want) === canonical(actual.value);
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
