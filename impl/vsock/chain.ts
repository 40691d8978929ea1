/**
 * What packet assembly needs from a descriptor chain: the cursor of impl/queue's
 * `DescriptorChain` (rewind / advance over the data descriptors, current addr/len/flags).
 * `DescriptorChain` satisfies it structurally; `ListChain` is a cursor over a plain list of
 * descriptors, for tools and tests that have a chain without a ring.
 */
import type { GuestMemory } from "../memory/guest-memory.ts";

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;

export interface ChainCursor {
  readonly memory: GuestMemory;
  readonly addr: number;
  readonly len: number;
  readonly flags: number;
  isWriteOnly(): boolean;
  hasNext(): boolean;
  /** To the first data descriptor; false if there is none. */
  rewind(): boolean;
  /** To the next data descriptor; false when the chain has ended. */
  advance(): boolean;
}

export interface ListDesc {
  readonly addr: number;
  readonly len: number;
  readonly flags: number;
}

/** A cursor over a list of descriptors (the list is what a walk of the chain produced). */
export class ListChain implements ChainCursor {
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
