/**
 * What packet assembly needs from a descriptor chain: impl/iovec's `ChainCursor` (rewind /
 * advance over the data descriptors, current addr/len) plus the chain's memory and the
 * current descriptor's flags. impl/queue's `DescriptorChain` satisfies it structurally;
 * `ListChain` is a cursor over a plain list of descriptors, for tools and tests that have a
 * chain without a ring.
 */
import type { GuestMemory } from "../memory/guest-memory.ts";
import type { ChainCursor } from "../iovec/iovec.ts";
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";

export interface PacketChain extends ChainCursor {
  readonly memory: GuestMemory;
  /** The current descriptor's flags (VIRTQ_DESC_F_*). */
  readonly flags: number;
}

export interface ListDesc {
  readonly addr: number;
  readonly len: number;
  readonly flags: number;
}

/** A cursor over a list of descriptors (the list is what a walk of the chain produced). */
export class ListChain implements PacketChain {
  /** A list has no ring: its head is entry 0. */
  readonly headIndex = 0;
  addr = 0;
  len = 0;
  flags = 0;
  private at = -1;

  constructor(
    readonly memory: GuestMemory,
    private readonly descs: readonly ListDesc[],
  ) {}

  private load(i: number): boolean {
    const d = this.descs[i];
    if (d === undefined) return false;
    this.at = i;
    this.addr = d.addr;
    this.len = d.len;
    this.flags = d.flags;
    return true;
  }

  addrBig(): bigint {
    return BigInt(this.addr);
  }
  isWriteOnly(): boolean {
    return (this.flags & VIRTQ_DESC_F_WRITE) !== 0;
  }
  hasNext(): boolean {
    return (this.flags & VIRTQ_DESC_F_NEXT) !== 0;
  }
  rewind(): boolean {
    return this.load(0);
  }
  advance(): boolean {
    // As a ring walk: a descriptor without NEXT ends the chain whatever follows in the list.
    return this.at >= 0 && this.hasNext() && this.load(this.at + 1);
  }
}
