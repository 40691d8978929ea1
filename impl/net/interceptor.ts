/**
 * Frame interceptors (squib `FrameInterceptor`; Firecracker's MMDS): a TX frame an
 * interceptor takes never reaches the backend (NET-TX-INTERCEPT), and the frames it wants
 * the guest to see are delivered on RX before the backend's (NET-RX-ORDER).
 *
 * The device first shows `claims` the frame's Ethernet header (no copy), and only a
 * claimed frame is copied out and given to `take`.
 */
import { Context } from "effect";
import {
  ARP_REPLY,
  ARP_REQUEST,
  BROADCAST_MAC,
  ETH_HLEN,
  ETHERTYPE_ARP,
  arpFrame,
  parseArp,
  type Ipv4,
  type Mac,
} from "./packets.ts";

/** How many leading frame bytes `claims` sees: an Ethernet header plus an ARP body. */
export const CLAIM_HEAD_BYTES = 64;

export interface FrameInterceptorShape {
  /** Looks at the first bytes of a TX frame: up to CLAIM_HEAD_BYTES (Ethernet + ARP fit). */
  claims(head: Uint8Array, frameLength: number): boolean;
  /** A claimed frame, whole (a copy the interceptor may keep). */
  take(frame: Uint8Array): void;
  /** The next frame to inject on RX, or undefined. */
  nextRx(): Uint8Array | undefined;
  /** Frames waiting to be injected, when known. */
  readonly pendingRx?: number;
}

export class FrameInterceptor extends Context.Service<FrameInterceptor, FrameInterceptorShape>()(
  "virtio-lab/FrameInterceptor",
) {}

/** Takes nothing, injects nothing. */
export const noInterceptor: FrameInterceptorShape = {
  claims: () => false,
  take: () => {},
  nextRx: () => undefined,
};

export interface MacInterceptorOptions {
  /** The endpoint's MAC: frames to it are taken (NET-INTERCEPT-MAC). */
  readonly mac: Mac;
  /** The endpoint's IPv4 address: broadcast ARP requests for it are taken and answered. */
  readonly ip?: Ipv4;
  /** Replies to a taken frame (besides ARP, which is answered here). */
  readonly respond?: (frame: Uint8Array) => readonly Uint8Array[];
  /** Replies kept for the guest; beyond this they are dropped and counted. */
  readonly queueLimit?: number;
}

const sameBytes = (a: Uint8Array, at: number, b: Mac): boolean => {
  for (let i = 0; i < 6; i++) if (a[at + i] !== b[i]) return false;
  return true;
};

/** An MMDS-style endpoint: consumes frames for its MAC (and ARP for its IP), answers on RX. */
export class MacInterceptor implements FrameInterceptorShape {
  readonly taken: Uint8Array[] = [];
  dropped = 0;
  private readonly replies: Uint8Array[] = [];

  constructor(readonly options: MacInterceptorOptions) {}

  claims(head: Uint8Array, frameLength: number): boolean {
    if (frameLength < ETH_HLEN || head.length < ETH_HLEN) return false;
    if (sameBytes(head, 0, this.options.mac)) return true;
    const ip = this.options.ip;
    if (ip === undefined || !sameBytes(head, 0, BROADCAST_MAC)) return false;
    if (((head[12]! << 8) | head[13]!) !== ETHERTYPE_ARP) return false;
    // Only ARP requests for our address: the rest (e.g. for a gateway) go to the backend.
    return this.arpForUs(head);
  }

  /** Whether a whole broadcast ARP frame asks for this endpoint's address. */
  private arpForUs(frame: Uint8Array): boolean {
    const arp = parseArp(frame);
    const ip = this.options.ip;
    return (
      arp !== undefined &&
      ip !== undefined &&
      arp.op === ARP_REQUEST &&
      arp.targetIp.every((b, i) => b === ip[i])
    );
  }

  take(frame: Uint8Array): void {
    this.taken.push(frame);
    if (this.arpForUs(frame)) {
      const arp = parseArp(frame)!;
      this.queue(
        arpFrame(ARP_REPLY, arp.senderMac, this.options.mac, this.options.ip!, arp.senderMac, arp.senderIp),
      );
      return;
    }
    for (const r of this.options.respond?.(frame) ?? []) this.queue(r);
  }

  private queue(frame: Uint8Array): void {
    if (this.replies.length >= (this.options.queueLimit ?? 64)) this.dropped++;
    else this.replies.push(frame);
  }

  /** Lets a test or the simulator inject a frame as if the endpoint sent it. */
  inject(frame: Uint8Array): void {
    this.queue(frame);
  }

  nextRx(): Uint8Array | undefined {
    return this.replies.shift();
  }

  get pendingRx(): number {
    return this.replies.length;
  }
}
