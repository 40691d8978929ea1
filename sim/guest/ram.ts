/**
 * The guest's own view of its RAM. The driver model writes rings and buffers through this,
 * not through GuestMemory.locate, so that a memory recorder sees only what the device
 * touches (SIM-BOUNDS). An out-of-range access here is a bug in the simulator, so it throws.
 */
import type { GuestMemory, GuestRegion } from "../../impl/memory/guest-memory.ts";

export class GuestRam {
  readonly memory: GuestMemory;
  private readonly regions: readonly GuestRegion[];

  constructor(memory: GuestMemory) {
    this.memory = memory;
    this.regions = memory.regions;
  }

  private at(addr: number, len: number): { r: GuestRegion; off: number } {
    for (const r of this.regions) {
      if (addr >= r.base && addr + len <= r.end) return { r, off: addr - r.base };
    }
    throw new RangeError(`guest driver model: [${addr}, +${len}) is outside guest RAM`);
  }

  u16(addr: number): number {
    const { r, off } = this.at(addr, 2);
    return r.view.getUint16(off, true);
  }
  u32(addr: number): number {
    const { r, off } = this.at(addr, 4);
    return r.view.getUint32(off, true);
  }
  u64(addr: number): bigint {
    const { r, off } = this.at(addr, 8);
    return r.view.getBigUint64(off, true);
  }
  setU8(addr: number, v: number): void {
    const { r, off } = this.at(addr, 1);
    r.view.setUint8(off, v);
  }
  setU16(addr: number, v: number): void {
    const { r, off } = this.at(addr, 2);
    r.view.setUint16(off, v & 0xffff, true);
  }
  setU32(addr: number, v: number): void {
    const { r, off } = this.at(addr, 4);
    r.view.setUint32(off, v >>> 0, true);
  }
  setU64(addr: number, v: bigint): void {
    const { r, off } = this.at(addr, 8);
    r.view.setBigUint64(off, BigInt.asUintN(64, v), true);
  }
  /** A view (not a copy) of [addr, addr+len). */
  bytes(addr: number, len: number): Uint8Array {
    const { r, off } = this.at(addr, len);
    return r.bytes.subarray(off, off + len);
  }
  write(addr: number, src: Uint8Array): void {
    this.bytes(addr, src.length).set(src);
  }
}
