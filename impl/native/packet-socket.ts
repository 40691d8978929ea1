/**
 * An AF_PACKET socket bound to one interface inside a namespace: the "other end of the
 * wire" for TAP tests (Firecracker's TapTrafficSimulator). What a TAP writes, the socket
 * reads; what the socket sends, the TAP reads.
 */
import { err, ok, type Result } from "../../spec/result.ts";
import { EAGAIN, O_CLOEXEC, O_NONBLOCK, loadLibc, type Libc } from "./libc.ts";
import { inNetns } from "./netns.ts";

const AF_PACKET = 17;
const SOCK_RAW = 3;
const ETH_P_ALL_BE = 0x0300; // htons(ETH_P_ALL = 3)

export class PacketSocket {
  private closed = false;
  private constructor(
    private readonly libc: Libc,
    readonly fd: number,
    readonly ifIndex: number,
  ) {}

  /** Opens and binds the socket to `ifName` inside `ns`. */
  static open(ns: string, ifName: string): Result<PacketSocket, string> {
    const libc = loadLibc();
    if (typeof libc === "string") return err(libc);
    const r = inNetns(ns, (): Result<PacketSocket, string> => {
      const ifIndex = libc.ifNameToIndex(ifName);
      if (ifIndex === 0) return err(`if_nametoindex(${ifName}) failed`);
      const fd = libc.socket(AF_PACKET, SOCK_RAW | O_NONBLOCK | O_CLOEXEC, ETH_P_ALL_BE);
      if (fd < 0) return err(`socket(AF_PACKET): ${libc.strerror(libc.errno())}`);
      const sll = new Uint8Array(20);
      const v = new DataView(sll.buffer);
      v.setUint16(0, AF_PACKET, true);
      v.setUint16(2, ETH_P_ALL_BE, true);
      v.setInt32(4, ifIndex, true);
      if (libc.bind(fd, sll, 20) < 0) {
        const e = libc.strerror(libc.errno());
        libc.close(fd);
        return err(`bind(AF_PACKET): ${e}`);
      }
      return ok(new PacketSocket(libc, fd, ifIndex));
    });
    return r.ok ? r.value : err(r.error._tag);
  }

  /** Sends one frame out of the interface (into the TAP's read side). */
  send(frame: Uint8Array): number {
    const r = this.libc.write(this.fd, frame, frame.length);
    return r < 0 ? -this.libc.errno() : r;
  }

  /** The next frame seen on the interface, or undefined when none arrives within `timeoutMs`. */
  async recv(buf: Uint8Array, timeoutMs: number): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const n = this.libc.read(this.fd, buf, buf.length);
      if (n >= 0) return n;
      if (this.libc.errno() !== EAGAIN) return undefined;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      const pfd = new Int32Array([this.fd, 1]);
      await new Promise<void>((resolve) =>
        this.libc.poll.async(pfd, 1, Math.min(left, 1000), () => resolve()),
      );
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.libc.close(this.fd);
  }
}
