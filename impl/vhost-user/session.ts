/**
 * The back-end's state for one front-end connection: negotiated features, the memory table
 * (every region mapped shared, zero-copy, as one region of a GuestMemory at its guest
 * address), per-ring state (size, base, addresses, kick/call/err fds, enabled, started), and
 * the device it serves. `handle(message)` applies one request and gives the reply to send,
 * or the typed error for which the connection must be closed; `close()` releases every fd
 * and mapping the session holds (after stopping the device).
 *
 * The device is activated as a whole once the memory table is known and every ring it has
 * is started (VU-RING-START: SET_VRING_KICK received); GET_VRING_BASE on any ring stops it
 * and records every ring's next available index (VU-RING-STOP); a later start resumes from
 * those (VU-RING-BASE).
 */
import { err, ok, type Result } from "../../spec/result.ts";
import {
  FLAG_NEED_REPLY,
  F_PROTOCOL_FEATURES,
  ProtocolFeature,
  Req,
  VRING_INDEX_MASK,
  VRING_NOFD,
  bit,
  hasExplicitReply,
  requestName,
  type Body,
  type MemoryRegionDesc,
  type Message,
  type SessionError,
} from "../../spec/vhost-user.ts";
import { VIRTIO_ID_NET, type VirtioDevice } from "../device/virtio-device.ts";
import { RING_PACKED_BIT, type DeviceQueue } from "../queue/device-queue.ts";
import { PackedQueue } from "../queue/packed-queue.ts";
import { GuestMemory } from "../memory/guest-memory.ts";
import { fileSize, mapShared, signalEventFd, unmap, type Fdio, type Mapping } from "../native/fdio.ts";
import { ack, reply } from "./codec.ts";
import { describeError } from "./describe.ts";

/** The protocol features this back-end can offer. */
export const SUPPORTED_PROTOCOL_FEATURES =
  bit(ProtocolFeature.MQ) | bit(ProtocolFeature.REPLY_ACK) | bit(ProtocolFeature.CONFIG);

/**
 * What is offered to a front-end for `device`: CONFIG only where the front-end takes config
 * space from the back-end (vsock's CID); QEMU's vhost-user-net keeps the net config itself
 * and warns about a back-end that offers CONFIG.
 */
export const protocolFeaturesFor = (device: VirtioDevice<DeviceQueue>): bigint =>
  device.deviceId === VIRTIO_ID_NET
    ? SUPPORTED_PROTOCOL_FEATURES & ~bit(ProtocolFeature.CONFIG)
    : SUPPORTED_PROTOCOL_FEATURES;

const PAGE = 4096;
const LIMIT = 2n ** 53n;

export interface RingState {
  num: number;
  /**
   * Next available index to process when the ring (re)starts; on a packed ring both
   * positions with their wrap counters (PackedQueue.positionsWord).
   */
  base: number;
  desc: bigint;
  avail: bigint;
  used: bigint;
  hasAddr: boolean;
  kick: number;
  call: number;
  err: number;
  enabled: boolean;
  started: boolean;
  kicks: number;
  calls: number;
}

export interface RegionInfo extends MemoryRegionDesc {
  readonly bytes: Uint8Array;
}

/** What a session tells its owner (the command prints these). */
export type SessionEvent =
  | { readonly _tag: "Request"; readonly request: string; readonly flags: number }
  | { readonly _tag: "FeaturesAcked"; readonly features: bigint; readonly protocolBit: boolean }
  | { readonly _tag: "ProtocolFeaturesAcked"; readonly features: bigint }
  | { readonly _tag: "MemoryTable"; readonly regions: readonly MemoryRegionDesc[] }
  | { readonly _tag: "RingStarted"; readonly index: number; readonly size: number; readonly base: number }
  | { readonly _tag: "RingEnabled"; readonly index: number; readonly enabled: boolean }
  | { readonly _tag: "DeviceActivated"; readonly features: bigint }
  | { readonly _tag: "DeviceStopped"; readonly bases: readonly number[] };

type Step = Result<Body | null, SessionError>;

export class Session {
  readonly rings: RingState[];
  private acked = 0n;
  private protocolFeatures = 0n;
  private owner = false;
  private memory: GuestMemory | null = null;
  private regions: RegionInfo[] = [];
  private mappings: Mapping[] = [];
  private closed = false;
  /** Fds of the message being handled that a handler kept. */
  private kept: number[] = [];

  constructor(
    private readonly io: Fdio,
    readonly device: VirtioDevice<DeviceQueue>,
    private readonly emit: (e: SessionEvent) => void = () => {},
    /** Protocol features offered (default `protocolFeaturesFor(device)`). */
    readonly offeredProtocolFeatures: bigint = protocolFeaturesFor(device),
  ) {
    this.rings = device.queues.map(() => ({
      num: 0,
      base: 0,
      desc: 0n,
      avail: 0n,
      used: 0n,
      hasAddr: false,
      kick: -1,
      call: -1,
      err: -1,
      enabled: false,
      started: false,
      kicks: 0,
      calls: 0,
    }));
  }

  /** The front-end negotiated the packed ring (VIRTIO_F_RING_PACKED). */
  private get packed(): boolean {
    return (this.acked & RING_PACKED_BIT) !== 0n;
  }

  get offeredFeatures(): bigint {
    return this.device.offeredFeatures | bit(F_PROTOCOL_FEATURES);
  }
  get ackedFeatures(): bigint {
    return this.acked;
  }
  get ackedProtocolFeatures(): bigint {
    return this.protocolFeatures;
  }
  get isOwned(): boolean {
    return this.owner;
  }
  get guestMemory(): GuestMemory | null {
    return this.memory;
  }
  get memoryRegions(): readonly RegionInfo[] {
    return this.regions;
  }
  /** Live mappings (leak checks). */
  get mappingCount(): number {
    return this.mappings.length;
  }

  private hasProtocol(f: number): boolean {
    return (this.protocolFeatures & bit(f)) !== 0n;
  }

  /**
   * Applies one request. The message's fds become the session's (kept, or closed here);
   * the reply (explicit, or the REPLY_ACK u64 when asked for) is returned. An error means
   * the connection must be closed; a REPLY_ACK failure reply is returned with it when the
   * front-end asked for one.
   */
  handle(m: Message): { readonly reply: Omit<Message, "fds"> | null; readonly error: SessionError | null } {
    this.kept = [];
    this.emit({ _tag: "Request", request: requestName(m.request), flags: m.flags });
    let r: Step;
    if (this.closed) r = err({ _tag: "SocketError", call: "closed", errno: 9 });
    else r = this.apply(m);
    for (const fd of m.fds) if (!this.kept.includes(fd)) this.io.libc.close(fd);
    this.kept = [];
    const wantsAck =
      (m.flags & FLAG_NEED_REPLY) !== 0 &&
      this.hasProtocol(ProtocolFeature.REPLY_ACK) &&
      !hasExplicitReply(m.request);
    if (!r.ok) return { reply: wantsAck ? ack(m.request, false) : null, error: r.error };
    if (r.value !== null) return { reply: reply(m.request, r.value), error: null };
    return { reply: wantsAck ? ack(m.request, true) : null, error: null };
  }

  private keep(fd: number): number {
    this.kept.push(fd);
    return fd;
  }

  private ring(request: number, index: number): Result<RingState, SessionError> {
    const ring = this.rings[index];
    if (ring === undefined) {
      return err({ _tag: "RingIndexOutOfRange", request, index, rings: this.rings.length });
    }
    return ok(ring);
  }

  private apply(m: Message): Step {
    const b = m.body;
    const none: Step = ok(null);
    switch (m.request) {
      case Req.GET_FEATURES:
        return ok({ _tag: "U64", value: this.offeredFeatures });
      case Req.SET_FEATURES:
        return b._tag === "U64" ? this.setFeatures(b.value) : none;
      case Req.GET_PROTOCOL_FEATURES:
        return ok({ _tag: "U64", value: this.offeredProtocolFeatures });
      case Req.SET_PROTOCOL_FEATURES: {
        if (b._tag !== "U64") return none;
        const offered = this.offeredProtocolFeatures;
        if ((b.value & ~offered) !== 0n)
          return err({ _tag: "ProtocolFeaturesNotOffered", acked: b.value, offered });
        this.protocolFeatures = b.value;
        this.emit({ _tag: "ProtocolFeaturesAcked", features: b.value });
        return none;
      }
      case Req.SET_OWNER:
        this.owner = true;
        return none;
      case Req.RESET_OWNER:
        // Deprecated; vhost-user.rst recommends reading it as "disable all rings".
        this.stopDevice();
        for (const r of this.rings) r.enabled = false;
        return none;
      case Req.GET_QUEUE_NUM:
        return ok({ _tag: "U64", value: BigInt(this.rings.length) });
      case Req.SET_MEM_TABLE:
        return b._tag === "MemoryTable" ? this.setMemTable(b.regions, m.fds) : none;
      case Req.SET_VRING_NUM:
      case Req.SET_VRING_BASE:
      case Req.GET_VRING_BASE:
      case Req.SET_VRING_ENABLE:
        return b._tag === "VringState" ? this.vringState(m.request, b.index, b.num) : none;
      case Req.SET_VRING_ADDR:
        return b._tag === "VringAddr" ? this.setVringAddr(b) : none;
      case Req.SET_VRING_KICK:
      case Req.SET_VRING_CALL:
      case Req.SET_VRING_ERR:
        return b._tag === "U64" ? this.setVringFd(m.request, b.value, m.fds) : none;
      case Req.GET_CONFIG:
      case Req.SET_CONFIG: {
        if (!this.hasProtocol(ProtocolFeature.CONFIG)) {
          return err({
            _tag: "ProtocolFeatureNotNegotiated",
            request: m.request,
            feature: ProtocolFeature.CONFIG,
          });
        }
        if (b._tag !== "Config") return none;
        const fits = b.offset + b.data.length <= this.device.configSize;
        if (m.request === Req.SET_CONFIG) {
          if (fits) this.device.writeConfig(b.offset, b.data);
          return none;
        }
        // VU-CONFIG: same offset/size with the bytes; a zero-length payload is the error answer.
        if (!fits) return ok({ _tag: "Config", offset: b.offset, flags: b.flags, data: new Uint8Array(0) });
        const data = new Uint8Array(b.data.length);
        this.device.readConfig(b.offset, data);
        return ok({ _tag: "Config", offset: b.offset, flags: b.flags, data });
      }
      default:
        return err({ _tag: "UnsupportedRequest", request: m.request });
    }
  }

  private setFeatures(value: bigint): Step {
    const offered = this.offeredFeatures;
    if ((value & ~offered) !== 0n) return err({ _tag: "FeaturesNotOffered", acked: value, offered });
    const deviceBits = value & ~bit(F_PROTOCOL_FEATURES);
    if (this.device.isActive) {
      // QEMU repeats SET_FEATURES at every start; the same set is fine, a change is not.
      if (deviceBits !== this.device.ackedFeatures) {
        return err({ _tag: "FeaturesRejected", acked: value, reason: "FeaturesLocked" });
      }
    } else {
      const r = this.device.ackFeatures(deviceBits);
      if (!r.ok) return err({ _tag: "FeaturesRejected", acked: value, reason: r.error._tag });
    }
    this.acked = value;
    const protocolBit = (value & bit(F_PROTOCOL_FEATURES)) !== 0n;
    // VU-RING-ENABLE: without PROTOCOL_FEATURES rings are enabled from the start.
    if (!protocolBit) for (const r of this.rings) r.enabled = true;
    this.emit({ _tag: "FeaturesAcked", features: deviceBits, protocolBit });
    return ok(null);
  }

  private vringState(request: number, index: number, num: number): Step {
    const rr = this.ring(request, index);
    if (!rr.ok) return rr;
    const ring = rr.value;
    switch (request) {
      case Req.SET_VRING_NUM: {
        const max = this.device.queues[index]!.maxSize;
        // A packed ring's size need not be a power of two (VIRTIO 1.2 §2.8).
        if (num === 0 || num > max || (!this.packed && (num & (num - 1)) !== 0)) {
          return err({ _tag: "RingSizeInvalid", index, num, max });
        }
        ring.num = num;
        return ok(null);
      }
      case Req.SET_VRING_BASE:
        ring.base = this.packed ? num >>> 0 : num & 0xffff;
        return ok(null);
      case Req.GET_VRING_BASE: {
        // VU-RING-STOP: the device stops as a whole; every ring's position is kept.
        this.stopDevice();
        ring.started = false;
        if (ring.kick >= 0) this.io.libc.close(ring.kick);
        ring.kick = -1;
        return ok({ _tag: "VringState", index, num: ring.base });
      }
      case Req.SET_VRING_ENABLE: {
        ring.enabled = num !== 0;
        this.emit({ _tag: "RingEnabled", index, enabled: ring.enabled });
        if (ring.enabled && this.device.isActive) this.kick(index);
        return ok(null);
      }
    }
    return ok(null);
  }

  /** VU-RING-ADDR-TRANSLATE: a front-end user address as a guest address, or undefined. */
  userToGuest(userAddr: bigint): bigint | undefined {
    for (const r of this.regions) {
      if (userAddr >= r.userAddr && userAddr - r.userAddr < r.size)
        return r.guestAddr + (userAddr - r.userAddr);
    }
    return undefined;
  }

  private setVringAddr(b: Extract<Body, { _tag: "VringAddr" }>): Step {
    const rr = this.ring(Req.SET_VRING_ADDR, b.index);
    if (!rr.ok) return rr;
    const ring = rr.value;
    const parts = [
      ["desc", b.desc],
      ["avail", b.avail],
      ["used", b.used],
    ] as const;
    const out: bigint[] = [];
    for (const [name, ua] of parts) {
      const g = this.userToGuest(ua);
      if (g === undefined)
        return err({ _tag: "RingAddressUnmapped", index: b.index, ring: name, userAddr: ua });
      out.push(g);
    }
    ring.desc = out[0]!;
    ring.avail = out[1]!;
    ring.used = out[2]!;
    ring.hasAddr = true;
    return ok(null);
  }

  private setVringFd(request: number, value: bigint, fds: readonly number[]): Step {
    const index = Number(value & BigInt(VRING_INDEX_MASK));
    const rr = this.ring(request, index);
    if (!rr.ok) return rr;
    const ring = rr.value;
    const noFd = (value & BigInt(VRING_NOFD)) !== 0n;
    const fd = noFd ? -1 : this.keep(fds[0]!);
    if (request === Req.SET_VRING_KICK) {
      if (noFd) return err({ _tag: "KickPollingUnsupported", index });
      if (ring.kick >= 0) this.io.libc.close(ring.kick);
      ring.kick = fd;
      ring.started = true;
      this.emit({ _tag: "RingStarted", index, size: ring.num, base: ring.base });
      return this.maybeActivate();
    }
    if (request === Req.SET_VRING_CALL) {
      if (ring.call >= 0) this.io.libc.close(ring.call);
      ring.call = fd;
    } else {
      if (ring.err >= 0) this.io.libc.close(ring.err);
      ring.err = fd;
    }
    return ok(null);
  }

  /** VU-MEM-MAP, VU-MEM-OVERLAP, VU-MEM-REPLACE. */
  private setMemTable(regions: readonly MemoryRegionDesc[], fds: readonly number[]): Step {
    for (const r of regions) {
      if (r.size === 0n) return err({ _tag: "EmptyRegion", guestAddr: r.guestAddr });
      if (r.guestAddr + r.size > LIMIT || r.mmapOffset + r.size > LIMIT || r.userAddr + r.size > 1n << 64n) {
        return err({ _tag: "RegionOutOfRange", guestAddr: r.guestAddr, size: r.size });
      }
    }
    for (const space of ["guest", "user"] as const) {
      const key = (r: MemoryRegionDesc): bigint => (space === "guest" ? r.guestAddr : r.userAddr);
      const sorted = [...regions].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
      for (let i = 1; i < sorted.length; i++) {
        const prev = sorted[i - 1]!;
        if (key(prev) + prev.size > key(sorted[i]!)) {
          return err({ _tag: "OverlappingRegions", first: key(prev), second: key(sorted[i]!), space });
        }
      }
    }
    const mapped: Mapping[] = [];
    const infos: RegionInfo[] = [];
    const release = (): void => {
      for (const m of mapped) unmap(this.io, m);
    };
    for (let i = 0; i < regions.length; i++) {
      const r = regions[i]!;
      const off = Number(r.mmapOffset);
      const delta = off % PAGE;
      const size = Number(r.size);
      // A mapping past the end of the file maps, but touching it is SIGBUS: refuse it.
      const end = fileSize(this.io, fds[i]!);
      if (end < 0) {
        release();
        return err({
          _tag: "MapFailed",
          guestAddr: r.guestAddr,
          errno: -end,
          message: this.io.libc.strerror(-end),
        });
      }
      if (r.mmapOffset + r.size > BigInt(end)) {
        release();
        return err({
          _tag: "RegionBeyondFd",
          guestAddr: r.guestAddr,
          end: r.mmapOffset + r.size,
          fileSize: BigInt(end),
        });
      }
      const m = mapShared(this.io, fds[i]!, off - delta, size + delta);
      if (typeof m === "number") {
        release();
        return err({
          _tag: "MapFailed",
          guestAddr: r.guestAddr,
          errno: -m,
          message: this.io.libc.strerror(-m),
        });
      }
      mapped.push(m);
      infos.push({ ...r, bytes: new Uint8Array(m.buffer, delta, size) });
    }
    const mem = GuestMemory.create(infos.map((r) => ({ base: r.guestAddr, bytes: r.bytes })));
    if (!mem.ok) {
      release();
      return err({ _tag: "RegionOutOfRange", guestAddr: regions[0]?.guestAddr ?? 0n, size: 0n });
    }
    // The device stops using the old table before it is unmapped.
    this.stopDevice();
    this.unmapAll();
    this.memory = mem.value;
    this.regions = infos;
    this.mappings = mapped;
    this.emit({ _tag: "MemoryTable", regions });
    // The fds are not needed once mapped (the mappings keep the memory); handle() closes them.
    return this.maybeActivate();
  }

  private unmapAll(): void {
    for (const m of this.mappings) unmap(this.io, m);
    this.mappings = [];
    this.regions = [];
    this.memory = null;
  }

  /** Activates the device when memory is known and every ring is started with addresses. */
  private maybeActivate(): Step {
    const memory = this.memory;
    if (this.device.isActive || memory === null) return ok(null);
    if (!this.rings.every((r) => r.started && r.hasAddr && r.num > 0)) return ok(null);
    // Addresses were translated through the table in force when they came; check again.
    const dev = this.device;
    const ackR = dev.ackFeatures(this.acked & ~bit(F_PROTOCOL_FEATURES));
    if (!ackR.ok) return err({ _tag: "FeaturesRejected", acked: this.acked, reason: ackR.error._tag });
    for (let i = 0; i < this.rings.length; i++) {
      const r = this.rings[i]!;
      const q = dev.queues[i]!;
      q.configure({ size: r.num, ready: true, descTable: r.desc, availRing: r.avail, usedRing: r.used });
      if (q instanceof PackedQueue) q.setPositionsWord(r.base);
      else {
        // VU-RING-BASE: resume at the base; the used index is where the used ring says.
        const usedIdx = memory.readU16(Number(r.used) + 2);
        q.setPositions({ nextAvail: r.base, nextUsed: usedIdx < 0 ? r.base : usedIdx, numAdded: 0 });
      }
    }
    const a = dev.activate(memory, (q) => this.notify(q));
    if (!a.ok) {
      dev.reset();
      return err({ _tag: "DeviceActivateFailed", reason: describeError(a.error) });
    }
    this.emit({ _tag: "DeviceActivated", features: dev.ackedFeatures });
    // Kicks that came while the device was not active were consumed: serve what is there.
    for (let i = 0; i < this.rings.length; i++) if (this.rings[i]!.enabled) this.kick(i);
    return ok(null);
  }

  /** Stops the device, keeping where each ring was (VU-RING-STOP). */
  stopDevice(): void {
    if (!this.device.isActive) return;
    const bases: number[] = [];
    for (let i = 0; i < this.rings.length; i++) {
      const q = this.device.queues[i]!;
      this.rings[i]!.base = q instanceof PackedQueue ? q.positionsWord() : q.nextAvail;
      bases.push(this.rings[i]!.base);
    }
    // Told before the reset, so that a listener can still read the device's state.
    this.emit({ _tag: "DeviceStopped", bases });
    this.device.reset();
  }

  /** VU-CALL: queue q's used-buffer interrupt. */
  private notify(q: number): void {
    const ring = this.rings[q];
    if (ring === undefined || ring.call < 0) return;
    ring.calls++;
    signalEventFd(this.io, ring.call);
  }

  /** Ring `index` was kicked (its eventfd already drained): process it when enabled (VU-RING-ENABLE). */
  kick(index: number): number {
    const ring = this.rings[index];
    if (ring === undefined) return 0;
    ring.kicks++;
    if (!ring.enabled || !this.device.isActive) return 0;
    return this.device.processQueue(index);
  }

  /** Kick fds to watch, with their ring index (same order). */
  kickFds(fds: number[], indexes: number[]): void {
    for (let i = 0; i < this.rings.length; i++) {
      const k = this.rings[i]!.kick;
      if (k >= 0) {
        fds.push(k);
        indexes.push(i);
      }
    }
  }

  /** Stops the device and releases every fd and mapping (VU-DISCONNECT). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopDevice();
    this.device.reset();
    for (const r of this.rings) {
      for (const fd of [r.kick, r.call, r.err]) if (fd >= 0) this.io.libc.close(fd);
      r.kick = r.call = r.err = -1;
      r.started = false;
    }
    this.unmapAll();
  }
}
