/**
 * The packed ring's reference model (spec/packed-queue.ts) beside a device's PackedQueue,
 * as queue-shadow.ts does for the split ring: every pop, undo, used descriptor,
 * publication and notification decision is also computed by the model on the same guest
 * memory, and the results, ring positions and wrap counters, buffers in flight, the chain
 * walked and the bytes written must agree (SIM-QUEUE-REFINES). The device keeps calling
 * its queue as usual.
 */
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import type { DeviceChain } from "../../impl/queue/device-queue.ts";
import type { PackedDescriptorChain } from "../../impl/queue/packed-chain.ts";
import { PopStatus, type PackedQueue } from "../../impl/queue/packed-queue.ts";
import type { SpecMemory } from "../../spec/memory.ts";
import * as P from "../../spec/packed-queue.ts";
import type { Result } from "../../spec/result.ts";
import type { SimContext } from "../engine.ts";
import { walkMismatch, specMemoryOf } from "../oracle.ts";
import { memoryMismatch } from "./queue-shadow.ts";

/** The model's pop of the chain the device is about to pop (null: nothing available). */
export interface PackedShadowProbe {
  beforePop?(popped: P.SpecPackedPopped | null, spec: P.SpecPackedQueue): void;
}

const showResult = (r: Result<unknown, { readonly _tag: string }>): string =>
  r.ok ? String(r.value) : r.error._tag;

export const shadowPackedWithSpec = (
  ctx: SimContext,
  q: PackedQueue,
  mem: GuestMemory,
  name: string,
  probe: PackedShadowProbe = {},
): void => {
  if (!ctx.oracle) return;
  const live: SpecMemory = specMemoryOf(mem);
  let spec: P.SpecPackedQueue = q.state();

  const fail = (what: string, detail: string): never =>
    ctx.fail("SIM-QUEUE-REFINES", `${name} ${what}: ${detail}`);

  const agree = (what: string, after: P.Step<unknown>): void => {
    spec = after.queue;
    const s = q.state();
    if (
      s.nextAvail !== spec.nextAvail ||
      s.availWrap !== spec.availWrap ||
      s.nextUsed !== spec.nextUsed ||
      s.usedWrap !== spec.usedWrap ||
      s.numAdded !== spec.numAdded
    )
      fail(
        what,
        `device positions avail ${s.nextAvail}/${+s.availWrap} used ${s.nextUsed}/${+s.usedWrap} added ${s.numAdded}, reference ${spec.nextAvail}/${+spec.availWrap} ${spec.nextUsed}/${+spec.usedWrap} ${spec.numAdded}`,
      );
    const held = s.inFlight;
    const refHeld = spec.inFlight;
    let sameIds = held.length === refHeld.length;
    for (let i = 0; sameIds && i < held.length; i++) sameIds = held[i]!.id === refHeld[i]!.id;
    if (!sameIds)
      fail(
        what,
        `device holds buffers [${held.map((b) => b.id).join(",")}], reference [${refHeld.map((b) => b.id).join(",")}]`,
      );
    const bytes = memoryMismatch(live, after.memory);
    if (bytes !== undefined) fail(what, bytes);
  };

  const samePop = (
    what: string,
    popped: boolean,
    chain: DeviceChain,
    ref: P.Step<Result<P.SpecPackedPopped | null, P.PackedQueueError>>,
  ): void => {
    const r = ref.result;
    if (popped) {
      if (!r.ok || r.value === null)
        fail(what, `device popped buffer ${chain.headIndex}, reference ${r.ok ? "none" : r.error._tag}`);
      else {
        if (chain.headIndex !== r.value.id)
          fail(what, `device popped buffer ${chain.headIndex}, reference ${r.value.id}`);
        const walked = walkMismatch(chain, r.value.id, r.value.walk);
        if (walked !== undefined) fail(what, walked);
      }
    } else if (q.lastPop === PopStatus.Error) {
      if (r.ok || r.error._tag !== q.lastError?._tag)
        fail(what, `device error ${q.lastError?._tag}, reference ${r.ok ? "no error" : r.error._tag}`);
    } else if (!r.ok || r.value !== null) {
      fail(what, `device popped nothing, reference ${r.ok ? `buffer ${r.value?.id}` : r.error._tag}`);
    }
    agree(what, ref);
  };

  const popInto = q.popInto.bind(q);
  q.popInto = (chain: PackedDescriptorChain): boolean => {
    const ref = P.pop(spec, live);
    if (ref.result.ok) probe.beforePop?.(ref.result.value, spec);
    const popped = popInto(chain);
    samePop("pop", popped, chain, ref);
    return popped;
  };

  const undoPop = q.undoPop.bind(q);
  q.undoPop = (): void => {
    undoPop();
    agree("undoPop", { queue: P.undoPop(spec), memory: live, result: undefined });
  };

  const addUsed = q.addUsed.bind(q);
  q.addUsed = (id: number, len: number) => {
    const ref = P.addUsed(spec, live, id, len);
    const r = addUsed(id, len);
    if (r.ok !== ref.result.ok)
      fail("addUsed", `(${id}, ${len}): device ${showResult(r)}, reference ${showResult(ref.result)}`);
    agree("addUsed", ref);
    return r;
  };

  const publishUsed = q.publishUsed.bind(q);
  q.publishUsed = () => {
    const ref = P.publishUsed(spec, live);
    const r = publishUsed();
    agree("publishUsed", ref);
    return r;
  };

  const prepareKick = q.prepareKick.bind(q);
  q.prepareKick = (): boolean => {
    const ref = P.prepareKick(spec, live);
    const need = prepareKick();
    if (need !== ref.result) fail("prepareKick", `device ${need}, reference ${ref.result}`);
    agree("prepareKick", ref);
    return need;
  };

  const notification = (
    what: string,
    method: "tryEnableNotification" | "enableNotification" | "disableNotification",
    model: (q: P.SpecPackedQueue, m: SpecMemory) => P.Step<Result<unknown, P.PackedQueueError>>,
  ): (() => Result<never, P.PackedQueueError>) => {
    const f = (q[method] as () => Result<never, P.PackedQueueError>).bind(q);
    return () => {
      const ref = model(spec, live);
      const r = f();
      const a = showResult(r);
      const b = showResult(ref.result);
      if (a !== b) fail(what, `device ${a}, reference ${b}`);
      agree(what, ref);
      return r;
    };
  };
  const tryEnable = notification("tryEnableNotification", "tryEnableNotification", P.tryEnableNotification);
  q.tryEnableNotification = tryEnable;
  q.enableNotification = notification("enableNotification", "enableNotification", P.enableNotification);
  q.disableNotification = notification("disableNotification", "disableNotification", P.disableNotification);

  // popOrEnableNotification calls tryEnableNotification and popInto itself: while it runs,
  // those are the plain methods, so the reference steps once, as one operation.
  const wrappedPop = q.popInto;
  const wrappedTry = q.tryEnableNotification;
  const plainTry = Object.getPrototypeOf(q).tryEnableNotification.bind(q) as typeof q.tryEnableNotification;
  const popOrEnable = q.popOrEnableNotificationInto.bind(q);
  q.popOrEnableNotificationInto = (chain: PackedDescriptorChain): boolean => {
    q.popInto = popInto;
    q.tryEnableNotification = plainTry;
    try {
      const ref = P.popOrEnableNotification(spec, live);
      if (ref.result.ok) probe.beforePop?.(ref.result.value, spec);
      const popped = popOrEnable(chain);
      samePop("popOrEnableNotification", popped, chain, ref);
      return popped;
    } finally {
      q.popInto = wrappedPop;
      q.tryEnableNotification = wrappedTry;
    }
  };
};
