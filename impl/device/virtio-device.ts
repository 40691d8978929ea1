/**
 * The contract every device offers to a transport (the simulator, the vhost-user back-end,
 * a conformance adapter): what VIRTIO 1.2 §2/§3 has a driver do with a device, and nothing
 * device-specific. A transport:
 *   1. reads `deviceId`, `offeredFeatures`, calls `ackFeatures(acked)` (typed errors; after
 *      activation any change is `FeaturesLocked`), reads config with `readConfig`;
 *   2. configures each `queues[i]` (`DeviceQueue.configure`, sizes up to `queues[i].maxSize`)
 *      and sets its positions when resuming (`setPositions`); the queues are split or packed
 *      (impl/queue/device-queue.ts), the same for every queue of a device, and a device
 *      whose queues are packed offers VIRTIO_F_RING_PACKED and needs it acknowledged;
 *   3. calls `activate(memory, notify)`: `notify(i)` raises queue i's used-buffer interrupt;
 *   4. on a kick of queue i calls `processQueue(i)` (never throws, whatever the guest wrote);
 *      forks `run` (when the device has one) for work its backend starts (frames arriving);
 *   5. `reset()` when the driver resets or goes away (queues, features, memory dropped).
 */
import type { Effect } from "effect";
import type { Result } from "../../spec/result.ts";
import type { GuestMemory } from "../memory/guest-memory.ts";
import type { DeviceQueue } from "../queue/device-queue.ts";
import type { SplitQueue } from "../queue/split-queue.ts";

/** VIRTIO 1.2 §5: device ids. */
export const VIRTIO_ID_NET = 1;
export const VIRTIO_ID_VSOCK = 19;

/** A refused acknowledgement: each device's own tags (FeaturesLocked once active, and its feature rules). */
export type AckError = { readonly _tag: string };

/** A refused activation (a queue that fails VQ-INIT-*, a backend that cannot be configured). */
export type ActivateError = { readonly _tag: string };

/**
 * `Q` is the queue type a transport sees: `SplitQueue` for split-only code (the default),
 * `DeviceQueue` for a transport that serves either ring.
 */
export interface VirtioDevice<Q extends DeviceQueue = SplitQueue> {
  /** VIRTIO device id (1 net, 19 vsock). */
  readonly deviceId: number;
  /** Short name for logs ("net", "vsock"). */
  readonly name: string;
  readonly offeredFeatures: bigint;
  readonly ackedFeatures: bigint;
  /** The driver's features; typed refusal (e.g. a bit not offered, a missing dependency, FeaturesLocked once active). */
  ackFeatures(acked: bigint): Result<bigint, AckError>;
  /** Bytes of device config space. */
  readonly configSize: number;
  /** Fills `into` from config offset `offset` (bytes past the end read 0); allocates nothing. */
  readConfig(offset: number, into: Uint8Array): void;
  /** A driver write to config space (read-only fields are ignored by the device). */
  writeConfig(offset: number, data: Uint8Array): void;
  /** The queues a transport drives, in VIRTIO order; count = length, max sizes = `maxSize`. */
  readonly queues: readonly Q[];
  /** Goes live on `memory` with the configured queues; `notify(i)` is queue i's interrupt. */
  activate(memory: GuestMemory, notify: (queue: number) => void): Result<void, ActivateError>;
  readonly isActive: boolean;
  /** Back to the state before feature negotiation; a running `run` must be stopped first. */
  reset(): void;
  /** The driver kicked queue `queue`: serve it; returns the chains completed. */
  processQueue(queue: number): number;
  /** Background work while active (backend-driven RX); fork it, interrupt it before `reset`. */
  readonly run: Effect.Effect<never> | null;
}
