/**
 * What the real-guest scenarios (linux-net, linux-vsock) share: finding the guest (or the
 * reason to skip), turning guest and rig errors into the run's violations, and reporting
 * the reference model's findings (our device's departures stop the run; the Linux
 * driver's are listed as findings).
 */
import { Effect } from "effect";
import type { SimContext } from "../engine.ts";
import { guestAvailable, type GuestImage } from "./prepare.ts";
import { describeGuestError, type Guest, type GuestError } from "./qemu.ts";
import type { RigError } from "./rig.ts";
import type { RingWatch } from "./ring-watch.ts";
import { describeEvent, type VhostUserEvent } from "../../impl/vhost-user/backend.ts";

/** The guest image and QEMU, or why a real guest cannot run here. */
export const findGuest = ():
  { readonly image: GuestImage; readonly qemu: string } | { readonly skip: string } => {
  const a = guestAvailable({ progress: (l) => process.stderr.write(`${l}\n`) });
  return a.ok ? { image: a.image, qemu: a.qemu } : { skip: a.reason };
};

/** Stops the run at our device's first departure from the model, if there is one. */
export const failOnDevice = (ctx: SimContext, watch: RingWatch | undefined): void => {
  const d = watch?.deviceFindings[0];
  if (d !== undefined) ctx.fail(d.rule, `our device on ${d.queue} (${watch!.count(d)}x): ${d.message}`);
};

/**
 * SIM-DELIVERY: what the guest got through must hold. When it does not, a departure of our
 * device the model saw is the cause reported (with its rule id) rather than the symptom.
 */
export const checkDelivery = (
  ctx: SimContext,
  watch: RingWatch | undefined,
  holds: boolean,
  message: () => string,
): void => {
  if (!holds) deliveryFailed(ctx, watch, message());
};

const deliveryFailed = (ctx: SimContext, watch: RingWatch | undefined, message: string): never => {
  failOnDevice(ctx, watch);
  return ctx.fail("SIM-DELIVERY", message);
};

/** A guest or rig error as the run's violation (SIM-DELIVERY, unless the model saw our device depart first). */
export const orFail = <A, R>(
  ctx: SimContext,
  e: Effect.Effect<A, GuestError | RigError, R>,
  watch?: RingWatch,
): Effect.Effect<A, never, R> =>
  e.pipe(
    Effect.catch((x: GuestError | RigError) =>
      Effect.sync(() =>
        deliveryFailed(ctx, watch, x._tag === "RigError" ? x.message : describeGuestError(x)),
      ),
    ),
  );

/** Waits for a console line; a timeout or QEMU exiting is the run's violation. */
export const expectLine = (
  ctx: SimContext,
  g: Guest,
  pattern: RegExp,
  timeoutMs: number,
  what: string,
  watch?: RingWatch,
): Effect.Effect<RegExpExecArray> =>
  orFail(ctx, g.waitFor(pattern, { timeoutMs, what }).pipe(Effect.map((r) => r.match)), watch);

/** Records back-end events worth showing (features, memory table, rings) as the run's notes. */
export const noteVhostEvents =
  (ctx: SimContext, prefix: string) =>
  (e: VhostUserEvent): void => {
    if (e._tag === "Request") return;
    ctx.notes.push(`${prefix}: ${describeEvent(e)}`);
  };

/**
 * The reference model's verdict at the end of a run: the Linux driver's departures as
 * notes (findings, with rule ids and counts), then the first departure of our device as
 * the run's violation.
 */
export const reportWatch = (ctx: SimContext, watch: RingWatch | undefined): void => {
  if (watch === undefined) {
    // With the oracle on and no watch, the scenario has said why (the packed ring).
    if (!ctx.oracle) ctx.notes.push("oracle off: the reference model did not watch the rings");
    return;
  }
  for (const s of watch.stats) {
    ctx.facts[`oracle ${s.name}`] =
      `${s.pops} pops, ${s.used} used, ${s.publishes} publishes, ${s.kickDecisions} interrupt decisions checked` +
      (s.racesForgiven > 0 ? `, ${s.racesForgiven} raced with the driver (re-synchronised)` : "");
  }
  for (const f of watch.driverFindings)
    ctx.notes.push(
      `finding: the Linux driver departed from [${f.rule}] on ${f.queue} (${watch.count(f)}x): ${f.message}`,
    );
  if (watch.driverFindings.length === 0) ctx.notes.push("the Linux driver kept every rule the model checks");
  failOnDevice(ctx, watch);
};
