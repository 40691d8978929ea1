/** Split-queue operations of the reference adapter (VQ-*), over impl/queue/split-queue.ts. */
import { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import { SplitQueue } from "../../impl/queue/split-queue.ts";
import type { Json, JsonObject, Outcome } from "../protocol.ts";
import { walkJson } from "./chain.ts";
import type { Walk, WalkedDescriptor } from "./chain.ts";
import type { Handler, World } from "./world.ts";
import { NotConfigured, argBool, argU64, argUint, errv, okv } from "./world.ts";

interface QueueSlot {
  readonly q: SplitQueue;
  /** size-zero mutant: initialize pretended a size-0 queue was fine. */
  zeroActive: boolean;
}

const queues = (world: World): Map<number, QueueSlot> => {
  let m = world.slots.get("queues") as Map<number, QueueSlot> | undefined;
  if (m === undefined) {
    m = new Map();
    world.slots.set("queues", m);
  }
  return m;
};

/** The queue an op names (mutant wrappers reach the same SplitQueue through it). */
export const queueSlot = (world: World, args: JsonObject): { readonly q: SplitQueue } => slot(world, args);

const slot = (world: World, args: JsonObject): QueueSlot => {
  const id = args["queue"] === undefined ? 0 : argUint(args, "queue", 0xffff);
  const s = queues(world).get(id);
  if (s === undefined) throw new NotConfigured(`no queue ${id}: send queue.configure first`);
  return s;
};

const qerr = (e: { readonly _tag: string }): Outcome => errv({ _tag: e._tag });

/** Walks a popped chain the way chain.walk reports it. */
const walkOf = (chain: DescriptorChain): Walk => {
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

const popped = (chain: DescriptorChain | null): Json =>
  chain === null
    ? { popped: false }
    : { popped: true, head: chain.headIndex, chain: walkJson(walkOf(chain)) };

/** A Rust device panics on `x % 0`; the size-zero mutant dies the same way (exit 101). */
const panicSizeZero = (s: QueueSlot): void => {
  if (s.zeroActive) {
    process.stderr.write(
      "adapter (mutant size-zero): attempt to calculate the remainder with a divisor of zero\n",
    );
    process.exit(101);
  }
};

export const queueOps: Record<string, Handler> = {
  "queue.configure": (args, world) => {
    const id = args["queue"] === undefined ? 0 : argUint(args, "queue", 0xffff);
    const map = queues(world);
    let s = map.get(id);
    if (s === undefined) {
      const maxSize = args["maxSize"] === undefined ? 256 : argUint(args, "maxSize", 0x10000);
      if (!(maxSize > 0 && (maxSize & (maxSize - 1)) === 0 && maxSize <= 32768))
        return errv({ _tag: "InvalidMaxSize" });
      s = { q: new SplitQueue(maxSize), zeroActive: false };
      map.set(id, s);
    }
    s.zeroActive = false;
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
    const s = slot(world, args);
    const r = s.q.initialize(world.mem());
    if (!r.ok && world.mutant === "size-zero" && r.error._tag === "InvalidSize" && s.q.state().size === 0) {
      s.zeroActive = true;
      return okv(null);
    }
    return r.ok ? okv(null) : qerr(r.error);
  },
  "queue.pop": (args, world) => {
    const s = slot(world, args);
    panicSizeZero(s);
    const r = s.q.pop();
    if (!r.ok && r.error._tag === "InvalidAvailIdx" && world.mutant === "avail-idx-far-ahead") {
      // rust-vmm before PR 196: no check, the head is read from the ring anyway.
      const st = s.q.state();
      const mem = world.mem();
      const head = mem.readU16(Number(st.availRing) + 4 + 2 * (st.nextAvail % st.size));
      const chain =
        head < 0 ? undefined : DescriptorChain.checkedNew(mem, Number(st.descTable), st.size, head);
      if (chain === undefined) return okv({ popped: false });
      s.q.setPositions({ nextAvail: st.nextAvail + 1 });
      return okv(popped(chain));
    }
    return r.ok ? okv(popped(r.value)) : qerr(r.error);
  },
  "queue.undoPop": (args, world) => {
    slot(world, args).q.undoPop();
    return okv(null);
  },
  "queue.addUsed": (args, world) => {
    const s = slot(world, args);
    panicSizeZero(s);
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
  "queue.prepareKick": (args, world) => {
    const s = slot(world, args);
    const honour = argBool(args, "honourNoInterrupt", false);
    if (world.mutant === "prepare-kick-off-by-one") {
      const st = s.q.state();
      const ev = s.q.usedEvent();
      const right = s.q.prepareKick(honour);
      if (!st.active || !st.eventIdx || !ev.ok) return okv(right);
      return okv(((st.nextUsed - ev.value) & 0xffff) < st.numAdded);
    }
    return okv(s.q.prepareKick(honour));
  },
  "queue.tryEnableNotification": (args, world) => {
    const r = slot(world, args).q.tryEnableNotification();
    return r.ok ? okv(r.value) : qerr(r.error);
  },
  "queue.reset": (args, world) => {
    // pop-after-reset mutant: reset forgets nothing (rust-vmm before PR 225).
    if (world.mutant !== "pop-after-reset") slot(world, args).q.reset();
    else slot(world, args);
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
