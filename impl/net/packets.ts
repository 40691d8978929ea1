/**
 * Ethernet, ARP, IPv4 and ICMP frames: built by the guest side of tests, the simulator and
 * the benchmark, and parsed to check what the kernel (or an interceptor) answered.
 * Big-endian (network order) throughout, unlike the virtio structures.
 */

export const ETH_HLEN = 14;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const BROADCAST_MAC: readonly number[] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
export const IPPROTO_ICMP = 1;
export const IPPROTO_UDP = 17;
export const ICMP_DEST_UNREACHABLE = 3;
export const ICMP_ECHO_REPLY = 0;
export const ICMP_ECHO_REQUEST = 8;

export type Mac = readonly number[];
export type Ipv4 = readonly number[];

export const parseIpv4 = (s: string): Ipv4 => s.split(".").map((p) => Number(p) & 0xff);
export const formatMac = (m: ArrayLike<number>): string =>
  Array.from({ length: 6 }, (_, i) => (m[i] ?? 0).toString(16).padStart(2, "0")).join(":");

const u16be = (b: Uint8Array, at: number): number => (b[at]! << 8) | b[at + 1]!;
const put16be = (b: Uint8Array, at: number, v: number): void => {
  b[at] = (v >>> 8) & 0xff;
  b[at + 1] = v & 0xff;
};

/** RFC 1071 Internet checksum of b[from, to): 0 when a checksummed block verifies. */
export const internetChecksum = (b: Uint8Array, from: number, to: number): number => {
  let sum = 0;
  let i = from;
  for (; i + 1 < to; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (i < to) sum += b[i]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
};

const ethernet = (dst: Mac, src: Mac, type: number, payloadLen: number): Uint8Array => {
  const f = new Uint8Array(ETH_HLEN + payloadLen);
  f.set(dst.slice(0, 6), 0);
  f.set(src.slice(0, 6), 6);
  put16be(f, 12, type);
  return f;
};

export const arpRequest = (srcMac: Mac, srcIp: Ipv4, targetIp: Ipv4): Uint8Array =>
  arpFrame(ARP_REQUEST, BROADCAST_MAC, srcMac, srcIp, [0, 0, 0, 0, 0, 0], targetIp);

export const arpFrame = (
  op: number,
  ethDst: Mac,
  senderMac: Mac,
  senderIp: Ipv4,
  targetMac: Mac,
  targetIp: Ipv4,
): Uint8Array => {
  const f = ethernet(ethDst, senderMac, ETHERTYPE_ARP, 28);
  const a = ETH_HLEN;
  put16be(f, a, 1); // Ethernet
  put16be(f, a + 2, ETHERTYPE_IPV4);
  f[a + 4] = 6;
  f[a + 5] = 4;
  put16be(f, a + 6, op);
  f.set(senderMac.slice(0, 6), a + 8);
  f.set(senderIp.slice(0, 4), a + 14);
  f.set(targetMac.slice(0, 6), a + 18);
  f.set(targetIp.slice(0, 4), a + 24);
  return f;
};

export interface ArpPacket {
  readonly op: number;
  readonly senderMac: readonly number[];
  readonly senderIp: readonly number[];
  readonly targetMac: readonly number[];
  readonly targetIp: readonly number[];
}

export const parseArp = (f: Uint8Array): ArpPacket | undefined => {
  if (f.length < ETH_HLEN + 28 || u16be(f, 12) !== ETHERTYPE_ARP) return undefined;
  const a = ETH_HLEN;
  return {
    op: u16be(f, a + 6),
    senderMac: Array.from(f.subarray(a + 8, a + 14)),
    senderIp: Array.from(f.subarray(a + 14, a + 18)),
    targetMac: Array.from(f.subarray(a + 18, a + 24)),
    targetIp: Array.from(f.subarray(a + 24, a + 28)),
  };
};

/** An IPv4 ICMP echo frame with valid IP and ICMP checksums. */
export const icmpEcho = (
  type: number,
  dstMac: Mac,
  srcMac: Mac,
  srcIp: Ipv4,
  dstIp: Ipv4,
  id: number,
  seq: number,
  payload: Uint8Array,
): Uint8Array => {
  const ipLen = 20 + 8 + payload.length;
  const f = ethernet(dstMac, srcMac, ETHERTYPE_IPV4, ipLen);
  const ip = ETH_HLEN;
  f[ip] = 0x45;
  put16be(f, ip + 2, ipLen);
  put16be(f, ip + 4, id & 0xffff);
  put16be(f, ip + 6, 0x4000); // DF
  f[ip + 8] = 64;
  f[ip + 9] = IPPROTO_ICMP;
  f.set(srcIp.slice(0, 4), ip + 12);
  f.set(dstIp.slice(0, 4), ip + 16);
  put16be(f, ip + 10, internetChecksum(f, ip, ip + 20));
  const icmp = ip + 20;
  f[icmp] = type;
  put16be(f, icmp + 4, id);
  put16be(f, icmp + 6, seq);
  f.set(payload, icmp + 8);
  put16be(f, icmp + 2, internetChecksum(f, icmp, f.length));
  return f;
};

export interface IcmpPacket {
  readonly srcMac: readonly number[];
  readonly dstMac: readonly number[];
  readonly srcIp: readonly number[];
  readonly dstIp: readonly number[];
  readonly type: number;
  readonly id: number;
  readonly seq: number;
  readonly payload: Uint8Array;
  /** Both checksums verify. */
  readonly ipChecksumOk: boolean;
  readonly icmpChecksumOk: boolean;
}

export const parseIcmp = (f: Uint8Array): IcmpPacket | undefined => {
  if (f.length < ETH_HLEN + 28 || u16be(f, 12) !== ETHERTYPE_IPV4) return undefined;
  const ip = ETH_HLEN;
  const ihl = (f[ip]! & 0x0f) * 4;
  if (f[ip]! >> 4 !== 4 || ihl < 20 || f[ip + 9] !== IPPROTO_ICMP) return undefined;
  const total = u16be(f, ip + 2);
  const end = ip + total;
  if (end > f.length || total < ihl + 8) return undefined;
  const icmp = ip + ihl;
  return {
    dstMac: Array.from(f.subarray(0, 6)),
    srcMac: Array.from(f.subarray(6, 12)),
    srcIp: Array.from(f.subarray(ip + 12, ip + 16)),
    dstIp: Array.from(f.subarray(ip + 16, ip + 20)),
    type: f[icmp]!,
    id: u16be(f, icmp + 4),
    seq: u16be(f, icmp + 6),
    payload: f.slice(icmp + 8, end),
    ipChecksumOk: internetChecksum(f, ip, ip + ihl) === 0,
    icmpChecksumOk: internetChecksum(f, icmp, end) === 0,
  };
};

/**
 * An IPv4 UDP frame whose UDP checksum is left partial, as a guest with checksum offload
 * sends it (VIRTIO_NET_HDR_F_NEEDS_CSUM): the field holds the folded pseudo-header sum, and
 * whoever completes it sums from `csumStart` and stores the result at `csumStart + csumOffset`.
 */
export const udpPartialChecksum = (
  dstMac: Mac,
  srcMac: Mac,
  srcIp: Ipv4,
  dstIp: Ipv4,
  srcPort: number,
  dstPort: number,
  payload: Uint8Array,
): { frame: Uint8Array; csumStart: number; csumOffset: number } => {
  const udpLen = 8 + payload.length;
  const f = ethernet(dstMac, srcMac, ETHERTYPE_IPV4, 20 + udpLen);
  const ip = ETH_HLEN;
  f[ip] = 0x45;
  put16be(f, ip + 2, 20 + udpLen);
  put16be(f, ip + 6, 0x4000);
  f[ip + 8] = 64;
  f[ip + 9] = IPPROTO_UDP;
  f.set(srcIp.slice(0, 4), ip + 12);
  f.set(dstIp.slice(0, 4), ip + 16);
  put16be(f, ip + 10, internetChecksum(f, ip, ip + 20));
  const udp = ip + 20;
  put16be(f, udp, srcPort);
  put16be(f, udp + 2, dstPort);
  put16be(f, udp + 4, udpLen);
  f.set(payload, udp + 8);
  // Pseudo-header: source, destination, zero, protocol, UDP length; folded, not inverted.
  let sum = 0;
  for (let i = 0; i < 8; i += 2) sum += (f[ip + 12 + i]! << 8) | f[ip + 13 + i]!;
  sum += IPPROTO_UDP + udpLen;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  put16be(f, udp + 6, sum);
  return { frame: f, csumStart: udp, csumOffset: 6 };
};
