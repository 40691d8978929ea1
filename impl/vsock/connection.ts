/**
 * One vsock stream connection between the guest (the peer) and a host program (the local
 * side), as cloud-hypervisor's csm models it: the state machine (VSOCK-CONN-*), credit flow
 * control in both directions (VSOCK-CREDIT-*) and the two byte queues between them.
 *
 * Plain and synchronous: the muxer feeds it guest packets and asks it for packets to the
 * guest; a backend feeds it host bytes and drains the bytes meant for the host. Time comes in
 * as milliseconds read from the Effect clock by the caller (VSOCK-CONN-TIMEOUT).
 */
import { MAX_PKT_BUF_SIZE, type ConnEvent, type ConnState } from "../../spec/vsock.ts";
import { StreamCredit } from "./credit.ts";
import { cidHi, cidLo, type VsockHeaderView } from "./header.ts";
import type { VsockPacket } from "./packet.ts";

export type { ConnEvent, ConnState } from "../../spec/vsock.ts";
import {
  VSOCK_FLAGS_SHUTDOWN_RCV,
  VSOCK_FLAGS_SHUTDOWN_SEND,
  VSOCK_HOST_CID,
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_OP_SHUTDOWN,
  VSOCK_PKT_HDR_SIZE,
  VSOCK_TYPE_STREAM,
} from "../../wire/vsock.ts";

/** The host's CID (VSOCK_HOST_CID) as a header's 32-bit halves (compared and stamped per packet). */
export const HOST_CID_LO = cidLo(VSOCK_HOST_CID);
export const HOST_CID_HI = cidHi(VSOCK_HOST_CID);

export interface ConnOptions {
  /** Our receive buffer, advertised as buf_alloc (bytes from the guest not yet consumed by the host). */
  readonly bufAlloc: number;
  /** Send CREDIT_UPDATE when the guest's view of our free space drops below this (VSOCK-CREDIT-UPDATE). */
  readonly creditUpdateThreshold: number;
  /** LocalInit without RESPONSE is reset after this (cloud-hypervisor CONN_REQUEST_TIMEOUT_MS). */
  readonly requestTimeoutMs: number;
  /** LocalClosed without the guest's RST is reset after this (CONN_SHUTDOWN_TIMEOUT_MS). */
  readonly shutdownTimeoutMs: number;
}

export const DEFAULT_CONN_OPTIONS: ConnOptions = {
  bufAlloc: 256 * 1024,
  creditUpdateThreshold: MAX_PKT_BUF_SIZE,
  requestTimeoutMs: 2000,
  shutdownTimeoutMs: 2000,
};

/**
 * Slabs the guest's bytes are copied into (one set per muxer, shared by its connections): a
 * copy per packet but an allocation per `size` bytes, and packets that follow each other on a
 * connection end up contiguous, so the host gets them in one write. A view handed out stays
 * valid until it is given back with `release`: only then may its bytes be written again. A
 * slab all of whose bytes came back is reused (the current one from its start, a retired one
 * from a small free list), so a steady stream neither allocates nor touches cold memory. A
 * holder that never releases (MemoryHost keeps its views) only stops that reuse: a retired
 * slab is then left to the garbage collector with its views.
 */
export class Slab {
  private buf: Uint8Array = new Uint8Array(0);
  private fill = 0;
  /** Bytes of the current slab reserved and not released. */
  private held = 0;
  /** Retired slabs with bytes still out, by their memory (weak: one never released is the GC's). */
  private readonly retired = new WeakMap<ArrayBufferLike, { held: number; readonly buf: Uint8Array }>();
  private readonly free: Uint8Array[] = [];
  /** Where the last `reserve` starts in the slab it returned. */
  at = 0;

  /** `size`: bytes per slab; `keep`: free slabs kept for reuse. */
  constructor(
    readonly size = 64 * 1024,
    readonly keep = 4,
  ) {}

  /** Room for `n` bytes: the slab they are in, from `this.at` (not zeroed: the caller fills it). */
  reserve(n: number): Uint8Array {
    if (this.buf.length - this.fill < n) {
      if (this.held > 0) this.retired.set(this.buf.buffer, { held: this.held, buf: this.buf });
      else this.recycle(this.buf);
      // Uninitialised: every byte reserved is written by appendFrom before anyone sees it.
      this.buf =
        (n <= this.size ? this.free.pop() : undefined) ?? Buffer.allocUnsafeSlow(Math.max(this.size, n));
      this.fill = 0;
      this.held = 0;
    }
    this.at = this.fill;
    this.fill += n;
    this.held += n;
    return this.buf;
  }

  /** The holder is done with `view` (bytes from a `reserve`d range, each given back once). */
  release(view: Uint8Array): void {
    const n = view.length;
    if (n === 0) return;
    if (view.buffer === this.buf.buffer) {
      this.held -= n;
      // Nothing of the current slab is out: start it again (its bytes stay hot in cache).
      if (this.held <= 0) this.held = this.fill = 0;
      return;
    }
    const r = this.retired.get(view.buffer);
    if (r === undefined) return;
    r.held -= n;
    if (r.held <= 0) {
      this.retired.delete(view.buffer);
      this.recycle(r.buf);
    }
  }

  private recycle(buf: Uint8Array): void {
    if (buf.length === this.size && this.free.length < this.keep) this.free.push(buf);
  }
}

/** Where `ByteQueue.appendFrom` copies bytes from (a TX packet's data). */
export interface ByteReader {
  /** Copies the first `to - from` bytes into `dst[from, to)`; returns the count. */
  readDataInto(dst: Uint8Array, from: number, to: number): number;
}

/** Where `ByteQueue.drainTo` copies bytes to (an RX packet's data). */
export interface ByteWriter {
  /** Copies `src[from, to)` in at `at`; returns the count. */
  writeDataFrom(src: Uint8Array, from: number, to: number, at: number): number;
}

/**
 * A FIFO of byte ranges [start, end) of owned chunks (pushed, or copied into a `Slab`), so
 * guest memory can change under them. Nothing is allocated per range until it is taken.
 */
export class ByteQueue {
  private bufs: Uint8Array[] = [];
  private starts: number[] = [];
  private ends: number[] = [];
  private head = 0;
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.bufs.push(chunk);
    this.starts.push(0);
    this.ends.push(chunk.length);
    this.length += chunk.length;
  }

  /** Copies `n` bytes from `src` (zeros where it has fewer, or when null) into `slab`, and queues them. */
  appendFrom(slab: Slab, n: number, src: ByteReader | null): void {
    if (n <= 0) return;
    const buf = slab.reserve(n);
    const at = slab.at;
    const got = src === null ? 0 : src.readDataInto(buf, at, at + n);
    if (got < n) buf.fill(0, at + got, at + n);
    const last = this.bufs.length - 1;
    if (last >= this.head && this.bufs[last] === buf && this.ends[last] === at) this.ends[last] = at + n;
    else {
      this.bufs.push(buf);
      this.starts.push(at);
      this.ends.push(at + n);
    }
    this.length += n;
  }

  /** Removes and returns up to `max` bytes as one chunk (a view when it can), or null when empty. */
  take(max = Infinity): Uint8Array | null {
    if (this.length === 0) return null;
    const h = this.head;
    const buf = this.bufs[h]!;
    const s = this.starts[h]!;
    const e = this.ends[h]!;
    if (e - s <= max) {
      this.advance();
      this.length -= e - s;
      return s === 0 && e === buf.length ? buf : buf.subarray(s, e);
    }
    this.starts[h] = s + max;
    this.length -= max;
    return buf.subarray(s, s + max);
  }

  /** Copies up to `max` bytes, range by range, into `dst` from its start; returns the count consumed. */
  drainTo(max: number, dst: ByteWriter): number {
    let done = 0;
    while (done < max && this.length > 0) {
      const h = this.head;
      const s = this.starts[h]!;
      const e = this.ends[h]!;
      const n = e - s <= max - done ? e - s : max - done;
      const moved = dst.writeDataFrom(this.bufs[h]!, s, s + n, done);
      if (moved === e - s) this.advance();
      else this.starts[h] = s + moved;
      this.length -= moved;
      done += moved;
      if (moved < n) break;
    }
    return done;
  }

  clear(): void {
    this.bufs = [];
    this.starts = [];
    this.ends = [];
    this.head = 0;
    this.length = 0;
  }

  private advance(): void {
    this.head++;
    if (this.head === this.bufs.length) {
      this.bufs.length = this.starts.length = this.ends.length = 0;
      this.head = 0;
    } else if (this.head > 64 && this.head * 2 > this.bufs.length) {
      this.bufs = this.bufs.slice(this.head);
      this.starts = this.starts.slice(this.head);
      this.ends = this.ends.slice(this.head);
      this.head = 0;
    }
  }
}

export interface Transition {
  readonly from: ConnState;
  readonly event: ConnEvent;
  readonly to: ConnState;
}

/** What the connection tells its owner about (the muxer routes these to the backend). */
export interface ConnListener {
  /** The connection has something for the guest (it should be on the RX round). */
  pendingRx(conn: VsockConnection): void;
  /** A host-initiated connection was accepted by the guest. */
  established(conn: VsockConnection): void;
  /** Bytes for the host arrived (or the guest shut its sending side). */
  hostData(conn: VsockConnection): void;
}

/**
 * One stream connection, the host's end. Its credit counters (VSOCK-CREDIT-*) are
 * StreamCredit's: rx_cnt / fwd_cnt for guest bytes the host received / consumed, tx_cnt for
 * host bytes sent, and the guest's buf_alloc / fwd_cnt from its last header.
 */
export class VsockConnection extends StreamCredit {
  state: ConnState;
  /** Guest bytes waiting for the host. */
  readonly toHost = new ByteQueue();
  /** Host bytes waiting for the guest. */
  readonly fromHost = new ByteQueue();
  /** SHUTDOWN flags the guest sent, accumulated (VSOCK-CONN-SHUTDOWN). */
  peerShutdown = 0;
  /** The host finished writing: after fromHost drains, SHUTDOWN(SEND) goes to the guest. */
  hostEof = false;
  private hostEofSent = false;
  /** When the host closed after its EOF, in clock ms; -1 when it has not (see hostClose). */
  private closedAt = -1;
  private pendingRequest = false;
  private pendingResponse = false;
  private pendingRst = false;
  private pendingCreditUpdate = false;
  private pendingCreditRequest = false;
  private pendingShutdown = 0;
  private creditRequested = false;
  /** Deadline in clock ms for LocalInit / LocalClosed; 0 when none. */
  deadline = 0;
  /** Why the connection was reset, for reports. */
  resetReason: ConnEvent | null = null;
  /** Every state change, when tracing (tests, simulator); null otherwise. */
  trace: Transition[] | null = null;
  /** Backend's handle (a socket), opaque here. */
  hostHandle: unknown = null;
  /** guestCid's 32-bit halves, stamped on every packet to the guest (no bigint per packet). */
  private readonly guestCidLo: number;
  private readonly guestCidHi: number;

  constructor(
    readonly localPort: number,
    readonly peerPort: number,
    readonly guestCid: bigint,
    initiator: "host" | "guest",
    readonly options: ConnOptions,
    private readonly listener: ConnListener,
    now: number,
    trace = false,
    /** Where guest bytes are copied (the muxer shares one among its connections). */
    private readonly slab: Slab = new Slab(),
  ) {
    super(options.bufAlloc);
    this.guestCidLo = cidLo(guestCid);
    this.guestCidHi = cidHi(guestCid);
    if (trace) this.trace = [];
    if (initiator === "host") {
      this.state = "LocalInit";
      this.pendingRequest = true;
      this.deadline = now + options.requestTimeoutMs;
    } else {
      this.state = "PeerInit";
    }
  }

  private move(event: ConnEvent, to: ConnState): void {
    if (this.trace !== null) this.trace.push({ from: this.state, event, to });
    this.state = to;
  }

  /** Resets the connection: RST to the guest unless it sent one (VSOCK-CONN-RST). */
  kill(event: ConnEvent, sendRst: boolean): void {
    if (this.state === "Killed") return;
    this.resetReason = event;
    this.move(event, "Killed");
    this.deadline = 0;
    this.fromHost.clear();
    this.pendingRequest = this.pendingResponse = this.pendingCreditUpdate = this.pendingCreditRequest = false;
    this.pendingShutdown = 0;
    if (sendRst) {
      this.pendingRst = true;
      this.listener.pendingRx(this);
    }
    // The host learns of the end (it drains what arrived before, then sees EOF).
    this.listener.hostData(this);
  }

  get isKilled(): boolean {
    return this.state === "Killed";
  }

  /** The host may read: no more guest bytes will come and all have been taken. */
  get hostReadClosed(): boolean {
    return (
      this.toHost.length === 0 && (this.isKilled || (this.peerShutdown & VSOCK_FLAGS_SHUTDOWN_SEND) !== 0)
    );
  }

  // ---------------------------------------------------------------------------------------
  // Guest -> connection

  /** One guest packet for this connection (type, CIDs and ports already routed by the muxer). */
  fromGuest(hdr: VsockHeaderView, pkt: VsockPacket | null): void {
    if (this.isKilled) return;
    // Every packet carries the guest's credit (VSOCK-CREDIT-FREE).
    const oldFree = this.peerCredit();
    this.fromPeer(hdr.bufAlloc(), hdr.fwdCnt());
    // Ask again only once the guest has granted credit: answering every CREDIT_UPDATE that
    // grants none with a new CREDIT_REQUEST would ping-pong while the guest's reader stalls.
    if (this.peerCredit() > oldFree) this.creditRequested = false;
    const op = hdr.op();
    switch (op) {
      case VSOCK_OP_RST:
        this.kill("Rst", false);
        return;
      case VSOCK_OP_RESPONSE:
        if (this.state !== "LocalInit") return this.kill("Unexpected", true);
        this.deadline = 0;
        this.move("RecvResponse", "Established");
        this.listener.established(this);
        break;
      case VSOCK_OP_RW: {
        const len = hdr.len();
        if (this.state === "LocalInit" || this.state === "PeerInit") return this.kill("Unexpected", true);
        if ((this.peerShutdown & VSOCK_FLAGS_SHUTDOWN_SEND) !== 0) return this.kill("Unexpected", true);
        if (len === 0) break;
        // Never more unconsumed guest bytes than our buf_alloc (VSOCK-CREDIT-OVERRUN).
        if (this.unconsumed() + len > this.bufAlloc) return this.kill("Overrun", true);
        this.countReceived(len);
        if (this.state === "LocalClosed") {
          // The host is gone: the bytes are dropped, but counted as consumed so credit stays sane.
          this.countConsumed(len);
          break;
        }
        this.toHost.appendFrom(this.slab, len, pkt);
        this.listener.hostData(this);
        break;
      }
      case VSOCK_OP_CREDIT_UPDATE:
        if (this.state === "LocalInit" || this.state === "PeerInit") return this.kill("Unexpected", true);
        break;
      case VSOCK_OP_CREDIT_REQUEST:
        if (this.state === "LocalInit" || this.state === "PeerInit") return this.kill("Unexpected", true);
        this.pendingCreditUpdate = true;
        break;
      case VSOCK_OP_SHUTDOWN: {
        if (this.state === "LocalInit" || this.state === "PeerInit") return this.kill("Unexpected", true);
        const flags = hdr.flags() & (VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND);
        this.peerShutdown |= flags;
        if (this.peerShutdown === (VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND)) {
          this.kill("PeerShutdownBoth", true);
          return;
        }
        if (this.state === "LocalClosed") {
          this.kill("PeerShutdown", true);
          return;
        }
        if (flags !== 0) this.move("PeerShutdown", "PeerClosed");
        if ((flags & VSOCK_FLAGS_SHUTDOWN_RCV) !== 0) this.fromHost.clear();
        if ((flags & VSOCK_FLAGS_SHUTDOWN_SEND) !== 0) this.listener.hostData(this);
        break;
      }
      default:
        // REQUEST on an open connection, or an unknown op (VSOCK-CONN-UNKNOWN).
        return this.kill("Unexpected", true);
    }
    if (this.hasPendingRx() || this.peerCredit() !== oldFree) this.listener.pendingRx(this);
  }

  // ---------------------------------------------------------------------------------------
  // Host side

  /** The host program accepted a guest-initiated connection. */
  accept(): void {
    if (this.state !== "PeerInit") return;
    this.pendingResponse = true;
    this.listener.pendingRx(this);
  }

  /** Host bytes for the guest (copied by the caller if it reuses its buffer). */
  hostWrite(bytes: Uint8Array): void {
    if (this.isKilled || this.state === "LocalClosed" || this.hostEof) return;
    if ((this.peerShutdown & VSOCK_FLAGS_SHUTDOWN_RCV) !== 0) return;
    this.fromHost.push(bytes);
    this.listener.pendingRx(this);
  }

  /**
   * Takes up to `max` guest bytes for the host; call `forwarded(n)` once the host consumed
   * them. The view stays valid until it is given back with `releaseToHost`.
   */
  takeToHost(max = Infinity): Uint8Array | null {
    return this.toHost.take(max);
  }

  /** The host is done with a view `takeToHost` returned: its memory may hold new guest bytes. */
  releaseToHost(view: Uint8Array): void {
    this.slab.release(view);
  }

  /** The host consumed n bytes: fwd_cnt grows, and the guest may need to hear (VSOCK-CREDIT-UPDATE). */
  forwarded(n: number): void {
    if (n <= 0) return;
    this.countConsumed(n);
    if (this.isKilled) return;
    if (this.freeAsPeerKnows() < this.options.creditUpdateThreshold) {
      this.pendingCreditUpdate = true;
      this.listener.pendingRx(this);
    }
  }

  /** The host finished writing (half close): SHUTDOWN(SEND) once its bytes are sent. */
  hostShutdown(): void {
    if (this.isKilled || this.hostEof) return;
    this.hostEof = true;
    this.listener.pendingRx(this);
  }

  /** The host closed the connection entirely (VSOCK-CONN-SHUTDOWN, state LocalClosed). */
  hostClose(now: number): void {
    if (this.isKilled || this.state === "LocalClosed") return;
    if (this.hostEof && !this.hostEofSent && this.dataState()) {
      // An orderly close after the host's last bytes (a socket's 'end', then 'close'): those
      // bytes and the SHUTDOWN(SEND) still go to the guest first, as credit allows; the close
      // takes effect once they are out.
      this.closedAt = now;
      return;
    }
    if (this.state !== "Established") {
      // During the handshake a host close is a reset; after a peer shutdown it ends the connection.
      this.kill(this.state === "PeerClosed" ? "LocalShutdown" : "Rst", true);
      return;
    }
    this.move("LocalShutdown", "LocalClosed");
    this.fromHost.clear();
    this.pendingShutdown = VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND;
    this.deadline = now + this.options.shutdownTimeoutMs;
    this.listener.pendingRx(this);
  }

  /** Timeouts on the clock (VSOCK-CONN-TIMEOUT). */
  tick(now: number): void {
    if (this.deadline !== 0 && now >= this.deadline && !this.isKilled) this.kill("Timeout", true);
  }

  // ---------------------------------------------------------------------------------------
  // Connection -> guest

  hasPendingRx(): boolean {
    if (this.pendingRst) return true;
    if (this.isKilled) return false;
    if (this.pendingRequest || this.pendingResponse || this.pendingShutdown !== 0) return true;
    if (this.pendingCreditUpdate) return true;
    if (this.canSendData()) return true;
    if (this.hostEof && !this.hostEofSent && this.fromHost.length === 0 && this.dataState()) return true;
    return this.fromHost.length > 0 && this.dataState() && !this.creditRequested && this.peerCredit() === 0;
  }

  private dataState(): boolean {
    return this.state === "Established" || this.state === "PeerClosed";
  }

  private canSendData(): boolean {
    return this.fromHost.length > 0 && this.dataState() && this.peerCredit() > 0;
  }

  private fill(hdr: VsockHeaderView, op: number, len: number, flags: number): void {
    hdr
      .setSrcCidHalves(HOST_CID_LO, HOST_CID_HI)
      .setDstCidHalves(this.guestCidLo, this.guestCidHi)
      .setSrcPort(this.localPort)
      .setDstPort(this.peerPort)
      .setLen(len)
      .setType(VSOCK_TYPE_STREAM)
      .setOp(op)
      .setFlags(flags)
      .setBufAlloc(this.bufAlloc)
      // Every packet tells the guest our fwd_cnt, so every packet is a credit update.
      .setFwdCnt(this.stampFwdCnt());
    this.pendingCreditUpdate = false;
  }

  /**
   * Writes the next packet for the guest into an assembled RX packet; returns the bytes
   * written (44 + data) or 0 when there was nothing to send. Never sends more data than the
   * guest's free credit (VSOCK-CREDIT-LIMIT).
   */
  toGuest(pkt: VsockPacket): number {
    const hdr = pkt.header;
    if (this.pendingRst) {
      this.pendingRst = false;
      this.fill(hdr, VSOCK_OP_RST, 0, 0);
      return VSOCK_PKT_HDR_SIZE;
    }
    if (this.isKilled) return 0;
    if (this.pendingRequest) {
      this.pendingRequest = false;
      this.fill(hdr, VSOCK_OP_REQUEST, 0, 0);
      return VSOCK_PKT_HDR_SIZE;
    }
    if (this.pendingResponse) {
      this.pendingResponse = false;
      this.move("SendResponse", "Established");
      this.fill(hdr, VSOCK_OP_RESPONSE, 0, 0);
      return VSOCK_PKT_HDR_SIZE;
    }
    if (this.pendingShutdown !== 0) {
      const flags = this.pendingShutdown;
      this.pendingShutdown = 0;
      this.fill(hdr, VSOCK_OP_SHUTDOWN, 0, flags);
      return VSOCK_PKT_HDR_SIZE;
    }
    if (this.canSendData()) {
      const max = Math.min(this.fromHost.length, this.peerCredit(), pkt.bufSize, MAX_PKT_BUF_SIZE);
      if (max > 0) {
        const n = this.fromHost.drainTo(max, pkt);
        this.countSent(n);
        this.fill(hdr, VSOCK_OP_RW, n, 0);
        return VSOCK_PKT_HDR_SIZE + n;
      }
    }
    if (this.hostEof && !this.hostEofSent && this.fromHost.length === 0 && this.dataState()) {
      this.hostEofSent = true;
      this.fill(hdr, VSOCK_OP_SHUTDOWN, 0, VSOCK_FLAGS_SHUTDOWN_SEND);
      if (this.closedAt >= 0) this.hostClose(this.closedAt);
      return VSOCK_PKT_HDR_SIZE;
    }
    if (this.pendingCreditUpdate) {
      this.fill(hdr, VSOCK_OP_CREDIT_UPDATE, 0, 0);
      return VSOCK_PKT_HDR_SIZE;
    }
    if (this.fromHost.length > 0 && this.dataState() && !this.creditRequested && this.peerCredit() === 0) {
      // Blocked on credit (not merely on a buffer with no data room): ask once, until the
      // guest's next packet (VSOCK-CREDIT-UPDATE).
      this.creditRequested = true;
      this.fill(hdr, VSOCK_OP_CREDIT_REQUEST, 0, 0);
      return VSOCK_PKT_HDR_SIZE;
    }
    return 0;
  }
}
