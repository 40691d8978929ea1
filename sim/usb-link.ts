/**
 * A simulated USB bulk link between two vsock-over-USB endpoints, on the Effect clock.
 *
 * API for the simulator (the `usb-vsock` scenario):
 *
 *   // inside the scenario's create(ctx) (a Scope, with TestClock provided by the engine)
 *   const rig = yield* makeUsbVsockRig({ connections: 32, maxTransferSize: 512, latencyUs: 125 });
 *   //   optional: maxInFlight (4), hostVersion / deviceVersion (vsock:2), highWater (64 KiB,
 *   //   the device's pause threshold), onTransfer(dir, bytes) for the trace
 *   yield* rig.start;                 // Sync (host vsock:2 nonce) and open every connection
 *   // each step:
 *   yield* rig.offer(i, bytes);       // host writes on connection i without blocking the step
 *                                     //   (rig.send waits for room/pause); the device checks
 *                                     //   every byte's order and counts
 *   rig.stats()                       // sent/received bytes, order violations, pauses, failed
 *                                     //   writes, and per direction: transfers, bytes, max
 *                                     //   transfer, in flight, parse errors
 *   // the engine's TestClock.adjust moves transfers along (latency) between steps
 *   yield* rig.drain;                 // waits until every sent byte was received (virtual time)
 *
 * `makeUsbVsockRig` and `connectUsbLink` fail with TransferTooSmall when maxTransferSize is
 * below MIN_TRANSFER_SIZE (40: a Sync must fit in one transfer).
 *
 * Lower level: `connectUsbLink(host, device, options)` pumps transfers both ways between
 * any two `LinkEnd`s (a UsbVsockEndpoint is one) and returns counters.
 *
 * Model (USB-LINK-MTU, USB-LINK-LATENCY): each direction has one OUT pump that offers a
 * transfer buffer of `maxTransferSize` bytes to the sender's filler, takes it when it holds
 * data, and puts a copy in flight; it is delivered `latencyUs` later (Effect clock), in
 * order. At most `maxInFlight` transfers are in flight per direction (default 4); the pump
 * waits for a slot, which is how a slow link pushes back on writers.
 */
import { Clock, Deferred, Effect } from "effect";
import type { Scope } from "effect";
import type { UsbPacketFiller } from "../impl/usb-vsock/filler.ts";
import { UsbPacketBuilder } from "../impl/usb-vsock/packet.ts";
import { UsbVsockEndpoint, type VsockStream } from "../impl/usb-vsock/endpoint.ts";
import type { Address, ParseError } from "../impl/usb-vsock/packet.ts";
import type { ProtocolError, Version } from "../spec/usb-vsock.ts";
import { waitOn, wake, Waiters } from "../impl/usb-vsock/wakers.ts";

export interface LinkEnd {
  readonly filler: UsbPacketFiller;
  handleTransfer(bytes: Uint8Array): Effect.Effect<ParseError | undefined>;
}

/**
 * The smallest transfer the protocol can run over: a Sync with the longest version string
 * (`vsock:2:ffffffff`, 16 bytes) must fit in one transfer.
 */
export const MIN_TRANSFER_SIZE = 24 + 16;

export interface TransferTooSmall {
  readonly _tag: "TransferTooSmall";
  readonly maxTransferSize: number;
  readonly min: number;
}

export interface UsbLinkOptions {
  /** Largest bulk transfer, bytes, at least MIN_TRANSFER_SIZE (e.g. 512, or 16384 for big URBs). */
  readonly maxTransferSize: number;
  /** One-way delivery delay in µs of Effect clock time. */
  readonly latencyUs: number;
  /** Transfers in flight per direction before the pump waits (default 4). */
  readonly maxInFlight?: number;
  /** Called for every transfer sent (for traces); `dir` is "h2d" or "d2h". */
  readonly onTransfer?: (dir: "h2d" | "d2h", bytes: number) => void;
}

export interface DirectionStats {
  transfers: number;
  bytes: number;
  maxTransfer: number;
  parseErrors: number;
  inFlight: number;
}

export interface UsbLink {
  readonly h2d: DirectionStats;
  readonly d2h: DirectionStats;
  readonly options: UsbLinkOptions;
}

const direction = (
  from: LinkEnd,
  to: LinkEnd,
  dir: "h2d" | "d2h",
  stats: DirectionStats,
  o: UsbLinkOptions,
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const maxInFlight = Math.max(1, o.maxInFlight ?? 4);
    const flight: { readonly dueNanos: bigint; readonly bytes: Uint8Array }[] = [];
    const arrived = new Waiters();
    const freed = new Waiters();
    const latencyNanos = BigInt(Math.max(0, Math.round(o.latencyUs * 1000)));

    const pump = Effect.gen(function* () {
      let builder = new UsbPacketBuilder(new Uint8Array(o.maxTransferSize));
      for (;;) {
        while (flight.length >= maxInFlight) yield* waitOn(freed);
        // This pump is the filler's only reader, so AlreadyFilling cannot happen.
        builder = yield* Effect.orDie(from.filler.fill(builder));
        const taken = builder.take();
        if (taken === undefined) continue;
        const bytes = taken.slice(); // the buffer is refilled while this copy is in flight
        stats.transfers++;
        stats.bytes += bytes.length;
        if (bytes.length > stats.maxTransfer) stats.maxTransfer = bytes.length;
        o.onTransfer?.(dir, bytes.length);
        const now = yield* Clock.currentTimeNanos;
        flight.push({ dueNanos: now + latencyNanos, bytes });
        stats.inFlight = flight.length;
        wake(arrived);
      }
    });

    const deliver = Effect.gen(function* () {
      for (;;) {
        const head = flight[0];
        if (head === undefined) {
          yield* waitOn(arrived);
          continue;
        }
        const now = yield* Clock.currentTimeNanos;
        if (head.dueNanos > now) {
          yield* Effect.sleep(`${Number(head.dueNanos - now)} nanos`);
          continue;
        }
        flight.shift();
        stats.inFlight = flight.length;
        wake(freed);
        const e = yield* to.handleTransfer(head.bytes);
        if (e !== undefined) stats.parseErrors++;
      }
    });

    yield* Effect.forkScoped(pump);
    yield* Effect.forkScoped(deliver);
  });

/** Pumps transfers both ways between `host` and `device` until the scope closes. */
export const connectUsbLink = (
  host: LinkEnd,
  device: LinkEnd,
  options: UsbLinkOptions,
): Effect.Effect<UsbLink, TransferTooSmall, Scope.Scope> =>
  Effect.gen(function* () {
    if (!(options.maxTransferSize >= MIN_TRANSFER_SIZE))
      return yield* Effect.fail<TransferTooSmall>({
        _tag: "TransferTooSmall",
        maxTransferSize: options.maxTransferSize,
        min: MIN_TRANSFER_SIZE,
      });
    const fresh = (): DirectionStats => ({
      transfers: 0,
      bytes: 0,
      maxTransfer: 0,
      parseErrors: 0,
      inFlight: 0,
    });
    const link: UsbLink = { h2d: fresh(), d2h: fresh(), options };
    yield* direction(host, device, "h2d", link.h2d, options);
    yield* direction(device, host, "d2h", link.d2h, options);
    return link;
  });

// ---------------------------------------------------------------------------------------
// The many-connections rig for the `usb-vsock` scenario

export interface UsbVsockRigOptions extends UsbLinkOptions {
  /** Connections opened host → device (ports 1..n). */
  readonly connections: number;
  readonly hostVersion?: Version;
  readonly deviceVersion?: Version;
  /** Device-side unread bytes per connection before it pauses the host (vsock:1+). */
  readonly highWater?: number;
}

export interface UsbVsockRigStats {
  readonly sentBytes: number;
  readonly receivedBytes: number;
  /** Bytes received that were not the next expected byte of their connection. */
  readonly orderViolations: number;
  readonly connected: number;
  /** Pause(1) packets sent by either end (vsock:1+ only). */
  readonly pauses: number;
  /** Writes started with `offer` that failed (e.g. the connection was reset). */
  readonly failedWrites: number;
  readonly link: UsbLink;
  readonly version: Version | undefined;
}

export interface UsbVsockRig {
  readonly host: UsbVsockEndpoint;
  readonly device: UsbVsockEndpoint;
  readonly link: UsbLink;
  /** Syncs and opens every connection (the device accepts them all). */
  readonly start: Effect.Effect<void, ProtocolError | { readonly _tag: "ConnectionRefused" }>;
  /** The host sends `bytes` on connection `i` (0-based); waits only for outbox room or a pause. */
  send(i: number, bytes: Uint8Array): Effect.Effect<void, ProtocolError>;
  /**
   * Like `send` but never waits: the write runs in its own fiber (in the rig's scope), so a
   * simulator step can offer traffic without blocking. Writes offered on one connection
   * still go out in the order offered.
   */
  offer(i: number, bytes: Uint8Array): Effect.Effect<void>;
  /** Waits until the device has received every byte sent so far. */
  readonly drain: Effect.Effect<void>;
  stats(): UsbVsockRigStats;
}

export const HOST_CID = 2;
export const DEVICE_CID = 3;

export const rigAddress = (i: number): Address => ({
  deviceCid: DEVICE_CID,
  hostCid: HOST_CID,
  devicePort: 1000 + i,
  hostPort: 50000 + i,
});

export const makeUsbVsockRig = (
  o: UsbVsockRigOptions,
): Effect.Effect<UsbVsockRig, TransferTooSmall, Scope.Scope> =>
  Effect.gen(function* () {
    const host = yield* UsbVsockEndpoint.make({
      role: "host",
      ...(o.hostVersion !== undefined ? { preferred: o.hostVersion } : {}),
    });
    const device = yield* UsbVsockEndpoint.make({
      role: "device",
      ...(o.deviceVersion !== undefined ? { preferred: o.deviceVersion } : {}),
      ...(o.highWater !== undefined ? { highWater: o.highWater } : {}),
    });
    const link = yield* connectUsbLink(host, device, o);
    const scope = yield* Effect.scope;
    const streams: VsockStream[] = [];
    const sent: Uint8Array[][] = Array.from({ length: o.connections }, () => []);
    const recvBytes = new Array<number>(o.connections).fill(0);
    let orderViolations = 0;
    const progress = new Waiters();

    // Device: accept every incoming connection and check each byte against what was sent.
    const check = (i: number, chunk: Uint8Array): void => {
      let at = recvBytes[i]!;
      const msgs = sent[i]!;
      // Walk the sent messages to the byte expected next (messages are small and few per step).
      let m = 0;
      let base = 0;
      for (const b of chunk) {
        while (m < msgs.length && at >= base + msgs[m]!.length) {
          base += msgs[m]!.length;
          m++;
        }
        if (m >= msgs.length || msgs[m]![at - base] !== b) orderViolations++;
        at++;
      }
      recvBytes[i] = at;
      // Forget fully received messages so the walk stays short.
      while (msgs.length > 0 && recvBytes[i]! >= msgs[0]!.length) {
        recvBytes[i] = recvBytes[i]! - msgs[0]!.length;
        receivedTotal += msgs[0]!.length;
        msgs.shift();
      }
      wake(progress);
    };
    let receivedTotal = 0;
    let sentTotal = 0;

    const acceptor = Effect.gen(function* () {
      for (;;) {
        const a = yield* device.incoming;
        const s = yield* Effect.result(device.accept(a));
        if (s._tag === "Failure") continue;
        const i = a.devicePort - 1000;
        yield* Effect.forkIn(
          Effect.gen(function* () {
            for (;;) {
              const r = yield* Effect.result(s.success.read);
              if (r._tag === "Failure") return;
              check(i, r.success);
            }
          }),
          scope,
        );
      }
    });
    yield* Effect.forkScoped(acceptor);

    const start = Effect.gen(function* () {
      yield* host.sync();
      yield* device.awaitSynced;
      const opened = yield* Effect.forEach(
        Array.from({ length: o.connections }, (_, i) => i),
        (i) => host.connect(rigAddress(i)),
        { concurrency: "unbounded" },
      );
      streams.push(...opened);
    });

    const send = (i: number, bytes: Uint8Array): Effect.Effect<void, ProtocolError> =>
      Effect.suspend(() => {
        const s = streams[i];
        if (s === undefined)
          return Effect.fail<ProtocolError>({ _tag: "NoSuchConnection", address: rigAddress(i) });
        const copy = bytes.slice();
        sent[i]!.push(copy);
        sentTotal += copy.length;
        // A refused write sends nothing: forget it so `drain` does not wait for it.
        return Effect.tapError(s.write(copy), () =>
          Effect.sync(() => {
            const msgs = sent[i]!;
            const at = msgs.lastIndexOf(copy);
            if (at >= 0) msgs.splice(at, 1);
            sentTotal -= copy.length;
          }),
        );
      });

    // Per-connection chains keep offered writes in order without blocking the caller.
    const chains: Effect.Effect<void>[] = Array.from({ length: o.connections }, () => Effect.void);
    let failedWrites = 0;
    let pendingOffers = 0;
    const offer = (i: number, bytes: Uint8Array): Effect.Effect<void> =>
      Effect.gen(function* () {
        pendingOffers++;
        const before = chains[i] ?? Effect.void;
        const gate = yield* Deferred.make<void>();
        chains[i] = Deferred.await(gate);
        yield* Effect.forkIn(
          Effect.gen(function* () {
            yield* before;
            const r = yield* Effect.result(send(i, bytes));
            if (r._tag === "Failure") failedWrites++;
            pendingOffers--;
            wake(progress);
            yield* Deferred.succeed(gate, undefined);
          }),
          scope,
        );
      });

    const drain: Effect.Effect<void> = Effect.suspend(() =>
      pendingOffers === 0 && receivedTotal >= sentTotal
        ? Effect.void
        : Effect.flatMap(waitOn(progress), () => drain),
    );

    return {
      host,
      device,
      link,
      start,
      send,
      offer,
      drain,
      stats: () => ({
        sentBytes: sentTotal,
        receivedBytes: receivedTotal + recvBytes.reduce((a, b) => a + b, 0),
        orderViolations,
        connected: streams.length,
        pauses: host.pausesSent + device.pausesSent,
        failedWrites,
        link,
        version: host.core.version,
      }),
    };
  });
