/**
 * A bounded pool of frame buffers (NET-POOL-*; squib `FramePool`). Buffers are allocated
 * lazily, returned to a free list of at most `capacity` entries (the rest are left to the
 * GC, so a burst does not pin memory), and handed out clean: length 0 and no bytes left
 * over from the previous user, so one frame's contents never leak into another.
 */

/** A frame buffer: `data` is the storage, `length` the bytes in use. */
export class Frame {
  readonly data: Uint8Array;
  length = 0;
  /** The highest length this buffer has held since it was last cleaned. */
  private dirty = 0;

  constructor(capacity: number) {
    this.data = new Uint8Array(capacity);
  }

  /** The bytes in use, as a view (allocates a view object: for edges and tests). */
  get bytes(): Uint8Array {
    return this.data.subarray(0, this.length);
  }

  /** Copies `src` in as the frame's contents; false when it does not fit. */
  set(src: Uint8Array): boolean {
    if (src.length > this.data.length) return false;
    this.data.set(src, 0);
    this.setLength(src.length);
    return true;
  }

  setLength(n: number): void {
    this.length = n;
    if (n > this.dirty) this.dirty = n;
  }

  /** Zero what a previous user may have written, then empty. */
  clean(): void {
    this.data.fill(0, 0, this.dirty);
    this.dirty = 0;
    this.length = 0;
  }
}

export class FramePool {
  private readonly free: Frame[] = [];
  /** Buffers created so far (tests, diagnostics). */
  allocated = 0;

  constructor(
    /** Bytes per buffer: the largest frame the pool serves. */
    readonly frameCapacity: number,
    /** Free buffers kept for reuse (NET-POOL-BOUND). */
    readonly capacity: number,
  ) {}

  /** NET-POOL-REUSE then NET-POOL-CLEAN. */
  acquire(): Frame {
    const f = this.free.pop();
    if (f !== undefined) {
      f.clean();
      return f;
    }
    this.allocated++;
    return new Frame(this.frameCapacity);
  }

  /** NET-POOL-BOUND: beyond `capacity` free buffers, the buffer is dropped. */
  release(f: Frame): void {
    if (this.free.length < this.capacity && f.data.length === this.frameCapacity) this.free.push(f);
  }

  get freeCount(): number {
    return this.free.length;
  }
}
