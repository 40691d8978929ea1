/**
 * An in-memory host behind the muxer: host programs are plain objects that accept guest
 * connections on listening ports, write bytes, and read what the guest sent. Properties and
 * the simulator use it where real sockets would make runs slow and nondeterministic.
 */
import type { VsockConnection } from "./connection.ts";
import type { HostPort, VsockMuxer } from "./muxer.ts";

export class MemoryHost implements HostPort {
  /** Host ports with a listener: guest connects to others are refused with RST (VSOCK-UNIX-LISTEN). */
  readonly listening = new Set<number>();
  /** Guest-initiated connections the host accepted, in order. */
  readonly accepted: VsockConnection[] = [];
  readonly established_: VsockConnection[] = [];
  readonly closedConns: VsockConnection[] = [];
  /** Bytes the host read per connection. */
  readonly received = new Map<VsockConnection, Uint8Array[]>();
  muxer: VsockMuxer | null = null;

  guestConnect(conn: VsockConnection): void {
    if (this.listening.has(conn.localPort)) {
      conn.accept();
      this.accepted.push(conn);
    } else {
      conn.kill("Rst", true);
    }
  }
  established(conn: VsockConnection): void {
    this.established_.push(conn);
  }
  hostData(): void {
    // The host reads when it chooses (read()).
  }
  closed(conn: VsockConnection): void {
    this.closedConns.push(conn);
  }

  /** The host program reads up to `max` bytes; they count as forwarded at once. */
  read(conn: VsockConnection, max = Infinity): number {
    let n = 0;
    let list = this.received.get(conn);
    if (list === undefined) {
      list = [];
      this.received.set(conn, list);
    }
    while (n < max) {
      const chunk = conn.takeToHost(max - n);
      if (chunk === null) break;
      list.push(chunk);
      n += chunk.length;
    }
    conn.forwarded(n);
    return n;
  }

  receivedBytes(conn: VsockConnection): Uint8Array {
    return Buffer.concat(this.received.get(conn) ?? []);
  }
}
