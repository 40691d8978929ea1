/** Descriptor-chain operations of the reference adapter (CHAIN-*), over impl/queue/descriptor-chain.ts. */
import { DescriptorChain, VIRTQ_DESC_F_INDIRECT } from "../../impl/queue/descriptor-chain.ts";
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

/** Reads raw entry `index` of a table, for mutants that re-create an old bug around impl/. */
const rawDescriptor = (mem: GuestMemory, table: bigint, index: number): WalkedDescriptor | undefined => {
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

/**
 * checkedNew then a full walk; undefined when the head is refused. Mutants:
 * chain-over-4g yields the descriptor that passes 2^32 bytes (PR 236 undone);
 * indirect-aligned refuses an indirect table that is not 16-aligned (PR 220 undone).
 */
export const walk = (world: World, descTable: bigint, queueSize: number, head: number): Walk | undefined => {
  const mem = world.mem();
  const chain = DescriptorChain.checkedNew(mem, tableNumber(descTable), queueSize, head);
  if (chain === undefined) return undefined;
  if (world.mutant === "indirect-aligned") {
    const h = rawDescriptor(mem, descTable, head);
    if (h !== undefined && (h.flags & VIRTQ_DESC_F_INDIRECT) !== 0 && h.addr % 16n !== 0n)
      return { descriptors: [], end: "InvalidIndirectDescriptorTable" };
  }
  const descriptors: WalkedDescriptor[] = [];
  let table = descTable;
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
  const end = chain.end;
  if (world.mutant === "chain-over-4g" && end !== null && end._tag === "DescriptorChainOverflow") {
    // Find which table the walk was in: the head's indirect table, if it had one.
    const h = rawDescriptor(mem, descTable, head);
    const inIndirect = h !== undefined && (h.flags & VIRTQ_DESC_F_INDIRECT) !== 0;
    if (inIndirect) table = h.addr;
    const d = rawDescriptor(mem, table, end.index);
    if (d !== undefined) descriptors.push({ ...d, indirect: inIndirect });
    return { descriptors, end: null };
  }
  return { descriptors, end: end === null ? null : end._tag };
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
