/**
 * Tests written to kill mutants of packet.ts that Stryker reported as timeouts on a loaded
 * machine but that do not hang (re-checked one by one, every covering test passed): reading
 * and writing the data of a packet that has none or is not RX, the direction in which
 * assembly looks guest memory up, a profile with only one of splitHeader and scatter,
 * zero-length data descriptors in a scattered TX packet, and an RX head whose own flags lack
 * NEXT though the walk goes on (a packed ring's indirect table).
 */
import { describe, expect, it } from "vitest";
import { accessesOf as lookups } from "../../properties/arbitraries/memory.ts";
import { GuestMemory } from "../memory/guest-memory.ts";
import { PROFILES, encodeHeader, emptyHeader, type VsockProfile } from "../../spec/vsock.ts";
import { IoVecBuffer, IoVecBufferMut } from "../iovec/iovec.ts";
import { ListChain, type ListDesc } from "./chain.ts";
import { PackedDescriptorChain } from "../queue/packed-chain.ts";
import {
  PACKED_DESC_ADDR,
  PACKED_DESC_FLAGS,
  PACKED_DESC_LEN,
  PACKED_DESC_SIZE,
  VIRTQ_DESC_F_INDIRECT,
} from "../../wire/packed.ts";
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";
import { VsockPacket } from "./packet.ts";
import { VSOCK_PKT_HDR_SIZE } from "../../wire/vsock.ts";

const N = VIRTQ_DESC_F_NEXT;
const W = VIRTQ_DESC_F_WRITE;
const HDR = 0x1000;
const DATA = 0x2000;
const MEM_SIZE = 0x10000;
const memory = (): GuestMemory => GuestMemory.of([{ base: 0, bytes: new Uint8Array(MEM_SIZE) }]);
const header = (len: number): Uint8Array => encodeHeader({ ...emptyHeader, len });

/** A two-descriptor chain: a 44-byte header and `size` data bytes, both with `flags`. */
const twoDescs = (size: number, flags: number): ListDesc[] => [
  { addr: HDR, len: VSOCK_PKT_HDR_SIZE, flags: flags | N },
  { addr: DATA, len: size, flags },
];

describe("the data of a packet that has none, or is not RX [VSOCK-TX-EMPTY VSOCK-TX-ORDER]", () => {
  it("readDataInto copies nothing from a new packet or one whose assembly failed [VSOCK-TX-EMPTY]", () => {
    const m = memory();
    const pkt = new VsockPacket();
    const dst = new Uint8Array(8).fill(0xee);
    expect(pkt.readDataInto(dst, 0, 8)).toBe(0);
    m.writeFrom(HDR, header(8));
    expect(pkt.assembleTx(new ListChain(m, twoDescs(4, 0)))).toEqual({ _tag: "BufDescTooSmall" });
    expect(pkt.readDataInto(dst, 2, 6)).toBe(0);
    expect([...dst]).toEqual(new Array<number>(8).fill(0xee));
  });

  it("a TX packet's data is device-readable only: writeData returns 0 and leaves guest memory as it was, also the buffer of an earlier RX packet [VSOCK-TX-ORDER]", () => {
    const m = memory();
    const pkt = new VsockPacket();
    const rx = twoDescs(16, W);
    expect(pkt.assembleRx(new ListChain(m, rx), PROFILES.virtio)).toBeNull();
    expect(pkt.bufSize).toBe(16);
    const tx: ListDesc[] = [
      { addr: 0x4000, len: VSOCK_PKT_HDR_SIZE, flags: N },
      { addr: 0x5000, len: 16, flags: 0 },
    ];
    m.writeFrom(0x4000, header(16));
    const before = m.slice(0, MEM_SIZE, false)!.slice();
    for (const profile of [PROFILES["cloud-hypervisor"], PROFILES["rust-vmm"], PROFILES.virtio]) {
      expect(pkt.assembleTx(new ListChain(m, tx), profile)).toBeNull();
      expect(pkt.bufSize).toBe(16);
      expect(pkt.data).toBeInstanceOf(IoVecBuffer);
      expect(pkt.data).not.toBeInstanceOf(IoVecBufferMut);
      expect(pkt.writeData(new Uint8Array(16).fill(0x5a))).toBe(0);
      expect(pkt.writeDataFrom(new Uint8Array(16).fill(0x5a), 0, 16, 0)).toBe(0);
      expect(Buffer.compare(m.slice(0, MEM_SIZE, false)!, before)).toBe(0);
    }
  });
});

describe("assembly looks guest memory up for reading (TX) or writing (RX) [VSOCK-BOUNDS]", () => {
  it("TX: the header and the data are looked up for reading under every profile, a split header's pieces too [VSOCK-TX-ORDER VSOCK-TX-SPLIT-HDR]", () => {
    const m = memory();
    m.writeFrom(HDR, header(8));
    for (const profile of [PROFILES["cloud-hypervisor"], PROFILES["rust-vmm"], PROFILES.virtio]) {
      const pkt = new VsockPacket();
      const seen = lookups(m, () =>
        expect(pkt.assembleTx(new ListChain(m, twoDescs(8, 0)), profile)).toBeNull(),
      );
      expect(seen.some(([addr, len]) => addr === HDR && len === VSOCK_PKT_HDR_SIZE)).toBe(true);
      expect(seen.some(([addr]) => addr === DATA)).toBe(true);
      expect(seen.filter(([, , write]) => write)).toEqual([]);
    }
    const h = header(8);
    m.writeFrom(0x3000, h.subarray(0, 20));
    m.writeFrom(0x3100, h.subarray(20));
    const split: ListDesc[] = [
      { addr: 0x3000, len: 20, flags: N },
      { addr: 0x3100, len: VSOCK_PKT_HDR_SIZE - 20 + 8, flags: 0 },
    ];
    const pkt = new VsockPacket();
    const seen = lookups(m, () =>
      expect(pkt.assembleTx(new ListChain(m, split), PROFILES.virtio)).toBeNull(),
    );
    expect(seen.some(([addr, len]) => addr === 0x3000 && len === 20)).toBe(true);
    expect(seen.some(([addr, len]) => addr === 0x3100 && len === VSOCK_PKT_HDR_SIZE - 20)).toBe(true);
    expect(seen.filter(([, , write]) => write)).toEqual([]);
  });

  it("RX: the header and the data are looked up for writing under every profile [VSOCK-RX-ORDER]", () => {
    const m = memory();
    for (const profile of [PROFILES["cloud-hypervisor"], PROFILES["rust-vmm"], PROFILES.virtio]) {
      const pkt = new VsockPacket();
      const seen = lookups(m, () =>
        expect(pkt.assembleRx(new ListChain(m, twoDescs(8, W)), profile)).toBeNull(),
      );
      expect(seen.some(([addr, len]) => addr === HDR && len === VSOCK_PKT_HDR_SIZE)).toBe(true);
      expect(seen.some(([addr]) => addr === DATA)).toBe(true);
      expect(seen.filter(([, , write]) => !write)).toEqual([]);
    }
  });
});

describe("profiles and layouts [VSOCK-PROFILE]", () => {
  it("a head shorter than 44 bytes is HdrDescTooSmall unless the profile has both splitHeader and scatter [VSOCK-TX-SPLIT-HDR]", () => {
    const m = memory();
    const h = header(4);
    m.writeFrom(0x3000, h.subarray(0, 20));
    m.writeFrom(0x3100, h.subarray(20));
    const split: ListDesc[] = [
      { addr: 0x3000, len: 20, flags: N },
      { addr: 0x3100, len: VSOCK_PKT_HDR_SIZE - 20 + 4, flags: 0 },
    ];
    const pkt = new VsockPacket();
    expect(pkt.assembleTx(new ListChain(m, split), PROFILES.virtio)).toBeNull();
    const onlyScatter: VsockProfile = { ...PROFILES.virtio, splitHeader: false };
    const onlySplit: VsockProfile = { ...PROFILES.virtio, scatter: false };
    for (const profile of [onlyScatter, onlySplit])
      expect(pkt.assembleTx(new ListChain(m, split), profile)).toEqual({ _tag: "HdrDescTooSmall", len: 20 });
  });
});

describe("zero-length data descriptors in a scattered TX packet [VSOCK-LAYOUT-SCATTER]", () => {
  it("are skipped: no segment, not looked up even outside guest memory [VSOCK-BOUNDS]", () => {
    const m = memory();
    m.writeFrom(HDR, header(8));
    const descs: ListDesc[] = [
      { addr: HDR, len: VSOCK_PKT_HDR_SIZE, flags: N },
      { addr: MEM_SIZE + 0x1000, len: 0, flags: N },
      { addr: DATA + 0x100, len: 0, flags: N },
      { addr: DATA, len: 8, flags: 0 },
    ];
    const pkt = new VsockPacket();
    expect(pkt.assembleTx(new ListChain(m, descs), PROFILES.virtio)).toBeNull();
    expect(pkt.data.segmentCount).toBe(1);
    expect(pkt.data.segmentAddr(0)).toBe(DATA);
    expect(pkt.bufSize).toBe(8);
  });

  it("a chain whose only data descriptor is empty is BufDescTooSmall, not BufDescMissing [VSOCK-TX-ORDER]", () => {
    const m = memory();
    m.writeFrom(HDR, header(8));
    const pkt = new VsockPacket();
    expect(pkt.assembleTx(new ListChain(m, twoDescs(0, 0)), PROFILES.virtio)).toEqual({
      _tag: "BufDescTooSmall",
    });
    const headOnly: ListDesc[] = [{ addr: HDR, len: VSOCK_PKT_HDR_SIZE, flags: 0 }];
    expect(pkt.assembleTx(new ListChain(m, headOnly), PROFILES.virtio)).toEqual({ _tag: "BufDescMissing" });
  });
});

describe("an RX head without NEXT whose walk goes on: a packed ring's indirect table [VSOCK-RX-ORDER VSOCK-PROFILE]", () => {
  /**
   * A packed chain of one ring descriptor pointing at an indirect table holding `entries`: a
   * packed table is walked entry after entry, whatever their NEXT flags (none set here).
   */
  const packedIndirect = (
    m: GuestMemory,
    table: number,
    entries: readonly ListDesc[],
  ): PackedDescriptorChain => {
    entries.forEach((d, i) => {
      const at = table + i * PACKED_DESC_SIZE;
      m.writeU64(at + PACKED_DESC_ADDR, BigInt(d.addr));
      m.writeU32(at + PACKED_DESC_LEN, d.len);
      m.writeU16(at + PACKED_DESC_FLAGS, d.flags);
    });
    const chain = new PackedDescriptorChain(m);
    chain.prepare(m, 8);
    chain.store(0, table, 0, entries.length * PACKED_DESC_SIZE, (VIRTQ_DESC_F_INDIRECT << 16) | 3);
    chain.load(0, true, 1, 3);
    return chain;
  };

  it("the head's own NEXT flag decides for cloud-hypervisor and rust-vmm (BufDescMissing); virtio walks on to the data [VSOCK-RX-DATA-WRITABLE VSOCK-LAYOUT-SCATTER]", () => {
    const m = memory();
    const entries: ListDesc[] = [
      { addr: HDR, len: VSOCK_PKT_HDR_SIZE, flags: W },
      { addr: DATA, len: 16, flags: W },
    ];
    const chain = packedIndirect(m, 0x8000, entries);
    const walked: number[] = [];
    for (let ok = chain.rewind(); ok; ok = chain.advance()) walked.push(chain.addr, chain.flags & N);
    expect(walked).toEqual([HDR, 0, DATA, 0]);
    const pkt = new VsockPacket();
    for (const profile of [PROFILES["cloud-hypervisor"], PROFILES["rust-vmm"]])
      expect(pkt.assembleRx(chain, profile)).toEqual({ _tag: "BufDescMissing" });
    expect(pkt.assembleRx(chain, PROFILES.virtio)).toBeNull();
    expect(pkt.bufSize).toBe(16);
    expect(pkt.data.segmentAddr(0)).toBe(DATA);
  });
});
