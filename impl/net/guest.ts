/**
 * A virtio-net guest driver model: what Linux's virtio_net does to a device, in a few
 * calls. It negotiates features, lays out both queues in guest memory, sends frames
 * through the TX queue (virtio_net_hdr + frame), posts RX buffers and reads back what the
 * device wrote. Tests, properties, the benchmark and the simulator drive a `NetDevice`
 * with it; hostile guests use `txDriver` / `rxDriver` (impl/queue SplitDriver) directly.
 */
import { GuestMemory } from "../memory/guest-memory.ts";
import { SplitDriver, type DriverBuffer, type UsedEntry } from "../queue/split-driver.ts";
import { splitLayoutAt, splitLayoutEnd } from "../../wire/split.ts";
import type { NetDevice } from "./device.ts";
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

export class NetGuest {
  readonly memory: GuestMemory;
  readonly txDriver: SplitDriver;
  readonly rxDriver: SplitDriver;
  readonly queueSize: number;
  readonly bufferSize: number;
  readonly headerLength: 10 | 12;
  readonly eventIdx: boolean;
  /** Interrupts the device raised, per queue. */
  readonly interrupts: [number, number] = [0, 0];
  private readonly txBase: number;
  private readonly rxBase: number;
  private txSlot = 0;
  private rxSlot = 0;
  /** RX head → the slot address it was posted with. */
  private readonly rxPosted = new Map<number, { addr: number; len: number }>();

  private constructor(
    readonly device: NetDevice,
    memory: GuestMemory,
    queueSize: number,
    bufferSize: number,
    txBase: number,
    rxBase: number,
  ) {
    this.memory = memory;
    this.queueSize = queueSize;
    this.bufferSize = bufferSize;
    this.txBase = txBase;
    this.rxBase = rxBase;
    this.eventIdx = (device.ackedFeatures & (1n << BigInt(F.RING_EVENT_IDX))) !== 0n;
    const eventIdx = this.eventIdx;
    this.rxDriver = SplitDriver.at(memory, queueSize, 0x1000, { eventIdx });
    const rxEnd = splitLayoutEnd(this.rxDriver.layout, queueSize);
    this.txDriver = SplitDriver.at(memory, queueSize, Math.ceil(rxEnd / 0x1000) * 0x1000, { eventIdx });
    this.headerLength = device.headerLength;
  }

  /** Bytes of guest memory `create` needs for these options. */
  static memoryBytes(queueSize: number, bufferSize: number): number {
    const rings =
      2 * (Math.ceil(splitLayoutEnd(splitLayoutAt(0x1000, queueSize), queueSize) / 0x1000) * 0x1000);
    return 0x1000 + rings + 2 * queueSize * bufferSize + 0x1000;
  }

  /** Negotiates, configures both queues and activates the device; throws on a set-up error. */
  static create(device: NetDevice, opts: NetGuestOptions = {}): NetGuest {
    const queueSize = opts.queueSize ?? 256;
    const bufferSize = opts.bufferSize ?? 2048;
    const bytes = NetGuest.memoryBytes(queueSize, bufferSize);
    const memory = opts.memory ?? GuestMemory.of([{ base: 0, bytes: new ArrayBuffer(bytes) }]);
    const acked = device.ackFeatures(opts.features ?? device.offeredFeatures);
    if (!acked.ok) throw new Error(`feature negotiation failed: ${acked.error._tag}`);
    const rxLayout = splitLayoutAt(0x1000, queueSize);
    const txBaseQ = Math.ceil(splitLayoutEnd(rxLayout, queueSize) / 0x1000) * 0x1000;
    const txLayout = splitLayoutAt(txBaseQ, queueSize);
    const buffers = Math.ceil(splitLayoutEnd(txLayout, queueSize) / 0x1000) * 0x1000;
    const g = new NetGuest(device, memory, queueSize, bufferSize, buffers, buffers + queueSize * bufferSize);
    for (const [q, d] of [
      [RX_QUEUE, g.rxDriver],
      [TX_QUEUE, g.txDriver],
    ] as const) {
      device.queues[q].configure({
        size: queueSize,
        descTable: d.layout.descTable,
        availRing: d.layout.availRing,
        usedRing: d.layout.usedRing,
        ready: true,
      });
    }
    const r = device.activate(memory, (q) => {
      g.interrupts[q]!++;
    });
    if (!r.ok)
      throw new Error(
        `activation failed: ${JSON.stringify(r.error, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))}`,
      );
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
   * avail.idx; returns the head, or undefined when the ring is full.
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
    const cuts = [...new Set(splits.filter((s) => s > 0 && s < total))].sort((a, b) => a - b);
    const bufs: DriverBuffer[] = [];
    let at = 0;
    for (const c of [...cuts, total]) {
      bufs.push({ addr: addr + at, len: c - at });
      at = c;
    }
    return this.txDriver.addChain(bufs);
  }

  /** Posts `count` RX buffers of `len` bytes each (default: the slot size); returns how many were posted. */
  postRx(count: number, len = this.bufferSize, splits: readonly number[] = []): number {
    let n = 0;
    for (; n < count; n++) {
      const addr = this.rxSlotAddr(this.rxSlot);
      const cuts = [...new Set(splits.filter((s) => s > 0 && s < len))].sort((a, b) => a - b);
      const bufs: DriverBuffer[] = [];
      let at = 0;
      for (const c of [...cuts, len]) {
        bufs.push({ addr: addr + at, len: c - at, write: true });
        at = c;
      }
      const head = this.rxDriver.addChain(bufs);
      if (head === undefined) break;
      this.rxSlot++;
      this.rxPosted.set(head, { addr, len });
    }
    return n;
  }

  /** TX chains the device completed. */
  reapTx(): UsedEntry[] {
    return this.txDriver.reapUsed();
  }

  /** Packets the device delivered (one per used RX chain; with MRG_RXBUF, per buffer). */
  reapRx(): ReceivedPacket[] {
    const out: ReceivedPacket[] = [];
    for (const e of this.rxDriver.reapUsed()) {
      const posted = this.rxPosted.get(e.id);
      this.rxPosted.delete(e.id);
      if (posted === undefined) continue;
      const n = Math.min(e.len, posted.len);
      const bytes = this.memory.slice(posted.addr, n)!.slice();
      const header = decodeNetHeader(bytes, this.headerLength) ?? {
        flags: 0,
        gsoType: 0,
        hdrLen: 0,
        gsoSize: 0,
        csumStart: 0,
        csumOffset: 0,
        numBuffers: 0,
      };
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
    const used = this.rxDriver.reapUsed();
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
        header: header ?? {
          flags: 0,
          gsoType: 0,
          hdrLen: 0,
          gsoSize: 0,
          csumStart: 0,
          csumOffset: 0,
          numBuffers: 0,
        },
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
}
