/** Guest-memory operations of the reference adapter (MEM-*), over impl/memory. */
import { GuestMemory } from "../../impl/memory/guest-memory.ts";
import { isObject, toHex } from "../protocol.ts";
import { regionPieces } from "../ranges.ts";
import type { Handler } from "./world.ts";
import { BadRequest, argArray, argHex, argU64, argUint, errv, okv, wireError } from "./world.ts";

/** The adapter's own limit on memory it allocates (a protocol-level ResourceLimit, not a spec rule). */
export const MAX_TOTAL_MEMORY = 64 << 20;

const spans = (m: GuestMemory) => m.regions.map((r) => ({ base: BigInt(r.base), end: BigInt(r.end) }));

export const memoryOps: Record<string, Handler> = {
  "memory.create": (args, world) => {
    const list = argArray(args, "regions");
    // vm-memory GuestRegionCollection::from_regions refuses an empty layout (NoMemoryRegion).
    if (list.length === 0) return errv({ _tag: "NoMemoryRegion" });
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
    if (!m.ok) {
      // Guest addresses past 2^53 are this implementation's own limit (MEM-REGION-LIMIT), not
      // a rule for others: say so as a resource limit, which skips the run.
      if (m.error._tag === "RegionOutOfRange")
        return errv({ _tag: "ResourceLimit", message: "regions must lie below 2^53 here" });
      return errv(wireError(m.error));
    }
    world.memory = m.value;
    world.slots.clear();
    return okv(null);
  },
  "memory.read": (args, world) => {
    const mem = world.mem();
    const addr = argU64(args, "addr");
    const len = argUint(args, "len");
    const pieces = addr + BigInt(len) <= 1n << 64n ? regionPieces(spans(mem), addr, BigInt(len)) : undefined;
    if (pieces === undefined) {
      const r = mem.tryRead(addr, len);
      return r.ok ? okv({ data: toHex(r.value) }) : errv(wireError(r.error));
    }
    const parts: string[] = [];
    for (const p of pieces) {
      const r = mem.tryRead(p.addr, Number(p.len));
      if (!r.ok) return errv(wireError(r.error));
      parts.push(toHex(r.value));
    }
    return okv({ data: parts.join("") });
  },
  "memory.write": (args, world) => {
    const mem = world.mem();
    const addr = argU64(args, "addr");
    const data = argHex(args, "data");
    const pieces =
      addr + BigInt(data.length) <= 1n << 64n
        ? regionPieces(spans(mem), addr, BigInt(data.length))
        : undefined;
    if (pieces === undefined) {
      // Some byte is outside memory: refused whole (nothing written).
      const r = mem.tryWrite(addr, data);
      return r.ok ? okv(null) : errv(wireError(r.error));
    }
    let off = 0;
    for (const p of pieces) {
      const r = mem.tryWrite(p.addr, data.subarray(off, off + Number(p.len)));
      if (!r.ok) return errv(wireError(r.error));
      off += Number(p.len);
    }
    return okv(null);
  },
};
