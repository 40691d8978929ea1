/**
 * Helpers shared by properties that walk descriptor chains: the implementation's walk in
 * the reference model's shape (so the two compare with `toEqual` or `sameWalk`) and the byte ranges a walk may legitimately read.
 */
import type { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import type { ChainError, SpecDescriptor, SpecWalk } from "../../spec/queue.ts";

/** One walked descriptor of either ring: a packed descriptor has no `next`. */
export type WalkedDescriptor = Omit<SpecDescriptor, "next"> & { readonly next?: number };

/** A walk of either ring (spec/queue.ts `SpecWalk`, spec/packed-queue.ts `SpecPackedWalk`). */
export interface Walked {
  readonly descriptors: readonly WalkedDescriptor[];
  readonly end: { readonly _tag: string } | null;
}

/** What a walk reads of a chain: `DescriptorChain`, and `PackedDescriptorChain` (no `next`). */
export interface WalkCursor {
  rewind(): boolean;
  advance(): boolean;
  addrBig(): bigint;
  readonly index: number;
  readonly len: number;
  readonly flags: number;
  readonly next?: number;
  readonly indirect: boolean;
  readonly end: ChainError | null;
}

/**
 * Walks `chain` from its first data descriptor to its end, in the spec's shape (`SpecWalk`
 * for a split chain): the one conversion of an impl/ chain for properties and the
 * conformance reference adapter.
 */
export function walkImpl(chain: DescriptorChain): SpecWalk;
export function walkImpl(chain: WalkCursor): Walked;
export function walkImpl(chain: WalkCursor): Walked {
  const descriptors: WalkedDescriptor[] = [];
  for (let ok = chain.rewind(); ok; ok = chain.advance()) {
    const { index, len, flags, next, indirect } = chain;
    const addr = chain.addrBig();
    descriptors.push(
      next === undefined
        ? { index, addr, len, flags, indirect }
        : { index, addr, len, flags, next, indirect },
    );
  }
  return { descriptors, end: chain.end };
}

/** JSON with bigints, for messages and comparisons of plain values. */
export const show = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? `${x}n` : x));

/** Deep equality of plain data with bigints and typed arrays (what `toEqual` does, without vitest). */
export const same = (a: unknown, b: unknown): boolean => show(a) === show(b);

/**
 * The byte ranges of the descriptor entries a walk read: the table entries of every yielded
 * descriptor, plus the entries it passed through (an INDIRECT head, and the entry whose
 * read or check ended the walk). `[start, end)` pairs as bigints.
 */
export type Ranges = readonly (readonly [bigint, bigint])[];

/** Whether [addr, addr+len) lies inside one of `ranges`. */
export const within = (ranges: Ranges, addr: number, len: number): boolean => {
  const a = BigInt(addr);
  const e = a + BigInt(len);
  return ranges.some(([s, t]) => s <= a && e <= t);
};
