/**
 * VsockDevice behind the VirtioDevice contract. VsockDevice is built on its guest memory,
 * so this adapter keeps the queues a transport configures before activation and builds the
 * device at `activate`, carrying each queue's configuration and positions over; after that
 * `queues` are the live device's. Kicks map to processTx / processRx / processEvent, and the
 * interrupts the device owes (`takeInterrupts`) go to `notify`.
 *
 * `queueCount` 2 drives rx and tx only: a VMM speaking vhost-user keeps the event queue
 * itself (QEMU's vhost-user-vsock hands the back-end two rings).
 */
import { Effect, type Scope } from "effect";
import { err, ok, type Result } from "../../spec/result.ts";
import type { GuestMemory } from "../memory/guest-memory.ts";
import { ringOrSplit, type DeviceQueue, type RingKind } from "../queue/device-queue.ts";
import type { SplitQueue } from "../queue/split-queue.ts";
import {
  EVENT_QUEUE,
  RX_QUEUE,
  TX_QUEUE,
  VSOCK_DEVICE_FEATURES,
  VsockDevice,
  isReservedCid,
  type VsockDeviceConfig,
  type VsockDeviceError,
} from "../vsock/device.ts";
import type { HostPort } from "../vsock/muxer.ts";
import { UnixSocketBackend } from "../vsock/unix-backend.ts";
import { VIRTIO_ID_VSOCK, type AckError, type ActivateError, type VirtioDevice } from "./virtio-device.ts";

/** A host side that can say when it has something for the guest (the Unix-socket backend). */
export interface VsockHost extends HostPort {
  activity?(): Promise<void>;
  resumeDrained?(): void;
  attach?(muxer: VsockDevice["muxer"]): void;
}

export interface VsockVirtioOptions {
  readonly host?: VsockHost | null;
  /** 3 (rx, tx, event) or 2 (rx, tx: the transport keeps the event queue). Default 3. */
  readonly queueCount?: 2 | 3;
  /** Clock in ms for connection timeouts (default Date.now). */
  readonly now?: () => number;
  /** How often `run` ticks connection timeouts without host activity (ms, default 1000). */
  readonly tickMs?: number;
}

/** The host side's Unix listener could not be opened. */
export interface UnixListenFailed {
  readonly _tag: "UnixListenFailed";
  readonly path: string;
  readonly message: string;
}

export class VsockVirtioDevice<Q extends DeviceQueue = SplitQueue> implements VirtioDevice<Q> {
  readonly deviceId = VIRTIO_ID_VSOCK;
  readonly name = "vsock";
  readonly offeredFeatures: bigint;
  readonly configSize = 8;
  readonly run: Effect.Effect<never>;
  private acked = 0n;
  private live: VsockDevice<Q> | null = null;
  private liveQueues: readonly Q[] = [];
  private readonly staging: readonly Q[];
  private readonly ring: RingKind<Q>;
  private readonly config: Uint8Array = new Uint8Array(8);
  private notifyFn: (queue: number) => void = () => {};
  private readonly queueCount: 2 | 3;
  private readonly now: () => number;
  private readonly host: VsockHost | null;

  private constructor(
    readonly deviceConfig: VsockDeviceConfig<Q>,
    options: VsockVirtioOptions,
  ) {
    // Without a ring in the config Q is its default, SplitQueue (the split ring).
    const ring = ringOrSplit(deviceConfig.ring);
    this.ring = ring;
    this.offeredFeatures = VSOCK_DEVICE_FEATURES | ring.featureBits;
    this.queueCount = options.queueCount ?? 3;
    this.now = options.now ?? Date.now;
    this.host = options.host ?? null;
    const size = deviceConfig.queueMaxSize ?? 256;
    this.staging = Array.from({ length: this.queueCount }, () => ring.newQueue(size));
    new DataView(this.config.buffer).setBigUint64(0, deviceConfig.guestCid, true);
    const host = this.host;
    const tickMs = options.tickMs ?? 1000;
    const wait: Effect.Effect<void> =
      host?.activity === undefined
        ? Effect.sleep(tickMs)
        : Effect.race(
            Effect.promise(() => host.activity!()),
            Effect.sleep(tickMs),
          );
    this.run = Effect.forever(Effect.flatMap(wait, () => Effect.sync(() => this.hostWork())));
  }

  /** VSOCK-CFG-CID: a reserved guest CID is refused. */
  static create<Q extends DeviceQueue = SplitQueue>(
    config: VsockDeviceConfig<Q>,
    options: VsockVirtioOptions = {},
  ): Result<VsockVirtioDevice<Q>, VsockDeviceError> {
    if (isReservedCid(config.guestCid)) return err({ _tag: "InvalidGuestCid", cid: config.guestCid });
    return ok(new VsockVirtioDevice(config, options));
  }

  /**
   * The device with its Unix-socket host side listening at `uds` (host programs connect there
   * and write "CONNECT <port>"; guest connections to port P go to `${uds}_P`), two queues (the
   * transport keeps the event queue). The scope resets the device and closes the listener.
   */
  static withUnixHost<Q extends DeviceQueue = SplitQueue>(
    uds: string,
    guestCid: bigint,
    ring?: RingKind<Q>,
  ): Effect.Effect<VsockVirtioDevice<Q>, VsockDeviceError | UnixListenFailed, Scope.Scope> {
    return Effect.gen(function* () {
      const host = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () => UnixSocketBackend.listen({ path: uds, now: Date.now }),
          catch: (e): UnixListenFailed => ({ _tag: "UnixListenFailed", path: uds, message: String(e) }),
        }),
        (b) => Effect.promise(() => b.close()),
      );
      const created = VsockVirtioDevice.create<Q>(ring === undefined ? { guestCid } : { guestCid, ring }, {
        host,
        queueCount: 2,
      });
      if (!created.ok) return yield* Effect.fail(created.error);
      const device = created.value;
      yield* Effect.addFinalizer(() => Effect.sync(() => device.reset()));
      return device;
    });
  }

  /** The live VsockDevice while active (stats, muxer), else null. */
  get device(): VsockDevice<Q> | null {
    return this.live;
  }

  get ackedFeatures(): bigint {
    return this.acked;
  }

  get queues(): readonly Q[] {
    return this.live === null ? this.staging : this.liveQueues;
  }

  get isActive(): boolean {
    return this.live !== null;
  }

  ackFeatures(acked: bigint): Result<bigint, AckError> {
    if (this.live !== null) return err({ _tag: "FeaturesLocked" });
    const extra = acked & ~this.offeredFeatures;
    if (extra !== 0n) return err({ _tag: "FeatureNotOffered", bits: extra });
    // A packed-ring device needs VIRTIO_F_RING_PACKED (VIRTIO 1.2 §2.2.1: FEATURES_OK fails otherwise).
    if ((acked & this.ring.featureBits) !== this.ring.featureBits)
      return err({ _tag: "RingNotAcked", ring: this.ring.name });
    this.acked = acked;
    return ok(acked);
  }

  readConfig(offset: number, into: Uint8Array): void {
    for (let i = 0; i < into.length; i++) into[i] = this.config[offset + i] ?? 0;
  }

  /** guest_cid is read-only (VIRTIO 1.2 §5.10.4): writes are ignored. */
  writeConfig(_offset: number, _data: Uint8Array): void {}

  activate(memory: GuestMemory, notify: (queue: number) => void): Result<void, ActivateError> {
    const created = VsockDevice.create(memory, this.deviceConfig, this.host);
    if (!created.ok) return created;
    const dev = created.value;
    for (let i = 0; i < this.queueCount; i++) this.ring.carry(this.staging[i]!, dev.queues[i]!);
    dev.ackFeatures(this.acked);
    const r = dev.activate(this.queueCount);
    if (!r.ok) return err({ _tag: "QueueInit", queue: r.error.queue, error: r.error.error });
    this.host?.attach?.(dev.muxer);
    this.live = dev;
    this.liveQueues = dev.queues.slice(0, this.queueCount);
    this.notifyFn = notify;
    return ok(undefined);
  }

  reset(): void {
    const dev = this.live;
    this.live = null;
    this.liveQueues = [];
    this.notifyFn = () => {};
    // Host sockets of the old connections are closed through HostPort.closed.
    dev?.muxer.resetAll();
    for (const q of this.staging) q.reset();
    this.acked = 0n;
  }

  private flush(dev: VsockDevice<Q>): void {
    const bits = dev.takeInterrupts();
    for (let q = 0; q < this.queueCount; q++) if ((bits & (1 << q)) !== 0) this.notifyFn(q);
  }

  processQueue(queue: number): number {
    const dev = this.live;
    if (dev === null || queue >= this.queueCount) return 0;
    const now = this.now();
    let chains = 0;
    if (queue === TX_QUEUE) {
      chains = dev.processTx(now).chains;
      // Replies (RESPONSE, RST, credit updates) wait for RX buffers the guest already gave.
      if (dev.hasPendingRx()) dev.processRx(now);
    } else if (queue === RX_QUEUE) {
      chains = dev.processRx(now).chains;
      this.host?.resumeDrained?.();
    } else if (queue === EVENT_QUEUE) {
      chains = dev.processEvent() ? 1 : 0;
    }
    this.flush(dev);
    return chains;
  }

  /** Host activity or a tick: timeouts, then whatever the host has for the guest. */
  private hostWork(): void {
    const dev = this.live;
    if (dev === null) return;
    const now = this.now();
    dev.tick(now);
    if (dev.hasPendingRx()) dev.processRx(now);
    this.host?.resumeDrained?.();
    this.flush(dev);
  }
}
