/**
 * A split ring's place in guest memory under the simulator's older names, for the callers
 * that still take one (sim/guest/vsock-probe.ts, BoundsGuard.allowWalk in sim/oracle.ts).
 * The guest drivers are impl/queue's SplitDriver / PackedDriver behind GuestQueue.
 */

/** A split ring's place in guest memory, the simulator's older names. */
export interface RingLayout {
  readonly size: number;
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  /** First byte after the rings. */
  readonly end: number;
}
