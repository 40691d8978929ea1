/**
 * One queue end to end, on the ring `--ring` chose: the guest driver (impl/queue
 * SplitDriver or PackedDriver, through the ring-neutral GuestQueue) on one side, a device
 * on impl/queue (sim/device/queue-port.ts) on the other, and the oracle between them. The device of this rig is a plain data mover: it reads every readable
 * byte, writes a pattern into part of the writable ones and completes the chain with the
 * count, so what arrives on either side can be checked byte for byte.
 *
 * Used by the `queue` scenario (well-formed traffic) and by `hostile-guest`, which adds
 * corruption through the `faults` hooks.
 */
import { GuestMemory, type GuestRegion } from "../../impl/memory/guest-memory.ts";
import type { DeviceChain } from "../../impl/queue/device-queue.ts";
import { BufferSlabs, NO_ROOM, type GuestBuffer, type GuestQueue } from "../../impl/queue/guest-queue.ts";
import type { GuestRam } from "../../impl/queue/guest-ram.ts";
import { PackedDriver, packedLayoutAt, packedLayoutEnd } from "../../impl/queue/packed-driver.ts";
import { SplitDriver } from "../../impl/queue/split-driver.ts";
import type { SpecMemory } from "../../spec/memory.ts";
import { RING_EVENT_FLAGS_DISABLE, RING_EVENT_FLAGS_ENABLE } from "../../wire/packed.ts";
import {
  VRING_AVAIL_F_NO_INTERRUPT,
  splitLayoutAt,
  splitLayoutEnd,
  vringNeedEvent,
  type SplitLayout,
} from "../../wire/split.ts";
import type { Metric, SimContext } from "../engine.ts";
import { makeQueuePort, type DeviceQueuePort, type RingName } from "../device/queue-port.ts";
import { BoundsGuard, checkChain, specMemoryOf, type RefPop } from "../oracle.ts";

/** A segment of a chain shape: its length and direction (placed in a slab by BufferSlabs). */
export interface Segment {
  readonly len: number;
  readonly write: boolean;
}

/** Where a ring of `size` laid out at `base` ends. */
export const ringEnd = (ring: RingName, base: number, size: number): number =>
  ring === "packed"
    ? packedLayoutEnd(packedLayoutAt(base, size))
    : splitLayoutEnd(splitLayoutAt(base, size), size);

/** A guest driver of `ring` over `mem`, laid out at `base`. */
export const makeGuestQueue = (
  ring: RingName,
  mem: GuestMemory,
  base: number,
  size: number,
  eventIdx: boolean,
  indirect: boolean,
): SplitDriver | PackedDriver =>
  ring === "packed"
    ? PackedDriver.at(mem, size, base, { eventIdx, indirect })
    : SplitDriver.at(mem, size, base, { eventIdx, indirect });

export const SLAB = 16 * 1024;
export const MAX_INDIRECT = 16;

/** The chain shapes real drivers make (Linux virtio-net, virtio-blk, virtio-vsock). */
export const SHAPES = [
  "net-tx",
  "net-rx",
  "blk-read",
  "blk-write",
  "vsock-tx",
  "vsock-rx",
  "random",
] as const;
export type Shape = (typeof SHAPES)[number];

export const makeShape = (ctx: SimContext, shape: Shape, maxSegs: number): Segment[] => {
  const r = ctx.rng;
  const segs: Segment[] = [];
  const cap = Math.max(1, maxSegs);
  switch (shape) {
    case "net-tx": {
      // Header and data in one descriptor (any_header_sg), or header then 1..3 fragments.
      const frame = r.range(42, 1514);
      if (r.chance(0.4) || cap < 2) segs.push({ len: 12 + frame, write: false });
      else {
        segs.push({ len: 12, write: false });
        const frags = Math.min(cap - 1, r.range(1, 3));
        for (let i = 0; i < frags; i++)
          segs.push({ len: Math.max(1, Math.floor(frame / frags)), write: false });
      }
      break;
    }
    case "net-rx":
      // Mergeable buffers: one writable buffer; big packets: header then pages.
      if (r.chance(0.6) || cap < 2) segs.push({ len: 1526, write: true });
      else {
        segs.push({ len: 12, write: true });
        const pages = Math.min(cap - 1, r.range(1, 3));
        for (let i = 0; i < pages; i++) segs.push({ len: 4096, write: true });
      }
      break;
    case "blk-read":
    case "blk-write": {
      // virtio-blk: 16-byte request header, data, 1-byte status the device writes.
      segs.push({ len: 16, write: false });
      const data = Math.min(cap - 2, r.range(1, 2));
      for (let i = 0; i < data; i++) segs.push({ len: 512 * r.range(1, 8), write: shape === "blk-read" });
      if (cap >= 2) segs.push({ len: 1, write: true });
      break;
    }
    case "vsock-tx":
      if (r.chance(0.5) || cap < 2) segs.push({ len: 44 + r.range(0, 4096), write: false });
      else segs.push({ len: 44, write: false }, { len: r.range(1, 4096), write: false });
      break;
    case "vsock-rx":
      if (r.chance(0.5) || cap < 2) segs.push({ len: 44 + 4096, write: true });
      else segs.push({ len: 44, write: true }, { len: 4096, write: true });
      break;
    case "random": {
      // Linux puts the out (readable) segments first, then the in (writable) ones.
      const n = r.range(1, Math.min(cap, 8));
      const outs = r.int(n + 1);
      for (let i = 0; i < n; i++) segs.push({ len: r.range(1, 1500), write: i >= outs });
      break;
    }
  }
  return segs;
};

/**
 * The bytes of a run: random (from the seed), drawn once; chain `seq` carries the stretch
 * of it starting at `outStart(seq)` in its readable part, and the device writes the stretch
 * at `inStart(seq)` into its writable part. Both sides copy and compare whole stretches
 * (memcpy, memcmp), so checking every byte costs little.
 */
const NOISE_SPAN = 1 << 16;
const outStart = (seq: number): number => (seq * 4099) % NOISE_SPAN;
const inStart = (seq: number): number => (seq * 7919 + 12345) % NOISE_SPAN;

const asBuffer = (a: Uint8Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** The first index where a and b (same length) differ; -1 when they are equal (one memcmp when equal). */
export const firstDifference = (a: Uint8Array, b: Uint8Array): number => {
  if (asBuffer(a).equals(asBuffer(b))) return -1;
  let i = 0;
  while (a[i] === b[i]) i++;
  return i;
};

/**
 * The first i < n where bytes[at + i] differs from noise[from + i]; -1 when they are equal.
 * One memcmp and no view when equal (Buffer#compare takes ranges); the caller keeps both
 * ranges inside their arrays.
 */
const noiseDifference = (noise: Buffer, from: number, bytes: Uint8Array, at: number, n: number): number => {
  if (noise.compare(bytes, at, at + n, from, from + n) === 0) return -1;
  let i = 0;
  while (bytes[at + i] === noise[from + i]) i++;
  return i;
};

/** What the driver's notification fields ask of the device (interruptWanted). */
const WANT = 1;
const NOT_WANTED = 0;
/** Packed DESC or a reserved value: the packed reference model judges those. */
const NO_OPINION = -1;
type Wanted = typeof WANT | typeof NOT_WANTED | typeof NO_OPINION;

export interface RigOptions {
  readonly ring: RingName;
  readonly size: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  /** Prefix of metric names (several rigs in one scenario). */
  readonly name: string;
}

/** What the device did with a popped chain, for the hostile guest to record. */
export interface RigHooks {
  /** A pop the queue refused (an error or a refused head). Return true if it was expected. */
  onPopError?(tag: string): boolean;
  /** A chain whose walk ended early or disagreed with the driver's record. */
  isCorrupted?(buf: GuestBuffer | undefined, head: number): boolean;
  /** The device completed a corrupted chain (how it handled it). */
  onCorruptedServed?(head: number, outcome: string): void;
  /** The driver reclaimed the chain with this head. */
  onReaped?(head: number): void;
  /** The device found nothing available at its next avail position (a pop came back empty). */
  onEmpty?(nextAvail: number): void;
}

export class QueueRig {
  readonly ctx: SimContext;
  readonly mem: GuestMemory;
  readonly ram: GuestRam;
  readonly ring: RingName;
  readonly layout: SplitLayout;
  readonly size: number;
  readonly driver: GuestQueue;
  /** The driver as its own ring's class, for the raw writes of a hostile guest. */
  readonly split: SplitDriver | null;
  readonly packed: PackedDriver | null;
  readonly slabs: BufferSlabs;
  readonly port: DeviceQueuePort;
  readonly guard: BoundsGuard;
  readonly spec: SpecMemory;
  readonly opts: RigOptions;
  /** A scratch area of guest RAM no buffer uses (hostile descriptors may point here). */
  readonly scratch: { readonly addr: number; readonly len: number };
  hooks: RigHooks = {};
  /** The device's current pace (scenarios vary it in phases): steps left, chains per run. */
  readonly pace = { left: 0, max: 8 };
  private readonly chain: DeviceChain;
  /** The reference model's last pop (oracle on), made just before the device's. */
  private refPop: RefPop | null = null;
  /** NOISE_SPAN random bytes, then as many more as a slab holds (a stretch never wraps). */
  private readonly noise: Uint8Array;
  /** The same bytes as a Buffer (ranged memcmp without views). */
  private readonly noiseBuf: Buffer;
  /** The data region's bytes, then the noise at noiseAt, in one buffer. */
  private readonly arena: Uint8Array;
  private readonly noiseAt: number;
  private readonly dataRegion: GuestRegion;
  private readonly ev: { add: number; publish: number; usedPublish: number; serve: number; reap: number };
  /** Device state: running (polling, notifications off) or idle; a kick is pending. */
  running = false;
  kicked = false;
  irqPending = false;
  private publishedOld = 0;
  private readonly m: Record<string, Metric>;
  /** The device as a bounds failure names it. */
  private readonly deviceName: string;
  /** Chains the driver has added, and completed (for SIM-NO-LOSS). */
  added = 0;
  completed = 0;

  constructor(ctx: SimContext, opts: RigOptions) {
    this.ctx = ctx;
    this.opts = opts;
    const size = opts.size;
    this.size = size;
    this.ring = opts.ring;
    // Two regions, as a VM with a hole below 4 GiB would have: rings in the first (at a
    // random aligned offset), buffers and indirect tables in the second.
    const ringBase = 0x1000 + 16 * ctx.rng.int(64);
    const ringBytes = ringEnd(opts.ring, ringBase, size) - 0x1000 + 64;
    const dataBase = 0x100000;
    const scratchLen = 64 * 1024;
    const dataBytes = BufferSlabs.bytesNeeded(size, SLAB, MAX_INDIRECT) + scratchLen;
    // The run's bytes live in the buffer under the data region, past its end (no guest
    // address reaches them): copies between the two need no view (putNoise).
    this.arena = new Uint8Array(dataBytes + NOISE_SPAN + SLAB);
    this.noiseAt = dataBytes;
    this.mem = GuestMemory.of([
      { base: 0x1000, bytes: new Uint8Array(ringBytes) },
      { base: dataBase, bytes: this.arena.subarray(0, dataBytes) },
    ]);
    this.dataRegion = this.mem.regions.find((r) => r.base === dataBase)!;
    const driver = makeGuestQueue(opts.ring, this.mem, ringBase, size, opts.eventIdx, opts.indirect);
    this.driver = driver;
    this.split = driver instanceof SplitDriver ? driver : null;
    this.packed = driver instanceof PackedDriver ? driver : null;
    this.ram = driver.ram;
    this.layout = driver.layout;
    this.slabs = new BufferSlabs(dataBase, size, SLAB, MAX_INDIRECT);
    this.scratch = { addr: dataBase + dataBytes - scratchLen, len: scratchLen };
    this.guard = new BoundsGuard(ctx, this.mem);
    this.deviceName = `${opts.name || "queue"} device`;
    // The reference model's pop (the shadow, before each pop of the device) tells the
    // bounds guard what the device may touch and gives checkChain its walk: one walk of
    // the chain by the model, not three.
    const key = this.layout.descTable;
    this.port = makeQueuePort(
      ctx,
      this.mem,
      opts.ring,
      this.layout,
      size,
      opts.eventIdx,
      opts.name === "" ? "queue" : opts.name,
      (popped) => {
        this.refPop = popped;
        if (popped !== null) this.guard.allowPop(key, popped);
      },
    );
    this.chain = this.port.newChain();
    this.guard.addAreas(driver.areas());
    this.spec = specMemoryOf(this.mem);
    this.noise = this.arena.subarray(this.noiseAt);
    ctx.rng.fill(this.noise);
    this.noiseBuf = asBuffer(this.noise);
    const t = ctx.trace;
    this.ev = {
      add: t.kind("add", ["q", "head", "seq", "shape", "descs", "indirect", "out", "in"]),
      publish: t.kind("publish", ["q", "idx", "kick", "event"]),
      usedPublish: t.kind("used-publish", ["q", "idx", "irq"]),
      serve: t.kind("serve", ["q", "head", "read", "written", "end"]),
      reap: t.kind("reap", ["q", "head", "seq", "len"]),
    };
    const p = opts.name === "" ? "" : `${opts.name}.`;
    const l = opts.name === "" ? "" : `${opts.name}: `;
    const mx = ctx.metrics;
    this.m = {
      added: mx.counter(`${p}chains.added`, `${l}chains made available`),
      completed: mx.counter(`${p}chains.completed`, `${l}chains completed and reclaimed`),
      descs: mx.counter(`${p}descriptors`, `${l}descriptors used`),
      indirect: mx.counter(`${p}chains.indirect`, `${l}chains through an indirect table`),
      bytesOut: mx.counter(`${p}bytes.read`, `${l}bytes the device read`),
      bytesIn: mx.counter(`${p}bytes.written`, `${l}bytes the device wrote`),
      bytes: mx.counter(`${p}bytes`, `${l}bytes moved`),
      kicksSent: mx.counter(`${p}kicks.sent`, `${l}notifications to the device sent`),
      kicksSuppressed: mx.counter(`${p}kicks.suppressed`, `${l}notifications to the device suppressed`),
      irqsSent: mx.counter(`${p}irqs.sent`, `${l}interrupts to the driver sent`),
      irqsSuppressed: mx.counter(`${p}irqs.suppressed`, `${l}interrupts to the driver suppressed`),
      occupancy: mx.gauge(`${p}ring.occupancy`, `${l}descriptors in use`),
      availPending: mx.gauge(`${p}ring.avail`, `${l}available, not yet popped`),
      usedPending: mx.gauge(`${p}ring.used`, `${l}used, not yet reclaimed`),
    };
    ctx.facts[`${p}ring`] = opts.ring;
    ctx.facts[`${p}queue size`] = size;
    ctx.facts[`${p}EVENT_IDX`] = opts.eventIdx;
    ctx.facts[`${p}INDIRECT_DESC`] = opts.indirect;
  }

  /**
   * Copies noise[from, from+n) into region r at offset `at`: a memmove within the arena for
   * the data region (every well-formed buffer), through a view elsewhere (a hostile chain
   * may name the ring region).
   */
  private putNoise(r: GuestRegion, at: number, from: number, n: number): void {
    if (r === this.dataRegion) this.arena.copyWithin(at, this.noiseAt + from, this.noiseAt + from + n);
    else r.bytes.set(this.noise.subarray(from, from + n), at);
  }

  /** Adds one chain of the given shape; -1 when the ring is full even after reclaiming. */
  addChain(shape: Shape): number {
    const ctx: SimContext = this.ctx;
    const segs = makeShape(ctx, shape, this.opts.size);
    const indirect = ctx.rng.chance(0.35);
    const gaps = new Array<number>(segs.length);
    for (let i = 0; i < segs.length; i++) gaps[i] = ctx.rng.chance(0.3) ? ctx.rng.range(1, 64) : 0;
    let head = this.slabs.add(this.driver, segs, indirect, this.added, gaps);
    if (head === NO_ROOM) {
      this.reapAll();
      head = this.slabs.add(this.driver, segs, indirect, this.added, gaps);
      if (head === NO_ROOM) return -1;
    }
    const buf = this.driver.inFlightAt(head)!;
    let off = outStart(buf.seq);
    const ram = this.ram;
    for (const s of buf.segments) {
      const r = ram.at(s.addr, s.len);
      const at = s.addr - r.base;
      if (s.write) r.bytes.fill(0, at, at + s.len);
      else {
        this.putNoise(r, at, off, s.len);
        off += s.len;
      }
    }
    this.added++;
    this.m.added!.value++;
    this.m.descs!.value += buf.segments.length;
    if (buf.indirect) this.m.indirect!.value++;
    const t = ctx.trace;
    if (t.begin(this.ev.add, 8)) {
      t.str(this.opts.name);
      t.num(head);
      t.num(buf.seq);
      t.str(shape);
      t.num(buf.segments.length);
      t.bool(buf.indirect);
      t.num(buf.outBytes);
      t.num(buf.inBytes);
    }
    return head;
  }

  /** virtio_wmb + avail.idx, then virtqueue_kick_prepare and the kick. */
  publishAndKick(): void {
    const ctx: SimContext = this.ctx;
    if (this.driver.unpublished === 0) return;
    this.driver.publish();
    const k = this.driver.kickPrepare();
    const t = ctx.trace;
    if (t.begin(this.ev.publish, 4)) {
      t.str(this.opts.name);
      t.num(k.new);
      t.bool(k.need);
      t.num(k.event);
    }
    if (k.need) {
      this.m.kicksSent!.value++;
      this.kicked = true;
    } else this.m.kicksSuppressed!.value++;
  }

  /** Publishes used.idx and decides whether to interrupt (checked against vring_need_event). */
  private publishUsed(): void {
    const ctx: SimContext = this.ctx;
    const port = this.port;
    port.publishUsed();
    const newIdx = port.nextUsed;
    const oldIdx = this.publishedOld;
    this.publishedOld = newIdx;
    // What the driver's fields, as they are in memory now, ask for (read before the
    // device decides; the field is named only in a failure's message).
    const expected = ctx.oracle ? this.interruptWanted(oldIdx, newIdx) : NO_OPINION;
    const need = port.prepareKick();
    if (expected !== NO_OPINION && need !== (expected === WANT)) {
      ctx.fail(
        "SIM-KICK-GATE",
        `device ${need ? "interrupts" : "suppresses"} after used ${oldIdx}->${newIdx} but ${this.interruptField()} says ${
          expected === WANT ? "interrupt" : "suppress"
        }`,
      );
    }
    const t = ctx.trace;
    if (t.begin(this.ev.usedPublish, 3)) {
      t.str(this.opts.name);
      t.num(newIdx);
      t.bool(need);
    }
    if (need) {
      this.m.irqsSent!.value++;
      this.irqPending = true;
    } else this.m.irqsSuppressed!.value++;
  }

  /**
   * Whether the driver asks for an interrupt for used entries old..new: split, used_event
   * (EVENT_IDX) or VRING_AVAIL_F_NO_INTERRUPT; packed, the Driver Area's DISABLE or ENABLE
   * (DESC and reserved values are judged by the packed reference model, SIM-QUEUE-REFINES).
   */
  private interruptWanted(oldIdx: number, newIdx: number): Wanted {
    const s = this.split;
    if (s !== null) {
      if (this.opts.eventIdx) return vringNeedEvent(s.usedEvent(), newIdx, oldIdx) ? WANT : NOT_WANTED;
      return (s.availFlags() & VRING_AVAIL_F_NO_INTERRUPT) === 0 ? WANT : NOT_WANTED;
    }
    const flags = this.packed!.driverEvent().flags;
    if (flags !== RING_EVENT_FLAGS_ENABLE && flags !== RING_EVENT_FLAGS_DISABLE) return NO_OPINION;
    return flags === RING_EVENT_FLAGS_ENABLE ? WANT : NOT_WANTED;
  }

  /** The field interruptWanted read, with its value (for a failure's message). */
  private interruptField(): string {
    const s = this.split;
    if (s !== null) return this.opts.eventIdx ? `used_event ${s.usedEvent()}` : "avail.flags";
    return `driver event flags ${this.packed!.driverEvent().flags}`;
  }

  /** The device: up to `budget` chains, then notifications re-enabled when it runs dry. */
  deviceRun(budget: number): number {
    const ctx: SimContext = this.ctx;
    const port = this.port;
    if (!this.running && !this.kicked) return 0;
    if (!this.running) {
      this.running = true;
      if (!this.opts.eventIdx) port.setNoNotify(true);
    }
    this.kicked = false;
    let done = 0;
    let unpublished = 0;
    this.guard.arm(this.deviceName);
    try {
      while (done < budget) {
        // The oracle lets the device touch the chain it is about to pop (SIM-BOUNDS): the
        // reference model pops first (queue-shadow) and the probe above allows its walk.
        this.refPop = null;
        const out = port.pop(this.chain);
        if (out.kind === "empty") {
          this.hooks.onEmpty?.(port.nextAvail);
          if (unpublished > 0) {
            this.publishUsed();
            unpublished = 0;
          }
          // Re-enable notifications, then look again: a buffer published meanwhile must
          // not be left without a kick (SIM-NO-STALL).
          if (this.opts.eventIdx) {
            const t = port.tryEnableNotification();
            if (t === true) {
              this.running = false;
              break;
            }
            if (t === "error" && this.giveUp("InvalidAvailIdx")) break;
          } else {
            port.setNoNotify(false);
            if (port.len() === 0) {
              this.running = false;
              break;
            }
            port.setNoNotify(true);
          }
          continue;
        }
        if (out.kind === "error") {
          if (this.giveUp(out.tag)) break;
        }
        this.serve();
        done++;
        unpublished++;
        // Publish in batches of random size, as devices do.
        if (ctx.rng.chance(0.3)) {
          this.publishUsed();
          unpublished = 0;
        }
      }
      if (unpublished > 0) this.publishUsed();
    } finally {
      this.guard.disarm();
    }
    return done;
  }

  /**
   * The queue refused a pop: the device stops polling until the driver kicks again (as
   * Firecracker does after InvalidAvailIdx or a refused head). Only a hostile guest may
   * cause this.
   */
  private giveUp(tag: string): true {
    if (this.hooks.onPopError?.(tag) !== true)
      this.ctx.fail("SIM-CHAIN-MATCH", `the queue refused a pop of a well-formed ring: ${tag}`);
    if (!this.opts.eventIdx) this.port.setNoNotify(false);
    this.running = false;
    return true;
  }

  /** Serve the chain in the cursor: read, check, write the pattern, add used. */
  private serve(): void {
    const ctx: SimContext = this.ctx;
    const chain = this.chain;
    const head = chain.headIndex;
    const buf = this.driver.inFlightAt(head);
    const corrupted = this.hooks.isCorrupted?.(buf, head) === true;
    if (buf === undefined && !corrupted) {
      ctx.fail("SIM-CHAIN-MATCH", `device popped id ${head}, which the driver has not made available`);
    }
    if (ctx.oracle && buf !== undefined && !corrupted) {
      const ref = this.refPop;
      checkChain(ctx, chain, buf, ref !== null && ref.id === head ? ref.walk : undefined);
    }
    // Read the readable part (each byte compared with what the driver wrote there), write
    // the run's bytes into a random prefix of the writable part.
    const check = !corrupted && buf !== undefined;
    const seq = buf?.seq ?? 0;
    const noise = this.noise;
    const outAt = outStart(seq);
    const mem = this.mem;
    const regions = mem.regions;
    let read = 0;
    let writable = 0;
    for (let ok = chain.rewind(); ok; ok = chain.advance()) {
      if (chain.isWriteOnly()) writable += chain.len;
      else {
        // The device's read of the segment (as GuestMemory.slice does, without the view).
        const len = chain.len;
        const i = mem.locate(chain.addr, len, false);
        if (i >= 0) {
          if (check) {
            const r = regions[i]!;
            if (
              read + len > buf.outBytes ||
              noiseDifference(this.noiseBuf, outAt + read, r.bytes, chain.addr - r.base, len) >= 0
            )
              ctx.fail(
                "SIM-CHAIN-MATCH",
                `head ${head} seq ${seq}: the device read bytes the driver did not write`,
              );
          }
          read += len;
        }
      }
    }
    const end = chain.end;
    if (check && read !== buf.outBytes)
      ctx.fail(
        "SIM-CHAIN-MATCH",
        `head ${head} seq ${seq}: the device read ${read} bytes, the driver wrote ${buf.outBytes}`,
      );
    let written = 0;
    if (end === null) {
      const want = ctx.rng.int(writable + 1);
      const inAt = inStart(seq);
      for (let ok = chain.rewindWritable(); ok && written < want; ok = chain.advanceWritable()) {
        const n = Math.min(chain.len, want - written);
        const i = mem.locate(chain.addr, n, true);
        if (i < 0) break;
        const r = regions[i]!;
        const to = chain.addr - r.base;
        // A well-formed chain's writable room fits a slab (the stretch never wraps); a
        // hostile one may name more, written stretch after stretch.
        for (let done = 0; done < n;) {
          const k = Math.min(n - done, SLAB);
          let from = inAt + written + done;
          if (from + k > noise.length) from %= NOISE_SPAN;
          this.putNoise(r, to + done, from, k);
          done += k;
        }
        written += n;
      }
    }
    if (!this.port.addUsed(head, written)) {
      ctx.fail("SIM-USED-ID", `the queue refused add_used for head ${head} it just popped`);
    }
    if (corrupted)
      this.hooks.onCorruptedServed?.(head, end === null ? "served as written" : `walk ended: ${end._tag}`);
    this.guard.releaseId(this.layout.descTable, head);
    this.m.bytesOut!.value += read;
    this.m.bytesIn!.value += written;
    this.m.bytes!.value += read + written;
    const t = ctx.trace;
    if (t.begin(this.ev.serve, 5)) {
      t.str(this.opts.name);
      t.num(head);
      t.num(read);
      t.num(written);
      t.strOrNull(end === null ? null : end._tag);
    }
    ctx.clock.advance(0.2 + (read + written) / 10_000);
  }

  /** virtqueue_get_buf until empty, checking each used element. */
  reapAll(): number {
    const ctx: SimContext = this.ctx;
    let n = 0;
    for (;;) {
      const g = this.driver.getBuf();
      if (g.kind === "none") break;
      if (g.kind === "bad") {
        ctx.fail("SIM-USED-ID", `used element {id ${g.id}, len ${g.len}}: ${g.reason} (Linux: BAD_RING)`);
      }
      const { buf, len } = g;
      // A chain the guest corrupted may have other writable room than it was made with.
      const corrupted = this.hooks.isCorrupted?.(buf, buf.id) === true;
      if (len > buf.inBytes && !corrupted) {
        ctx.fail(
          "SIM-USED-LEN",
          `id ${buf.id} seq ${buf.seq}: used len ${len} > writable ${buf.inBytes} bytes`,
        );
      }
      if (ctx.oracle && !corrupted) this.checkWritten(buf, len);
      this.hooks.onReaped?.(buf.id);
      n++;
      this.completed++;
      this.m.completed!.value++;
      const t = ctx.trace;
      if (t.begin(this.ev.reap, 4)) {
        t.str(this.opts.name);
        t.num(buf.id);
        t.num(buf.seq);
        t.num(len);
      }
    }
    return n;
  }

  /** SIM-DELIVERY: the first `len` writable bytes are what the device wrote. */
  private checkWritten(buf: GuestBuffer, len: number): void {
    let off = 0;
    const at = inStart(buf.seq);
    for (const s of buf.segments) {
      if (!s.write || off >= len) continue;
      const n = Math.min(s.len, len - off);
      const r = this.ram.at(s.addr, n);
      const from = s.addr - r.base;
      const i = noiseDifference(this.noiseBuf, at + off, r.bytes, from, n);
      if (i >= 0)
        this.ctx.fail(
          "SIM-DELIVERY",
          `id ${buf.id} seq ${buf.seq}: writable byte ${off + i} is ${r.bytes[from + i]}, the device wrote ${this.noise[at + off + i]}`,
        );
      off += n;
    }
  }

  /** The interrupt handler (NAPI-like): disable, reap, re-enable (maybe delayed), poll. */
  guestInterrupt(): void {
    if (!this.irqPending) return;
    this.irqPending = false;
    const d = this.driver;
    const delayed = this.ctx.rng.chance(0.3);
    for (let round = 0; round < 1000; round++) {
      d.disableCb();
      this.reapAll();
      if (delayed) {
        if (d.enableCbDelayed()) break;
      } else if (!d.poll(d.enableCbPrepare())) break;
    }
  }

  /** Gauges for the charts. */
  sampleGauges(): void {
    const d = this.driver;
    this.m.occupancy!.value = d.occupancy;
    this.m.availPending!.value =
      this.split !== null ? (this.split.readAvailIdx() - this.port.nextAvail) & 0xffff : this.port.len();
    this.m.usedPending!.value = d.usedPending();
  }

  /** SIM-NO-STALL, checked between steps. */
  checkStall(): void {
    const ctx: SimContext = this.ctx;
    if (!ctx.oracle) return;
    const port = this.port;
    if (!this.running && !this.kicked) {
      const n = port.len();
      if (n !== 0)
        ctx.fail(
          "SIM-NO-STALL",
          `device idle with notifications on, ${n < 0 ? "a bad avail.idx" : `${n} available buffers`} unseen, and no kick pending`,
        );
    }
    const d = this.driver;
    if (d.callbacksEnabled && !this.irqPending) {
      const pending = d.usedPending();
      const threshold = d.interruptThreshold();
      if (pending > threshold)
        ctx.fail(
          "SIM-NO-STALL",
          `driver waits for an interrupt with ${pending} used entries unseen (${threshold} allowed before its event) and none is pending`,
        );
    }
  }

  /** True when every buffer has come back (progress measure for drain). */
  get idle(): boolean {
    return this.driver.inFlightCount === 0;
  }

  /** One drain round: device runs, the guest takes interrupts and reclaims. */
  drainRound(): void {
    this.publishAndKick();
    this.deviceRun(64);
    this.guestInterrupt();
    this.ctx.clock.advance(1);
  }

  /** SIM-NO-LOSS at the end of a run. */
  checkDrained(expectCorruptedLoss = 0): void {
    const ctx: SimContext = this.ctx;
    const d = this.driver;
    if (d.inFlightCount > expectCorruptedLoss || d.numFree + this.lostDescs() < d.size) {
      ctx.fail(
        "SIM-NO-LOSS",
        `after draining, ${d.inFlightCount} buffers are still in flight (${this.added} added, ${this.completed} completed) and ${
          d.size - d.numFree
        } descriptors are not back on the free list`,
      );
    }
  }

  private lostDescs(): number {
    let n = 0;
    for (let h = 0; h < this.driver.size; h++) n += this.driver.inFlightAt(h)?.ringDescs ?? 0;
    return n;
  }
}
