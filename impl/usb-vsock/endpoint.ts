/**
 * A vsock-over-USB endpoint (host or device) with Effect: the protocol state machine
 * (protocol.ts) plus its outgoing packet path through a UsbPacketFiller, streams for
 * connections and the control stream, sync, and echo.
 *
 * Wiring: whoever owns the USB link pumps transfers out of `filler` (`filler.fill`) and
 * hands received transfers to `handleTransfer`. sim/usb-link.ts does both for two
 * endpoints.
 *
 * Order: every packet the state machine emits goes into one FIFO outbox drained by one
 * fiber, so the wire order is the order of state changes (a Reset is never overtaken by a
 * later Connect on the same address).
 */
import { Effect } from "effect";
import type { Scope } from "effect";
import { UsbPacketFiller } from "./filler.ts";
import { PacketType, type ParseError } from "./packet.ts";
import { ProtocolEndpoint } from "./protocol.ts";
import {
  addressKey,
  ZERO_ADDRESS,
  type Address,
  type Notice,
  type ProtocolError,
  type Role,
  type Version,
  type PacketType as PacketTypeT,
} from "../../spec/usb-vsock.ts";
import { waitOn, wake, Waiters } from "./wakers.ts";

export interface Refused {
  readonly _tag: "ConnectionRefused";
  readonly address: Address;
}

export interface StreamClosed {
  readonly _tag: "StreamClosed";
  readonly address: Address;
  /** True when the connection ended by Reset (or a Sync), false after an orderly Finish. */
  readonly reset: boolean;
}

export interface EndpointOptions {
  readonly role: Role;
  /** The newest version this end speaks (default vsock:2). */
  readonly preferred?: Version;
  /** Unread bytes per connection above which the peer is paused (USB-PAUSE). Default 64 KiB. */
  readonly highWater?: number;
  /** Bytes queued for sending above which writers wait. Default 256 KiB. */
  readonly maxOutbox?: number;
}

export interface VsockStream {
  readonly address: Address;
  /** The next chunk received, in order; StreamClosed once closed and drained. */
  readonly read: Effect.Effect<Uint8Array, StreamClosed>;
  /** Sends all of `bytes`, waiting while the peer has paused this connection. */
  write(bytes: Uint8Array): Effect.Effect<void, ProtocolError>;
  /** Orderly close (Finish); the peer answers Reset. */
  readonly close: Effect.Effect<void, ProtocolError>;
  readonly reset: Effect.Effect<void, ProtocolError>;
  /** Completes when the connection is gone. */
  readonly closed: Effect.Effect<StreamClosed>;
}

interface StreamState {
  readonly address: Address;
  readonly chunks: Uint8Array[];
  connected: boolean;
  ended: StreamClosed | Refused | undefined;
  readonly waiters: Waiters;
}

interface OutPacket {
  readonly type: PacketTypeT;
  readonly address: Address;
  readonly payload: Uint8Array | undefined;
}

export class UsbVsockEndpoint {
  readonly filler = new UsbPacketFiller();
  readonly core: ProtocolEndpoint;
  private readonly outbox: OutPacket[] = [];
  private outboxBytes = 0;
  private readonly outboxWaiters = new Waiters();
  private readonly roomWaiters = new Waiters();
  private readonly streams = new Map<string, StreamState>();
  private readonly incomingQueue: Address[] = [];
  private readonly incomingWaiters = new Waiters();
  private readonly controlChunks: Uint8Array[] = [];
  private readonly controlWaiters = new Waiters();
  private readonly echoReplies: Uint8Array[] = [];
  /** echo() calls waiting for a reply (USB-ECHO): how many EchoReplies to keep. */
  private echoAwaited = 0;
  private readonly echoWaiters = new Waiters();
  private readonly syncWaiters = new Waiters();
  private nonce = 0;
  private readonly maxOutbox: number;
  /** Parse errors seen on received transfers (each drops the rest of its transfer). */
  parseErrors = 0;
  /** Packets that could not be sent (larger than a whole transfer). */
  unsendable = 0;
  /** Pause(1) packets sent: how often this end had to hold its peer back (USB-PAUSE). */
  pausesSent = 0;

  private constructor(options: EndpointOptions) {
    this.maxOutbox = options.maxOutbox ?? 256 * 1024;
    this.core = new ProtocolEndpoint(
      options.role,
      options.preferred ?? { v: 2, nonce: 0 },
      options.highWater ?? 64 * 1024,
      {
        emit: (type, address, payload) => {
          if (type === PacketType.Pause && payload?.[0] === 1) this.pausesSent++;
          this.outbox.push({ type, address, payload });
          this.outboxBytes += payload === undefined ? 0 : payload.length;
          wake(this.outboxWaiters);
        },
        notice: (n) => this.onNotice(n),
      },
    );
  }

  /** Creates an endpoint and forks its outbox writer into the current scope. */
  static make(options: EndpointOptions): Effect.Effect<UsbVsockEndpoint, never, Scope.Scope> {
    return Effect.gen(function* () {
      const ep = new UsbVsockEndpoint(options);
      yield* Effect.forkScoped(ep.drainOutbox());
      return ep;
    });
  }

  private drainOutbox(): Effect.Effect<never> {
    const one: Effect.Effect<void> = Effect.suspend(() => {
      const p = this.outbox.shift();
      if (p === undefined) return waitOn(this.outboxWaiters);
      const done = Effect.sync(() => {
        this.outboxBytes -= p.payload === undefined ? 0 : p.payload.length;
        wake(this.roomWaiters);
      });
      if (p.type === PacketType.Data)
        return Effect.andThen(this.filler.writeDataAll(p.address, p.payload!), done);
      return Effect.andThen(
        // USB-SYNC-LAST: a Sync ends its transfer.
        Effect.catch(this.filler.writePacket(p.type, p.address, p.payload, p.type === PacketType.Sync), () =>
          Effect.sync(() => {
            this.unsendable++;
          }),
        ),
        done,
      );
    });
    return Effect.forever(one);
  }

  private onNotice(n: Notice): void {
    switch (n._tag) {
      case "Incoming":
        this.incomingQueue.push(n.address);
        wake(this.incomingWaiters);
        return;
      case "Connected": {
        const s = this.streamFor(n.address);
        s.connected = true;
        wake(s.waiters);
        return;
      }
      case "Refused":
      case "Closed": {
        const key = addressKey(n.address);
        const s = this.streams.get(key);
        if (s === undefined) return;
        this.streams.delete(key);
        s.ended =
          n._tag === "Refused" && !s.connected
            ? { _tag: "ConnectionRefused", address: n.address }
            : { _tag: "StreamClosed", address: n.address, reset: n._tag === "Closed" ? n.reset : true };
        wake(s.waiters);
        return;
      }
      case "Data": {
        const s = this.streams.get(addressKey(n.address));
        if (s === undefined) return;
        s.chunks.push(n.payload.slice());
        wake(s.waiters);
        return;
      }
      case "Control":
        this.controlChunks.push(n.payload.slice());
        wake(this.controlWaiters);
        return;
      case "EchoReply":
        // Only replies an echo() waits for are kept: a hostile peer's unrequested ones would
        // pile up without bound and answer the next echo() with a stale payload.
        if (this.echoReplies.length < this.echoAwaited) {
          this.echoReplies.push(n.payload.slice());
          wake(this.echoWaiters);
        }
        return;
      case "Paused": {
        const s = this.streams.get(addressKey(n.address));
        if (s !== undefined) wake(s.waiters);
        return;
      }
      case "ResetAll":
        wake(this.syncWaiters);
        return;
    }
  }

  private streamFor(a: Address): StreamState {
    const key = addressKey(a);
    let s = this.streams.get(key);
    if (s === undefined) {
      s = { address: a, chunks: [], connected: false, ended: undefined, waiters: new Waiters() };
      this.streams.set(key, s);
    }
    return s;
  }

  /** Handles one received USB transfer; returns its parse error, if any (USB-PARSE-STOP). */
  handleTransfer(bytes: Uint8Array): Effect.Effect<ParseError | undefined> {
    return Effect.sync(() => {
      const e = this.core.receiveTransfer(bytes);
      if (e !== undefined) this.parseErrors++;
      wake(this.syncWaiters);
      return e;
    });
  }

  /** Waits until this end is synchronised; fails InvalidSyncMagic if the host gave up. */
  readonly awaitSynced: Effect.Effect<Version, ProtocolError> = Effect.suspend(() => {
    const s = this.core.sync;
    if (s.tag === "Synced") return Effect.succeed(s.version);
    if (s.tag === "Failed") return Effect.fail<ProtocolError>({ _tag: "InvalidSyncMagic" });
    return Effect.flatMap(waitOn(this.syncWaiters), () => this.awaitSynced);
  });

  /** Host: sends Sync (USB-SYNC-VERSION) and waits for the negotiated version. */
  sync(nonce?: number): Effect.Effect<Version, ProtocolError> {
    return Effect.suspend(() => {
      const e = this.core.startSync(nonce ?? ++this.nonce);
      if (e !== undefined) return Effect.fail(e);
      return this.awaitSynced;
    });
  }

  private stream(s: StreamState): VsockStream {
    const a = s.address;
    const read: Effect.Effect<Uint8Array, StreamClosed> = Effect.suspend(() => {
      const c = s.chunks.shift();
      if (c !== undefined) {
        this.core.consumed(a, c.length);
        return Effect.succeed(c);
      }
      if (s.ended !== undefined)
        return Effect.fail<StreamClosed>(
          s.ended._tag === "StreamClosed" ? s.ended : { _tag: "StreamClosed", address: a, reset: true },
        );
      return Effect.flatMap(waitOn(s.waiters), () => read);
    });
    const closed: Effect.Effect<StreamClosed> = Effect.suspend(() =>
      s.ended !== undefined
        ? Effect.succeed<StreamClosed>(
            s.ended._tag === "StreamClosed" ? s.ended : { _tag: "StreamClosed", address: a, reset: true },
          )
        : Effect.flatMap(waitOn(s.waiters), () => closed),
    );
    const lift = (f: () => ProtocolError | undefined): Effect.Effect<void, ProtocolError> =>
      Effect.suspend(() => {
        const e = f();
        return e === undefined ? Effect.void : Effect.fail(e);
      });
    return {
      address: a,
      read,
      write: (bytes) => this.write(a, s.waiters, bytes),
      close: lift(() => this.core.close(a)),
      reset: lift(() => this.core.reset(a)),
      closed,
    };
  }

  private write(a: Address, waiters: Waiters, bytes: Uint8Array): Effect.Effect<void, ProtocolError> {
    const copy = bytes.slice();
    const attempt: Effect.Effect<void, ProtocolError> = Effect.suspend(() => {
      if (this.outboxBytes > this.maxOutbox) return Effect.flatMap(waitOn(this.roomWaiters), () => attempt);
      const e = this.core.send(a, copy);
      if (e === undefined) return Effect.void;
      // USB-PAUSE: hold the data until the peer resumes (or the connection goes away).
      if (e._tag === "Paused") return Effect.flatMap(waitOn(waiters), () => attempt);
      return Effect.fail(e);
    });
    return attempt;
  }

  /** Opens a connection (USB-CONN-CONNECT); waits for Accept, or fails ConnectionRefused. */
  connect(a: Address): Effect.Effect<VsockStream, ProtocolError | Refused> {
    return Effect.suspend((): Effect.Effect<VsockStream, ProtocolError | Refused> => {
      const e = this.core.connect(a);
      if (e !== undefined) return Effect.fail(e);
      const s: StreamState = {
        address: a,
        chunks: [],
        connected: false,
        ended: undefined,
        waiters: new Waiters(),
      };
      this.streams.set(addressKey(a), s);
      const wait: Effect.Effect<VsockStream, Refused> = Effect.suspend(() => {
        if (s.connected) return Effect.succeed(this.stream(s));
        if (s.ended !== undefined) return Effect.fail<Refused>({ _tag: "ConnectionRefused", address: a });
        return Effect.flatMap(waitOn(s.waiters), () => wait);
      });
      return wait;
    });
  }

  /** The next incoming connection request (an address in ConnectingIncoming). */
  readonly incoming: Effect.Effect<Address> = Effect.suspend(() => {
    // A peer may Connect then Reset before we accept: skip addresses no longer waiting.
    for (let a = this.incomingQueue.shift(); a !== undefined; a = this.incomingQueue.shift()) {
      if (this.core.connection(a)?.state === "ConnectingIncoming") return Effect.succeed(a);
    }
    return Effect.flatMap(waitOn(this.incomingWaiters), () => this.incoming);
  });

  accept(a: Address): Effect.Effect<VsockStream, ProtocolError> {
    return Effect.suspend(() => {
      const s = this.streamFor(a);
      const e = this.core.accept(a);
      if (e !== undefined) {
        if (!s.connected) this.streams.delete(addressKey(a));
        return Effect.fail(e);
      }
      return Effect.succeed(this.stream(s));
    });
  }

  reject(a: Address): Effect.Effect<void, ProtocolError> {
    return Effect.suspend(() => {
      const e = this.core.reject(a);
      return e === undefined ? Effect.void : Effect.fail(e);
    });
  }

  /** USB-CONTROL-STREAM: data on the all-zero address. */
  readonly control = {
    send: (bytes: Uint8Array): Effect.Effect<void, ProtocolError> =>
      this.write(ZERO_ADDRESS, this.controlWaiters, bytes),
    read: Effect.suspend((): Effect.Effect<Uint8Array> => {
      const c = this.controlChunks.shift();
      if (c !== undefined) return Effect.succeed(c);
      return Effect.flatMap(waitOn(this.controlWaiters), () => this.control.read);
    }),
  };

  /** USB-ECHO: sends Echo and waits for the next EchoReply. */
  echo(payload: Uint8Array): Effect.Effect<Uint8Array, ProtocolError> {
    return Effect.suspend(() => {
      const e = this.core.echo(payload.slice());
      if (e !== undefined) return Effect.fail(e);
      this.echoAwaited++;
      let settled = false;
      const settle = (): void => {
        if (settled) return;
        settled = true;
        this.echoAwaited--;
      };
      const wait: Effect.Effect<Uint8Array> = Effect.suspend(() => {
        const r = this.echoReplies.shift();
        if (r !== undefined) {
          settle();
          return Effect.succeed(r);
        }
        return Effect.flatMap(waitOn(this.echoWaiters), () => wait);
      });
      return Effect.onInterrupt(wait, () => Effect.sync(settle));
    });
  }
}
