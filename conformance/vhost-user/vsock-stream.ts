/**
 * vsock connections through the real rings, with the back-end's Unix host side played here
 * (the cloud-hypervisor convention our back-end and rust-vmm's vhost-device-vsock share: a
 * guest REQUEST to port P connects to `<uds>_P`). The guest opens connections to a port we
 * listen on, both ends send bytes, the guest holds back and grants credit, asks for credit,
 * and shuts connections down; every packet the device puts on the RX ring is judged against
 * the connection model of spec/vsock.ts (nextState) and the credit counters of StreamCredit:
 *
 * - VUF-VSOCK-CONNECT: a REQUEST to a listening host port is answered with RESPONSE (and the
 *   host end sees the connection); a RESPONSE comes only for a pending REQUEST;
 * - VUF-VSOCK-CREDIT: the device's RW payloads never exceed the guest's credit
 *   (buf_alloc - (bytes sent - fwd_cnt) as the guest advertised it);
 * - VUF-VSOCK-CREDIT-REQUEST: a CREDIT_REQUEST is answered (a CREDIT_UPDATE, or any packet:
 *   every header carries buf_alloc and fwd_cnt);
 * - VUF-VSOCK-ORDER: no RW after the device's RST or its SHUTDOWN with SEND; a SHUTDOWN with
 *   both flags from the guest is answered with RST;
 * - VUF-VSOCK-STREAM: bytes arrive once, in order, both ways.
 */
import { rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { Effect, type Scope } from "effect";
import { encodeHeader, nextState, type ConnState, type VsockHeader } from "../../spec/vsock.ts";
import { StreamCredit, streamHeader } from "../../impl/vsock/credit.ts";
import type { FrontendRuleId } from "../../spec/vhost-user-frontend.ts";
import type { Rng } from "../../sim/rng.ts";
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
} from "../../wire/vsock.ts";

/** The host end's listener on `<uds>_<port>`: connections the device made, in order. */
export interface HostListener {
  readonly port: number;
  readonly path: string;
  readonly accepted: Socket[];
}

/** Listens on `${uds}_${port}`; the scope closes it, its sockets and removes the file. */
export const listenHostPort = (
  uds: string,
  port: number,
): Effect.Effect<HostListener, { readonly _tag: "SetupFailed"; readonly message: string }, Scope.Scope> => {
  const path = `${uds}_${port}`;
  const accepted: Socket[] = [];
  return Effect.acquireRelease(
    Effect.tryPromise({
      try: () =>
        new Promise<Server>((ok, fail) => {
          rmSync(path, { force: true });
          const server = createServer({ allowHalfOpen: true }, (s) => accepted.push(s));
          server.once("error", fail);
          server.listen(path, () => {
            server.off("error", fail);
            ok(server);
          });
        }),
      catch: (e) =>
        ({ _tag: "SetupFailed", message: `listen on ${path} (vsock host port): ${String(e)}` }) as const,
    }),
    (server) =>
      Effect.promise(
        () =>
          new Promise<void>((ok) => {
            for (const s of accepted) s.destroy();
            server.close(() => {
              rmSync(path, { force: true });
              ok();
            });
          }),
      ),
  ).pipe(Effect.map(() => ({ port, path, accepted })));
};

/** The guest's view of one connection. */
interface Conn {
  readonly guestPort: number;
  /** What the guest knows: spec/vsock.ts states (PeerInit = our REQUEST pending). */
  state: ConnState | "Requested";
  readonly opened: number;
  sock: Socket | null;
  /** Guest -> host: bytes sent in RW not yet judged, and what the host end read of them. */
  readonly sent: number[];
  hostGot: number;
  hostBad: string | null;
  hostEnded: boolean;
  /** Host -> guest: bytes the host end wrote and the guest has not yet received. */
  readonly pending: number[];
  /**
   * The guest's credit counters: tx_cnt, rx_cnt (RW bytes received), the buf_alloc and
   * fwd_cnt it advertises, and the device's buf_alloc and fwd_cnt from its last header.
   */
  readonly credit: StreamCredit;
  creditAsked: number | null;
  /** The device sent CREDIT_REQUEST: a CREDIT_UPDATE goes out next round. */
  updateOwed: boolean;
  /** The guest sent SHUTDOWN with both flags at this step (an RST is due). */
  shutAt: number | null;
  deviceShutSend: boolean;
}

export interface StreamDeps {
  readonly rng: Rng;
  readonly guestCid: bigint;
  readonly host: HostListener;
  /** Puts one packet on the TX ring; false when there was no room (the packet was not sent). */
  readonly send: (header: Uint8Array, payload: Uint8Array | null) => boolean;
  readonly check: (id: FrontendRuleId, ok: boolean, detail: () => string) => boolean;
  readonly note: (line: string) => void;
}

const GUEST_BUF = 4096;
const MAX_CONNS = 3;

export class VsockStreams {
  private readonly conns = new Map<number, Conn>();
  private nextPort: number;
  /** Sockets accepted and not yet given to a connection. */
  private taken = 0;
  /** Connections opened and bytes sent each way (the run's summary note). */
  opened = 0;
  bytesToHost = 0;
  bytesToGuest = 0;

  constructor(private readonly d: StreamDeps) {
    this.nextPort = 30000 + d.rng.int(20000);
  }

  private header(c: Conn, op: number, len = 0, flags = 0): Uint8Array {
    const ends = {
      srcCid: this.d.guestCid,
      dstCid: VSOCK_HOST_CID,
      srcPort: c.guestPort,
      dstPort: this.d.host.port,
    };
    return encodeHeader(streamHeader(ends, c.credit, op, len, flags));
  }

  private move(c: Conn, to: Conn["state"]): void {
    c.state = to;
  }

  /** Adopts sockets the device opened towards the host port (one REQUEST is pending at a time). */
  private adopt(): void {
    const acc = this.d.host.accepted;
    while (this.taken < acc.length) {
      const c = [...this.conns.values()].find((x) => x.sock === null && x.state !== "Killed");
      if (c === undefined) return;
      const s = acc[this.taken++]!;
      c.sock = s;
      s.on("data", (b: Buffer) => {
        for (const byte of b) {
          const want = c.sent[c.hostGot];
          if (want !== byte && c.hostBad === null)
            c.hostBad = `host end got byte ${c.hostGot} = ${byte}, the guest sent ${want ?? "nothing there"}`;
          c.hostGot++;
        }
      });
      s.on("end", () => (c.hostEnded = true));
      s.on("error", () => (c.hostEnded = true));
    }
  }

  /** This round's packets and host writes. `last`: grant all credit, write nothing new. */
  plan(step: number, last: boolean): void {
    const { rng } = this.d;
    this.adopt();
    const live = [...this.conns.values()].filter((c) => c.state !== "Killed");
    if (!last && live.length < MAX_CONNS && !live.some((c) => c.state === "Requested") && rng.chance(0.7)) {
      const c: Conn = {
        guestPort: this.nextPort++,
        state: "Requested",
        opened: step,
        sock: null,
        sent: [],
        hostGot: 0,
        hostBad: null,
        hostEnded: false,
        pending: [],
        credit: new StreamCredit(GUEST_BUF + rng.int(GUEST_BUF)),
        creditAsked: null,
        updateOwed: false,
        shutAt: null,
        deviceShutSend: false,
      };
      if (this.d.send(this.header(c, VSOCK_OP_REQUEST), null)) {
        this.conns.set(c.guestPort, c);
        this.opened++;
      }
    }
    for (const c of live) {
      if (c.state !== "Established" || c.sock === null) continue;
      // The guest reads what it received: fwd_cnt catches up (always in the last round).
      if (last || c.updateOwed || rng.chance(0.5)) {
        const unread = c.credit.unconsumed();
        if (unread !== 0 || c.updateOwed) {
          const was = c.credit.fwdCnt;
          c.credit.countConsumed(unread);
          if (this.d.send(this.header(c, VSOCK_OP_CREDIT_UPDATE), null)) c.updateOwed = false;
          else c.credit.fwdCnt = was;
        }
      }
      if (last) continue;
      if (c.creditAsked === null && rng.chance(0.2)) {
        if (this.d.send(this.header(c, VSOCK_OP_CREDIT_REQUEST), null)) c.creditAsked = step;
      }
      // Guest -> host, within the device's credit (VSOCK-CREDIT-LIMIT).
      const room = c.credit.peerCredit();
      if (room > 0 && rng.chance(0.6)) {
        const n = rng.range(1, Math.min(room, 1500));
        const bytes = new Uint8Array(n);
        rng.fill(bytes);
        if (this.d.send(this.header(c, VSOCK_OP_RW, n), bytes)) {
          for (const b of bytes) c.sent.push(b);
          c.credit.countSent(n);
          this.bytesToHost += n;
        }
      }
      // Host -> guest: sometimes more than the guest's credit (the device must hold it back).
      if (!c.hostEnded && c.pending.length < 2 * c.credit.bufAlloc && rng.chance(0.6)) {
        const n = rng.range(1, 3 * GUEST_BUF);
        const bytes = Buffer.alloc(n);
        rng.fill(bytes);
        c.sock.write(bytes);
        for (const b of bytes) c.pending.push(b);
      }
      // Clean close from the guest: SHUTDOWN with both flags, then an RST is due (§5.10.6.6).
      if (step - c.opened >= 3 && c.pending.length === 0 && rng.chance(0.15)) {
        const flags = VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND;
        if (this.d.send(this.header(c, VSOCK_OP_SHUTDOWN, 0, flags), null)) c.shutAt = step;
      }
    }
  }

  /** A packet the device put on RX; false when it is not for one of our connections. */
  onRx(h: VsockHeader, payload: Uint8Array): boolean {
    if (h.srcPort !== this.d.host.port) return false;
    const c = this.conns.get(h.dstPort);
    if (c === undefined) return false;
    this.adopt();
    const where = `port ${c.guestPort} <- host ${h.srcPort}`;
    if (h.op !== VSOCK_OP_RST && c.state !== "Killed") {
      c.credit.fromPeer(h.bufAlloc, h.fwdCnt);
      // Every header carries buf_alloc and fwd_cnt: any packet answers a CREDIT_REQUEST.
      if (c.creditAsked !== null) {
        this.d.check("VUF-VSOCK-CREDIT-REQUEST", true, () => "");
        c.creditAsked = null;
      }
    }
    switch (h.op) {
      case VSOCK_OP_RESPONSE:
        this.d.check(
          "VUF-VSOCK-CONNECT",
          c.state === "Requested",
          () => `${where}: RESPONSE in state ${c.state} (no REQUEST pending)`,
        );
        if (c.state === "Requested") this.move(c, nextState("LocalInit", "RecvResponse") ?? "Killed");
        return true;
      case VSOCK_OP_RST:
        if (c.state === "Requested")
          this.d.check(
            "VUF-VSOCK-CONNECT",
            false,
            () => `${where}: REQUEST refused with RST although ${this.d.host.path} listens`,
          );
        if (c.shutAt !== null) {
          this.d.check("VUF-VSOCK-ORDER", true, () => "");
          c.shutAt = null;
        }
        this.move(c, nextState("Established", "Rst") ?? "Killed");
        return true;
      case VSOCK_OP_SHUTDOWN:
        if ((h.flags & VSOCK_FLAGS_SHUTDOWN_SEND) !== 0) c.deviceShutSend = true;
        return true;
      case VSOCK_OP_CREDIT_UPDATE:
        return true;
      case VSOCK_OP_CREDIT_REQUEST:
        // The device asks: answered in the next round (the TX ring is not touched mid-round).
        c.updateOwed = true;
        return true;
      case VSOCK_OP_RW: {
        const open = c.state === "Established" && !c.deviceShutSend;
        this.d.check(
          "VUF-VSOCK-ORDER",
          open,
          () =>
            `${where}: RW of ${h.len} bytes ${c.state === "Killed" ? "after RST" : c.deviceShutSend ? "after the device's SHUTDOWN(SEND)" : `in state ${c.state}`}`,
        );
        const cr = c.credit;
        const inUse = cr.unconsumed();
        this.d.check(
          "VUF-VSOCK-CREDIT",
          inUse + h.len <= cr.bufAlloc,
          () =>
            `${where}: RW of ${h.len} bytes with ${cr.bufAlloc - inUse} bytes of credit (buf_alloc ${cr.bufAlloc}, received ${cr.rxCnt}, fwd_cnt ${cr.fwdCnt})`,
        );
        let bad = -1;
        for (let i = 0; i < payload.length; i++) {
          if (payload[i] !== c.pending[i]) {
            bad = i;
            break;
          }
        }
        this.d.check(
          "VUF-VSOCK-STREAM",
          bad < 0,
          () =>
            `${where}: RW byte ${cr.rxCnt + bad} is ${payload[bad]}, the host wrote ${c.pending[bad] ?? "nothing there"}`,
        );
        c.pending.splice(0, payload.length);
        cr.countReceived(payload.length);
        this.bytesToGuest += payload.length;
        return true;
      }
    }
    return false;
  }

  /**
   * Nothing more to wait for this round: no REQUEST, credit request or shutdown unanswered,
   * the host end read every byte sent, and host bytes pending only where the guest gave no
   * credit (or no RX buffer is left).
   */
  settled(rxBuffers: number): boolean {
    this.adopt();
    for (const c of this.conns.values()) {
      if (c.state === "Requested" || c.shutAt !== null) return false;
      if (c.creditAsked !== null && c.state === "Established" && rxBuffers > 0) return false;
      // Bytes on their way to the host end (a closed connection flushes them first).
      if (c.sock !== null && c.hostGot < c.sent.length && !c.hostEnded) return false;
      if (c.state !== "Established") continue;
      const credit = c.credit.bufAlloc - c.credit.unconsumed();
      if (c.pending.length > 0 && credit > 0 && rxBuffers > 0 && !c.deviceShutSend) return false;
    }
    return true;
  }

  /** Round-end verdicts for what was due this round and did not come. */
  endRound(rxBuffers: number): void {
    for (const c of this.conns.values()) {
      const where = `port ${c.guestPort} -> host ${this.d.host.port}`;
      if (c.state === "Requested") {
        this.d.check("VUF-VSOCK-CONNECT", false, () => `${where}: REQUEST got neither RESPONSE nor RST`);
        this.move(c, "Killed");
      }
      // Unanswered is judged only where the device could answer: open, with an RX buffer left.
      if (c.creditAsked !== null && c.state !== "Established") c.creditAsked = null;
      if (c.creditAsked !== null && rxBuffers > 0) {
        this.d.check(
          "VUF-VSOCK-CREDIT-REQUEST",
          false,
          () => `${where}: CREDIT_REQUEST got no answer with ${rxBuffers} RX buffer(s) free`,
        );
        c.creditAsked = null;
      }
      if (c.shutAt !== null) {
        this.d.check("VUF-VSOCK-ORDER", false, () => `${where}: SHUTDOWN(RCV|SEND) got no RST`);
        c.shutAt = null;
        this.move(c, "Killed");
      }
      if (c.sock !== null && c.sent.length > 0) {
        this.d.check(
          "VUF-VSOCK-STREAM",
          c.hostBad === null && c.hostGot === c.sent.length,
          () => c.hostBad ?? `${where}: the host end read ${c.hostGot} of ${c.sent.length} bytes sent`,
        );
        // Judged once: from here on only new bytes count.
        c.sent.length = 0;
        c.hostGot = 0;
      }
      if (c.state === "Killed" && c.sock !== null) {
        c.sock.destroy();
        c.sock = null;
      }
    }
  }

  /** End of run (after a round that granted all credit): host bytes never delivered although the guest had credit and RX buffers. */
  finish(rxBuffers: number): void {
    for (const c of this.conns.values()) {
      if (c.state !== "Established" || c.pending.length === 0) continue;
      // Held back for want of credit is what VUF-VSOCK-CREDIT asks for.
      if (c.credit.bufAlloc - c.credit.unconsumed() <= 0) continue;
      if (rxBuffers === 0 || c.deviceShutSend) {
        this.d.note(
          `vsock port ${c.guestPort}: ${c.pending.length} host bytes undelivered (no RX buffer left)`,
        );
        continue;
      }
      this.d.check(
        "VUF-VSOCK-STREAM",
        false,
        () =>
          `port ${c.guestPort}: ${c.pending.length} bytes the host wrote never reached the guest (credit ${c.credit.bufAlloc - c.credit.unconsumed()})`,
      );
    }
  }

  /** Closes the host ends (the scope closes the listener too). */
  close(): void {
    for (const c of this.conns.values()) c.sock?.destroy();
  }
}
