/**
 * `sim conform --vhost-user`: plays the VMM and the guest for any vhost-user back-end and
 * checks, through the rings only, what the device does with what it is given (rules VUF-*
 * in spec/vhost-user-frontend.ts).
 *
 * One run: connect (or spawn the back-end and wait for its socket), negotiate, share a
 * memfd as two guest regions far apart (user addresses = guest addresses + an offset),
 * set up the rings, then `steps` rounds. A round adds chains (impl/queue/driver.ts, the
 * well-behaved driver of the spec/queue.ts split-ring model), optionally corrupts them
 * (--hostile), snapshots the whole shared memory, kicks, waits (bounded) for completions
 * and call eventfds, then compares memory (every changed byte must lie in a device-writable
 * buffer present in a descriptor table, or in a used ring) and checks the used elements,
 * the notifications and the device's payload (net: loopback frames and the 12-byte header;
 * vsock: RST for a port without listener; generic FUSE: replies). At the end GET_VRING_BASE.
 *
 * Once a corruption was sent, only SAFETY verdicts are given (the ring state is the guest's
 * fault from then on): writes within bounds, the back-end keeps answering (a GET_FEATURES
 * probe after every round, bounded), and a spawned back-end is not killed by a signal.
 */
import { Effect } from "effect";
import { LEVEL, type FrontendLevel, type FrontendRuleId } from "../../spec/vhost-user-frontend.ts";
import { F_PROTOCOL_FEATURES, ProtocolFeature, bit } from "../../spec/vhost-user.ts";
import { decodeHeader, emptyHeader, encodeHeader } from "../../spec/vsock.ts";
import { VIRTIO_F } from "../../wire/features.ts";
import {
  NET_HDR,
  NET_HDR_SIZE,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
} from "../../wire/net.ts";
import type { DriverBuffer } from "../../impl/queue/guest-queue.ts";
import { SplitDriver } from "../../impl/queue/split-driver.ts";
import {
  availEventOffset,
  DESC_FLAGS,
  DESC_LEN,
  DESC_NEXT,
  DESC_SIZE,
  descOffset,
  USED_ELEM_ID,
  USED_ELEM_LEN,
  USED_FLAGS,
  USED_IDX,
  usedRingBytes,
  usedSlotOffset,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VRING_AVAIL_F_NO_INTERRUPT,
  vringNeedEvent,
} from "../../wire/split.ts";
import {
  acquireGuestRam,
  acquireRingFds,
  connectFrontend,
  describeFrontendError,
  type Frontend,
  type FrontendError,
  type GuestRam,
  type RingFds,
} from "../../impl/vhost-user/frontend.ts";
import { Rng } from "../../sim/rng.ts";
import { spawnBackend, type Spawned } from "./spawn.ts";
import { VsockStreams, listenHostPort } from "./vsock-stream.ts";
import {
  VSOCK_HOST_CID,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RST,
  VSOCK_PKT_HDR_SIZE,
  VSOCK_TYPE_STREAM,
} from "../../wire/vsock.ts";

export type DeviceKind = "net" | "vsock" | "generic";
export const DEVICE_KINDS: readonly DeviceKind[] = ["net", "vsock", "generic"];
export type Payload = "random" | "fuse";
export const PAYLOADS: readonly Payload[] = ["random", "fuse"];

export interface RunOptions {
  readonly socket: string;
  readonly device: DeviceKind;
  readonly payload: Payload;
  readonly spawn?: string;
  readonly listen: boolean;
  readonly steps: number;
  readonly seed: number;
  readonly hostile: number;
  readonly timeoutMs: number;
  /** Rings to set up (generic; default 2, capped by GET_QUEUE_NUM). */
  readonly queues?: number;
  /**
   * vsock: the back-end's host-side Unix socket path (its guest connections to port P go to
   * `<path>_P`); with it, connections, credit and streams are checked (vsock-stream.ts).
   */
  readonly vsockHost?: string;
  /** Ack EVENT_IDX when offered (default: from the seed). */
  readonly eventIdx?: boolean;
  /** Progress lines. */
  readonly log: (line: string) => void;
}

export interface Finding {
  readonly rule: FrontendRuleId;
  readonly step: number;
  readonly detail: string;
}

export interface RuleResult {
  readonly id: FrontendRuleId;
  readonly level: FrontendLevel;
  checks: number;
  failures: number;
  first: Finding | null;
}

export interface RunResult {
  readonly options: Omit<RunOptions, "log">;
  features: bigint;
  protocolFeatures: bigint;
  eventIdx: boolean;
  rings: number;
  stepsRun: number;
  hostileRounds: number;
  completions: number;
  readonly rules: RuleResult[];
  readonly findings: Finding[];
  /** One line per corruption sent: `step N: ring R kind detail`. */
  readonly corruptions: string[];
  readonly notes: string[];
  crash: {
    readonly step: number;
    readonly signal: string;
    readonly input: string;
    readonly tail: string;
  } | null;
  readonly replay: string;
}

/** Setup went wrong (exit 2): the step and one line. */
export interface SetupFailed {
  readonly _tag: "SetupFailed";
  readonly message: string;
}

// ---- guest layout

const REGION = 1 << 20;
const BASES = [0, 0x1_0000_0000];
const USER_OFFSET = 0x7f00_0000_0000n;
const RING_SIZE = 64;
const RING_AREA = 0x4000;
const SLOT = 4096;
/** Buffers never fill a slot (largest: 4032 bytes), so one byte past a buffer is never another's. */
/** Outside every region: between them, and past the end of the second. */
const OUTSIDE = [0x8000_0000, BASES[1]! + REGION + 0x1000, 0xffff_ffff_f000];

class Slots {
  private readonly free: number[] = [];
  constructor() {
    for (let a = BASES[1]! + REGION - SLOT; a >= BASES[1]!; a -= SLOT) this.free.push(a);
    for (let a = REGION - SLOT; a >= 0x40000; a -= SLOT) this.free.push(a);
  }
  take(): number | undefined {
    return this.free.pop();
  }
  give(a: number): void {
    this.free.push(a);
  }
}

interface Chain {
  readonly head: number;
  readonly ring: number;
  readonly descs: readonly number[];
  readonly slots: readonly number[];
  readonly writable: readonly (readonly [number, number])[];
  readonly writableBytes: number;
  readonly kind: "tx" | "rx" | "req";
  /** net: the frame sent; vsock: the request's ports; fuse: the request's unique. */
  readonly tag: Uint8Array | null;
  /** The indirect table (guest address) and its entry count, when the chain went through one. */
  readonly table: number | null;
  readonly tableEntries: number;
  /** How many descriptors the readable bytes were split over. */
  readonly readablePieces: number;
  readonly step: number;
}

interface Ring {
  readonly index: number;
  readonly driver: SplitDriver;
  readonly fds: RingFds;
  readonly outstanding: Map<number, Chain>;
  /** Completed this round (payload checks). */
  done: Chain[];
  calls: number;
  /** Round start: used idx, whether a notification is required / unwanted. */
  oldUsed: number;
  usedEvent: number;
  noInterrupt: boolean;
  mustComplete: number;
  /** Completions come without our kicks too (vsock RX with a host side): notifications are not judged. */
  readonly async: boolean;
}

const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

export const replayCommand = (o: Omit<RunOptions, "log">, steps: number): string =>
  [
    "npx tsx sim conform",
    `--vhost-user ${o.socket}`,
    `--device ${o.device}`,
    o.device === "generic" ? `--payload ${o.payload}` : "",
    o.spawn !== undefined ? `--spawn ${JSON.stringify(o.spawn)}` : "",
    `--seed ${o.seed}`,
    `--steps ${steps}`,
    o.hostile > 0 ? `--hostile ${o.hostile}` : "",
    `--timeout ${o.timeoutMs}`,
    o.queues !== undefined ? `--queues ${o.queues}` : "",
    o.vsockHost !== undefined ? `--vsock-uds ${o.vsockHost}` : "",
    o.eventIdx !== undefined ? `--event-idx ${o.eventIdx ? "on" : "off"}` : "",
  ]
    .filter((s) => s !== "")
    .join(" ");

/** The run: results (findings inside), or SetupFailed naming the step. */
export const runConformance = (options: RunOptions): Effect.Effect<RunResult, SetupFailed> =>
  Effect.scoped(
    Effect.gen(function* () {
      const { log, ...opts } = options;
      const rng = new Rng(opts.seed);
      const result: RunResult = {
        options: opts,
        features: 0n,
        protocolFeatures: 0n,
        eventIdx: false,
        rings: 0,
        stepsRun: 0,
        hostileRounds: 0,
        completions: 0,
        rules: (Object.keys(LEVEL) as FrontendRuleId[]).map((id) => ({
          id,
          level: LEVEL[id],
          checks: 0,
          failures: 0,
          first: null,
        })),
        findings: [],
        corruptions: [],
        notes: [],
        crash: null,
        replay: replayCommand(opts, opts.steps),
      };
      const byId = new Map(result.rules.map((r) => [r.id, r]));
      let step = 0;
      const check = (id: FrontendRuleId, ok: boolean, detail: () => string): boolean => {
        const r = byId.get(id)!;
        r.checks++;
        if (!ok) {
          r.failures++;
          const f = { rule: id, step, detail: detail() };
          if (r.first === null) r.first = f;
          if (result.findings.length < 200) result.findings.push(f);
          log(`step ${step}: ${id} [${r.level}] ${f.detail}`);
        }
        return ok;
      };
      const setup = (e: FrontendError): SetupFailed => ({
        _tag: "SetupFailed",
        message: describeFrontendError(e),
      });

      // ---- the back-end
      let spawned: Spawned | null = null;
      if (opts.spawn !== undefined) {
        spawned = yield* spawnBackend(opts.spawn, [
          ...(opts.listen ? [] : [opts.socket]),
          ...(opts.vsockHost !== undefined ? [opts.vsockHost] : []),
        ]);
        log(`spawned back-end (pid ${spawned.pid}): ${opts.spawn}`);
      }
      const sp = spawned;
      const exitLine = (): string | null => {
        const x = sp?.exit() ?? null;
        if (x === null) return null;
        return x.signal !== null ? `back-end killed by ${x.signal}` : `back-end exited with status ${x.code}`;
      };
      const fe: Frontend = yield* connectFrontend({
        socketPath: opts.socket,
        mode: opts.listen ? "listen" : "connect",
        // A spawned back-end may take a while to listen; its replies get --timeout like any other.
        timeoutMs: sp !== null ? Math.max(opts.timeoutMs, 60_000) : opts.timeoutMs,
        replyTimeoutMs: opts.timeoutMs,
        stillWaiting: exitLine,
      }).pipe(
        Effect.mapError((e) => {
          const s = setup(e);
          const tail = sp?.tail().trim() ?? "";
          return tail === ""
            ? s
            : { ...s, message: `${s.message}\n${tail.split("\n").slice(-5).join("\n")}` };
        }),
      );
      log(`connected to ${opts.socket}`);

      // ---- negotiation
      const handshake = Effect.gen(function* () {
        const offered = yield* fe.getFeatures();
        const eventIdx = opts.eventIdx ?? (opts.seed & 1) === 0;
        let want = bit(VIRTIO_F.VERSION_1) | bit(VIRTIO_F.RING_INDIRECT_DESC) | bit(F_PROTOCOL_FEATURES);
        if (eventIdx) want |= bit(VIRTIO_F.RING_EVENT_IDX);
        const features = offered & want;
        result.features = features;
        result.eventIdx = (features & bit(VIRTIO_F.RING_EVENT_IDX)) !== 0n;
        let protocol = 0n;
        if ((offered & bit(F_PROTOCOL_FEATURES)) !== 0n) {
          const p = yield* fe.getProtocolFeatures();
          protocol =
            p & (bit(ProtocolFeature.REPLY_ACK) | bit(ProtocolFeature.CONFIG) | bit(ProtocolFeature.MQ));
          yield* fe.setProtocolFeatures(protocol);
        }
        result.protocolFeatures = protocol;
        yield* fe.setOwner();
        let queues = opts.queues ?? 2;
        if ((protocol & bit(ProtocolFeature.MQ)) !== 0n) {
          const n = Number(yield* fe.getQueueNum());
          if (opts.device === "generic" && n < queues) queues = n;
        }
        yield* fe.setFeatures(features);
        return queues;
      });
      const queueCount = yield* handshake.pipe(Effect.mapError(setup));
      if (queueCount < 1)
        return yield* Effect.fail<SetupFailed>({
          _tag: "SetupFailed",
          message: "GET_QUEUE_NUM: the back-end has no queues",
        });
      result.rings = queueCount;
      const enable = (result.features & bit(F_PROTOCOL_FEATURES)) !== 0n;
      const indirect = (result.features & bit(VIRTIO_F.RING_INDIRECT_DESC)) !== 0n;

      // ---- memory and rings
      const io = fe.io;
      const ram: GuestRam = yield* acquireGuestRam(io, {
        guestBases: BASES,
        regionSize: REGION,
        userOffset: USER_OFFSET,
      }).pipe(Effect.mapError(setup));
      const mem = ram.memory;
      yield* fe.setMemTable(ram).pipe(Effect.mapError(setup));
      const rings: Ring[] = [];
      for (let i = 0; i < queueCount; i++) {
        const fds = yield* acquireRingFds(io).pipe(Effect.mapError(setup));
        const driver = SplitDriver.at(mem, RING_SIZE, 0x1000 + i * RING_AREA);
        rings.push({
          index: i,
          driver,
          fds,
          outstanding: new Map(),
          done: [],
          calls: 0,
          oldUsed: 0,
          usedEvent: 0,
          noInterrupt: false,
          mustComplete: 0,
          async: opts.device === "vsock" && opts.vsockHost !== undefined && i === 0,
        });
      }
      for (const r of rings) {
        const l = r.driver.layout;
        yield* fe
          .setupRing(
            { index: r.index, size: RING_SIZE, desc: l.descTable, avail: l.availRing, used: l.usedRing },
            r.fds,
            USER_OFFSET,
            enable,
          )
          .pipe(Effect.mapError(setup));
      }
      let guestCid = 3n;
      if (opts.device === "vsock" && (result.protocolFeatures & bit(ProtocolFeature.CONFIG)) !== 0n) {
        const cfg = yield* fe.getConfig(0, 8).pipe(Effect.mapError(setup));
        if (cfg.length === 8) guestCid = new DataView(cfg.buffer, cfg.byteOffset, 8).getBigUint64(0, true);
      }
      log(
        `negotiated features ${hex(result.features)}, protocol ${hex(result.protocolFeatures)}, ${queueCount} rings of ${RING_SIZE}, EVENT_IDX ${result.eventIdx ? "on" : "off"}${opts.device === "vsock" ? `, guest CID ${guestCid}` : ""}`,
      );

      // ---- chains
      const slots = new Slots();
      const addChain = (
        r: Ring,
        kind: Chain["kind"],
        readable: Uint8Array | null,
        writableLens: readonly number[],
        tag: Uint8Array | null,
      ): Chain | null => {
        const bufs: DriverBuffer[] = [];
        const taken: number[] = [];
        const writable: [number, number][] = [];
        const give = (): null => {
          for (const s of taken) slots.give(s);
          return null;
        };
        let readablePieces = 0;
        if (readable !== null) {
          // Split the readable bytes over 1..3 buffers (gather).
          const pieces = readable.length < 2 ? 1 : rng.range(1, Math.min(3, readable.length));
          let at = 0;
          for (let p = 0; p < pieces; p++) {
            const len =
              p === pieces - 1 ? readable.length - at : rng.range(1, readable.length - at - (pieces - 1 - p));
            const s = slots.take();
            if (s === undefined) return give();
            taken.push(s);
            mem.writeFrom(s, readable.subarray(at, at + len));
            bufs.push({ addr: s, len });
            at += len;
          }
          readablePieces = pieces;
        }
        for (const len of writableLens) {
          const s = slots.take();
          if (s === undefined) return give();
          taken.push(s);
          mem.slice(s, len, true)?.fill(0xa5);
          bufs.push({ addr: s, len, write: true });
          writable.push([s, len]);
        }
        let table: number | undefined;
        if (indirect && rng.chance(0.25)) {
          table = slots.take();
          if (table === undefined) return give();
          taken.push(table);
        }
        if (r.driver.freeDescriptors < (table !== undefined ? 1 : bufs.length)) return give();
        const head = r.driver.addChain(bufs, table !== undefined ? { indirectTable: table } : {});
        if (head === undefined) return give();
        const descs = [head];
        if (table === undefined) {
          let d = r.driver.readDescriptor(head);
          while ((d.flags & VIRTQ_DESC_F_NEXT) !== 0 && descs.length < bufs.length) {
            descs.push(d.next);
            d = r.driver.readDescriptor(d.next);
          }
        }
        const c: Chain = {
          head,
          ring: r.index,
          descs,
          slots: taken,
          writable,
          writableBytes: writable.reduce((a, [, l]) => a + l, 0),
          kind,
          tag,
          table: table ?? null,
          tableEntries: bufs.length,
          readablePieces,
          step,
        };
        r.outstanding.set(head, c);
        return c;
      };

      const retire = (c: Chain): void => {
        const r = rings[c.ring]!;
        for (const d of c.descs) r.driver.writeDescriptor(d, { addr: 0, len: 0, flags: 0, next: 0 });
        for (const s of c.slots) slots.give(s);
      };

      // ---- device payloads
      const tx: Uint8Array[] = [];
      let rxObserved: boolean | null = null;
      // REQUESTs awaiting their RST: the step sent and how many descriptors the header took.
      const vsockPending = new Map<string, { readonly step: number; readonly pieces: number }>();
      let srcPort = 1024 + rng.int(20000);
      let fuseUnique = 1n;
      let fuseInit = false;
      // vsock with its host side: connections to a port we listen on behind the back-end.
      let streams: VsockStreams | null = null;
      if (opts.device === "vsock" && opts.vsockHost !== undefined && rings.length > 1) {
        const host = yield* listenHostPort(opts.vsockHost, 1024 + rng.int(8000));
        const txr = rings[1]!;
        const s = new VsockStreams({
          rng,
          guestCid,
          host,
          send: (header, payload) => {
            const bytes = new Uint8Array(header.length + (payload?.length ?? 0));
            bytes.set(header);
            if (payload !== null) bytes.set(payload, header.length);
            if (addChain(txr, "tx", bytes, [], null) === null) return false;
            txr.mustComplete++;
            return true;
          },
          check,
          note: (line) => result.notes.push(line),
        });
        yield* Effect.addFinalizer(() => Effect.sync(() => s.close()));
        streams = s;
        result.notes.push(
          "vsock: RX completes on host activity too, not only on our kicks: notification rules are not judged on ring 0",
        );
        log(`vsock host side: listening on ${host.path}`);
      }

      const netFrame = (): Uint8Array => {
        const len = rng.range(60, 1514);
        const f = new Uint8Array(len);
        rng.fill(f);
        f[0] = (f[0]! & 0xfe) | 0x02;
        f.set([0x52, 0x54, 0x00, 0x77, 0x00, step & 0xff], 6);
        f[12] = 0x88;
        f[13] = 0xb5;
        return f;
      };
      const vsockHdr = (op: number, sp: number, dp: number): Uint8Array =>
        encodeHeader({
          ...emptyHeader,
          srcCid: guestCid,
          dstCid: VSOCK_HOST_CID,
          srcPort: sp,
          dstPort: dp,
          type: VSOCK_TYPE_STREAM,
          op,
          bufAlloc: 65536,
        });
      const fuseRequest = (): Uint8Array => {
        const unique = fuseUnique++;
        let opcode: number;
        let arg: Uint8Array;
        if (!fuseInit) {
          opcode = 26; // FUSE_INIT
          arg = new Uint8Array(64);
          const v = new DataView(arg.buffer);
          v.setUint32(0, 7, true);
          v.setUint32(4, 31, true);
          v.setUint32(8, 0x20000, true);
          fuseInit = true;
        } else {
          opcode = 3; // FUSE_GETATTR of the root
          arg = new Uint8Array(16);
        }
        const m = new Uint8Array(40 + arg.length);
        const v = new DataView(m.buffer);
        v.setUint32(0, m.length, true);
        v.setUint32(4, opcode, true);
        v.setBigUint64(8, unique, true);
        v.setBigUint64(16, 1n, true);
        m.set(arg, 40);
        return m;
      };
      const randomLens = (n: number, max: number): number[] =>
        Array.from({ length: n }, () => rng.range(1, max));

      /** The chains of one round (before any corruption). */
      const fill = (): void => {
        if (opts.device === "net") {
          const rx = rings[0]!;
          const txr = rings[1];
          while (rx.outstanding.size < 8) {
            const lens = rng.chance(0.5) ? [NET_HDR_SIZE + 1514] : [NET_HDR_SIZE + rng.range(0, 200), 1514];
            if (addChain(rx, "rx", null, lens, null) === null) break;
          }
          if (txr === undefined) return;
          const n = rng.range(1, 3);
          for (let i = 0; i < n; i++) {
            const frame = netFrame();
            const bytes = new Uint8Array(NET_HDR_SIZE + frame.length);
            bytes.set(frame, NET_HDR_SIZE);
            if (addChain(txr, "tx", bytes, [], frame) === null) break;
            txr.mustComplete++;
            tx.push(frame);
            if (rxObserved !== false) rx.mustComplete++;
          }
        } else if (opts.device === "vsock") {
          const rx = rings[0]!;
          const txr = rings[1];
          const rxBuf = streams !== null ? 2048 : 256;
          while (rx.outstanding.size < (streams !== null ? 12 : 8))
            if (addChain(rx, "rx", null, [VSOCK_PKT_HDR_SIZE + rxBuf], null) === null) break;
          if (txr === undefined) return;
          const n = streams === null ? rng.range(1, 2) : rng.chance(0.3) ? 1 : 0;
          for (let i = 0; i < n; i++) {
            const sp = srcPort++;
            const dp = 40000 + rng.int(20000);
            const c = addChain(txr, "tx", vsockHdr(VSOCK_OP_REQUEST, sp, dp), [], null);
            if (c === null) break;
            txr.mustComplete++;
            rx.mustComplete++;
            vsockPending.set(`${dp}:${sp}`, { step, pieces: c.readablePieces });
          }
          if (streams !== null && !hostileSeen) streams.plan(step, step === opts.steps);
        } else if (opts.payload === "fuse") {
          const r = rings[Math.min(1, rings.length - 1)]!;
          const n = rng.range(1, 3);
          for (let i = 0; i < n; i++) {
            const out = rng.chance(0.5) ? [4096 - 64] : [16, 2048];
            if (addChain(r, "req", fuseRequest(), out, null) === null) break;
            r.mustComplete++;
          }
        } else {
          for (const r of rings) {
            const n = rng.range(1, 3);
            for (let i = 0; i < n; i++) {
              const rd = rng.chance(0.7) ? new Uint8Array(rng.range(1, 512)) : null;
              if (rd !== null) rng.fill(rd);
              const w = randomLens(rd === null ? rng.range(1, 2) : rng.int(3), 1024);
              if (addChain(r, "req", rd, w, null) === null) break;
              r.mustComplete++;
            }
          }
        }
      };

      // ---- hostile corruptions
      const corrupt = (): string | null => {
        const r = rings[rng.int(rings.length)]!;
        const d = r.driver;
        const recent = [...r.outstanding.values()].filter((c) => c.step === step);
        const target = recent.length > 0 ? rng.pick(recent) : null;
        const kinds = [
          "avail-idx-jump",
          "avail-head-range",
          "used-idx-write",
          "used-ring-write",
          ...(target !== null
            ? ([
                "desc-addr-outside",
                "desc-len-huge",
                "desc-len-zero",
                "desc-next-loop",
                "desc-next-range",
                "desc-indirect-bad",
                ...(target.table !== null ? (["indirect-nested", "indirect-loop"] as const) : []),
                "desc-write-flip",
                "avail-head-dup",
              ] as const)
            : []),
        ] as const;
        const kind = rng.pick(kinds);
        const where = `ring ${r.index}`;
        const desc = target === null ? 0 : rng.pick(target.descs);
        const di = (): { addr: bigint; len: number; flags: number; next: number } => d.readDescriptor(desc);
        switch (kind) {
          case "avail-idx-jump": {
            const by = RING_SIZE + 1 + rng.int(0x7000);
            d.setAvailIdx(d.availIdx + by);
            return `${where} avail-idx-jump: avail.idx += ${by} (now ${d.availIdx})`;
          }
          case "avail-head-range": {
            const head = RING_SIZE + rng.int(0xffff - RING_SIZE);
            d.pushAvail(head);
            d.publish();
            return `${where} avail-head-range: avail entry ${head} (ring size ${RING_SIZE})`;
          }
          case "used-idx-write": {
            const v = rng.int(0x10000);
            mem.writeU16(d.layout.usedRing + USED_IDX, v);
            return `${where} used-idx-write: driver wrote used.idx = ${v}`;
          }
          case "used-ring-write": {
            const at =
              d.layout.usedRing +
              rng.pick([
                USED_FLAGS,
                usedSlotOffset(0) + USED_ELEM_ID,
                usedSlotOffset(0) + USED_ELEM_LEN,
                availEventOffset(RING_SIZE),
              ]);
            const v = rng.u32();
            mem.writeU32(at, v);
            return `${where} used-ring-write: driver wrote ${hex(v)} at used ring +${at - d.layout.usedRing}`;
          }
          case "desc-addr-outside": {
            const x = di();
            const addr = rng.pick(OUTSIDE) + rng.int(256);
            d.writeDescriptor(desc, { ...x, addr });
            return `${where} desc-addr-outside: head ${target!.head} desc ${desc} addr ${hex(addr)}`;
          }
          case "desc-len-huge": {
            const x = di();
            const len = rng.pick([0xffff_ffff, 0x8000_0000, REGION + 1]);
            d.writeDescriptor(desc, { ...x, len });
            return `${where} desc-len-huge: head ${target!.head} desc ${desc} len ${hex(len)}`;
          }
          case "desc-len-zero": {
            d.writeDescriptor(desc, { ...di(), len: 0 });
            return `${where} desc-len-zero: head ${target!.head} desc ${desc}`;
          }
          case "desc-next-loop": {
            const last = target!.descs[target!.descs.length - 1]!;
            const x = d.readDescriptor(last);
            d.writeDescriptor(last, { ...x, flags: x.flags | VIRTQ_DESC_F_NEXT, next: target!.head });
            return `${where} desc-next-loop: head ${target!.head} desc ${last} next -> head`;
          }
          case "desc-next-range": {
            const next = RING_SIZE + rng.int(0xffff - RING_SIZE);
            d.writeDescriptor(desc, { ...di(), flags: di().flags | VIRTQ_DESC_F_NEXT, next });
            return `${where} desc-next-range: head ${target!.head} desc ${desc} next ${next}`;
          }
          case "indirect-nested": {
            const at = target!.table! + descOffset(rng.int(target!.tableEntries));
            mem.writeU16(at + DESC_FLAGS, mem.readU16(at + DESC_FLAGS) | VIRTQ_DESC_F_INDIRECT);
            return `${where} indirect-nested: head ${target!.head} table ${hex(target!.table!)} entry ${(at - target!.table!) / DESC_SIZE} INDIRECT`;
          }
          case "indirect-loop": {
            const at = target!.table! + descOffset(target!.tableEntries - 1);
            mem.writeU16(at + DESC_FLAGS, mem.readU16(at + DESC_FLAGS) | VIRTQ_DESC_F_NEXT);
            mem.writeU16(at + DESC_NEXT, 0);
            return `${where} indirect-loop: head ${target!.head} table ${hex(target!.table!)} last entry -> entry 0`;
          }
          case "desc-indirect-bad": {
            const x = di();
            const len = rng.pick([0, 8, 17, 16 * 0x10000, 0xffff_fff0]);
            const addr = rng.chance(0.5) ? x.addr : BigInt(rng.pick(OUTSIDE));
            d.writeDescriptor(target!.head, { addr, len, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
            return `${where} desc-indirect-bad: head ${target!.head} INDIRECT table ${hex(addr)} len ${len}`;
          }
          case "desc-write-flip": {
            const x = di();
            d.writeDescriptor(desc, { ...x, flags: x.flags ^ VIRTQ_DESC_F_WRITE });
            return `${where} desc-write-flip: head ${target!.head} desc ${desc} WRITE toggled`;
          }
          case "avail-head-dup": {
            d.pushAvail(target!.head);
            d.publish();
            return `${where} avail-head-dup: head ${target!.head} made available twice`;
          }
        }
      };

      // ---- what the device may write: writable descriptors in the tables (and indirect tables), used rings
      const mask = new Uint8Array(ram.bytes.length);
      const allow = (addr: bigint, len: number): void => {
        for (let i = 0; i < BASES.length; i++) {
          const lo = BigInt(BASES[i]!);
          const hi = lo + BigInt(REGION);
          const s = addr > lo ? addr : lo;
          const e = addr + BigInt(len) < hi ? addr + BigInt(len) : hi;
          if (s < e) mask.fill(1, i * REGION + Number(s - lo), i * REGION + Number(e - lo));
        }
      };
      const buildMask = (): void => {
        mask.fill(0);
        for (const r of rings) {
          const l = r.driver.layout;
          allow(BigInt(l.usedRing), usedRingBytes(RING_SIZE));
          for (let i = 0; i < RING_SIZE; i++) {
            const x = r.driver.readDescriptor(i);
            if ((x.flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
              const n = Math.min(Math.floor(x.len / DESC_SIZE), 4096);
              for (let j = 0; j < n; j++) {
                const at = x.addr + BigInt(descOffset(j));
                if (at > BigInt(Number.MAX_SAFE_INTEGER)) break;
                const a = mem.readU64(Number(at));
                if (a === undefined) break;
                const fl = mem.readU16(Number(at) + DESC_FLAGS);
                if ((fl & VIRTQ_DESC_F_WRITE) !== 0) allow(a, mem.readU32(Number(at) + DESC_LEN));
              }
            } else if ((x.flags & VIRTQ_DESC_F_WRITE) !== 0) allow(x.addr, x.len);
          }
        }
      };
      const snapshot = new Uint8Array(ram.bytes.length);
      /** Checks the round's writes; the failure's detail, or null when every write was in bounds. */
      const compare = (): string | null => {
        const now = ram.bytes;
        const bad: number[] = [];
        let count = 0;
        const w = new Float64Array(now.buffer, now.byteOffset, now.length / 8);
        const s = new Float64Array(snapshot.buffer, 0, snapshot.length / 8);
        for (let i = 0; i < w.length; i++) {
          if (Object.is(w[i], s[i])) continue;
          for (let b = i * 8; b < i * 8 + 8; b++) {
            if (now[b] !== snapshot[b] && mask[b] === 0) {
              count++;
              if (bad.length < 4) bad.push(b);
            }
          }
        }
        const addrOf = (o: number): string => hex(BASES[Math.floor(o / REGION)]! + (o % REGION));
        const detail = (): string =>
          `${count} byte(s) written outside every device-writable buffer and used ring, first at ${bad.map(addrOf).join(", ")} (value ${hex(now[bad[0]!]!)}, was ${hex(snapshot[bad[0]!]!)})`;
        return check("VUF-WRITE-BOUNDS", count === 0, detail) ? null : detail();
      };

      // ---- one round's completions
      let hostileSeen = false;
      /** This round's corruption when it wrote device-owned fields (used.idx, used elements). */
      let ownedWrite: string | null = null;
      /** The last corruption sent (the input a crash is reported with). */
      let lastInput = "";
      const collect = (r: Ring): void => {
        const d = r.driver;
        const idx = d.usedIdx();
        const delta = (idx - d.lastUsedIdx) & 0xffff;
        if (delta === 0) return;
        if (hostileSeen) {
          if (delta > r.outstanding.size) {
            d.lastUsedIdx = idx;
            return;
          }
        } else if (
          !check(
            "VUF-USED-IDX",
            delta <= r.outstanding.size,
            () => `ring ${r.index}: used.idx moved by ${delta} with ${r.outstanding.size} chains outstanding`,
          )
        ) {
          d.lastUsedIdx = idx;
          return;
        }
        for (const e of d.reapUsed()) {
          const c = r.outstanding.get(e.id);
          if (!hostileSeen)
            check(
              "VUF-USED-ONCE",
              c !== undefined,
              () =>
                `ring ${r.index}: used id ${e.id} (len ${e.len}) is not an outstanding head (outstanding: ${[...r.outstanding.values()].map((c) => `${c.head}[${c.descs.join(",")}]`).join(" ")})`,
            );
          if (c === undefined) continue;
          r.outstanding.delete(e.id);
          result.completions++;
          if (!hostileSeen)
            check(
              "VUF-USED-LEN",
              e.len <= c.writableBytes,
              () => `ring ${r.index} head ${e.id}: used.len ${e.len} > ${c.writableBytes} writable bytes`,
            );
          r.done.push(c);
          (c as { len?: number }).len = e.len;
          if (!hostileSeen && opts.device === "vsock" && c.kind === "rx") vsockRx(c, e.len);
        }
      };

      const readWritable = (c: Chain, len: number): Uint8Array => {
        const out = new Uint8Array(Math.min(len, c.writableBytes));
        let at = 0;
        for (const [a, l] of c.writable) {
          if (at >= out.length) break;
          const n = Math.min(l, out.length - at);
          mem.readInto(a, out.subarray(at, at + n));
          at += n;
        }
        return out;
      };

      /** A vsock RX packet, judged as it completes (the stream checks wait on what it says). */
      const vsockRx = (c: Chain, len: number): void => {
        const b = readWritable(c, len);
        if (b.length < VSOCK_PKT_HDR_SIZE) {
          check("VUF-VSOCK-HDR", false, () => `rx head ${c.head}: used.len ${len} < 44`);
          return;
        }
        const h = decodeHeader(b);
        const { srcCid: src, dstCid: dst, srcPort: sp, dstPort: dp, len: plen, type, op } = h;
        check(
          "VUF-VSOCK-HDR",
          src === VSOCK_HOST_CID &&
            dst === guestCid &&
            type === VSOCK_TYPE_STREAM &&
            op >= 1 &&
            op <= 7 &&
            len === VSOCK_PKT_HDR_SIZE + plen,
          () =>
            `rx head ${c.head}: src_cid ${src} dst_cid ${dst} type ${type} op ${op} len ${plen} used.len ${len}`,
        );
        if (streams !== null && streams.onRx(h, b.subarray(VSOCK_PKT_HDR_SIZE, VSOCK_PKT_HDR_SIZE + plen)))
          return;
        const pending = op === VSOCK_OP_RST ? vsockPending.get(`${sp}:${dp}`) : undefined;
        if (pending !== undefined) {
          vsockPending.delete(`${sp}:${dp}`);
          check("VUF-VSOCK-RST", true, () => "");
          if (pending.pieces > 1) check("VUF-MSG-FRAMING", true, () => "");
        }
      };

      const checkPayloads = (): void => {
        for (const r of rings) {
          for (const c of r.done) {
            const len = (c as { len?: number }).len ?? 0;
            if (!hostileSeen && opts.device === "net" && c.kind === "rx") {
              rxObserved = true;
              const bytes = readWritable(c, len);
              const v = new DataView(bytes.buffer);
              const hdrOk =
                bytes.length >= NET_HDR_SIZE &&
                (v.getUint8(NET_HDR.flags) & VIRTIO_NET_HDR_F_NEEDS_CSUM) === 0 &&
                v.getUint8(NET_HDR.gsoType) === VIRTIO_NET_HDR_GSO_NONE;
              check(
                "VUF-NET-RX-HDR",
                hdrOk,
                () =>
                  `rx head ${c.head}: header ${bytes.length >= NET_HDR_SIZE ? `flags ${v.getUint8(NET_HDR.flags)} gso_type ${v.getUint8(NET_HDR.gsoType)}` : `only ${bytes.length} bytes`}`,
              );
              const frame = bytes.subarray(NET_HDR_SIZE);
              const i = tx.findIndex((f) => f.length === frame.length && f.every((b, k) => b === frame[k]));
              check(
                "VUF-NET-TX-RX",
                i >= 0,
                () => `rx head ${c.head}: a ${frame.length}-byte frame that was never sent (or sent altered)`,
              );
              if (i >= 0) {
                check(
                  "VUF-NET-RX-HDR",
                  len === NET_HDR_SIZE + frame.length,
                  () => `rx head ${c.head}: used.len ${len}`,
                );
                tx.splice(i, 1);
              }
            }
          }
        }
      };

      // ---- the rounds
      const allCalls = rings.map((r) => r.fds.call);
      const drainCalls = (): void => {
        for (const r of rings) r.calls += fe.drainCall(r.fds);
      };

      /**
       * What happened after the last check window, under the settings still in force (used_event,
       * avail.flags): completions are reaped and judged, and call notifications that came late
       * are judged rather than dropped. A late call where none was due (or the due one had come)
       * breaks EVENT-IDX-QUIET / NO-INTERRUPT; completions in the gap that need a call get one
       * (waited for, bounded); a due call that missed the window is noted as late.
       */
      const lateWindow = (graceMs: number, of: number): Effect.Effect<void> =>
        Effect.gen(function* () {
          const late = rings.map(() => 0);
          const checked = rings.map((r) => r.driver.lastUsedIdx);
          const deadline = Date.now() + graceMs;
          for (;;) {
            rings.forEach((r, i) => (late[i]! += fe.drainCall(r.fds)));
            const left = deadline - Date.now();
            if (left <= 0) break;
            yield* fe.waitCalls(allCalls, Math.min(left, 50));
          }
          for (const r of rings) {
            r.done = [];
            collect(r);
          }
          checkPayloads();
          for (const r of rings) for (const c of r.done) retire(c);
          if (hostileSeen) return;
          for (const [i, r] of rings.entries()) {
            if (r.async) continue;
            const n = r.driver.lastUsedIdx;
            const from = checked[i]!;
            const needWindow = from !== r.oldUsed && needsCallOver(r, r.oldUsed, from);
            const needGap = n !== from && needsCallOver(r, from, n);
            const where = `ring ${r.index} (step ${of}'s settings)`;
            if (needGap && late[i] === 0) {
              // Completions after the window that need a call: wait for it (bounded).
              const end = Date.now() + opts.timeoutMs;
              while (late[i] === 0 && Date.now() < end) {
                yield* fe.waitCalls([r.fds.call], Math.min(end - Date.now(), 50));
                late[i]! += fe.drainCall(r.fds);
              }
              check(
                result.eventIdx ? "VUF-CALL-EVENT-IDX" : "VUF-CALL-NOTIFY",
                late[i]! > 0,
                () =>
                  `${where}: used.idx ${from} -> ${n} after the check window, no call within ${opts.timeoutMs} ms`,
              );
              continue;
            }
            if (late[i] === 0 || needGap) continue;
            if (needWindow && r.calls === 0) {
              result.notes.push(`${where}: the call due for used.idx ${r.oldUsed} -> ${from} came late`);
              continue;
            }
            if (result.eventIdx)
              check(
                "VUF-CALL-EVENT-IDX-QUIET",
                false,
                () =>
                  `${where}: ${late[i]} call(s) after the check window (late), used.idx ${r.oldUsed} -> ${n}, used_event ${r.usedEvent}${needWindow ? ", the due call had come" : ""}`,
              );
            else if (r.noInterrupt)
              check(
                "VUF-CALL-NO-INTERRUPT",
                false,
                () => `${where}: ${late[i]} call(s) after the check window (late) with NO_INTERRUPT set`,
              );
          }
        });

      const round = Effect.gen(function* () {
        // The gap since the last round (the first round has no settings before it).
        if (step > 1) yield* lateWindow(0, step - 1);
        else for (const r of rings) fe.drainCall(r.fds);
        for (const r of rings) {
          r.done = [];
          r.calls = 0;
          r.mustComplete = 0;
        }
        fill();
        let corruption: string | null = null;
        if (opts.hostile > 0 && rng.chance(opts.hostile)) {
          corruption = corrupt();
          if (corruption !== null) {
            if (/ used-(idx|ring)-write: /.test(corruption)) ownedWrite = `step ${step}: ${corruption}`;
            hostileSeen = true;
            result.hostileRounds++;
            result.corruptions.push(`step ${step}: ${corruption}`);
            lastInput = `step ${step}: ${corruption}`;
          }
        }
        // Notification set-up for this round.
        for (const r of rings) {
          r.oldUsed = r.driver.lastUsedIdx;
          if (result.eventIdx) {
            const pending = r.outstanding.size;
            r.usedEvent =
              (r.oldUsed + (rng.chance(0.3) ? pending + 1 + rng.int(8) : rng.int(Math.max(1, pending)))) &
              0xffff;
            r.driver.setUsedEvent(r.usedEvent);
          } else {
            r.noInterrupt = rng.chance(0.3);
            r.driver.setAvailFlags(r.noInterrupt ? VRING_AVAIL_F_NO_INTERRUPT : 0);
          }
        }
        buildMask();
        // Calls from here on are this round's (a polling back-end may already be at work).
        drainCalls();
        snapshot.set(ram.bytes);
        for (const r of rings) fe.kick(r.fds);

        const budget = hostileSeen ? Math.min(opts.timeoutMs, 200) : opts.timeoutMs;
        const deadline = Date.now() + budget;
        for (;;) {
          for (const r of rings) collect(r);
          if (
            !hostileSeen &&
            !pendingMust() &&
            (streams === null || streams.settled(rings[0]!.outstanding.size))
          )
            break;
          const left = deadline - Date.now();
          if (left <= 0) break;
          yield* fe.waitCalls(allCalls, Math.min(left, 20));
          drainCalls();
        }
        if (!hostileSeen) {
          const missing = rings.filter((r) => missingOf(r) > 0);
          if (
            opts.device === "net" &&
            rxObserved === null &&
            missing.length === 1 &&
            missing[0]!.index === 0
          ) {
            // Nothing came back: the far side is not a loopback; RX is not expected any more.
            rxObserved = false;
          } else
            check("VUF-PROGRESS", missing.length === 0, () =>
              missing
                .map((r) => `ring ${r.index}: ${missingOf(r)} chain(s) not completed within ${budget} ms`)
                .join("; "),
            );
        }
        // A notification may follow the used.idx write by a moment: wait for the ones required.
        if (!hostileSeen) {
          const end = Date.now() + opts.timeoutMs;
          while (rings.some((r) => !r.async && needsCall(r) && r.calls === 0) && Date.now() < end) {
            yield* fe.waitCalls(allCalls, Math.min(end - Date.now(), 50));
            drainCalls();
          }
        }
        const bounds = compare();
        checkPayloads();
        if (streams !== null && !hostileSeen) streams.endRound(rings[0]!.outstanding.size);
        if (!hostileSeen) checkNotifications();
        // Retire completed chains (their descriptors zeroed: stale writable entries would widen the mask).
        for (const r of rings) for (const c of r.done) retire(c);
        // Liveness after a corruption: the back-end must still answer (bounded).
        if (corruption !== null || hostileSeen) {
          const probe = yield* Effect.result(fe.getFeatures());
          if (probe._tag === "Failure") return yield* Effect.fail(probe.failure);
          check("VUF-NO-HANG", true, () => "");
        }
        // The driver wrote fields only the device owns: its verdict is this round's (SAFETY).
        if (ownedWrite !== null) {
          const what = ownedWrite;
          check("VUF-HOSTILE-USED", bounds === null, () => `after ${what}: ${bounds}`);
          ownedWrite = null;
        }
        return corruption;
      });

      // How many of this round's required completions are still missing.
      const missingOf = (r: Ring): number => {
        const have =
          opts.device !== "generic" && r.index === 0
            ? r.done.filter((c) => c.kind === "rx").length
            : r.done.filter((c) => c.step === step).length;
        return Math.max(0, r.mustComplete - have);
      };
      const pendingMust = (): boolean => rings.some((r) => missingOf(r) > 0);

      /** Whether used.idx moving from `old` to `now` calls for a notification under the ring's settings. */
      const needsCallOver = (r: Ring, old: number, now: number): boolean => {
        if (now === old) return false;
        if (result.eventIdx) return vringNeedEvent(r.usedEvent, now, old);
        return !r.noInterrupt;
      };
      const needsCall = (r: Ring): boolean => needsCallOver(r, r.oldUsed, r.driver.lastUsedIdx);

      const checkNotifications = (): void => {
        for (const r of rings) {
          if (r.async) continue;
          const n = r.driver.lastUsedIdx;
          if (n === r.oldUsed) continue;
          const need = needsCall(r);
          if (result.eventIdx) {
            if (need)
              check(
                "VUF-CALL-EVENT-IDX",
                r.calls > 0,
                () =>
                  `ring ${r.index}: used.idx ${r.oldUsed} -> ${n} passed used_event ${r.usedEvent}, no call`,
              );
            else
              check(
                "VUF-CALL-EVENT-IDX-QUIET",
                r.calls === 0,
                () =>
                  `ring ${r.index}: used.idx ${r.oldUsed} -> ${n} did not pass used_event ${r.usedEvent}, ${r.calls} call(s)`,
              );
          } else if (need) {
            check(
              "VUF-CALL-NOTIFY",
              r.calls > 0,
              () => `ring ${r.index}: used.idx ${r.oldUsed} -> ${n}, avail.flags 0, no call`,
            );
          } else {
            check(
              "VUF-CALL-NO-INTERRUPT",
              r.calls === 0,
              () => `ring ${r.index}: NO_INTERRUPT set, used.idx ${r.oldUsed} -> ${n}, ${r.calls} call(s)`,
            );
          }
        }
      };

      const started = Date.now();
      let stop: "done" | "closed" = "done";
      for (step = 1; step <= opts.steps; step++) {
        const r = yield* Effect.result(round);
        if (r._tag === "Failure") {
          const e = r.failure;
          const died = sp?.exit() ?? null;
          // Give a dying process a moment to be reaped.
          if (sp !== null && died === null) yield* Effect.sleep(200);
          const x = sp?.exit() ?? null;
          if (x !== null && x.signal !== null) {
            result.crash = {
              step,
              signal: x.signal,
              input: lastInput === "" ? "(no corruption sent yet)" : lastInput,
              tail: sp!.tail(),
            };
            check(
              "VUF-NO-CRASH",
              false,
              () => `back-end killed by ${x.signal} at step ${step}; last corruption: ${result.crash!.input}`,
            );
            stop = "closed";
            break;
          }
          if (e._tag === "FrontendTimeout") {
            check(
              "VUF-NO-HANG",
              false,
              () => `${describeFrontendError(e)} (last corruption: ${lastInput || "none"})`,
            );
            const what = ownedWrite;
            if (what !== null)
              check("VUF-HOSTILE-USED", false, () => `after ${what}: ${describeFrontendError(e)}`);
            stop = "closed";
            break;
          }
          if (hostileSeen) {
            result.notes.push(
              `step ${step}: ${describeFrontendError(e)}${x !== null ? ` (${exitLine()})` : ""} after hostile input (${lastInput}); a back-end may stop on a broken ring`,
            );
            stop = "closed";
            break;
          }
          return yield* Effect.fail<SetupFailed>({
            _tag: "SetupFailed",
            message: `step ${step}: ${describeFrontendError(e)}${x !== null ? ` (${exitLine()})` : ""}`,
          });
        }
        result.stepsRun = step;
        if (step % 10 === 0 || step === opts.steps)
          log(
            `step ${step}/${opts.steps}: ${result.completions} completions, ${result.findings.length} findings (${Date.now() - started} ms)`,
          );
      }
      if (stop === "closed") step = result.stepsRun + 1;
      else step = opts.steps;
      if (result.crash !== null) {
        return result;
      }
      // The last round's late calls: a grace window before GET_VRING_BASE stops the rings.
      if (stop === "done") yield* lateWindow(Math.min(opts.timeoutMs, 500), step);
      if (stop === "done") {
        // Payload rules that need a whole run.
        if (!hostileSeen && opts.device === "vsock") {
          for (const [ports, at] of vsockPending) {
            step = at.step;
            const what = `REQUEST ${ports.split(":").reverse().join(" -> port ")}`;
            // A header split over descriptors and never answered is a framing failure (a device
            // MUST), not a missing RST (descriptive text): charge it to the rule it breaks.
            if (at.pieces > 1)
              check(
                "VUF-MSG-FRAMING",
                false,
                () => `${what}, header over ${at.pieces} descriptors, got no RST`,
              );
            else if (streams !== null && rings[0]!.outstanding.size === 0)
              result.notes.push(`${what}: no RST, but stream data had taken every RX buffer`);
            else check("VUF-VSOCK-RST", false, () => `${what} got no RST`);
          }
        }
        if (streams !== null && !hostileSeen) {
          streams.finish(rings[0]!.outstanding.size);
          result.notes.push(
            `vsock streams: ${streams.opened} connection(s) opened, ${streams.bytesToHost} bytes guest -> host, ${streams.bytesToGuest} bytes host -> guest`,
          );
        }
        if (!hostileSeen && opts.device === "net") {
          if (rxObserved === null)
            result.notes.push(
              "net: nothing came back on RX: the far side is not a loopback; VUF-NET-TX-RX not checked",
            );
          else if (tx.length > 0)
            check("VUF-NET-TX-RX", false, () => `${tx.length} transmitted frame(s) never came back`);
        }
        // GET_VRING_BASE: where each ring stopped.
        for (const r of rings) {
          const b = yield* Effect.result(fe.getVringBase(r.index));
          if (b._tag === "Failure") {
            if (hostileSeen) {
              result.notes.push(`GET_VRING_BASE ${r.index}: ${describeFrontendError(b.failure)}`);
              break;
            }
            return yield* Effect.fail<SetupFailed>({
              _tag: "SetupFailed",
              message: describeFrontendError(b.failure),
            });
          }
          if (hostileSeen) continue;
          const base = b.success;
          const used = r.driver.lastUsedIdx;
          const avail = r.driver.availIdx;
          const within = ((base - used) & 0xffff) <= ((avail - used) & 0xffff);
          const exact = r.outstanding.size > 0 || base === avail;
          check(
            "VUF-VRING-BASE",
            within && exact,
            () =>
              `ring ${r.index}: GET_VRING_BASE ${base}, used.idx ${used}, avail.idx ${avail}, ${r.outstanding.size} outstanding`,
          );
        }
      }
      return result;
    }),
  );

/** Exit status: 1 for a MUST or SAFETY failure, else 0. */
export const exitStatus = (r: RunResult): number =>
  r.rules.some((x) => x.failures > 0 && x.level !== "profile") ? 1 : 0;
