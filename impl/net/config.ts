/**
 * virtio-net config space (NET-CFG-*): mac @0, status @6, max_virtqueue_pairs @8, mtu @10
 * (wire/net.ts NET_CONFIG; VIRTIO 1.2 §5.1.4; squib puts mtu at 12, which a Linux guest would
 * misread). Bytes past the layout read as zero; the modern device ignores writes.
 */
import type { ConfigError, NetConfig } from "../../spec/net.ts";
import { err, ok, type Result } from "../../spec/result.ts";
import {
  NET_CONFIG,
  NET_CONFIG_SIZE,
  NET_MAC_LEN,
  NET_MTU_MAX,
  NET_MTU_MIN,
  VIRTIO_NET_S_LINK_UP,
} from "../../wire/net.ts";

export { NET_CONFIG_SIZE as CONFIG_SIZE } from "../../wire/net.ts";
export type { ConfigError, NetConfig } from "../../spec/net.ts";

const isByte = (x: number): boolean => Number.isInteger(x) && x >= 0 && x <= 0xff;

/** NET-CFG-MAC, then NET-CFG-MTU: the configuration a device may be built with. */
export const checkConfig = (c: NetConfig): Result<NetConfig, ConfigError> => {
  const mac = c.mac;
  if (mac !== undefined) {
    let good = mac.length === NET_MAC_LEN;
    for (let i = 0; good && i < NET_MAC_LEN; i++) good = isByte(mac[i]!);
    if (!good) return err({ _tag: "InvalidMac", length: mac.length });
  }
  const mtu = c.mtu;
  if (mtu !== undefined && !(Number.isInteger(mtu) && mtu >= NET_MTU_MIN && mtu <= NET_MTU_MAX)) {
    return err({ _tag: "InvalidMtu", mtu });
  }
  return ok(c);
};

export class NetConfigSpace {
  private readonly bytes = new Uint8Array(NET_CONFIG_SIZE);
  private readonly view = new DataView(this.bytes.buffer);
  private readonly statusOffered: boolean;

  constructor(config: NetConfig, linkUp = true) {
    const mac = config.mac;
    if (mac !== undefined)
      for (let i = 0; i < NET_MAC_LEN; i++) this.bytes[NET_CONFIG.mac + i] = mac[i]! & 0xff;
    this.statusOffered = config.status === true;
    this.view.setUint16(NET_CONFIG.maxVirtqueuePairs, 1, true); // one queue pair (meaningful only with MQ, never offered)
    this.view.setUint16(NET_CONFIG.mtu, config.mtu ?? 0, true);
    this.setLinkUp(linkUp);
  }

  /** NET-CFG-STATUS: the link state the driver reads (when STATUS is offered). */
  setLinkUp(up: boolean): void {
    this.view.setUint16(NET_CONFIG.status, this.statusOffered && up ? VIRTIO_NET_S_LINK_UP : 0, true);
  }

  /** NET-CFG-LAYOUT, NET-CFG-PAST-END: fills `data` from `offset`; out-of-range reads are zeros. */
  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      data[i] = at >= 0 && at < NET_CONFIG_SIZE ? this.bytes[at]! : 0;
    }
  }

  /** NET-CFG-WRITE: read-only for a modern device. */
  write(_offset: number, _data: Uint8Array): void {}
}
