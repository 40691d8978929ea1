/** Descriptor-chain operations of the reference adapter (CHAIN-*), over impl/queue/descriptor-chain.ts. */
import { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import type { SpecDescriptor, SpecWalk } from "../../spec/queue.ts";
import { DESC_SIZE, MAX_QUEUE_SIZE, decodeDescriptor, descOffset } from "../../wire/split.ts";
import { walkImpl } from "../../properties/arbitraries/chain.ts";
import { acceptedWalkJson } from "../walk-json.ts";
import type { Handler, World } from "./world.ts";
import { argU64, argUint, okv } from "./world.ts";

/** The table address as impl/ takes it: exact below 2^53, >= 2^53 (outside memory) above. */
export const tableNumber = (addr: bigint): number => Number(addr);

/** Reads raw entry `index` of a table (mutant wrappers re-create old bugs around impl/ with it). */
export const rawDescriptor = (mem: GuestMemory, table: bigint, index: number): SpecDescriptor | undefined => {
  const r = mem.tryRead(table + BigInt(descOffset(index)), DESC_SIZE);
  return r.ok ? { index, ...decodeDescriptor(r.value), indirect: false } : undefined;
};

/** checkedNew then a full walk; undefined when the head is refused. */
export const walk = (
  world: World,
  descTable: bigint,
  queueSize: number,
  head: number,
): SpecWalk | undefined => {
  const chain = DescriptorChain.checkedNew(world.mem(), tableNumber(descTable), queueSize, head);
  return chain === undefined ? undefined : walkImpl(chain);
};

export const chainOps: Record<string, Handler> = {
  "chain.walk": (args, world) =>
    okv(
      acceptedWalkJson(
        walk(
          world,
          argU64(args, "descTable"),
          argUint(args, "queueSize", MAX_QUEUE_SIZE),
          argUint(args, "head", 0xffff),
        ),
      ),
    ),
};
