/**
 * `linux-net`: a real Linux guest (QEMU, TCG) whose own virtio_net driver drives OUR
 * virtio-net device through the vhost-user back-end; the device's backend is a TAP inside a
 * network namespace the scenario creates (host end 10.203.0.1, guest 10.203.0.2). The guest
 * pings the host end, then sends a random file to a TCP listener in the namespace with
 * busybox nc, and receives one from another (size and MD5 checked on both sides). With the
 * oracle on, the reference model watches both rings: our device's departures fail the run,
 * the Linux driver's are reported as findings. Skips, with the reason, without QEMU, the
 * kernel, root or /dev/net/tun.
 */
import { createHash, type Hash } from "node:crypto";
import type { Socket } from "node:net";
import { Effect } from "effect";
import { tapUnavailableReason } from "../../impl/native/netns.ts";
import type { Scenario, ScenarioInstance, SimContext } from "../engine.ts";
import { GUEST_NET, vhostUserNetArgs } from "../linux/devices.ts";
import { launchGuest } from "../linux/qemu.ts";
import { acquireGuestNetns, acquireOurNet, acquireTcpServerIn } from "../linux/rig.ts";
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
const TX_PORT = 5001;
const RX_PORT = 5002;

interface Sink {
  bytes: number;
  readonly hash: Hash;
  connections: number;
  /** Set once the guest said how much it sends: the host closes when that much arrived. */
  expect: number;
  socket: Socket | null;
}

export const linuxNetScenario: Scenario = {
  name: "linux-net",
  realIo: "a real Linux guest under QEMU",
  realGuest: true,
  // --ring packed: QEMU offers packed=on and our device is built on the packed ring.
  rings: ["split", "packed"],
  summary:
    "a real Linux guest (QEMU) drives our virtio-net over vhost-user to a TAP in a namespace it creates: ping, then TCP both ways with busybox nc, bytes checked, rings watched by the model (skips without QEMU, the kernel or root)",
  defaultSteps: 4,
  // Booting a guest is the gate test sim/linux/linux-scenarios.test.ts; smoke does not boot it twice.
  smoke: { steps: 4, seeds: [] },
  defaultFaults: 0,
  noFaults:
    "a real Linux driver owns these rings; corrupting them would test Linux, not our device (hostile input to our back-end: sim conform --vhost-user --hostile)",
  charts: [],
  create: (ctx: SimContext) =>
    Effect.gen(function* () {
      const found = findGuest();
      if ("skip" in found) return found;
      const tapReason = tapUnavailableReason();
      if (tapReason !== undefined) return { skip: tapReason };
      if (ctx.faultRate > 0) ctx.notes.push("linux-net injects no faults; use hostile-guest for --faults");
      const r = ctx.rng;
      const txKiB = r.range(64, 1024);
      const rxBytes = r.range(64 * 1024, 1024 * 1024);
      const rxData = new Uint8Array(rxBytes);
      r.fill(rxData);
      const rxMd5 = createHash("md5").update(rxData).digest("hex");

      const ns = yield* Effect.result(acquireGuestNetns("lnet"));
      if (ns._tag === "Failure") return { skip: `cannot create a network namespace: ${ns.failure.message}` };
      const packed = ctx.ring === "packed";
      // The ring watch models the split ring; on the packed ring the run checks delivery.
      const watch = ctx.oracle && !packed ? new RingWatch() : undefined;
      if (ctx.oracle && packed)
        ctx.notes.push("ring watch: split ring only; --ring packed checks delivery and bytes");
      const net = yield* orFail(
        ctx,
        acquireOurNet({ ns: ns.success, watch, packed, onEvent: noteVhostEvents(ctx, "vhost-user") }),
      );
      ctx.facts["ring"] = ctx.ring;
      const sink: Sink = { bytes: 0, hash: createHash("md5"), connections: 0, expect: -1, socket: null };
      const closeWhenDone = (): void => {
        if (sink.expect >= 0 && sink.bytes >= sink.expect) sink.socket?.end();
      };
      yield* orFail(
        ctx,
        acquireTcpServerIn(ns.success, TX_PORT, (s) => {
          sink.connections++;
          sink.socket = s;
          s.on("data", (b: Buffer) => {
            sink.bytes += b.length;
            sink.hash.update(b);
            closeWhenDone();
          });
        }),
      );
      yield* orFail(
        ctx,
        acquireTcpServerIn(ns.success, RX_PORT, (s) => {
          s.end(rxData);
        }),
      );
      const host = GUEST_NET.hostIp;
      const script = [
        "#!/bin/sh",
        `ping -c 3 -W 5 ${host}`,
        'echo "VLAB-PING-RC $?"',
        `dd if=/dev/urandom of=/tmp/tx bs=1024 count=${txKiB} 2>/dev/null`,
        `echo "VLAB-TX-DATA $(wc -c < /tmp/tx) $(md5sum < /tmp/tx | cut -d' ' -f1)"`,
        `nc ${host} ${TX_PORT} < /tmp/tx`,
        'echo "VLAB-TX-RC $?"',
        `nc ${host} ${RX_PORT} < /dev/null > /tmp/rx`,
        `echo "VLAB-RX-DATA $(wc -c < /tmp/rx) $(md5sum < /tmp/rx | cut -d' ' -f1)"`,
        "",
      ].join("\n");
      const g = yield* orFail(
        ctx,
        launchGuest({
          image: found.image,
          qemu: found.qemu,
          devices: vhostUserNetArgs(net.socket, undefined, { packed }),
          cmdline: [`vlab.ip=${GUEST_NET.guestIp}/${GUEST_NET.prefix}`],
          script,
        }),
      );
      ctx.facts["kernel"] = `${found.image.packageName} ${found.image.packageVersion}`;
      ctx.facts["namespace"] = "vlabnet-<pid>-lnet-… (removed at the end)";
      ctx.facts["TAP"] = `${net.ifName}, host end ${host}/${GUEST_NET.prefix}`;
      let lines = 0;
      const said = (text: string): void => {
        ctx.notes.push(`guest: ${text}`);
        ctx.facts[`guest said (${++lines})`] = text;
        ctx.trace.event("guest", { line: text });
      };

      const phases: readonly Effect.Effect<void>[] = [
        Effect.gen(function* () {
          const m = yield* expectLine(ctx, g, /^VLAB-NET-UP .*$/, BOOT_MS, "the guest's network up", watch);
          said(m[0]);
        }),
        Effect.gen(function* () {
          const rc = yield* expectLine(ctx, g, /^VLAB-PING-RC (\d+)$/, XFER_MS, "the guest's ping", watch);
          const stats =
            g.lines.find((l) => /packets transmitted/.test(l.text))?.text ?? "(no ping statistics)";
          said(stats);
          checkDelivery(
            ctx,
            watch,
            rc[1] === "0",
            () => `guest ping of ${host} through our device failed: ${stats}`,
          );
        }),
        Effect.gen(function* () {
          const d = yield* expectLine(
            ctx,
            g,
            /^VLAB-TX-DATA (\d+) ([0-9a-f]{32})$/,
            XFER_MS,
            "the guest's file",
            watch,
          );
          sink.expect = Number(d[1]);
          closeWhenDone();
          const rc = yield* expectLine(
            ctx,
            g,
            /^VLAB-TX-RC (\d+)$/,
            XFER_MS,
            "the guest's nc to the host",
            watch,
          );
          const md5 = sink.hash.copy().digest("hex");
          said(`sent ${d[1]} bytes (md5 ${d[2]}) with nc, rc ${rc[1]}`);
          checkDelivery(
            ctx,
            watch,
            sink.bytes === Number(d[1]) && md5 === d[2] && sink.connections === 1,
            () =>
              `guest -> host TCP: the host got ${sink.bytes} bytes md5 ${md5}, the guest sent ${d[1]} md5 ${d[2]}`,
          );
          ctx.facts["guest -> host TCP"] = `${sink.bytes} bytes, md5 equal`;
        }),
        Effect.gen(function* () {
          const d = yield* expectLine(
            ctx,
            g,
            /^VLAB-RX-DATA (\d+) ([0-9a-f]{32})$/,
            XFER_MS,
            "the guest's received file",
            watch,
          );
          said(`received ${d[1]} bytes (md5 ${d[2]}) with nc`);
          checkDelivery(
            ctx,
            watch,
            Number(d[1]) === rxBytes && d[2] === rxMd5,
            () =>
              `host -> guest TCP: the guest got ${d[1]} bytes md5 ${d[2]}, the host sent ${rxBytes} md5 ${rxMd5}`,
          );
          ctx.facts["host -> guest TCP"] = `${rxBytes} bytes, md5 equal`;
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
            const s = net.device.stats;
            ctx.facts["device"] =
              `tx ${s.txFrames} frames / ${s.txBytes} bytes, rx ${s.rxFrames} frames / ${s.rxBytes} bytes, chain errors tx ${s.txChainErrors} rx ${s.rxChainErrors}`;
            reportWatch(ctx, watch);
          }),
      };
      return inst;
    }),
};
