/**
 * virtio-vsock packet operations of the reference adapter (VSOCK-*), over impl/vsock.
 * The reference adapter assembles with the `virtio` profile (any descriptor layout, VIRTIO
 * §2.6.4); an optional `profile` argument selects another for experiments.
 */
import { VsockPacket } from "../../impl/vsock/packet.ts";
import { PROFILES, type VsockProfile } from "../../spec/vsock.ts";
import { isObject, toHex } from "../protocol.ts";
import type { Json, JsonObject } from "../protocol.ts";
import { HEAD_REFUSED, chainArg } from "./iovec.ts";
import type { Handler } from "./world.ts";
import { BadRequest, argHex, argU64, argUint, errv, okv } from "./world.ts";

const profileArg = (args: JsonObject): VsockProfile => {
  const p = args["profile"];
  if (p === undefined) return PROFILES.virtio;
  if (p !== "virtio" && p !== "rust-vmm" && p !== "cloud-hypervisor")
    throw new BadRequest("profile must be virtio, rust-vmm or cloud-hypervisor");
  return PROFILES[p];
};

const headerJson = (pkt: VsockPacket): Json => {
  const h = pkt.header;
  return {
    srcCid: h.srcCid().toString(10),
    dstCid: h.dstCid().toString(10),
    srcPort: h.srcPort(),
    dstPort: h.dstPort(),
    len: h.len(),
    type: h.type(),
    op: h.op(),
    flags: h.flags(),
    bufAlloc: h.bufAlloc(),
    fwdCnt: h.fwdCnt(),
  };
};

export const vsockOps: Record<string, Handler> = {
  "vsock.tx": (args, world) => {
    const chain = chainArg(world, args);
    if (chain === undefined) return HEAD_REFUSED;
    const pkt = new VsockPacket();
    const e = pkt.assembleTx(chain, profileArg(args));
    if (e !== null) return errv({ _tag: e._tag });
    const len = pkt.header.len();
    const payload = new Uint8Array(len);
    const n = pkt.readData(payload, 0);
    return okv({ header: headerJson(pkt), payload: toHex(payload.subarray(0, n)) });
  },
  "vsock.rx": (args, world) => {
    const chain = chainArg(world, args);
    if (chain === undefined) return HEAD_REFUSED;
    const pkt = new VsockPacket();
    const e = pkt.assembleRx(chain, profileArg(args));
    if (e !== null) return errv({ _tag: e._tag });
    const h = args["header"];
    if (!isObject(h)) throw new BadRequest("header must be an object of header fields");
    const data = argHex(args, "data");
    pkt.header
      .setSrcCid(argU64(h, "srcCid"))
      .setDstCid(argU64(h, "dstCid"))
      .setSrcPort(argUint(h, "srcPort"))
      .setDstPort(argUint(h, "dstPort"))
      .setLen(argUint(h, "len"))
      .setType(argUint(h, "type", 0xffff))
      .setOp(argUint(h, "op", 0xffff))
      .setFlags(argUint(h, "flags"))
      .setBufAlloc(argUint(h, "bufAlloc"))
      .setFwdCnt(argUint(h, "fwdCnt"));
    const written = pkt.writeData(data);
    return okv({ written });
  },
};
