/** Descriptor-chain operations of the reference adapter (CHAIN-*), over impl/queue/descriptor-chain.ts. */
import { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import type { Json } from "../protocol.ts";
import type { Handler, World } from "./world.ts";
import { argU64, argUint, okv } from "./world.ts";

/** The table address as impl/ takes it: exact below 2^53, >= 2^53 (outside memory) above. */
export const tableNumber = (addr: bigint): number => Number(addr);

export interface WalkedDescriptor {
  readonly index: number;
  readonly addr: bigint;
  readonly len: number;
  readonly flags: number;
  readonly next: number;
  readonly indirect: boolean;
}

export interface Walk {
  readonly descriptors: WalkedDescriptor[];
  readonly end: string | null;
}

/** Reads raw entry `index` of a table (mutant wrappers re-create old bugs around impl/ with it). */
export const rawDescriptor = (
  mem: GuestMemory,
  table: bigint,
  index: number,
): WalkedDescriptor | undefined => {
  const r = mem.tryRead(table + 16n * BigInt(index), 16);
  if (!r.ok) return undefined;
  const v = new DataView(r.value.buffer, r.value.byteOffset, 16);
  return {
    index,
    addr: v.getBigUint64(0, true),
    len: v.getUint32(8, true),
    flags: v.getUint16(12, true),
    next: v.getUint16(14, true),
    indirect: false,
  };
};

/** Walks a chain impl/ accepted the way chain.walk and queue.pop report it. */
export const walkOf = (chain: DescriptorChain): Walk => {
  const descriptors: WalkedDescriptor[] = [];
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
  return { descriptors, end: chain.end === null ? null : chain.end._tag };
};

/** checkedNew then a full walk; undefined when the head is refused. */
export const walk = (world: World, descTable: bigint, queueSize: number, head: number): Walk | undefined => {
  const chain = DescriptorChain.checkedNew(world.mem(), tableNumber(descTable), queueSize, head);
  return chain === undefined ? undefined : walkOf(chain);
};

export const descriptorJson = (d: WalkedDescriptor): Json => ({
  index: d.index,
  addr: d.addr.toString(10),
  len: d.len,
  flags: d.flags,
  next: d.next,
  indirect: d.indirect,
});

export const walkJson = (w: Walk | undefined): Json => {
  if (w === undefined) return { accepted: false };
  let readable = 0;
  let writable = 0;
  for (const d of w.descriptors) {
    if ((d.flags & 2) !== 0) writable += d.len;
    else readable += d.len;
  }
  return {
    accepted: true,
    descriptors: w.descriptors.map(descriptorJson),
    end: w.end,
    readableBytes: readable.toString(10),
    writableBytes: writable.toString(10),
  };
};

export const chainOps: Record<string, Handler> = {
  "chain.walk": (args, world) =>
    okv(
      walkJson(
        walk(
          world,
          argU64(args, "descTable"),
          argUint(args, "queueSize", 0x8000),
          argUint(args, "head", 0xffff),
        ),
      ),
    ),
};
