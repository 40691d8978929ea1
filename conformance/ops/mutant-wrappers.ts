/**
 * Mutants as wrappers: each takes the reference adapter's handler table and returns it with
 * one or a few ops replaced by a buggy version built around the real handler or the real
 * impl/ code (conformance/mutants.ts says which bug and where it was found). The real
 * handlers know nothing of mutants: nothing in ops/ outside this file names one.
 */
import { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import type { ChainCursor } from "../../impl/iovec/iovec.ts";
import { HEADER_SIZE, VsockPacketIterator } from "../../impl/usb-vsock/packet.ts";
import { NUM_BUFFERS_OFFSET } from "../../impl/net/header.ts";
import { RX_QUEUE } from "../../impl/net/device.ts";
import { MAX_PKT_BUF_SIZE } from "../../spec/vsock.ts";
import { isObject, toHex } from "../protocol.ts";
import type { Json, JsonObject, Outcome } from "../protocol.ts";
import type { Handler, World } from "./world.ts";
import { argArray, argHex, argU64, argUint, errv, okv } from "./world.ts";
import { popped, queueId, queueSlot } from "./queue.ts";
import { rawDescriptor, walk } from "./chain.ts";
import { acceptedWalkJson } from "../walk-json.ts";
import { chainArg, iovecWrite } from "./iovec.ts";
import { netSlot } from "./net.ts";
import { PACKED_MUTANT_WRAPPERS } from "./packed-mutants.ts";
import {
  USED_ELEM_ID,
  USED_ELEM_LEN,
  USED_ELEM_SIZE,
  USED_IDX,
  VIRTQ_DESC_F_INDIRECT,
  usedSlotOffset,
  MAX_QUEUE_SIZE,
} from "../../wire/split.ts";

export type HandlerTable = Readonly<Record<string, Handler>>;
export type MutantWrapper = (base: HandlerTable) => HandlerTable;

const op = (base: HandlerTable, name: string): Handler => {
  const h = base[name];
  if (h === undefined) throw new Error(`mutant wrapper: the reference adapter has no ${name}`);
  return h;
};

/** The ok value of an answer as an object, or undefined for an error or another shape. */
const valueOf = (o: Outcome): JsonObject | undefined => (o.ok && isObject(o.value) ? o.value : undefined);

// ---- queue --------------------------------------------------------------------------------

/**
 * avail-idx-far-ahead (rust-vmm before PR 196): pop does not check how far avail.idx is
 * ahead; where the real pop refuses InvalidAvailIdx, the head is read from the ring anyway.
 */
const availIdxFarAhead: MutantWrapper = (base) => ({
  ...base,
  "queue.pop": (args, world) => {
    const out = op(base, "queue.pop")(args, world);
    if (out.ok || out.error._tag !== "InvalidAvailIdx") return out;
    const q = queueSlot(world, args).q;
    const st = q.state();
    const mem = world.mem();
    const head = mem.readU16(Number(st.availRing) + 4 + 2 * (st.nextAvail % st.size));
    const chain = head < 0 ? undefined : DescriptorChain.checkedNew(mem, Number(st.descTable), st.size, head);
    if (chain === undefined) return okv({ popped: false });
    q.setPositions({ nextAvail: st.nextAvail + 1 });
    return okv(popped(chain));
  },
});

/**
 * size-zero (rust-vmm before PR 173): initialize accepts a queue of size 0; the first op
 * that indexes the ring then divides by zero, and a Rust device panics (exit 101).
 */
const sizeZero: MutantWrapper = (base) => {
  const zeroQueues = (world: World): Set<number> => {
    let s = world.slots.get("mutant size-zero") as Set<number> | undefined;
    if (s === undefined) {
      s = new Set();
      world.slots.set("mutant size-zero", s);
    }
    return s;
  };
  const panicOn =
    (name: string): Handler =>
    (args, world) => {
      if (zeroQueues(world).has(queueId(args))) {
        process.stderr.write(
          "adapter (mutant size-zero): attempt to calculate the remainder with a divisor of zero\n",
        );
        process.exit(101);
      }
      return op(base, name)(args, world);
    };
  return {
    ...base,
    "queue.configure": (args, world) => {
      zeroQueues(world).delete(queueId(args));
      return op(base, "queue.configure")(args, world);
    },
    "queue.initialize": (args, world) => {
      const out = op(base, "queue.initialize")(args, world);
      if (out.ok || out.error._tag !== "InvalidSize" || queueSlot(world, args).q.state().size !== 0)
        return out;
      zeroQueues(world).add(queueId(args));
      return okv(null);
    },
    "queue.pop": panicOn("queue.pop"),
    "queue.addUsed": panicOn("queue.addUsed"),
  };
};

/** pop-after-reset (rust-vmm before PR 225): reset forgets nothing; the queue stays ready. */
const popAfterReset: MutantWrapper = (base) => ({
  ...base,
  "queue.reset": (args, world) => {
    queueSlot(world, args);
    return okv(null);
  },
});

/** prepare-kick-off-by-one: used_event compared with next_used instead of next_used - 1. */
const prepareKickOffByOne: MutantWrapper = (base) => ({
  ...base,
  "queue.prepareKick": (args, world) => {
    const q = queueSlot(world, args).q;
    const st = q.state();
    const ev = q.usedEvent();
    const out = op(base, "queue.prepareKick")(args, world);
    if (!out.ok || !st.active || !st.eventIdx || !ev.ok) return out;
    return okv(((st.nextUsed - ev.value) & 0xffff) < st.numAdded);
  },
});

/**
 * used-slot-from-guest: the device takes its next used slot from used.idx as it reads it in
 * guest memory (a field only the device writes, VIRTIO 1.2 §2.7.8) instead of its own
 * next_used. With an honest driver the two agree; a driver that scribbles on used.idx steers
 * the device's writes.
 */
const usedSlotFromGuest: MutantWrapper = (base) => ({
  ...base,
  "queue.addUsed": (args, world) => {
    const st = queueSlot(world, args).q.state();
    if (!st.active || st.size === 0) return op(base, "queue.addUsed")(args, world);
    const mem = world.mem();
    const used = Number(st.usedRing);
    const guestIdx = mem.readU16(used + USED_IDX);
    const own = used + usedSlotOffset(st.nextUsed % st.size);
    const saved = mem.slice(own, USED_ELEM_SIZE)?.slice();
    const out = op(base, "queue.addUsed")(args, world);
    if (!out.ok || guestIdx < 0 || saved === undefined) return out;
    const at = used + usedSlotOffset(guestIdx % st.size);
    if (at === own) return out;
    // Move the element the real code wrote to the slot the guest chose.
    mem.writeU32(at + USED_ELEM_ID, argUint(args, "head"));
    mem.writeU32(at + USED_ELEM_LEN, argUint(args, "len"));
    mem.slice(own, USED_ELEM_SIZE)?.set(saved);
    return okv(null);
  },
});

// ---- chain ------------------------------------------------------------------------------

interface WalkArgs {
  readonly descTable: bigint;
  readonly queueSize: number;
  readonly head: number;
}
const walkArgs = (args: JsonObject): WalkArgs => ({
  descTable: argU64(args, "descTable"),
  queueSize: argUint(args, "queueSize", MAX_QUEUE_SIZE),
  head: argUint(args, "head", 0xffff),
});

/** indirect-aligned (rust-vmm before PR 220): an indirect table not 16-aligned is refused. */
const indirectAligned: MutantWrapper = (base) => ({
  ...base,
  "chain.walk": (args, world) => {
    const a = walkArgs(args);
    const w = walk(world, a.descTable, a.queueSize, a.head);
    const h = w === undefined ? undefined : rawDescriptor(world.mem(), a.descTable, a.head);
    if (h !== undefined && (h.flags & VIRTQ_DESC_F_INDIRECT) !== 0 && h.addr % 16n !== 0n)
      return okv(acceptedWalkJson({ descriptors: [], end: { _tag: "InvalidIndirectDescriptorTable" } }));
    return op(base, "chain.walk")(args, world);
  },
});

/**
 * chain-over-4g (rust-vmm before PR 236): the chain's length is summed in a u32, so the
 * descriptor that passes 2^32 bytes is walked instead of ending the walk.
 */
const chainOver4g: MutantWrapper = (base) => ({
  ...base,
  "chain.walk": (args, world) => {
    const a = walkArgs(args);
    const w = walk(world, a.descTable, a.queueSize, a.head);
    const last = w?.descriptors[w.descriptors.length - 1];
    if (w === undefined || w.end?._tag !== "DescriptorChainOverflow" || last === undefined)
      return op(base, "chain.walk")(args, world);
    // The walk stopped at the descriptor `last` points to, in the head's indirect table if it had one.
    const mem = world.mem();
    const h = rawDescriptor(mem, a.descTable, a.head);
    const inIndirect = h !== undefined && (h.flags & VIRTQ_DESC_F_INDIRECT) !== 0;
    const d = rawDescriptor(mem, inIndirect ? h.addr : a.descTable, last.next);
    const descriptors = d === undefined ? w.descriptors : [...w.descriptors, { ...d, indirect: inIndirect }];
    return okv(acceptedWalkJson({ descriptors, end: null }));
  },
});

// ---- iovec -------------------------------------------------------------------------------

/** write-readable: a cursor that calls every descriptor device-writable. */
class EverythingWritable implements ChainCursor {
  constructor(private readonly c: ChainCursor) {}
  get headIndex(): number {
    return this.c.headIndex;
  }
  get addr(): number {
    return this.c.addr;
  }
  get len(): number {
    return this.c.len;
  }
  addrBig(): bigint {
    return this.c.addrBig();
  }
  isWriteOnly(): boolean {
    return true;
  }
  rewind(): boolean {
    return this.c.rewind();
  }
  advance(): boolean {
    return this.c.advance();
  }
}

const writeReadable: MutantWrapper = (base) => ({
  ...base,
  "iovec.write": (args, world) => iovecWrite(args, world, (c) => new EverythingWritable(c)),
});

/**
 * iovec-no-u32-check (Firecracker's len.checked_add undone): where a chain would take the
 * buffer past 2^32 bytes, a new buffer starts and the total wraps, instead of
 * OverflowedDescriptor. Built from real iovec.write calls: each group of chains the real code
 * accepts is one buffer (checked with no data first, so a refusal writes nothing), then the
 * data is written through the groups in turn.
 */
const iovecNoU32Check: MutantWrapper = (base) => ({
  ...base,
  "iovec.write": (args, world) => {
    const real = op(base, "iovec.write");
    const chains = argArray(args, "chains");
    const groups: [number, number][] = [];
    for (let start = 0; start < chains.length;) {
      const probe = real({ ...args, chains: chains.slice(start), data: "", offset: 0 }, world);
      if (probe.ok) {
        groups.push([start, chains.length]);
        break;
      }
      const at = start + (typeof probe.error["chain"] === "number" ? probe.error["chain"] : 0);
      if (probe.error._tag !== "OverflowedDescriptor" || at === start)
        return errv({ ...probe.error, chain: at });
      groups.push([start, at]);
      start = at;
    }
    if (groups.length <= 1) return real(args, world);
    const data = argHex(args, "data");
    let offset = argUint(args, "offset");
    let written = 0;
    let length = 0;
    const parsed: Json[] = [];
    for (const [from, to] of groups) {
      const v = valueOf(
        real({ ...args, chains: chains.slice(from, to), data: toHex(data.subarray(written)), offset }, world),
      );
      if (v === undefined) throw new Error("iovec.write refused a group it accepted a moment ago");
      const len = Number(v["length"]);
      written += Number(v["written"]);
      offset = Math.max(0, offset - len);
      length = (length + len) % 2 ** 32;
      parsed.push(...(v["parsed"] as readonly Json[]));
    }
    return okv({ length, written, parsed });
  },
});

// ---- vsock, usb-vsock ---------------------------------------------------------------------

/** vsock-two-desc (rust-vmm issue 204): a TX packet's data must be in a second descriptor. */
const vsockTwoDesc: MutantWrapper = (base) => ({
  ...base,
  "vsock.tx": (args, world) => {
    const chain = chainArg(world, args);
    const single = chain !== undefined && chain.rewind() && !chain.hasNext();
    const out = op(base, "vsock.tx")(args, world);
    const header = valueOf(out)?.["header"];
    if (single && isObject(header) && Number(header["len"]) > 0) return errv({ _tag: "BufDescMissing" });
    return out;
  },
});

/** vsock-pkt-len-off-by-one (cloud-hypervisor packet.rs): len >= MAX_PKT_BUF_SIZE refused. */
const vsockPktLenOffByOne: MutantWrapper = (base) => ({
  ...base,
  "vsock.tx": (args, world) => {
    const out = op(base, "vsock.tx")(args, world);
    const header = valueOf(out)?.["header"];
    if (isObject(header) && header["len"] === MAX_PKT_BUF_SIZE) return errv({ _tag: "InvalidPktLen" });
    return out;
  },
});

const rdU32 = (b: Uint8Array, at: number): number =>
  (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

/**
 * usb-payload-past-buffer (Fuchsia usb_vsock): a payload_len past the end is taken at its
 * word; what is there is returned (the rest would be whatever follows the buffer).
 */
const usbPayloadPastBuffer: MutantWrapper = (base) => ({
  ...base,
  "usb.parse": (args, world) => {
    const out = op(base, "usb.parse")(args, world);
    const v = valueOf(out);
    if (v === undefined || v["error"] !== "PayloadTooLong") return out;
    // Where the real parser stopped: the iterator's error says.
    const data = argHex(args, "data");
    const it = new VsockPacketIterator(data);
    while (it.next());
    const e = it.error;
    if (e === undefined || e._tag !== "PayloadTooLong") return out;
    const at = e.offset;
    const packet: Json = {
      type: data[at + 3]!,
      deviceCid: rdU32(data, at + 4),
      hostCid: rdU32(data, at + 8),
      devicePort: rdU32(data, at + 12),
      hostPort: rdU32(data, at + 16),
      payloadLen: e.payloadLen,
      payload: toHex(data.subarray(at + HEADER_SIZE)),
    };
    return okv({ packets: [...(v["packets"] as readonly Json[]), packet], error: null });
  },
});

// ---- net -------------------------------------------------------------------------------

/** net-mtu-offset-12 (squib net.rs): mtu at config offset 12 instead of 10. */
const netMtuOffset12: MutantWrapper = (base) => ({
  ...base,
  "net.config": (args, world) => {
    const whole = op(base, "net.config")({ ...args, offset: 0, len: 12 }, world);
    const hex = valueOf(whole)?.["data"];
    if (typeof hex !== "string") return whole;
    const full = new Uint8Array(16);
    full.set(argHex({ hex }, "hex"));
    full[12] = full[10]!;
    full[13] = full[11]!;
    full[10] = 0;
    full[11] = 0;
    const offset = argUint(args, "offset", 0xffff);
    const out = new Uint8Array(argUint(args, "len", 0x1000));
    for (let i = 0; i < out.length; i++) out[i] = full[offset + i] ?? 0;
    return okv({ data: toHex(out) });
  },
});

const swap16 = (b: Uint8Array, at: number): void => {
  const lo = b[at]!;
  b[at] = b[at + 1]!;
  b[at + 1] = lo;
};

/** net-num-buffers-be (v86 virtio-net): num_buffers in the RX header written big-endian. */
const netNumBuffersBe: MutantWrapper = (base) => ({
  ...base,
  "net.rxHeader": (args, world) => {
    const out = op(base, "net.rxHeader")(args, world);
    const hex = valueOf(out)?.["data"];
    if (typeof hex !== "string" || hex.length !== 24) return out;
    const b = argHex({ hex }, "hex");
    swap16(b, NUM_BUFFERS_OFFSET);
    return okv({ data: toHex(b) });
  },
  "net.rx": (args, world) => {
    const { device } = netSlot(world);
    const fromUsed = device.queues[RX_QUEUE]!.nextUsed;
    const out = op(base, "net.rx")(args, world);
    if (device.headerLength !== 12) return out;
    // Rewrite num_buffers big-endian in the headers the device just wrote.
    const q = device.queues[RX_QUEUE]!.state();
    const mem = world.mem();
    for (let i = fromUsed; i !== q.nextUsed; i = (i + 1) & 0xffff) {
      const head = mem.readU32(Number(q.usedRing) + usedSlotOffset(i % q.size) + USED_ELEM_ID);
      const chain = head < 0 ? undefined : DescriptorChain.checkedNew(mem, Number(q.descTable), q.size, head);
      if (chain === undefined || !chain.rewindWritable() || chain.len < 12) continue;
      const v = mem.readU16(chain.addr + NUM_BUFFERS_OFFSET);
      if (v >= 0) mem.writeU16(chain.addr + NUM_BUFFERS_OFFSET, ((v & 0xff) << 8) | (v >>> 8));
    }
    return out;
  },
});

export const MUTANT_WRAPPERS: Readonly<Record<string, MutantWrapper>> = {
  "avail-idx-far-ahead": availIdxFarAhead,
  "size-zero": sizeZero,
  "pop-after-reset": popAfterReset,
  "chain-over-4g": chainOver4g,
  "indirect-aligned": indirectAligned,
  "vsock-two-desc": vsockTwoDesc,
  "net-num-buffers-be": netNumBuffersBe,
  "net-mtu-offset-12": netMtuOffset12,
  "prepare-kick-off-by-one": prepareKickOffByOne,
  "used-slot-from-guest": usedSlotFromGuest,
  "write-readable": writeReadable,
  "iovec-no-u32-check": iovecNoU32Check,
  "vsock-pkt-len-off-by-one": vsockPktLenOffByOne,
  "usb-payload-past-buffer": usbPayloadPastBuffer,
  ...PACKED_MUTANT_WRAPPERS,
};
