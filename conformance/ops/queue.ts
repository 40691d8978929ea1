/** Split-queue operations of the reference adapter (VQ-*), over impl/queue/split-queue.ts. */
import type { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import { SplitQueue } from "../../impl/queue/split-queue.ts";
import type { Json, JsonObject, Outcome } from "../protocol.ts";
import { walkImpl } from "../../properties/arbitraries/chain.ts";
import { acceptedWalkJson } from "../walk-json.ts";
import type { Handler, World } from "./world.ts";
import { NotConfigured, argBool, argU64, argUint, errv, okv } from "./world.ts";

interface QueueSlot {
  readonly q: SplitQueue;
}

const queues = (world: World): Map<number, QueueSlot> => {
  let m = world.slots.get("queues") as Map<number, QueueSlot> | undefined;
  if (m === undefined) {
    m = new Map();
    world.slots.set("queues", m);
  }
  return m;
};

/** The queue number an op names (default 0). */
export const queueId = (args: JsonObject): number =>
  args["queue"] === undefined ? 0 : argUint(args, "queue", 0xffff);

/** The queue an op names (mutant wrappers reach the same SplitQueue through it). */
export const queueSlot = (world: World, args: JsonObject): { readonly q: SplitQueue } => slot(world, args);

const slot = (world: World, args: JsonObject): QueueSlot => {
  const id = queueId(args);
  const s = queues(world).get(id);
  if (s === undefined) throw new NotConfigured(`no queue ${id}: send queue.configure first`);
  return s;
};

const qerr = (e: { readonly _tag: string }): Outcome => errv({ _tag: e._tag });

/** A pop's answer: the chain walked, or nothing to pop. */
export const popped = (chain: DescriptorChain | null): Json =>
  chain === null
    ? { popped: false }
    : { popped: true, head: chain.headIndex, chain: acceptedWalkJson(walkImpl(chain)) };

export const queueOps: Record<string, Handler> = {
  "queue.configure": (args, world) => {
    const id = queueId(args);
    const map = queues(world);
    let s = map.get(id);
    if (s === undefined) {
      const maxSize = args["maxSize"] === undefined ? 256 : argUint(args, "maxSize", 0x10000);
      if (!(maxSize > 0 && (maxSize & (maxSize - 1)) === 0 && maxSize <= 32768))
        return errv({ _tag: "InvalidMaxSize" });
      s = { q: new SplitQueue(maxSize) };
      map.set(id, s);
    }
    s.q.configure({
      ...(args["size"] !== undefined ? { size: argUint(args, "size", 0xffff) } : {}),
      ...(args["ready"] !== undefined ? { ready: argBool(args, "ready") } : {}),
      ...(args["descTable"] !== undefined ? { descTable: argU64(args, "descTable") } : {}),
      ...(args["availRing"] !== undefined ? { availRing: argU64(args, "availRing") } : {}),
      ...(args["usedRing"] !== undefined ? { usedRing: argU64(args, "usedRing") } : {}),
    });
    if (args["eventIdx"] !== undefined && argBool(args, "eventIdx")) s.q.enableNotifSuppression();
    return okv(null);
  },
  "queue.initialize": (args, world) => {
    const r = slot(world, args).q.initialize(world.mem());
    return r.ok ? okv(null) : qerr(r.error);
  },
  "queue.pop": (args, world) => {
    const r = slot(world, args).q.pop();
    return r.ok ? okv(popped(r.value)) : qerr(r.error);
  },
  "queue.undoPop": (args, world) => {
    slot(world, args).q.undoPop();
    return okv(null);
  },
  "queue.addUsed": (args, world) => {
    const s = slot(world, args);
    const head = argUint(args, "head");
    const len = argUint(args, "len");
    const r = s.q.addUsed(head, len);
    return r.ok ? okv(null) : qerr(r.error);
  },
  "queue.publish": (args, world) => {
    const s = slot(world, args);
    const r = s.q.publishUsed();
    return r.ok ? okv(null) : qerr(r.error);
  },
  "queue.prepareKick": (args, world) => okv(slot(world, args).q.prepareKick(world.config.honourNoInterrupt)),
  "queue.tryEnableNotification": (args, world) => {
    const r = slot(world, args).q.tryEnableNotification();
    return r.ok ? okv(r.value) : qerr(r.error);
  },
  "queue.reset": (args, world) => {
    slot(world, args).q.reset();
    return okv(null);
  },
  "queue.state": (args, world) => {
    const st = slot(world, args).q.state();
    return okv({
      maxSize: st.maxSize,
      size: st.size,
      ready: st.ready,
      descTable: st.descTable.toString(10),
      availRing: st.availRing.toString(10),
      usedRing: st.usedRing.toString(10),
      eventIdx: st.eventIdx,
      active: st.active,
      nextAvail: st.nextAvail,
      nextUsed: st.nextUsed,
      numAdded: st.numAdded,
    });
  },
};
