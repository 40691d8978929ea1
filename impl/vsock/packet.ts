/**
 * virtio-vsock packets over descriptor chains, zero-copy: the header is a view over guest
 * memory and the data is an `IoVecBuffer` (TX) or `IoVecBufferMut` (RX) over the guest
 * segments the layout rules pick. Assembly follows spec/vsock.ts rule for rule
 * (VSOCK-TX-ORDER, VSOCK-RX-ORDER) under a profile (VSOCK-PROFILE); a `VsockPacket` is
 * reused across chains, so the success path allocates only the segment views the iovec
 * load makes.
 */
import type { GuestMemory } from "../memory/guest-memory.ts";
import { MAX_PKT_BUF_SIZE, PROFILES, type VsockPacketError, type VsockProfile } from "../../spec/vsock.ts";
import { IoVecBuffer, IoVecBufferMut, type ChainCursor as IoVecChain } from "../iovec/iovec.ts";
import type { PacketChain } from "./chain.ts";
import { VIRTQ_DESC_F_NEXT } from "../../wire/split.ts";
import { VsockHeaderView } from "./header.ts";
import { VSOCK_PKT_HDR_SIZE } from "../../wire/vsock.ts";

const HDR_MISSING: VsockPacketError = { _tag: "HdrDescMissing" };
const UNREADABLE: VsockPacketError = { _tag: "UnreadableDescriptor" };
const UNWRITABLE: VsockPacketError = { _tag: "UnwritableDescriptor" };
const BUF_MISSING: VsockPacketError = { _tag: "BufDescMissing" };
const BUF_TOO_SMALL: VsockPacketError = { _tag: "BufDescTooSmall" };
const GUEST_MEMORY: VsockPacketError = { _tag: "GuestMemory" };

/**
 * The data segments assembly picked (guest address, length), walked as a chain so that
 * `IoVecBuffer.load` / `IoVecBufferMut.load` check and map them. `write` is the direction the
 * packet was assembled for: the descriptor flags were checked where the profile says so.
 */
class PickedSegments implements IoVecChain {
  readonly headIndex = 0;
  write = false;
  count = 0;
  addrs = new Float64Array(8);
  lens = new Float64Array(8);
  private at = 0;

  clear(write: boolean): void {
    this.write = write;
    this.count = 0;
  }

  push(addr: number, len: number): void {
    if (this.count === this.addrs.length) {
      const addrs = new Float64Array(this.count * 2);
      const lens = new Float64Array(this.count * 2);
      addrs.set(this.addrs);
      lens.set(this.lens);
      this.addrs = addrs;
      this.lens = lens;
    }
    this.addrs[this.count] = addr;
    this.lens[this.count] = len;
    this.count++;
  }

  get addr(): number {
    return this.addrs[this.at]!;
  }
  get len(): number {
    return this.lens[this.at]!;
  }
  addrBig(): bigint {
    return BigInt(this.addrs[this.at]!);
  }
  isWriteOnly(): boolean {
    return this.write;
  }
  rewind(): boolean {
    this.at = 0;
    return this.count > 0;
  }
  advance(): boolean {
    if (this.at < this.count) this.at++;
    return this.at < this.count;
  }
}

export class VsockPacket {
  memory: GuestMemory | null = null;
  /** Guest address of the header. */
  hdrAddr = 0;
  readonly header = new VsockHeaderView();
  /** Bytes of data: what TX may read or RX may write (0 until an assembly succeeds). */
  bufSize = 0;
  private readonly picked = new PickedSegments();
  private readonly txData = new IoVecBuffer(8);
  private rxData = new IoVecBufferMut({ capacity: 64 });
  private loaded: IoVecBuffer | IoVecBufferMut | null = null;
  /** A TX header gathered from several descriptors (VSOCK-TX-SPLIT-HDR) is copied here. */
  private readonly splitHdr = new Uint8Array(VSOCK_PKT_HDR_SIZE);
  private readonly splitHdrView = new DataView(this.splitHdr.buffer);

  private reset(memory: GuestMemory, write: boolean): void {
    this.memory = memory;
    this.bufSize = 0;
    this.loaded = null;
    this.txData.clear();
    this.picked.clear(write);
  }

  private push(addr: number, len: number): void {
    this.picked.push(addr, len);
  }

  /** The data segments of the last assembled packet (empty when it has none). */
  get data(): IoVecBuffer | IoVecBufferMut {
    return this.loaded ?? this.txData;
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

  /** Maps the picked segments (each must lie in guest memory: VSOCK-BOUNDS); null when done. */
  private load(): VsockPacketError | null {
    const memory = this.memory!;
    const picked = this.picked;
    if (!picked.write) {
      if (!this.txData.load(memory, picked).ok) return GUEST_MEMORY;
      this.loaded = this.txData;
    } else {
      let r = this.rxData.load(memory, picked);
      if (!r.ok && r.error._tag === "IovDequeOverflow") {
        // A chain of more pieces than ever seen: room for it (at most one per descriptor).
        this.rxData = new IoVecBufferMut({ capacity: Math.min(65536, picked.count) });
        r = this.rxData.load(memory, picked);
      }
      if (!r.ok) return GUEST_MEMORY;
      this.loaded = this.rxData;
    }
    this.bufSize = this.loaded.len;
    return null;
  }

  /** Copies up to `dst.length` bytes of the data buffer from `offset`; returns the count. */
  readData(dst: Uint8Array, offset = 0): number {
    return this.loaded === null ? 0 : this.loaded.readInto(dst, offset);
  }

  /** Copies the data buffer's first `to - from` bytes into `dst[from, to)`; returns the count. */
  readDataInto(dst: Uint8Array, from: number, to: number): number {
    return this.loaded === null ? 0 : this.loaded.readInto(dst, 0, from, to);
  }

  /** Copies `src[from, to)` into the data buffer at `at`; returns the count written (RX packets only). */
  writeDataFrom(src: Uint8Array, from: number, to: number, at: number): number {
    return this.loaded === this.rxData ? this.rxData.writeFrom(src, at, from, to) : 0;
  }

  /** Copies `src` into the data buffer from its start; returns the count written (RX packets only). */
  writeData(src: Uint8Array): number {
    return this.writeDataFrom(src, 0, src.length, 0);
  }

  /**
   * Fills this packet from a TX chain (VSOCK-TX-ORDER); null on success, else the rule broken.
   * On error the packet's contents are unspecified.
   */
  assembleTx(
    chain: PacketChain,
    profile: VsockProfile = PROFILES["cloud-hypervisor"],
  ): VsockPacketError | null {
    const memory = chain.memory;
    this.reset(memory, false);
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
      return this.load();
    }
    if (!chain.advance()) return BUF_MISSING;
    if (chain.isWriteOnly()) return UNREADABLE;
    if (chain.len < len) return BUF_TOO_SMALL;
    this.push(chain.addr, profile.txMapWholeData ? chain.len : len);
    return this.load();
  }

  /**
   * VSOCK-TX-SPLIT-HDR: the head (on the cursor) is shorter than the header: the header is
   * copied from as many readable descriptors as it takes, and the data starts right after it.
   */
  private assembleTxSplit(chain: PacketChain): VsockPacketError | null {
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
    chain: PacketChain,
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
      if (!chain.advance()) return first && this.picked.count === 0 ? BUF_MISSING : BUF_TOO_SMALL;
      first = false;
      if (chain.isWriteOnly()) return UNREADABLE;
      const take = Math.min(chain.len, remaining);
      if (take > 0) this.push(chain.addr, take);
      remaining -= take;
    }
    return this.load();
  }

  /** Fills this packet from an RX chain (VSOCK-RX-ORDER); null on success. */
  assembleRx(
    chain: PacketChain,
    profile: VsockProfile = PROFILES["cloud-hypervisor"],
  ): VsockPacketError | null {
    const memory = chain.memory;
    this.reset(memory, true);
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
      return this.load();
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
      if (this.picked.count === 0) return BUF_MISSING;
      return this.load();
    }

    if (!headHasNext && rest > 0) {
      this.push(headAddr + VSOCK_PKT_HDR_SIZE, rest);
      return this.load();
    }
    if (!headHasNext) return BUF_MISSING;
    if (!chain.advance()) return BUF_MISSING;
    if (!chain.isWriteOnly()) return UNWRITABLE;
    if (chain.len > MAX_PKT_BUF_SIZE) return { _tag: "DescriptorLengthTooLong", len: chain.len };
    this.push(chain.addr, chain.len);
    return this.load();
  }
}
