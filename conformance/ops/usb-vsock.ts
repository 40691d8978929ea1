/** vsock-over-USB operations of the reference adapter (USB-*), over impl/usb-vsock/packet.ts. */
import { UsbPacketBuilder, VsockPacketIterator, isKnownType } from "../../impl/usb-vsock/packet.ts";
import { isObject, toHex } from "../protocol.ts";
import type { Json } from "../protocol.ts";
import type { Handler } from "./world.ts";
import { BadRequest, argArray, argHex, argUint, okv } from "./world.ts";

export const usbOps: Record<string, Handler> = {
  "usb.parse": (args) => {
    const data = argHex(args, "data");
    const it = new VsockPacketIterator(data);
    const packets: Json[] = [];
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
    return okv({ packets, error: it.error === undefined ? null : it.error._tag });
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
