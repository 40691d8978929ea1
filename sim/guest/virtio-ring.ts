/**
 * The old simulator-only split driver's method set, now a thin adapter over the one split
 * guest driver (impl/queue/split-driver.ts, behind impl/queue/guest-queue.ts). Only
 * sim/guest/vsock-driver.ts still uses it; it goes when that driver moves onto GuestQueue
 * (issue 16, engineer vdrv). New code uses SplitDriver / PackedDriver and BufferSlabs.
 */
import {
  BufferSlabs,
  type GetBuf,
  type GuestBuffer,
  type KickDecision,
} from "../../impl/queue/guest-queue.ts";
import type { GuestRam } from "../../impl/queue/guest-ram.ts";
import { SplitDriver } from "../../impl/queue/split-driver.ts";
import { splitLayoutAt, splitLayoutEnd, vringNeedEvent } from "../../wire/split.ts";

export { vringNeedEvent };

/** A split ring's place in guest memory, the simulator's older names. */
export interface RingLayout {
  readonly size: number;
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  /** First byte after the rings. */
  readonly end: number;
}

export const layoutRings = (base: number, size: number): RingLayout => {
  const l = splitLayoutAt(base, size);
  return { size, desc: l.descTable, avail: l.availRing, used: l.usedRing, end: splitLayoutEnd(l, size) };
};

export interface Segment {
  readonly len: number;
  readonly write: boolean;
}

/** A buffer in flight, with its head under its old name. */
export type InFlight = GuestBuffer & { readonly head: number };

export interface DriverOptions {
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly slabBytes: number;
  readonly maxIndirect: number;
}

const withHead = (b: GuestBuffer): InFlight => ({ ...b, head: b.id });

export class GuestVirtqueue {
  readonly driver: SplitDriver;
  readonly layout: RingLayout;
  readonly size: number;
  private readonly slabs: BufferSlabs;

  constructor(ram: GuestRam, layout: RingLayout, dataBase: number, opts: DriverOptions) {
    this.layout = layout;
    this.size = layout.size;
    this.driver = new SplitDriver(
      ram.memory,
      layout.size,
      { descTable: layout.desc, availRing: layout.avail, usedRing: layout.used },
      { eventIdx: opts.eventIdx, indirect: opts.indirect },
    );
    this.slabs = new BufferSlabs(dataBase, layout.size, opts.slabBytes, opts.maxIndirect);
  }

  static bytesNeeded(size: number, opts: DriverOptions): number {
    return BufferSlabs.bytesNeeded(size, opts.slabBytes, opts.maxIndirect);
  }

  add(segments: readonly Segment[], useIndirect: boolean, token: number, gaps?: readonly number[]): number {
    return this.slabs.add(this.driver, segments, useIndirect, token, gaps);
  }
  inFlightAt(head: number): InFlight | undefined {
    const b = this.driver.inFlightAt(head);
    return b === undefined ? undefined : withHead(b);
  }
  publish(): void {
    this.driver.publish();
  }
  kickPrepare(): KickDecision {
    return this.driver.kickPrepare();
  }
  getBuf():
    | Exclude<GetBuf, { kind: "buf" }>
    | { readonly kind: "buf"; readonly buf: InFlight; readonly len: number } {
    const g = this.driver.getBuf();
    return g.kind === "buf" ? { kind: "buf", buf: withHead(g.buf), len: g.len } : g;
  }
  disableCb(): void {
    this.driver.disableCb();
  }
  enableCbPrepare(): number {
    return this.driver.enableCbPrepare();
  }
  poll(last: number): boolean {
    return this.driver.poll(last);
  }
  enableCbDelayed(): boolean {
    return this.driver.enableCbDelayed();
  }
  get numFree(): number {
    return this.driver.numFree;
  }
  get occupancy(): number {
    return this.driver.occupancy;
  }
  get unpublished(): number {
    return this.driver.unpublished;
  }
  get inFlightCount(): number {
    return this.driver.inFlightCount;
  }
  get callbacksEnabled(): boolean {
    return this.driver.callbacksEnabled;
  }
  get usedIdx(): number {
    return this.driver.usedIdx();
  }
  get lastUsed(): number {
    return this.driver.lastUsedIdx;
  }
  get usedEvent(): number {
    return this.driver.usedEvent();
  }
  get publishedIdx(): number {
    return this.driver.readAvailIdx();
  }
}
