/**
 * The guest (driver) side of one virtqueue, whichever ring it uses: what Linux's
 * drivers/virtio/virtio_ring.c offers its drivers (virtqueue_add_sgs, virtqueue_kick_prepare,
 * virtqueue_get_buf, virtqueue_disable_cb / enable_cb_prepare / poll / enable_cb_delayed),
 * and what rust-vmm's mock driver offers tests. `SplitDriver` (split-driver.ts, VIRTIO 1.2
 * §2.7) and `PackedDriver` (packed-driver.ts, §2.8) implement it; unit tests, properties,
 * benches, the simulator, the vhost-user front-end and the conformance suite drive a queue
 * through it, and the subject drivers (net, vsock) are written on top of it.
 *
 * - `add` takes a chain of segments with their guest addresses (device-readable first, then
 *   device-writable, §2.7.4.2 / §2.8.17) and a token the caller gets back; it returns the id
 *   the device will hand back in its used element (the head descriptor's index on the split
 *   ring, the buffer id on the packed ring), or `NO_ROOM` (Linux: -ENOSPC).
 * - `publish` makes what `add` wrote visible to the device (split: avail.idx after the
 *   barrier; packed: the first descriptors' flags).
 * - `getBuf` validates the device's used entry as Linux does (BAD_RING): a bad id, one not in
 *   flight, comes back as `{ kind: "bad" }`. It never throws on what the device wrote.
 * - Raw hostile writes: `descAddr` / `firstFlags` / `setFirstFlags` on either ring; the
 *   ring-specific ones (descriptor, ring, index and event fields) are methods of the concrete
 *   drivers, named after what they write. A well-behaved driver never calls them.
 * - The simulator's oracle and metrics watch the driver through a `GuestQueueProbe`: the
 *   driver calls it and imports nothing from the simulator.
 *
 * The driver reads and writes guest memory through `GuestRam` (guest-ram.ts), which goes
 * through `GuestMemory.locate`: a memory recorder sees the driver's accesses too, and the
 * simulator's bounds guard, armed only while the device runs, sees only the device's.
 */

/** `add` found too few free descriptors (split) or ring slots / buffer ids (packed). */
export const NO_ROOM = -1;

/** One buffer of a chain as the driver recorded it (`addr` as a number: exact below 2^53). */
export interface GuestSegment {
  readonly addr: number;
  readonly len: number;
  /** Device-writable (VIRTQ_DESC_F_WRITE). */
  readonly write: boolean;
}

/** One buffer of a chain as a caller hands it to a driver's addChain (either ring). */
export interface DriverBuffer {
  readonly addr: number | bigint;
  readonly len: number;
  /** Device-writable (VIRTQ_DESC_F_WRITE). */
  readonly write?: boolean;
}

/**
 * What a driver records of a chain it places, on either ring: its segments, and the bytes
 * the device may read (out) and write (in).
 */
export const recordSegments = (
  buffers: readonly DriverBuffer[],
  owned = false,
): { readonly segments: readonly GuestSegment[]; readonly outBytes: number; readonly inBytes: number } => {
  let outBytes = 0;
  let inBytes = 0;
  for (const b of buffers) {
    if (b.write === true) inBytes += b.len;
    else outBytes += b.len;
  }
  // Owned and already recorded (BufferSlabs.place's): kept as they are, array and all.
  if (owned && buffers.every(isGuestSegment)) return { segments: buffers, outBytes, inBytes };
  const segments: GuestSegment[] = [];
  for (const b of buffers) segments.push({ addr: Number(b.addr), len: b.len, write: b.write === true });
  return { segments, outBytes, inBytes };
};

/** A buffer already in the form the driver records (a number address, the direction set). */
const isGuestSegment = (b: DriverBuffer): b is GuestSegment =>
  typeof b.addr === "number" && typeof b.write === "boolean";

/** A segment as `add` takes it: `addr` may be any u64 (a hostile or foreign chain). */
export interface SegmentInput {
  readonly addr: number | bigint;
  readonly len: number;
  readonly write: boolean;
}

/** A chain the driver made available and has not reclaimed yet. */
export interface GuestBuffer {
  /** The driver's sequence number for this buffer (order of addition). */
  readonly seq: number;
  /** What the device hands back: head descriptor index (split) or buffer id (packed). */
  readonly id: number;
  readonly segments: readonly GuestSegment[];
  readonly indirect: boolean;
  /** Where its indirect table lies (when `indirect`). */
  readonly table: number;
  /** Descriptors (split) or ring slots (packed) it takes: 1 for an indirect chain. */
  readonly ringDescs: number;
  readonly outBytes: number;
  readonly inBytes: number;
  /** What the caller wants back with it (a frame id, a packet...). */
  readonly token: number;
}

export type GetBuf =
  | { readonly kind: "none" }
  | { readonly kind: "buf"; readonly buf: GuestBuffer; readonly len: number }
  | { readonly kind: "bad"; readonly id: number; readonly len: number; readonly reason: string };

/** virtqueue_kick_prepare's decision, with what it was made from (for traces). */
export interface KickDecision {
  readonly need: boolean;
  /** The driver's avail position before and after what it added since the last decision. */
  readonly old: number;
  readonly new: number;
  /** The device's event index it compared against (EVENT_IDX), -1 without. */
  readonly event: number;
}

/** A part of the ring in guest memory, and whether the device writes it. */
export interface RingArea {
  readonly addr: number;
  readonly len: number;
  readonly deviceWrites: boolean;
}

/** What the simulator's oracle and metrics watch; every callback is optional. */
export interface GuestQueueProbe {
  /** A chain was written (not yet published). */
  added?(buf: GuestBuffer): void;
  /** What `add` wrote is now visible to the device. */
  published?(): void;
  /** The kick decision after publishing. */
  kicked?(k: KickDecision): void;
  /** `getBuf` reclaimed a buffer with this used length. */
  reaped?(buf: GuestBuffer, len: number): void;
  /** `getBuf` found a used entry Linux would call BAD_RING. */
  badUsed?(id: number, len: number, reason: string): void;
}

export interface GuestQueueOptions {
  /** VIRTIO_F_EVENT_IDX negotiated. */
  readonly eventIdx?: boolean;
  /** VIRTIO_F_RING_INDIRECT_DESC negotiated: `add` may use an indirect table. */
  readonly indirect?: boolean;
  readonly probe?: GuestQueueProbe;
}

export interface AddOptions {
  /** Put the segments in an indirect table at this guest address (ignored without INDIRECT_DESC). */
  readonly indirectTable?: number | bigint;
  /**
   * The segments (the array and its elements) are the caller's to give away, made for this
   * call and never changed after: the driver may keep them as its record instead of copying
   * them (BufferSlabs.add).
   */
  readonly owned?: boolean;
}

const OWNED: AddOptions = { owned: true };

/** The ring-neutral driver side of one virtqueue. */
export interface GuestQueue {
  readonly ring: "split" | "packed";
  readonly size: number;
  readonly eventIdx: boolean;
  /** Free descriptors (split) or ring slots (packed). */
  readonly numFree: number;
  /** Descriptors or slots in use. */
  readonly occupancy: number;
  /** Buffers added and not yet reclaimed. */
  readonly inFlightCount: number;
  /** Buffers added since the last `publish`. */
  readonly unpublished: number;
  /** Whether used-buffer notifications are on (not after `disableCb`). */
  readonly callbacksEnabled: boolean;
  /** Where the ring's parts lie (what the device may read, and write). */
  areas(): readonly RingArea[];
  /** The id the next `add` will return (NO_ROOM when no id is free): lets callers place buffers per id. */
  nextId(): number;
  /** The free descriptors / slots a chain of `n` segments needs (1 when it would go indirect). */
  descsFor(n: number, indirect: boolean): number;
  add(segments: readonly SegmentInput[], token: number, opts?: AddOptions): number;
  publish(): void;
  /** Linux virtqueue_kick_prepare (after virtio_mb). */
  kickPrepare(): KickDecision;
  /** Linux virtqueue_get_buf. */
  getBuf(): GetBuf;
  inFlightAt(id: number): GuestBuffer | undefined;
  /** Used entries the device published that `getBuf` has not taken (0 when the next one is bad). */
  usedPending(): number;
  /**
   * Used entries the device may publish before it owes the driver an interrupt again
   * (EVENT_IDX: the distance to the driver's event index; 0 without it).
   */
  interruptThreshold(): number;
  disableCb(): void;
  /** Returns the opaque value for `poll`. */
  enableCbPrepare(): number;
  /** More used buffers since `enableCbPrepare` returned `last`? */
  poll(last: number): boolean;
  /** Interrupt only after ~3/4 of the outstanding buffers; false when that many are used already. */
  enableCbDelayed(): boolean;

  // ---- raw hooks a hostile guest corrupts its own chains with (a well-behaved driver never calls them)

  /**
   * The guest address of the first ring descriptor of the chain `id` in flight: its addr is
   * the u64 at +0 and its len the u32 at +8 on both rings (wire DESC_ADDR/DESC_LEN).
   */
  descAddr(id: number): number;
  /** That descriptor's flags, as the device will see them once published. */
  firstFlags(id: number): number;
  /** Rewrites them (on the packed ring before publication too: the held value). */
  setFirstFlags(id: number, flags: number): void;
}

/**
 * Buffer space per id (a slab each) and an indirect table per id, as a driver's slab
 * allocator hands out: callers that do not choose addresses themselves place a chain in
 * the slab of the id `add` will return (`GuestQueue.nextId`).
 */
export class BufferSlabs {
  readonly base: number;
  readonly slabBytes: number;
  readonly maxIndirect: number;
  private readonly tables: number;

  constructor(base: number, size: number, slabBytes: number, maxIndirect: number) {
    this.base = base;
    this.slabBytes = slabBytes;
    this.maxIndirect = maxIndirect;
    this.tables = base + size * slabBytes;
  }

  /** Bytes from `base` that `size` slabs and their indirect tables take. */
  static bytesNeeded(size: number, slabBytes: number, maxIndirect: number): number {
    return size * slabBytes + size * maxIndirect * 16;
  }

  slabAddr(id: number): number {
    return this.base + id * this.slabBytes;
  }

  tableAddr(id: number): number {
    return this.tables + id * this.maxIndirect * 16;
  }

  /** Places `segs` one after another in `id`'s slab, `gaps[i]` bytes before segment i. */
  place(
    id: number,
    segs: readonly { readonly len: number; readonly write: boolean }[],
    gaps?: readonly number[],
  ): GuestSegment[] {
    // Sized up front: a chain's few segments, not the room a growing array reserves.
    const out = new Array<GuestSegment>(segs.length);
    let addr = this.slabAddr(id);
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i]!;
      addr += gaps?.[i] ?? 0;
      out[i] = { addr, len: s.len, write: s.write };
      addr += s.len;
    }
    if (addr > this.slabAddr(id) + this.slabBytes) throw new RangeError("chain does not fit its slab");
    return out;
  }

  /**
   * Adds a chain of `segs` to `q` in the slab of the id it will get, through an indirect
   * table when `indirect` and the table holds them; NO_ROOM when the queue is full.
   */
  add(
    q: GuestQueue,
    segs: readonly { readonly len: number; readonly write: boolean }[],
    indirect: boolean,
    token: number,
    gaps?: readonly number[],
  ): number {
    const id = q.nextId();
    if (id === NO_ROOM) return NO_ROOM;
    const useTable = indirect && segs.length > 1 && segs.length <= this.maxIndirect;
    if (q.numFree < q.descsFor(segs.length, useTable)) return NO_ROOM;
    const opts = useTable ? { indirectTable: this.tableAddr(id), owned: true } : OWNED;
    return q.add(this.place(id, segs, gaps), token, opts);
  }
}
