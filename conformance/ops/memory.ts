/** Guest-memory operations of the reference adapter (MEM-*), over impl/memory. */
import { GuestMemory } from "../../impl/memory/guest-memory.ts";
import { isObject, toHex } from "../protocol.ts";
import type { Handler } from "./world.ts";
import { BadRequest, argArray, argHex, argU64, argUint, errv, okv, wireError } from "./world.ts";

/** The adapter's own limit on memory it allocates (a protocol-level ResourceLimit, not a spec rule). */
export const MAX_TOTAL_MEMORY = 64 << 20;

export const memoryOps: Record<string, Handler> = {
  "memory.create": (args, world) => {
    const list = argArray(args, "regions");
    const regions: { base: bigint; bytes: Uint8Array }[] = [];
    let total = 0;
    for (const r of list) {
      if (!isObject(r)) throw new BadRequest("each region is {base, size}");
      const size = argUint(r, "size");
      total += size;
      if (total > MAX_TOTAL_MEMORY) return errv({ _tag: "ResourceLimit" });
      regions.push({ base: argU64(r, "base"), bytes: new Uint8Array(size) });
    }
    const m = GuestMemory.create(regions);
    if (!m.ok) return errv(wireError(m.error));
    world.memory = m.value;
    world.slots.clear();
    return okv(null);
  },
  "memory.read": (args, world) => {
    const r = world.mem().tryRead(argU64(args, "addr"), argUint(args, "len"));
    return r.ok ? okv({ data: toHex(r.value) }) : errv(wireError(r.error));
  },
  "memory.write": (args, world) => {
    const r = world.mem().tryWrite(argU64(args, "addr"), argHex(args, "data"));
    return r.ok ? okv(null) : errv(wireError(r.error));
  },
};
