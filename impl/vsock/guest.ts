/**
 * A guest driver model for the vsock device (what Linux's virtio_transport does, reduced):
 * lays out the three queues in guest memory, keeps RX buffers posted, sends packets through
 * TX chains, reaps what the device wrote, and runs guest-side stream sockets with credit flow
 * control. Tests, properties, the benchmark and the simulator drive the device with it.
 *
 * A well-behaved guest; hostile packets are sent with `sendRaw`.
 */
import { GuestMemory } from "../memory/guest-memory.ts";
import { SplitDriver } from "../queue/split-driver.ts";
import { splitLayoutAt, type SplitLayout } from "../../wire/split.ts";
import { inFlight, peerFree, type VsockHeader } from "../../spec/vsock.ts";
import { EVENT_QUEUE, RX_QUEUE, TX_QUEUE, VsockDevice, type VsockDeviceConfig } from "./device.ts";
import { VsockHeaderView } from "./header.ts";
import type { HostPort } from "./muxer.ts";
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

export interface GuestOptions {
  /** Queue size for all three queues (power of two). */
  readonly queueSize: number;
  /** RX buffers kept posted, and the data bytes of each. */
  readonly rxBuffers: number;
  readonly rxBufSize: number;
  /** TX slots (packets in flight per kick) and the largest data per packet. */
  readonly txSlots: number;
  readonly txMaxData: number;
  /**
   * Layout of chains: header and data in two descriptors (Linux < 6.2), in one (6.2+), or
   * data spread over several descriptors (only the virtio profile gathers it).
   */
  readonly layout: "split" | "single" | "scatter";
  /** The guest's receive buffer per socket, advertised as buf_alloc. */
  readonly sockBufAlloc: number;
  /** Answer packets for unknown sockets with RST, as Linux does (off: hostile runs keep them open). */
  readonly rstStrays: boolean;
  /** Bytes of guest memory left for tests to put hostile buffers in (`scratchBase`). */
  readonly scratch: number;
}

export const DEFAULT_GUEST_OPTIONS: GuestOptions = {
  queueSize: 256,
  rxBuffers: 64,
  rxBufSize: 4096,
  txSlots: 64,
  txMaxData: 64 * 1024,
  layout: "split",
  sockBufAlloc: 256 * 1024,
  rstStrays: true,
  scratch: 0,
};

export interface ReceivedPacket {
  readonly header: VsockHeader;
  readonly data: Uint8Array;
}

/** A guest-side stream socket (guest port `port`, host port `peerPort`). */
export class GuestSocket {
  state: "connecting" | "listening-accepted" | "established" | "closed" = "connecting";
  /** Bytes received and not yet read by the guest program. */
  readonly unread: Uint8Array[] = [];
  unreadBytes = 0;
  /** Everything the guest program read, in order. */
  readonly received: Uint8Array[] = [];
  receivedBytes = 0;
  /** Bytes the guest program wrote and the driver has not sent yet. */
  readonly pending: Uint8Array[] = [];
  pendingBytes = 0;
  txCnt = 0;
  fwdCnt = 0;
  lastFwdCntSent = 0;
  rxCnt = 0;
  peerBufAlloc = 0;
  peerFwdCnt = 0;
  peerShutdown = 0;
  sentShutdown = 0;
  wantShutdown = 0;
  reset = false;
  /** Largest host-to-guest in-flight count seen (VSOCK-CREDIT-LIMIT check). */
  maxInFlight = 0;
  constructor(
    readonly port: number,
    readonly peerPort: number,
    readonly bufAlloc: number,
  ) {}
}

export class VsockGuest {
  readonly memory: GuestMemory;
  readonly device: VsockDevice;
  readonly drivers: readonly [SplitDriver, SplitDriver, SplitDriver];
  readonly options: GuestOptions;
  readonly sockets = new Map<string, GuestSocket>();
  /** Ports the guest listens on (host-initiated connections to them are accepted). */
  readonly listening = new Set<number>();
  /** Packets the guest could not match to a socket, and events. */
  readonly stray: ReceivedPacket[] = [];
  readonly events: number[] = [];
  /** Interrupts the device raised, per queue. */
  readonly interrupts = [0, 0, 0];
  private readonly rxSlots = new Map<number, number>();
  private readonly txFree: number[] = [];
  private readonly txOfHead = new Map<number, number>();
  private readonly rxBase: number;
  private readonly txBase: number;
  private readonly evBase: number;
  /** Where the scratch area (options.scratch bytes) starts. */
  readonly scratchBase: number;
  private nextPort = 50000;
  private readonly hdrView = new VsockHeaderView();
  /** Packets sent, received (device to guest). */
  sent = 0;
  receivedPackets = 0;
  now = 0;

  private constructor(
    memory: GuestMemory,
    device: VsockDevice,
    options: GuestOptions,
    layouts: SplitLayout[],
    bases: number[],
  ) {
    this.memory = memory;
    this.device = device;
    this.options = options;
    this.drivers = [
      SplitDriver.at(memory, options.queueSize, layouts[0]!.descTable),
      SplitDriver.at(memory, options.queueSize, layouts[1]!.descTable),
      SplitDriver.at(memory, options.queueSize, layouts[2]!.descTable),
    ];
    this.rxBase = bases[0]!;
    this.txBase = bases[1]!;
    this.evBase = bases[2]!;
    this.scratchBase = bases[3]!;
    for (let i = 0; i < options.txSlots; i++) this.txFree.push(i);
  }

  /** Guest memory, the device (with `host` behind it) and a driver with queues configured and buffers posted. */
  static create(
    config: VsockDeviceConfig,
    host: HostPort | null,
    options: Partial<GuestOptions> = {},
  ): VsockGuest {
    const o = { ...DEFAULT_GUEST_OPTIONS, ...options };
    const ringBytes = 16 * o.queueSize + 6 + 2 * o.queueSize + 8 + 6 + 8 * o.queueSize + 64;
    const layouts = [0, 1, 2].map((i) => splitLayoutAt(0x1000 + i * ringBytes, o.queueSize));
    let at = Math.ceil((0x1000 + 3 * ringBytes) / 4096) * 4096;
    const rxBase = at;
    at += o.rxBuffers * (64 + o.rxBufSize);
    const txBase = at;
    at += o.txSlots * (64 + o.txMaxData);
    const evBase = at;
    at += 8 * 64;
    const scratchBase = at;
    at += o.scratch;
    const memory = GuestMemory.of([{ base: 0, bytes: new Uint8Array(at) }]);
    const created = VsockDevice.create(memory, config, host);
    if (!created.ok) throw new Error(`vsock guest: ${created.error._tag}`);
    const guest = new VsockGuest(memory, created.value, o, layouts, [rxBase, txBase, evBase, scratchBase]);
    const dev = created.value;
    for (let i = 0; i < 3; i++) {
      const l = layouts[i]!;
      dev.queues[i]!.configure({
        size: o.queueSize,
        ready: true,
        descTable: l.descTable,
        availRing: l.availRing,
        usedRing: l.usedRing,
      });
    }
    dev.ackFeatures(dev.deviceFeatures & ~(1n << 29n));
    const r = dev.activate();
    if (!r.ok) throw new Error(`vsock guest: queue ${r.error.queue}: ${r.error.error._tag}`);
    for (let i = 0; i < o.rxBuffers; i++) guest.postRx(i);
    for (let i = 0; i < 8; i++) guest.postEvent(i);
    return guest;
  }

  get cid(): bigint {
    return this.device.guestCid;
  }

  /** Whether [addr, addr+len) lies in the queues' tables and rings (below every buffer). */
  isRingArea(addr: number, len: number): boolean {
    return addr >= 0 && addr + len <= this.rxBase;
  }

  /** Whether [addr, addr+len) lies in the guest's own rx buffers. */
  isRxBuffer(addr: number, len: number): boolean {
    return addr >= this.rxBase && addr + len <= this.txBase;
  }

  /** The header view over guest memory at addr (the driver's own buffers, always inside memory). */
  private headerAt(addr: number): VsockHeaderView {
    const region = this.memory.regions[0]!;
    return this.hdrView.bind(region.view, addr - region.base);
  }

  private postRx(slot: number): void {
    const base = this.rxBase + slot * (64 + this.options.rxBufSize);
    const size = this.options.rxBufSize;
    const half = size >>> 1;
    const bufs =
      this.options.layout === "single"
        ? [{ addr: base, len: VSOCK_PKT_HDR_SIZE + size, write: true }]
        : this.options.layout === "scatter"
          ? [
              { addr: base, len: VSOCK_PKT_HDR_SIZE, write: true },
              { addr: base + 64, len: half, write: true },
              { addr: base + 64 + half, len: size - half, write: true },
            ]
          : [
              { addr: base, len: VSOCK_PKT_HDR_SIZE, write: true },
              { addr: base + 64, len: size, write: true },
            ];
    const head = this.drivers[RX_QUEUE].addChain(bufs);
    if (head !== undefined) this.rxSlots.set(head, slot);
  }

  private postEvent(slot: number): void {
    this.drivers[EVENT_QUEUE].addChain([{ addr: this.evBase + slot * 8, len: 4, write: true }]);
  }

  /** Sends one packet through a TX chain (not kicked). False when no slot is free. */
  sendRaw(h: VsockHeader, data: Uint8Array = new Uint8Array(0)): boolean {
    const slot = this.txFree.pop();
    if (slot === undefined) return false;
    const base = this.txBase + slot * (64 + this.options.txMaxData);
    this.headerAt(base)
      .setSrcCid(h.srcCid)
      .setDstCid(h.dstCid)
      .setSrcPort(h.srcPort)
      .setDstPort(h.dstPort)
      .setLen(h.len)
      .setType(h.type)
      .setOp(h.op)
      .setFlags(h.flags)
      .setBufAlloc(h.bufAlloc)
      .setFwdCnt(h.fwdCnt);
    const n = Math.min(data.length, this.options.txMaxData);
    const bufs: { addr: number; len: number }[] =
      this.options.layout === "single" || n === 0
        ? [{ addr: base, len: VSOCK_PKT_HDR_SIZE + n }]
        : [{ addr: base, len: VSOCK_PKT_HDR_SIZE }];
    if (n > 0 && this.options.layout === "split") bufs.push({ addr: base + 64, len: n });
    if (n > 0 && this.options.layout === "scatter") {
      // The same contiguous bytes, cut into up to three descriptors.
      const a = Math.ceil(n / 3);
      const b = Math.ceil((n - a) / 2);
      for (const [off, len] of [
        [0, a],
        [a, b],
        [a + b, n - a - b],
      ] as const) {
        if (len > 0) bufs.push({ addr: base + 64 + off, len });
      }
    }
    if (n > 0)
      this.memory.writeFrom(
        this.options.layout === "single" ? base + VSOCK_PKT_HDR_SIZE : base + 64,
        data.subarray(0, n),
      );
    const head = this.drivers[TX_QUEUE].addChain(bufs);
    if (head === undefined) {
      this.txFree.push(slot);
      return false;
    }
    this.txOfHead.set(head, slot);
    this.sent++;
    return true;
  }

  private header(s: GuestSocket, op: number, len: number, flags = 0): VsockHeader {
    s.lastFwdCntSent = s.fwdCnt;
    return {
      srcCid: this.cid,
      dstCid: VSOCK_HOST_CID,
      srcPort: s.port,
      dstPort: s.peerPort,
      len,
      type: VSOCK_TYPE_STREAM,
      op,
      flags,
      bufAlloc: s.bufAlloc,
      fwdCnt: s.fwdCnt,
    };
  }

  private key(port: number, peerPort: number): string {
    return `${port}:${peerPort}`;
  }

  /** The guest program connects to host port `peerPort`. */
  connect(peerPort: number): GuestSocket {
    const s = new GuestSocket(this.nextPort++, peerPort, this.options.sockBufAlloc);
    this.sockets.set(this.key(s.port, peerPort), s);
    this.sendRaw(this.header(s, VSOCK_OP_REQUEST, 0));
    return s;
  }

  socket(port: number, peerPort: number): GuestSocket | undefined {
    return this.sockets.get(this.key(port, peerPort));
  }

  write(s: GuestSocket, bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    s.pending.push(bytes);
    s.pendingBytes += bytes.length;
  }

  /** The guest program reads up to `max` bytes (credit returns to the host as it reads). */
  read(s: GuestSocket, max = Infinity): number {
    return this.consume(s, max, s.received);
  }

  /** Like `read`, but hands the bytes back instead of keeping them in `received` (echo loops). */
  take(s: GuestSocket, max = Infinity): Uint8Array[] {
    const out: Uint8Array[] = [];
    this.consume(s, max, out);
    return out;
  }

  private consume(s: GuestSocket, max: number, into: Uint8Array[]): number {
    let n = 0;
    while (s.unread.length > 0 && n < max) {
      const c = s.unread[0]!;
      const take = Math.min(c.length, max - n);
      into.push(c.subarray(0, take));
      if (take === c.length) s.unread.shift();
      else s.unread[0] = c.subarray(take);
      n += take;
    }
    s.unreadBytes -= n;
    s.receivedBytes += n;
    s.fwdCnt = (s.fwdCnt + n) >>> 0;
    // Linux sends a credit update when the host's view of our free space gets low.
    if (n > 0 && s.state === "established" && s.bufAlloc - inFlight(s.rxCnt, s.lastFwdCntSent) < 64 * 1024) {
      this.sendRaw(this.header(s, VSOCK_OP_CREDIT_UPDATE, 0));
    }
    return n;
  }

  /** SHUTDOWN with flags once pending data has gone. */
  shutdown(s: GuestSocket, flags: number): void {
    s.wantShutdown |= flags;
  }

  /** Sends RW packets for pending data within the host's credit, and due shutdowns. */
  flush(): void {
    for (const s of this.sockets.values()) {
      if (s.state !== "established" || s.reset) continue;
      while (s.pendingBytes > 0 && (s.sentShutdown & VSOCK_FLAGS_SHUTDOWN_SEND) === 0) {
        const credit = peerFree(s.peerBufAlloc, s.txCnt, s.peerFwdCnt);
        const n = Math.min(credit, s.pendingBytes, this.options.txMaxData, s.pending[0]!.length);
        if (n <= 0) break;
        const c = s.pending[0]!;
        if (!this.sendRaw(this.header(s, VSOCK_OP_RW, n), c.subarray(0, n))) break;
        if (n === c.length) s.pending.shift();
        else s.pending[0] = c.subarray(n);
        s.pendingBytes -= n;
        s.txCnt = (s.txCnt + n) >>> 0;
      }
      const due = s.wantShutdown & ~s.sentShutdown;
      if (due !== 0 && s.pendingBytes === 0) {
        if (this.sendRaw(this.header(s, VSOCK_OP_SHUTDOWN, 0, s.wantShutdown))) s.sentShutdown |= due;
      }
    }
  }

  /** Kick tx: the device processes it; used TX slots are freed. */
  kickTx(): void {
    this.device.processTx(this.now);
    for (const u of this.drivers[TX_QUEUE].reapUsed()) {
      const slot = this.txOfHead.get(u.id);
      if (slot !== undefined) {
        this.txOfHead.delete(u.id);
        this.txFree.push(slot);
      }
    }
    this.noteInterrupts();
  }

  private noteInterrupts(): void {
    const irq = this.device.takeInterrupts();
    for (let q = 0; q < 3; q++) if ((irq & (1 << q)) !== 0) this.interrupts[q]!++;
  }

  /** The device fills RX buffers; the guest reaps them, handles each packet and reposts. */
  pollRx(): ReceivedPacket[] {
    this.device.processRx(this.now);
    this.noteInterrupts();
    const out: ReceivedPacket[] = [];
    // Map every used entry to its slot before reposting: reposting reuses the freed heads.
    const used = this.drivers[RX_QUEUE].reapUsed().map((u) => {
      const slot = this.rxSlots.get(u.id);
      this.rxSlots.delete(u.id);
      return { len: u.len, slot };
    });
    for (const { len, slot } of used) {
      if (slot === undefined) continue;
      if (len >= VSOCK_PKT_HDR_SIZE) {
        const base = this.rxBase + slot * (64 + this.options.rxBufSize);
        const v = this.headerAt(base);
        const hdr: VsockHeader = {
          srcCid: v.srcCid(),
          dstCid: v.dstCid(),
          srcPort: v.srcPort(),
          dstPort: v.dstPort(),
          len: v.len(),
          type: v.type(),
          op: v.op(),
          flags: v.flags(),
          bufAlloc: v.bufAlloc(),
          fwdCnt: v.fwdCnt(),
        };
        const dataAt = this.options.layout === "single" ? base + VSOCK_PKT_HDR_SIZE : base + 64;
        const dlen = Math.min(len - VSOCK_PKT_HDR_SIZE, hdr.len, this.options.rxBufSize);
        const data = this.memory.slice(dataAt, dlen)!.slice();
        const p = { header: hdr, data };
        out.push(p);
        this.receivedPackets++;
        this.handle(p);
      }
    }
    for (const { slot } of used) if (slot !== undefined) this.postRx(slot);
    for (const _ of this.drivers[EVENT_QUEUE].reapUsed()) {
      this.events.push(this.memory.readU32(this.evBase) >>> 0);
      for (const s of this.sockets.values()) s.reset = true;
      this.postEvent(0);
    }
    return out;
  }

  private handle(p: ReceivedPacket): void {
    const h = p.header;
    if (h.dstCid !== this.cid || h.srcCid !== VSOCK_HOST_CID) {
      this.stray.push(p);
      return;
    }
    let s = this.socket(h.dstPort, h.srcPort);
    if (s === undefined) {
      if (h.op === VSOCK_OP_REQUEST && this.listening.has(h.dstPort)) {
        s = new GuestSocket(h.dstPort, h.srcPort, this.options.sockBufAlloc);
        s.state = "established";
        s.peerBufAlloc = h.bufAlloc;
        s.peerFwdCnt = h.fwdCnt;
        this.sockets.set(this.key(s.port, s.peerPort), s);
        this.sendRaw(this.header(s, VSOCK_OP_RESPONSE, 0));
        return;
      }
      if (h.op !== VSOCK_OP_RST) {
        this.stray.push(p);
        if (!this.options.rstStrays) return;
        const ghost = new GuestSocket(h.dstPort, h.srcPort, 0);
        this.sendRaw(this.header(ghost, VSOCK_OP_RST, 0));
      }
      return;
    }
    s.peerBufAlloc = h.bufAlloc;
    s.peerFwdCnt = h.fwdCnt;
    switch (h.op) {
      case VSOCK_OP_RESPONSE:
        if (s.state === "connecting") s.state = "established";
        break;
      case VSOCK_OP_RW:
        s.unread.push(p.data);
        s.unreadBytes += p.data.length;
        s.rxCnt = (s.rxCnt + p.data.length) >>> 0;
        s.maxInFlight = Math.max(s.maxInFlight, inFlight(s.rxCnt, s.fwdCnt));
        break;
      case VSOCK_OP_CREDIT_REQUEST:
        this.sendRaw(this.header(s, VSOCK_OP_CREDIT_UPDATE, 0));
        break;
      case VSOCK_OP_SHUTDOWN:
        s.peerShutdown |= h.flags & (VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND);
        if (s.peerShutdown === (VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND)) {
          // Linux answers a full shutdown with RST.
          this.sendRaw(this.header(s, VSOCK_OP_RST, 0));
          s.state = "closed";
        }
        break;
      case VSOCK_OP_RST:
        s.state = "closed";
        s.reset = true;
        break;
      default:
        break;
    }
  }

  /** One round: flush writes, kick tx, poll rx, until nothing moves (or `limit` rounds). */
  pump(limit = 64): number {
    let rounds = 0;
    for (; rounds < limit; rounds++) {
      const before = this.sent + this.receivedPackets;
      this.flush();
      this.kickTx();
      this.pollRx();
      if (this.sent + this.receivedPackets === before) break;
    }
    return rounds;
  }
}
