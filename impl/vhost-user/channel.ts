/**
 * One end of a vhost-user socket: reads whole messages (header, then payload, with the fds
 * that came with the header) and sends messages with fds. Used by the back-end (receives
 * requests) and by a front-end (receives replies) alike.
 *
 * The socket is non-blocking and read only when poll said it is readable. A peer that sends
 * a header and then stalls mid-message would block us: the rest of a message is waited for
 * with a synchronous poll of at most `stallMs` (default 1 s), then TruncatedMessage.
 */
import { err, ok, type Result } from "../../spec/result.ts";
import {
  HEADER_SIZE,
  MAX_PAYLOAD,
  type Direction,
  type Message,
  type SessionError,
} from "../../spec/vhost-user.ts";
import { EAGAIN, EINTR, MsgIo, type Fdio } from "../native/fdio.ts";
import { POLLIN, POLLOUT } from "../native/libc.ts";
import { decodeHeader, decodeMessage, encodeMessage } from "./codec.ts";

export type ReadResult =
  | { readonly _tag: "Message"; readonly message: Message }
  | { readonly _tag: "WouldBlock" }
  | { readonly _tag: "Closed" }
  | { readonly _tag: "Refused"; readonly error: SessionError };

export class Channel {
  private readonly msgIo: MsgIo;
  private readonly header = new Uint8Array(HEADER_SIZE);
  private readonly payload = new Uint8Array(MAX_PAYLOAD);
  private readonly pollfd = new Int32Array(2);
  /** Messages read and sent (progress output, tests). */
  received = 0;
  sent = 0;

  constructor(
    private readonly io: Fdio,
    readonly fd: number,
    /** What this end receives: "request" on a back-end, "reply" on a front-end. */
    readonly receives: Direction,
    private readonly stallMs = 1000,
  ) {
    this.msgIo = new MsgIo(io);
  }

  private closeAll(fds: readonly number[]): void {
    for (const f of fds) this.io.libc.close(f);
  }

  /** Waits synchronously for `events` (bounded by stallMs); true when ready. */
  private waitSync(events: number): boolean {
    this.pollfd[0] = this.fd;
    this.pollfd[1] = events;
    const n = this.io.libc.poll(this.pollfd, 1, this.stallMs);
    return n > 0;
  }

  /** Fills buf[from..] completely; the count read when the peer closed or stalled, or -errno. */
  private fill(buf: Uint8Array, from: number, fds: number[]): number {
    let got = from;
    while (got < buf.length) {
      const n = this.msgIo.recv(this.fd, buf.subarray(got), fds);
      if (n > 0) {
        got += n;
        continue;
      }
      if (n === 0) return got;
      if (n === -EINTR) continue;
      if (n !== -EAGAIN) return n;
      if (!this.waitSync(POLLIN)) return got;
    }
    return got;
  }

  /**
   * The next message, if one is waiting. Fds of a refused message are closed here; the fds
   * of a returned message are the caller's (VU-FDS).
   */
  read(): ReadResult {
    const fds: number[] = [];
    const first = this.msgIo.recv(this.fd, this.header, fds);
    if (first === -EAGAIN || first === -EINTR) return { _tag: "WouldBlock" };
    if (first === 0) return { _tag: "Closed" };
    const refuse = (error: SessionError): ReadResult => {
      this.closeAll(fds);
      return { _tag: "Refused", error };
    };
    if (first < 0) return refuse({ _tag: "SocketError", call: "recvmsg", errno: -first });
    if (this.msgIo.truncatedFds) return refuse({ _tag: "FdsTruncated" });
    const h = first < HEADER_SIZE ? this.fill(this.header, first, fds) : first;
    if (h < 0) return refuse({ _tag: "SocketError", call: "recvmsg", errno: -h });
    if (h < HEADER_SIZE) return refuse({ _tag: "TruncatedMessage", got: h, wanted: HEADER_SIZE });
    const header = decodeHeader(this.header, this.receives);
    if (!header.ok) return refuse(header.error);
    const payload = this.payload.subarray(0, header.value.size);
    const p = this.fill(payload, 0, fds);
    if (p < 0) return refuse({ _tag: "SocketError", call: "recvmsg", errno: -p });
    if (p < payload.length) {
      return refuse({ _tag: "TruncatedMessage", got: HEADER_SIZE + p, wanted: HEADER_SIZE + payload.length });
    }
    const m = decodeMessage(header.value, payload, fds, this.receives);
    if (!m.ok) return refuse(m.error);
    this.received++;
    return { _tag: "Message", message: m.value };
  }

  /** Sends a message (fds attached to its first byte); waits at most stallMs for room. */
  send(m: Omit<Message, "fds">, fds: readonly number[] = []): Result<void, SessionError> {
    return this.sendBytes(encodeMessage(m), fds);
  }

  /** Sends bytes as they are (a hostile peer in tests sends any), fds with the first byte. */
  sendBytes(bytes: Uint8Array, fds: readonly number[] = []): Result<void, SessionError> {
    let at = 0;
    while (at < bytes.length) {
      const n = this.msgIo.send(this.fd, bytes.subarray(at), at === 0 ? fds : []);
      if (n > 0) {
        at += n;
        continue;
      }
      if (n === -EINTR) continue;
      if (n === -EAGAIN && this.waitSync(POLLOUT)) continue;
      return err({ _tag: "SocketError", call: "sendmsg", errno: n < 0 ? -n : EAGAIN });
    }
    this.sent++;
    return ok(undefined);
  }
}
