/**
 * Mutants as wrappers: each takes the reference adapter's handler table and returns it with
 * one op replaced by a buggy version that calls the real handler (conformance/mutants.ts
 * says which bug and where it was found). The real handlers know nothing of mutants.
 */
import type { Handler } from "./world.ts";
import { argUint, okv } from "./world.ts";
import { queueSlot } from "./queue.ts";
import { PACKED_MUTANT_WRAPPERS } from "./packed-mutants.ts";

export type HandlerTable = Readonly<Record<string, Handler>>;
export type MutantWrapper = (base: HandlerTable) => HandlerTable;

/**
 * used-slot-from-guest: the device takes its next used slot from used.idx as it reads it in
 * guest memory (a field only the device writes, VIRTIO 1.2 §2.7.8) instead of its own
 * next_used. With an honest driver the two agree; a driver that scribbles on used.idx steers
 * the device's writes.
 */
const usedSlotFromGuest: MutantWrapper = (base) => ({
  ...base,
  "queue.addUsed": (args, world) => {
    const real = base["queue.addUsed"]!;
    const s = queueSlot(world, args);
    const st = s.q.state();
    if (!st.active || st.size === 0) return real(args, world);
    const mem = world.mem();
    const used = Number(st.usedRing);
    const guestIdx = mem.readU16(used + 2);
    const own = used + 4 + 8 * (st.nextUsed % st.size);
    const saved = mem.slice(own, 8)?.slice();
    const out = real(args, world);
    if (!out.ok || guestIdx < 0 || saved === undefined) return out;
    const at = used + 4 + 8 * (guestIdx % st.size);
    if (at === own) return out;
    // Move the element the real code wrote to the slot the guest chose.
    mem.writeU32(at, argUint(args, "head"));
    mem.writeU32(at + 4, argUint(args, "len"));
    mem.slice(own, 8)?.set(saved);
    return okv(null);
  },
});

export const MUTANT_WRAPPERS: Readonly<Record<string, MutantWrapper>> = {
  "used-slot-from-guest": usedSlotFromGuest,
  ...PACKED_MUTANT_WRAPPERS,
};
