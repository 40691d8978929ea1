/**
 * `npx tsx sim vhost-user --device net|vsock --socket PATH [options]`: serves our virtio-net
 * or virtio-vsock device to a VMM (QEMU, cloud-hypervisor, crosvm) over vhost-user, and
 * prints what happens. Ctrl-C or SIGTERM closes everything (socket file, mappings, fds, the
 * TAP or the vsock Unix listener).
 */
import { existsSync, lstatSync, rmSync } from "node:fs";
import { Cause, Effect, Exit, Fiber, Layer } from "effect";
import type { VirtioDevice } from "../impl/device/virtio-device.ts";
import { VsockVirtioDevice } from "../impl/device/vsock.ts";
import { NetBackend, LoopbackBackend, type NetBackendShape } from "../impl/net/backend.ts";
import { NetDevice } from "../impl/net/device.ts";
import { acquireTapBackend } from "../impl/native/tap-backend.ts";
import {
  describeError,
  describeEvent,
  serveVhostUser,
  type VhostUserEvent,
} from "../impl/vhost-user/backend.ts";
import {
  integer,
  nonEmpty,
  parseCommand,
  runWithUsage,
  UsageError,
  type CommandSpec,
} from "../scripts/args.ts";

export interface VhostUserIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  /** Aborted on SIGINT/SIGTERM/SIGHUP by sim/index.ts; without it the command listens itself. */
  readonly signal?: AbortSignal;
}

export const VHOST_USER_HELP = `usage: npx tsx sim vhost-user --device net|vsock --socket PATH [options]

Serves our virtio device to a VMM over vhost-user (QEMU: -chardev socket,path=PATH ...),
one connection after another, until Ctrl-C or SIGTERM.

options:
  --device net|vsock   the device to serve (required)
  --socket PATH        the vhost-user socket to listen on (required; a stale socket file is replaced)
  --backend KIND       net: loopback (default; frames sent come back) or tap;
                       vsock: unix (default: host programs connect to --uds)
  --tap NAME           TAP interface for --backend tap (default vhu%d: the kernel picks a number)
  --mac MAC            the MAC the device offers (net; default 52:54:00:12:34:56)
  --cid N              the guest's CID (vsock; default 3)
  --uds PATH           vsock's Unix socket: host programs connect here and write "CONNECT <port>";
                       guest connections to port P go to PATH_P (default: <socket>.vsock)
  --connections N      exit after serving N connections (default: serve until interrupted)
  --verbose            print every request
  --help               this text

QEMU example (no KVM here, so TCG; vectors=0 avoids a QEMU 7.2 crash in vhost_net_start):
  qemu-system-x86_64 -accel tcg -m 256M -nographic -nodefaults \\
    -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \\
    -chardev socket,id=c0,path=PATH -netdev vhost-user,id=n0,chardev=c0 \\
    -device virtio-net-pci,netdev=n0,vectors=0 ...
  vsock: -chardev socket,id=c1,path=PATH -device vhost-user-vsock-pci,chardev=c1

Exit status: 0 after --connections or an interrupt, 1 a failure (socket, TAP), 2 usage error.`;

interface Options {
  device: "net" | "vsock";
  socket: string;
  backend: "tap" | "loopback" | "unix";
  tap: string;
  mac: number[];
  cid: bigint;
  uds: string | null;
  connections: number | undefined;
  verbose: boolean;
}

const SPEC: CommandSpec = {
  name: "sim vhost-user",
  help: VHOST_USER_HELP,
  flags: {
    device: { kind: "string" },
    socket: { kind: "string" },
    backend: { kind: "string" },
    tap: { kind: "string" },
    mac: { kind: "string" },
    cid: { kind: "string" },
    uds: { kind: "string" },
    connections: { kind: "string" },
    verbose: { kind: "boolean" },
  },
};

const parseMac = (s: string): number[] => {
  const parts = s.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new UsageError(`--mac ${JSON.stringify(s)} is not a MAC like 52:54:00:12:34:56`);
  }
  return parts.map((p) => parseInt(p, 16));
};

const parse = (argv: readonly string[]): Options | "help" => {
  const p = parseCommand(SPEC, argv);
  if (p === "help") return "help";
  const device = p.string("device");
  if (device === undefined) throw new UsageError("--device net|vsock is required");
  if (device !== "net" && device !== "vsock")
    throw new UsageError(`--device must be net or vsock, not ${JSON.stringify(device)}`);
  const socket = p.string("socket");
  if (socket === undefined) throw new UsageError("--socket PATH is required");
  const b = p.string("backend") ?? (device === "net" ? "loopback" : "unix");
  if (device === "net" && b !== "tap" && b !== "loopback")
    throw new UsageError(`--backend for net is tap or loopback, not ${JSON.stringify(b)}`);
  if (device === "vsock" && b !== "unix")
    throw new UsageError(`--backend for vsock is unix, not ${JSON.stringify(b)}`);
  const cid = p.string("cid");
  const connections = p.string("connections");
  const mac = p.string("mac");
  return {
    device,
    socket: nonEmpty("--socket", socket),
    backend: b as Options["backend"],
    tap: p.string("tap") ?? "vhu%d",
    mac: mac === undefined ? [0x52, 0x54, 0, 0x12, 0x34, 0x56] : parseMac(mac),
    // A CID is a u64 on the wire (VIRTIO §5.10.4); the reserved ones are refused at create.
    cid: cid === undefined ? 3n : BigInt(integer("--cid", cid, 0, Number.MAX_SAFE_INTEGER)),
    uds: p.string("uds") ?? null,
    connections:
      connections === undefined
        ? undefined
        : integer("--connections", connections, 1, Number.MAX_SAFE_INTEGER),
    verbose: p.bool("verbose"),
  };
};

/** A stale socket file (from a killed run) is removed; anything else at the path is an error. */
const clearSocketPath = (path: string): string | null => {
  if (!existsSync(path)) return null;
  if (!lstatSync(path).isSocket()) return `${path} exists and is not a socket; not replacing it`;
  rmSync(path, { force: true });
  return null;
};

const program = (o: Options, io: VhostUserIo) =>
  Effect.gen(function* () {
    const onEvent = (e: VhostUserEvent): void => {
      if (e._tag === "Request" && !o.verbose) return;
      io.out(describeEvent(e));
    };
    let device: VirtioDevice;
    let stats: () => string;
    if (o.device === "net") {
      let backend: NetBackendShape;
      if (o.backend === "tap") {
        const tap = yield* acquireTapBackend(o.tap);
        io.out(`TAP ${tap.tap.ifName} opened (bring it up and address it on the host side)`);
        backend = tap;
      } else {
        backend = new LoopbackBackend();
        io.out("backend: loopback (every frame the guest sends comes back to it)");
      }
      const dev = yield* NetDevice.scoped({
        mac: o.mac,
        mrgRxbuf: true,
        eventIdx: true,
        csum: o.backend === "tap",
      }).pipe(Effect.provide(Layer.succeed(NetBackend, backend)));
      device = dev;
      stats = () =>
        `net: tx ${dev.stats.txFrames} frames / ${dev.stats.txBytes} bytes, rx ${dev.stats.rxFrames} frames / ${dev.stats.rxBytes} bytes, chain errors tx ${dev.stats.txChainErrors} rx ${dev.stats.rxChainErrors}`;
    } else {
      const uds = o.uds ?? `${o.socket}.vsock`;
      const dev = yield* VsockVirtioDevice.withUnixHost(uds, o.cid).pipe(
        Effect.mapError((e) =>
          e._tag === "UnixListenFailed"
            ? `vsock Unix listener ${e.path}: ${e.message}`
            : `guest CID ${o.cid} is reserved (0, 1, 2 and 2^32-1 are)`,
        ),
      );
      io.out(
        `vsock host side: connect to ${uds} and write "CONNECT <port>\\n"; guest connections to port P go to ${uds}_P`,
      );
      device = dev;
      stats = () => {
        const d = dev.device;
        if (d === null) return "vsock: stopped";
        const m = d.muxer;
        const errors = Object.entries(d.assemblyErrors).map(([k, v]) => `${k} ${v}`);
        return `vsock: ${m.connectionCount} connections open, ${m.stats.rstReplies} RST replies, resets ${JSON.stringify(m.stats.resets)}, packet errors ${errors.length === 0 ? "none" : errors.join(", ")}`;
      };
    }
    io.out(
      `device: ${device.name} (id ${device.deviceId}), features offered 0x${device.offeredFeatures.toString(16)}`,
    );
    const clash = clearSocketPath(o.socket);
    if (clash !== null) return yield* Effect.fail(clash);
    yield* serveVhostUser({
      device,
      socketPath: o.socket,
      ...(o.connections === undefined ? {} : { connections: o.connections }),
      onEvent: (e) => {
        onEvent(e);
        // The device's figures for the run that just stopped (told before its reset).
        if (e._tag === "DeviceStopped") io.out(stats());
      },
    });
  });

/** The command: 0 done or interrupted, 1 failed, 2 usage. */
export const vhostUserMain = (argv: readonly string[], io: VhostUserIo): Promise<number> =>
  runWithUsage(io.err, SPEC.name, () => serve(parse(argv), io));

const serve = async (o: Options | "help", io: VhostUserIo): Promise<number> => {
  if (o === "help") {
    io.out(VHOST_USER_HELP);
    return 0;
  }
  const fiber = Effect.runFork(Effect.scoped(program(o, io)));
  // Under `npx tsx sim` (sim/index.ts) SIGINT/SIGTERM/SIGHUP arrive as io.signal; called on
  // its own (a test, another program), the command listens for SIGINT/SIGTERM itself.
  let signalled = false;
  const stop = (): void => {
    if (signalled) return;
    signalled = true;
    io.out("closing (socket, mappings, fds, backend)");
    Effect.runFork(Fiber.interrupt(fiber));
  };
  const own = io.signal === undefined;
  if (io.signal?.aborted === true) stop();
  io.signal?.addEventListener("abort", stop, { once: true });
  if (own) {
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  }
  const exit = await Effect.runPromise(Fiber.await(fiber));
  io.signal?.removeEventListener("abort", stop);
  if (own) {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
  if (Exit.isSuccess(exit)) return 0;
  if (signalled && Cause.hasInterruptsOnly(exit.cause)) {
    io.out("closed");
    return 0;
  }
  const failure = Cause.findErrorOption(exit.cause);
  if (failure._tag === "Some") {
    const e = failure.value;
    io.err(`sim vhost-user: ${typeof e === "string" ? e : describeError(e as { readonly _tag: string })}`);
    return 1;
  }
  io.err(`sim vhost-user: ${Cause.pretty(exit.cause)}`);
  return 1;
};
