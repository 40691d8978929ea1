/**
 * The virtio-net guest driver: what Linux's virtio_net does to a device, over impl/queue's
 * GuestQueue (split or packed ring). It negotiates features, configures both queues and
 * activates the device, then either
 * - in a few calls (tests, properties, the benchmark): `send` a frame as header + data,
 *   `postRx` buffers, `reapRx` / `reapRxMerged` what the device wrote; or
 * - as Linux's loop (the simulator): `refillRx` with the buffer shapes virtio_net posts,
 *   `xmit` (start_xmit with TX reclaim), `reapRx` with MRG_RXBUF reassembly,
 *   `interrupts` (NAPI: disable, reap, re-enable, poll), kicks through kick_prepare.
 * What it sees (kicks, used buffers, headers, frames) goes to a `NetGuestProbe`: the
 * simulator plugs its oracle checks and metrics in there. Hostile guests use `txDriver` /
 * `rxDriver` directly.
 */
import { GuestMemory } from "../memory/guest-memory.ts";
import { SplitDriver } from "../queue/split-driver.ts";
import {
  NO_ROOM,
  type BufferSlabs,
  type GuestBuffer,
  type GuestQueue,
  type KickDecision,
  type SegmentInput,
} from "../queue/guest-queue.ts";
import { splitLayoutAt, splitLayoutEnd, type SplitLayout } from "../../wire/split.ts";
import type { NetDevice } from "./device.ts";
import type { DeviceQueue } from "../queue/device-queue.ts";
import { RX_QUEUE, TX_QUEUE } from "./device.ts";
import { decodeNetHeader, type NetHeader } from "./header.ts";
import { VIRTIO_NET_F as F } from "../../wire/features.ts";

export interface NetGuestOptions {
  readonly queueSize?: number;
  /** Bytes per TX and per RX buffer slot (header included). */
  readonly bufferSize?: number;
  /** Features to acknowledge (default: everything offered). */
  readonly features?: bigint;
  /** Guest memory to use (default: a fresh ArrayBuffer big enough). */
  readonly memory?: GuestMemory;
}

export interface ReceivedPacket {
  readonly header: NetHeader;
  readonly frame: Uint8Array;
  readonly usedLength: number;
  readonly head: number;
}

/** A guest queue of either ring whose areas the device's queue is configured with. */
export type NetQueue = GuestQueue & { readonly layout: SplitLayout };

/** What the driver saw, for whoever watches it (the simulator's oracle and metrics). */
export interface NetGuestProbe {
  /** Queue `q` published; `kick`: the driver notified the device. */
  published(q: number, kick: KickDecision): void;
  /** RX buffer `head` is written, not yet published (a hostile guest may break it here). */
  rxPosted(head: number): void;
  /** TX chain `head` holds frame `seq` (header + frame written), not yet published. */
  txQueued(head: number, seq: number, frame: Uint8Array, descs: number): void;
  /** The driver took back a used buffer of queue `q` and the len the device wrote. */
  reclaimed(q: number, buf: GuestBuffer, len: number): void;
  /** A used entry naming no buffer in flight (Linux's BAD_RING); the driver stops reaping `q`. */
  badUsed(q: number, id: number, reason: string): void;
  /** The first buffer of a received packet (virtio_net_hdr first), as the device wrote it. */
  rxHeader(packet: Uint8Array): void;
  /** A received packet the driver cannot take as it is (num_buffers wrong). */
  rxBroken(why: string): void;
  /** A received frame (header stripped, MRG_RXBUF buffers joined). */
  delivered(frame: Uint8Array): void;
}

/** The driver's random choices (buffer shapes, descriptor splits): the simulator's seeded RNG. */
export interface NetGuestRandom {
  range(lo: number, hi: number): number;
  chance(p: number): boolean;
}

/** The frames `xmit` sends: a length for frame `seq` (null: none now), then its bytes. */
export interface NetTxSource {
  length(seq: number): number | null;
  frame(seq: number, len: number): Uint8Array;
}

export interface NetGuestAttach<Q extends NetQueue> {
  readonly memory: GuestMemory;
  readonly rx: Q;
  readonly tx: Q;
  /** Buffer space for `refillRx` / `xmit` (a slab per descriptor id). */
  readonly rxSlabs: BufferSlabs;
  readonly txSlabs: BufferSlabs;
  readonly random: NetGuestRandom;
  readonly probe: NetGuestProbe;
  /** Features to acknowledge (default: everything offered). */
  readonly features?: bigint;
}

/** The largest Ethernet frame virtio_net sends without offloads, and its RX data buffer. */
export const MAX_FRAME = 1514;
/** The header with num_buffers (RX small buffers are sized for it either way). */
const HDR = 12;

const NO_PROBE: NetGuestProbe = {
  published: () => {},
  rxPosted: () => {},
  txQueued: () => {},
  reclaimed: () => {},
  badUsed: () => {},
  rxHeader: () => {},
  rxBroken: () => {},
  delivered: () => {},
};

const ZERO_HEADER: NetHeader = {
  flags: 0,
  gsoType: 0,
  hdrLen: 0,
  gsoSize: 0,
  csumStart: 0,
  csumOffset: 0,
  numBuffers: 0,
};

const sortedCuts = (splits: readonly number[], total: number): number[] =>
  [...new Set(splits.filter((s) => s > 0 && s < total))].sort((a, b) => a - b);

/** `[addr, addr + total)` cut at `cuts`, as segments. */
const cutSegments = (
  addr: number,
  total: number,
  cuts: readonly number[],
  write: boolean,
): SegmentInput[] => {
  const out: SegmentInput[] = [];
  let at = 0;
  for (const c of [...cuts, total]) {
    out.push({ addr: addr + at, len: c - at, write });
    at = c;
  }
  return out;
};

export class NetGuest<Q extends NetQueue = SplitDriver> {
  readonly memory: GuestMemory;
  readonly txDriver: Q;
  readonly rxDriver: Q;
  readonly queueSize: number;
  readonly bufferSize: number;
  readonly headerLength: 10 | 12;
  readonly eventIdx: boolean;
  readonly mrgRxbuf: boolean;
  /** Interrupts the device raised, per queue. */
  readonly interrupts: [number, number] = [0, 0];
  /** Per queue: an interrupt raised and not yet handled by `interrupts()`. */
  readonly irq: [boolean, boolean] = [false, false];
  private readonly txBase: number;
  private readonly rxBase: number;
  private txSlot = 0;
  private rxSlot = 0;
  /** RX head → the slot address it was posted with. */
  private readonly rxPosted = new Map<number, { addr: number; len: number }>();
  private readonly probe: NetGuestProbe;
  private readonly random: NetGuestRandom | undefined;
  private readonly rxSlabs: BufferSlabs | undefined;
  private readonly txSlabs: BufferSlabs | undefined;
  /** The next TX frame's sequence number. */
  private seq = 0;

  private constructor(
    readonly device: NetDevice<DeviceQueue>,
    memory: GuestMemory,
    rx: Q,
    tx: Q,
    slots: { readonly bufferSize: number; readonly txBase: number; readonly rxBase: number },
    loop: Omit<NetGuestAttach<Q>, "memory" | "rx" | "tx" | "features"> | undefined,
  ) {
    this.memory = memory;
    this.rxDriver = rx;
    this.txDriver = tx;
    this.queueSize = rx.size;
    this.bufferSize = slots.bufferSize;
    this.txBase = slots.txBase;
    this.rxBase = slots.rxBase;
    this.eventIdx = (device.ackedFeatures & (1n << BigInt(F.RING_EVENT_IDX))) !== 0n;
    this.mrgRxbuf = (device.ackedFeatures & (1n << BigInt(F.MRG_RXBUF))) !== 0n;
    this.headerLength = device.headerLength;
    this.probe = loop?.probe ?? NO_PROBE;
    this.random = loop?.random;
    this.rxSlabs = loop?.rxSlabs;
    this.txSlabs = loop?.txSlabs;
  }

  /** Bytes of guest memory `create` needs for these options. */
  static memoryBytes(queueSize: number, bufferSize: number): number {
    const rings =
      2 * (Math.ceil(splitLayoutEnd(splitLayoutAt(0x1000, queueSize), queueSize) / 0x1000) * 0x1000);
    return 0x1000 + rings + 2 * queueSize * bufferSize + 0x1000;
  }

  /** Negotiates `features`; throws when the device refuses them. */
  private static negotiate(device: NetDevice<DeviceQueue>, features: bigint): void {
    const acked = device.ackFeatures(features);
    if (!acked.ok) throw new Error(`feature negotiation failed: ${acked.error._tag}`);
  }

  /** Configures both queues and activates the device; throws on a set-up error. */
  private start(): void {
    const device = this.device;
    for (const [q, d] of [
      [RX_QUEUE, this.rxDriver],
      [TX_QUEUE, this.txDriver],
    ] as const) {
      device.queues[q].configure({
        size: d.size,
        descTable: d.layout.descTable,
        availRing: d.layout.availRing,
        usedRing: d.layout.usedRing,
        ready: true,
      });
    }
    const r = device.activate(this.memory, (q) => {
      this.interrupts[q]!++;
      this.irq[q === RX_QUEUE ? 0 : 1] = true;
    });
    if (!r.ok)
      throw new Error(
        `activation failed: ${JSON.stringify(r.error, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))}`,
      );
  }

  /** Negotiates, lays out both split queues and slots in memory, activates the device; throws on a set-up error. */
  static create(device: NetDevice, opts: NetGuestOptions = {}): NetGuest {
    const queueSize = opts.queueSize ?? 256;
    const bufferSize = opts.bufferSize ?? 2048;
    const bytes = NetGuest.memoryBytes(queueSize, bufferSize);
    const memory = opts.memory ?? GuestMemory.of([{ base: 0, bytes: new ArrayBuffer(bytes) }]);
    NetGuest.negotiate(device, opts.features ?? device.offeredFeatures);
    const eventIdx = (device.ackedFeatures & (1n << BigInt(F.RING_EVENT_IDX))) !== 0n;
    const rx = SplitDriver.at(memory, queueSize, 0x1000, { eventIdx });
    const txAt = Math.ceil(splitLayoutEnd(rx.layout, queueSize) / 0x1000) * 0x1000;
    const tx = SplitDriver.at(memory, queueSize, txAt, { eventIdx });
    const buffers = Math.ceil(splitLayoutEnd(tx.layout, queueSize) / 0x1000) * 0x1000;
    const g = new NetGuest(
      device,
      memory,
      rx,
      tx,
      { bufferSize, txBase: buffers, rxBase: buffers + queueSize * bufferSize },
      undefined,
    );
    g.start();
    return g;
  }

  /**
   * The driver over queues the caller laid out (either ring, built with the EVENT_IDX the
   * device will ack), with slabs for `refillRx` / `xmit`; negotiates, activates.
   */
  static attach<Q extends NetQueue>(device: NetDevice<DeviceQueue>, a: NetGuestAttach<Q>): NetGuest<Q> {
    NetGuest.negotiate(device, a.features ?? device.offeredFeatures);
    const g = new NetGuest<Q>(device, a.memory, a.rx, a.tx, { bufferSize: 0, txBase: 0, rxBase: 0 }, a);
    g.start();
    return g;
  }

  /** Guest address of TX slot i / RX slot i. */
  txSlotAddr(i: number): number {
    return this.txBase + (i % this.queueSize) * this.bufferSize;
  }
  rxSlotAddr(i: number): number {
    return this.rxBase + (i % this.queueSize) * this.bufferSize;
  }

  /**
   * Queues one frame for transmission: a zero header then the frame in the next TX slot,
   * as one descriptor or split at `splits` (byte offsets into header + frame). Publishes
   * the chain; returns the head, or undefined when the ring is full.
   */
  send(frame: Uint8Array, splits: readonly number[] = [], header?: Uint8Array): number | undefined {
    const total = this.headerLength + frame.length;
    if (total > this.bufferSize)
      throw new Error(`frame of ${frame.length} bytes exceeds the ${this.bufferSize}-byte slot`);
    const addr = this.txSlotAddr(this.txSlot++);
    const slot = this.memory.slice(addr, total, true)!;
    slot.fill(0, 0, this.headerLength);
    if (header !== undefined) slot.set(header.subarray(0, this.headerLength));
    slot.set(frame, this.headerLength);
    const head = this.txDriver.add(cutSegments(addr, total, sortedCuts(splits, total), false), 0);
    if (head === NO_ROOM) return undefined;
    this.txDriver.publish();
    return head;
  }

  /** Posts `count` RX buffers of `len` bytes each (default: the slot size); returns how many were posted. */
  postRx(count: number, len = this.bufferSize, splits: readonly number[] = []): number {
    let n = 0;
    for (; n < count; n++) {
      const addr = this.rxSlotAddr(this.rxSlot);
      const head = this.rxDriver.add(cutSegments(addr, len, sortedCuts(splits, len), true), 0);
      if (head === NO_ROOM) break;
      this.rxDriver.publish();
      this.rxSlot++;
      this.rxPosted.set(head, { addr, len });
    }
    return n;
  }

  /** Used entries of `q` with the buffers they name (stops at a bad entry, as Linux does). */
  private takeUsed(q: Q): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    for (;;) {
      const g = q.getBuf();
      if (g.kind !== "buf") return out;
      out.push({ id: g.buf.id, len: g.len });
    }
  }

  /** TX chains the device completed. */
  reapTx(): { id: number; len: number }[] {
    return this.takeUsed(this.txDriver);
  }

  /** Packets the device delivered (one per used RX chain; with MRG_RXBUF, per buffer). */
  reapRx(): ReceivedPacket[] {
    const out: ReceivedPacket[] = [];
    for (const e of this.takeUsed(this.rxDriver)) {
      const posted = this.rxPosted.get(e.id);
      this.rxPosted.delete(e.id);
      if (posted === undefined) continue;
      const n = Math.min(e.len, posted.len);
      const bytes = this.memory.slice(posted.addr, n)!.slice();
      const header = decodeNetHeader(bytes, this.headerLength) ?? ZERO_HEADER;
      out.push({
        header,
        frame: bytes.subarray(Math.min(n, this.headerLength)),
        usedLength: e.len,
        head: e.id,
      });
    }
    return out;
  }
  /**
   * With MRG_RXBUF: packets reassembled from their buffers (the first holds the header,
   * num_buffers says how many follow), as Linux's receive_mergeable does.
   */
  reapRxMerged(): ReceivedPacket[] {
    const out: ReceivedPacket[] = [];
    const used = this.takeUsed(this.rxDriver);
    for (let i = 0; i < used.length;) {
      const first = used[i]!;
      const posted = this.rxPosted.get(first.id);
      this.rxPosted.delete(first.id);
      if (posted === undefined) {
        i++;
        continue;
      }
      const head = this.memory.slice(posted.addr, Math.min(first.len, posted.len))!.slice();
      const header = decodeNetHeader(head, this.headerLength);
      const count = Math.max(1, header?.numBuffers ?? 1);
      const parts = [head.subarray(Math.min(head.length, this.headerLength))];
      let total = first.len;
      for (let k = 1; k < count && i + k < used.length; k++) {
        const e = used[i + k]!;
        const p = this.rxPosted.get(e.id);
        this.rxPosted.delete(e.id);
        if (p === undefined) continue;
        parts.push(this.memory.slice(p.addr, Math.min(e.len, p.len))!.slice());
        total += e.len;
      }
      const frame = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        frame.set(p, at);
        at += p.length;
      }
      out.push({
        header: header ?? ZERO_HEADER,
        frame,
        usedLength: total,
        head: first.id,
      });
      i += count;
    }
    return out;
  }

  /** Linux's kick decision for the TX / RX queue (EVENT_IDX or NO_NOTIFY). */
  kickTx(): boolean {
    return this.txDriver.kickPrepare().need;
  }
  kickRx(): boolean {
    return this.rxDriver.kickPrepare().need;
  }

  // Linux's loop (the simulator's guest): needs `attach`'s slabs, random source and probe.

  private loop(): { random: NetGuestRandom; rxSlabs: BufferSlabs; txSlabs: BufferSlabs } {
    if (this.random === undefined || this.rxSlabs === undefined || this.txSlabs === undefined)
      throw new Error("NetGuest: refillRx/xmit need a driver made with NetGuest.attach");
    return { random: this.random, rxSlabs: this.rxSlabs, txSlabs: this.txSlabs };
  }

  /** Publishes queue `q` and kicks when kick_prepare says so; returns whether it kicked. */
  private publishKick(q: number): boolean {
    const d = q === RX_QUEUE ? this.rxDriver : this.txDriver;
    d.publish();
    const k = d.kickPrepare();
    this.probe.published(q, k);
    return k.need;
  }

  /** try_fill_recv: keeps the RX ring full of buffers of the shapes virtio_net posts. */
  refillRx(): void {
    const { random: r, rxSlabs } = this.loop();
    const rx = this.rxDriver;
    let added = 0;
    while (rx.numFree > 0) {
      let segs: { len: number; write: boolean }[];
      if (this.mrgRxbuf) {
        // Mergeable buffers: one descriptor each, sized by the driver's EWMA (here random).
        segs = [{ len: r.range(128, 1536), write: true }];
      } else if (r.chance(0.5)) {
        segs = [{ len: HDR + MAX_FRAME, write: true }]; // small buffers: header and data together
      } else if (rx.numFree >= 2) {
        segs = [
          { len: this.headerLength, write: true },
          { len: MAX_FRAME, write: true },
        ];
      } else break;
      const head = rxSlabs.add(rx, segs, false, 0);
      if (head === NO_ROOM) break;
      this.probe.rxPosted(head);
      added++;
    }
    if (added > 0) this.publishKick(RX_QUEUE);
  }

  /** start_xmit for up to `n` frames from `source` (after reclaiming finished ones, as virtio_net does). */
  xmit(n: number, source: NetTxSource): void {
    const { random: r, txSlabs } = this.loop();
    const tx = this.txDriver;
    this.reclaimTx();
    let sent = 0;
    for (let i = 0; i < n; i++) {
      const seq = this.seq;
      const len = source.length(seq);
      if (len === null) break;
      const split = tx.numFree >= 3 && r.chance(0.5);
      const segs = split
        ? [
            { len: this.headerLength, write: false },
            { len: Math.min(len, 14 + r.range(0, 200)), write: false },
          ]
        : [{ len: this.headerLength + len, write: false }];
      if (split && segs[1]!.len < len) segs.push({ len: len - segs[1]!.len, write: false });
      const head = txSlabs.add(tx, segs, false, seq);
      if (head === NO_ROOM) break;
      this.seq++;
      const buf = tx.inFlightAt(head)!;
      const frame = source.frame(seq, len);
      const packet = new Uint8Array(this.headerLength + len); // header all zero: no offloads
      packet.set(frame, this.headerLength);
      let off = 0;
      for (const s of buf.segments) {
        this.memory.slice(s.addr, s.len, true)!.set(packet.subarray(off, off + s.len));
        off += s.len;
      }
      this.probe.txQueued(head, seq, frame, segs.length);
      sent++;
    }
    if (sent > 0) this.publishKick(TX_QUEUE);
  }

  /** free_old_xmit: reclaims finished TX buffers. */
  reclaimTx(): void {
    for (;;) {
      const g = this.txDriver.getBuf();
      if (g.kind === "none") return;
      if (g.kind === "bad") {
        this.probe.badUsed(TX_QUEUE, g.id, g.reason);
        return;
      }
      this.probe.reclaimed(TX_QUEUE, g.buf, g.len);
    }
  }

  /** virtnet_receive: reads what RX delivered (MRG_RXBUF packets joined), then refills. */
  receive(): void {
    const rx = this.rxDriver;
    const hdr = this.headerLength;
    for (;;) {
      const g = rx.getBuf();
      if (g.kind === "none") break;
      if (g.kind === "bad") {
        this.probe.badUsed(RX_QUEUE, g.id, g.reason);
        break;
      }
      this.probe.reclaimed(RX_QUEUE, g.buf, g.len);
      if (g.len === 0) continue; // a broken chain given back empty (hostile guests only)
      const packet = this.gather(g.buf.segments, g.len);
      const parts: Uint8Array[] = [packet];
      const numBuffers = hdr === 12 ? packet[10]! | (packet[11]! << 8) : 1;
      this.probe.rxHeader(packet);
      if (this.mrgRxbuf) {
        for (let b = 1; b < numBuffers; b++) {
          const more = rx.getBuf();
          if (more.kind !== "buf") {
            this.probe.rxBroken(`header says ${numBuffers} buffers, only ${b} were used`);
            break;
          }
          this.probe.reclaimed(RX_QUEUE, more.buf, more.len);
          parts.push(this.gather(more.buf.segments, more.len));
        }
      } else if (numBuffers !== 1) {
        this.probe.rxBroken(`num_buffers ${numBuffers} without MRG_RXBUF`);
      }
      let total = 0;
      for (const p of parts) total += p.length;
      const whole = new Uint8Array(total);
      let off = 0;
      for (const p of parts) {
        whole.set(p, off);
        off += p.length;
      }
      this.probe.delivered(whole.subarray(hdr));
    }
    this.refillRx();
  }

  private gather(segs: readonly { addr: number; len: number }[], len: number): Uint8Array {
    const out = new Uint8Array(len);
    let off = 0;
    for (const s of segs) {
      if (off >= len) break;
      const n = Math.min(s.len, len - off);
      out.set(this.memory.slice(s.addr, n)!, off);
      off += n;
    }
    return out;
  }

  /** The interrupt handlers (NAPI: disable callbacks, reap, re-enable, poll again if more came). */
  handleInterrupts(): void {
    if (this.irq[0]) {
      this.irq[0] = false;
      for (let round = 0; round < 1000; round++) {
        this.rxDriver.disableCb();
        this.receive();
        if (!this.rxDriver.poll(this.rxDriver.enableCbPrepare())) break;
      }
    }
    if (this.irq[1]) {
      this.irq[1] = false;
      for (let round = 0; round < 1000; round++) {
        this.txDriver.disableCb();
        this.reclaimTx();
        if (!this.txDriver.poll(this.txDriver.enableCbPrepare())) break;
      }
    }
  }
}
