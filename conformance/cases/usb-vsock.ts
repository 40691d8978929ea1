/** vsock-over-USB cases (USB-*), with spec/usb-vsock.ts as the oracle. */
import fc from "fast-check";
import {
  HEADER_SIZE,
  PACKET_TYPES,
  builderWrite,
  encodePackets,
  parseTransfer,
} from "../../spec/usb-vsock.ts";
import type { Packet, PacketType, SpecBuilder } from "../../spec/usb-vsock.ts";
import type { Json } from "../protocol.ts";
import { toHex } from "../protocol.ts";
import type { Step } from "./types.ts";
import { defineCase, expectOk, step } from "./types.ts";

const u32 = fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 0xffff_ffff }));

const packetArb: fc.Arbitrary<Packet> = fc
  .record({
    type: fc.constantFrom(...PACKET_TYPES),
    deviceCid: u32,
    hostCid: u32,
    devicePort: u32,
    hostPort: u32,
    payload: fc.uint8Array({ maxLength: 40 }),
  })
  .map((p) => ({
    header: {
      type: p.type as PacketType,
      deviceCid: p.deviceCid,
      hostCid: p.hostCid,
      devicePort: p.devicePort,
      hostPort: p.hostPort,
      payloadLen: p.payload.length,
    },
    payload: p.payload,
  }));

/** Two packets (a Sync 'S', a Data 'D' with 4 bytes) for the examples. */
const EXAMPLE_PACKETS: readonly Packet[] = [
  {
    header: { type: 0x53 as PacketType, deviceCid: 3, hostCid: 2, devicePort: 0, hostPort: 0, payloadLen: 0 },
    payload: new Uint8Array(0),
  },
  {
    header: { type: 0x44 as PacketType, deviceCid: 3, hostCid: 2, devicePort: 5, hostPort: 6, payloadLen: 4 },
    payload: new Uint8Array([1, 2, 3, 4]),
  },
];

/** How a well-formed transfer is damaged before parsing. */
type Damage =
  | { readonly kind: "none" }
  | { readonly kind: "truncate"; readonly by: number }
  | { readonly kind: "byte"; readonly at: number; readonly value: number }
  | { readonly kind: "payloadLen"; readonly packet: number; readonly extra: number };

interface ParseInput {
  readonly packets: readonly Packet[];
  readonly damage: Damage;
}

const parseArb: fc.Arbitrary<ParseInput> = fc.record({
  packets: fc.array(packetArb, { minLength: 0, maxLength: 4 }),
  damage: fc.oneof(
    fc.constant({ kind: "none" as const }),
    fc.record({ kind: fc.constant("truncate" as const), by: fc.integer({ min: 1, max: 30 }) }),
    fc.record({ kind: fc.constant("byte" as const), at: fc.nat(200), value: fc.nat(255) }),
    fc.record({
      kind: fc.constant("payloadLen" as const),
      packet: fc.nat(3),
      extra: fc.integer({ min: 1, max: 64 }),
    }),
  ),
});

const damaged = (input: ParseInput): Uint8Array => {
  const bytes = encodePackets(input.packets);
  const d = input.damage;
  if (d.kind === "truncate") return bytes.slice(0, Math.max(0, bytes.length - d.by));
  if (d.kind === "byte") {
    if (bytes.length > 0) bytes[d.at % bytes.length] = d.value;
    return bytes;
  }
  if (d.kind === "payloadLen" && input.packets.length > 0) {
    // The payload_len field of packet k: after the packets before it.
    const k = d.packet % input.packets.length;
    let at = 0;
    for (let i = 0; i < k; i++) at += HEADER_SIZE + input.packets[i]!.payload.length;
    const v = new DataView(bytes.buffer);
    v.setUint32(at + 20, input.packets[k]!.payload.length + d.extra, true);
  }
  return bytes;
};

const packetJson = (p: Packet): Json => ({
  type: p.header.type,
  deviceCid: p.header.deviceCid,
  hostCid: p.header.hostCid,
  devicePort: p.header.devicePort,
  hostPort: p.header.hostPort,
  payloadLen: p.header.payloadLen,
  payload: toHex(p.payload),
});

/** The rule each way a parse stops names: a run that stops so is charged to it alone. */
const STOP_RULE: Readonly<Record<string, string>> = {
  InsufficientData: "USB-PARSE-SHORT",
  UnknownPacketType: "USB-PARSE-TYPE",
  InvalidMagic: "USB-PARSE-MAGIC",
  PayloadTooLong: "USB-PARSE-PAYLOAD-LEN",
};

const parseSteps = (input: ParseInput): Step[] => {
  const bytes = damaged(input);
  const r = parseTransfer(bytes);
  const stop = r.error === undefined ? undefined : STOP_RULE[r.error._tag];
  return [
    step(
      "usb.parse",
      { data: toHex(bytes) },
      expectOk({ packets: r.packets.map(packetJson), error: r.error === undefined ? null : r.error._tag }),
      // A transfer that parses to its end checks the layout, the types and the stop (the
      // case's rules); one that stops on an error is charged to that error's rule.
      stop === undefined ? undefined : [stop],
    ),
  ];
};

interface BuildInput {
  readonly capacity: number;
  readonly packets: readonly Packet[];
}

const buildSteps = (input: BuildInput): Step[] => {
  let b: SpecBuilder = { capacity: input.capacity, written: new Uint8Array(0) };
  const rejected: number[] = [];
  input.packets.forEach((p, i) => {
    const r = builderWrite(b, p);
    if (r.ok) b = r.value;
    else rejected.push(i);
  });
  return [
    step(
      "usb.build",
      {
        capacity: input.capacity,
        packets: input.packets.map((p) => ({
          type: p.header.type,
          deviceCid: p.header.deviceCid,
          hostCid: p.header.hostCid,
          devicePort: p.header.devicePort,
          hostPort: p.header.hostPort,
          payload: toHex(p.payload),
        })),
      },
      expectOk({ data: toHex(b.written), rejected }),
    ),
  ];
};

export const usbCases = [
  defineCase<ParseInput>({
    id: "usb.parse",
    title:
      "a transfer parses into its packets, then stops at the first short, unknown, bad-magic or overlong packet",
    rules: [
      "USB-HDR-LAYOUT",
      "USB-HDR-TYPES",
      "USB-PARSE-SHORT",
      "USB-PARSE-TYPE",
      "USB-PARSE-MAGIC",
      "USB-PARSE-PAYLOAD-LEN",
      "USB-PARSE-STOP",
    ],
    setupRules: ["USB-HDR-LAYOUT", "USB-HDR-TYPES", "USB-PARSE-STOP"],
    level: "must",
    ops: ["usb.parse"],
    arb: parseArb,
    // One transfer per way a parse ends, so each stop rule is checked whatever the draws.
    examples: [
      { packets: EXAMPLE_PACKETS, damage: { kind: "none" } },
      { packets: EXAMPLE_PACKETS, damage: { kind: "truncate", by: 30 } },
      { packets: EXAMPLE_PACKETS, damage: { kind: "byte", at: 3, value: 0 } },
      { packets: EXAMPLE_PACKETS, damage: { kind: "byte", at: 0, value: 0 } },
      { packets: EXAMPLE_PACKETS, damage: { kind: "payloadLen", packet: 1, extra: 5 } },
    ],
    steps: parseSteps,
    numRuns: 60,
  }),
  defineCase<ParseInput>({
    id: "usb.parse-bounds",
    title: "a payload_len past the end of the transfer is PayloadTooLong, never a read past the buffer",
    rules: ["USB-PARSE-PAYLOAD-LEN", "USB-PARSE-BOUNDS"],
    level: "safety",
    ops: ["usb.parse"],
    arb: fc.record({
      packets: fc.array(packetArb, { minLength: 1, maxLength: 3 }),
      damage: fc.record({
        kind: fc.constant("payloadLen" as const),
        packet: fc.nat(2),
        extra: fc.integer({ min: 1, max: 64 }),
      }),
    }),
    examples: [],
    // Every input here stops on PayloadTooLong: one answer checks both rules of the case.
    steps: (input) =>
      parseSteps(input).map((s) => ({ ...s, rules: ["USB-PARSE-PAYLOAD-LEN", "USB-PARSE-BOUNDS"] })),
    numRuns: 30,
  }),
  defineCase<BuildInput>({
    id: "usb.build",
    title: "the builder packs packets back to back and refuses, writing nothing, one that does not fit",
    rules: ["USB-HDR-LAYOUT", "USB-BUILD-TOO-BIG", "USB-BUILDER-TAKE"],
    level: "must",
    ops: ["usb.build"],
    arb: fc.record({
      capacity: fc.integer({ min: 0, max: 200 }),
      packets: fc.array(packetArb, { maxLength: 5 }),
    }),
    examples: [],
    steps: buildSteps,
    numRuns: 40,
  }),
];
