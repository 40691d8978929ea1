/**
 * The device side of one queue as the simulator drives it, on either ring: impl/queue's
 * SplitQueue or PackedQueue (device-queue.ts), with the ring's reference model run beside it
 * when the oracle is on (queue-shadow.ts for split, packed-shadow.ts for packed:
 * SIM-QUEUE-REFINES). Scenarios speak this small interface, so a change in the queues' API
 * touches only this file.
 */
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import {
  PACKED_RING,
  SPLIT_RING,
  type DeviceChain,
  type DeviceQueue,
} from "../../impl/queue/device-queue.ts";
import type { PackedQueue } from "../../impl/queue/packed-queue.ts";
import { PopStatus, type SplitQueue } from "../../impl/queue/split-queue.ts";
import type { SplitLayout } from "../../wire/split.ts";
import type { SimContext } from "../engine.ts";
import { packedRefPop, specMemoryOf, splitRefPop, type RefPop } from "../oracle.ts";
import { shadowPackedWithSpec } from "./packed-shadow.ts";
import { shadowWithSpec } from "./queue-shadow.ts";

export type RingName = "split" | "packed";

export type PopOutcome =
  | { readonly kind: "chain" }
  | { readonly kind: "empty" }
  /** The queue refused: a typed error (InvalidAvailIdx, InvalidBufferId...) or a refused head (InvalidHead). */
  | { readonly kind: "error"; readonly tag: string };

const EMPTY: PopOutcome = { kind: "empty" };
const CHAIN: PopOutcome = { kind: "chain" };

export interface DeviceQueuePort {
  readonly ring: RingName;
  readonly size: number;
  readonly eventIdx: boolean;
  readonly queue: DeviceQueue;
  /**
   * Chains available and not yet popped: split, avail.idx - next_avail (mod 2^16; more than
   * size means a bad avail.idx); packed, 1 when the next slot is available, else 0.
   */
  len(): number;
  /** Pops the next chain into the reusable cursor. */
  pop(chain: DeviceChain): PopOutcome;
  /** Completes the chain with this id (split head / packed buffer id); false when refused (nothing written). */
  addUsed(id: number, len: number): boolean;
  /** Makes the used elements visible (split: used.idx; packed: the used flags), its own step. */
  publishUsed(): void;
  /** Must the device interrupt the driver for what it added since the last call? */
  prepareKick(): boolean;
  /** Re-enables notifications; true when nothing new arrived meanwhile. */
  tryEnableNotification(): boolean | "error";
  /** Notifications off (the device is polling) or on, without EVENT_IDX. */
  setNoNotify(on: boolean): void;
  readonly nextAvail: number;
  readonly nextUsed: number;
  newChain(): DeviceChain;
}

/**
 * Runs the ring's reference model beside a device queue (oracle on), telling `onPop` each
 * reference pop as a RefPop; gives back how many chains are available (split: avail.idx -
 * next_avail; packed: 1 or 0) and the interrupt decision the way a Linux guest's device makes
 * it (split: honouring VRING_AVAIL_F_NO_INTERRUPT, VQ-NO-INTERRUPT).
 */
export const shadowDeviceQueue = (
  ctx: SimContext,
  q: DeviceQueue,
  ring: RingName,
  mem: GuestMemory,
  layout: SplitLayout,
  size: number,
  name: string,
  onPop: (pop: RefPop | null) => void,
): { readonly len: () => number; readonly prepareKick: () => boolean } => {
  const spec = specMemoryOf(mem);
  if (ring === "packed") {
    const pq = q as PackedQueue;
    shadowPackedWithSpec(ctx, pq, mem, name, {
      beforePop: (popped, s) => onPop(popped === null ? null : packedRefPop(spec, s, popped)),
    });
    return { len: () => (pq.isEmpty() ? 0 : 1), prepareKick: () => pq.prepareKick() };
  }
  const sq = q as SplitQueue;
  shadowWithSpec(ctx, sq, mem, name, {
    beforePop: (popped) =>
      onPop(popped === null ? null : splitRefPop(spec, layout.descTable, size, popped.head, popped.walk)),
  });
  return { len: () => sq.len(), prepareKick: () => sq.prepareKick(true) };
};

/**
 * The device queue for rings the driver laid out at `layout` (descriptor table or ring,
 * avail ring or Driver Area, used ring or Device Area). `onPop` hears the reference model's
 * pop just before each of the device's (oracle on).
 */
export const makeQueuePort = (
  ctx: SimContext,
  mem: GuestMemory,
  ring: RingName,
  layout: SplitLayout,
  size: number,
  eventIdx: boolean,
  name: string,
  onPop: (pop: RefPop | null) => void = () => {},
): DeviceQueuePort => {
  const kind = ring === "packed" ? PACKED_RING : SPLIT_RING;
  const q: DeviceQueue = kind.newQueue(Math.max(256, size));
  q.configure({ size, ready: true, ...layout });
  if (eventIdx) q.enableNotifSuppression();
  const init = q.initialize(mem);
  if (!init.ok) throw new Error(`simulator set-up: queue refused its rings: ${init.error._tag}`);
  const watched = shadowDeviceQueue(ctx, q, ring, mem, layout, size, name, onPop);
  const prepareKick = watched.prepareKick;
  const len = watched.len;
  return {
    ring,
    size,
    eventIdx,
    queue: q,
    len: () => len(),
    pop(chain) {
      if (q.popInto(chain)) return CHAIN;
      if (q.lastPop === PopStatus.Empty) return EMPTY;
      return {
        kind: "error",
        tag: q.lastPop === PopStatus.InvalidHead ? "InvalidHead" : (q.lastError?._tag ?? "Error"),
      };
    },
    addUsed: (id, n) => q.addUsed(id, n).ok,
    publishUsed: () => void q.publishUsed(),
    prepareKick: () => prepareKick(),
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
    newChain: () => kind.newChain(mem),
  };
};
