/**
 * A walked descriptor chain as the protocol carries it (docs/conformance-protocol.md:
 * `chain.walk`, `queue.pop`, `packed.pop`): the one walk -> JSON conversion, used for what
 * the spec expects (cases/) and for what impl/ answers (ops/, mutant wrappers).
 */
import type { Walked, WalkedDescriptor } from "../properties/arbitraries/chain.ts";
import { VIRTQ_DESC_F_WRITE } from "../wire/split.ts";
import type { Json, JsonObject } from "./protocol.ts";
import { u64 } from "./protocol.ts";

export const descriptorJson = (d: WalkedDescriptor): Json =>
  d.next === undefined
    ? { index: d.index, addr: u64(d.addr), len: d.len, flags: d.flags, indirect: d.indirect }
    : { index: d.index, addr: u64(d.addr), len: d.len, flags: d.flags, next: d.next, indirect: d.indirect };

/** The descriptors, why the walk ended (the error's tag) and its bytes by direction (CHAIN-RW-SPLIT). */
export const walkJson = (w: Walked): JsonObject => {
  let readable = 0n;
  let writable = 0n;
  for (const d of w.descriptors) {
    if ((d.flags & VIRTQ_DESC_F_WRITE) !== 0) writable += BigInt(d.len);
    else readable += BigInt(d.len);
  }
  return {
    descriptors: w.descriptors.map(descriptorJson),
    end: w.end === null ? null : w.end._tag,
    readableBytes: u64(readable),
    writableBytes: u64(writable),
  };
};

/** `chain.walk`'s answer: refused (`undefined`: CHAIN-CHECKED-NEW) or accepted with its walk. */
export const acceptedWalkJson = (w: Walked | undefined): Json =>
  w === undefined ? { accepted: false } : { accepted: true, ...walkJson(w) };
