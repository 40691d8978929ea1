/**
 * The Unix-socket backend, as cloud-hypervisor's vsock/unix muxer exposes it:
 * - host programs connect to the Unix socket at `path`, write `CONNECT <port>\n` and, once
 *   the guest accepts, read `OK <local port>\n`; then the socket is the stream
 *   (VSOCK-UNIX-CONNECT);
 * - a guest REQUEST to port P connects to the Unix socket `<path>_<P>`; nothing listening
 *   there means RST to the guest (VSOCK-UNIX-LISTEN).
 * Guest bytes count as forwarded (fwd_cnt) when the socket has flushed them, so the guest's
 * credit follows what the host really consumed. A socket whose bytes wait for guest credit
 * is paused (backpressure instead of unbounded buffering).
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { rmSync } from "node:fs";
import { Effect, Latch } from "effect";
import type { VsockConnection } from "./connection.ts";
import type { HostPort, VsockMuxer } from "./muxer.ts";

export interface UnixBackendOptions {
  /** The listening socket's path; guest-initiated connections go to `${path}_${port}`. */
  readonly path: string;
  /** Clock reading in ms (the Effect clock, in the service). */
  readonly now: () => number;
  /** Host bytes buffered per connection before the socket is paused. */
  readonly maxBuffered?: number;
  /** Longest `CONNECT <port>\n` line accepted. */
  readonly maxLine?: number;
}

const CONNECT_RE = /^CONNECT (\d{1,10})$/;

export class UnixSocketBackend implements HostPort {
  private muxer: VsockMuxer | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly paused = new Map<Socket, VsockConnection>();
  /** Open from a socket event until someone waits for it (`activity`). */
  private readonly active = Latch.makeUnsafe(false);
  /** The one promise every `activity()` call gets until the next event (null when none waits). */
  private waiting: { readonly promise: Promise<void>; readonly resolve: () => void } | null = null;
  /** Connections with guest bytes to write, flushed once per synchronous round (see hostData). */
  private readonly toFlush = new Set<VsockConnection>();
  private flushScheduled = false;
  private readonly flushAll = (): void => {
    this.flushScheduled = false;
    for (const conn of this.toFlush) this.flush(conn);
    this.toFlush.clear();
  };
  private readonly maxBuffered: number;
  private readonly maxLine: number;
  /** Handshake lines refused (bad syntax, too long, port out of range, muxer full). */
  refusedHandshakes = 0;

  private constructor(
    readonly options: UnixBackendOptions,
    private readonly server: Server,
  ) {
    this.maxBuffered = options.maxBuffered ?? 256 * 1024;
    this.maxLine = options.maxLine ?? 64;
  }

  /** Listens on `options.path` (a stale socket file there is removed first). */
  static listen(options: UnixBackendOptions): Promise<UnixSocketBackend> {
    rmSync(options.path, { force: true });
    const server = createServer({ allowHalfOpen: true });
    const backend = new UnixSocketBackend(options, server);
    server.on("connection", (sock) => backend.onHostConnection(sock));
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.path, () => {
        server.off("error", reject);
        resolve(backend);
      });
    });
  }

  attach(muxer: VsockMuxer): void {
    this.muxer = muxer;
    muxer.host = this;
  }

  /** Completes when a socket event happened since the last wait (data, connect, close, flush). */
  readonly awaitActivity: Effect.Effect<void> = Effect.andThen(
    this.active.await,
    Effect.sync(() => {
      this.active.closeUnsafe();
    }),
  );

  /**
   * `awaitActivity` as a promise, without a fiber (a driver loop waits here once per idle turn,
   * and a plain resolver costs a fraction of `Effect.runPromise`). A wait that ends on an event
   * leaves it visible to the next wait too: a caller that raced this promise against a timer
   * and went on without it must not lose the event to its abandoned wait. Waits between two
   * events share one promise, so a loop that abandons one per idle turn holds one, not one per
   * turn.
   */
  activity(): Promise<void> {
    if (this.active.closeUnsafe()) return Promise.resolve();
    if (this.waiting === null) {
      let resolve = (): void => {};
      const promise = new Promise<void>((r) => (resolve = r));
      this.waiting = { promise, resolve };
    }
    return this.waiting.promise;
  }

  private signal(): void {
    this.active.openUnsafe();
    const w = this.waiting;
    if (w === null) return;
    this.waiting = null;
    w.resolve();
  }

  /** After RX: resume sockets whose buffered bytes went to the guest. */
  resumeDrained(): void {
    for (const [sock, conn] of this.paused) {
      if (conn.fromHost.length < this.maxBuffered / 2 || conn.isKilled) {
        this.paused.delete(sock);
        sock.resume();
      }
    }
  }

  private track(sock: Socket): void {
    this.sockets.add(sock);
    sock.on("close", () => {
      this.sockets.delete(sock);
      this.paused.delete(sock);
    });
    sock.on("error", () => {
      // 'close' follows; the connection is reset there.
    });
  }

  private onHostConnection(sock: Socket): void {
    this.track(sock);
    let line = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      line = Buffer.concat([line, chunk]);
      const nl = line.indexOf(0x0a);
      if (nl < 0) {
        if (line.length > this.maxLine) this.refuse(sock);
        return;
      }
      sock.off("data", onData);
      const m = CONNECT_RE.exec(line.subarray(0, nl).toString("latin1"));
      const port = m === null ? -1 : Number(m[1]);
      const conn =
        port >= 0 && port <= 0xffffffff && this.muxer !== null ? this.muxer.hostConnect(port) : null;
      if (conn === null) return this.refuse(sock);
      this.bind(conn, sock);
      const rest = line.subarray(nl + 1);
      if (rest.length > 0) conn.hostWrite(rest);
      this.signal();
    };
    sock.on("data", onData);
  }

  private refuse(sock: Socket): void {
    this.refusedHandshakes++;
    sock.destroy();
  }

  private bind(conn: VsockConnection, sock: Socket): void {
    conn.hostHandle = sock;
    sock.on("data", (chunk: Buffer) => {
      conn.hostWrite(chunk);
      if (conn.fromHost.length > this.maxBuffered && !this.paused.has(sock)) {
        this.paused.set(sock, conn);
        sock.pause();
      }
      this.signal();
    });
    sock.on("end", () => {
      conn.hostShutdown();
      this.signal();
    });
    sock.on("close", () => {
      conn.hostClose(this.options.now());
      this.signal();
    });
  }

  private flush(conn: VsockConnection): void {
    const sock = conn.hostHandle as Socket | null;
    if (sock === null || sock.destroyed) {
      // Nobody to read: the bytes are dropped but still free the guest's credit.
      let n = 0;
      for (let c = conn.takeToHost(); c !== null; c = conn.takeToHost()) {
        n += c.length;
        conn.releaseToHost(c);
      }
      conn.forwarded(n);
      return;
    }
    // Packets that followed each other are one range of the muxer's slab: usually one write.
    let chunks = 0;
    for (let c = conn.takeToHost(); c !== null; c = conn.takeToHost()) {
      if (chunks++ === 1) sock.cork();
      const n = c.length;
      // Called once Node is done with `c` (written, or failed when the socket went).
      sock.write(c, () => {
        conn.forwarded(n);
        conn.releaseToHost(c);
        this.signal();
      });
    }
    if (chunks > 1) sock.uncork();
    if (conn.hostReadClosed && !sock.writableEnded) sock.end();
  }

  // HostPort -------------------------------------------------------------------------------

  guestConnect(conn: VsockConnection): void {
    const sock = createConnection({ path: `${this.options.path}_${conn.localPort}`, allowHalfOpen: true });
    this.track(sock);
    let connected = false;
    sock.once("connect", () => {
      connected = true;
      if (conn.isKilled) return void sock.destroy();
      this.bind(conn, sock);
      conn.accept();
      this.signal();
    });
    sock.once("error", () => {
      if (!connected) {
        conn.kill("Rst", true);
        this.signal();
      }
    });
  }

  established(conn: VsockConnection): void {
    const sock = conn.hostHandle as Socket | null;
    if (sock !== null && !sock.destroyed) sock.write(`OK ${conn.localPort}\n`);
    this.signal();
  }

  /**
   * Guest bytes arrived: written once the device's synchronous round (a whole TX queue) is
   * over, so the packets of the round go out together instead of one write each.
   */
  hostData(conn: VsockConnection): void {
    this.toFlush.add(conn);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flushAll);
    }
  }

  closed(conn: VsockConnection): void {
    this.toFlush.delete(conn);
    this.flush(conn);
    const sock = conn.hostHandle as Socket | null;
    if (sock !== null && !sock.destroyed) {
      // The connection is gone for good: once the last bytes are flushed, release the fd
      // too. Half-open sockets would otherwise stay until the host program closes its end,
      // one fd per connection a guest opens and resets.
      if (!sock.writableEnded) sock.end();
      if (sock.writableFinished) sock.destroy();
      else sock.once("finish", () => sock.destroy());
    }
    this.signal();
  }

  /** Closes the listener and every socket, and removes the socket file. */
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.paused.clear();
    this.signal();
    return new Promise((resolve) => {
      this.server.close(() => {
        rmSync(this.options.path, { force: true });
        resolve();
      });
    });
  }
}
