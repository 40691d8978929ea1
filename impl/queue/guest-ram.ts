/**
 * The guest's own view of its RAM, for the guest drivers (guest-queue.ts) and what they put
 * in their buffers. Accesses go through `GuestMemory.locate`, so a test's recorder sees
 * the driver's writes too (properties/queue-refinement.test.ts copies them into the
 * reference model's memory); the simulator's bounds guard watches only while the device
 * runs. An out-of-range access here is a bug in the caller's set-up (a well-behaved
 * driver's own rings and buffers), so it throws.
 */
import type { GuestMemory, GuestRegion } from "../memory/guest-memory.ts";

export class GuestRam {
  readonly memory: GuestMemory;
  private readonly regions: readonly GuestRegion[];

  constructor(memory: GuestMemory) {
    this.memory = memory;
    this.regions = memory.regions;
  }

  /**
   * The region holding [addr, addr+len) (addr - base is the offset in its `bytes` and
   * `view`): for callers that write several fields, or copy, without making a view.
   */
  at(addr: number, len: number, write = false): GuestRegion {
    const i = this.memory.locate(addr, len, write);
    if (i < 0) throw new RangeError(`guest driver: [${addr}, +${len}) is outside guest RAM`);
    return this.regions[i]!;
  }

  u16(addr: number): number {
    const r = this.at(addr, 2);
    return r.view.getUint16(addr - r.base, true);
  }
  u32(addr: number): number {
    const r = this.at(addr, 4);
    return r.view.getUint32(addr - r.base, true);
  }
  u64(addr: number): bigint {
    const r = this.at(addr, 8);
    return r.view.getBigUint64(addr - r.base, true);
  }
  setU8(addr: number, v: number): void {
    const r = this.at(addr, 1, true);
    r.view.setUint8(addr - r.base, v);
  }
  setU16(addr: number, v: number): void {
    const r = this.at(addr, 2, true);
    r.view.setUint16(addr - r.base, v & 0xffff, true);
  }
  setU32(addr: number, v: number): void {
    const r = this.at(addr, 4, true);
    r.view.setUint32(addr - r.base, v >>> 0, true);
  }
  setU64(addr: number, v: bigint): void {
    const r = this.at(addr, 8, true);
    r.view.setBigUint64(addr - r.base, BigInt.asUintN(64, v), true);
  }
  /** A DataView over the region holding [addr, addr+len) and addr's offset in it. */
  viewAt(addr: number, len: number, write = false): { readonly view: DataView; readonly off: number } {
    const r = this.at(addr, len, write);
    return { view: r.view, off: addr - r.base };
  }
  /** A view (not a copy) of [addr, addr+len). */
  bytes(addr: number, len: number, write = false): Uint8Array {
    const r = this.at(addr, len, write);
    const off = addr - r.base;
    return r.bytes.subarray(off, off + len);
  }
  write(addr: number, src: Uint8Array): void {
    this.bytes(addr, src.length, true).set(src);
  }
}
