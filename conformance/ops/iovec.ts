/** IoVec operations of the reference adapter (IOV-*), over impl/iovec and impl/queue's chains. */
import { MAX_QUEUE_SIZE } from "../../wire/split.ts";
import { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import { IoVecBuffer, IoVecBufferMut } from "../../impl/iovec/iovec.ts";
import type { ChainCursor, ParsedDescriptorChain } from "../../impl/iovec/iovec.ts";
import { isObject, toHex } from "../protocol.ts";
import type { Json, JsonObject, Outcome } from "../protocol.ts";
import { tableNumber } from "./chain.ts";
import type { Handler, World } from "./world.ts";
import { BadRequest, argArray, argHex, argU64, argUint, errv, okv } from "./world.ts";

/** The popped-head form every op that takes a chain uses: {descTable, queueSize, head}. */
export const chainArg = (world: World, args: JsonObject): DescriptorChain | undefined =>
  DescriptorChain.checkedNew(
    world.mem(),
    tableNumber(argU64(args, "descTable")),
    argUint(args, "queueSize", MAX_QUEUE_SIZE),
    argUint(args, "head", 0xffff),
  );

export const HEAD_REFUSED: Outcome = { ok: false, error: { _tag: "HeadRefused" } };

const parsedJson = (p: ParsedDescriptorChain): Json => ({
  headIndex: p.headIndex,
  length: p.length,
  nrIovecs: p.nrIovecs,
});

export const iovecOps: Record<string, Handler> = {
  "iovec.read": (args, world) => {
    const chain = chainArg(world, args);
    if (chain === undefined) return HEAD_REFUSED;
    const b = IoVecBuffer.fromChain(world.mem(), chain);
    if (!b.ok) return errv({ _tag: b.error._tag });
    const dst = new Uint8Array(argUint(args, "len", 1 << 20));
    const n = b.value.readInto(dst, argUint(args, "offset"));
    return okv({ length: b.value.len, data: toHex(dst.subarray(0, n)) });
  },
  "iovec.write": (args, world) => iovecWrite(args, world, (c) => c),
};

/**
 * iovec.write: the chains appended to one IoVecBufferMut, then the data written at the offset.
 * `view` is how the buffer sees each chain (the identity here; a mutant's view otherwise).
 */
export const iovecWrite = (
  args: JsonObject,
  world: World,
  view: (chain: ChainCursor) => ChainCursor,
): Outcome => {
  const mem = world.mem();
  const capacity = args["capacity"] === undefined ? 256 : argUint(args, "capacity", 65536);
  if (capacity < 1) throw new BadRequest("capacity must be in 1..65536");
  const buffer = new IoVecBufferMut({ capacity });
  const parsed: Json[] = [];
  for (const [i, c] of argArray(args, "chains").entries()) {
    if (!isObject(c)) throw new BadRequest("each chain is {descTable, queueSize, head}");
    const chain = chainArg(world, c);
    if (chain === undefined) return errv({ _tag: "HeadRefused", chain: i });
    const r = buffer.appendChain(mem, view(chain));
    if (!r.ok) return errv({ _tag: r.error._tag, chain: i });
    parsed.push(parsedJson(r.value));
  }
  const written = buffer.writeFrom(argHex(args, "data"), argUint(args, "offset"));
  return okv({ length: buffer.len, written, parsed });
};
