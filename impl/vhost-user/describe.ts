/**
 * One line for any typed error value (`{ _tag, ...fields }`: SessionError, NativeError,
 * TapError, a device's error): the tag, then its fields; bigints in hex, a `request` field
 * by its name, a nested typed error described the same way. The back-end's events, its
 * session's activation failure and the front-end's errors all print through this one.
 */
import { requestName } from "../../spec/vhost-user.ts";

const isTagged = (v: unknown): v is { readonly _tag: string } =>
  typeof v === "object" && v !== null && typeof (v as { _tag?: unknown })._tag === "string";

const field = (k: string, v: unknown): string => {
  if (k === "request" && typeof v === "number") return requestName(v);
  if (typeof v === "bigint") return `0x${v.toString(16)}`;
  if (isTagged(v)) return describeError(v);
  if (typeof v === "object" && v !== null)
    return JSON.stringify(v, (_k: string, x: unknown) => (typeof x === "bigint" ? `0x${x.toString(16)}` : x));
  return String(v);
};

export const describeError = (e: { readonly _tag: string }): string => {
  const fields = Object.entries(e as Record<string, unknown>)
    .filter(([k]) => k !== "_tag")
    .map(([k, v]) => `${k}=${field(k, v)}`);
  return fields.length === 0 ? e._tag : `${e._tag} (${fields.join(", ")})`;
};
