/**
 * Faults a hostile guest injects, shared by the scenarios that take --faults: descriptor,
 * ring, index and notification-field corruption on a split queue (QueueFaults), broken
 * virtio-net headers and descriptors (netFaults), and bogus vsock packets (vsockFault).
 * Each is logged through ctx.faults with what the device did about it.
 *
 * Corrupted addresses point outside memory, across a region boundary, above 2^53, or into
 * a scratch area no buffer uses, so that a device following them faithfully cannot damage
 * the well-formed traffic the run checks.
 */
import type { FaultRecord, SimContext } from "../engine.ts";
import type { GuestBuffer } from "../../impl/queue/guest-queue.ts";
import { availFlags, type PackedDriver } from "../../impl/queue/packed-driver.ts";
import type { SplitDriver } from "../../impl/queue/split-driver.ts";
import {
  DESC_ADDR,
  DESC_FLAGS,
  DESC_LEN,
  DESC_NEXT,
  DESC_SIZE,
  PACKED_DESC_FLAGS,
  PACKED_DESC_ID,
  PACKED_DESC_SIZE,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  packedDescOffset,
} from "../../wire/index.ts";
import type { NetRig } from "./net-rig.ts";
import type { QueueRig } from "./queue-rig.ts";
// Types only: the queue scenario loads this file and must not load the vsock modules with it.
import type { VsockCreditRig } from "./vsock-credit.ts";
import type { VsockHeader } from "../../spec/vsock.ts";
import { VSOCK_HOST_CID, VSOCK_OP_CREDIT_UPDATE, VSOCK_OP_RW, VSOCK_TYPE_STREAM } from "../../wire/vsock.ts";

/** A bad guest address: one of the shapes that must be refused, or the scratch area. */
const badAddr = (
  ctx: SimContext,
  scratch: { addr: number; len: number },
  len: number,
  refusedOnly = false,
): bigint => {
  switch (ctx.rng.int(refusedOnly ? 4 : 5)) {
    case 0:
      return 0xffff_ffff_ffff_f000n + BigInt(ctx.rng.int(0x1000)); // end overflows 2^64
    case 1:
      return (1n << 53n) + BigInt(ctx.rng.u32()); // above every region
    case 2:
      return 0x80_0000n + BigInt(ctx.rng.u32() & 0xffff); // a hole between regions
    case 3:
      return BigInt(scratch.addr + scratch.len - 8); // straddles the region end
    default:
      return BigInt(scratch.addr + ctx.rng.int(Math.max(1, scratch.len - Math.min(len, scratch.len)))); // harmless scratch
  }
};

/** Queue-level faults: the corrupted heads, and undo actions for refused ones. */
export class QueueFaults {
  private readonly rig: QueueRig;
  private readonly ctx: SimContext;
  /** Head → the fault that broke its chain. */
  private readonly broken = new Map<number, FaultRecord>();
  /** Faults that make the queue refuse pops, with how to repair them. */
  private readonly blocking: {
    fault: FaultRecord;
    repair: () => void;
    seen: string | null;
    /** Repaired after the next device run even when the device did not reach it. */
    now?: boolean;
  }[] = [];

  constructor(ctx: SimContext, rig: QueueRig) {
    this.ctx = ctx;
    this.rig = rig;
    rig.hooks = {
      onPopError: (tag) => {
        const b = this.blocking[0];
        if (b === undefined) return false;
        b.seen ??= tag;
        return true;
      },
      isCorrupted: (_buf: GuestBuffer | undefined, head: number) => this.broken.has(head),
      onReaped: (head) => {
        this.broken.delete(head);
      },
      onEmpty: (nextAvail) => {
        for (const n of this.notAvailable) if (n.slot === nextAvail) n.read = true;
      },
      onCorruptedServed: (head, outcome) => {
        const f = this.broken.get(head);
        if (f !== undefined) ctx.faults.handled(f, outcome);
      },
    };
  }

  /** Corrupts one descriptor of the chain just added (before it is published). */
  corruptChain(head: number): void {
    if (this.rig.split !== null) this.corruptSplitChain(this.rig.split, head);
    else this.corruptPackedChain(this.rig.packed!, head);
  }

  /**
   * The descriptor a fault hits: the head, or one further down the chain (its indirect table
   * entry, or on the split ring by the chain's next fields, on the packed ring the next slots).
   */
  private pickDescriptor(buf: GuestBuffer, step: (index: number) => number, first: number): number {
    if (buf.indirect) return buf.table + DESC_SIZE * this.ctx.rng.int(buf.segments.length);
    let at = first;
    for (let k = this.ctx.rng.int(buf.ringDescs); k > 0; k--) at = step(at);
    return at;
  }

  /** addr / len lies, the same on both rings (the u64 at +0, the u32 at +8). */
  private corruptAddrLen(kind: "desc-addr" | "desc-len", d: number): string {
    const ram = this.rig.ram;
    if (kind === "desc-addr") {
      const a = badAddr(this.ctx, this.rig.scratch, ram.u32(d + DESC_LEN));
      ram.setU64(d + DESC_ADDR, a);
      return `addr = 0x${a.toString(16)}`;
    }
    const len = this.ctx.rng.pick([0, 0xffff_ffff, 0x8000_0000 + this.ctx.rng.int(1000), this.ctx.rng.u32()]);
    // A huge len on a harmless address would still reach other buffers; move it too.
    ram.setU32(d + DESC_LEN, len);
    if (len > 64) ram.setU64(d + DESC_ADDR, badAddr(this.ctx, this.rig.scratch, len));
    return `len = ${len}`;
  }

  private corruptSplitChain(drv: SplitDriver, head: number): void {
    const ctx = this.ctx;
    const rig = this.rig;
    const ram = rig.ram;
    const buf = drv.inFlightAt(head)!;
    const d = this.pickDescriptor(buf, (at) => drv.descAddr(ram.u16(at + DESC_NEXT)), drv.descAddr(head));
    const index = buf.indirect ? (d - buf.table) / DESC_SIZE : (d - rig.layout.descTable) / DESC_SIZE;
    const saved = ram.bytes(d, DESC_SIZE).slice();
    const kind = ctx.rng.pick(["desc-addr", "desc-len", "desc-flags", "desc-next", "desc-indirect"] as const);
    let detail = "";
    switch (kind) {
      case "desc-addr":
      case "desc-len":
        detail = this.corruptAddrLen(kind, d);
        break;
      case "desc-flags": {
        // Toggle WRITE (the device then writes into or reads from the chain's own buffer).
        const f = ram.u16(d + DESC_FLAGS) ^ VIRTQ_DESC_F_WRITE;
        ram.setU16(d + DESC_FLAGS, f);
        detail = `flags = ${f}`;
        break;
      }
      case "desc-next": {
        // NEXT to an index out of the table, or to itself (a loop the ttl must end).
        const size = buf.indirect ? buf.segments.length : rig.size;
        const next = ctx.rng.chance(0.5) ? size + ctx.rng.int(0x10000 - size) : index;
        ram.setU16(d + DESC_FLAGS, ram.u16(d + DESC_FLAGS) | VIRTQ_DESC_F_NEXT);
        ram.setU16(d + DESC_NEXT, next);
        detail = `next = ${next}${next === index ? " (itself)" : ""}`;
        break;
      }
      case "desc-indirect":
        detail = this.corruptIndirect(d, DESC_FLAGS, buf.indirect);
        break;
    }
    const f = ctx.faults.inject(
      kind,
      `queue head ${head}, descriptor ${index}${buf.indirect ? " of its indirect table" : ""}: ${detail}`,
    );
    this.broken.set(head, f);
    if (kind === "desc-next" && index === head && !buf.indirect && ram.u16(d + DESC_NEXT) >= rig.size) {
      // A refused head (CHAIN-CHECKED-NEW: NEXT out of the table) blocks the queue until the
      // guest repairs it; nothing else touches this descriptor before the device pops it.
      this.blocking.push({
        fault: f,
        seen: null,
        repair: () => {
          ram.write(d, saved);
          this.broken.delete(head);
        },
      });
    }
  }

  /** INDIRECT with a table length that is not a multiple of 16, or nested. */
  private corruptIndirect(d: number, flagsAt: number, nested: boolean): string {
    const ram = this.rig.ram;
    ram.setU16(d + flagsAt, ram.u16(d + flagsAt) | VIRTQ_DESC_F_INDIRECT);
    const len = this.ctx.rng.pick([0, 7, 17, 16 * 0x10000]);
    ram.setU32(d + DESC_LEN, len);
    ram.setU64(d + DESC_ADDR, BigInt(this.rig.scratch.addr));
    return `INDIRECT, len ${len}${nested ? " (nested)" : ""}`;
  }

  /**
   * The packed ring's chain faults: addr/len lies, WRITE toggled, INDIRECT misuse (bad table
   * length, nested), and a buffer id out of range (the device must refuse the chain,
   * PVQ-BUFFER-ID, until the guest repairs it). The first descriptor's flags are still held
   * by the driver (it publishes them last), so they are changed through setFirstFlags.
   */
  private corruptPackedChain(drv: PackedDriver, id: number): void {
    const ctx = this.ctx;
    const rig = this.rig;
    const ram = rig.ram;
    const size = rig.size;
    const buf = drv.inFlightAt(id)!;
    const first = drv.descAddr(id);
    const ringEnd = rig.layout.descTable + PACKED_DESC_SIZE * size;
    const d = this.pickDescriptor(
      buf,
      (at) => (at + PACKED_DESC_SIZE === ringEnd ? rig.layout.descTable : at + PACKED_DESC_SIZE),
      first,
    );
    const isHead = d === first;
    const where =
      buf.indirect && !isHead
        ? `entry ${(d - buf.table) / DESC_SIZE} of its indirect table`
        : `slot ${(d - rig.layout.descTable) / PACKED_DESC_SIZE}`;
    const flagsOf = (): number => (isHead ? drv.firstFlags(id) : ram.u16(d + PACKED_DESC_FLAGS));
    const setFlags = (f: number): void =>
      isHead ? drv.setFirstFlags(id, f) : ram.setU16(d + PACKED_DESC_FLAGS, f);
    let kind = ctx.rng.pick(["desc-addr", "desc-len", "desc-flags", "desc-indirect", "desc-id"] as const);
    // INDIRECT on the head of a chain of several slots would leave the others available as
    // chains of their own (the guest lying to itself, not to the device).
    if (kind === "desc-indirect" && !buf.indirect && buf.ringDescs > 1) kind = "desc-flags";
    const savedRing: Uint8Array[] = [];
    let detail = "";
    switch (kind) {
      case "desc-addr":
      case "desc-len":
        detail = this.corruptAddrLen(kind, d);
        break;
      case "desc-flags": {
        const f = flagsOf() ^ VIRTQ_DESC_F_WRITE;
        setFlags(f);
        detail = `flags = ${f}`;
        break;
      }
      case "desc-indirect": {
        // On the head: a table of a bad length; inside a table: a nested INDIRECT.
        // The head's flags are held by the driver until publish: INDIRECT goes there.
        const nested = buf.indirect && !isHead;
        if (!nested) drv.setFirstFlags(id, drv.firstFlags(id) | VIRTQ_DESC_F_INDIRECT);
        detail = this.corruptIndirect(nested ? d : first, PACKED_DESC_FLAGS, nested);
        break;
      }
      case "desc-id": {
        // Every ring descriptor of the chain names an id out of range (PVQ-BUFFER-ID).
        const bad = size + ctx.rng.int(0x10000 - size);
        let at = first;
        for (let k = 0; k < buf.ringDescs; k++) {
          savedRing.push(ram.bytes(at, PACKED_DESC_SIZE).slice());
          ram.setU16(at + PACKED_DESC_ID, bad);
          at = at + PACKED_DESC_SIZE === ringEnd ? rig.layout.descTable : at + PACKED_DESC_SIZE;
        }
        detail = `id = ${bad} (size ${size})`;
        break;
      }
    }
    const f = ctx.faults.inject(kind, `packed queue buffer ${id}, ${where}: ${detail}`);
    this.broken.set(id, f);
    if (kind === "desc-id") {
      this.blocking.push({
        fault: f,
        seen: null,
        repair: () => {
          let at = first;
          for (const b of savedRing) {
            ram.setU16(at + PACKED_DESC_ID, new DataView(b.buffer).getUint16(PACKED_DESC_ID, true));
            at = at + PACKED_DESC_SIZE === ringEnd ? rig.layout.descTable : at + PACKED_DESC_SIZE;
          }
          this.broken.delete(id);
        },
      });
    }
  }

  /** Writes avail.idx far ahead (more than size past next_avail); repaired next step. */
  corruptAvailIdx(): void {
    const rig = this.rig;
    const drv = rig.split!;
    const good = drv.readAvailIdx();
    const bad = (good + rig.size + 1 + this.ctx.rng.int(0x8000)) & 0xffff;
    drv.writeAvailIdx(bad);
    const f = this.ctx.faults.inject("avail-idx", `queue avail.idx ${good} -> ${bad}`);
    this.blocking.push({ fault: f, seen: null, repair: () => drv.writeAvailIdx(good) });
    rig.kicked = true; // the guest kicks after its bogus publication
  }

  /**
   * Scribbles on the driver's notification fields: split, used_event (EVENT_IDX) or the avail
   * flags (VRING_AVAIL_F_NO_INTERRUPT and unknown bits); packed, the Driver Area's off_wrap
   * and flags. The device must read them without harm; interrupts may be lost meanwhile, so
   * the guest repairs the field next step and polls the used ring (its own fault, not the
   * device's).
   */
  corruptNotifyFields(): void {
    const rig = this.rig;
    const bad = this.ctx.rng.int(0x10000);
    const packed = rig.packed;
    if (packed !== null) {
      const good = packed.driverEvent();
      const badFlags = this.ctx.rng.int(0x10000);
      packed.setDriverEvent(bad, badFlags);
      const f = this.ctx.faults.inject(
        "driver-event",
        `packed Driver Area off_wrap ${good.offWrap} -> ${bad}, flags ${good.flags} -> ${badFlags}`,
      );
      this.notifyRepair = () => {
        packed.setDriverEvent(good.offWrap, good.flags);
        packed.enableCbPrepare();
        rig.reapAll();
        this.ctx.faults.handled(f, "read by the device without harm; repaired by the guest, which polled");
      };
      return;
    }
    const drv = rig.split!;
    const ev = rig.opts.eventIdx;
    const good = ev ? drv.usedEvent() : drv.availFlags();
    if (ev) drv.setUsedEvent(bad);
    else drv.setAvailFlags(bad);
    const f = this.ctx.faults.inject(
      ev ? "used-event" : "avail-flags",
      `queue ${ev ? "used_event" : "avail.flags"} ${good} -> ${bad}`,
    );
    this.notifyRepair = () => {
      if (ev) drv.setUsedEvent(drv.lastUsedIdx);
      else drv.setAvailFlags(good);
      rig.reapAll();
      this.ctx.faults.handled(f, "read by the device without harm; repaired by the guest, which polled");
    };
  }

  /** Pending repair of a notification field (done after the next device run). */
  notifyRepair: (() => void) | null = null;

  repairNotify(): void {
    const fix = this.notifyRepair;
    this.notifyRepair = null;
    fix?.();
  }

  /** Writes an out-of-range head into the next avail slot the device will read, published. */
  corruptAvailRing(): void {
    const rig = this.rig;
    const drv = rig.split!;
    const port = rig.port;
    if (port.len() === 0) return;
    const slot = port.nextAvail % rig.size;
    const good = drv.readAvailRing(slot);
    const bad = rig.size + this.ctx.rng.int(0x10000 - rig.size);
    drv.writeAvailRing(slot, bad);
    const f = this.ctx.faults.inject("avail-ring", `queue avail.ring[${slot}] = ${bad} (size ${rig.size})`);
    this.blocking.push({ fault: f, seen: null, repair: () => drv.writeAvailRing(slot, good) });
    rig.kicked = true;
  }

  /**
   * Packed: flags that lie about availability at the slot the driver fills next (nothing
   * made available there). With the driver's wrap counter and an id out of range, the device
   * takes it for a chain and must refuse it (blocking, repaired); with the other lap's bits
   * (a wrap-counter game) or AVAIL and USED both set it must not take it at all.
   */
  corruptAvailability(): void {
    const rig = this.rig;
    const drv = rig.packed!;
    if (drv.numFree === 0) return;
    const slot = drv.nextAvail;
    const d = rig.layout.descTable + packedDescOffset(slot);
    const saved = rig.ram.bytes(d, PACKED_DESC_SIZE).slice();
    const lie = this.ctx.rng.pick(["avail-lie", "wrap-lie", "used-lie"] as const);
    const bad = rig.size + this.ctx.rng.int(0x10000 - rig.size);
    const flags =
      lie === "avail-lie"
        ? availFlags(drv.availWrap)
        : lie === "wrap-lie"
          ? availFlags(!drv.availWrap)
          : availFlags(true) | availFlags(false);
    drv.writeSlot(slot, { addr: rig.scratch.addr, len: 64, id: bad, flags });
    const f = this.ctx.faults.inject(
      lie,
      `packed slot ${slot} (not made available): flags ${flags}, id ${bad}`,
    );
    const repair = (): void => rig.ram.write(d, saved);
    // The slot is the driver's next: repaired after this device run whatever happened,
    // before the driver fills it.
    if (lie === "avail-lie") this.blocking.push({ fault: f, seen: null, repair, now: true });
    else this.notAvailable.push({ fault: f, repair, slot, read: false });
    rig.kicked = true;
  }

  /**
   * Packed lies the device must not act on: repaired after the device ran; `read` once a pop
   * at their slot came back empty (the device looked and did not take them).
   */
  private readonly notAvailable: { fault: FaultRecord; repair: () => void; slot: number; read: boolean }[] =
    [];

  /**
   * After the device ran: a blocking fault it ran into is recorded with the error the queue
   * gave, repaired, and the guest kicks again. One not reached yet waits (the guest does not
   * know it was not reached); after a few steps it is repaired anyway.
   */
  repair(): void {
    const b = this.blocking[0];
    if (b === undefined) return;
    if (b.seen !== null || b.now === true || this.ctx.rng.chance(0.2)) {
      this.blocking.shift();
      b.repair();
      this.ctx.faults.handled(
        b.fault,
        b.seen !== null
          ? `refused (${b.seen}); served after the guest repaired it`
          : "repaired before the device reached it",
      );
      this.rig.kicked = true;
    }
  }

  get pendingRepairs(): number {
    return this.blocking.length;
  }

  /** After the guest added the chain `head` (not yet published): maybe corrupt it. */
  afterAdd(head: number): void {
    const r = this.ctx.rng;
    const rate = this.ctx.faultRate;
    // One blocking fault at a time, so the guest knows what to repair.
    if (r.chance(rate) && this.pendingRepairs === 0) this.corruptChain(head);
    else if (r.chance(rate)) this.corruptChain(head);
  }

  /** After the guest published and kicked: maybe corrupt avail.idx/ring (split), availability (packed) or a notify field. */
  afterPublish(): void {
    const r = this.ctx.rng;
    const rate = this.ctx.faultRate;
    if (this.pendingRepairs === 0 && r.chance(rate)) {
      if (this.rig.packed !== null) this.corruptAvailability();
      else if (r.chance(0.5)) this.corruptAvailIdx();
      else this.corruptAvailRing();
    }
    if (r.chance(rate)) this.corruptNotifyFields();
  }

  /** After the device ran: the guest repairs what it broke. */
  afterDevice(): void {
    // The availability lies first: the guest's own reclaim (below) must not read them.
    for (const n of this.notAvailable.splice(0)) {
      n.repair();
      this.ctx.faults.handled(
        n.fault,
        n.read
          ? "not taken for a chain (not available for the device's wrap counter)"
          : "repaired before the device reached it",
      );
    }
    this.repairNotify();
    this.repair();
  }

  /** Drain: repairs what is left so the rig can finish. */
  drain(): void {
    for (let i = 0; i < 1000 && this.pendingRepairs > 0; i++) {
      this.repair();
      this.rig.drainRound();
    }
  }
}

/** What the net faults saw, for the end-of-run accounting. */
export interface NetFaultCounts {
  /** Broken RX buffers (no writable room) that came back with used len 0. */
  rxBrokenReturned: number;
}

/** virtio-net faults: TX headers and descriptors, RX descriptors. */
export const netFaults = (ctx: SimContext, rig: NetRig): NetFaultCounts => {
  const counts: NetFaultCounts = { rxBrokenReturned: 0 };
  const txFaults = new Map<number, FaultRecord>();
  const rxFaults = new Map<number, FaultRecord>();
  rig.hooks = {
    corruptTx: (r, head, seq) => {
      if (!ctx.rng.chance(ctx.faultRate)) return null;
      const buf = r.tx.inFlightAt(head)!;
      let kind = ctx.rng.pick(["net-hdr", "tx-desc-len", "tx-desc-addr", "tx-short"] as const);
      // Cutting a packed chain short would leave its other slots available as chains of
      // their own (the guest lying to itself): only single-descriptor packed chains.
      if (kind === "tx-short" && r.ring === "packed" && buf.ringDescs > 1) kind = "tx-desc-len";
      const d = r.tx.descAddr(head); // the head descriptor holds the header
      const first = buf.segments[0]!;
      let lost = true;
      let detail = "";
      switch (kind) {
        case "net-hdr": {
          // Garbage flags, gso_type, hdr_len, gso_size, csum fields: no offload was negotiated.
          const hdr = r.ram.bytes(first.addr, r.hdrLen);
          ctx.rng.fill(hdr);
          detail = `virtio_net_hdr = ${Array.from(hdr, (b) => b.toString(16).padStart(2, "0")).join("")}`;
          lost = false;
          break;
        }
        case "tx-desc-len":
          r.ram.setU32(d + DESC_LEN, 0xffff_ff00 + ctx.rng.int(0x100));
          detail = `head len = ${r.ram.u32(d + DESC_LEN)}`;
          break;
        case "tx-desc-addr": {
          // Only addresses the device must refuse: a garbage frame from scratch memory
          // would be indistinguishable from a corrupted one.
          const a = badAddr(ctx, r.scratch, first.len, true);
          r.ram.setU64(d + DESC_ADDR, a);
          detail = `head addr = 0x${a.toString(16)}`;
          break;
        }
        case "tx-short":
          // Only the chain head, shorter than the header: a frame of nothing.
          r.ram.setU32(d + DESC_LEN, ctx.rng.int(r.hdrLen + 1));
          r.tx.setFirstFlags(head, r.tx.firstFlags(head) & ~VIRTQ_DESC_F_NEXT);
          detail = `head len = ${r.ram.u32(d + DESC_LEN)}, chain cut`;
          break;
      }
      txFaults.set(seq, ctx.faults.inject(kind, `net TX frame ${seq} (head ${head}): ${detail}`));
      return { lost };
    },
    corruptRx: (r, head) => {
      // Single-descriptor buffers only: then either corruption leaves the device no
      // writable room, so it must give the buffer back empty and keep the frame.
      if (r.rx.inFlightAt(head)!.segments.length !== 1 || !ctx.rng.chance(ctx.faultRate)) return;
      const d = r.rx.descAddr(head);
      // With MRG_RXBUF a read-only buffer has zero writable room but is not an error, so
      // only the address is corrupted there.
      const kind = r.opts.mrg ? "rx-desc-addr" : ctx.rng.pick(["rx-readonly", "rx-desc-addr"] as const);
      if (kind === "rx-readonly") r.rx.setFirstFlags(head, r.rx.firstFlags(head) & ~VIRTQ_DESC_F_WRITE);
      else r.ram.setU64(d + DESC_ADDR, badAddr(ctx, r.scratch, r.ram.u32(d + DESC_LEN), true));
      rxFaults.set(
        head,
        ctx.faults.inject(
          kind,
          `net RX buffer ${head}: ${kind === "rx-readonly" ? "WRITE cleared" : `addr 0x${r.ram.u64(d + DESC_ADDR).toString(16)}`}`,
        ),
      );
    },
  };
  rig.onDelivered = (seq) => {
    const f = txFaults.get(seq);
    if (f !== undefined) {
      ctx.faults.handled(f, "frame delivered unchanged (header not interpreted without offloads)");
      txFaults.delete(seq);
    }
  };
  rig.onSkipped = (seq) => {
    const f = txFaults.get(seq);
    if (f !== undefined) {
      ctx.faults.handled(f, "dropped and counted by the device (TX chain error / too short)");
      txFaults.delete(seq);
    }
  };
  rig.onRxReaped = (head, len) => {
    const f = rxFaults.get(head);
    if (f !== undefined) {
      ctx.faults.handled(f, len === 0 ? "given back empty (used len 0)" : `used with ${len} bytes`);
      if (len === 0) counts.rxBrokenReturned++;
      rxFaults.delete(head);
    }
  };
  return counts;
};

/**
 * End of a run with netFaults: every broken RX buffer given back must have been refused as
 * one (NET-HOSTILE: no frame lost). One accepted as a 0-byte receive swallowed its frame.
 */
export const checkNetFaults = (ctx: SimContext, rig: NetRig, counts: NetFaultCounts): void => {
  const refused = rig.device.stats.rxChainErrors;
  if (counts.rxBrokenReturned > refused)
    ctx.fail(
      "SIM-HOSTILE-SERVE",
      `${rig.opts.label || rig.opts.name}: ${counts.rxBrokenReturned} broken RX buffers (read-only or unmapped) came back with used len 0 but the device counted only ${refused} RX chain errors: it took a frame into a buffer with no writable room, and the frame is lost`,
    );
};

/** At the end of a run: a fault nothing reacted to is recorded as such. */
export const settlePendingFaults = (ctx: SimContext): void => {
  for (const f of ctx.faults.stillPending()) ctx.faults.handled(f, "no effect observed");
};

/**
 * virtio-vsock faults: packets with spoofed CIDs, unknown ops or types, lengths that lie,
 * and credit lies, all on ports no real connection uses, beside two well-formed streams.
 */
export const vsockFault = (ctx: SimContext, vs: VsockCreditRig): (() => void) | null => {
  const r = ctx.rng;
  const g = vs.guest;
  const kind = r.pick([
    "vsock-spoofed-cid",
    "vsock-bad-op",
    "vsock-bad-type",
    "vsock-no-connection",
    "vsock-len-lie",
    "vsock-credit-lie",
  ] as const);
  const port = 60000 + r.int(5000);
  const base: VsockHeader = {
    srcCid: g.cid,
    dstCid: VSOCK_HOST_CID,
    srcPort: port,
    dstPort: vs.hostPort + 1 + r.int(100),
    len: 0,
    type: VSOCK_TYPE_STREAM,
    op: VSOCK_OP_RW,
    flags: 0,
    bufAlloc: 65536,
    fwdCnt: 0,
  };
  let h: VsockHeader = base;
  let data = new Uint8Array(0);
  switch (kind) {
    case "vsock-spoofed-cid":
      h = r.chance(0.5)
        ? { ...base, srcCid: BigInt(4 + r.int(1000)) }
        : { ...base, dstCid: BigInt(5 + r.int(1000)) };
      break;
    case "vsock-bad-op":
      h = { ...base, op: 8 + r.int(0xfff0) };
      break;
    case "vsock-bad-type":
      h = { ...base, type: 2 + r.int(0xfffd) };
      break;
    case "vsock-no-connection":
      data = new Uint8Array(r.range(1, 512));
      h = { ...base, len: data.length };
      break;
    case "vsock-len-lie":
      data = new Uint8Array(r.range(1, 64));
      h = { ...base, len: data.length + r.range(1, 0x10000) };
      break;
    case "vsock-credit-lie":
      h = { ...base, op: VSOCK_OP_CREDIT_UPDATE, bufAlloc: r.u32(), fwdCnt: r.u32() };
      break;
  }
  const st = g.device.muxer.stats;
  const asm = (): number => Object.values(g.device.assemblyErrors).reduce((a, b) => a + b, 0);
  const before = { cid: st.droppedCid, rst: st.rstReplies + st.rstDropped, asm: asm() };
  if (!g.sendRaw(h, data)) return null;
  const f = ctx.faults.inject(
    kind,
    `vsock packet op ${h.op} type ${h.type} ${h.srcCid}:${h.srcPort} -> ${h.dstCid}:${h.dstPort} len ${h.len}`,
  );
  return () => {
    const outcome =
      asm() > before.asm
        ? "refused by packet assembly (chain given back)"
        : st.droppedCid > before.cid
          ? "dropped (not for this device's CIDs)"
          : st.rstReplies + st.rstDropped > before.rst
            ? "answered with RST"
            : "ignored";
    ctx.faults.handled(f, outcome);
  };
};
