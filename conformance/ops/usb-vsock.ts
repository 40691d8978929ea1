/** vsock-over-USB operations of the reference adapter (USB-*), over impl/usb-vsock/packet.ts. */
import { UsbPacketBuilder, VsockPacketIterator, isKnownType } from "../../impl/usb-vsock/packet.ts";
import { HEADER_SIZE } from "../../impl/usb-vsock/packet.ts";
import { isObject, toHex } from "../protocol.ts";
import type { Json } from "../protocol.ts";
import type { Handler } from "./world.ts";
import { BadRequest, argArray, argHex, argUint, okv } from "./world.ts";

const rdU32 = (b: Uint8Array, at: number): number =>
  (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

export const usbOps: Record<string, Handler> = {
  "usb.parse": (args, world) => {
    const data = argHex(args, "data");
    const it = new VsockPacketIterator(data);
    const packets: Json[] = [];
    for (;;) {
      while (it.next()) {
        packets.push({
          type: it.type,
          deviceCid: it.deviceCid,
          hostCid: it.hostCid,
          devicePort: it.devicePort,
          hostPort: it.hostPort,
          payloadLen: it.payloadLen,
          payload: toHex(it.payload()),
        });
      }
      const e = it.error;
      // usb-payload-past-buffer mutant: a payload_len past the end is taken at its word
      // (what is there is returned, the rest would be whatever follows the buffer).
      if (world.mutant === "usb-payload-past-buffer" && e !== undefined && e._tag === "PayloadTooLong") {
        const at = e.offset;
        packets.push({
          type: data[at + 3]!,
          deviceCid: rdU32(data, at + 4),
          hostCid: rdU32(data, at + 8),
          devicePort: rdU32(data, at + 12),
          hostPort: rdU32(data, at + 16),
          payloadLen: e.payloadLen,
          payload: toHex(data.subarray(at + HEADER_SIZE)),
        });
        return okv({ packets, error: null });
      }
      return okv({ packets, error: e === undefined ? null : e._tag });
    }
  },
  "usb.build": (args) => {
    const b = new UsbPacketBuilder(new Uint8Array(argUint(args, "capacity", 1 << 20)));
    const rejected: number[] = [];
    for (const [i, p] of argArray(args, "packets").entries()) {
      if (!isObject(p))
        throw new BadRequest("each packet is {type, deviceCid, hostCid, devicePort, hostPort, payload}");
      const type = argUint(p, "type", 255);
      if (!isKnownType(type)) throw new BadRequest(`unknown packet type ${type}`);
      const r = b.writeRaw(
        type,
        argUint(p, "deviceCid"),
        argUint(p, "hostCid"),
        argUint(p, "devicePort"),
        argUint(p, "hostPort"),
        argHex(p, "payload"),
      );
      if (r !== undefined) rejected.push(i);
    }
    const out = b.take();
    return okv({ data: out === undefined ? "" : toHex(out), rejected });
  },
};
