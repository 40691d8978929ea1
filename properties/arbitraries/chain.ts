/**
 * Helpers shared by properties that walk descriptor chains: the implementation's walk in
 * the reference model's shape (so the two compare with `toEqual` or `sameWalk`) and the byte ranges a walk may legitimately read.
 */
import type { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import type { SpecDescriptor, SpecWalk } from "../../spec/queue.ts";

/** Walks `chain` from its first data descriptor to its end, in the spec's `SpecWalk` shape. */
export const walkImpl = (chain: DescriptorChain): SpecWalk => {
  const descriptors: SpecDescriptor[] = [];
  for (let ok = chain.rewind(); ok; ok = chain.advance()) {
    descriptors.push({
      index: chain.index,
      addr: chain.addrBig(),
      len: chain.len,
      flags: chain.flags,
      next: chain.next,
      indirect: chain.indirect,
    });
  }
  return { descriptors, end: chain.end };
};

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
