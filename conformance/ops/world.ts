/**
 * The reference adapter's state: what one session of the protocol has built so far (guest
 * memory, queues, ...), and the op handlers' shared helpers. `reset` replaces it whole.
 */
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import type { Json, JsonObject, Outcome, WireError } from "../protocol.ts";
import { fromHex, parseU64, parseUint } from "../protocol.ts";

/** Thrown by argument helpers; the server turns it into a BadRequest response. */
export class BadRequest extends Error {}

/**
 * Choices the reference adapter makes once for its whole session (command-line flags), where
 * VMMs differ: an implementation behaves one way on every run, so a profile is judged on
 * answers that never flip between runs.
 */
export interface AdapterConfig {
  /** Honour VRING_AVAIL_F_NO_INTERRUPT without EVENT_IDX (QEMU) or notify anyway (Firecracker, rust-vmm). */
  readonly honourNoInterrupt: boolean;
}

export const DEFAULT_CONFIG: AdapterConfig = { honourNoInterrupt: false };

export class World {
  memory: GuestMemory | null = null;
  /** Per-subject state, keyed by the subject's name (queues, devices...). */
  readonly slots = new Map<string, unknown>();
  constructor(readonly config: AdapterConfig = DEFAULT_CONFIG) {}

  mem(): GuestMemory {
    if (this.memory === null) throw new NotConfigured("no guest memory: send memory.create first");
    return this.memory;
  }
}

export class NotConfigured extends Error {}

export type Handler = (args: JsonObject, world: World) => Outcome;

export const okv = (value: Json): Outcome => ({ ok: true, value });
export const errv = (error: WireError): Outcome => ({ ok: false, error });

/** Turns a typed error value (bigint fields and all) into its wire form. */
export const wireError = (e: { readonly _tag: string }): WireError => {
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(e as Record<string, unknown>)) {
    if (typeof v === "bigint") out[k] = v.toString(10);
    else if (v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean")
      out[k] = v;
    else if (typeof v === "object" && "_tag" in v) out[k] = wireError(v as { _tag: string });
  }
  return out as WireError;
};

export const argU64 = (args: JsonObject, name: string): bigint => {
  const v = parseU64(args[name]);
  if (v === undefined) throw new BadRequest(`${name} must be a u64 decimal string`);
  return v;
};

export const argUint = (args: JsonObject, name: string, max = 0xffff_ffff): number => {
  const v = parseUint(args[name], max);
  if (v === undefined) throw new BadRequest(`${name} must be an integer in [0, ${max}]`);
  return v;
};

export const argBool = (args: JsonObject, name: string, dflt?: boolean): boolean => {
  const v = args[name];
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== "boolean") throw new BadRequest(`${name} must be a boolean`);
  return v;
};

export const argHex = (args: JsonObject, name: string): Uint8Array => {
  const v = args[name];
  const bytes = typeof v === "string" ? fromHex(v) : undefined;
  if (bytes === undefined) throw new BadRequest(`${name} must be a hex string`);
  return bytes;
};

export const argArray = (args: JsonObject, name: string): readonly Json[] => {
  const v = args[name];
  if (!Array.isArray(v)) throw new BadRequest(`${name} must be an array`);
  return v as readonly Json[];
};
