/**
 * The driver side of a split virtqueue (what rust-vmm's `MockSplitQueue` and Linux's
 * virtio_ring do): lays out the descriptor table and the rings in guest memory, adds chains
 * (directly or through an indirect table), publishes avail.idx, reaps used entries, and
 * reads or writes the EVENT_IDX fields. Tests, properties and the simulator use it instead
 * of poking ring bytes by hand.
 *
 * It plays a well-behaved guest, so a write outside guest memory is a bug in the caller's
 * set-up and throws; hostile guests are modelled by writing raw values with the
 * `write*`/`set*` methods.
 */
import type { GuestMemory } from "../memory/guest-memory.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";

/** One buffer of a chain, as the driver hands it to the device. */
export interface DriverBuffer {
  readonly addr: number | bigint;
  readonly len: number;
  /** Device-writable (VIRTQ_DESC_F_WRITE). */
  readonly write?: boolean;
}

/** Where the three parts of a queue lie in guest memory. */
export interface QueueLayout {
  readonly descTable: number;
  readonly availRing: number;
  readonly usedRing: number;
}

export interface UsedEntry {
  readonly id: number;
  readonly len: number;
}

export const descTableBytes = (size: number): number => 16 * size;
export const availRingBytes = (size: number): number => 6 + 2 * size;
export const usedRingBytes = (size: number): number => 6 + 8 * size;

/** The layout Linux's vring_init uses without padding to a page: table, avail, then used 4-aligned. */
export const layoutAt = (base: number, size: number): QueueLayout => {
  const descTable = Math.ceil(base / 16) * 16;
  const availRing = descTable + descTableBytes(size);
  const usedRing = Math.ceil((availRing + availRingBytes(size)) / 4) * 4;
  return { descTable, availRing, usedRing };
};

/** The first byte after a queue laid out by `layoutAt(base, size)`. */
export const layoutEnd = (layout: QueueLayout, size: number): number => layout.usedRing + usedRingBytes(size);

/** Linux `vring_need_event`: has the index moved from `old` to `new` past `event`? */
export const vringNeedEvent = (event: number, newIdx: number, old: number): boolean =>
  ((newIdx - event - 1) & 0xffff) < ((newIdx - old) & 0xffff);

export interface AddChainOptions {
  /** Put the buffers in an indirect table at this guest address (any alignment). */
  readonly indirectTable?: number | bigint;
  /** Also publish avail.idx (default true). */
  readonly publish?: boolean;
}

export class QueueDriver {
  readonly memory: GuestMemory;
  readonly size: number;
  readonly layout: QueueLayout;
  /** The avail idx the driver has reached (published or not), a u16. */
  availIdx = 0;
  /** How far the driver has reaped the used ring, a u16. */
  lastUsedIdx = 0;
  /** avail.idx at the last kick decision (`kickPrepare`). */
  private kickedAt = 0;
  private readonly free: number[] = [];
  private readonly owned = new Map<number, readonly number[]>();

  constructor(memory: GuestMemory, size: number, layout: QueueLayout) {
    this.memory = memory;
    this.size = size;
    this.layout = layout;
    for (let i = size - 1; i >= 0; i--) this.free.push(i);
    this.zero(layout.descTable, descTableBytes(size));
    this.zero(layout.availRing, availRingBytes(size));
    this.zero(layout.usedRing, usedRingBytes(size));
  }

  /** A queue laid out by `layoutAt(base, size)`. */
  static at(memory: GuestMemory, size: number, base: number): QueueDriver {
    return new QueueDriver(memory, size, layoutAt(base, size));
  }

  /** Free descriptor-table entries left for `addChain`. */
  get freeDescriptors(): number {
    return this.free.length;
  }

  // ---- raw access (also how a hostile guest is modelled)

  /** Writes descriptor `index` of the table at `table` (default: this queue's table). */
  writeDescriptor(
    index: number,
    d: {
      readonly addr: number | bigint;
      readonly len: number;
      readonly flags: number;
      readonly next: number;
    },
    table: number | bigint = this.layout.descTable,
  ): void {
    const at = Number(BigInt(table) + BigInt(index) * 16n);
    this.must(this.memory.writeU64(at, BigInt(d.addr)), at);
    this.must(this.memory.writeU32(at + 8, d.len >>> 0), at + 8);
    this.must(this.memory.writeU16(at + 12, d.flags & 0xffff), at + 12);
    this.must(this.memory.writeU16(at + 14, d.next & 0xffff), at + 14);
  }

  readDescriptor(
    index: number,
    table: number = this.layout.descTable,
  ): { addr: bigint; len: number; flags: number; next: number } {
    const at = table + index * 16;
    const addr = this.memory.readU64(at);
    if (addr === undefined) throw new Error(`driver: descriptor at ${at} is outside guest memory`);
    return {
      addr,
      len: this.memory.readU32(at + 8),
      flags: this.memory.readU16(at + 12),
      next: this.memory.readU16(at + 14),
    };
  }

  /** Writes avail.ring[slot % size]. */
  writeAvailRing(slot: number, head: number): void {
    const at = this.layout.availRing + 4 + 2 * (slot % this.size);
    this.must(this.memory.writeU16(at, head & 0xffff), at);
  }

  /** Writes avail.idx (and the driver's own idx) to any u16. */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    this.publish();
  }
  readAvailIdx(): number {
    return this.memory.readU16(this.layout.availRing + 2);
  }
  setAvailFlags(flags: number): void {
    this.must(this.memory.writeU16(this.layout.availRing, flags & 0xffff), this.layout.availRing);
  }
  availFlags(): number {
    return this.memory.readU16(this.layout.availRing);
  }
  /** EVENT_IDX: avail.used_event, the used idx after which the driver wants an interrupt. */
  setUsedEvent(v: number): void {
    const at = this.layout.availRing + 4 + 2 * this.size;
    this.must(this.memory.writeU16(at, v & 0xffff), at);
  }
  usedEvent(): number {
    return this.memory.readU16(this.layout.availRing + 4 + 2 * this.size);
  }
  /** EVENT_IDX: used.avail_event, the avail idx after which the device wants a kick. */
  availEvent(): number {
    return this.memory.readU16(this.layout.usedRing + 4 + 8 * this.size);
  }
  usedFlags(): number {
    return this.memory.readU16(this.layout.usedRing);
  }
  usedIdx(): number {
    return this.memory.readU16(this.layout.usedRing + 2);
  }
  /** used.ring[slot % size]. */
  readUsed(slot: number): UsedEntry {
    const at = this.layout.usedRing + 4 + 8 * (slot % this.size);
    return { id: this.memory.readU32(at), len: this.memory.readU32(at + 4) };
  }

  // ---- a well-behaved driver

  /**
   * Adds a chain of `buffers` (readable ones should come first, VIRTIO 1.2 §2.7.4.2): takes
   * free descriptors, links them with NEXT, puts the head in the avail ring and (by default)
   * publishes avail.idx. With `indirectTable`, the buffers go into a table at that address
   * and the queue's table holds one INDIRECT descriptor. Returns the head index, or
   * undefined when too few descriptors are free.
   */
  addChain(buffers: readonly DriverBuffer[], opts: AddChainOptions = {}): number | undefined {
    const indirect = opts.indirectTable !== undefined;
    const need = indirect ? 1 : buffers.length;
    // A well-behaved driver never makes an empty chain, nor an indirect table it cannot
    // describe (CHAIN-INDIRECT-LEN): hostile shapes are written with writeDescriptor.
    if (buffers.length === 0 || (indirect && buffers.length > 0xffff) || this.free.length < need) {
      return undefined;
    }
    const taken: number[] = [];
    for (let i = 0; i < need; i++) taken.push(this.free.pop()!);
    if (opts.indirectTable !== undefined) {
      const table = opts.indirectTable;
      buffers.forEach((b, i) =>
        this.writeDescriptor(
          i,
          {
            addr: b.addr,
            len: b.len,
            flags:
              (b.write === true ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < buffers.length ? VIRTQ_DESC_F_NEXT : 0),
            next: i + 1 < buffers.length ? i + 1 : 0,
          },
          table,
        ),
      );
      this.writeDescriptor(taken[0]!, {
        addr: table,
        len: 16 * buffers.length,
        flags: VIRTQ_DESC_F_INDIRECT,
        next: 0,
      });
    } else {
      buffers.forEach((b, i) =>
        this.writeDescriptor(taken[i]!, {
          addr: b.addr,
          len: b.len,
          flags: (b.write === true ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < need ? VIRTQ_DESC_F_NEXT : 0),
          next: i + 1 < need ? taken[i + 1]! : 0,
        }),
      );
    }
    const head = taken[0]!;
    this.owned.set(head, taken);
    this.pushAvail(head);
    if (opts.publish !== false) this.publish();
    return head;
  }

  /** Puts `head` in the next avail slot without publishing. */
  pushAvail(head: number): void {
    this.writeAvailRing(this.availIdx, head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  /** Writes avail.idx = the driver's idx (VIRTIO 1.2 §2.7.13.3). */
  publish(): void {
    const at = this.layout.availRing + 2;
    this.must(this.memory.writeU16(at, this.availIdx), at);
  }

  /** Used entries published since the last reap; frees the descriptors of chains `addChain` made. */
  reapUsed(): UsedEntry[] {
    const out: UsedEntry[] = [];
    const end = this.usedIdx();
    while (this.lastUsedIdx !== end) {
      const e = this.readUsed(this.lastUsedIdx);
      out.push(e);
      const descs = this.owned.get(e.id);
      if (descs !== undefined) {
        this.owned.delete(e.id);
        for (let i = descs.length - 1; i >= 0; i--) this.free.push(descs[i]!);
      }
      this.lastUsedIdx = (this.lastUsedIdx + 1) & 0xffff;
    }
    return out;
  }

  /**
   * Linux virtqueue_kick_prepare: must the driver notify the device of what it published
   * since the last call? With EVENT_IDX, vring_need_event(avail_event, idx, idx at last kick);
   * without, unless the device set VRING_USED_F_NO_NOTIFY.
   */
  kickPrepare(eventIdx: boolean): boolean {
    const old = this.kickedAt;
    const now = this.availIdx;
    this.kickedAt = now;
    if (eventIdx) return vringNeedEvent(this.availEvent(), now, old);
    return (this.usedFlags() & 1) === 0;
  }

  private zero(at: number, len: number): void {
    const s = this.memory.slice(at, len, true);
    if (s === undefined) throw new Error(`driver: ring [${at}, +${len}) is outside guest memory`);
    s.fill(0);
  }

  private must(ok: boolean, at: number): void {
    if (!ok) throw new Error(`driver: write at ${at} is outside guest memory`);
  }
}
