/**
 * virtio-net end to end, on the ring `--ring` chose: impl/net's guest driver (NetGuest over
 * two GuestQueues, receive 0 and transmit 1, doing what virtio_net does) against the
 * impl/net NetDevice and a backend. This rig lays out guest memory, runs the device side
 * and is the driver's probe: the oracle checks every frame that comes back (in order,
 * intact, header as the device must write it), every used element, each interrupt
 * decision, and what the device touches; it counts the net metrics.
 */
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import { GuestMemory as Memory } from "../../impl/memory/guest-memory.ts";
import { NetDevice, RX_QUEUE, TX_QUEUE } from "../../impl/net/device.ts";
import { MAX_FRAME, NetGuest, type NetGuestProbe, type NetTxSource } from "../../impl/net/guest.ts";
import type { NetBackendShape } from "../../impl/net/backend.ts";
import { ringNamed, type DeviceQueue } from "../../impl/queue/device-queue.ts";
import { BufferSlabs, type GuestBuffer, type KickDecision } from "../../impl/queue/guest-queue.ts";
import type { GuestRam } from "../../impl/queue/guest-ram.ts";
import { PackedDriver } from "../../impl/queue/packed-driver.ts";
import type { SplitDriver } from "../../impl/queue/split-driver.ts";
import type { SpecMemory } from "../../spec/memory.ts";
import { RING_EVENT_FLAGS_DISABLE, RING_EVENT_FLAGS_ENABLE } from "../../wire/packed.ts";
import { VRING_AVAIL_F_NO_INTERRUPT, vringNeedEvent, type SplitLayout } from "../../wire/split.ts";
import type { Metric, SimContext } from "../engine.ts";
import { BoundsGuard, specMemoryOf } from "../oracle.ts";
import { shadowDeviceQueue, type RingName } from "../device/queue-port.ts";
import { firstDifference, makeGuestQueue, ringEnd } from "./queue-rig.ts";

export const GUEST_MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56] as const;
const ETHERTYPE = 0x88b5; // IEEE local experimental: never a real protocol

interface Expected {
  readonly seq: number;
  readonly bytes: Uint8Array;
}

export interface NetRigOptions {
  /** The ring layout of both queues (default split). */
  readonly ring?: RingName;
  /** Metric prefix and label ("evt", "noevt"...). */
  readonly name: string;
  readonly label: string;
  readonly size: number;
  readonly eventIdx: boolean;
  readonly mrg: boolean;
  readonly backend: NetBackendShape;
  /** The backend hands frames back (loopback): RX must deliver every frame TX sent. */
  readonly loopback: boolean;
  /** The rule a lost or altered well-formed frame breaks (hostile-guest: SIM-HOSTILE-SERVE). */
  readonly deliveryRule?: string;
  /** The frames to send (a real network's traffic); default: numbered test frames. */
  readonly frameSource?: (seq: number) => Uint8Array | null;
  /** Each frame received (when not a loopback), header already checked. */
  readonly onRxFrame?: (frame: Uint8Array) => void;
}

/** Which TX frames a hostile guest broke, and how (the oracle then expects their loss). */
export interface NetHooks {
  /** Called after a TX chain is written, before it is published; returns a fault note or null. */
  corruptTx?(rig: NetRig, head: number, seq: number): { readonly lost: boolean } | null;
  /** Called after an RX chain is written, before it is published. */
  corruptRx?(rig: NetRig, head: number): void;
}

export class NetRig implements NetGuestProbe {
  readonly ctx: SimContext;
  readonly opts: NetRigOptions;
  readonly mem: GuestMemory;
  readonly ram: GuestRam;
  readonly spec: SpecMemory;
  readonly device: NetDevice<DeviceQueue>;
  readonly ring: RingName;
  readonly rx: SplitDriver | PackedDriver;
  readonly tx: SplitDriver | PackedDriver;
  /** The guest driver; this rig is its probe. */
  readonly guest: NetGuest<SplitDriver | PackedDriver>;
  readonly layouts: readonly [SplitLayout, SplitLayout];
  readonly guard: BoundsGuard;
  readonly scratch: { readonly addr: number; readonly len: number };
  hooks: NetHooks = {};
  /** A frame arrived (hostile-guest resolves its faults with these). */
  onDelivered: (seq: number) => void = () => {};
  /** A frame the guest broke on purpose never arrived. */
  onSkipped: (seq: number) => void = () => {};
  /** An RX buffer came back with this used length. */
  onRxReaped: (head: number, len: number) => void = () => {};
  private readonly rule: string;
  /** Per queue: chains available and not popped (the device queue's own count). */
  private readonly available: readonly (() => number)[];
  /** Frames the guest broke on purpose that never arrived. */
  purposeLost = 0;
  private txKicked = false;
  private rxKicked = false;
  private seq = 0;
  private readonly expected: Expected[] = [];
  private expectHead = 0;
  /** Frames the guest itself broke (hostile), by seq: not expected back. */
  readonly lostOnPurpose = new Set<number>();
  private readonly m: Record<string, Metric>;
  readonly hdrLen: 10 | 12;
  /** Frames the backend or device was allowed to drop (counted by them). */
  skipped = 0;
  received = 0;
  sent = 0;

  constructor(ctx: SimContext, opts: NetRigOptions) {
    this.ctx = ctx;
    this.opts = opts;
    this.rule = opts.deliveryRule ?? "SIM-DELIVERY";
    const size = opts.size;
    const ring = opts.ring ?? "split";
    this.ring = ring;
    const ringBase = 0x1000 + 16 * ctx.rng.int(32);
    const txBase = ringEnd(ring, ringBase, size) + 64;
    const ringsEnd = ringEnd(ring, txBase, size);
    const dataBase = 0x200000;
    const rxBytes = BufferSlabs.bytesNeeded(size, 16 * 1024, 1);
    const txBytes = BufferSlabs.bytesNeeded(size, 2048, 1);
    const scratchLen = 64 * 1024;
    this.mem = Memory.of([
      { base: 0x1000, bytes: new Uint8Array(ringsEnd - 0x1000 + 64) },
      { base: dataBase, bytes: new Uint8Array(rxBytes + txBytes + scratchLen) },
    ]);
    this.spec = specMemoryOf(this.mem);
    this.rx = makeGuestQueue(ring, this.mem, ringBase, size, opts.eventIdx, false);
    this.tx = makeGuestQueue(ring, this.mem, txBase, size, opts.eventIdx, false);
    this.ram = this.rx.ram;
    this.layouts = [this.rx.layout, this.tx.layout];
    this.scratch = { addr: dataBase + rxBytes + txBytes, len: scratchLen };
    this.device = new NetDevice(
      {
        mac: [...GUEST_MAC],
        mtu: 1500,
        status: true,
        eventIdx: opts.eventIdx,
        mrgRxbuf: opts.mrg,
        queueMaxSize: 256,
        ring: ringNamed(ring),
      },
      opts.backend,
    );
    // The driver acknowledges what it understands of what is offered, and activates.
    this.guest = NetGuest.attach(this.device, {
      memory: this.mem,
      rx: this.rx,
      tx: this.tx,
      rxSlabs: new BufferSlabs(dataBase, size, 16 * 1024, 1),
      txSlabs: new BufferSlabs(dataBase + rxBytes, size, 2048, 1),
      random: ctx.rng,
      probe: this,
    });
    this.hdrLen = this.guest.headerLength;
    this.guard = new BoundsGuard(ctx, this.mem);
    this.guard.addAreas(this.rx.areas());
    this.guard.addAreas(this.tx.areas());
    // The reference model beside the device's own queues (SIM-QUEUE-REFINES). Its pop, just
    // before each of the device's, tells the bounds guard what that chain (as it is in memory
    // then) reaches (SIM-BOUNDS): the model walks each chain once.
    this.available = [RX_QUEUE, TX_QUEUE].map((q) => {
      const layout = this.layouts[q]!;
      return shadowDeviceQueue(
        ctx,
        this.device.queues[q]!,
        ring,
        this.mem,
        layout,
        size,
        `${opts.label || opts.name} ${q === RX_QUEUE ? "RX" : "TX"} queue`,
        (popped) => {
          if (popped !== null) this.guard.allowPop(layout.descTable, popped);
        },
      ).len;
    });
    const p = `${opts.name}.`;
    const l = opts.label === "" ? "" : `${opts.label}: `;
    const mx = ctx.metrics;
    this.m = {
      framesSent: mx.counter(`${p}frames.sent`, `${l}frames sent by the guest`),
      framesReceived: mx.counter(`${p}frames.received`, `${l}frames received intact, in order`),
      bytesSent: mx.counter(`${p}bytes.sent`, `${l}frame bytes sent`),
      bytesReceived: mx.counter(`${p}bytes.received`, `${l}frame bytes received`),
      dropped: mx.counter(`${p}frames.dropped`, `${l}frames dropped and counted (backend queue full)`),
      kicksSent: mx.counter(`${p}kicks.sent`, `${l}kicks sent`),
      kicksSuppressed: mx.counter(`${p}kicks.suppressed`, `${l}kicks suppressed`),
      irqsSent: mx.counter(`${p}irqs.sent`, `${l}interrupts sent`),
      irqsSuppressed: mx.counter(`${p}irqs.suppressed`, `${l}interrupts suppressed`),
      rxOcc: mx.gauge(`${p}rx.occupancy`, `${l}RX descriptors in use`),
      txOcc: mx.gauge(`${p}tx.occupancy`, `${l}TX descriptors in use`),
    };
    ctx.facts[`${opts.label || opts.name}: ring`] = ring;
    ctx.facts[`${opts.label || opts.name}: queue size`] = size;
    ctx.facts[`${opts.label || opts.name}: EVENT_IDX`] = opts.eventIdx;
    ctx.facts[`${opts.label || opts.name}: MRG_RXBUF`] = opts.mrg;
    ctx.facts[`${opts.label || opts.name}: header bytes`] = this.hdrLen;
    ctx.facts[`${opts.label || opts.name}: features acked`] = `0x${this.device.ackedFeatures.toString(16)}`;
    if ((this.device.offeredFeatures & (1n << 28n)) === 0n)
      ctx.notes.push("virtio-net does not offer INDIRECT_DESC, so its guest uses direct chains only");
  }

  /** The guest's pending interrupts, per queue (RX, TX). */
  get irq(): [boolean, boolean] {
    return this.guest.irq;
  }

  /** Keeps the RX ring full of buffers of the shapes virtio_net posts. */
  refillRx(): void {
    this.guest.refillRx();
  }

  /** start_xmit for up to `n` frames (after reclaiming finished ones, as virtio_net does). */
  sendFrames(n: number): void {
    this.guest.xmit(n, this.txSource);
  }

  /** The frames to send: the scenario's, or numbered test frames (dst, src, ethertype, seq, random payload). */
  private given: Uint8Array | null = null;
  private readonly txSource: NetTxSource = {
    length: (seq) => {
      const given = this.opts.frameSource?.(seq) ?? null;
      if (this.opts.frameSource !== undefined && given === null) return null;
      this.given = given;
      return given !== null ? given.length : this.ctx.rng.range(60, MAX_FRAME);
    },
    frame: (seq, len) => {
      if (this.given !== null) return this.given;
      const frame = new Uint8Array(len);
      frame.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 0);
      frame.set(GUEST_MAC, 6);
      frame[12] = ETHERTYPE >>> 8;
      frame[13] = ETHERTYPE & 0xff;
      new DataView(frame.buffer).setUint32(14, seq, true);
      this.ctx.rng.fill(frame.subarray(18));
      return frame;
    },
  };

  // NetGuestProbe: what the driver saw, checked and counted.

  published(q: number, k: KickDecision): void {
    if (k.need) {
      this.m.kicksSent!.value++;
      if (q === RX_QUEUE) this.rxKicked = true;
      else this.txKicked = true;
    } else this.m.kicksSuppressed!.value++;
    if (this.ctx.trace.on)
      this.ctx.trace.event("kick", {
        dev: this.opts.name,
        q: q === RX_QUEUE ? "rx" : "tx",
        need: k.need,
        idx: k.new,
      });
  }

  rxPosted(head: number): void {
    this.hooks.corruptRx?.(this, head);
  }

  txQueued(head: number, seq: number, frame: Uint8Array, descs: number): void {
    const broke = this.hooks.corruptTx?.(this, head, seq) ?? null;
    if (broke?.lost === true) this.lostOnPurpose.add(seq);
    if (this.opts.loopback) this.expected.push({ seq, bytes: frame });
    this.sent++;
    this.m.framesSent!.value++;
    this.m.bytesSent!.value += frame.length;
    if (this.ctx.trace.on)
      this.ctx.trace.event("tx", { dev: this.opts.name, head, seq, len: frame.length, descs });
  }

  /** SIM-USED-LEN: a used length within what the chain lets the device write. */
  reclaimed(q: number, buf: GuestBuffer, len: number): void {
    this.guard.releaseId(this.layouts[q]!.descTable, buf.id);
    if (q === RX_QUEUE) this.onRxReaped(buf.id, len);
    if (len > buf.inBytes)
      this.ctx.fail(
        "SIM-USED-LEN",
        `${this.opts.label} ${q === RX_QUEUE ? "RX" : "TX"} id ${buf.id}: used len ${len} > writable ${buf.inBytes}`,
      );
  }

  /** SIM-USED-ID: a used entry that names no buffer in flight. */
  badUsed(q: number, id: number, reason: string): void {
    this.ctx.fail(
      "SIM-USED-ID",
      `${this.opts.label} ${q === RX_QUEUE ? "RX" : "TX"} used {id ${id}}: ${reason}`,
    );
  }

  /** A backend that carries the header (TAP) has the kernel fill it; otherwise the device writes flags 0 and gso NONE (NET-RX-HDR). */
  rxHeader(packet: Uint8Array): void {
    if (this.opts.backend.carriesHeader) return;
    for (let k = 0; k < this.hdrLen - 2 && k < packet.length; k++) {
      if (packet[k] !== 0)
        this.ctx.fail(
          this.rule,
          `${this.opts.label} RX header byte ${k} is ${packet[k]}: the device must write flags 0, gso NONE`,
        );
    }
  }

  rxBroken(why: string): void {
    this.ctx.fail(this.rule, `${this.opts.label} RX: ${why}`);
  }

  /** One device pass: TX when kicked, RX when kicked or frames wait; interrupts checked. */
  deviceRun(forceRx = false): void {
    const dev = this.device;
    this.guard.arm(`${this.opts.label || this.opts.name} device`);
    try {
      if (this.txKicked) {
        this.txKicked = false;
        this.checked(TX_QUEUE, () => dev.processTxNow());
      }
      const pending = (this.opts.backend as { pending?: number }).pending ?? 0;
      if (this.rxKicked || pending > 0 || forceRx) {
        this.rxKicked = false;
        this.checked(RX_QUEUE, () => dev.processRxNow());
      }
    } finally {
      this.guard.disarm();
    }
  }

  /** SIM-KICK-GATE around one device call: the interrupt it raised (or not) against vring_need_event. */
  private checked(q: number, run: () => number): void {
    const ctx = this.ctx;
    const dq = this.device.queues[q]!;
    const drv = q === RX_QUEUE ? this.rx : this.tx;
    const i = q === RX_QUEUE ? 0 : 1;
    const before = dq.nextUsed;
    const had = this.irq[i];
    this.irq[i] = false;
    run();
    const after = dq.nextUsed;
    const raised = this.irq[i];
    this.irq[i] = had || raised;
    if (after === before) return;
    if (drv instanceof PackedDriver) {
      // The Driver Area's DISABLE and ENABLE judged here; DESC (its event offset) and reserved values by the
      // packed reference model beside the queue (SIM-QUEUE-REFINES).
      const flags = drv.driverEvent().flags;
      const judged = flags === RING_EVENT_FLAGS_ENABLE || flags === RING_EVENT_FLAGS_DISABLE;
      if (ctx.oracle && judged && raised !== (flags === RING_EVENT_FLAGS_ENABLE))
        ctx.fail(
          "SIM-KICK-GATE",
          `${this.opts.label} ${q === RX_QUEUE ? "RX" : "TX"}: used slot ${before}->${after}, driver event flags ${flags}: device ${
            raised ? "interrupted" : "did not interrupt"
          }`,
        );
    } else if (ctx.oracle) {
      const usedEvent = drv.usedEvent();
      const noInterrupt = (drv.availFlags() & VRING_AVAIL_F_NO_INTERRUPT) !== 0;
      if (this.opts.eventIdx) {
        const want = vringNeedEvent(usedEvent, after, before);
        if (want !== raised)
          ctx.fail(
            "SIM-KICK-GATE",
            `${this.opts.label} ${q === RX_QUEUE ? "RX" : "TX"}: used ${before}->${after}, used_event ${usedEvent}: device ${
              raised ? "interrupted" : "did not interrupt"
            }, vring_need_event says ${want ? "interrupt" : "suppress"}`,
          );
      } else if (!noInterrupt && !raised) {
        ctx.fail(
          "SIM-KICK-GATE",
          `${this.opts.label} ${q === RX_QUEUE ? "RX" : "TX"}: used ${before}->${after} with interrupts enabled but no interrupt`,
        );
      }
    }
    if (raised) this.m.irqsSent!.value++;
    else this.m.irqsSuppressed!.value++;
  }

  /** free_old_xmit: reclaim finished TX buffers. */
  reapTx(): void {
    this.guest.reclaimTx();
  }

  /** Reads what RX delivered (checked by the probe calls), then refills. */
  reapRx(): void {
    this.guest.receive();
  }

  /** SIM-DELIVERY: the frame must be the next expected one (drops are counted, never silent). */
  delivered(frame: Uint8Array): void {
    const ctx: SimContext = this.ctx;
    if (!this.opts.loopback) {
      this.received++;
      this.m.framesReceived!.value++;
      this.m.bytesReceived!.value += frame.length;
      this.opts.onRxFrame?.(frame);
      return;
    }
    const seq = frame.length >= 18 ? new DataView(frame.buffer, frame.byteOffset).getUint32(14, true) : -1;
    // Frames before this one that never came: dropped (the backend or device counted them) or broken on purpose.
    while (this.expectHead < this.expected.length && this.expected[this.expectHead]!.seq !== seq) {
      const e = this.expected[this.expectHead]!;
      if (!this.lostOnPurpose.has(e.seq)) {
        this.skipped++;
        this.m.dropped!.value++;
      } else {
        this.lostOnPurpose.delete(e.seq);
        this.purposeLost++;
        this.onSkipped(e.seq);
      }
      this.expectHead++;
    }
    const e = this.expected[this.expectHead];
    if (e === undefined)
      ctx.fail(
        this.rule,
        `${this.opts.label}: received frame seq ${seq} (${frame.length} bytes) that was never sent or came twice`,
      );
    // One memcmp (firstDifference) decides; the byte is looked for only on failure.
    if (e.bytes.length !== frame.length || firstDifference(e.bytes, frame) >= 0)
      ctx.fail(
        this.rule,
        `${this.opts.label}: frame seq ${seq} arrived altered (${frame.length} bytes, sent ${e.bytes.length})`,
      );
    this.expectHead++;
    this.lostOnPurpose.delete(seq);
    this.onDelivered(seq);
    this.received++;
    this.m.framesReceived!.value++;
    this.m.bytesReceived!.value += frame.length;
    if (ctx.trace.on) ctx.trace.event("rx", { dev: this.opts.name, seq, len: frame.length });
    // Keep the expectation list short.
    if (this.expectHead > 1024) {
      this.expected.splice(0, this.expectHead);
      this.expectHead = 0;
    }
  }

  /** The guest's interrupt handlers (NAPI: disable, reap, re-enable, poll). */
  guestInterrupts(): void {
    this.guest.handleInterrupts();
  }

  /** SIM-NO-STALL: TX work left with no kick; a driver waiting for an interrupt that will not come. */
  checkStall(): void {
    const ctx = this.ctx;
    if (!ctx.oracle) return;
    const txAvail = this.available[TX_QUEUE]!();
    if (!this.txKicked && txAvail !== 0)
      ctx.fail(
        "SIM-NO-STALL",
        `${this.opts.label}: ${txAvail} TX buffers available, device idle, no kick pending`,
      );
    for (const [i, q] of [
      [0, this.rx],
      [1, this.tx],
    ] as const) {
      if (!q.callbacksEnabled || this.irq[i]) continue;
      const pending = q.usedPending();
      const threshold = q.interruptThreshold();
      if (pending > threshold)
        ctx.fail(
          "SIM-NO-STALL",
          `${this.opts.label} ${i === 0 ? "RX" : "TX"}: ${pending} used entries unseen (${threshold} allowed before the driver's event) and no interrupt pending`,
        );
    }
  }

  sampleGauges(): void {
    this.m.rxOcc!.value = this.rx.occupancy;
    this.m.txOcc!.value = this.tx.occupancy;
  }

  /** One step of traffic. */
  step(maxFrames: number): void {
    const r = this.ctx.rng;
    this.sendFrames(r.int(maxFrames + 1));
    // The device thread and the guest's vCPU are not always scheduled at once: a kick or
    // an interrupt may wait a phase, so work piles up and notifications get suppressed.
    if (r.chance(0.7)) this.deviceRun();
    if (r.chance(0.6)) this.guestInterrupts();
    // Polling now and then (busy-poll sockets, TX reclaim on the next xmit).
    if (r.chance(0.05)) this.reapRx();
    if (r.chance(0.7)) this.deviceRun();
    if (r.chance(0.6)) this.guestInterrupts();
    this.sampleGauges();
    this.checkStall();
  }

  get txInFlight(): number {
    return this.tx.inFlightCount;
  }

  /** Runs until every frame sent has come back (or been counted as dropped). */
  drain(): void {
    const ctx: SimContext = this.ctx;
    for (let i = 0; i < 10_000; i++) {
      const pending = (this.opts.backend as { pending?: number }).pending ?? 0;
      const rxUnseen = this.rx.usedPending();
      if (this.tx.inFlightCount === 0 && pending === 0 && rxUnseen === 0 && !this.irq[0] && !this.irq[1])
        break;
      this.txKicked ||= this.available[TX_QUEUE]!() !== 0;
      this.deviceRun();
      this.guestInterrupts();
      this.reapTx();
      this.reapRx();
      ctx.clock.advance(1);
    }
    this.reapTx();
    this.sampleGauges();
    if (this.tx.inFlightCount !== 0)
      ctx.fail("SIM-NO-LOSS", `${this.opts.label}: ${this.tx.inFlightCount} TX buffers never came back`);
    if (!this.opts.loopback) return;
    // Frames not yet seen at the end: lost unless the backend counted them as dropped.
    let missing = 0;
    for (let k = this.expectHead; k < this.expected.length; k++)
      if (!this.lostOnPurpose.has(this.expected[k]!.seq)) missing++;
    const counted =
      this.opts.backend.stats.dropped + this.device.stats.txTooLong + this.device.stats.txTooShort;
    if (this.skipped + missing > counted)
      ctx.fail(
        this.rule,
        `${this.opts.label}: ${this.skipped + missing} frames never arrived but only ${counted} drops were counted (sent ${this.sent}, received ${this.received})`,
      );
  }
}
