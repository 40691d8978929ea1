/** virtio-net operations of the reference adapter (NET-*), over impl/net. */
import { Effect } from "effect";
import type { NetBackendShape, NetBackendStats, RxBuffer, TxPacket } from "../../impl/net/backend.ts";
import { NetConfigSpace, checkConfig } from "../../impl/net/config.ts";
import { NetDevice, RX_QUEUE, TX_QUEUE } from "../../impl/net/device.ts";
import type { NetConfig } from "../../impl/net/config.ts";
import { decodeNetHeader, encodeNetHeader, writeRxHeader } from "../../impl/net/header.ts";
import type { NetHeader } from "../../impl/net/header.ts";
import { isObject, toHex } from "../protocol.ts";
import type { Json, JsonObject } from "../protocol.ts";
import type { Handler, World } from "./world.ts";
import { BadRequest, NotConfigured, argArray, argBool, argHex, argU64, argUint, errv, okv } from "./world.ts";

const hdrLen = (args: JsonObject): 10 | 12 => {
  const n = argUint(args, "hdrLen", 12);
  if (n !== 10 && n !== 12) throw new BadRequest("hdrLen must be 10 or 12");
  return n;
};

const headerArg = (args: JsonObject): NetHeader => ({
  flags: argUint(args, "flags", 0xff),
  gsoType: argUint(args, "gsoType", 0xff),
  hdrLen: argUint(args, "hdrLen16", 0xffff),
  gsoSize: argUint(args, "gsoSize", 0xffff),
  csumStart: argUint(args, "csumStart", 0xffff),
  csumOffset: argUint(args, "csumOffset", 0xffff),
  numBuffers: argUint(args, "numBuffers", 0xffff),
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

const configArg = (args: JsonObject): NetConfig => {
  const mac = args["mac"];
  let macBytes: number[] | undefined;
  if (mac !== undefined && mac !== null) {
    if (typeof mac !== "string") throw new BadRequest("mac must be hex");
    macBytes = Array.from(argHex(args, "mac"));
  }
  const mtu = args["mtu"];
  return {
    ...(macBytes !== undefined ? { mac: macBytes } : {}),
    ...(mtu !== undefined && mtu !== null ? { mtu: argUint(args, "mtu") } : {}),
    status: argBool(args, "status", false),
  };
};

export const netOps: Record<string, Handler> = {
  "net.config": (args) => {
    const c = checkConfig(configArg(args));
    if (!c.ok) return errv({ _tag: c.error._tag });
    const space = new NetConfigSpace(c.value, argBool(args, "linkUp", true));
    const offset = argUint(args, "offset", 0xffff);
    const out = new Uint8Array(argUint(args, "len", 0x1000));
    space.read(offset, out);
    return okv({ data: toHex(out) });
  },
  "net.header.encode": (args) => {
    const len = hdrLen(args);
    const out = new Uint8Array(len);
    encodeNetHeader(headerArg(args), len, out, 0);
    return okv({ data: toHex(out) });
  },
  "net.header.decode": (args) => {
    const len = hdrLen(args);
    const h = decodeNetHeader(argHex(args, "data"), len, 0);
    return h === undefined ? errv({ _tag: "HeaderTooShort" }) : okv(headerJson(h));
  },
  "net.rxHeader": (args) => {
    const len = hdrLen(args);
    const n = argUint(args, "numBuffers", 0xffff);
    const out = new Uint8Array(len);
    writeRxHeader(out, len, n);
    return okv({ data: toHex(out) });
  },
};

// ---- the device: TX and RX through its two split queues ---------------------------------

/** A backend that keeps what the device sends and hands it queued frames (no I/O). */
class CaptureBackend implements NetBackendShape {
  readonly name = "conformance-capture";
  readonly carriesHeader = false;
  readonly sent: Uint8Array[] = [];
  /** Frames waiting to be received, oldest first. */
  readonly queued: Uint8Array[] = [];
  readonly stats: NetBackendStats = { sent: 0, received: 0, dropped: 0, errors: 0 };
  readonly waitReadable: Effect.Effect<void> = Effect.void;
  /** Frames waiting (what the device asks to know whether RX buffers are missing). */
  get pending(): number {
    return this.queued.length;
  }
  configure(): boolean {
    return true;
  }
  send(packet: TxPacket): number {
    const frame = new Uint8Array(packet.frameLength);
    packet.copyFrame(frame, 0);
    this.sent.push(frame);
    this.stats.sent++;
    return frame.length;
  }
  receive(dst: RxBuffer): number {
    const f = this.queued.shift();
    if (f === undefined) return -1;
    this.stats.received++;
    return f.length === 0 ? 0 : dst.write(f, 0, f.length, dst.headerLength);
  }
}

interface NetSlot {
  readonly device: NetDevice;
  readonly backend: CaptureBackend;
}

/** The net device net.device built (mutant wrappers reach the same device through it). */
export const netSlot = (world: World): NetSlot => {
  const s = world.slots.get("net") as NetSlot | undefined;
  if (s === undefined) throw new NotConfigured("no net device: send net.device first");
  return s;
};

const ringArgs = (
  args: JsonObject,
  name: string,
): { size: number; descTable: bigint; availRing: bigint; usedRing: bigint } => {
  const r = args[name];
  if (!isObject(r)) throw new BadRequest(`${name} must be {size, descTable, availRing, usedRing}`);
  return {
    size: argUint(r, "size", 0xffff),
    descTable: argU64(r, "descTable"),
    availRing: argU64(r, "availRing"),
    usedRing: argU64(r, "usedRing"),
  };
};

export const netDeviceOps: Record<string, Handler> = {
  "net.device": (args, world) => {
    const c = checkConfig({
      ...configArg(args),
      mrgRxbuf: argBool(args, "mrgRxbuf", false),
      eventIdx: argBool(args, "eventIdx", false),
    });
    if (!c.ok) return errv({ _tag: c.error._tag });
    const backend = new CaptureBackend();
    const device = new NetDevice(c.value, backend);
    const acked = device.ackFeatures(argU64(args, "acked"));
    if (!acked.ok) return errv({ _tag: acked.error._tag });
    world.slots.set("net", { device, backend });
    return okv({
      offered: device.offeredFeatures.toString(10),
      headerLength: device.headerLength,
      maxFrame: device.maxFrame,
    });
  },
  "net.activate": (args, world) => {
    const { device } = netSlot(world);
    for (const [q, name] of [
      [RX_QUEUE, "rx"],
      [TX_QUEUE, "tx"],
    ] as const) {
      const r = ringArgs(args, name);
      device.queues[q]!.configure({ ...r, ready: true });
    }
    const r = device.activate(world.mem(), () => {});
    if (!r.ok)
      return errv(
        r.error._tag === "QueueInit"
          ? { _tag: r.error.error._tag, queue: r.error.queue }
          : { _tag: r.error._tag },
      );
    return okv(null);
  },
  "net.tx": (_args, world) => {
    const { device, backend } = netSlot(world);
    const before = { ...device.stats, interrupts: [...device.stats.interrupts] };
    backend.sent.length = 0;
    const completed = device.processTxNow();
    const s = device.stats;
    return okv({
      completed,
      frames: backend.sent.map(toHex),
      tooShort: s.txTooShort - before.txTooShort,
      tooLong: s.txTooLong - before.txTooLong,
      chainErrors: s.txChainErrors - before.txChainErrors,
      notified: s.interrupts[TX_QUEUE]! > before.interrupts[TX_QUEUE]!,
    });
  },
  "net.rx": (args, world) => {
    const { device, backend } = netSlot(world);
    for (const f of argArray(args, "frames")) {
      if (typeof f !== "string") throw new BadRequest("frames are hex strings");
      backend.queued.push(argHex({ f }, "f"));
    }
    const before = { ...device.stats, interrupts: [...device.stats.interrupts] };
    const completed = device.processRxNow();
    const s = device.stats;
    return okv({
      completed,
      pending: backend.queued.length,
      frames: s.rxFrames - before.rxFrames,
      chainErrors: s.rxChainErrors - before.rxChainErrors,
      notified: s.interrupts[RX_QUEUE]! > before.interrupts[RX_QUEUE]!,
    });
  },
};
