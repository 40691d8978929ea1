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
import { UnixSocketBackend } from "../impl/vsock/unix-backend.ts";
import {
  describeError,
  describeEvent,
  serveVhostUser,
  type VhostUserEvent,
} from "../impl/vhost-user/backend.ts";

export interface VhostUserIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
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

class Usage extends Error {}

const parseMac = (s: string): number[] => {
  const parts = s.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new Usage(`--mac ${JSON.stringify(s)} is not a MAC like 52:54:00:12:34:56`);
  }
  return parts.map((p) => parseInt(p, 16));
};

const parse = (argv: readonly string[]): Options | "help" => {
  let device: string | undefined;
  let socket: string | undefined;
  let backend: string | undefined;
  const o: Omit<Options, "device" | "socket" | "backend"> = {
    tap: "vhu%d",
    mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
    cid: 3n,
    uds: null,
    connections: undefined,
    verbose: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new Usage(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--help":
      case "-h":
        return "help";
      case "--device":
        device = value();
        break;
      case "--socket":
        socket = value();
        break;
      case "--backend":
        backend = value();
        break;
      case "--tap":
        o.tap = value();
        break;
      case "--mac":
        o.mac = parseMac(value());
        break;
      case "--cid": {
        const v = value();
        if (!/^\d{1,20}$/.test(v)) throw new Usage(`--cid ${JSON.stringify(v)} is not a number`);
        o.cid = BigInt(v);
        break;
      }
      case "--uds":
        o.uds = value();
        break;
      case "--connections": {
        const v = value();
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1)
          throw new Usage(`--connections ${JSON.stringify(v)} is not a positive integer`);
        o.connections = n;
        break;
      }
      case "--verbose":
        o.verbose = true;
        break;
      default:
        throw new Usage(`unknown option ${JSON.stringify(flag)}`);
    }
  }
  if (device !== "net" && device !== "vsock") {
    throw new Usage(
      device === undefined
        ? "--device net|vsock is required"
        : `--device must be net or vsock, not ${JSON.stringify(device)}`,
    );
  }
  if (socket === undefined) throw new Usage("--socket PATH is required");
  const b = backend ?? (device === "net" ? "loopback" : "unix");
  if (device === "net" && b !== "tap" && b !== "loopback") {
    throw new Usage(`--backend for net is tap or loopback, not ${JSON.stringify(b)}`);
  }
  if (device === "vsock" && b !== "unix")
    throw new Usage(`--backend for vsock is unix, not ${JSON.stringify(b)}`);
  return { ...o, device, socket, backend: b as Options["backend"] };
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
      const host = yield* Effect.acquireRelease(
        Effect.promise(() => UnixSocketBackend.listen({ path: uds, now: Date.now })),
        (b) => Effect.promise(() => b.close()),
      );
      io.out(
        `vsock host side: connect to ${uds} and write "CONNECT <port>\\n"; guest connections to port P go to ${uds}_P`,
      );
      const created = VsockVirtioDevice.create({ guestCid: o.cid }, { host, queueCount: 2 });
      if (!created.ok) return yield* Effect.fail(`guest CID ${o.cid} is reserved (0, 1, 2 and 2^32-1 are)`);
      const dev = created.value;
      yield* Effect.addFinalizer(() => Effect.sync(() => dev.reset()));
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
export const vhostUserMain = async (argv: readonly string[], io: VhostUserIo): Promise<number> => {
  let o: Options | "help";
  try {
    o = parse(argv);
  } catch (e) {
    if (e instanceof Usage) {
      io.err(`sim vhost-user: ${e.message}`);
      io.err("try: npx tsx sim vhost-user --help");
      return 2;
    }
    throw e;
  }
  if (o === "help") {
    io.out(VHOST_USER_HELP);
    return 0;
  }
  const fiber = Effect.runFork(Effect.scoped(program(o, io)));
  let signalled = "";
  const stop = (sig: string) => (): void => {
    signalled = sig;
    io.out(`${sig}: closing (socket, mappings, fds, backend)`);
    Effect.runFork(Fiber.interrupt(fiber));
  };
  const onInt = stop("SIGINT");
  const onTerm = stop("SIGTERM");
  process.once("SIGINT", onInt);
  process.once("SIGTERM", onTerm);
  const exit = await Effect.runPromise(Fiber.await(fiber));
  process.off("SIGINT", onInt);
  process.off("SIGTERM", onTerm);
  if (Exit.isSuccess(exit)) return 0;
  if (signalled !== "" && Cause.hasInterruptsOnly(exit.cause)) {
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
