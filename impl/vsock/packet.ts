/**
 * virtio-vsock packets over descriptor chains, zero-copy: the header is a view over guest
 * memory and the data is a list of guest segments. Assembly follows spec/vsock.ts rule for
 * rule (VSOCK-TX-ORDER, VSOCK-RX-ORDER) under a profile (VSOCK-PROFILE); a `VsockPacket` is
 * reused across chains, so nothing is allocated per packet on the success path.
 */
import type { GuestMemory } from "../memory/guest-memory.ts";
import {
  MAX_PKT_BUF_SIZE,
  PROFILES,
  VSOCK_PKT_HDR_SIZE,
  type VsockPacketError,
  type VsockProfile,
} from "../../spec/vsock.ts";
import { VIRTQ_DESC_F_NEXT, type ChainCursor } from "./chain.ts";
import { VsockHeaderView } from "./header.ts";

export type { VsockPacketError, VsockProfile } from "../../spec/vsock.ts";
export { PROFILES } from "../../spec/vsock.ts";

const HDR_MISSING: VsockPacketError = { _tag: "HdrDescMissing" };
const UNREADABLE: VsockPacketError = { _tag: "UnreadableDescriptor" };
const UNWRITABLE: VsockPacketError = { _tag: "UnwritableDescriptor" };
const BUF_MISSING: VsockPacketError = { _tag: "BufDescMissing" };
const BUF_TOO_SMALL: VsockPacketError = { _tag: "BufDescTooSmall" };
const GUEST_MEMORY: VsockPacketError = { _tag: "GuestMemory" };

const MAX_SEGMENTS_HINT = 8;

export class VsockPacket {
  memory: GuestMemory | null = null;
  /** Guest address of the header. */
  hdrAddr = 0;
  readonly header = new VsockHeaderView();
  /** Data segments (guest addresses and lengths); only the first `segCount` are valid. */
  segAddr: number[] = new Array<number>(MAX_SEGMENTS_HINT).fill(0);
  segLen: number[] = new Array<number>(MAX_SEGMENTS_HINT).fill(0);
  segCount = 0;
  /** Sum of the segments' lengths: what TX may read or RX may write. */
  bufSize = 0;
  /** A TX header gathered from several descriptors (VSOCK-TX-SPLIT-HDR) is copied here. */
  private readonly splitHdr = new Uint8Array(VSOCK_PKT_HDR_SIZE);
  private readonly splitHdrView = new DataView(this.splitHdr.buffer);

  private reset(memory: GuestMemory): void {
    this.memory = memory;
    this.segCount = 0;
    this.bufSize = 0;
  }

  private push(addr: number, len: number): void {
    const i = this.segCount++;
    this.segAddr[i] = addr;
    this.segLen[i] = len;
    this.bufSize += len;
  }

  /** Binds the header view to guest memory at addr (44 bytes), false when outside memory. */
  private bindHeader(memory: GuestMemory, addr: number, write: boolean): boolean {
    const r = memory.locate(addr, VSOCK_PKT_HDR_SIZE, write);
    if (r < 0) return false;
    const region = memory.regions[r]!;
    this.header.bind(region.view, addr - region.base);
    this.hdrAddr = addr;
    return true;
  }

  private segmentsInMemory(write: boolean): boolean {
    const memory = this.memory!;
    for (let i = 0; i < this.segCount; i++) {
      if (memory.locate(this.segAddr[i]!, this.segLen[i]!, write) < 0) return false;
    }
    return true;
  }

  /** Copies up to `dst.length` bytes of the data buffer from `offset`; returns the count. */
  readData(dst: Uint8Array, offset = 0): number {
    const memory = this.memory;
    if (memory === null) return 0;
    let done = 0;
    let skip = offset;
    for (let i = 0; i < this.segCount && done < dst.length; i++) {
      const len = this.segLen[i]!;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      const n = Math.min(len - skip, dst.length - done);
      const src = memory.slice(this.segAddr[i]! + skip, n, false);
      if (src === undefined) break;
      dst.set(src, done);
      done += n;
      skip = 0;
    }
    return done;
  }

  /** Copies `src` into the data buffer from its start; returns the count written. */
  writeData(src: Uint8Array): number {
    return this.writeDataAt(src, 0);
  }

  /** Copies `src` into the data buffer at `offset`; returns the count written. */
  writeDataAt(src: Uint8Array, offset: number): number {
    const memory = this.memory;
    if (memory === null) return 0;
    let done = 0;
    let skip = offset;
    for (let i = 0; i < this.segCount && done < src.length; i++) {
      const len = this.segLen[i]!;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      const n = Math.min(len - skip, src.length - done);
      const dst = memory.slice(this.segAddr[i]! + skip, n, true);
      if (dst === undefined) break;
      dst.set(src.subarray(done, done + n));
      done += n;
      skip = 0;
    }
    return done;
  }

  /**
   * Fills this packet from a TX chain (VSOCK-TX-ORDER); null on success, else the rule broken.
   * On error the packet's contents are unspecified.
   */
  assembleTx(
    chain: ChainCursor,
    profile: VsockProfile = PROFILES["cloud-hypervisor"],
  ): VsockPacketError | null {
    const memory = chain.memory;
    this.reset(memory);
    if (!chain.rewind()) return HDR_MISSING;
    if (chain.isWriteOnly()) return UNREADABLE;
    const headLen = chain.len;
    if (headLen < VSOCK_PKT_HDR_SIZE) {
      if (profile.splitHeader && profile.scatter) return this.assembleTxSplit(chain);
      return { _tag: "HdrDescTooSmall", len: headLen };
    }
    const headAddr = chain.addr;
    if (!this.bindHeader(memory, headAddr, false)) return GUEST_MEMORY;
    const len = this.header.len();
    if (len === 0) return null; // VSOCK-TX-EMPTY
    if (len > MAX_PKT_BUF_SIZE) return { _tag: "InvalidPktLen", len };
    // The descriptor's own NEXT flag, as rust-vmm's `has_next` (not whether the walk can go on).
    const headHasNext = (chain.flags & VIRTQ_DESC_F_NEXT) !== 0;

    if (profile.scatter) {
      // VSOCK-LAYOUT-SCATTER: the head's bytes after the header, then every descriptor.
      return this.pushScatter(chain, headAddr + VSOCK_PKT_HDR_SIZE, headLen - VSOCK_PKT_HDR_SIZE, len);
    }

    if (profile.singleDescriptor && !headHasNext && headLen - VSOCK_PKT_HDR_SIZE >= len) {
      // VSOCK-LAYOUT-SINGLE (rust-vmm issue 204).
      this.push(headAddr + VSOCK_PKT_HDR_SIZE, len);
      return this.segmentsInMemory(false) ? null : GUEST_MEMORY;
    }
    if (!chain.advance()) return BUF_MISSING;
    if (chain.isWriteOnly()) return UNREADABLE;
    if (chain.len < len) return BUF_TOO_SMALL;
    this.push(chain.addr, profile.txMapWholeData ? chain.len : len);
    return this.segmentsInMemory(false) ? null : GUEST_MEMORY;
  }

  /**
   * VSOCK-TX-SPLIT-HDR: the head (on the cursor) is shorter than the header: the header is
   * copied from as many readable descriptors as it takes, and the data starts right after it.
   */
  private assembleTxSplit(chain: ChainCursor): VsockPacketError | null {
    const memory = chain.memory;
    const scratch = this.splitHdr;
    this.hdrAddr = chain.addr;
    let got = 0;
    let used = 0;
    for (let first = true; got < VSOCK_PKT_HDR_SIZE; first = false) {
      if (!first && !chain.advance()) return { _tag: "HdrDescTooSmall", len: got };
      if (chain.isWriteOnly()) return UNREADABLE;
      used = Math.min(chain.len, VSOCK_PKT_HDR_SIZE - got);
      if (used > 0) {
        const src = memory.slice(chain.addr, used, false);
        if (src === undefined) return GUEST_MEMORY;
        scratch.set(src, got);
      }
      got += used;
    }
    this.header.bind(this.splitHdrView, 0);
    const len = this.header.len();
    if (len === 0) return null; // VSOCK-TX-EMPTY
    if (len > MAX_PKT_BUF_SIZE) return { _tag: "InvalidPktLen", len };
    return this.pushScatter(chain, chain.addr + used, chain.len - used, len);
  }

  /**
   * The data of a scattered TX packet (VSOCK-LAYOUT-SCATTER): `rest` bytes at `restAddr` in
   * the descriptor on the cursor, then the following descriptors, until `len` bytes.
   */
  private pushScatter(
    chain: ChainCursor,
    restAddr: number,
    rest: number,
    len: number,
  ): VsockPacketError | null {
    let remaining = len;
    if (rest > 0) {
      const take = Math.min(rest, remaining);
      this.push(restAddr, take);
      remaining -= take;
    }
    let first = true;
    while (remaining > 0) {
      if (!chain.advance()) return first && this.segCount === 0 ? BUF_MISSING : BUF_TOO_SMALL;
      first = false;
      if (chain.isWriteOnly()) return UNREADABLE;
      const take = Math.min(chain.len, remaining);
      if (take > 0) this.push(chain.addr, take);
      remaining -= take;
    }
    return this.segmentsInMemory(false) ? null : GUEST_MEMORY;
  }

  /** Fills this packet from an RX chain (VSOCK-RX-ORDER); null on success. */
  assembleRx(
    chain: ChainCursor,
    profile: VsockProfile = PROFILES["cloud-hypervisor"],
  ): VsockPacketError | null {
    const memory = chain.memory;
    this.reset(memory);
    if (!chain.rewind()) return HDR_MISSING;
    if (!chain.isWriteOnly()) return UNWRITABLE;
    const headLen = chain.len;
    if (headLen < VSOCK_PKT_HDR_SIZE) return { _tag: "HdrDescTooSmall", len: headLen };
    const headAddr = chain.addr;
    // The descriptor's own NEXT flag, as rust-vmm's `has_next` (not whether the walk can go on).
    const headHasNext = (chain.flags & VIRTQ_DESC_F_NEXT) !== 0;

    if (!profile.rxDataWritable) {
      if (!headHasNext) return BUF_MISSING;
      if (!chain.advance()) return BUF_MISSING;
      // VSOCK-RX-DATA-WRITABLE: this reference does not check the data descriptor's flags.
      if (!this.bindHeader(memory, headAddr, true)) return GUEST_MEMORY;
      this.push(chain.addr, chain.len);
      return this.segmentsInMemory(true) ? null : GUEST_MEMORY;
    }

    if (!this.bindHeader(memory, headAddr, true)) return GUEST_MEMORY;
    const rest = headLen - VSOCK_PKT_HDR_SIZE;
    if (profile.scatter) {
      let room = MAX_PKT_BUF_SIZE;
      if (rest > 0) {
        const take = Math.min(rest, room);
        this.push(headAddr + VSOCK_PKT_HDR_SIZE, take);
        room -= take;
      }
      while (room > 0 && chain.advance()) {
        if (!chain.isWriteOnly()) return UNWRITABLE;
        const take = Math.min(chain.len, room);
        if (take > 0) this.push(chain.addr, take);
        room -= take;
      }
      if (this.segCount === 0) return BUF_MISSING;
      return this.segmentsInMemory(true) ? null : GUEST_MEMORY;
    }

    if (!headHasNext && rest > 0) {
      this.push(headAddr + VSOCK_PKT_HDR_SIZE, rest);
      return this.segmentsInMemory(true) ? null : GUEST_MEMORY;
    }
    if (!headHasNext) return BUF_MISSING;
    if (!chain.advance()) return BUF_MISSING;
    if (!chain.isWriteOnly()) return UNWRITABLE;
    if (chain.len > MAX_PKT_BUF_SIZE) return { _tag: "DescriptorLengthTooLong", len: chain.len };
    this.push(chain.addr, chain.len);
    return this.segmentsInMemory(true) ? null : GUEST_MEMORY;
  }
}
