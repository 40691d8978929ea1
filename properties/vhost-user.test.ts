/**
 * The vhost-user message codec (impl/vhost-user/codec.ts) against spec/vhost-user.ts:
 * round trips in both directions, and any bytes at all decoding to a message or to the
 * typed error the header, the layout or the fd count calls for.
 */
import fc from "fast-check";
import { describe, expect } from "vitest";
import {
  CONFIG_HEADER_SIZE,
  FLAG_NEED_REPLY,
  FLAG_REPLY,
  HEADER_SIZE,
  LAYOUTS,
  MAX_CONFIG_SIZE,
  MAX_PAYLOAD,
  MAX_REGIONS,
  REGION_SIZE,
  Req,
  VERSION,
  VRING_ADDR_SIZE,
  VRING_NOFD,
  expectedFds,
  isKnownRequest,
  type Body,
  type Direction,
  type Layout,
  type Message,
} from "../spec/vhost-user.ts";
import { decodeBytes, encodeMessage } from "../impl/vhost-user/codec.ts";
import { property } from "./harness.ts";

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const u32 = fc.nat({ max: 0xffff_ffff });
const region = fc.record({ guestAddr: u64, size: u64, userAddr: u64, mmapOffset: u64 });

const bodyOf = (layout: Layout): fc.Arbitrary<Body> => {
  switch (layout) {
    case "empty":
      return fc.constant({ _tag: "Empty" });
    case "u64":
      return u64.map((value) => ({ _tag: "U64", value }));
    case "state":
      return fc.record({ index: u32, num: u32 }).map((s) => ({ _tag: "VringState", ...s }));
    case "addr":
      return fc
        .record({ index: u32, flags: u32, desc: u64, used: u64, avail: u64, log: u64 })
        .map((a) => ({ _tag: "VringAddr", ...a }));
    case "memory":
      return fc
        .array(region, { maxLength: MAX_REGIONS })
        .map((regions) => ({ _tag: "MemoryTable", regions }));
    case "region":
      return region.map((r) => ({ _tag: "SingleRegion", region: r }));
    case "config":
      return fc
        .record({ offset: u32, flags: u32, data: fc.uint8Array({ maxLength: MAX_CONFIG_SIZE }) })
        .map((c) => ({ _tag: "Config", ...c }));
    case "log":
      return fc.record({ size: u64, offset: u64 }).map((l) => ({ _tag: "Log", ...l }));
  }
};

const requests = Object.keys(LAYOUTS).map(Number);

/** A well-formed message in `direction`, with as many (pretend) fds as the spec asks for. */
const message = (direction: Direction): fc.Arbitrary<Message> =>
  fc.constantFrom(...requests).chain((request) => {
    const l = LAYOUTS[request]!;
    const layout = direction === "request" ? l.request : (l.reply ?? "u64");
    return fc
      .record({ body: bodyOf(layout), needReply: fc.boolean(), fdBase: fc.nat({ max: 1000 }) })
      .map(({ body, needReply, fdBase }) => {
        const want = direction === "request" ? expectedFds(request, body) : 0;
        const n = want === "zero-or-one" ? fdBase % 2 : want;
        const flags = VERSION | (direction === "reply" ? FLAG_REPLY : needReply ? FLAG_NEED_REPLY : 0);
        return { request, flags, body, fds: Array.from({ length: n }, (_, i) => fdBase + i) };
      });
  });

const bytesOf = (m: Message): Uint8Array => encodeMessage(m);

describe("vhost-user codec", () => {
  property(
    "encoding a message and decoding the bytes gives it back, in both directions",
    ["VU-ROUNDTRIP", "VU-PAYLOAD-SIZE", "VU-FDS"],
    fc.property(
      fc.constantFrom<Direction>("request", "reply").chain((d) => message(d).map((m) => [d, m] as const)),
      ([direction, m]) => {
        const bytes = bytesOf(m);
        expect(bytes.length).toBe(HEADER_SIZE + new DataView(bytes.buffer).getUint32(8, true));
        expect(decodeBytes(bytes, m.fds, direction)).toEqual({ ok: true, value: m });
      },
    ),
    { numRuns: 300 },
  );

  property(
    "any header and payload decode to a message or to the error the header or layout calls for, never a throw",
    [
      "VU-HDR-VERSION",
      "VU-HDR-REPLY-FLAG",
      "VU-HDR-SIZE",
      "VU-REQ-KNOWN",
      "VU-PAYLOAD-SIZE",
      "VU-MEM-MAX-REGIONS",
    ],
    fc.property(
      fc.oneof(fc.constantFrom(...requests), fc.nat({ max: 60 }), u32),
      fc.oneof(fc.constantFrom(VERSION, VERSION | FLAG_NEED_REPLY), u32),
      fc.uint8Array({ maxLength: 300 }),
      fc.option(fc.nat({ max: 20 }), { nil: undefined }),
      (request, flags, payload, nregions) => {
        // Sometimes a plausible region count at the front of the payload.
        if (nregions !== undefined && payload.length >= 4)
          new DataView(payload.buffer).setUint32(0, nregions, true);
        const bytes = new Uint8Array(HEADER_SIZE + payload.length);
        const v = new DataView(bytes.buffer);
        v.setUint32(0, request, true);
        v.setUint32(4, flags, true);
        v.setUint32(8, payload.length, true);
        bytes.set(payload, HEADER_SIZE);
        const r = decodeBytes(bytes, [], "request");
        if ((flags & 3) !== VERSION) {
          expect(r).toMatchObject({ ok: false, error: { _tag: "UnsupportedVersion" } });
          return;
        }
        if ((flags & FLAG_REPLY) !== 0) {
          expect(r).toMatchObject({ ok: false, error: { _tag: "ReplyFlagMismatch" } });
          return;
        }
        if (!isKnownRequest(request)) {
          expect(r).toMatchObject({ ok: false, error: { _tag: "UnknownRequest" } });
          return;
        }
        const l = LAYOUTS[request];
        if (l === undefined) {
          expect(r).toMatchObject({ ok: false, error: { _tag: "UnsupportedRequest" } });
          return;
        }
        const n = payload.length;
        const size = ((): number | string => {
          switch (l.request) {
            case "empty":
              return 0;
            case "u64":
            case "state":
              return 8;
            case "addr":
              return VRING_ADDR_SIZE;
            case "log":
              return 16;
            case "region":
              return 8 + REGION_SIZE;
            case "memory": {
              if (n < 8) return 8;
              const k = new DataView(payload.buffer).getUint32(0, true);
              return k > MAX_REGIONS ? "TooManyRegions" : 8 + k * REGION_SIZE;
            }
            case "config": {
              if (n < CONFIG_HEADER_SIZE) return CONFIG_HEADER_SIZE;
              const k = new DataView(payload.buffer).getUint32(4, true);
              return k > MAX_CONFIG_SIZE ? "ConfigTooLarge" : CONFIG_HEADER_SIZE + k;
            }
          }
        })();
        if (typeof size === "string") {
          expect(r).toMatchObject({ ok: false, error: { _tag: size } });
          return;
        }
        if (n !== size) {
          {
            expect(r).toEqual({
              ok: false,
              error: { _tag: "BadPayloadSize", request, size: n, expected: size },
            });
            return;
          }
        }
        // Right size, no fds: only requests that need none decode.
        if (!r.ok) {
          expect(r.error._tag).toBe("FdCountMismatch");
          return;
        }
        expect(expectedFds(request, r.value.body)).not.toBeGreaterThan(0);
      },
    ),
    { numRuns: 1000 },
  );

  property(
    "a size beyond any layout is refused from the header alone",
    ["VU-HDR-SIZE"],
    fc.property(
      fc.constantFrom(...requests),
      fc.integer({ min: MAX_PAYLOAD + 1, max: 0xffff_ffff }),
      (request, size) => {
        const bytes = new Uint8Array(HEADER_SIZE);
        const v = new DataView(bytes.buffer);
        v.setUint32(0, request, true);
        v.setUint32(4, VERSION, true);
        v.setUint32(8, size, true);
        expect(decodeBytes(bytes, [], "request")).toEqual({
          ok: false,
          error: { _tag: "PayloadTooLarge", request, size },
        });
      },
    ),
    { numRuns: 200 },
  );

  property(
    "fds missing or extra are FdCountMismatch",
    ["VU-FDS"],
    fc.property(
      message("request"),
      fc.integer({ min: -3, max: 3 }).filter((d) => d !== 0),
      (m, delta) => {
        const want = expectedFds(m.request, m.body);
        const have = m.fds.length + delta;
        fc.pre(have >= 0);
        if (want === "zero-or-one") fc.pre(have > 1);
        const fds = Array.from({ length: have }, (_, i) => 100 + i);
        expect(decodeBytes(bytesOf(m), fds, "request")).toMatchObject({
          ok: false,
          error: { _tag: "FdCountMismatch" },
        });
      },
    ),
    { numRuns: 300 },
  );

  property(
    "SET_VRING_KICK/CALL/ERR carry an fd exactly when bit 8 is clear",
    ["VU-FDS"],
    fc.property(
      fc.constantFrom(Req.SET_VRING_KICK, Req.SET_VRING_CALL, Req.SET_VRING_ERR),
      fc.nat({ max: 255 }),
      fc.boolean(),
      fc.boolean(),
      (request, index, noFd, withFd) => {
        const value = BigInt(index | (noFd ? VRING_NOFD : 0));
        const bytes = encodeMessage({ request, flags: VERSION, body: { _tag: "U64", value } });
        const r = decodeBytes(bytes, withFd ? [7] : [], "request");
        expect(r.ok).toBe(noFd !== withFd);
      },
    ),
    { numRuns: 100 },
  );
});
