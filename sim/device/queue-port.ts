/**
 * The device side of one split queue as the simulator drives it: impl/queue's SplitQueue,
 * with the reference model (spec/queue.ts) run beside it when the oracle is on
 * (queue-shadow.ts: SIM-QUEUE-REFINES). Scenarios speak this small interface, so a change
 * in the queue's API touches only this file.
 */
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import { PopStatus, SplitQueue } from "../../impl/queue/split-queue.ts";
import type { SimContext } from "../engine.ts";
import type { RingLayout } from "../guest/virtio-ring.ts";
import { shadowWithSpec, type ShadowProbe } from "./queue-shadow.ts";

export type PopOutcome =
  | { readonly kind: "chain" }
  | { readonly kind: "empty" }
  /** The queue refused: a typed error (InvalidAvailIdx...) or a refused head (InvalidHead). */
  | { readonly kind: "error"; readonly tag: string };

const EMPTY: PopOutcome = { kind: "empty" };
const CHAIN: PopOutcome = { kind: "chain" };

export interface DeviceQueuePort {
  readonly size: number;
  readonly eventIdx: boolean;
  readonly queue: SplitQueue;
  /** Chains available and not yet popped (mod 2^16; more than size means a bad avail.idx). */
  len(): number;
  /** Pops the next chain into the reusable cursor. */
  pop(chain: DescriptorChain): PopOutcome;
  /** used.ring[next_used] = {head, len}; false when refused (nothing written). */
  addUsed(head: number, len: number): boolean;
  /** Writes used.idx = next_used (its own step, after the elements). */
  publishUsed(): void;
  /** Must the device interrupt the driver for what it added since the last call? */
  prepareKick(): boolean;
  /** avail_event = next_avail (EVENT_IDX) or clears NO_NOTIFY; true when nothing new arrived. */
  tryEnableNotification(): boolean | "error";
  /** VRING_USED_F_NO_NOTIFY on (the device is polling) or off. */
  setNoNotify(on: boolean): void;
  readonly nextAvail: number;
  readonly nextUsed: number;
  newChain(): DescriptorChain;
}

export const makeQueuePort = (
  ctx: SimContext,
  mem: GuestMemory,
  ring: RingLayout,
  eventIdx: boolean,
  probe: ShadowProbe = {},
): DeviceQueuePort => {
  const q = new SplitQueue(Math.max(256, ring.size));
  q.configure({
    size: ring.size,
    ready: true,
    descTable: ring.desc,
    availRing: ring.avail,
    usedRing: ring.used,
  });
  if (eventIdx) q.enableNotifSuppression();
  const init = q.initialize(mem);
  if (!init.ok) throw new Error(`simulator set-up: queue refused its rings: ${init.error._tag}`);
  shadowWithSpec(ctx, q, mem, "queue", probe);
  return {
    size: ring.size,
    eventIdx,
    queue: q,
    len: () => q.len(),
    pop(chain) {
      if (q.popInto(chain)) return CHAIN;
      if (q.lastPop === PopStatus.Empty) return EMPTY;
      return {
        kind: "error",
        tag: q.lastPop === PopStatus.InvalidHead ? "InvalidHead" : (q.lastError?._tag ?? "Error"),
      };
    },
    addUsed: (head, len) => q.addUsed(head, len).ok,
    publishUsed: () => void q.publishUsed(),
    // Linux drivers set VRING_AVAIL_F_NO_INTERRUPT; honour it (VQ-NO-INTERRUPT).
    prepareKick: () => q.prepareKick(true),
    tryEnableNotification() {
      const r = q.tryEnableNotification();
      return r.ok ? r.value : "error";
    },
    setNoNotify(on) {
      if (on) q.disableNotification();
      else q.enableNotification();
    },
    get nextAvail() {
      return q.nextAvail;
    },
    get nextUsed() {
      return q.nextUsed;
    },
    newChain: () => new DescriptorChain(mem),
  };
};
