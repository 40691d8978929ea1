/** virtio-net operations of the reference adapter (NET-*), over impl/net. */
import { NetConfigSpace, checkConfig } from "../../impl/net/config.ts";
import type { NetConfig } from "../../impl/net/config.ts";
import {
  NUM_BUFFERS_OFFSET,
  decodeNetHeader,
  encodeNetHeader,
  writeRxHeader,
} from "../../impl/net/header.ts";
import type { NetHeader } from "../../impl/net/header.ts";
import { toHex } from "../protocol.ts";
import type { Json, JsonObject } from "../protocol.ts";
import type { Handler } from "./world.ts";
import { BadRequest, argBool, argHex, argUint, errv, okv } from "./world.ts";

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
  "net.config": (args, world) => {
    const c = checkConfig(configArg(args));
    if (!c.ok) return errv({ _tag: c.error._tag });
    const space = new NetConfigSpace(c.value, argBool(args, "linkUp", true));
    const offset = argUint(args, "offset", 0xffff);
    const out = new Uint8Array(argUint(args, "len", 0x1000));
    if (world.mutant === "net-mtu-offset-12") {
      // squib's layout: mtu at 12 instead of 10.
      const full = new Uint8Array(16);
      space.read(0, full.subarray(0, 12));
      full[12] = full[10]!;
      full[13] = full[11]!;
      full[10] = 0;
      full[11] = 0;
      for (let i = 0; i < out.length; i++) out[i] = full[offset + i] ?? 0;
    } else space.read(offset, out);
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
  "net.rxHeader": (args, world) => {
    const len = hdrLen(args);
    const n = argUint(args, "numBuffers", 0xffff);
    const out = new Uint8Array(len);
    writeRxHeader(out, len, n);
    if (world.mutant === "net-num-buffers-be" && len === 12) {
      // v86: num_buffers stored big-endian.
      out[NUM_BUFFERS_OFFSET] = (n >>> 8) & 0xff;
      out[NUM_BUFFERS_OFFSET + 1] = n & 0xff;
    }
    return okv({ data: toHex(out) });
  },
};
