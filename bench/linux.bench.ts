/**
 * A real Linux guest's throughput (QEMU, TCG) through our devices, beside QEMU's own
 * device in the same run with the same guest image and the same program:
 *
 * - TCP, guest -> host and host -> guest, through OUR virtio-net (vhost-user back-end in
 *   this process, TAP backend in a namespace) and through QEMU's built-in virtio-net on a
 *   TAP in another namespace: the ratio ours / built-in is the figure to watch;
 * - vsock, guest -> host and host -> guest, through OUR virtio-vsock and its Unix backend
 *   (no reference: this host has no /dev/vhost-vsock for QEMU's kernel-backed device).
 *
 * The guest's vlab-xfer sends or receives the byte pattern; the host counts and checks it
 * and times it (first to last byte for what it receives, accept to close for what it
 * sends). Under TCG the guest's CPU is emulated, so both devices are far from line rate:
 * the ratio says how much our device costs beside QEMU's, not what KVM would reach.
 * Skips with the reason where the guest cannot run (QEMU, kernel, root/TAP).
 */
import { Effect, type Scope } from "effect";
import { tapUnavailableReason } from "../impl/native/netns.ts";
import {
  GUEST_NET,
  acquireTapIn,
  builtinNetArgs,
  vhostUserNetArgs,
  vhostUserVsockArgs,
} from "../sim/linux/devices.ts";
import { guestAvailable, type GuestImage } from "../sim/linux/prepare.ts";
import { describeGuestError, launchGuest, type GuestError } from "../sim/linux/qemu.ts";
import {
  acquireGuestNetns,
  acquireOurNet,
  acquireOurVsock,
  acquireTcpServerIn,
  acquireUnixServer,
  newStreamStats,
  patternSink,
  patternSource,
  type RigError,
  type StreamStats,
} from "../sim/linux/rig.ts";
import type { BenchFigure, BenchSuite } from "./harness.ts";

const BYTES = 16 * 1024 * 1024;
const TX_PORT = 5001;
const RX_PORT = 5002;
const XFER_MS = 300_000;

interface Pair {
  readonly toHost: number;
  readonly toGuest: number;
}

const mbps = (st: StreamStats, what: string): number => {
  if (st.bytes !== BYTES || st.firstBad >= 0)
    throw new Error(`${what}: ${st.bytes} of ${BYTES} bytes, first wrong byte at ${st.firstBad}`);
  return st.bytes / 1e6 / ((st.lastMs - st.firstMs) / 1000);
};

/** Boots the guest with `devices`, runs `script`, waits for both transfer lines and the end. */
const runGuest = (
  image: GuestImage,
  qemu: string,
  devices: string[],
  script: string,
  extra: { netns?: string; cmdline?: string[] },
): Effect.Effect<void, GuestError, Scope.Scope> =>
  Effect.gen(function* () {
    const g = yield* launchGuest({ image, qemu, devices, script, ...extra });
    for (const mode of ["send", "recv"]) {
      const r = yield* g.waitFor(new RegExp(`^VLAB-XFER (ok|fail) proto=\\w+ mode=${mode} .*$`), {
        timeoutMs: XFER_MS,
        what: `the guest's ${mode}`,
      });
      if (r.match[1] !== "ok")
        return yield* Effect.fail<GuestError>({ _tag: "GuestLaunchError", message: r.match[0] });
    }
    yield* g.waitExit(60_000);
  });

const netScript = (): string =>
  [
    "#!/bin/sh",
    `vlab-xfer connect tcp ${GUEST_NET.hostIp} ${TX_PORT} ${BYTES} send`,
    `vlab-xfer connect tcp ${GUEST_NET.hostIp} ${RX_PORT} ${BYTES} recv`,
    "",
  ].join("\n");

type Fail =
  | GuestError
  | RigError
  | { readonly _tag: "NetnsError"; readonly message: string }
  | { readonly _tag: "TapSetupError"; readonly message: string };

const describe = (e: Fail): string =>
  e._tag === "GuestLaunchError" || e._tag === "GuestTimeout" || e._tag === "GuestExited"
    ? describeGuestError(e)
    : `${e._tag}: ${e.message}`;

/** TCP both ways through our virtio-net (vhost-user) or QEMU's built-in one, each on its own TAP. */
const measureNet = (image: GuestImage, qemu: string, ours: boolean): Effect.Effect<Pair, Fail> =>
  Effect.scoped(
    Effect.gen(function* () {
      const ns = yield* acquireGuestNetns(ours ? "bours" : "bqemu");
      const sink = newStreamStats();
      const source = newStreamStats();
      yield* acquireTcpServerIn(ns, TX_PORT, patternSink(sink));
      yield* acquireTcpServerIn(ns, RX_PORT, patternSource(BYTES, source));
      const cmdline = [`vlab.ip=${GUEST_NET.guestIp}/${GUEST_NET.prefix}`];
      if (ours) {
        const net = yield* acquireOurNet({ ns });
        yield* runGuest(image, qemu, vhostUserNetArgs(net.socket), netScript(), { cmdline });
      } else {
        const tap = yield* acquireTapIn(ns, "vlabq0", `${GUEST_NET.hostIp}/${GUEST_NET.prefix}`);
        yield* runGuest(image, qemu, builtinNetArgs(tap), netScript(), { cmdline, netns: ns });
      }
      return { toHost: mbps(sink, "TCP guest -> host"), toGuest: mbps(source, "TCP host -> guest") };
    }),
  );

/** vsock both ways through our virtio-vsock and its Unix backend. */
const measureVsock = (image: GuestImage, qemu: string): Effect.Effect<Pair, Fail> =>
  Effect.scoped(
    Effect.gen(function* () {
      const vs = yield* acquireOurVsock({});
      const sink = newStreamStats();
      const source = newStreamStats();
      yield* acquireUnixServer(`${vs.uds}_${TX_PORT}`, patternSink(sink));
      yield* acquireUnixServer(`${vs.uds}_${RX_PORT}`, patternSource(BYTES, source));
      const script = [
        "#!/bin/sh",
        `vlab-xfer connect vsock 2 ${TX_PORT} ${BYTES} send`,
        `vlab-xfer connect vsock 2 ${RX_PORT} ${BYTES} recv`,
        "",
      ].join("\n");
      yield* runGuest(image, qemu, vhostUserVsockArgs(vs.socket), script, {});
      return { toHost: mbps(sink, "vsock guest -> host"), toGuest: mbps(source, "vsock host -> guest") };
    }),
  );

const suite: BenchSuite = {
  name: "linux guest",
  async run(log) {
    const avail = guestAvailable({ progress: log });
    if (!avail.ok) {
      log(`real-guest figures skipped: ${avail.reason}`);
      return [];
    }
    const { image, qemu } = avail;
    const figures: BenchFigure[] = [];
    const go = <A>(e: Effect.Effect<A, Fail>): Promise<A> =>
      Effect.runPromise(e.pipe(Effect.mapError((x) => new Error(describe(x)))));
    const mb = (v: number): string => `${v.toFixed(1)} MB/s`;
    const size = `${BYTES / (1024 * 1024)} MiB`;

    const tapReason = tapUnavailableReason();
    if (tapReason !== undefined) log(`TCP figures skipped: ${tapReason}`);
    else {
      log(`TCP through QEMU's built-in virtio-net (TAP), ${size} each way...`);
      const builtin = await go(measureNet(image, qemu, false));
      log(`  built-in: guest -> host ${mb(builtin.toHost)}, host -> guest ${mb(builtin.toGuest)}`);
      log(`TCP through our virtio-net (vhost-user, TAP), ${size} each way...`);
      const ours = await go(measureNet(image, qemu, true));
      log(`  ours: guest -> host ${mb(ours.toHost)}, host -> guest ${mb(ours.toGuest)}`);
      for (const [dir, o, b] of [
        ["guest -> host", ours.toHost, builtin.toHost],
        ["host -> guest", ours.toGuest, builtin.toGuest],
      ] as const) {
        figures.push({
          case: `real Linux guest (TCG), TCP ${dir}, ${size}: our virtio-net over vhost-user to a TAP`,
          value: o,
          unit: "MB/s",
          baseline: { name: "QEMU built-in virtio-net on a TAP, same guest", value: b },
          ratio: o / b,
          notes: "guest CPU emulated (TCG): a cost ratio, not line rate",
        });
      }
    }

    log(`vsock through our virtio-vsock (vhost-user, Unix backend), ${size} each way...`);
    const vs = await go(measureVsock(image, qemu));
    log(`  ours: guest -> host ${mb(vs.toHost)}, host -> guest ${mb(vs.toGuest)}`);
    figures.push(
      {
        case: `real Linux guest (TCG), vsock guest -> host, ${size}: our virtio-vsock over vhost-user to a Unix socket`,
        value: vs.toHost,
        unit: "MB/s",
        notes: "no reference here: the host has no /dev/vhost-vsock",
      },
      {
        case: `real Linux guest (TCG), vsock host -> guest, ${size}: our virtio-vsock over vhost-user from a Unix socket`,
        value: vs.toGuest,
        unit: "MB/s",
        notes: "no reference here: the host has no /dev/vhost-vsock",
      },
    );
    return figures;
  },
};

export default suite;
