/**
 * The simulator's view of the vsock guest driver (impl/vsock/guest.ts), plugged in as its
 * probe: the reference model beside the device's three queues (SIM-QUEUE-REFINES), the
 * bounds guard on every device pass (SIM-BOUNDS), interrupts judged against the ring's
 * notification rule (SIM-KICK-GATE), used buffers judged as Linux's BAD_RING does
 * (SIM-USED-ID, SIM-USED-LEN), RW lengths (SIM-DELIVERY), stalls (SIM-NO-STALL), and the
 * vsock.* metrics the scenarios chart.
 */
import type { HostPort } from "../../impl/vsock/muxer.ts";
import { EVENT_QUEUE, RX_QUEUE, TX_QUEUE } from "../../impl/vsock/device.ts";
import {
  VsockGuest,
  type VsockGuestDeviceConfig,
  type VsockGuestOptions,
  type VsockGuestProbe,
} from "../../impl/vsock/guest.ts";
import type { SpecMemory } from "../../spec/memory.ts";
import type { VsockHeader } from "../../spec/vsock.ts";
import { vringNeedEvent } from "../../wire/split.ts";
import { VSOCK_OP_RW } from "../../wire/vsock.ts";
import type { Metric, SimContext } from "../engine.ts";
import { shadowPackedWithSpec } from "../device/packed-shadow.ts";
import { shadowWithSpec } from "../device/queue-shadow.ts";
import { BoundsGuard, packedRefPop, specMemoryOf } from "../oracle.ts";
import type { DeviceQueue } from "../../impl/queue/device-queue.ts";
import { PackedQueue } from "../../impl/queue/packed-queue.ts";
import { SplitQueue } from "../../impl/queue/split-queue.ts";
import type { GuestBuffer } from "../../impl/queue/guest-queue.ts";
import { SplitDriver } from "../../impl/queue/split-driver.ts";

const QUEUE_NAMES = ["RX", "TX", "event"] as const;

export class SimVsockProbe implements VsockGuestProbe {
  readonly ctx: SimContext;
  private g: VsockGuest<DeviceQueue> | null = null;
  private guard: BoundsGuard | null = null;
  private spec: SpecMemory | null = null;
  private m: Record<string, Metric> = {};
  private pendingBefore = 0;

  constructor(ctx: SimContext) {
    this.ctx = ctx;
  }

  private get guest(): VsockGuest<DeviceQueue> {
    if (this.g === null) throw new Error("vsock probe used before the driver attached it");
    return this.g;
  }

  attached(g: VsockGuest<DeviceQueue>): void {
    const ctx = this.ctx;
    this.g = g;
    // SIM-BOUNDS: the device may touch the rings and the chains the driver made available
    // (split: walked when offered; packed: the reference's pop, just before the device's).
    const guard = new BoundsGuard(ctx, g.memory);
    this.guard = guard;
    this.spec = specMemoryOf(g.memory);
    for (let i = 0; i < 3; i++) {
      const q = g.device.queues[i]!;
      const name = `vsock ${QUEUE_NAMES[i]} queue`;
      const key = g.layouts[i]!.descTable;
      if (q instanceof SplitQueue) shadowWithSpec(ctx, q, g.memory, name);
      else if (q instanceof PackedQueue)
        shadowPackedWithSpec(ctx, q, g.memory, name, {
          beforePop: (popped, spec) => {
            if (popped !== null) guard.allowPop(key, packedRefPop(this.spec!, spec, popped));
          },
        });
      guard.addAreas(g.queues[i]!.areas());
    }
    const mx = ctx.metrics;
    this.m = {
      kicksSent: mx.counter("vsock.kicks.sent", "vsock: kicks sent"),
      kicksSuppressed: mx.counter("vsock.kicks.suppressed", "vsock: kicks suppressed"),
      irqsSent: mx.counter("vsock.irqs.sent", "vsock: interrupts sent"),
      irqsSuppressed: mx.counter("vsock.irqs.suppressed", "vsock: interrupts suppressed"),
      packetsIn: mx.counter("vsock.packets.in", "vsock: packets device to guest"),
      packetsOut: mx.counter("vsock.packets.out", "vsock: packets guest to device"),
      rxOcc: mx.gauge("vsock.rx.occupancy", "vsock: RX descriptors in use"),
      txOcc: mx.gauge("vsock.tx.occupancy", "vsock: TX descriptors in use"),
    };
  }

  offered(q: number, head: number): void {
    if (this.ctx.oracle && this.guest.options.ring === "split")
      this.guard!.allowWalk(this.spec!, this.guest.layouts[q]!.descTable, this.guest.options.queueSize, head);
  }

  published(q: number, kick: boolean, availIdx: number): void {
    if (kick) this.m.kicksSent!.value++;
    else this.m.kicksSuppressed!.value++;
    if (this.ctx.trace.on)
      this.ctx.trace.event("vsock-kick", { q: QUEUE_NAMES[q]!, need: kick, idx: availIdx });
  }

  deviceStart(q: number): void {
    this.pendingBefore = this.guest.queues[q]!.usedPending();
    this.guard!.arm(`vsock ${QUEUE_NAMES[q]} device`);
  }

  /**
   * SIM-KICK-GATE: with EVENT_IDX, vring_need_event over the used entries the pass published
   * (counted from the driver's last reclaimed one, where the driver's event index lies at the
   * queue's interrupt threshold); without, an interrupt unless callbacks are off.
   */
  deviceEnd(q: number, raised: boolean): void {
    this.guard!.disarm();
    const ctx = this.ctx;
    const g = this.guest;
    const queue = g.queues[q]!;
    const before = this.pendingBefore;
    const after = queue.usedPending();
    if (after === before) return;
    if (ctx.oracle && g.options.eventIdx) {
      const ev = queue.interruptThreshold();
      const want = vringNeedEvent(ev, after, before);
      if (want !== raised)
        ctx.fail(
          "SIM-KICK-GATE",
          `vsock ${QUEUE_NAMES[q]}: used entries unseen ${before}->${after}, the driver's event at ${ev}: device ${raised ? "interrupted" : "did not interrupt"}, vring_need_event says ${want ? "interrupt" : "suppress"}`,
        );
    } else if (ctx.oracle && !raised && queue.callbacksEnabled) {
      ctx.fail(
        "SIM-KICK-GATE",
        `vsock ${QUEUE_NAMES[q]}: used entries unseen ${before}->${after} with interrupts on and no interrupt`,
      );
    }
    if (raised) this.m.irqsSent!.value++;
    else this.m.irqsSuppressed!.value++;
  }

  reclaimed(q: number, buf: GuestBuffer, len: number): void {
    this.guard!.releaseId(this.guest.layouts[q]!.descTable, buf.id);
    if (len <= buf.inBytes) return;
    this.ctx.fail(
      "SIM-USED-LEN",
      q === TX_QUEUE
        ? `vsock TX head ${buf.id}: used len ${len}, no writable bytes`
        : `vsock ${QUEUE_NAMES[q]} head ${buf.id}: used len ${len} > writable ${buf.inBytes}`,
    );
  }

  badUsed(q: number, id: number, reason: string): void {
    this.ctx.fail("SIM-USED-ID", `vsock ${QUEUE_NAMES[q]} used {id ${id}}: ${reason}`);
  }

  delivered(h: VsockHeader, written: number): void {
    this.m.packetsIn!.value++;
    if (h.op === VSOCK_OP_RW && Math.min(written, h.len, this.guest.options.rxBufSize) !== h.len)
      this.ctx.fail(
        "SIM-DELIVERY",
        `vsock RX: header len ${h.len}, but the device wrote ${written} data bytes`,
      );
  }

  sent(): void {
    this.m.packetsOut!.value++;
  }

  settled(): void {
    this.m.rxOcc!.value = this.guest.queues[RX_QUEUE].occupancy;
    this.m.txOcc!.value = this.guest.queues[TX_QUEUE].occupancy;
  }

  /** SIM-NO-STALL: TX work with an idle device and no kick; a driver waiting for an interrupt that will not come. */
  checkStall(): void {
    const ctx = this.ctx;
    if (!ctx.oracle) return;
    const g = this.guest;
    const txq = g.device.queues[TX_QUEUE];
    const split = txq instanceof SplitQueue ? txq : null;
    const waiting = split !== null ? !split.isEmpty() : txq instanceof PackedQueue && !txq.isEmpty();
    if (!g.kicked[TX_QUEUE] && waiting) {
      const tx = g.queues[TX_QUEUE];
      // Split-ring detail for the message: where the device asked to be kicked.
      const driver = tx instanceof SplitDriver ? tx : null;
      const availEvent = driver?.availEvent() ?? -1;
      const hint =
        g.options.eventIdx && availEvent === 0 && txq.nextAvail > 0
          ? "; with EVENT_IDX the driver kicks only when avail.idx passes avail_event, and the device has never written avail_event (VIRTIO 1.2 §2.7.10)"
          : "";
      ctx.fail(
        "SIM-NO-STALL",
        `vsock TX: ${split?.len() ?? "some"} packets available, the device is idle and no kick is pending (${driver === null ? "" : `avail_event ${availEvent}, avail.idx ${driver.readAvailIdx()}, `}device next_avail ${txq.nextAvail})${hint}`,
      );
    }
    for (let qi = RX_QUEUE; qi <= EVENT_QUEUE; qi++) {
      const q = g.queues[qi]!;
      if (!q.callbacksEnabled || g.irq[qi]) continue;
      const pending = q.usedPending();
      if (pending > q.interruptThreshold())
        ctx.fail(
          "SIM-NO-STALL",
          `vsock ${QUEUE_NAMES[qi]}: ${pending} used buffers unseen and no interrupt pending`,
        );
    }
  }
}

/** The vsock guest driver with the simulator's probe, on the run's virtual clock. */
export const simVsockGuest = (
  ctx: SimContext,
  host: HostPort | null,
  config: VsockGuestDeviceConfig,
  options: Partial<VsockGuestOptions>,
): { readonly guest: VsockGuest<DeviceQueue>; readonly probe: SimVsockProbe } => {
  const probe = new SimVsockProbe(ctx);
  const guest = VsockGuest.create(
    config,
    host,
    { ring: ctx.ring, ...options, clock: () => ctx.clock.nowUs / 1000 },
    probe,
  );
  return { guest, probe };
};
