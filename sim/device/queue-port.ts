/**
 * The device side of one split queue as the simulator drives it: a thin port over
 * impl/queue's SplitQueue so scenarios, the oracle and the hostile guest speak one small
 * interface (and a change in the queue's API touches only this file).
 */
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import type { RingLayout } from "../guest/virtio-ring.ts";

export type PopOutcome =
  | { readonly kind: "chain" }
  | { readonly kind: "empty" }
  /** The queue refused: a typed error (InvalidAvailIdx...) or a refused head. */
  | { readonly kind: "error"; readonly tag: string };

export interface DeviceQueuePort {
  readonly size: number;
  readonly eventIdx: boolean;
  /** Chains available and not yet popped, or -1 when avail.idx is more than size ahead. */
  len(): number;
  /** Pops the next chain into the reusable cursor. */
  pop(chain: DescriptorChain): PopOutcome;
  /** used.ring[next_used] = {head, len}; false when refused (nothing written). */
  addUsed(head: number, len: number): boolean;
  /** Writes used.idx = next_used (its own step, after the elements). */
  publishUsed(): void;
  /** Must the device interrupt the driver for what it published since the last call? */
  prepareKick(): boolean;
  /** EVENT_IDX: avail_event = next_avail; true when nothing new arrived meanwhile. */
  tryEnableNotification(): boolean;
  /** VRING_USED_F_NO_NOTIFY (without EVENT_IDX): the device is polling, no kicks needed. */
  setNoNotify(on: boolean): void;
  readonly nextAvail: number;
  readonly nextUsed: number;
  newChain(): DescriptorChain;
}

/**
 * A port reading the rings directly with the same rules as the queue's reference model
 * (pop per VQ-POP-*, add_used per VQ-ADD-USED, vring_need_event per VQ-PREPARE-KICK); the
 * chains themselves are impl/queue DescriptorChains.
 */
export const makeQueuePort = (mem: GuestMemory, ring: RingLayout, eventIdx: boolean): DeviceQueuePort => {
  const size = ring.size;
  let nextAvail = 0;
  let nextUsed = 0;
  let numAdded = 0;
  const availIdx = (): number => mem.readU16(ring.avail + 2);
  const port: DeviceQueuePort = {
    size,
    eventIdx,
    len() {
      const idx = availIdx();
      if (idx < 0) return -1;
      const n = (idx - nextAvail) & 0xffff;
      return n > size ? -1 : n;
    },
    pop(chain) {
      const n = port.len();
      if (n < 0) return { kind: "error", tag: "InvalidAvailIdx" };
      if (n === 0) return { kind: "empty" };
      const head = mem.readU16(ring.avail + 4 + 2 * (nextAvail % size));
      if (head < 0 || !chain.setHead(mem, ring.desc, size, head))
        return { kind: "error", tag: "InvalidHead" };
      nextAvail = (nextAvail + 1) & 0xffff;
      return { kind: "chain" };
    },
    addUsed(head, len) {
      if (head >= size) return false;
      const e = ring.used + 4 + 8 * (nextUsed % size);
      if (!mem.writeU32(e, head) || !mem.writeU32(e + 4, len)) return false;
      nextUsed = (nextUsed + 1) & 0xffff;
      numAdded++;
      return true;
    },
    publishUsed() {
      mem.writeU16(ring.used + 2, nextUsed);
    },
    prepareKick() {
      const old = (nextUsed - numAdded) & 0xffff;
      numAdded = 0;
      if (!eventIdx) return (mem.readU16(ring.avail) & 1) === 0;
      const ev = mem.readU16(ring.avail + 4 + 2 * size);
      return ((nextUsed - ev - 1) & 0xffff) < ((nextUsed - old) & 0xffff);
    },
    tryEnableNotification() {
      if (!eventIdx) return true;
      const n = port.len();
      if (n !== 0) return false;
      mem.writeU16(ring.used + 4 + 8 * size, nextAvail);
      return availIdx() === nextAvail;
    },
    setNoNotify(on) {
      mem.writeU16(ring.used, on ? 1 : 0);
    },
    get nextAvail() {
      return nextAvail;
    },
    get nextUsed() {
      return nextUsed;
    },
    newChain() {
      return new DescriptorChain(mem);
    },
  };
  return port;
};
