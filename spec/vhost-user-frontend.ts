/**
 * What `sim conform --vhost-user` checks of any vhost-user back-end, through its rings only
 * (conformance/vhost-user/): rule ids VUF-*, each with its level (MUST / SAFETY / PROFILE)
 * and the VIRTIO 1.2 section (or vhost-user.rst section) it comes from.
 */
import { rule, type Rule } from "./result.ts";

const V = "VIRTIO 1.2";
const VU = "QEMU docs/interop/vhost-user.rst";

export type FrontendLevel = "must" | "safety" | "profile";

export const RULES: readonly Rule[] = [
  rule(
    "VUF-WRITE-BOUNDS",
    `${V} §2.7.4 (device-writable buffers), §2.7.8`,
    "Between kicks and completions the device writes guest memory only inside the device-writable buffers of the chains it was given and inside the used ring (SAFETY).",
  ),
  rule(
    "VUF-USED-LEN",
    `${V} §2.7.8.2 Device Requirements: The Virtqueue Used Ring`,
    "A used element's len is at most the total length of the chain's device-writable buffers.",
  ),
  rule(
    "VUF-USED-ONCE",
    `${V} §2.7.8 The Virtqueue Used Ring`,
    "Each used element names the head of a chain made available and not yet used; a head is completed once.",
  ),
  rule(
    "VUF-USED-IDX",
    `${V} §2.7.8 The Virtqueue Used Ring`,
    "used.idx advances by exactly the elements the device adds: never by more than the chains outstanding.",
  ),
  rule(
    "VUF-CALL-EVENT-IDX",
    `${V} §2.7.10.1 Device Requirements: Used Buffer Notification Suppression`,
    "With VIRTIO_F_EVENT_IDX, when used.idx passes used_event the device MUST send a used-buffer notification (a call eventfd write).",
  ),
  rule(
    "VUF-CALL-EVENT-IDX-QUIET",
    `${V} §2.7.10.1 (SHOULD NOT)`,
    "With VIRTIO_F_EVENT_IDX, when used.idx did not pass used_event the device SHOULD NOT notify (advisory); a call that arrives after the round's check window is judged against the settings it came under, not dropped. Rings that also complete without our kicks (vsock RX with a host side) are not judged.",
  ),
  rule(
    "VUF-CALL-NOTIFY",
    `${V} §2.7.10.1 Device Requirements: Used Buffer Notification Suppression`,
    "Without VIRTIO_F_EVENT_IDX and with avail.flags 0, the device MUST notify after adding used elements.",
  ),
  rule(
    "VUF-CALL-NO-INTERRUPT",
    `${V} §2.7.10.1 (SHOULD NOT)`,
    "Without VIRTIO_F_EVENT_IDX and with VIRTQ_AVAIL_F_NO_INTERRUPT set, the device SHOULD NOT notify (advisory; Firecracker-derived devices, ours included, always notify); late calls are judged as for VUF-CALL-EVENT-IDX-QUIET.",
  ),
  rule(
    "VUF-PROGRESS",
    `${V} §2.7.13 (the device uses what it is given)`,
    "A chain the device must consume (a TX frame, a request) is completed within the timeout (advisory: a slow device is not a broken one).",
  ),
  rule(
    "VUF-VRING-BASE",
    `${VU} VHOST_USER_GET_VRING_BASE`,
    "GET_VRING_BASE answers the ring's next available index: at least used.idx, at most avail.idx, and avail.idx when every chain was completed.",
  ),
  rule(
    "VUF-NET-TX-RX",
    `${V} §5.1.6.2 Packet Transmission (with a loopback far side)`,
    "A transmitted frame reaches the back-end's far side intact: with a loopback far side it comes back on the receive queue byte for byte, once.",
  ),
  rule(
    "VUF-NET-RX-HDR",
    `${V} §5.1.6.4 Processing of Incoming Packets`,
    "A received buffer starts with the 12-byte virtio_net_hdr (VERSION_1): gso_type NONE and no NEEDS_CSUM when no GUEST_* offload was negotiated, the frame right after it, used.len = 12 + frame length.",
  ),
  rule(
    "VUF-MSG-FRAMING",
    `${V} §2.7.4 Message Framing ("The device MUST NOT make assumptions about the particular arrangement of descriptors")`,
    "The device makes no assumption about how a message is split over descriptors: a vsock REQUEST whose 44-byte header spans several readable descriptors is handled like one in a single descriptor (answered, here with a RST).",
  ),
  rule(
    "VUF-VSOCK-RST",
    `${V} §5.10.6 Stream Sockets (descriptive text, not a device-normative statement; Linux vhost-vsock and the cloud-hypervisor muxer answer so)`,
    "A REQUEST to a host port with no listener is answered with a RST carrying the swapped addresses and ports.",
  ),
  rule(
    "VUF-VSOCK-HDR",
    `${V} §5.10.6 virtio_vsock_hdr`,
    "A received packet's header is well-formed: src_cid the host (2), dst_cid the guest's CID, type STREAM, a known op, used.len = 44 + len.",
  ),
  rule(
    "VUF-VSOCK-CONNECT",
    `${V} §5.10.6.4 (descriptive: a REQUEST is answered with RESPONSE or RST); cloud-hypervisor vsock/unix/muxer.rs (guest REQUEST to port P goes to <uds>_P)`,
    "With a host side listening on the port (the Unix socket <uds>_P), a guest REQUEST is answered with RESPONSE and the host end sees the connection; a RESPONSE answers only a pending REQUEST (VSOCK-CONN-HANDSHAKE, VSOCK-UNIX-LISTEN).",
  ),
  rule(
    "VUF-VSOCK-CREDIT",
    `${V} §5.10.6.3.1 Device Requirements: Buffer Space Management ("VIRTIO_VSOCK_OP_RW data packets MUST only be transmitted when the peer has sufficient free buffer space for the payload")`,
    "The device's RW payloads on a connection never exceed the guest's credit: buf_alloc - (bytes received - fwd_cnt), as the guest last advertised them (VSOCK-CREDIT-FREE, VSOCK-CREDIT-LIMIT).",
  ),
  rule(
    "VUF-VSOCK-CREDIT-REQUEST",
    `${V} §5.10.6.3 (descriptive: a CREDIT_REQUEST asks for a CREDIT_UPDATE); Linux virtio_transport_common.c answers it`,
    "A guest CREDIT_REQUEST on an open connection is answered: a CREDIT_UPDATE, or any packet on that connection (every header carries buf_alloc and fwd_cnt) (VSOCK-CREDIT-UPDATE).",
  ),
  rule(
    "VUF-VSOCK-ORDER",
    `${V} §5.10.6.6 Stream Sockets (SHUTDOWN hints are permanent; a clean disconnect is SHUTDOWN followed by RST from the peer)`,
    "The device sends no RW on a connection after its RST or its SHUTDOWN with SEND, and answers a guest SHUTDOWN with both flags with RST (VSOCK-CONN-SHUTDOWN, VSOCK-CONN-RST).",
  ),
  rule(
    "VUF-VSOCK-STREAM",
    `${V} §5.10.6 ("Stream sockets provide in-order, guaranteed, connection-oriented delivery")`,
    "Every byte written on a connection arrives once and in order at the other end: guest RW bytes at the host's Unix socket, host bytes in RW packets to the guest (VSOCK-E2E).",
  ),
  rule(
    "VUF-HOSTILE-USED",
    `${V} §2.7.8 (the used ring is written by the device only); §2.7 (guest input is untrusted)`,
    "When the driver writes fields only the device owns (used.idx jumped, used elements overwritten), the back-end still writes only inside the used ring and the buffers it was given, and keeps answering within the timeout (SAFETY; a device that places its elements by the guest's used.idx writes outside the ring).",
  ),
  rule(
    "VUF-NO-HANG",
    `${VU} Communication (a back-end answers its front-end)`,
    "The back-end keeps answering control requests within the timeout whatever the rings hold (SAFETY).",
  ),
  rule(
    "VUF-NO-CRASH",
    `${V} §2.7 (guest input is untrusted)`,
    "The back-end process is not killed by a signal (SIGSEGV, SIGABRT, ...) whatever the guest puts in the rings (SAFETY).",
  ),
];

/** Each rule's level: what its source says (MUST, SHOULD NOT = profile/advisory, memory safety). */
export const LEVEL = {
  "VUF-WRITE-BOUNDS": "safety",
  "VUF-USED-LEN": "must",
  "VUF-USED-ONCE": "must",
  "VUF-USED-IDX": "must",
  "VUF-CALL-EVENT-IDX": "must",
  "VUF-CALL-EVENT-IDX-QUIET": "profile",
  "VUF-CALL-NOTIFY": "must",
  "VUF-CALL-NO-INTERRUPT": "profile",
  "VUF-PROGRESS": "profile",
  "VUF-VRING-BASE": "must",
  "VUF-NET-TX-RX": "must",
  "VUF-NET-RX-HDR": "must",
  "VUF-MSG-FRAMING": "must",
  "VUF-VSOCK-RST": "profile",
  "VUF-VSOCK-HDR": "must",
  "VUF-VSOCK-CONNECT": "profile",
  "VUF-VSOCK-CREDIT": "must",
  "VUF-VSOCK-CREDIT-REQUEST": "profile",
  "VUF-VSOCK-ORDER": "profile",
  "VUF-VSOCK-STREAM": "must",
  "VUF-HOSTILE-USED": "safety",
  "VUF-NO-HANG": "safety",
  "VUF-NO-CRASH": "safety",
} as const satisfies Record<string, FrontendLevel>;

export type FrontendRuleId = keyof typeof LEVEL;
