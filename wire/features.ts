/**
 * Feature bit numbers (VIRTIO 1.2 §6 reserved bits, §5.1.3 virtio-net, §5.10.3 virtio-vsock;
 * Linux `virtio_config.h`, `virtio_ring.h`, `virtio_net.h`, `virtio_vsock.h`). Numbers, not
 * masks: a feature set is a `bigint` because VERSION_1 is bit 32; `featureBit(n)` is its mask.
 */

/** Device-independent bits (§6). */
export const VIRTIO_F = {
  RING_INDIRECT_DESC: 28,
  RING_EVENT_IDX: 29,
  VERSION_1: 32,
  ACCESS_PLATFORM: 33,
  RING_PACKED: 34,
  IN_ORDER: 35,
  ORDER_PLATFORM: 36,
  SR_IOV: 37,
  NOTIFICATION_DATA: 38,
  RING_RESET: 40,
} as const;

/** virtio-net bits (§5.1.3), with the device-independent ones a net device offers. */
export const VIRTIO_NET_F = {
  CSUM: 0,
  GUEST_CSUM: 1,
  CTRL_GUEST_OFFLOADS: 2,
  MTU: 3,
  MAC: 5,
  GUEST_TSO4: 7,
  GUEST_TSO6: 8,
  GUEST_ECN: 9,
  GUEST_UFO: 10,
  HOST_TSO4: 11,
  HOST_TSO6: 12,
  HOST_ECN: 13,
  HOST_UFO: 14,
  MRG_RXBUF: 15,
  STATUS: 16,
  CTRL_VQ: 17,
  CTRL_RX: 18,
  CTRL_VLAN: 19,
  GUEST_ANNOUNCE: 21,
  MQ: 22,
  CTRL_MAC_ADDR: 23,
  RING_EVENT_IDX: VIRTIO_F.RING_EVENT_IDX,
  VERSION_1: VIRTIO_F.VERSION_1,
  HOST_USO: 56,
  HASH_REPORT: 57,
  GUEST_HDRLEN: 59,
  RSS: 60,
} as const;

/**
 * virtio-net feature bit requirements (§5.1.3.1): a driver acking `feature` must ack every
 * feature in `requires`, or at least one of them when `anyOf` (GUEST_ECN needs GUEST_TSO4 or
 * GUEST_TSO6; HOST_ECN likewise). In the order spec/net.ts reports the first broken one.
 */
export const NET_FEATURE_DEPENDENCIES: readonly {
  readonly feature: number;
  readonly requires: readonly number[];
  readonly anyOf?: boolean;
}[] = [
  { feature: VIRTIO_NET_F.GUEST_TSO4, requires: [VIRTIO_NET_F.GUEST_CSUM] },
  { feature: VIRTIO_NET_F.GUEST_TSO6, requires: [VIRTIO_NET_F.GUEST_CSUM] },
  {
    feature: VIRTIO_NET_F.GUEST_ECN,
    requires: [VIRTIO_NET_F.GUEST_TSO4, VIRTIO_NET_F.GUEST_TSO6],
    anyOf: true,
  },
  { feature: VIRTIO_NET_F.GUEST_UFO, requires: [VIRTIO_NET_F.GUEST_CSUM] },
  { feature: VIRTIO_NET_F.HOST_TSO4, requires: [VIRTIO_NET_F.CSUM] },
  { feature: VIRTIO_NET_F.HOST_TSO6, requires: [VIRTIO_NET_F.CSUM] },
  { feature: VIRTIO_NET_F.HOST_ECN, requires: [VIRTIO_NET_F.HOST_TSO4, VIRTIO_NET_F.HOST_TSO6], anyOf: true },
  { feature: VIRTIO_NET_F.HOST_UFO, requires: [VIRTIO_NET_F.CSUM] },
  { feature: VIRTIO_NET_F.HOST_USO, requires: [VIRTIO_NET_F.CSUM] },
  { feature: VIRTIO_NET_F.CTRL_RX, requires: [VIRTIO_NET_F.CTRL_VQ] },
  { feature: VIRTIO_NET_F.CTRL_VLAN, requires: [VIRTIO_NET_F.CTRL_VQ] },
  { feature: VIRTIO_NET_F.GUEST_ANNOUNCE, requires: [VIRTIO_NET_F.CTRL_VQ] },
  { feature: VIRTIO_NET_F.MQ, requires: [VIRTIO_NET_F.CTRL_VQ] },
  { feature: VIRTIO_NET_F.CTRL_MAC_ADDR, requires: [VIRTIO_NET_F.CTRL_VQ] },
  { feature: VIRTIO_NET_F.CTRL_GUEST_OFFLOADS, requires: [VIRTIO_NET_F.CTRL_VQ] },
  { feature: VIRTIO_NET_F.RSS, requires: [VIRTIO_NET_F.CTRL_VQ] },
  { feature: VIRTIO_NET_F.HASH_REPORT, requires: [VIRTIO_NET_F.CTRL_VQ] },
];

/** virtio-vsock bits (§5.10.3). */
export const VIRTIO_VSOCK_F = {
  STREAM: 0,
  SEQPACKET: 1,
} as const;

/** The mask of feature bit `n`. */
export const featureBit = (n: number): bigint => 1n << BigInt(n);

/** Whether bit `n` is set in `features`. */
export const hasFeatureBit = (features: bigint, n: number): boolean => (features & featureBit(n)) !== 0n;
