/**
 * The vhost-user message codec, one for both directions (a back-end decodes requests and
 * encodes replies; a front-end does the opposite): header, payload layouts by request
 * (spec/vhost-user.ts `LAYOUTS`), fd counts (VU-FDS). Pure: bytes and numbers in, values or
 * typed errors out; the socket I/O is in channel.ts.
 */
import { err, ok, type Result } from "../../spec/result.ts";
import {
  CONFIG_HEADER_SIZE,
  FLAG_REPLY,
  HEADER_SIZE,
  LAYOUTS,
  MAX_CONFIG_SIZE,
  MAX_PAYLOAD,
  MAX_REGIONS,
  REGION_SIZE,
  VERSION,
  VERSION_MASK,
  VRING_ADDR_SIZE,
  expectedFds,
  isKnownRequest,
  type Body,
  type CodecError,
  type Direction,
  type Layout,
  type MemoryRegionDesc,
  type Message,
} from "../../spec/vhost-user.ts";

export interface Header {
  readonly request: number;
  readonly flags: number;
  readonly size: number;
}

/** VU-HDR-VERSION, VU-HDR-REPLY-FLAG, VU-HDR-SIZE, VU-REQ-KNOWN: the 12-byte header, checked before the payload is read. */
export const decodeHeader = (bytes: Uint8Array, direction: Direction): Result<Header, CodecError> => {
  const v = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  const request = v.getUint32(0, true);
  const flags = v.getUint32(4, true);
  const size = v.getUint32(8, true);
  if ((flags & VERSION_MASK) !== VERSION) return err({ _tag: "UnsupportedVersion", request, flags });
  if (((flags & FLAG_REPLY) !== 0) !== (direction === "reply")) {
    return err({ _tag: "ReplyFlagMismatch", request, flags, direction });
  }
  if (size > MAX_PAYLOAD) return err({ _tag: "PayloadTooLarge", request, size });
  if (!isKnownRequest(request)) return err({ _tag: "UnknownRequest", request });
  return ok({ request, flags, size });
};

/** The layout of `request`'s payload in `direction`, or UnsupportedRequest. */
export const layoutOf = (request: number, direction: Direction): Result<Layout, CodecError> => {
  const l = LAYOUTS[request];
  if (l === undefined) return err({ _tag: "UnsupportedRequest", request });
  // A reply to a request without its own reply body is REPLY_ACK's u64 (VU-REPLY-ACK).
  return ok(direction === "request" ? l.request : (l.reply ?? "u64"));
};

const FIXED: Record<Exclude<Layout, "memory" | "config">, number> = {
  empty: 0,
  u64: 8,
  state: 8,
  addr: VRING_ADDR_SIZE,
  log: 16,
  region: 8 + REGION_SIZE,
};

const readRegion = (v: DataView, at: number): MemoryRegionDesc => ({
  guestAddr: v.getBigUint64(at, true),
  size: v.getBigUint64(at + 8, true),
  userAddr: v.getBigUint64(at + 16, true),
  mmapOffset: v.getBigUint64(at + 24, true),
});

/** VU-PAYLOAD-SIZE, VU-MEM-MAX-REGIONS: the payload as its layout says (fds not checked). */
export const decodeBody = (
  request: number,
  layout: Layout,
  payload: Uint8Array,
): Result<Body, CodecError> => {
  const size = payload.length;
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const bad = (expected: number): Result<Body, CodecError> =>
    err({ _tag: "BadPayloadSize", request, size, expected });
  switch (layout) {
    case "memory": {
      if (size < 8) return bad(8);
      const n = v.getUint32(0, true);
      if (n > MAX_REGIONS) return err({ _tag: "TooManyRegions", count: n });
      if (size !== 8 + n * REGION_SIZE) return bad(8 + n * REGION_SIZE);
      const regions: MemoryRegionDesc[] = [];
      for (let i = 0; i < n; i++) regions.push(readRegion(v, 8 + i * REGION_SIZE));
      return ok({ _tag: "MemoryTable", regions });
    }
    case "config": {
      if (size < CONFIG_HEADER_SIZE) return bad(CONFIG_HEADER_SIZE);
      const len = v.getUint32(4, true);
      if (len > MAX_CONFIG_SIZE) return err({ _tag: "ConfigTooLarge", size: len });
      // A zero-length reply payload is the back-end's error indication (VU-CONFIG).
      if (size !== CONFIG_HEADER_SIZE + len) return bad(CONFIG_HEADER_SIZE + len);
      return ok({
        _tag: "Config",
        offset: v.getUint32(0, true),
        flags: v.getUint32(8, true),
        data: payload.slice(CONFIG_HEADER_SIZE, CONFIG_HEADER_SIZE + len),
      });
    }
    default: {
      const want = FIXED[layout];
      if (size !== want) return bad(want);
      switch (layout) {
        case "empty":
          return ok({ _tag: "Empty" });
        case "u64":
          return ok({ _tag: "U64", value: v.getBigUint64(0, true) });
        case "state":
          return ok({ _tag: "VringState", index: v.getUint32(0, true), num: v.getUint32(4, true) });
        case "addr":
          return ok({
            _tag: "VringAddr",
            index: v.getUint32(0, true),
            flags: v.getUint32(4, true),
            desc: v.getBigUint64(8, true),
            used: v.getBigUint64(16, true),
            avail: v.getBigUint64(24, true),
            log: v.getBigUint64(32, true),
          });
        case "log":
          return ok({ _tag: "Log", size: v.getBigUint64(0, true), offset: v.getBigUint64(8, true) });
        case "region":
          return ok({ _tag: "SingleRegion", region: readRegion(v, 8) });
      }
    }
  }
};

/** VU-FDS: a request's fds are exactly what its body calls for. Replies are not checked. */
export const checkFds = (
  request: number,
  body: Body,
  fdCount: number,
  direction: Direction,
): Result<void, CodecError> => {
  if (direction === "reply") return ok(undefined);
  const want = expectedFds(request, body);
  if (want === "zero-or-one") {
    return fdCount <= 1
      ? ok(undefined)
      : err({ _tag: "FdCountMismatch", request, expected: 1, actual: fdCount });
  }
  return fdCount === want
    ? ok(undefined)
    : err({ _tag: "FdCountMismatch", request, expected: want, actual: fdCount });
};

/** A whole message from its header, payload bytes and received fds (the caller still owns the fds). */
export const decodeMessage = (
  header: Header,
  payload: Uint8Array,
  fds: readonly number[],
  direction: Direction,
): Result<Message, CodecError> => {
  const layout = layoutOf(header.request, direction);
  if (!layout.ok) return layout;
  const body = decodeBody(header.request, layout.value, payload);
  if (!body.ok) return body;
  const f = checkFds(header.request, body.value, fds.length, direction);
  if (!f.ok) return f;
  return ok({ request: header.request, flags: header.flags, body: body.value, fds });
};

/** Decodes header + payload from one byte array (tests, properties, a front-end reading a reply). */
export const decodeBytes = (
  bytes: Uint8Array,
  fds: readonly number[],
  direction: Direction,
): Result<
  Message,
  CodecError | { readonly _tag: "TruncatedMessage"; readonly got: number; readonly wanted: number }
> => {
  if (bytes.length < HEADER_SIZE)
    return err({ _tag: "TruncatedMessage", got: bytes.length, wanted: HEADER_SIZE });
  const h = decodeHeader(bytes, direction);
  if (!h.ok) return h;
  if (bytes.length !== HEADER_SIZE + h.value.size) {
    return err({ _tag: "TruncatedMessage", got: bytes.length, wanted: HEADER_SIZE + h.value.size });
  }
  return decodeMessage(h.value, bytes.subarray(HEADER_SIZE), fds, direction);
};

const bodySize = (b: Body): number => {
  switch (b._tag) {
    case "Empty":
      return 0;
    case "U64":
    case "VringState":
      return 8;
    case "VringAddr":
      return VRING_ADDR_SIZE;
    case "MemoryTable":
      return 8 + REGION_SIZE * b.regions.length;
    case "SingleRegion":
      return 8 + REGION_SIZE;
    case "Config":
      return CONFIG_HEADER_SIZE + b.data.length;
    case "Log":
      return 16;
  }
};

const writeRegion = (v: DataView, at: number, r: MemoryRegionDesc): void => {
  v.setBigUint64(at, r.guestAddr, true);
  v.setBigUint64(at + 8, r.size, true);
  v.setBigUint64(at + 16, r.userAddr, true);
  v.setBigUint64(at + 24, r.mmapOffset, true);
};

/** Header + payload bytes of a message (fds travel beside them). u64 fields are taken mod 2^64. */
export const encodeMessage = (m: Omit<Message, "fds">): Uint8Array => {
  const size = bodySize(m.body);
  const out = new Uint8Array(HEADER_SIZE + size);
  const v = new DataView(out.buffer);
  v.setUint32(0, m.request >>> 0, true);
  v.setUint32(4, m.flags >>> 0, true);
  v.setUint32(8, size, true);
  const p = HEADER_SIZE;
  const b = m.body;
  switch (b._tag) {
    case "Empty":
      break;
    case "U64":
      v.setBigUint64(p, BigInt.asUintN(64, b.value), true);
      break;
    case "VringState":
      v.setUint32(p, b.index >>> 0, true);
      v.setUint32(p + 4, b.num >>> 0, true);
      break;
    case "VringAddr":
      v.setUint32(p, b.index >>> 0, true);
      v.setUint32(p + 4, b.flags >>> 0, true);
      v.setBigUint64(p + 8, BigInt.asUintN(64, b.desc), true);
      v.setBigUint64(p + 16, BigInt.asUintN(64, b.used), true);
      v.setBigUint64(p + 24, BigInt.asUintN(64, b.avail), true);
      v.setBigUint64(p + 32, BigInt.asUintN(64, b.log), true);
      break;
    case "MemoryTable":
      v.setUint32(p, b.regions.length, true);
      for (let i = 0; i < b.regions.length; i++) writeRegion(v, p + 8 + i * REGION_SIZE, b.regions[i]!);
      break;
    case "SingleRegion":
      writeRegion(v, p + 8, b.region);
      break;
    case "Config":
      v.setUint32(p, b.offset >>> 0, true);
      v.setUint32(p + 4, b.data.length, true);
      v.setUint32(p + 8, b.flags >>> 0, true);
      out.set(b.data, p + CONFIG_HEADER_SIZE);
      break;
    case "Log":
      v.setBigUint64(p, BigInt.asUintN(64, b.size), true);
      v.setBigUint64(p + 8, BigInt.asUintN(64, b.offset), true);
      break;
  }
  return out;
};

/** The flags of a back-end's reply (version 1, REPLY). */
export const REPLY_FLAGS = VERSION | FLAG_REPLY;

/** A back-end's reply to `request` with `body`. */
export const reply = (request: number, body: Body): Omit<Message, "fds"> => ({
  request,
  flags: REPLY_FLAGS,
  body,
});

/** A REPLY_ACK answer: u64 0 for success, 1 for failure (VU-REPLY-ACK). */
export const ack = (request: number, success: boolean): Omit<Message, "fds"> =>
  reply(request, { _tag: "U64", value: success ? 0n : 1n });
