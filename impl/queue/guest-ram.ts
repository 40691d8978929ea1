/**
 * The guest's own view of its RAM. The guest drivers (guest-queue.ts) write rings and
 * buffers through this, not through GuestMemory.locate, so that a memory recorder or the
 * simulator's bounds guard sees only what the device touches (SIM-BOUNDS). An out-of-range
 * access here is a bug in the caller's set-up (a well-behaved driver's own rings and
 * buffers), so it throws.
 */
import type { GuestMemory, GuestRegion } from "../memory/guest-memory.ts";

export class GuestRam {
  readonly memory: GuestMemory;
  private readonly regions: readonly GuestRegion[];

  constructor(memory: GuestMemory) {
    this.memory = memory;
    this.regions = memory.regions;
  }

  private at(addr: number, len: number): GuestRegion {
    for (const r of this.regions) if (addr >= r.base && addr + len <= r.end) return r;
    throw new RangeError(`guest driver: [${addr}, +${len}) is outside guest RAM`);
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
    const r = this.at(addr, 1);
    r.view.setUint8(addr - r.base, v);
  }
  setU16(addr: number, v: number): void {
    const r = this.at(addr, 2);
    r.view.setUint16(addr - r.base, v & 0xffff, true);
  }
  setU32(addr: number, v: number): void {
    const r = this.at(addr, 4);
    r.view.setUint32(addr - r.base, v >>> 0, true);
  }
  setU64(addr: number, v: bigint): void {
    const r = this.at(addr, 8);
    r.view.setBigUint64(addr - r.base, BigInt.asUintN(64, v), true);
  }
  /** A DataView over the region holding [addr, addr+len) and addr's offset in it. */
  viewAt(addr: number, len: number): { readonly view: DataView; readonly off: number } {
    const r = this.at(addr, len);
    return { view: r.view, off: addr - r.base };
  }
  /** A view (not a copy) of [addr, addr+len). */
  bytes(addr: number, len: number): Uint8Array {
    const r = this.at(addr, len);
    const off = addr - r.base;
    return r.bytes.subarray(off, off + len);
  }
  write(addr: number, src: Uint8Array): void {
    this.bytes(addr, src.length).set(src);
  }
}
