/**
 * The reference model beside a real guest's rings. A real Linux guest runs in another
 * process and writes its rings while our device reads them, so the simulator's shadow
 * (sim/device/queue-shadow.ts, which steps spec/queue.ts before the device on a memory
 * nobody else touches) cannot be used as is. This watcher wraps the same SplitQueue
 * methods of the device a vhost-user back-end serves, and:
 *
 * - steps spec/queue.ts AFTER the device on the same live memory: whatever the device
 *   popped, the model must pop too (the driver only moves avail.idx forward), with the
 *   same head and the same descriptors (SIM-QUEUE-REFINES); a disagreement that the
 *   driver's concurrent writes explain (avail.idx, used_event or avail.flags moved during
 *   the operation) is not counted, and the model is re-synchronised from the device;
 * - runs the model on a view of guest memory whose rings are separate small regions, so
 *   the model's copy-on-write stays a few KiB (not the whole guest RAM) and the used ring
 *   it writes is compared with the one the device wrote;
 * - checks the device's used entries: the id is a chain it holds (SIM-USED-ID), the length
 *   at most the chain's writable bytes (SIM-USED-LEN);
 * - reports the Linux driver's departures as findings, not failures: a published chain
 *   the model refuses (CHAIN-*, VQ-POP-HEAD), avail.idx more than a ring ahead
 *   (VQ-POP-AVAIL-IDX), a chain changed while the device held it (SIM-CHAIN-MATCH).
 */
import type { VirtioDevice } from "../../impl/device/virtio-device.ts";
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import type { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import { PopStatus, type SplitQueue } from "../../impl/queue/split-queue.ts";
import { readU16, type SpecMemory, type SpecRegion } from "../../spec/memory.ts";
import * as Q from "../../spec/queue.ts";
import { walkMismatch } from "../oracle.ts";
import { availEventOffset, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";

export interface Finding {
  /** Who departed from the model: our device, or the guest's (Linux) driver. */
  readonly side: "device" | "driver";
  readonly rule: string;
  readonly queue: string;
  readonly message: string;
}

export interface QueueWatchStats {
  readonly name: string;
  pops: number;
  used: number;
  publishes: number;
  kickDecisions: number;
  /** Operations whose comparison the driver's concurrent writes made meaningless. */
  racesForgiven: number;
}

/** The rule a chain walk's end breaks (spec/queue.ts CHAIN_RULES). */
export const chainErrorRule = (tag: string): string => {
  switch (tag) {
    case "InvalidDescriptorIndex":
      return "CHAIN-NEXT-RANGE";
    case "ChainTtlExpired":
      return "CHAIN-TTL";
    case "InvalidIndirectDescriptor":
      return "CHAIN-INDIRECT-NESTED";
    case "InvalidIndirectDescriptorTable":
      return "CHAIN-INDIRECT-LEN";
    case "DescriptorChainOverflow":
      return "CHAIN-LEN-U32";
    default:
      return "CHAIN-MEMORY";
  }
};

/**
 * Guest memory as the model sees it: the same bytes (subarrays, no copy), with each ring
 * cut out as its own region so the model's writes (spec/memory.ts copies the region it
 * writes) copy only that ring.
 */
export const ringWindowMemory = (
  mem: GuestMemory,
  cuts: readonly (readonly [bigint, bigint])[],
): SpecMemory => {
  const regions: SpecRegion[] = [];
  for (const r of mem.regions) {
    const base = BigInt(r.base);
    const end = base + BigInt(r.bytes.length);
    const points = new Set<bigint>([base, end]);
    for (const [lo, hi] of cuts) {
      if (lo > base && lo < end) points.add(lo);
      if (hi > base && hi < end) points.add(hi);
    }
    const sorted = [...points].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (let i = 0; i + 1 < sorted.length; i++) {
      const lo = sorted[i]!;
      const hi = sorted[i + 1]!;
      regions.push({ base: lo, bytes: r.bytes.subarray(Number(lo - base), Number(hi - base)) });
    }
  }
  return { regions };
};

const sameBytes = (a: Uint8Array, b: Uint8Array): number => {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
};

interface Held {
  readonly writable: number;
  readonly descriptors: readonly Q.SpecDescriptor[];
}

type Method = "popInto" | "undoPop" | "addUsed" | "publishUsed" | "prepareKick" | "tryEnableNotification";
const METHODS: readonly (
  Method | "disableNotification" | "enableNotification" | "popOrEnableNotificationInto"
)[] = [
  "popInto",
  "undoPop",
  "addUsed",
  "publishUsed",
  "prepareKick",
  "tryEnableNotification",
  "disableNotification",
  "enableNotification",
  "popOrEnableNotificationInto",
];

export class RingWatch {
  readonly findings: Finding[] = [];
  readonly stats: QueueWatchStats[] = [];
  private readonly installed: SplitQueue[] = [];
  /** Findings kept per rule and queue (a driver repeating one departure is one line and a count). */
  private readonly seen = new Map<string, number>();

  constructor(private readonly maxFindings = 50) {}

  private report(f: Finding): void {
    const key = `${f.side} ${f.rule} ${f.queue}`;
    const n = (this.seen.get(key) ?? 0) + 1;
    this.seen.set(key, n);
    if (n === 1 && this.findings.length < this.maxFindings) this.findings.push(f);
  }

  /** How many times each kept finding happened. */
  count(f: Finding): number {
    return this.seen.get(`${f.side} ${f.rule} ${f.queue}`) ?? 0;
  }

  get deviceFindings(): readonly Finding[] {
    return this.findings.filter((f) => f.side === "device");
  }
  get driverFindings(): readonly Finding[] {
    return this.findings.filter((f) => f.side === "driver");
  }

  /**
   * `device` with every queue watched from activation to reset; the transport (vhost-user
   * back-end) drives the wrapper exactly as it would drive the device.
   */
  wrap(device: VirtioDevice, queueNames: readonly string[]): VirtioDevice {
    const install = (q: SplitQueue, memory: GuestMemory, name: string): void => this.install(q, memory, name);
    const uninstall = (): void => this.uninstall();
    let generation = 0;
    return {
      get deviceId() {
        return device.deviceId;
      },
      get name() {
        return device.name;
      },
      get offeredFeatures() {
        return device.offeredFeatures;
      },
      get ackedFeatures() {
        return device.ackedFeatures;
      },
      ackFeatures: (acked) => device.ackFeatures(acked),
      get configSize() {
        return device.configSize;
      },
      readConfig: (offset, into) => device.readConfig(offset, into),
      writeConfig: (offset, data) => device.writeConfig(offset, data),
      get queues() {
        return device.queues;
      },
      activate: (memory, notify) => {
        const r = device.activate(memory, notify);
        if (r.ok) {
          generation++;
          device.queues.forEach((q, i) =>
            install(
              q,
              memory,
              `${queueNames[i] ?? `queue ${i}`}${generation > 1 ? ` (activation ${generation})` : ""}`,
            ),
          );
        }
        return r;
      },
      get isActive() {
        return device.isActive;
      },
      reset: () => {
        uninstall();
        device.reset();
      },
      processQueue: (queue) => device.processQueue(queue),
      get run() {
        return device.run;
      },
    };
  }

  /** Puts the plain methods back on every watched queue. */
  uninstall(): void {
    for (const q of this.installed) {
      for (const m of METHODS) delete (q as unknown as Record<string, unknown>)[m];
    }
    this.installed.length = 0;
  }

  install(q: SplitQueue, mem: GuestMemory, name: string): void {
    const report = (f: Finding): void => this.report(f);
    let spec: Q.SpecQueue = q.state();
    const size = spec.size;
    const cuts: [bigint, bigint][] = [
      [spec.descTable, spec.descTable + Q.descTableBytes(size)],
      [spec.availRing, spec.availRing + Q.availRingBytes(size)],
      [spec.usedRing, spec.usedRing + Q.usedRingBytes(size)],
    ];
    const live = ringWindowMemory(mem, cuts);
    // The model keeps its own used ring (only the device writes it, so the two must stay
    // equal); every other region is the live guest memory.
    const usedRegion = live.regions.findIndex((r) => r.base === spec.usedRing);
    const model: SpecMemory = {
      regions: live.regions.map((r, i) =>
        i === usedRegion ? { base: r.base, bytes: Uint8Array.from(r.bytes) } : r,
      ),
    };
    const st: QueueWatchStats = { name, pops: 0, used: 0, publishes: 0, kickDecisions: 0, racesForgiven: 0 };
    this.stats.push(st);
    this.installed.push(q);
    const held = new Map<number, Held>();
    let lastHead = -1;

    const device = (rule: string, message: string): void =>
      report({ side: "device", rule, queue: name, message });
    const driver = (rule: string, message: string): void =>
      report({ side: "driver", rule, queue: name, message });

    /** What the driver may change under an operation: avail.flags, avail.idx, used_event. */
    const driverWords = (): number => {
      const idx = Q.availIdx(spec, live);
      const ev = Q.usedEvent(spec, live);
      const flags = readU16(live, spec.availRing);
      return ((ev.ok ? ev.value : 0) * 0x10000 + idx) * 0x10000 + (flags.ok ? flags.value : 0);
    };
    /** The driver moved under the operation: take the device's state and used ring as they are. */
    const forgive = (): void => {
      st.racesForgiven++;
      spec = q.state();
      const u = live.regions[usedRegion];
      if (u !== undefined)
        (model.regions as SpecRegion[])[usedRegion] = { base: u.base, bytes: Uint8Array.from(u.bytes) };
    };

    /**
     * A race on avail_event: the device wrote it (ring empty at first look) and the driver then
     * published, so the model, stepping after both, pops without writing it. Only the two bytes
     * of avail_event are taken from the device; the rest of the used ring is still compared.
     */
    const takeAvailEvent = (): void => {
      const u = live.regions[usedRegion];
      const m = model.regions[usedRegion];
      if (u === undefined || m === undefined) return;
      const at = availEventOffset(size);
      if (u.bytes[at] === m.bytes[at] && u.bytes[at + 1] === m.bytes[at + 1]) return;
      st.racesForgiven++;
      const bytes = Uint8Array.from(m.bytes);
      bytes[at] = u.bytes[at]!;
      bytes[at + 1] = u.bytes[at + 1]!;
      (model.regions as SpecRegion[])[usedRegion] = { base: m.base, bytes };
    };

    /** Positions in step, and every ring region the model wrote equal to what the device wrote. */
    const agree = (what: string, after: Q.Step<unknown>): void => {
      spec = after.queue;
      const s = q.state();
      if (s.nextAvail !== spec.nextAvail || s.nextUsed !== spec.nextUsed || s.numAdded !== spec.numAdded) {
        device(
          "SIM-QUEUE-REFINES",
          `${what}: device at avail ${s.nextAvail} used ${s.nextUsed} added ${s.numAdded}, reference ${spec.nextAvail} ${spec.nextUsed} ${spec.numAdded}`,
        );
        spec = s;
      }
      for (let i = 0; i < live.regions.length; i++) {
        const want = after.memory.regions[i]!;
        const got = live.regions[i]!;
        if (want.bytes === got.bytes) continue;
        if (i === usedRegion) (model.regions as SpecRegion[])[i] = want;
        const k = sameBytes(want.bytes, got.bytes);
        if (k >= 0)
          device(
            "SIM-QUEUE-REFINES",
            `${what}: byte at ${got.base + BigInt(k)} is ${got.bytes[k]} after the device, ${want.bytes[k]} after the reference`,
          );
        // Back in step with what the guest sees, so one departure is reported once.
        if (k >= 0 && i === usedRegion)
          (model.regions as SpecRegion[])[i] = { base: got.base, bytes: Uint8Array.from(got.bytes) };
      }
    };

    const writableOf = (descs: readonly Q.SpecDescriptor[]): number => {
      let n = 0;
      for (const d of descs) if ((d.flags & VIRTQ_DESC_F_WRITE) !== 0) n += d.len;
      return n;
    };

    /** After the device popped `chain`: the model pops the same head and walks the same descriptors. */
    const checkPopped = (what: string, chain: DescriptorChain): void => {
      st.pops++;
      const ref = Q.pop(spec, model);
      const r = ref.result;
      if (!r.ok || r.value === null) {
        device(
          "SIM-QUEUE-REFINES",
          `${what}: device popped head ${chain.headIndex}, reference ${r.ok ? "nothing" : r.error._tag}`,
        );
        spec = q.state();
        return;
      }
      const p = r.value;
      if (p.head !== chain.headIndex)
        device("VQ-POP-HEAD", `${what}: device popped head ${chain.headIndex}, reference ${p.head}`);
      const walked = walkMismatch(chain, p.head, p.walk);
      if (walked !== undefined) device("SIM-QUEUE-REFINES", `${what}: ${walked}`);
      if (p.walk.end !== null)
        driver(
          chainErrorRule(p.walk.end._tag),
          `head ${p.head}: the published chain ends with ${p.walk.end._tag}`,
        );
      if (held.has(p.head))
        device("SIM-USED-ID", `head ${p.head} popped again while the device still holds it`);
      held.set(p.head, { writable: writableOf(p.walk.descriptors), descriptors: p.walk.descriptors });
      lastHead = p.head;
      agree(what, ref);
    };

    /** After the device popped nothing: an error must be the model's too; "empty" may be a race. */
    const checkNotPopped = (what: string, before: number): void => {
      if (q.lastPop === PopStatus.Empty && driverWords() !== before) return forgive();
      const ref = Q.pop(spec, model);
      const r = ref.result;
      if (q.lastPop === PopStatus.Error) {
        const tag = q.lastError?._tag;
        if (tag === "InvalidAvailIdx")
          driver(
            "VQ-POP-AVAIL-IDX",
            `avail.idx ${Q.availIdx(spec, live)} is more than ${size} ahead of ${spec.nextAvail}`,
          );
        if (r.ok || r.error._tag !== tag)
          device(
            "SIM-QUEUE-REFINES",
            `${what}: device error ${tag}, reference ${r.ok ? "no error" : r.error._tag}`,
          );
        return;
      }
      if (q.lastPop === PopStatus.InvalidHead) {
        driver(
          "VQ-POP-HEAD",
          `avail.ring[${spec.nextAvail % size}] = ${Q.readAvailRing(spec, live, spec.nextAvail % size)} is not a valid head (CHAIN-CHECKED-NEW)`,
        );
      }
      if (!r.ok || r.value !== null) {
        if (driverWords() !== before) return forgive();
        device(
          "SIM-QUEUE-REFINES",
          `${what}: device popped nothing, reference ${r.ok ? `head ${r.value?.head}` : r.error._tag}`,
        );
        spec = q.state();
      }
    };

    const popInto = q.popInto.bind(q);
    q.popInto = (chain: DescriptorChain): boolean => {
      const before = driverWords();
      const popped = popInto(chain);
      if (popped) checkPopped("pop", chain);
      else checkNotPopped("pop", before);
      return popped;
    };

    const undoPop = q.undoPop.bind(q);
    q.undoPop = (): void => {
      undoPop();
      if (lastHead >= 0) held.delete(lastHead);
      lastHead = -1;
      agree("undoPop", { queue: Q.undoPop(spec), memory: model, result: undefined });
    };

    const addUsed = q.addUsed.bind(q);
    q.addUsed = (index: number, len: number) => {
      st.used++;
      const h = held.get(index);
      if (h === undefined) device("SIM-USED-ID", `used id ${index} is not a chain the device holds`);
      else {
        if (len > h.writable)
          device(
            "SIM-USED-LEN",
            `used len ${len} for head ${index} is more than its ${h.writable} writable bytes`,
          );
        // The driver must leave a chain alone until the device has used it.
        const now = Q.walkChain(live, spec.descTable, size, index).descriptors;
        const changed =
          now.length !== h.descriptors.length ||
          now.some((d, i) => {
            const w = h.descriptors[i]!;
            return d.addr !== w.addr || d.len !== w.len || d.flags !== w.flags;
          });
        if (changed)
          driver("SIM-CHAIN-MATCH", `head ${index}: descriptors changed while the device held the chain`);
        held.delete(index);
      }
      const ref = Q.addUsed(spec, model, index, len);
      const r = addUsed(index, len);
      if (r.ok !== ref.result.ok)
        device(
          "SIM-QUEUE-REFINES",
          `addUsed(${index}, ${len}): device ok=${r.ok}, reference ok=${ref.result.ok}`,
        );
      agree("addUsed", ref);
      return r;
    };

    const publishUsed = q.publishUsed.bind(q);
    q.publishUsed = () => {
      st.publishes++;
      const ref = Q.publishUsed(spec, model);
      const r = publishUsed();
      agree("publishUsed", ref);
      return r;
    };

    const prepareKick = q.prepareKick.bind(q);
    q.prepareKick = (honour = false): boolean => {
      st.kickDecisions++;
      const before = driverWords();
      const need = prepareKick(honour);
      const ref = Q.prepareKick(spec, model, honour);
      if (need !== ref.result) {
        if (driverWords() !== before) forgive();
        else
          device(
            "VQ-PREPARE-KICK",
            `device ${need ? "interrupts" : "stays quiet"}, reference ${ref.result ? "interrupts" : "stays quiet"}`,
          );
      }
      agree("prepareKick", ref);
      return need;
    };

    const tryEnable = q.tryEnableNotification.bind(q);
    q.tryEnableNotification = () => {
      const before = driverWords();
      const r = tryEnable();
      const ref = Q.tryEnableNotification(spec, model);
      const a = r.ok ? String(r.value) : r.error._tag;
      const b = ref.result.ok ? String(ref.result.value) : ref.result.error._tag;
      if (a !== b && driverWords() !== before) {
        forgive();
        return r;
      }
      // Both saw chains waiting, the device only after writing avail_event (see takeAvailEvent).
      if (driverWords() !== before) takeAvailEvent();
      if (a !== b) device("VQ-TRY-ENABLE-NOTIFICATION", `device ${a}, reference ${b}`);
      agree("tryEnableNotification", ref);
      return r;
    };

    const disable = q.disableNotification.bind(q);
    q.disableNotification = () => {
      const r = disable();
      agree("disableNotification", Q.disableNotification(spec, model));
      return r;
    };

    const enable = q.enableNotification.bind(q);
    q.enableNotification = () => {
      const before = driverWords();
      const r = enable();
      const ref = Q.enableNotification(spec, model);
      const a = r.ok ? String(r.value) : r.error._tag;
      const b = ref.result.ok ? String(ref.result.value) : ref.result.error._tag;
      if (a !== b && driverWords() !== before) {
        forgive();
        return r;
      }
      if (a !== b) device("VQ-NO-NOTIFY", `enableNotification: device ${a}, reference ${b}`);
      agree("enableNotification", ref);
      return r;
    };

    // popOrEnableNotificationInto calls tryEnableNotification and popInto itself: while it
    // runs those are the plain methods, and the model steps once, after it, as one operation.
    const popOrEnable = q.popOrEnableNotificationInto.bind(q);
    q.popOrEnableNotificationInto = (chain: DescriptorChain): boolean => {
      const wrappedPop = q.popInto;
      const wrappedTry = q.tryEnableNotification;
      q.popInto = popInto;
      q.tryEnableNotification = tryEnable;
      const before = driverWords();
      let popped: boolean;
      try {
        popped = popOrEnable(chain);
      } finally {
        q.popInto = wrappedPop;
        q.tryEnableNotification = wrappedTry;
      }
      if (popped) {
        // The model only pops: with chains waiting its tryEnable writes nothing. The device
        // may have found the ring empty, written avail_event, and then seen a chain the
        // driver published meanwhile (re-read of avail.idx): the same avail_event is taken
        // from the device when the driver moved during the operation.
        if (driverWords() !== before) takeAvailEvent();
        checkPopped("popOrEnableNotification", chain);
      } else if (q.lastPop === PopStatus.Empty) {
        const ref = Q.popOrEnableNotification(spec, model);
        if (ref.result.ok && ref.result.value === null) agree("popOrEnableNotification", ref);
        else if (driverWords() !== before) forgive();
        else {
          device(
            "SIM-QUEUE-REFINES",
            `popOrEnableNotification: device popped nothing, reference ${ref.result.ok ? `head ${ref.result.value?.head}` : ref.result.error._tag}`,
          );
          spec = q.state();
        }
      } else checkNotPopped("popOrEnableNotification", before);
      return popped;
    };
  }
}
