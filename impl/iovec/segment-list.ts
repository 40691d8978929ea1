/**
 * A chain given as a plain list of segments, for code that has segments rather than a
 * virtqueue (tests, tools, a device splitting its own buffers). It walks like impl/queue's
 * `DescriptorChain`, so both load the same way into IoVecBuffer / IoVecBufferMut.
 */
import type { ChainCursor } from "./iovec.ts";

export interface SegmentSpec {
  /** Guest address: a number below 2^53, or any u64 as a bigint. */
  readonly addr: number | bigint;
  readonly len: number;
  /** Device-writable (VIRTQ_DESC_F_WRITE). */
  readonly write: boolean;
}

export class SegmentList implements ChainCursor {
  readonly headIndex: number;
  private readonly addrs: Float64Array;
  private readonly exact: readonly bigint[];
  private readonly lens: Uint32Array;
  private readonly writes: Uint8Array;
  private at = 0;

  constructor(segments: readonly SegmentSpec[], headIndex = 0) {
    this.headIndex = headIndex;
    const n = segments.length;
    this.addrs = new Float64Array(n);
    this.lens = new Uint32Array(n);
    this.writes = new Uint8Array(n);
    const exact: bigint[] = [];
    for (let i = 0; i < n; i++) {
      const s = segments[i]!;
      const big = typeof s.addr === "bigint" ? s.addr : BigInt(s.addr);
      exact.push(big);
      // Above 2^53 the number is rounded but stays >= 2^53, so outside every region.
      this.addrs[i] = Number(big);
      this.lens[i] = s.len;
      this.writes[i] = s.write ? 1 : 0;
    }
    this.exact = exact;
  }

  get addr(): number {
    return this.addrs[this.at] ?? 0;
  }
  get len(): number {
    return this.lens[this.at] ?? 0;
  }
  addrBig(): bigint {
    return this.exact[this.at] ?? 0n;
  }
  isWriteOnly(): boolean {
    return this.writes[this.at] === 1;
  }
  rewind(): boolean {
    this.at = 0;
    return this.lens.length > 0;
  }
  advance(): boolean {
    if (this.at < this.lens.length) this.at++;
    return this.at < this.lens.length;
  }
}
