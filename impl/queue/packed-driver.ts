/**
 * The driver side of a packed virtqueue (VIRTIO 1.2 §2.8), doing what Linux's virtio_ring.c
 * packed path does: a free buffer-id list, a count of free ring slots, the driver's ring
 * wrap counter; each chain's descriptors written with the id in every one and the first
 * descriptor's flags last [PVQ-DRIVER-AVAIL]; used descriptors found by their AVAIL/USED bits
 * and skipped by the slot count remembered for their id [PVQ-DRIVER-USED]; the kick decision
 * of virtqueue_kick_prepare_packed and the used-notification controls of
 * virtqueue_enable_cb_prepare_packed / virtqueue_disable_cb_packed [PVQ-DRIVER-KICK].
 *
 * It plays a well-behaved guest: a write outside guest memory is a set-up bug and throws,
 * and so does a used descriptor that names no buffer in flight (a device bug the caller is
 * testing for). Hostile guests are modelled with the raw `writeSlot` / `set*` methods.
 */
import type { GuestMemory } from "../memory/guest-memory.ts";
import type { DriverBuffer, QueueLayout } from "./driver.ts";
import { eventIndex } from "../../spec/packed-queue.ts";
import { vringNeedEvent } from "./driver.ts";

export type { DriverBuffer, QueueLayout } from "./driver.ts";
import {
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  RING_EVENT_WRAP,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_USED,
} from "../../wire/packed.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";

/** A completed buffer: its id and the len the device wrote (`skipped`: completed by a later in-order used descriptor). */
export interface PackedUsedEntry {
  readonly id: number;
  readonly len: number;
  readonly skipped: boolean;
}

export interface PackedAddOptions {
  /** Put the buffers in an indirect table at this guest address (one ring slot). */
  readonly indirectTable?: number | bigint;
  /** Write the first descriptor's flags now (default true); otherwise `publish()` does. */
  readonly publish?: boolean;
}

/** A raw packed descriptor (PVQ-DESC-LAYOUT). */
export interface PackedDescriptor {
  readonly addr: number | bigint;
  readonly len: number;
  readonly id: number;
  readonly flags: number;
}

/** The ring, then the Driver Area, then the Device Area, each aligned as §2.8.10.1 asks. */
export const packedLayoutAt = (base: number, size: number): QueueLayout => {
  const descTable = Math.ceil(base / 16) * 16;
  const availRing = descTable + 16 * size;
  return { descTable, availRing, usedRing: availRing + 4 };
};

/** The AVAIL/USED bits a driver gives an available descriptor with wrap counter `wrap` (§2.8.1). */
export const availFlags = (wrap: boolean): number => (wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED);

interface Outstanding {
  readonly slots: number;
  readonly writable: number;
}

export class PackedDriver {
  readonly memory: GuestMemory;
  readonly size: number;
  readonly layout: QueueLayout;
  /** VIRTIO_F_IN_ORDER: a used descriptor also completes every older buffer. */
  readonly inOrder: boolean;
  /** Where the next chain goes, and the Driver Ring Wrap Counter. */
  nextAvail = 0;
  availWrap = true;
  /** Where the next used descriptor is expected, and the driver's used wrap counter. */
  usedIdx = 0;
  usedWrap = true;
  /** Free ring slots. */
  numFree: number;
  /** Slots made available since the last kick decision. */
  private numAdded = 0;
  private readonly freeIds: number[] = [];
  private readonly outstanding = new Map<number, Outstanding>();
  /** Ids in the order their chains were made available (for IN_ORDER). */
  private readonly order: number[] = [];
  /** First-descriptor flags not yet written (`publish: false`): [slot, flags]. */
  private readonly unpublished: [number, number][] = [];

  constructor(
    memory: GuestMemory,
    size: number,
    layout: QueueLayout,
    opts: { readonly inOrder?: boolean } = {},
  ) {
    this.memory = memory;
    this.size = size;
    this.layout = layout;
    this.inOrder = opts.inOrder === true;
    this.numFree = size;
    for (let i = size - 1; i >= 0; i--) this.freeIds.push(i);
    // The descriptor ring is zero-initialized (§2.8.13); so are both event structures.
    const s = memory.slice(layout.descTable, 16 * size, true);
    if (s === undefined)
      throw new Error(`packed driver: ring [${layout.descTable}, +${16 * size}) is outside guest memory`);
    s.fill(0);
    this.setDriverEvent(0, RING_EVENT_FLAGS_ENABLE);
    this.must(memory.writeU32(layout.usedRing, 0), layout.usedRing);
  }

  /** A queue laid out by `packedLayoutAt(base, size)`. */
  static at(
    memory: GuestMemory,
    size: number,
    base: number,
    opts: { readonly inOrder?: boolean } = {},
  ): PackedDriver {
    return new PackedDriver(memory, size, packedLayoutAt(base, size), opts);
  }

  /** Buffer ids in flight (made available, not yet seen used). */
  get inFlight(): number {
    return this.outstanding.size;
  }

  // ---- raw access (also how a hostile guest is modelled)

  writeSlot(slot: number, d: PackedDescriptor, table: number | bigint = this.layout.descTable): void {
    const at = Number(BigInt(table) + BigInt(slot) * 16n);
    this.must(this.memory.writeU64(at, BigInt(d.addr)), at);
    this.must(this.memory.writeU32(at + 8, d.len >>> 0), at + 8);
    this.must(this.memory.writeU16(at + 12, d.id & 0xffff), at + 12);
    this.must(this.memory.writeU16(at + 14, d.flags & 0xffff), at + 14);
  }

  /** addr, len and id of a slot, leaving its flags. */
  private writeBody(slot: number, addr: number | bigint, len: number, id: number): void {
    const at = this.layout.descTable + 16 * slot;
    this.must(this.memory.writeU64(at, BigInt(addr)), at);
    this.must(this.memory.writeU32(at + 8, len >>> 0), at + 8);
    this.must(this.memory.writeU16(at + 12, id & 0xffff), at + 12);
  }

  readSlot(slot: number): { addr: bigint; len: number; id: number; flags: number } {
    const at = this.layout.descTable + 16 * slot;
    const addr = this.memory.readU64(at);
    if (addr === undefined) throw new Error(`packed driver: slot ${slot} is outside guest memory`);
    return {
      addr,
      len: this.memory.readU32(at + 8),
      id: this.memory.readU16(at + 12),
      flags: this.memory.readU16(at + 14),
    };
  }

  /** Writes the Driver Area (what the device reads before a used notification). */
  setDriverEvent(offWrap: number, flags: number): void {
    const at = this.layout.availRing;
    this.must(this.memory.writeU16(at, offWrap & 0xffff), at);
    this.must(this.memory.writeU16(at + 2, flags & 0xffff), at + 2);
  }
  driverEvent(): { offWrap: number; flags: number } {
    return {
      offWrap: this.memory.readU16(this.layout.availRing),
      flags: this.memory.readU16(this.layout.availRing + 2),
    };
  }
  /** The Device Area as the device last wrote it. */
  deviceEvent(): { offWrap: number; flags: number } {
    return {
      offWrap: this.memory.readU16(this.layout.usedRing),
      flags: this.memory.readU16(this.layout.usedRing + 2),
    };
  }

  // ---- a well-behaved driver

  /**
   * Makes a chain of `buffers` available (readable ones first, §2.8.17): takes a free id and
   * as many ring slots as descriptors (one with `indirectTable`), writes every descriptor
   * with the id, the flags of all but the first, then the first's flags (PVQ-DRIVER-AVAIL).
   * Returns the buffer id, or undefined when no id or too few slots are free.
   */
  addChain(buffers: readonly DriverBuffer[], opts: PackedAddOptions = {}): number | undefined {
    const indirect = opts.indirectTable !== undefined;
    const slots = indirect ? 1 : buffers.length;
    if (buffers.length === 0 || (indirect && buffers.length > 0xffff) || slots > this.numFree)
      return undefined;
    const id = this.freeIds.pop();
    if (id === undefined) return undefined;
    const head = this.nextAvail;
    let headFlags = 0;
    const writable = buffers.reduce((a, b) => a + (b.write === true ? b.len : 0), 0);
    if (opts.indirectTable !== undefined) {
      const table = opts.indirectTable;
      buffers.forEach((b, i) =>
        this.writeSlot(
          i,
          { addr: b.addr, len: b.len, id: 0, flags: b.write === true ? VIRTQ_DESC_F_WRITE : 0 },
          table,
        ),
      );
      headFlags = VIRTQ_DESC_F_INDIRECT | availFlags(this.availWrap);
      this.writeBody(head, table, 16 * buffers.length, id);
      this.step();
    } else {
      buffers.forEach((b, i) => {
        const flags =
          (b.write === true ? VIRTQ_DESC_F_WRITE : 0) |
          (i + 1 < buffers.length ? VIRTQ_DESC_F_NEXT : 0) |
          availFlags(this.availWrap);
        // The first descriptor's flags come last: until then it keeps what it had (zero, or a
        // used descriptor of the previous lap), which is not available.
        if (i === 0) {
          this.writeBody(this.nextAvail, b.addr, b.len, id);
          headFlags = flags;
        } else this.writeSlot(this.nextAvail, { addr: b.addr, len: b.len, id, flags });
        this.step();
      });
    }
    this.numFree -= slots;
    this.numAdded += slots;
    this.outstanding.set(id, { slots, writable });
    this.order.push(id);
    if (opts.publish === false) this.unpublished.push([head, headFlags]);
    else this.writeFlags(head, headFlags);
    return id;
  }

  /** Writes the first-descriptor flags held back by `publish: false`, the earliest chain last. */
  publish(): void {
    for (let i = this.unpublished.length - 1; i >= 0; i--) {
      const [slot, flags] = this.unpublished[i]!;
      this.writeFlags(slot, flags);
    }
    this.unpublished.length = 0;
  }

  private step(): void {
    if (++this.nextAvail === this.size) {
      this.nextAvail = 0;
      this.availWrap = !this.availWrap;
    }
  }

  private writeFlags(slot: number, flags: number): void {
    const at = this.layout.descTable + 16 * slot + 14;
    this.must(this.memory.writeU16(at, flags), at);
  }

  /** Whether the descriptor at the driver's used position is used (PVQ-DRIVER-USED). */
  hasUsed(): boolean {
    const flags = this.memory.readU16(this.layout.descTable + 16 * this.usedIdx + 14);
    const w = this.usedWrap;
    return ((flags & VIRTQ_DESC_F_AVAIL) !== 0) === w && ((flags & VIRTQ_DESC_F_USED) !== 0) === w;
  }

  /** Every used buffer the device has published since the last reap; frees their ids and slots. */
  reapUsed(): PackedUsedEntry[] {
    const out: PackedUsedEntry[] = [];
    while (this.hasUsed()) {
      const d = this.readSlot(this.usedIdx);
      if (!this.outstanding.has(d.id)) {
        throw new Error(
          `packed driver: used descriptor at slot ${this.usedIdx} names buffer ${d.id}, not in flight`,
        );
      }
      if (this.inOrder) {
        for (const older of this.order.slice(0, this.order.indexOf(d.id))) {
          out.push({ id: older, len: this.outstanding.get(older)!.writable, skipped: true });
          this.complete(older);
        }
      }
      out.push({ id: d.id, len: d.len, skipped: false });
      this.complete(d.id);
    }
    return out;
  }

  private complete(id: number): void {
    const o = this.outstanding.get(id)!;
    this.outstanding.delete(id);
    this.order.splice(this.order.indexOf(id), 1);
    this.freeIds.push(id);
    this.numFree += o.slots;
    this.usedIdx += o.slots;
    while (this.usedIdx >= this.size) {
      this.usedIdx -= this.size;
      this.usedWrap = !this.usedWrap;
    }
  }

  /**
   * Linux virtqueue_kick_prepare_packed: must the driver notify the device of the slots made
   * available since the last call? Device Area flags other than DESC: unless DISABLE; DESC:
   * vring_need_event over the event offset, moved back a lap when its wrap bit is not the
   * driver's (PVQ-DRIVER-KICK).
   */
  kickPrepare(): boolean {
    const newIdx = this.nextAvail;
    const old = (newIdx - this.numAdded) & 0xffff;
    this.numAdded = 0;
    const { offWrap, flags } = this.deviceEvent();
    if (flags !== RING_EVENT_FLAGS_DESC) return flags !== RING_EVENT_FLAGS_DISABLE;
    return vringNeedEvent(eventIndex(offWrap, this.availWrap, this.size), newIdx, old);
  }

  /** virtqueue_disable_cb_packed: no used notifications. */
  disableInterrupts(): void {
    this.setDriverEvent(this.driverEvent().offWrap, RING_EVENT_FLAGS_DISABLE);
  }

  /**
   * virtqueue_enable_cb_prepare_packed: used notifications again; with EVENT_IDX for the next
   * used descriptor (off_wrap = the driver's used position, then flags = DESC). True when a
   * used descriptor is already waiting.
   */
  enableInterrupts(eventIdx: boolean): boolean {
    if (eventIdx)
      this.setDriverEvent(this.usedIdx | (this.usedWrap ? RING_EVENT_WRAP : 0), RING_EVENT_FLAGS_DESC);
    else this.setDriverEvent(this.driverEvent().offWrap, RING_EVENT_FLAGS_ENABLE);
    return this.hasUsed();
  }

  private must(ok: boolean, at: number): void {
    if (!ok) throw new Error(`packed driver: write at ${at} is outside guest memory`);
  }
}
