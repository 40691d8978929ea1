/**
 * The reference model beside a device's own queues: wraps the methods of a SplitQueue a
 * device (virtio-net, virtio-vsock) drives, so that every pop, undo, used element,
 * publication and notification decision is also computed by spec/queue.ts on the same
 * guest memory, and the results, ring positions, chain walked and bytes written must agree
 * (SIM-QUEUE-REFINES). The device keeps calling its queue as usual.
 */
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import type { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import { PopStatus, type SplitQueue } from "../../impl/queue/split-queue.ts";
import { eachWrite, firstDifference, locate, type SpecMemory } from "../../spec/memory.ts";
import * as Q from "../../spec/queue.ts";
import type { Result } from "../../spec/result.ts";
import type { SimContext } from "../engine.ts";
import { specMemoryOf, turnChecksOf, walkMismatch } from "../oracle.ts";

/**
 * Where the device's memory (`live`) and the reference model's after the same step differ:
 * one line naming the first differing byte, or undefined when they agree. Only the bytes the
 * reference wrote are compared (the rest it shares with the live memory).
 */
export const memoryMismatch = (live: SpecMemory, after: SpecMemory): string | undefined => {
  for (let i = 0; i < live.regions.length; i++) {
    const want = after.regions[i]!;
    const got = live.regions[i]!.bytes;
    const k = want === live.regions[i] ? -1 : firstDifference(want, got);
    if (k < 0) continue;
    return `byte at ${live.regions[i]!.base + BigInt(k)} is ${got[k]} after the device, ${want.bytes[k]} after the reference`;
  }
  return undefined;
};

/**
 * The whole used ring over each device turn (SIM-QUEUE-REFINES). memoryMismatch compares the
 * bytes the reference wrote; a byte the device wrote and the reference did not reads the same
 * in both (the reference's memory is its writes over the live memory). So the used ring is kept
 * here as the turn found it (what the guest wrote before is taken as it is) plus every byte the
 * reference wrote during the turn, and must equal the live one when the turn ends (once per
 * turn: two compares of up to 2 KiB per operation cost ~25% of a run). Gives what to call after
 * each operation whose reference bytes agree, or null when the ring is not in memory.
 */
const watchUsedRing = (
  mem: GuestMemory,
  live: SpecMemory,
  spec: Q.SpecQueue,
  fail: (what: string, detail: string) => never,
): ((what: string, after: SpecMemory) => void) | null => {
  const len = Q.usedRingBytes(spec.size);
  const at = locate(live, spec.usedRing, len);
  if (!spec.ready || !at.ok) return null;
  const { region, offset } = at.value;
  const bytes = live.regions[region]!.bytes;
  const view = Buffer.from(bytes.buffer, bytes.byteOffset + offset, Number(len));
  const want = Buffer.from(view);
  const end = offset + view.length;
  let last = "";
  /** Copies a write of the reference (offset and length in the region) that meets the ring. */
  const take = (off: number, n: number): void => {
    // A few bytes (a used element, an index): one by one, no view.
    for (let k = Math.max(off, offset); k < Math.min(off + n, end); k++) want[k - offset] = bytes[k]!;
  };
  const turn = turnChecksOf(mem);
  turn.begin.push(() => {
    want.set(view);
    last = "";
  });
  turn.end.push(() => {
    if (view.equals(want)) return;
    let k = 0;
    while (view[k] === want[k]) k++;
    fail(
      last === "" ? "device turn" : `device turn (last operation ${last})`,
      `byte ${k} of the used ring (at ${spec.usedRing + BigInt(k)}) is ${view[k]} after the device, ${want[k]} before it, and the reference did not write it`,
    );
  });
  return (what, after) => {
    last = what;
    const r = after.regions[region]!;
    const below = live.regions[region]!;
    if (r !== below) eachWrite(r, below, take);
  };
};

/** What the reference model is about to do, for the rest of the oracle to reuse. */
export interface ShadowProbe {
  /** The reference popped this chain (null: nothing available) just before the device pops. */
  beforePop?(popped: Q.SpecPopped | null): void;
}

export const shadowWithSpec = (
  ctx: SimContext,
  q: SplitQueue,
  mem: GuestMemory,
  name: string,
  probe: ShadowProbe = {},
): void => {
  if (!ctx.oracle) return;
  const live: SpecMemory = specMemoryOf(mem);
  let spec: Q.SpecQueue = q.state();

  const fail = (what: string, detail: string): never =>
    ctx.fail("SIM-QUEUE-REFINES", `${name} ${what}: ${detail}`);

  const usedRingWrites = watchUsedRing(mem, live, spec, fail);

  const agree = (what: string, after: Q.Step<unknown>): void => {
    spec = after.queue;
    // The device's positions through its getters: the same fields its state() copies, without
    // building that object for every operation.
    if (q.nextAvail !== spec.nextAvail || q.nextUsed !== spec.nextUsed || q.numAdded !== spec.numAdded)
      fail(
        what,
        `device positions avail ${q.nextAvail} used ${q.nextUsed} added ${q.numAdded}, reference ${spec.nextAvail} ${spec.nextUsed} ${spec.numAdded}`,
      );
    const bytes = memoryMismatch(live, after.memory);
    if (bytes !== undefined) fail(what, bytes);
    usedRingWrites?.(what, after.memory);
  };

  /** The chain in the cursor equals the reference's walk (the cursor is left rewound). */
  const sameWalk = (chain: DescriptorChain, popped: Q.SpecPopped): void => {
    if (chain.headIndex !== popped.head)
      fail("pop", `device popped head ${chain.headIndex}, reference ${popped.head}`);
    const walked = walkMismatch(chain, popped.head, popped.walk);
    if (walked !== undefined) fail("pop", walked);
  };

  const samePop = (
    what: string,
    popped: boolean,
    chain: DescriptorChain,
    ref: Q.Step<Result<Q.SpecPopped | null, Q.QueueError>>,
  ): void => {
    const r = ref.result;
    if (popped) {
      if (!r.ok || r.value === null)
        fail(what, `device popped head ${chain.headIndex}, reference ${r.ok ? "none" : r.error._tag}`);
      else sameWalk(chain, r.value);
    } else if (q.lastPop === PopStatus.Error) {
      if (r.ok || r.error._tag !== q.lastError?._tag)
        fail(what, `device error ${q.lastError?._tag}, reference ${r.ok ? "no error" : r.error._tag}`);
    } else if (!r.ok || r.value !== null) {
      fail(what, `device popped nothing, reference ${r.ok ? `head ${r.value?.head}` : r.error._tag}`);
    }
    agree(what, ref);
  };

  const popInto = q.popInto.bind(q);
  q.popInto = (chain: DescriptorChain): boolean => {
    const ref = Q.pop(spec, live);
    if (ref.result.ok) probe.beforePop?.(ref.result.value);
    const popped = popInto(chain);
    samePop("pop", popped, chain, ref);
    return popped;
  };

  const undoPop = q.undoPop.bind(q);
  q.undoPop = (): void => {
    undoPop();
    agree("undoPop", { queue: Q.undoPop(spec), memory: live, result: undefined });
  };

  const addUsed = q.addUsed.bind(q);
  q.addUsed = (index: number, len: number) => {
    const ref = Q.addUsed(spec, live, index, len);
    const r = addUsed(index, len);
    if (r.ok !== ref.result.ok)
      fail("addUsed", `(${index}, ${len}): device ok=${r.ok}, reference ok=${ref.result.ok}`);
    agree("addUsed", ref);
    return r;
  };

  const publishUsed = q.publishUsed.bind(q);
  q.publishUsed = () => {
    const ref = Q.publishUsed(spec, live);
    const r = publishUsed();
    agree("publishUsed", ref);
    return r;
  };

  const prepareKick = q.prepareKick.bind(q);
  q.prepareKick = (honour = false): boolean => {
    const ref = Q.prepareKick(spec, live, honour);
    const need = prepareKick(honour);
    if (need !== ref.result) fail("prepareKick", `device ${need}, reference ${ref.result}`);
    agree("prepareKick", ref);
    return need;
  };

  const tryEnable = q.tryEnableNotification.bind(q);
  q.tryEnableNotification = () => {
    const ref = Q.tryEnableNotification(spec, live);
    const r = tryEnable();
    const a = r.ok ? String(r.value) : r.error._tag;
    const b = ref.result.ok ? String(ref.result.value) : ref.result.error._tag;
    if (a !== b) fail("tryEnableNotification", `device ${a}, reference ${b}`);
    agree("tryEnableNotification", ref);
    return r;
  };

  const disable = q.disableNotification.bind(q);
  q.disableNotification = () => {
    const ref = Q.disableNotification(spec, live);
    const r = disable();
    agree("disableNotification", ref);
    return r;
  };

  const enable = q.enableNotification.bind(q);
  q.enableNotification = () => {
    const ref = Q.enableNotification(spec, live);
    const r = enable();
    const a = r.ok ? String(r.value) : r.error._tag;
    const b = ref.result.ok ? String(ref.result.value) : ref.result.error._tag;
    if (a !== b) fail("enableNotification", `device ${a}, reference ${b}`);
    agree("enableNotification", ref);
    return r;
  };

  // popOrEnableNotification calls tryEnableNotification and popInto itself: while it runs,
  // those are the plain methods, so the reference steps once, as one operation.
  const wrappedPop = q.popInto;
  const wrappedTry = q.tryEnableNotification;
  const popOrEnable = q.popOrEnableNotificationInto.bind(q);
  q.popOrEnableNotificationInto = (chain: DescriptorChain): boolean => {
    q.popInto = popInto;
    q.tryEnableNotification = tryEnable;
    try {
      const ref = Q.popOrEnableNotification(spec, live);
      if (ref.result.ok) probe.beforePop?.(ref.result.value);
      const popped = popOrEnable(chain);
      samePop("popOrEnableNotification", popped, chain, ref);
      return popped;
    } finally {
      q.popInto = wrappedPop;
      q.tryEnableNotification = wrappedTry;
    }
  };
};
