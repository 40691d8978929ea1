/**
 * Sinks and sources over host byte arrays (vm-memory's Read/WriteVolatile for `&mut [u8]`
 * and `&[u8]`): each call moves as much as fits and advances, so a short array makes a
 * short transfer (IOV-SHORT-TRANSFER). Reusable: `reset` points one at another array.
 */
import type { ByteSink, ByteSource } from "./iovec.ts";

export class SliceSink implements ByteSink {
  private dst: Uint8Array;
  /** Bytes taken so far. */
  position = 0;

  constructor(dst: Uint8Array) {
    this.dst = dst;
  }

  reset(dst: Uint8Array): this {
    this.dst = dst;
    this.position = 0;
    return this;
  }

  write(chunk: Uint8Array): number {
    const room = this.dst.length - this.position;
    const n = chunk.length < room ? chunk.length : room;
    if (n === chunk.length) this.dst.set(chunk, this.position);
    else if (n > 0) this.dst.set(chunk.subarray(0, n), this.position);
    this.position += n;
    return n;
  }
}

export class SliceSource implements ByteSource {
  private src: Uint8Array;
  /** Bytes given so far. */
  position = 0;

  constructor(src: Uint8Array) {
    this.src = src;
  }

  reset(src: Uint8Array): this {
    this.src = src;
    this.position = 0;
    return this;
  }

  read(into: Uint8Array): number {
    const left = this.src.length - this.position;
    const n = into.length < left ? into.length : left;
    if (n === this.src.length) into.set(this.src);
    else if (n > 0) into.set(this.src.subarray(this.position, this.position + n));
    this.position += n;
    return n;
  }
}
