/**
 * The device side of one split queue as the simulator drives it: impl/queue's SplitQueue,
 * with the reference model (spec/queue.ts) run beside it when the oracle is on. Every
 * operation goes to both; results, ring positions, the chain walked and the bytes written
 * must agree (SIM-QUEUE-REFINES). Scenarios speak this small interface, so a change in the
 * queue's API touches only this file.
 */
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import { PopStatus, SplitQueue } from "../../impl/queue/split-queue.ts";
import type { SpecMemory } from "../../spec/memory.ts";
import * as Q from "../../spec/queue.ts";
import type { SimContext } from "../engine.ts";
import type { RingLayout } from "../guest/virtio-ring.ts";
import { specMemoryOf } from "../oracle.ts";

export type PopOutcome =
  | { readonly kind: "chain" }
  | { readonly kind: "empty" }
  /** The queue refused: a typed error (InvalidAvailIdx...) or a refused head (InvalidHead). */
  | { readonly kind: "error"; readonly tag: string };

const EMPTY: PopOutcome = { kind: "empty" };
const CHAIN: PopOutcome = { kind: "chain" };

export interface DeviceQueuePort {
  readonly size: number;
  readonly eventIdx: boolean;
  readonly queue: SplitQueue;
  /** Chains available and not yet popped (mod 2^16; more than size means a bad avail.idx). */
  len(): number;
  /** Pops the next chain into the reusable cursor. */
  pop(chain: DescriptorChain): PopOutcome;
  /** used.ring[next_used] = {head, len}; false when refused (nothing written). */
  addUsed(head: number, len: number): boolean;
  /** Writes used.idx = next_used (its own step, after the elements). */
  publishUsed(): void;
  /** Must the device interrupt the driver for what it added since the last call? */
  prepareKick(): boolean;
  /** avail_event = next_avail (EVENT_IDX) or clears NO_NOTIFY; true when nothing new arrived. */
  tryEnableNotification(): boolean | "error";
  /** VRING_USED_F_NO_NOTIFY on (the device is polling) or off. */
  setNoNotify(on: boolean): void;
  readonly nextAvail: number;
  readonly nextUsed: number;
  newChain(): DescriptorChain;
}

const bytesOf = (a: Uint8Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

const showWalk = (w: readonly { addr: bigint; len: number; flags: number }[], end: string | null): string =>
  `[${w.map((d) => `${d.addr}+${d.len}/${d.flags}`).join(",")}]${end === null ? "" : ` end ${end}`}`;

export const makeQueuePort = (
  ctx: SimContext,
  mem: GuestMemory,
  ring: RingLayout,
  eventIdx: boolean,
): DeviceQueuePort => {
  const q = new SplitQueue(Math.max(256, ring.size));
  q.configure({
    size: ring.size,
    ready: true,
    descTable: ring.desc,
    availRing: ring.avail,
    usedRing: ring.used,
  });
  if (eventIdx) q.enableNotifSuppression();
  const init = q.initialize(mem);
  if (!init.ok) throw new Error(`simulator set-up: queue refused its rings: ${init.error._tag}`);
  const live: SpecMemory = specMemoryOf(mem);
  let spec: Q.SpecQueue = q.state();
  const oracle = ctx.oracle;

  /** SIM-QUEUE-REFINES: positions equal, and the reference's writes equal the device's. */
  const agree = (what: string, after: Q.Step<unknown>): void => {
    spec = after.queue;
    const s = q.state();
    if (s.nextAvail !== spec.nextAvail || s.nextUsed !== spec.nextUsed || s.numAdded !== spec.numAdded) {
      ctx.fail(
        "SIM-QUEUE-REFINES",
        `${what}: device positions avail ${s.nextAvail} used ${s.nextUsed} added ${s.numAdded}, reference ${spec.nextAvail} ${spec.nextUsed} ${spec.numAdded}`,
      );
    }
    for (let i = 0; i < live.regions.length; i++) {
      const want = after.memory.regions[i]!.bytes;
      const got = live.regions[i]!.bytes;
      if (want === got || bytesOf(want).equals(bytesOf(got))) continue;
      for (let k = 0; k < got.length; k++) {
        if (want[k] !== got[k])
          ctx.fail(
            "SIM-QUEUE-REFINES",
            `${what}: byte at ${live.regions[i]!.base + BigInt(k)} is ${got[k]} after the device, ${want[k]} after the reference`,
          );
      }
    }
  };

  const port: DeviceQueuePort = {
    size: ring.size,
    eventIdx,
    queue: q,
    len: () => q.len(),
    pop(chain) {
      const ref = oracle ? Q.pop(spec, live) : null;
      const popped = q.popInto(chain);
      const out: PopOutcome = popped
        ? CHAIN
        : q.lastPop === PopStatus.Empty
          ? EMPTY
          : {
              kind: "error",
              tag: q.lastPop === PopStatus.InvalidHead ? "InvalidHead" : (q.lastError?._tag ?? "Error"),
            };
      if (ref !== null) {
        const r = ref.result;
        const refKind = !r.ok ? `error ${r.error._tag}` : r.value === null ? "none" : `head ${r.value.head}`;
        const gotKind =
          out.kind === "chain"
            ? `head ${chain.headIndex}`
            : out.kind === "error" && out.tag !== "InvalidHead"
              ? `error ${out.tag}`
              : "none";
        if (refKind !== gotKind)
          ctx.fail("SIM-QUEUE-REFINES", `pop: device gave ${gotKind}, reference ${refKind}`);
        if (r.ok && r.value !== null) {
          // The chain the device walks is the chain the reference walks.
          const ds: { addr: bigint; len: number; flags: number }[] = [];
          for (let ok = chain.rewind(); ok; ok = chain.advance())
            ds.push({ addr: chain.addrBig(), len: chain.len, flags: chain.flags });
          const end = chain.end === null ? null : chain.end._tag;
          chain.rewind();
          const want = r.value.walk;
          const wantEnd = want.end === null ? null : want.end._tag;
          const same =
            end === wantEnd &&
            ds.length === want.descriptors.length &&
            ds.every((d, i) => {
              const w = want.descriptors[i]!;
              return d.addr === w.addr && d.len === w.len && d.flags === w.flags;
            });
          if (!same)
            ctx.fail(
              "SIM-QUEUE-REFINES",
              `pop head ${chain.headIndex}: device walked ${showWalk(ds, end)}, reference ${showWalk(want.descriptors, wantEnd)}`,
            );
        }
        agree("pop", ref);
      }
      return out;
    },
    addUsed(head, len) {
      const ref = oracle ? Q.addUsed(spec, live, head, len) : null;
      const r = q.addUsed(head, len);
      if (ref !== null) {
        if (ref.result.ok !== r.ok)
          ctx.fail(
            "SIM-QUEUE-REFINES",
            `addUsed(${head}, ${len}): device ok=${r.ok}, reference ok=${ref.result.ok}`,
          );
        agree("addUsed", ref);
      }
      return r.ok;
    },
    publishUsed() {
      const ref = oracle ? Q.publishUsed(spec, live) : null;
      q.publishUsed();
      if (ref !== null) agree("publishUsed", ref);
    },
    prepareKick() {
      const ref = oracle ? Q.prepareKick(spec, live, true) : null;
      const need = q.prepareKick(true);
      if (ref !== null) {
        if (ref.result !== need)
          ctx.fail("SIM-QUEUE-REFINES", `prepareKick: device ${need}, reference ${ref.result}`);
        agree("prepareKick", ref);
      }
      return need;
    },
    tryEnableNotification() {
      const ref = oracle ? Q.tryEnableNotification(spec, live) : null;
      const r = q.tryEnableNotification();
      if (ref !== null) {
        const a = r.ok ? String(r.value) : r.error._tag;
        const b = ref.result.ok ? String(ref.result.value) : ref.result.error._tag;
        if (a !== b) ctx.fail("SIM-QUEUE-REFINES", `tryEnableNotification: device ${a}, reference ${b}`);
        agree("tryEnableNotification", ref);
      }
      return r.ok ? r.value : "error";
    },
    setNoNotify(on) {
      const ref = oracle ? (on ? Q.disableNotification(spec, live) : Q.enableNotification(spec, live)) : null;
      if (on) q.disableNotification();
      else q.enableNotification();
      if (ref !== null) agree(on ? "disableNotification" : "enableNotification", ref);
    },
    get nextAvail() {
      return q.nextAvail;
    },
    get nextUsed() {
      return q.nextUsed;
    },
    newChain() {
      return new DescriptorChain(mem);
    },
  };
  return port;
};
