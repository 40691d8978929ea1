/**
 * Packed-ring mutants as wrappers (conformance/ops/mutant-wrappers.ts): each calls the real
 * packed handler and puts back one bug class seen in packed-ring devices.
 */
import type { PendingUsed } from "../../spec/packed-queue.ts";
import type { JsonObject } from "../protocol.ts";
import type { HandlerTable, MutantWrapper } from "./mutant-wrappers.ts";
import { packedSlot } from "./packed.ts";
import type { Handler, World } from "./world.ts";
import { okv } from "./world.ts";
import {
  PACKED_DESC_FLAGS,
  PACKED_DESC_ID,
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_WRAP,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_USED,
  packedDescOffset,
} from "../../wire/packed.ts";
import { vringNeedEvent } from "../../wire/split.ts";

const real = (base: HandlerTable, op: string): Handler => {
  const h = base[op];
  if (h === undefined) throw new Error(`mutant: no ${op} handler to wrap`);
  return h;
};

/**
 * packed-wrap-not-flipped: the device's used wrap counter stays 1 when next_used passes the
 * ring's end, so every used descriptor of an odd lap is written with AVAIL = USED = 1 (the
 * driver, whose counter did flip, never sees it used, or sees an old lap's as new).
 */
const wrapNotFlipped: MutantWrapper = (base) => {
  /** Calls `op`, then rewrites the flags of what it published as if the wrap counter were still 1. */
  const around =
    (op: string, publishedAll: boolean): Handler =>
    (args, world) => {
      const s = packedSlot(world, args);
      const before = s.q.state();
      const out = real(base, op)(args, world);
      const after = s.q.state();
      // addUsed publishes the earlier batch itself when the new one would overrun it.
      const published = publishedAll || after.pending.length !== before.pending.length + 1;
      if (!out.ok || !after.active || !published) return out;
      for (const p of before.pending) unflip(world, before.descTable, p);
      return out;
    };
  return {
    ...base,
    "packed.publish": around("packed.publish", true),
    "packed.addUsed": around("packed.addUsed", false),
  };
};

const unflip = (world: World, ring: bigint, p: PendingUsed): void => {
  if ((p.flags & VIRTQ_DESC_F_AVAIL) !== 0) return;
  world
    .mem()
    .writeU16(
      Number(ring) + packedDescOffset(p.slot) + PACKED_DESC_FLAGS,
      p.flags | VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED,
    );
};

/**
 * packed-used-id-from-slot: the used descriptor's id is the ring slot it is written at (as a
 * split ring's head index would be) instead of the buffer id the driver put in the chain's
 * last descriptor. Right only while every buffer id happens to equal its first slot.
 */
const usedIdFromSlot: MutantWrapper = (base) => ({
  ...base,
  "packed.addUsed": (args: JsonObject, world: World) => {
    const s = packedSlot(world, args);
    const before = s.q.state();
    const out = real(base, "packed.addUsed")(args, world);
    if (!out.ok || !before.active) return out;
    world
      .mem()
      .writeU16(
        Number(before.descTable) + packedDescOffset(before.nextUsed) + PACKED_DESC_ID,
        before.nextUsed,
      );
    return out;
  },
});

/**
 * packed-off-wrap-ignored: prepareKick takes the Driver Area's off_wrap as the event index
 * without its wrap bit (bit 15 masked off, never `off - size`), so an event the driver set
 * in the previous lap is compared as if it were in this one.
 */
const offWrapIgnored: MutantWrapper = (base) => ({
  ...base,
  "packed.prepareKick": (args: JsonObject, world: World) => {
    const s = packedSlot(world, args);
    const st = s.q.state();
    const out = real(base, "packed.prepareKick")(args, world);
    if (!out.ok || !st.active || !st.eventIdx) return out;
    const mem = world.mem();
    const flags = mem.readU16(Number(st.availRing) + 2);
    const offWrap = mem.readU16(Number(st.availRing));
    if (flags < 0 || offWrap < 0 || (flags & 3) !== RING_EVENT_FLAGS_DESC) return out;
    const event = offWrap & (RING_EVENT_WRAP - 1);
    return okv(vringNeedEvent(event, st.nextUsed, (st.nextUsed - st.numAdded) & 0xffff));
  },
});

export const PACKED_MUTANT_WRAPPERS: Readonly<Record<string, MutantWrapper>> = {
  "packed-wrap-not-flipped": wrapNotFlipped,
  "packed-used-id-from-slot": usedIdFromSlot,
  "packed-off-wrap-ignored": offWrapIgnored,
};
