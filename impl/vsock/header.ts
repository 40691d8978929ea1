import { HDROFF, VSOCK_PKT_HDR_SIZE } from "../../wire/vsock.ts";
/**
 * The 44-byte virtio-vsock header as a zero-copy view over bytes (guest memory or a host
 * buffer), little-endian (VSOCK-HDR-LAYOUT). Getters read the bytes each time; setters write
 * them and return `this` so calls chain (VSOCK-HDR-ACCESSORS). `bind` re-targets the view, so
 * one object serves every packet on a hot path.
 */

/** A CID's low 32 bits, as `setSrcCidHalves`/`setDstCidHalves` and `srcCidLo` take them. */
export const cidLo = (cid: bigint): number => Number(cid & 0xffffffffn);
/** A CID's high 32 bits (a u64 CID). */
export const cidHi = (cid: bigint): number => Number((cid >> 32n) & 0xffffffffn);

export class VsockHeaderView {
  private view: DataView;
  private off: number;

  constructor(view?: DataView, offset = 0) {
    this.view = view ?? new DataView(new ArrayBuffer(VSOCK_PKT_HDR_SIZE));
    this.off = offset;
  }

  /** A header over its own zeroed 44 bytes. */
  static alloc(): VsockHeaderView {
    return new VsockHeaderView();
  }

  /** Points the view at `view[offset .. offset+44)`; the caller has bounds-checked it. */
  bind(view: DataView, offset: number): this {
    this.view = view;
    this.off = offset;
    return this;
  }

  /** A copy of the 44 header bytes. */
  bytes(): Uint8Array {
    return new Uint8Array(this.view.buffer, this.view.byteOffset + this.off, VSOCK_PKT_HDR_SIZE).slice();
  }

  /** Zeroes all 44 bytes. */
  clear(): this {
    for (let i = 0; i < VSOCK_PKT_HDR_SIZE; i += 4) this.view.setUint32(this.off + i, 0, true);
    return this;
  }

  /** Copies another header's 44 bytes into this one. */
  copyFrom(other: VsockHeaderView): this {
    for (let i = 0; i < VSOCK_PKT_HDR_SIZE; i += 4) {
      this.view.setUint32(this.off + i, other.view.getUint32(other.off + i, true), true);
    }
    return this;
  }

  srcCid(): bigint {
    return this.view.getBigUint64(this.off + HDROFF.srcCid, true);
  }
  setSrcCid(cid: bigint): this {
    this.view.setBigUint64(this.off + HDROFF.srcCid, BigInt.asUintN(64, cid), true);
    return this;
  }
  dstCid(): bigint {
    return this.view.getBigUint64(this.off + HDROFF.dstCid, true);
  }
  setDstCid(cid: bigint): this {
    this.view.setBigUint64(this.off + HDROFF.dstCid, BigInt.asUintN(64, cid), true);
    return this;
  }
  /**
   * src_cid from its 32-bit halves (low, high): what `setSrcCid` writes, without making a
   * bigint per packet on hot paths.
   */
  setSrcCidHalves(lo: number, hi: number): this {
    this.view.setUint32(this.off + HDROFF.srcCid, lo >>> 0, true);
    this.view.setUint32(this.off + HDROFF.srcCid + 4, hi >>> 0, true);
    return this;
  }
  /** dst_cid from its 32-bit halves (low, high), as `setSrcCidHalves`. */
  setDstCidHalves(lo: number, hi: number): this {
    this.view.setUint32(this.off + HDROFF.dstCid, lo >>> 0, true);
    this.view.setUint32(this.off + HDROFF.dstCid + 4, hi >>> 0, true);
    return this;
  }
  /** Low 32 bits of src_cid, to compare CIDs on hot paths without a bigint. */
  srcCidLo(): number {
    return this.view.getUint32(this.off + HDROFF.srcCid, true);
  }
  srcCidHi(): number {
    return this.view.getUint32(this.off + HDROFF.srcCid + 4, true);
  }
  dstCidLo(): number {
    return this.view.getUint32(this.off + HDROFF.dstCid, true);
  }
  dstCidHi(): number {
    return this.view.getUint32(this.off + HDROFF.dstCid + 4, true);
  }
  srcPort(): number {
    return this.view.getUint32(this.off + HDROFF.srcPort, true);
  }
  setSrcPort(port: number): this {
    this.view.setUint32(this.off + HDROFF.srcPort, port >>> 0, true);
    return this;
  }
  dstPort(): number {
    return this.view.getUint32(this.off + HDROFF.dstPort, true);
  }
  setDstPort(port: number): this {
    this.view.setUint32(this.off + HDROFF.dstPort, port >>> 0, true);
    return this;
  }
  len(): number {
    return this.view.getUint32(this.off + HDROFF.len, true);
  }
  isEmpty(): boolean {
    return this.len() === 0;
  }
  setLen(len: number): this {
    this.view.setUint32(this.off + HDROFF.len, len >>> 0, true);
    return this;
  }
  type(): number {
    return this.view.getUint16(this.off + HDROFF.type, true);
  }
  setType(type: number): this {
    this.view.setUint16(this.off + HDROFF.type, type & 0xffff, true);
    return this;
  }
  op(): number {
    return this.view.getUint16(this.off + HDROFF.op, true);
  }
  setOp(op: number): this {
    this.view.setUint16(this.off + HDROFF.op, op & 0xffff, true);
    return this;
  }
  flags(): number {
    return this.view.getUint32(this.off + HDROFF.flags, true);
  }
  setFlags(flags: number): this {
    this.view.setUint32(this.off + HDROFF.flags, flags >>> 0, true);
    return this;
  }
  /** ORs one bit (or several) into flags. */
  setFlag(flag: number): this {
    return this.setFlags((this.flags() | flag) >>> 0);
  }
  bufAlloc(): number {
    return this.view.getUint32(this.off + HDROFF.bufAlloc, true);
  }
  setBufAlloc(bufAlloc: number): this {
    this.view.setUint32(this.off + HDROFF.bufAlloc, bufAlloc >>> 0, true);
    return this;
  }
  fwdCnt(): number {
    return this.view.getUint32(this.off + HDROFF.fwdCnt, true);
  }
  setFwdCnt(fwdCnt: number): this {
    this.view.setUint32(this.off + HDROFF.fwdCnt, fwdCnt >>> 0, true);
    return this;
  }
}
