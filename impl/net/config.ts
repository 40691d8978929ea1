/**
 * virtio-net config space (NET-CFG-*): mac @0, status @6, max_virtqueue_pairs @8, mtu @10
 * (VIRTIO 1.2 §5.1.4; squib puts mtu at 12, which a Linux guest would misread). Bytes past
 * the layout read as zero; the modern device ignores writes.
 */
import {
  CONFIG_SIZE,
  VIRTIO_NET_S_LINK_UP,
  validateConfig,
  type ConfigError,
  type NetConfig,
} from "../../spec/net.ts";
import type { Result } from "../../spec/result.ts";

export { CONFIG_SIZE } from "../../spec/net.ts";
export type { ConfigError, NetConfig } from "../../spec/net.ts";

/** NET-CFG-MTU, NET-CFG-MAC. */
export const checkConfig = (c: NetConfig): Result<NetConfig, ConfigError> => validateConfig(c);

export class NetConfigSpace {
  private readonly bytes = new Uint8Array(CONFIG_SIZE);
  private readonly statusOffered: boolean;

  constructor(config: NetConfig, linkUp = true) {
    const mac = config.mac;
    if (mac !== undefined) for (let i = 0; i < 6; i++) this.bytes[i] = mac[i]! & 0xff;
    this.statusOffered = config.status === true;
    this.bytes[8] = 1; // one queue pair (meaningful only with MQ, never offered)
    const mtu = config.mtu ?? 0;
    this.bytes[10] = mtu & 0xff;
    this.bytes[11] = (mtu >>> 8) & 0xff;
    this.setLinkUp(linkUp);
  }

  /** NET-CFG-STATUS: the link state the driver reads (when STATUS is offered). */
  setLinkUp(up: boolean): void {
    this.bytes[6] = this.statusOffered && up ? VIRTIO_NET_S_LINK_UP : 0;
    this.bytes[7] = 0;
  }

  /** NET-CFG-LAYOUT, NET-CFG-PAST-END: fills `data` from `offset`; out-of-range reads are zeros. */
  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      data[i] = at >= 0 && at < CONFIG_SIZE ? this.bytes[at]! : 0;
    }
  }

  /** NET-CFG-WRITE: read-only for a modern device. */
  write(_offset: number, _data: Uint8Array): void {}
}
