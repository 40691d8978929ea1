/**
 * Feature negotiation for virtio-net (NET-FEAT-*): what a configuration offers and whether
 * an acknowledged set is acceptable. Bits are `bigint`s because VERSION_1 is bit 32. The bit
 * numbers and the §5.1.3.1 requirements are the wire vocabulary's (wire/features.ts); the
 * checks here are the implementation's own (the model's are spec/net.ts validateAck and
 * offeredFeatures, which properties/net.test.ts compares them with).
 */
import type { FeatureError, NetConfig } from "../../spec/net.ts";
import { err, ok, type Result } from "../../spec/result.ts";
import {
  NET_FEATURE_DEPENDENCIES,
  VIRTIO_NET_F as F,
  featureBit as b,
  hasFeatureBit,
} from "../../wire/features.ts";
import { NET_HDR_LEGACY_SIZE, NET_HDR_SIZE } from "../../wire/net.ts";

export { VIRTIO_NET_F as F, hasFeatureBit as hasFeature } from "../../wire/features.ts";
export type { FeatureError } from "../../spec/net.ts";

/** §5.1.3.1 compiled once into masks: each requirement is two ANDs on the acked set. */
const REQUIREMENTS = NET_FEATURE_DEPENDENCIES.map((d) => ({
  mask: b(d.feature),
  required: d.requires.reduce((m, r) => m | b(r), 0n),
  anyOf: d.anyOf === true,
  error: { _tag: "FeatureDependency", feature: d.feature, requires: d.requires } as const,
}));

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
  for (const r of REQUIREMENTS) {
    if ((acked & r.mask) === 0n) continue;
    const have = acked & r.required;
    if (r.anyOf ? have === 0n : have !== r.required) return err(r.error);
  }
  return ok(acked);
};

/** NET-HDR-LEN: the 12-byte header for a modern device or with MRG_RXBUF, else the legacy 10. */
export const netHeaderLength = (acked: bigint): 10 | 12 =>
  hasFeatureBit(acked, F.VERSION_1) || hasFeatureBit(acked, F.MRG_RXBUF) ? NET_HDR_SIZE : NET_HDR_LEGACY_SIZE;
