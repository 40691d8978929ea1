/**
 * The vsock device as an Effect service. Each queue kick is one effect; the clock is the
 * Effect `Clock` (so TestClock drives VSOCK-CONN-TIMEOUT in tests); the Unix-socket backend
 * is a scoped resource (its listener, sockets and socket file are released with the scope).
 *
 *   const program = Effect.gen(function* () {
 *     const vsock = yield* VsockDeviceService;
 *     yield* vsock.processTx;          // the driver kicked tx
 *     yield* vsock.processRx;          // fill rx buffers
 *     const irq = yield* vsock.takeInterrupts; // bit i: queue i wants an interrupt
 *   });
 *   Effect.runPromise(Effect.scoped(Effect.provide(program, unixVsockLayer(memory, config, path))));
 */
import { Clock, Context, Effect, Layer } from "effect";
import type { Scope } from "effect";
import type { GuestMemory } from "../memory/guest-memory.ts";
import { VsockDevice, type ProcessReport, type VsockDeviceConfig, type VsockDeviceError } from "./device.ts";
import type { HostPort } from "./muxer.ts";
import { UnixSocketBackend } from "./unix-backend.ts";

export interface VsockDeviceShape {
  readonly device: VsockDevice;
  /** The driver kicked tx. */
  readonly processTx: Effect.Effect<ProcessReport>;
  /** Fill rx buffers with what the connections have for the guest. */
  readonly processRx: Effect.Effect<ProcessReport>;
  /** The driver kicked the event queue. */
  readonly processEvent: Effect.Effect<boolean>;
  /** Timeouts against the Effect clock (VSOCK-CONN-TIMEOUT). */
  readonly tick: Effect.Effect<void>;
  /** VSOCK-EVENT-RESET. */
  readonly transportReset: Effect.Effect<boolean>;
  /** Queues owed an interrupt since the last call (bit i = queue i). */
  readonly takeInterrupts: Effect.Effect<number>;
  /** Resolves when the host side did something (Unix backend), at once otherwise. */
  readonly awaitHost: Effect.Effect<void>;
}

export class VsockDeviceService extends Context.Service<VsockDeviceService, VsockDeviceShape>()(
  "virtio-lab/VsockDevice",
) {}

const shape = (device: VsockDevice, backend: UnixSocketBackend | null): Effect.Effect<VsockDeviceShape> =>
  Effect.clockWith((clock: Clock.Clock) =>
    Effect.succeed<VsockDeviceShape>({
      device,
      processTx: Effect.sync(() => device.processTx(clock.currentTimeMillisUnsafe())),
      processRx: Effect.sync(() => {
        const r = device.processRx(clock.currentTimeMillisUnsafe());
        backend?.resumeDrained();
        return r;
      }),
      processEvent: Effect.sync(() => device.processEvent()),
      tick: Effect.sync(() => device.tick(clock.currentTimeMillisUnsafe())),
      transportReset: Effect.sync(() => device.transportReset()),
      takeInterrupts: Effect.sync(() => device.takeInterrupts()),
      awaitHost: backend === null ? Effect.void : backend.awaitActivity,
    }),
  );

/** A device over `memory` with any host side (e.g. MemoryHost); the CID is checked (VSOCK-CFG-CID). */
export const makeVsockDevice = (
  memory: GuestMemory,
  config: VsockDeviceConfig,
  host: HostPort | null,
): Effect.Effect<VsockDeviceShape, VsockDeviceError> =>
  Effect.suspend(() => {
    const created = VsockDevice.create(memory, config, host);
    return created.ok ? shape(created.value, null) : Effect.fail(created.error);
  });

/** A device behind the Unix-socket backend listening at `path`; released with the scope. */
export const makeUnixVsockDevice = (
  memory: GuestMemory,
  config: VsockDeviceConfig,
  path: string,
): Effect.Effect<VsockDeviceShape & { readonly backend: UnixSocketBackend }, VsockDeviceError, Scope.Scope> =>
  Effect.gen(function* () {
    const created = VsockDevice.create(memory, config, null);
    if (!created.ok) return yield* Effect.fail(created.error);
    const clock = yield* Clock.Clock;
    const backend = yield* Effect.acquireRelease(
      Effect.promise(() => UnixSocketBackend.listen({ path, now: () => clock.currentTimeMillisUnsafe() })),
      (b) => Effect.promise(() => b.close()),
    );
    backend.attach(created.value.muxer);
    const s = yield* shape(created.value, backend);
    return { ...s, backend };
  });

/** The service as a layer over the Unix-socket backend. */
export const unixVsockLayer = (
  memory: GuestMemory,
  config: VsockDeviceConfig,
  path: string,
): Layer.Layer<VsockDeviceService, VsockDeviceError> =>
  Layer.effect(VsockDeviceService, makeUnixVsockDevice(memory, config, path));
