/**
 * `linux-vsock`: a real Linux guest (QEMU, TCG) whose own vmw_vsock_virtio_transport drives
 * OUR virtio-vsock device through the vhost-user back-end; the device's Unix-socket backend
 * connects the guest to host programs. The guest's vlab-xfer connects to the host (CID 2)
 * on a port whose Unix listener echoes, sends a pattern and checks the echo; then the host
 * connects to a port the guest listens on ("CONNECT <port>"), sends a pattern and checks
 * the guest's echo. With the oracle on, the reference model watches both rings: our
 * device's departures fail the run, the Linux driver's are reported as findings.
 * Skips, with the reason, where QEMU or the kernel is missing. Real I/O and a real guest:
 * the trace records what happened, not when.
 */
import { Effect } from "effect";
import type { Scenario, ScenarioInstance, SimContext } from "../engine.ts";
import { vhostUserVsockArgs } from "../linux/devices.ts";
import { launchGuest } from "../linux/qemu.ts";
import { acquireOurVsock, acquireUnixEcho, hostVsockEcho } from "../linux/rig.ts";
import { RingWatch } from "../linux/ring-watch.ts";
import {
  checkDelivery,
  expectLine,
  findGuest,
  noteVhostEvents,
  orFail,
  reportWatch,
} from "../linux/scenario-kit.ts";

const BOOT_MS = 120_000;
const XFER_MS = 180_000;
const GUEST_PORT = 5001;

const xferLine = /^VLAB-XFER (ok|fail) proto=vsock mode=(\w+) (.*)$/;

export const linuxVsockScenario: Scenario = {
  name: "linux-vsock",
  realIo: "a real Linux guest under QEMU",
  realGuest: true,
  // --ring packed: QEMU offers packed=on and our device is built on the packed ring.
  rings: ["split", "packed"],
  summary:
    "a real Linux guest (QEMU) drives our virtio-vsock over vhost-user: guest-to-host and host-to-guest streams through the Unix backend, bytes checked, rings watched by the model (skips without QEMU or the kernel)",
  defaultSteps: 3,
  // Booting a guest is the gate test sim/linux/linux-scenarios.test.ts; smoke does not boot it twice.
  smoke: { steps: 3, seeds: [] },
  defaultFaults: 0,
  noFaults:
    "a real Linux driver owns these rings; corrupting them would test Linux, not our device (hostile input to our back-end: sim conform --vhost-user --hostile)",
  charts: [],
  create: (ctx: SimContext) =>
    Effect.gen(function* () {
      const found = findGuest();
      if ("skip" in found) return found;
      if (ctx.faultRate > 0) ctx.notes.push("linux-vsock injects no faults; use hostile-guest for --faults");
      const r = ctx.rng;
      const port = 1024 + r.int(4096);
      const toHost = r.range(64 * 1024, 1024 * 1024);
      const toGuest = r.range(64 * 1024, 1024 * 1024);
      const packed = ctx.ring === "packed";
      // The ring watch models the split ring; on the packed ring the run checks delivery.
      const watch = ctx.oracle && !packed ? new RingWatch() : undefined;
      if (ctx.oracle && packed)
        ctx.notes.push("ring watch: split ring only; --ring packed checks delivery and bytes");
      const vs = yield* orFail(
        ctx,
        acquireOurVsock({ watch, packed, onEvent: noteVhostEvents(ctx, "vhost-user") }),
      );
      ctx.facts["ring"] = ctx.ring;
      const echo = yield* orFail(ctx, acquireUnixEcho(`${vs.uds}_${port}`));
      const script = [
        "#!/bin/sh",
        `vlab-xfer connect vsock 2 ${port} ${toHost} echo`,
        `vlab-xfer listen vsock ${GUEST_PORT}`,
        "",
      ].join("\n");
      const g = yield* orFail(
        ctx,
        launchGuest({
          image: found.image,
          qemu: found.qemu,
          devices: vhostUserVsockArgs(vs.socket, { packed }),
          script,
        }),
      );
      ctx.facts["kernel"] = `${found.image.packageName} ${found.image.packageVersion}`;
      ctx.facts["guest CID"] = vs.cid;
      let lines = 0;
      const said = (m: RegExpExecArray): void => {
        ctx.notes.push(`guest: ${m[0]}`);
        ctx.facts[`guest said (${++lines})`] = m[0];
        ctx.trace.event("guest", { line: m[0] });
      };

      const phases: readonly Effect.Effect<void>[] = [
        Effect.gen(function* () {
          {
            const m = yield* expectLine(
              ctx,
              g,
              /^VLAB-MODULES-OK.*$/,
              BOOT_MS,
              "the guest's modules loaded",
              watch,
            );
            ctx.facts["boot to modules (wall ms)"] = g.lines.find((l) => l.text === m[0])?.ms ?? 0;
          }
        }),
        Effect.gen(function* () {
          {
            // Guest -> host: the guest connects to CID 2, the host's Unix listener echoes.
            const m = yield* expectLine(ctx, g, xferLine, XFER_MS, "the guest's vsock echo result", watch);
            said(m);
            checkDelivery(ctx, watch, m[1] === "ok", () => `guest-initiated stream: ${m[0]}`);
            checkDelivery(
              ctx,
              watch,
              echo.bytes === toHost && echo.connections === 1,
              () =>
                `the host listener got ${echo.bytes} bytes on ${echo.connections} connections, the guest sent ${toHost}`,
            );
            ctx.facts["guest -> host stream"] =
              `${toHost} bytes to port ${port}, echoed and checked by the guest`;
          }
        }),
        Effect.gen(function* () {
          {
            // Host -> guest: CONNECT to the port the guest listens on, the guest echoes.
            yield* expectLine(
              ctx,
              g,
              /^VLAB-XFER listening proto=vsock/,
              XFER_MS,
              "the guest listening",
              watch,
            );
            const x = yield* Effect.tryPromise({
              try: () => hostVsockEcho(vs.uds, GUEST_PORT, toGuest, XFER_MS),
              catch: (e) => e,
            }).pipe(
              Effect.catch((e) =>
                Effect.sync(() => ctx.fail("SIM-DELIVERY", `host-initiated stream: ${String(e)}`)),
              ),
            );
            checkDelivery(
              ctx,
              watch,
              x.received === toGuest && x.firstBad < 0,
              () =>
                `host-initiated stream: ${x.received} of ${toGuest} bytes back, first wrong byte at ${x.firstBad}`,
            );
            const m = yield* expectLine(
              ctx,
              g,
              /^VLAB-XFER (ok|fail) proto=vsock mode=listen (.*)$/,
              XFER_MS,
              "the guest's listener result",
              watch,
            );
            said(m);
            ctx.facts["host -> guest stream"] =
              `${toGuest} bytes to guest port ${GUEST_PORT}, echoed, checked by the host in ${x.ms} ms`;
          }
        }),
      ];
      let done = 0;

      const inst: ScenarioInstance = {
        // One phase a step; the drain runs what a short run left (the guest's script needs them all).
        step: () =>
          Effect.gen(function* () {
            if (done < phases.length) yield* phases[done++]!;
            ctx.clock.advance(1000);
          }),
        drain: () =>
          Effect.gen(function* () {
            while (done < phases.length) yield* phases[done++]!;
            const m = yield* expectLine(
              ctx,
              g,
              /^VLAB-RUN-EXIT (\d+)$/,
              XFER_MS,
              "the guest's script to end",
              watch,
            );
            checkDelivery(ctx, watch, m[1] === "0", () => `the guest's script exited ${m[1]}`);
            yield* orFail(ctx, g.waitExit(30_000), watch);
            reportWatch(ctx, watch);
          }),
      };
      return inst;
    }),
};
