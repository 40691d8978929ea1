/**
 * The simulator's invariants (SIM-*): what the oracle beside the devices checks at every
 * step of a scenario (sim/). Each is a consequence of the VIRTIO split-ring protocol, of a
 * device rule declared elsewhere in spec/, or of the simulator's own promise (determinism).
 * A run that breaks one stops with the step, the seed and a one-line replay command.
 */
import { rule } from "./result.ts";

export const RULES = [
  rule(
    "SIM-CHAIN-MATCH",
    "VIRTIO 1.2 §2.7.13.1, §2.7.5",
    "Each chain the device pops has exactly the descriptors (address, length, direction) the driver made available under that head, walked the same way by the implementation and by the reference model.",
  ),
  rule(
    "SIM-USED-ID",
    "VIRTIO 1.2 §2.7.8; Linux virtio_ring detach_buf (BAD_RING)",
    "Every used element names a head the driver has in flight; no head is completed twice.",
  ),
  rule(
    "SIM-USED-LEN",
    "VIRTIO 1.2 §2.7.8.2",
    "A used element's length is at most the total length of the chain's device-writable descriptors.",
  ),
  rule(
    "SIM-NO-LOSS",
    "VIRTIO 1.2 §2.7.13, §2.7.14",
    "When a run drains, every buffer the driver made available has been used exactly once and every descriptor is back on the driver's free list.",
  ),
  rule(
    "SIM-KICK-GATE",
    "VIRTIO 1.2 §2.7.10, §2.7.7.2; Linux vring_need_event",
    "The driver notifies exactly when avail_event (EVENT_IDX) or the absence of VRING_USED_F_NO_NOTIFY says so, and the device notifies exactly when used_event or the absence of VRING_AVAIL_F_NO_INTERRUPT says so; the implementation's decision equals the reference model's.",
  ),
  rule(
    "SIM-NO-STALL",
    "VIRTIO 1.2 §2.7.7, §2.7.10 (re-check after enabling notifications)",
    "Suppressing notifications never loses a wake-up: an idle device with notifications enabled has no unseen available buffer, and a driver that re-enabled interrupts has no unseen used buffer.",
  ),
  rule(
    "SIM-QUEUE-REFINES",
    "spec/queue.ts split-queue reference model",
    "The device's queue (pop, addUsed, publish, EVENT_IDX) gives the same results and the same ring indices as the reference model fed the same operations.",
  ),
  rule(
    "SIM-BOUNDS",
    "VIRTIO 1.2 §2.7.4; virtio-lab safety level",
    "The device reads only the rings, the popped chains' descriptor entries and their readable buffers, and writes only the used ring and the chains' writable buffers.",
  ),
  rule(
    "SIM-NO-THROW",
    "virtio-lab safety level",
    "No device operation throws, whatever the guest wrote; every rejection is a typed error value.",
  ),
  rule(
    "SIM-DELIVERY",
    "VIRTIO 1.2 §5.1.6, §5.10.6",
    "Every well-formed frame or byte stream sent through a device arrives once, intact and in order, at the other end.",
  ),
  rule(
    "SIM-HOSTILE-SERVE",
    "virtio-lab safety level",
    "After any corruption of descriptors, rings, indices or headers, the device keeps serving: all well-formed traffic injected afterwards still arrives.",
  ),
  rule(
    "SIM-CREDIT",
    "VIRTIO 1.2 §5.10.6.3",
    "A vsock sender never has more bytes in flight than the receiver's advertised buf_alloc minus what it has forwarded; a stalled sender resumes after a credit update.",
  ),
  rule(
    "SIM-DETERMINISM",
    "virtio-lab simulator",
    "The same scenario, seed and options give the same trace, byte for byte.",
  ),
] as const;

export type SimRuleId = (typeof RULES)[number]["id"];
