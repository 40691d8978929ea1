/** Packed-queue operations of the reference adapter (PVQ-*), over impl/queue/packed-queue.ts. */
import { PackedDescriptorChain } from "../../impl/queue/packed-chain.ts";
import { PackedQueue } from "../../impl/queue/packed-queue.ts";
import type { SpecPackedQueue } from "../../spec/packed-queue.ts";
import type { Json, JsonObject, Outcome } from "../protocol.ts";
import { u64 } from "../protocol.ts";
import type { Handler, World } from "./world.ts";
import { walkImpl } from "../../properties/arbitraries/chain.ts";
import { walkJson } from "../walk-json.ts";
import { NotConfigured, argBool, argU64, argUint, errv, okv } from "./world.ts";
import { MAX_PACKED_QUEUE_SIZE } from "../../wire/packed.ts";

interface PackedSlot {
  readonly q: PackedQueue;
  /** Reused by every pop of this queue (the hot path's way). */
  readonly chain: PackedDescriptorChain;
}

const queues = (world: World): Map<number, PackedSlot> => {
  let m = world.slots.get("packed") as Map<number, PackedSlot> | undefined;
  if (m === undefined) {
    m = new Map();
    world.slots.set("packed", m);
  }
  return m;
};

const queueId = (args: JsonObject): number =>
  args["queue"] === undefined ? 0 : argUint(args, "queue", 0xffff);

/** The queue an op names (mutant wrappers reach the same PackedQueue through it). */
export const packedSlot = (world: World, args: JsonObject): { readonly q: PackedQueue } => slot(world, args);

const slot = (world: World, args: JsonObject): PackedSlot => {
  const id = queueId(args);
  const s = queues(world).get(id);
  if (s === undefined) throw new NotConfigured(`no packed queue ${id}: send packed.configure first`);
  return s;
};

const perr = (e: { readonly _tag: string }): Outcome => errv({ _tag: e._tag });

/** The state fields a peer can be asked about (spec/packed-queue.ts SpecPackedQueue, without the in-flight lists). */
export const packedStateJson = (st: SpecPackedQueue): Json => ({
  maxSize: st.maxSize,
  size: st.size,
  ready: st.ready,
  descTable: u64(st.descTable),
  driverArea: u64(st.availRing),
  deviceArea: u64(st.usedRing),
  eventIdx: st.eventIdx,
  inOrder: st.inOrder,
  active: st.active,
  nextAvail: st.nextAvail,
  availWrap: st.availWrap,
  nextUsed: st.nextUsed,
  usedWrap: st.usedWrap,
  numAdded: st.numAdded,
  inFlight: st.inFlight.map((b) => b.id),
});

const boolResult = (
  r:
    | { readonly ok: true; readonly value: boolean }
    | { readonly ok: false; readonly error: { readonly _tag: string } },
): Outcome => (r.ok ? okv(r.value) : perr(r.error));

export const packedOps: Record<string, Handler> = {
  "packed.configure": (args, world) => {
    const map = queues(world);
    const id = queueId(args);
    let s = map.get(id);
    if (s === undefined) {
      const maxSize = args["maxSize"] === undefined ? 256 : argUint(args, "maxSize", 0x10000);
      if (!(maxSize >= 1 && maxSize <= MAX_PACKED_QUEUE_SIZE)) return errv({ _tag: "InvalidMaxSize" });
      s = { q: new PackedQueue(maxSize), chain: new PackedDescriptorChain(world.mem()) };
      map.set(id, s);
    }
    s.q.configure({
      ...(args["size"] !== undefined ? { size: argUint(args, "size", 0xffff) } : {}),
      ...(args["ready"] !== undefined ? { ready: argBool(args, "ready") } : {}),
      ...(args["descTable"] !== undefined ? { descTable: argU64(args, "descTable") } : {}),
      ...(args["driverArea"] !== undefined ? { availRing: argU64(args, "driverArea") } : {}),
      ...(args["deviceArea"] !== undefined ? { usedRing: argU64(args, "deviceArea") } : {}),
    });
    if (args["eventIdx"] !== undefined && argBool(args, "eventIdx")) s.q.enableNotifSuppression();
    if (args["inOrder"] !== undefined && argBool(args, "inOrder")) s.q.enableInOrder();
    return okv(null);
  },
  "packed.initialize": (args, world) => {
    const r = slot(world, args).q.initialize(world.mem());
    return r.ok ? okv(null) : perr(r.error);
  },
  "packed.pop": (args, world) => {
    const s = slot(world, args);
    if (s.q.popInto(s.chain)) {
      const c = s.chain;
      return okv({
        popped: true,
        id: c.bufferId,
        head: c.headSlot,
        wrap: c.headWrap,
        slots: c.slots,
        chain: walkJson(walkImpl(c)),
      });
    }
    return s.q.lastError === null ? okv({ popped: false }) : perr(s.q.lastError);
  },
  "packed.undoPop": (args, world) => {
    slot(world, args).q.undoPop();
    return okv(null);
  },
  "packed.addUsed": (args, world) => {
    const r = slot(world, args).q.addUsed(argUint(args, "id", 0xffff), argUint(args, "len"));
    return r.ok ? okv(null) : perr(r.error);
  },
  "packed.publish": (args, world) => {
    const r = slot(world, args).q.publishUsed();
    return r.ok ? okv(null) : perr(r.error);
  },
  "packed.prepareKick": (args, world) => okv(slot(world, args).q.prepareKick()),
  "packed.enableNotification": (args, world) => boolResult(slot(world, args).q.enableNotification()),
  "packed.disableNotification": (args, world) => {
    const r = slot(world, args).q.disableNotification();
    return r.ok ? okv(null) : perr(r.error);
  },
  "packed.tryEnableNotification": (args, world) => boolResult(slot(world, args).q.tryEnableNotification()),
  "packed.reset": (args, world) => {
    slot(world, args).q.reset();
    return okv(null);
  },
  "packed.state": (args, world) => okv(packedStateJson(slot(world, args).q.state())),
};
