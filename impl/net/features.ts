/**
 * Feature negotiation for virtio-net (NET-FEAT-*): what a configuration offers and whether
 * an acknowledged set is acceptable. Bits are `bigint`s because VERSION_1 is bit 32.
 */
import { F, type FeatureError, type NetConfig } from "../../spec/net.ts";
import { err, ok, type Result } from "../../spec/result.ts";

export { F } from "../../spec/net.ts";
export type { FeatureError } from "../../spec/net.ts";

const b = (n: number): bigint => 1n << BigInt(n);

/** §5.1.3.1 as masks: [feature, required mask, any-of?]. */
const DEPENDENCIES: readonly (readonly [bigint, bigint, boolean, number, readonly number[]])[] = [
  [b(F.GUEST_TSO4), b(F.GUEST_CSUM), false, F.GUEST_TSO4, [F.GUEST_CSUM]],
  [b(F.GUEST_TSO6), b(F.GUEST_CSUM), false, F.GUEST_TSO6, [F.GUEST_CSUM]],
  [b(F.GUEST_ECN), b(F.GUEST_TSO4) | b(F.GUEST_TSO6), true, F.GUEST_ECN, [F.GUEST_TSO4, F.GUEST_TSO6]],
  [b(F.GUEST_UFO), b(F.GUEST_CSUM), false, F.GUEST_UFO, [F.GUEST_CSUM]],
  [b(F.HOST_TSO4), b(F.CSUM), false, F.HOST_TSO4, [F.CSUM]],
  [b(F.HOST_TSO6), b(F.CSUM), false, F.HOST_TSO6, [F.CSUM]],
  [b(F.HOST_ECN), b(F.HOST_TSO4) | b(F.HOST_TSO6), true, F.HOST_ECN, [F.HOST_TSO4, F.HOST_TSO6]],
  [b(F.HOST_UFO), b(F.CSUM), false, F.HOST_UFO, [F.CSUM]],
  [b(F.HOST_USO), b(F.CSUM), false, F.HOST_USO, [F.CSUM]],
  [b(F.CTRL_RX), b(F.CTRL_VQ), false, F.CTRL_RX, [F.CTRL_VQ]],
  [b(F.CTRL_VLAN), b(F.CTRL_VQ), false, F.CTRL_VLAN, [F.CTRL_VQ]],
  [b(F.GUEST_ANNOUNCE), b(F.CTRL_VQ), false, F.GUEST_ANNOUNCE, [F.CTRL_VQ]],
  [b(F.MQ), b(F.CTRL_VQ), false, F.MQ, [F.CTRL_VQ]],
  [b(F.CTRL_MAC_ADDR), b(F.CTRL_VQ), false, F.CTRL_MAC_ADDR, [F.CTRL_VQ]],
  [b(F.CTRL_GUEST_OFFLOADS), b(F.CTRL_VQ), false, F.CTRL_GUEST_OFFLOADS, [F.CTRL_VQ]],
  [b(F.RSS), b(F.CTRL_VQ), false, F.RSS, [F.CTRL_VQ]],
  [b(F.HASH_REPORT), b(F.CTRL_VQ), false, F.HASH_REPORT, [F.CTRL_VQ]],
];

/** NET-FEAT-OFFER. */
export const offeredFeatures = (c: NetConfig): bigint =>
  b(F.VERSION_1) |
  (c.mac !== undefined ? b(F.MAC) : 0n) |
  (c.mtu !== undefined ? b(F.MTU) : 0n) |
  (c.status === true ? b(F.STATUS) : 0n) |
  (c.csum === true ? b(F.CSUM) | b(F.GUEST_CSUM) : 0n) |
  (c.mrgRxbuf === true ? b(F.MRG_RXBUF) : 0n) |
  (c.eventIdx === true ? b(F.RING_EVENT_IDX) : 0n);

/** NET-FEAT-ACK-SUBSET, then NET-FEAT-DEPS in table order. */
export const checkAck = (offered: bigint, acked: bigint): Result<bigint, FeatureError> => {
  const extra = acked & ~offered;
  if (extra !== 0n) return err({ _tag: "FeatureNotOffered", bits: extra });
  for (const [feature, required, anyOf, id, requires] of DEPENDENCIES) {
    if ((acked & feature) === 0n) continue;
    const have = acked & required;
    if (anyOf ? have === 0n : have !== required)
      return err({ _tag: "FeatureDependency", feature: id, requires });
  }
  return ok(acked);
};

export const hasFeature = (features: bigint, n: number): boolean => (features & b(n)) !== 0n;

/** NET-HDR-LEN. */
export const netHeaderLength = (acked: bigint): 10 | 12 =>
  hasFeature(acked, F.VERSION_1) || hasFeature(acked, F.MRG_RXBUF) ? 12 : 10;
