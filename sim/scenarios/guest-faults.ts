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
import { RX_QUEUE, TX_QUEUE } from "../../impl/net/device.ts";
import type { FaultRecord, SimContext } from "../engine.ts";
import { DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, type InFlight } from "../guest/virtio-ring.ts";
import type { NetRig } from "./net-rig.ts";
import type { QueueRig } from "./queue-rig.ts";
import { HOST_PORT, type VsockCreditRig } from "./vsock-credit.ts";
import { type VsockHeader } from "../../spec/vsock.ts";
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
  private readonly blocking: { fault: FaultRecord; repair: () => void; seen: string | null }[] = [];

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
      isCorrupted: (_buf: InFlight | undefined, head: number) => this.broken.has(head),
      onReaped: (head) => {
        this.broken.delete(head);
      },
      onCorruptedServed: (head, outcome) => {
        const f = this.broken.get(head);
        if (f !== undefined) ctx.faults.handled(f, outcome);
      },
    };
  }

  /** Corrupts one descriptor of the chain just added (before it is published). */
  corruptChain(head: number): void {
    const ctx = this.ctx;
    const rig = this.rig;
    const buf = rig.driver.inFlightAt(head)!;
    const table = buf.indirect ? rig.driver.indirectTableAddr(head) : rig.ring.desc;
    // Which descriptor: the head, or one further down the chain (ring index or table slot).
    let index = buf.indirect ? ctx.rng.int(buf.segments.length) : head;
    if (!buf.indirect) {
      for (let k = ctx.rng.int(buf.ringDescs); k > 0; k--)
        index = rig.ram.u16(rig.ring.desc + 16 * index + 14);
    }
    const d = table + 16 * index;
    const ram = rig.ram;
    const saved = ram.bytes(d, 16).slice();
    const kind = ctx.rng.pick(["desc-addr", "desc-len", "desc-flags", "desc-next", "desc-indirect"] as const);
    let detail = "";
    switch (kind) {
      case "desc-addr": {
        const a = badAddr(ctx, rig.scratch, ram.u32(d + 8));
        ram.setU64(d, a);
        detail = `addr = 0x${a.toString(16)}`;
        break;
      }
      case "desc-len": {
        const len = ctx.rng.pick([0, 0xffff_ffff, 0x8000_0000 + ctx.rng.int(1000), ctx.rng.u32()]);
        // A huge len on a harmless address would still reach other buffers; move it too.
        ram.setU32(d + 8, len);
        if (len > 64) ram.setU64(d, badAddr(ctx, rig.scratch, len));
        detail = `len = ${len}`;
        break;
      }
      case "desc-flags": {
        // Toggle WRITE (the device then writes into or reads from the chain's own buffer).
        const f = ram.u16(d + 12) ^ DESC_F_WRITE;
        ram.setU16(d + 12, f);
        detail = `flags = ${f}`;
        break;
      }
      case "desc-next": {
        // NEXT to an index out of the table, or to itself (a loop the ttl must end).
        const size = buf.indirect ? buf.segments.length : rig.ring.size;
        const next = ctx.rng.chance(0.5) ? size + ctx.rng.int(0x10000 - size) : index;
        ram.setU16(d + 12, ram.u16(d + 12) | DESC_F_NEXT);
        ram.setU16(d + 14, next);
        detail = `next = ${next}${next === index ? " (itself)" : ""}`;
        break;
      }
      case "desc-indirect": {
        // INDIRECT with a table length that is not a multiple of 16, or nested.
        ram.setU16(d + 12, ram.u16(d + 12) | DESC_F_INDIRECT);
        const len = ctx.rng.pick([0, 7, 17, 16 * 0x10000]);
        ram.setU32(d + 8, len);
        ram.setU64(d, BigInt(rig.scratch.addr));
        detail = `INDIRECT, len ${len}${buf.indirect ? " (nested)" : ""}`;
        break;
      }
    }
    const f = ctx.faults.inject(
      kind,
      `queue head ${head}, descriptor ${index}${buf.indirect ? " of its indirect table" : ""}: ${detail}`,
    );
    this.broken.set(head, f);
    if (kind === "desc-next" && index === head && !buf.indirect && ram.u16(d + 14) >= rig.ring.size) {
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

  /** Writes avail.idx far ahead (more than size past next_avail); repaired next step. */
  corruptAvailIdx(): void {
    const rig = this.rig;
    const ram = rig.ram;
    const at = rig.ring.avail + 2;
    const good = ram.u16(at);
    const bad = (good + rig.ring.size + 1 + this.ctx.rng.int(0x8000)) & 0xffff;
    ram.setU16(at, bad);
    const f = this.ctx.faults.inject("avail-idx", `queue avail.idx ${good} -> ${bad}`);
    this.blocking.push({ fault: f, seen: null, repair: () => ram.setU16(at, good) });
    rig.kicked = true; // the guest kicks after its bogus publication
  }

  /**
   * Scribbles on the driver's notification fields: used_event (EVENT_IDX) or the avail
   * flags (VRING_AVAIL_F_NO_INTERRUPT and unknown bits). The device must read them without
   * harm; interrupts may be lost meanwhile, so the guest repairs the field next step and
   * polls the used ring (its own fault, not the device's).
   */
  corruptNotifyFields(): void {
    const rig = this.rig;
    const ram = rig.ram;
    const ev = rig.opts.eventIdx;
    const at = ev ? rig.ring.avail + 4 + 2 * rig.ring.size : rig.ring.avail;
    const good = ram.u16(at);
    const bad = this.ctx.rng.int(0x10000);
    ram.setU16(at, bad);
    const f = this.ctx.faults.inject(
      ev ? "used-event" : "avail-flags",
      `queue ${ev ? "used_event" : "avail.flags"} ${good} -> ${bad}`,
    );
    this.notifyRepair = () => {
      ram.setU16(at, ev ? rig.driver.lastUsed : good);
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
    const ram = rig.ram;
    const port = rig.port;
    if (port.len() === 0) return;
    const at = rig.ring.avail + 4 + 2 * (port.nextAvail % rig.ring.size);
    const good = ram.u16(at);
    const bad = rig.ring.size + this.ctx.rng.int(0x10000 - rig.ring.size);
    ram.setU16(at, bad);
    const f = this.ctx.faults.inject(
      "avail-ring",
      `queue avail.ring[${port.nextAvail % rig.ring.size}] = ${bad} (size ${rig.ring.size})`,
    );
    this.blocking.push({ fault: f, seen: null, repair: () => ram.setU16(at, good) });
    rig.kicked = true;
  }

  /**
   * After the device ran: a blocking fault it ran into is recorded with the error the queue
   * gave, repaired, and the guest kicks again. One not reached yet waits (the guest does not
   * know it was not reached); after a few steps it is repaired anyway.
   */
  repair(): void {
    const b = this.blocking[0];
    if (b === undefined) return;
    if (b.seen !== null || this.ctx.rng.chance(0.2)) {
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

  /** After the guest published and kicked: maybe corrupt avail.idx/ring or a notify field. */
  afterPublish(): void {
    const r = this.ctx.rng;
    const rate = this.ctx.faultRate;
    if (this.pendingRepairs === 0 && r.chance(rate)) {
      if (r.chance(0.5)) this.corruptAvailIdx();
      else this.corruptAvailRing();
    }
    if (r.chance(rate)) this.corruptNotifyFields();
  }

  /** After the device ran: the guest repairs what it broke. */
  afterDevice(): void {
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
      const ring = r.rings[TX_QUEUE]!;
      const kind = ctx.rng.pick(["net-hdr", "tx-desc-len", "tx-desc-addr", "tx-short"] as const);
      const d = ring.desc + 16 * head; // the head descriptor holds the header
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
          r.ram.setU32(d + 8, 0xffff_ff00 + ctx.rng.int(0x100));
          detail = `head len = ${r.ram.u32(d + 8)}`;
          break;
        case "tx-desc-addr": {
          // Only addresses the device must refuse: a garbage frame from scratch memory
          // would be indistinguishable from a corrupted one.
          const a = badAddr(ctx, r.scratch, first.len, true);
          r.ram.setU64(d, a);
          detail = `head addr = 0x${a.toString(16)}`;
          break;
        }
        case "tx-short":
          // Only the chain head, shorter than the header: a frame of nothing.
          r.ram.setU32(d + 8, ctx.rng.int(r.hdrLen + 1));
          r.ram.setU16(d + 12, r.ram.u16(d + 12) & ~DESC_F_NEXT);
          detail = `head len = ${r.ram.u32(d + 8)}, chain cut`;
          break;
      }
      txFaults.set(seq, ctx.faults.inject(kind, `net TX frame ${seq} (head ${head}): ${detail}`));
      return { lost };
    },
    corruptRx: (r, head) => {
      // Single-descriptor buffers only: then either corruption leaves the device no
      // writable room, so it must give the buffer back empty and keep the frame.
      if (r.rx.inFlightAt(head)!.segments.length !== 1 || !ctx.rng.chance(ctx.faultRate)) return;
      const ring = r.rings[RX_QUEUE]!;
      const d = ring.desc + 16 * head;
      // With MRG_RXBUF a read-only buffer has zero writable room but is not an error, so
      // only the address is corrupted there.
      const kind = r.opts.mrg ? "rx-desc-addr" : ctx.rng.pick(["rx-readonly", "rx-desc-addr"] as const);
      if (kind === "rx-readonly") r.ram.setU16(d + 12, r.ram.u16(d + 12) & ~DESC_F_WRITE);
      else r.ram.setU64(d, badAddr(ctx, r.scratch, r.ram.u32(d + 8), true));
      rxFaults.set(
        head,
        ctx.faults.inject(
          kind,
          `net RX buffer head ${head}: ${kind === "rx-readonly" ? "WRITE cleared" : `addr 0x${r.ram.u64(d).toString(16)}`}`,
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
    dstPort: HOST_PORT + 1 + r.int(100),
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
