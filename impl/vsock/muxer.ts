/**
 * The vsock muxer (cloud-hypervisor's vsock/unix/muxer.rs, backend-neutral): routes guest
 * packets to connections by (local port, peer port), answers what has no connection with
 * RST, drops packets for other CIDs, and hands out packets for the guest round-robin over
 * the connections that have something to say. A `HostPort` (the Unix-socket backend, or an
 * in-memory host in tests) is told about connects, accepted connections, data and closes.
 *
 * Synchronous and allocation-light: the device calls `fromGuest` per TX packet and `toGuest`
 * per RX buffer; backends call the connection's host-side methods and `hostConnect`.
 */
import {
  DEFAULT_CONN_OPTIONS,
  HOST_CID_HI,
  HOST_CID_LO,
  Slab,
  VsockConnection,
  type ConnListener,
  type ConnOptions,
} from "./connection.ts";
import { cidHi, cidLo } from "./header.ts";
import type { VsockPacket } from "./packet.ts";
import { VSOCK_OP_REQUEST, VSOCK_OP_RST, VSOCK_PKT_HDR_SIZE, VSOCK_TYPE_STREAM } from "../../wire/vsock.ts";

/** What the muxer needs from the host side. */
export interface HostPort {
  /** The guest asked to connect to host port `conn.localPort`: call `conn.accept()` or `conn.kill("Rst", true)`, now or later. */
  guestConnect(conn: VsockConnection): void;
  /** The guest accepted a host-initiated connection. */
  established(conn: VsockConnection): void;
  /** Guest bytes are waiting in `conn` (`takeToHost`), or the guest shut its sending side. */
  hostData(conn: VsockConnection): void;
  /** The connection is gone from the muxer (reset or closed); drain what is left and close. */
  closed(conn: VsockConnection): void;
}

export interface MuxerOptions extends ConnOptions {
  /** Connections beyond this are refused with RST (cloud-hypervisor/Firecracker MAX_CONNECTIONS). */
  readonly maxConnections: number;
  /** RST replies queued for packets without a connection; a flood beyond this is dropped. */
  readonly maxPendingRst: number;
  /** Record every connection's state changes (tests, simulator). */
  readonly trace: boolean;
}

export const DEFAULT_MUXER_OPTIONS: MuxerOptions = {
  ...DEFAULT_CONN_OPTIONS,
  maxConnections: 1023,
  maxPendingRst: 256,
  trace: false,
};

export interface MuxerStats {
  /** Packets dropped because of their CIDs (VSOCK-CONN-CID). */
  droppedCid: number;
  /** RST replies for packets with no connection, bad type or refused connects. */
  rstReplies: number;
  /** RST replies not queued because the queue was full. */
  rstDropped: number;
  /** Connections reset, by reason. */
  resets: Record<string, number>;
}

const FIRST_LOCAL_PORT = 1 << 30;

export class VsockMuxer implements ConnListener {
  readonly options: MuxerOptions;
  private readonly conns = new Map<number, Map<number, VsockConnection>>();
  private count = 0;
  private readonly rxQueue: VsockConnection[] = [];
  private readonly rxQueued = new WeakSet<VsockConnection>();
  private readonly rstLocal: Uint32Array;
  private readonly rstPeer: Uint32Array;
  private rstHead = 0;
  private rstCount = 0;
  private nextLocalPort = FIRST_LOCAL_PORT;
  /** Guest bytes of every connection are copied here (see `Slab`). */
  private readonly slab = new Slab();
  private readonly guestCidLo: number;
  private readonly guestCidHi: number;
  /** Every connection ever made, when tracing (so tests can see final states). */
  readonly history: VsockConnection[] | null;
  readonly stats: MuxerStats = { droppedCid: 0, rstReplies: 0, rstDropped: 0, resets: {} };
  /** Last clock reading the owner gave (ms). */
  now = 0;

  constructor(
    readonly guestCid: bigint,
    public host: HostPort | null,
    options: Partial<MuxerOptions> = {},
  ) {
    this.options = { ...DEFAULT_MUXER_OPTIONS, ...options };
    this.rstLocal = new Uint32Array(this.options.maxPendingRst);
    this.rstPeer = new Uint32Array(this.options.maxPendingRst);
    this.guestCidLo = cidLo(guestCid);
    this.guestCidHi = cidHi(guestCid);
    this.history = this.options.trace ? [] : null;
  }

  get connectionCount(): number {
    return this.count;
  }

  connection(localPort: number, peerPort: number): VsockConnection | undefined {
    return this.conns.get(localPort)?.get(peerPort);
  }

  connections(): VsockConnection[] {
    const out: VsockConnection[] = [];
    for (const m of this.conns.values()) for (const c of m.values()) out.push(c);
    return out;
  }

  private add(conn: VsockConnection): void {
    let m = this.conns.get(conn.localPort);
    if (m === undefined) {
      m = new Map();
      this.conns.set(conn.localPort, m);
    }
    m.set(conn.peerPort, conn);
    this.count++;
    this.history?.push(conn);
  }

  private remove(conn: VsockConnection): void {
    const m = this.conns.get(conn.localPort);
    if (m === undefined || m.get(conn.peerPort) !== conn) return;
    m.delete(conn.peerPort);
    if (m.size === 0) this.conns.delete(conn.localPort);
    this.count--;
    const reason = conn.resetReason ?? "Closed";
    this.stats.resets[reason] = (this.stats.resets[reason] ?? 0) + 1;
    this.host?.closed(conn);
  }

  /** Drops a killed connection once its RST (if any) has gone to the guest. */
  private reap(conn: VsockConnection): void {
    if (conn.isKilled && !conn.hasPendingRx()) this.remove(conn);
  }

  private queueRst(localPort: number, peerPort: number): void {
    const size = this.rstLocal.length;
    if (this.rstCount >= size) {
      this.stats.rstDropped++;
      return;
    }
    const at = (this.rstHead + this.rstCount) % size;
    this.rstLocal[at] = localPort;
    this.rstPeer[at] = peerPort;
    this.rstCount++;
    this.stats.rstReplies++;
  }

  // ConnListener -------------------------------------------------------------------------

  pendingRx(conn: VsockConnection): void {
    if (this.rxQueued.has(conn)) return;
    this.rxQueued.add(conn);
    this.rxQueue.push(conn);
  }
  established(conn: VsockConnection): void {
    this.host?.established(conn);
  }
  hostData(conn: VsockConnection): void {
    this.host?.hostData(conn);
  }

  // Guest -> host ------------------------------------------------------------------------

  /** One assembled TX packet from the guest. Never throws (VSOCK-HOSTILE). */
  fromGuest(pkt: VsockPacket): void {
    const hdr = pkt.header;
    // VSOCK-CONN-CID: only guest -> host packets from this guest's CID.
    if (
      hdr.dstCidLo() !== HOST_CID_LO ||
      hdr.dstCidHi() !== HOST_CID_HI ||
      hdr.srcCidLo() !== this.guestCidLo ||
      hdr.srcCidHi() !== this.guestCidHi
    ) {
      this.stats.droppedCid++;
      return;
    }
    const local = hdr.dstPort();
    const peer = hdr.srcPort();
    const op = hdr.op();
    const conn = this.connection(local, peer);
    // VSOCK-CONN-UNKNOWN: a type we do not speak is answered with RST.
    if (hdr.type() !== VSOCK_TYPE_STREAM) {
      if (conn !== undefined) {
        conn.kill("Unexpected", true);
        this.reap(conn);
      } else if (op !== VSOCK_OP_RST) this.queueRst(local, peer);
      return;
    }
    if (conn === undefined) {
      if (op === VSOCK_OP_REQUEST) {
        if (this.count >= this.options.maxConnections || this.host === null) {
          this.queueRst(local, peer);
          return;
        }
        const c = new VsockConnection(
          local,
          peer,
          this.guestCid,
          "guest",
          this.options,
          this,
          this.now,
          this.options.trace,
          this.slab,
        );
        c.fromPeer(hdr.bufAlloc(), hdr.fwdCnt());
        this.add(c);
        this.host.guestConnect(c);
        this.reap(c);
      } else if (op !== VSOCK_OP_RST) {
        this.queueRst(local, peer);
      }
      return;
    }
    conn.fromGuest(hdr, pkt);
    this.reap(conn);
  }

  /** A host program opens a connection to the guest's `peerPort` (state LocalInit). */
  hostConnect(peerPort: number): VsockConnection | null {
    if (this.count >= this.options.maxConnections) return null;
    let local = this.nextLocalPort;
    while (this.conns.has(local)) local = local + 1 >= 2 ** 32 ? FIRST_LOCAL_PORT : local + 1;
    this.nextLocalPort = local + 1 >= 2 ** 32 ? FIRST_LOCAL_PORT : local + 1;
    const c = new VsockConnection(
      local,
      peerPort >>> 0,
      this.guestCid,
      "host",
      this.options,
      this,
      this.now,
      this.options.trace,
      this.slab,
    );
    this.add(c);
    this.pendingRx(c);
    return c;
  }

  // Host -> guest ------------------------------------------------------------------------

  hasPendingRx(): boolean {
    if (this.rstCount > 0) return true;
    for (const c of this.rxQueue) if (c.hasPendingRx()) return true;
    return false;
  }

  /** Fills an assembled RX packet with the next packet for the guest; bytes written, or 0. */
  toGuest(pkt: VsockPacket): number {
    if (this.rstCount > 0) {
      const at = this.rstHead;
      this.rstHead = (this.rstHead + 1) % this.rstLocal.length;
      this.rstCount--;
      pkt.header
        .setSrcCidHalves(HOST_CID_LO, HOST_CID_HI)
        .setDstCidHalves(this.guestCidLo, this.guestCidHi)
        .setSrcPort(this.rstLocal[at]!)
        .setDstPort(this.rstPeer[at]!)
        .setLen(0)
        .setType(VSOCK_TYPE_STREAM)
        .setOp(VSOCK_OP_RST)
        .setFlags(0)
        .setBufAlloc(0)
        .setFwdCnt(0);
      return VSOCK_PKT_HDR_SIZE;
    }
    // One pass at most: a connection that had nothing to fit in this buffer (it may still
    // have pending data, e.g. for a buffer with no data room) must not spin the loop.
    // A connection stays marked as queued while it is served (its own pendingRx calls are
    // no-ops meanwhile) and goes to the back if it still has something: no set churn per packet.
    for (let rounds = this.rxQueue.length; rounds > 0 && this.rxQueue.length > 0; rounds--) {
      const conn = this.rxQueue.shift()!;
      const n = conn.toGuest(pkt);
      this.reap(conn);
      if (conn.hasPendingRx()) this.rxQueue.push(conn);
      else this.rxQueued.delete(conn);
      if (n > 0) return n;
    }
    return 0;
  }

  /** Timeouts (VSOCK-CONN-TIMEOUT), with the clock's reading in ms. */
  tick(now: number): void {
    this.now = now;
    for (const c of this.connections()) {
      c.tick(now);
      this.reap(c);
    }
  }

  /** Transport reset (VSOCK-EVENT-RESET): every connection is dropped without RST. */
  resetAll(): void {
    for (const c of this.connections()) {
      c.kill("Rst", false);
      this.remove(c);
    }
    this.rxQueue.length = 0;
    this.rstCount = 0;
  }
}
