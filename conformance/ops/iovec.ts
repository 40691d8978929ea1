/** IoVec operations of the reference adapter (IOV-*), over impl/iovec and impl/queue's chains. */
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
    argUint(args, "queueSize", 0x8000),
    argUint(args, "head", 0xffff),
  );

export const HEAD_REFUSED: Outcome = { ok: false, error: { _tag: "HeadRefused" } };

/** write-readable mutant: a cursor that calls every descriptor device-writable. */
class EverythingWritable implements ChainCursor {
  constructor(private readonly c: ChainCursor) {}
  get headIndex(): number {
    return this.c.headIndex;
  }
  get addr(): number {
    return this.c.addr;
  }
  get len(): number {
    return this.c.len;
  }
  addrBig(): bigint {
    return this.c.addrBig();
  }
  isWriteOnly(): boolean {
    return true;
  }
  rewind(): boolean {
    return this.c.rewind();
  }
  advance(): boolean {
    return this.c.advance();
  }
}

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
  "iovec.write": (args, world) => {
    const mem = world.mem();
    const capacity = args["capacity"] === undefined ? 256 : argUint(args, "capacity", 65536);
    if (capacity < 1) throw new BadRequest("capacity must be in 1..65536");
    // iovec-no-u32-check mutant: a chain that would pass 2^32 bytes starts a new buffer and
    // the total wraps, instead of OverflowedDescriptor (Firecracker's len.checked_add undone).
    const buffers = [new IoVecBufferMut({ capacity })];
    const parsed: Json[] = [];
    let wrapped = 0;
    for (const [i, c] of argArray(args, "chains").entries()) {
      if (!isObject(c)) throw new BadRequest("each chain is {descTable, queueSize, head}");
      const raw = chainArg(world, c);
      if (raw === undefined) return errv({ _tag: "HeadRefused", chain: i });
      const chain: ChainCursor = world.mutant === "write-readable" ? new EverythingWritable(raw) : raw;
      let r = buffers[buffers.length - 1]!.appendChain(mem, chain);
      if (!r.ok && r.error._tag === "OverflowedDescriptor" && world.mutant === "iovec-no-u32-check") {
        const fresh = new IoVecBufferMut({ capacity });
        r = fresh.appendChain(mem, chain);
        if (r.ok) buffers.push(fresh);
      }
      if (!r.ok) return errv({ _tag: r.error._tag, chain: i });
      wrapped = (wrapped + r.value.length) % 2 ** 32;
      parsed.push(parsedJson(r.value));
    }
    const data = argHex(args, "data");
    let offset = argUint(args, "offset");
    let written = 0;
    for (const b of buffers) {
      if (written === data.length) break;
      const n = b.writeFrom(data.subarray(written), offset);
      written += n;
      offset = Math.max(0, offset - b.len);
    }
    const length = buffers.length === 1 ? buffers[0]!.len : wrapped;
    return okv({ length, written, parsed });
  },
};
