/**
 * The back-end's state machine (impl/vhost-user/session.ts) under any sequence of requests,
 * hostile ones included, with real memfds and eventfds: every refusal is the typed error a
 * small model of the rules predicts (regions overlapping, empty, out of range or past the
 * end of their fd; ring indexes, sizes and addresses outside every region), nothing
 * throws, the mappings alive are exactly the table in force, and closing the session
 * (what a refused request or a disconnect does) leaves no fd and no mapping behind.
 */
import fc from "fast-check";
import { Effect, Fiber } from "effect";
import { describe, expect } from "vitest";
import { F_PROTOCOL_FEATURES, Req, VERSION, bit, type Body, type Message } from "../spec/vhost-user.ts";
import { LoopbackBackend } from "../impl/net/backend.ts";
import { NetDevice } from "../impl/net/device.ts";
import { createEventFd, createMemfd, loadFdio, type Fdio } from "../impl/native/fdio.ts";
import { Session } from "../impl/vhost-user/session.ts";
import { harness, mappedBytesOf, mappingsOf, openFds, startDevice } from "../impl/vhost-user/testing.ts";
import { property } from "./harness.ts";

const io = loadFdio();
const skip = typeof io === "string" ? io : null;
if (skip !== null) console.log(`skipping vhost-user session properties: ${skip}`);

const MB = 0x10_0000;
const FILE = MB;
const UA = 0x7f00_0000_0000n;
const LIMIT = 2n ** 53n;
const VERSION_1 = 1n << 32n;
const RINGS = 2;
const MAX = 256;

interface Region {
  readonly gpa: bigint;
  readonly size: bigint;
  readonly ua: bigint;
  readonly off: bigint;
}

type Cmd =
  | { readonly k: "mem"; readonly regions: readonly Region[] }
  | { readonly k: "num" | "base" | "enable" | "getbase"; readonly index: number; readonly num: number }
  | {
      readonly k: "addr";
      readonly index: number;
      readonly desc: bigint;
      readonly avail: bigint;
      readonly used: bigint;
    }
  | { readonly k: "kick" | "call"; readonly index: number }
  | { readonly k: "features" | "proto"; readonly value: bigint };

const index = fc.constantFrom(0, 1, 0, 1, 2, 255);
const regionArb: fc.Arbitrary<Region> = fc.record({
  gpa: fc.constantFrom(0n, 0x1_0000n, 0x8_0000n, 0x10_0000n, LIMIT - 0x1000n),
  size: fc.constantFrom(0n, 0x1000n, 0x1_0000n, 0x8_0000n, 0x10_0000n, 0x20_0000n),
  ua: fc.constantFrom(UA, UA + 0x1_0000n, UA + 0x8_0000n, UA + 0x10_0000n),
  off: fc.constantFrom(0n, 0x1000n, 0x8_0000n, 0x10_0000n),
});
/** A ring address: mostly inside the first MB of user space, sometimes outside or misaligned. */
const userAddr = fc.oneof(
  { weight: 6, arbitrary: fc.nat({ max: 0xf000 / 16 }).map((i) => UA + BigInt(i * 16)) },
  { weight: 1, arbitrary: fc.constantFrom(UA + 0x90_0000n, 0n, UA - 16n, UA + 2n) },
);
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.array(regionArb, { maxLength: 3 }).map((regions) => ({ k: "mem" as const, regions })),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constantFrom("num" as const, "base" as const, "enable" as const, "getbase" as const),
      index,
      num: fc.constantFrom(0, 1, 3, 16, 256, 512),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant("addr" as const),
      index,
      desc: userAddr,
      avail: userAddr,
      used: userAddr,
    }),
  },
  { weight: 3, arbitrary: fc.record({ k: fc.constantFrom("kick" as const, "call" as const), index }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("features" as const),
      value: fc.constantFrom(VERSION_1 | bit(F_PROTOCOL_FEATURES), VERSION_1, 1n << 63n),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("proto" as const),
      // MQ | REPLY_ACK are offered to a net device; CONFIG (9) and bit 20 are not.
      value: fc.constantFrom(bit(0) | bit(3), bit(3), bit(9), bit(20)),
    }),
  },
);

/** The model: the first rule a request breaks, given the regions in force; null when none. */
const predicted = (c: Cmd, table: readonly Region[]): string | null => {
  if ("index" in c && (c.index >= RINGS || c.index < 0)) return "RingIndexOutOfRange";
  switch (c.k) {
    case "mem": {
      for (const r of c.regions) {
        if (r.size === 0n) return "EmptyRegion";
        if (r.gpa + r.size > LIMIT) return "RegionOutOfRange";
      }
      for (const key of ["gpa", "ua"] as const) {
        for (const a of c.regions)
          for (const b of c.regions) {
            if (a !== b && a[key] <= b[key] && a[key] + a.size > b[key]) return "OverlappingRegions";
          }
      }
      for (const r of c.regions) if (r.off + r.size > BigInt(FILE)) return "RegionBeyondFd";
      return null;
    }
    case "num":
      return c.num === 0 || c.num > MAX || (c.num & (c.num - 1)) !== 0 ? "RingSizeInvalid" : null;
    case "addr": {
      for (const ua of [c.desc, c.avail, c.used]) {
        if (!table.some((r) => ua >= r.ua && ua - r.ua < r.size)) return "RingAddressUnmapped";
      }
      return null;
    }
    case "features":
      return c.value === 1n << 63n ? "FeaturesNotOffered" : null;
    case "proto":
      return (c.value & ~(bit(0) | bit(3))) !== 0n ? "ProtocolFeaturesNotOffered" : null;
    default:
      return null;
  }
};

/** Errors that depend on more state than the model keeps (activation of the device). */
const alsoAllowed = (c: Cmd): readonly string[] =>
  c.k === "kick" || c.k === "mem" ? ["DeviceActivateFailed"] : c.k === "features" ? ["FeaturesRejected"] : [];

const F_DUPFD_CLOEXEC = 1030;

const toMessage = (c: Cmd, f: Fdio, memfd: number): Message => {
  const msg = (request: number, body: Body, fds: number[] = []): Message => ({
    request,
    flags: VERSION,
    body,
    fds,
  });
  switch (c.k) {
    case "mem":
      return msg(
        Req.SET_MEM_TABLE,
        {
          _tag: "MemoryTable",
          regions: c.regions.map((r) => ({
            guestAddr: r.gpa,
            size: r.size,
            userAddr: r.ua,
            mmapOffset: r.off,
          })),
        },
        c.regions.map(() => f.fcntl(memfd, F_DUPFD_CLOEXEC, 0)),
      );
    case "num":
      return msg(Req.SET_VRING_NUM, { _tag: "VringState", index: c.index, num: c.num });
    case "base":
      return msg(Req.SET_VRING_BASE, { _tag: "VringState", index: c.index, num: c.num });
    case "enable":
      return msg(Req.SET_VRING_ENABLE, { _tag: "VringState", index: c.index, num: c.num & 1 });
    case "getbase":
      return msg(Req.GET_VRING_BASE, { _tag: "VringState", index: c.index, num: 0 });
    case "addr":
      return msg(Req.SET_VRING_ADDR, {
        _tag: "VringAddr",
        index: c.index,
        flags: 0,
        desc: c.desc,
        used: c.used,
        avail: c.avail,
        log: 0n,
      });
    case "kick":
    case "call":
      return msg(
        c.k === "kick" ? Req.SET_VRING_KICK : Req.SET_VRING_CALL,
        { _tag: "U64", value: BigInt(c.index) },
        [createEventFd(f)],
      );
    case "features":
      return msg(Req.SET_FEATURES, { _tag: "U64", value: c.value });
    case "proto":
      return msg(Req.SET_PROTOCOL_FEATURES, { _tag: "U64", value: c.value });
  }
};

let n = 0;

describe.skipIf(skip !== null)("vhost-user back-end session", () => {
  property(
    "any request sequence: refusals are the predicted typed error, the live mappings are the table in force, and closing leaves no fd or mapping",
    [
      "VU-MEM-MAP",
      "VU-MEM-OVERLAP",
      "VU-MEM-REPLACE",
      "VU-RING-INDEX",
      "VU-RING-NUM",
      "VU-RING-ADDR-TRANSLATE",
      "VU-FEATURES-SUBSET",
      "VU-PROTOCOL-FEATURES-SUBSET",
      "VU-DISCONNECT",
    ],
    fc.property(fc.array(cmd, { minLength: 1, maxLength: 25 }), (cmds) => {
      const f = io as Fdio;
      const name = `vlab-vu-prop-${process.pid}-${n++}`;
      const before = openFds();
      const memfd = createMemfd(f, name, FILE);
      const session = new Session(f, new NetDevice({}, new LoopbackBackend()));
      let table: readonly Region[] = [];
      try {
        for (const c of cmds) {
          const want = predicted(c, table);
          const h = session.handle(toMessage(c, f, memfd));
          const got = h.error === null ? null : h.error._tag;
          if (want !== null) expect(got).toBe(want);
          else if (got !== null) expect(alsoAllowed(c)).toContain(got);
          if (c.k === "mem" && got === null) table = c.regions;
          // The back-end maps exactly the regions of the table in force.
          expect(session.mappingCount).toBe(table.length);
          expect(mappedBytesOf(name)).toBe(table.reduce((sum, r) => sum + r.size, 0n));
          if (got !== null) break; // the connection is closed on any refusal
        }
      } finally {
        session.close();
        f.libc.close(memfd);
      }
      expect(mappingsOf(name)).toBe(0);
      expect(openFds()).toBe(before);
    }),
    { numRuns: 150 },
  );
});

const rawMessage = fc.oneof(
  // Garbage of any length.
  fc.uint8Array({ maxLength: 64 }).map((bytes) => ({ bytes, withFd: false })),
  // A real header with a payload of the wrong size, a bad version or an unknown request.
  fc
    .record({
      request: fc.oneof(
        fc.constantFrom(Req.SET_VRING_NUM, Req.SET_MEM_TABLE, Req.GET_CONFIG, Req.SET_VRING_KICK),
        fc.nat({ max: 60 }),
      ),
      flags: fc.constantFrom(VERSION, 0, 2, VERSION | 4),
      payload: fc.uint8Array({ maxLength: 48 }),
      withFd: fc.boolean(),
    })
    .map(({ request, flags, payload, withFd }) => {
      const bytes = new Uint8Array(12 + payload.length);
      const v = new DataView(bytes.buffer);
      v.setUint32(0, request, true);
      v.setUint32(4, flags, true);
      v.setUint32(8, payload.length, true);
      bytes.set(payload, 12);
      return { bytes, withFd };
    }),
);

describe.skipIf(skip !== null)("vhost-user back-end connection", () => {
  property(
    "any bytes from the front-end end the connection cleanly (a typed error or the peer gone) and leave no fd or mapping",
    ["VU-HDR-VERSION", "VU-PAYLOAD-SIZE", "VU-REQ-KNOWN", "VU-FDS", "VU-DISCONNECT"],
    fc.asyncProperty(fc.array(rawMessage, { minLength: 1, maxLength: 4 }), async (msgs) => {
      const before = openFds();
      let name = "";
      const end = await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const h = yield* harness(new NetDevice({}, new LoopbackBackend()));
            name = h.memfdName;
            // A device the front-end had set up first, so that there is something to release.
            yield* startDevice(h, VERSION_1);
            for (const m of msgs) {
              const r = h.fe.channel.sendBytes(m.bytes, m.withFd ? [h.kicks[0]!] : []);
              if (!r.ok) break;
            }
            yield* Effect.sleep(5);
            yield* h.hangUp;
            return yield* Fiber.join(h.served);
          }),
        ),
      );
      expect(["PeerClosed", "Refused"]).toContain(end._tag);
      if (end._tag === "Refused") expect(typeof end.error._tag).toBe("string");
      expect(mappingsOf(name)).toBe(0);
      expect(openFds()).toBe(before);
    }),
    { numRuns: 25 },
  );
});
