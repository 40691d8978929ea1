/** virtio-net cases (NET-*), with spec/net.ts as the oracle. */
import fc from "fast-check";
import { decodeHeader, encodeHeader, readConfig, rxHeader, validateConfig } from "../../spec/net.ts";
import type { NetConfig, NetHeader } from "../../spec/net.ts";
import { toHex } from "../protocol.ts";
import type { Json } from "../protocol.ts";
import type { Step } from "./types.ts";
import { defineCase, expectErr, expectOk, step } from "./types.ts";

interface ConfigInput {
  readonly mac: Uint8Array | null;
  readonly mtu: number | null;
  readonly status: boolean;
  readonly linkUp: boolean;
  readonly reads: readonly { readonly offset: number; readonly len: number }[];
}

const configArb: fc.Arbitrary<ConfigInput> = fc.record({
  mac: fc.option(
    fc.oneof(
      { weight: 5, arbitrary: fc.uint8Array({ minLength: 6, maxLength: 6 }) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 8 }) },
    ),
  ),
  mtu: fc.option(
    fc.oneof(
      fc.integer({ min: 68, max: 65535 }),
      fc.integer({ min: 0, max: 70 }),
      fc.integer({ min: 65530, max: 70000 }),
    ),
  ),
  status: fc.boolean(),
  linkUp: fc.boolean(),
  reads: fc.array(
    fc.record({ offset: fc.integer({ min: 0, max: 16 }), len: fc.integer({ min: 0, max: 16 }) }),
    { minLength: 1, maxLength: 4 },
  ),
});

const configSteps = (input: ConfigInput): Step[] => {
  const c: NetConfig = {
    ...(input.mac !== null ? { mac: Array.from(input.mac) } : {}),
    ...(input.mtu !== null ? { mtu: input.mtu } : {}),
    status: input.status,
  };
  const v = validateConfig(c);
  const args = {
    mac: input.mac === null ? null : toHex(input.mac),
    mtu: input.mtu,
    status: input.status,
    linkUp: input.linkUp,
  };
  // A refused config is charged to the rule that refuses it.
  const refusal = v.ok ? undefined : v.error._tag === "InvalidMtu" ? "NET-CFG-MTU" : "NET-CFG-MAC";
  // The whole layout first, a field at a time: mac @0, status @6, max_virtqueue_pairs @8, mtu
  // @10; the status field read alone checks NET-CFG-STATUS; any other read checks where the
  // fields lie (NET-CFG-LAYOUT) and, reaching past byte 12, the zeros there (NET-CFG-PAST-END).
  const fields = [
    { offset: 0, len: 6 },
    { offset: 6, len: 2 },
    { offset: 8, len: 2 },
    { offset: 10, len: 2 },
  ];
  const cites = (r: { offset: number; len: number }): string[] =>
    refusal !== undefined
      ? [refusal]
      : r.offset === 6 && r.len === 2
        ? ["NET-CFG-STATUS"]
        : [
            ...(r.len > 0 && r.offset < 12 ? ["NET-CFG-LAYOUT"] : []),
            ...(r.len > 0 && r.offset + r.len > 12 ? ["NET-CFG-PAST-END"] : []),
          ];
  return [...fields, ...input.reads].map((r) =>
    step(
      "net.config",
      { ...args, offset: r.offset, len: r.len },
      v.ok
        ? expectOk({ data: toHex(readConfig(c, input.linkUp, r.offset, r.len)) })
        : expectErr(v.error._tag),
      cites(r).length > 0 ? cites(r) : undefined,
    ),
  );
};

const headerArb: fc.Arbitrary<NetHeader> = fc.record({
  flags: fc.nat(255),
  gsoType: fc.nat(255),
  hdrLen: fc.nat(0xffff),
  gsoSize: fc.nat(0xffff),
  csumStart: fc.nat(0xffff),
  csumOffset: fc.nat(0xffff),
  numBuffers: fc.nat(0xffff),
});

const headerJson = (h: NetHeader): Json => ({
  flags: h.flags,
  gsoType: h.gsoType,
  hdrLen16: h.hdrLen,
  gsoSize: h.gsoSize,
  csumStart: h.csumStart,
  csumOffset: h.csumOffset,
  numBuffers: h.numBuffers,
});

interface HeaderInput {
  readonly header: NetHeader;
  readonly len: 10 | 12;
  readonly raw: Uint8Array;
}

const headerSteps = (input: HeaderInput): Step[] => {
  const h = input.len === 12 ? input.header : { ...input.header, numBuffers: 0 };
  const raw = input.raw.subarray(0, input.len);
  return [
    step(
      "net.header.encode",
      { hdrLen: input.len, ...(headerJson(input.header) as Record<string, number>) },
      expectOk({ data: toHex(encodeHeader(h, input.len)) }),
    ),
    step(
      "net.header.decode",
      { hdrLen: input.len, data: toHex(raw) },
      raw.length < input.len
        ? expectErr("HeaderTooShort")
        : expectOk(headerJson(decodeHeader(raw, input.len))),
    ),
  ];
};

export const netCases = [
  defineCase<ConfigInput>({
    id: "net.config",
    title:
      "config space: mac @0, status @6, max_virtqueue_pairs @8, mtu @10, zeros past the end; bad mtu or mac refused",
    rules: ["NET-CFG-LAYOUT", "NET-CFG-PAST-END", "NET-CFG-MTU", "NET-CFG-MAC", "NET-CFG-STATUS"],
    level: "must",
    ops: ["net.config"],
    arb: configArb,
    examples: [
      {
        mac: new Uint8Array([2, 0, 0, 0, 0, 1]),
        mtu: 1500,
        status: true,
        linkUp: true,
        reads: [
          { offset: 10, len: 2 },
          { offset: 12, len: 4 },
        ],
      },
      // Refused: a 5-byte MAC (NET-CFG-MAC), an MTU below 68 (NET-CFG-MTU).
      { mac: new Uint8Array(5), mtu: 1500, status: false, linkUp: true, reads: [{ offset: 0, len: 6 }] },
      { mac: null, mtu: 67, status: false, linkUp: true, reads: [{ offset: 10, len: 2 }] },
    ],
    steps: configSteps,
    numRuns: 40,
  }),
  defineCase<HeaderInput>({
    id: "net.header",
    title: "the virtio_net_hdr encodes and decodes little-endian, 12 bytes (10 legacy)",
    rules: ["NET-HDR-LAYOUT", "NET-HDR-LEN"],
    level: "must",
    ops: ["net.header.encode", "net.header.decode"],
    arb: fc.record({
      header: headerArb,
      len: fc.constantFrom(10 as const, 12 as const),
      raw: fc.uint8Array({ minLength: 0, maxLength: 12 }),
    }),
    examples: [],
    steps: headerSteps,
    numRuns: 40,
  }),
  defineCase<{ readonly len: 10 | 12; readonly numBuffers: number }>({
    id: "net.rx-header",
    title:
      "a header the device builds for RX: flags 0, GSO NONE, num_buffers little-endian in the 12-byte form",
    rules: ["NET-RX-HDR"],
    level: "must",
    ops: ["net.rxHeader"],
    arb: fc.record({
      len: fc.constantFrom(10 as const, 12 as const),
      numBuffers: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.nat(0xffff)),
    }),
    examples: [{ len: 12, numBuffers: 1 }],
    steps: (i) => [
      step(
        "net.rxHeader",
        { hdrLen: i.len, numBuffers: i.numBuffers },
        expectOk({ data: toHex(rxHeader(i.len, i.numBuffers)) }),
      ),
    ],
    numRuns: 30,
  }),
];
