/**
 * Tests written to kill mutants that survived `npm run mutate -- impl/vsock/packet.ts`: data
 * scattered over more descriptors than the packet's first segment arrays hold (TX) and than
 * its first RX deque holds (RX, then more than the deque's default), the RX deque reused
 * across chains (a bad chain makes no new one), the default profile of both assemblies, the
 * data of a packet with none, and a split TX header's len 0 and len 64 KiB.
 */
import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import { MAX_PKT_BUF_SIZE, PROFILES, encodeHeader, emptyHeader } from "../../spec/vsock.ts";
import { IoVecBufferMut } from "../iovec/iovec.ts";
import { ListChain, type ListDesc } from "./chain.ts";
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";
import { VsockPacket } from "./packet.ts";
import { VSOCK_PKT_HDR_SIZE } from "../../wire/vsock.ts";

const N = VIRTQ_DESC_F_NEXT;
const W = VIRTQ_DESC_F_WRITE;
const HDR = 0x1000;
const DATA = 0x2000;
const MEM_SIZE = 0x40000;
const memory = (): GuestMemory => GuestMemory.of([{ base: 0, bytes: new Uint8Array(MEM_SIZE) }]);
const header = (len: number): Uint8Array => encodeHeader({ ...emptyHeader, len });
/** Byte i of a patterned stream. */
const pattern = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);

/**
 * A chain of a 44-byte header descriptor and `pieces` data descriptors of `size` bytes each,
 * laid out with gaps (so no two are contiguous), all with `flags` (plus NEXT but the last).
 */
const scattered = (pieces: number, size: number, flags: number): ListDesc[] => {
  const descs: ListDesc[] = [{ addr: HDR, len: VSOCK_PKT_HDR_SIZE, flags: flags | N }];
  for (let i = 0; i < pieces; i++)
    descs.push({ addr: DATA + i * (size + 16), len: size, flags: i < pieces - 1 ? flags | N : flags });
  return descs;
};

describe("data over many descriptors [VSOCK-LAYOUT-SCATTER]", () => {
  it("a TX packet gathers its data from 20 descriptors, more than 8, in order", () => {
    const m = memory();
    const pieces = 20;
    const size = 5;
    const bytes = pattern(pieces * size);
    m.writeFrom(HDR, header(bytes.length));
    const descs = scattered(pieces, size, 0);
    for (let i = 0; i < pieces; i++)
      m.writeFrom(descs[i + 1]!.addr, bytes.subarray(i * size, (i + 1) * size));
    const pkt = new VsockPacket();
    expect(pkt.assembleTx(new ListChain(m, descs), PROFILES.virtio)).toBeNull();
    expect(pkt.data.segmentCount).toBe(pieces);
    expect(pkt.bufSize).toBe(bytes.length);
    const got = new Uint8Array(bytes.length);
    expect(pkt.readData(got)).toBe(bytes.length);
    expect([...got]).toEqual([...bytes]);
  });

  it("an RX packet writes over 100 descriptors (more than its first deque holds) and then 300 (more than the default deque), with a deque sized to the chain", () => {
    const m = memory();
    const pkt = new VsockPacket();
    for (const pieces of [100, 300]) {
      const size = 3;
      const descs = scattered(pieces, size, W);
      expect(pkt.assembleRx(new ListChain(m, descs), PROFILES.virtio)).toBeNull();
      expect(pkt.bufSize).toBe(pieces * size);
      const data = pkt.data;
      expect(data).toBeInstanceOf(IoVecBufferMut);
      // Room for the chain's pieces (one per descriptor), not the most a deque may hold.
      expect((data as IoVecBufferMut).capacity).toBe(pieces);
      const bytes = pattern(pieces * size);
      expect(pkt.writeData(bytes)).toBe(bytes.length);
      for (let i = 0; i < pieces; i++)
        expect([...m.slice(descs[i + 1]!.addr, size, false)!]).toEqual([
          ...bytes.subarray(i * size, (i + 1) * size),
        ]);
    }
  });

  it("an RX chain that fails its bounds check leaves the packet's data deque as it was, and the next chain uses it [VSOCK-BOUNDS]", () => {
    const m = memory();
    const pkt = new VsockPacket();
    const good = scattered(2, 8, W);
    expect(pkt.assembleRx(new ListChain(m, good), PROFILES.virtio)).toBeNull();
    const deque = pkt.data;
    const bad = scattered(2, 8, W);
    bad[2] = { addr: MEM_SIZE - 4, len: 8, flags: W }; // runs past the end of guest memory
    expect(pkt.assembleRx(new ListChain(m, bad), PROFILES.virtio)).toEqual({ _tag: "GuestMemory" });
    expect(pkt.assembleRx(new ListChain(m, good), PROFILES.virtio)).toBeNull();
    expect(pkt.data === deque).toBe(true); // the same object (toBe would diff two deques at length)
  });
});

describe("the default profile is cloud-hypervisor [VSOCK-PROFILE]", () => {
  it("assembleTx without a profile maps the whole data descriptor, as cloud-hypervisor [VSOCK-TX-ORDER]", () => {
    const m = memory();
    m.writeFrom(HDR, header(10));
    const descs = scattered(1, 64, 0);
    const pkt = new VsockPacket();
    expect(pkt.assembleTx(new ListChain(m, descs))).toBeNull();
    expect(pkt.bufSize).toBe(64);
  });

  it("assembleRx without a profile takes a read-only data descriptor, as cloud-hypervisor [VSOCK-RX-ORDER VSOCK-RX-DATA-WRITABLE]", () => {
    const m = memory();
    const descs = scattered(1, 64, W);
    descs[1] = { ...descs[1]!, flags: 0 };
    const pkt = new VsockPacket();
    expect(pkt.assembleRx(new ListChain(m, descs))).toBeNull();
    expect(pkt.bufSize).toBe(64);
  });
});

describe("a packet with no data [VSOCK-TX-EMPTY]", () => {
  it("readData gives 0 bytes on a new packet, after len 0 and after an error", () => {
    const m = memory();
    const pkt = new VsockPacket();
    const dst = new Uint8Array(8).fill(0xee);
    expect(pkt.readData(dst)).toBe(0);
    m.writeFrom(HDR, header(0));
    expect(pkt.assembleTx(new ListChain(m, scattered(1, 8, 0)))).toBeNull();
    expect(pkt.readData(dst, 0)).toBe(0);
    m.writeFrom(HDR, header(8));
    expect(pkt.assembleTx(new ListChain(m, scattered(1, 4, 0)))).toEqual({ _tag: "BufDescTooSmall" });
    expect(pkt.readData(dst)).toBe(0);
    expect([...dst]).toEqual(new Array<number>(8).fill(0xee));
  });
});

describe("a TX header over several descriptors [VSOCK-TX-SPLIT-HDR]", () => {
  it("len 0: no data segment, though the last header descriptor goes on after the header [VSOCK-TX-EMPTY]", () => {
    const m = memory();
    const h = header(0);
    m.writeFrom(0x1000, h.subarray(0, 20));
    m.writeFrom(0x2000, h.subarray(20));
    const descs: ListDesc[] = [
      { addr: 0x1000, len: 20, flags: N },
      { addr: 0x2000, len: 100, flags: 0 },
    ];
    const pkt = new VsockPacket();
    expect(pkt.assembleTx(new ListChain(m, descs), PROFILES.virtio)).toBeNull();
    expect(pkt.data.segmentCount).toBe(0);
    expect(pkt.bufSize).toBe(0);
  });

  it("len 64 KiB (the most) is read from after the header [VSOCK-LAYOUT-SCATTER]", () => {
    const m = memory();
    const h = header(MAX_PKT_BUF_SIZE);
    const bytes = pattern(MAX_PKT_BUF_SIZE);
    m.writeFrom(0x1000, h.subarray(0, 20));
    m.writeFrom(0x2000, h.subarray(20));
    m.writeFrom(0x2000 + VSOCK_PKT_HDR_SIZE - 20, bytes);
    const descs: ListDesc[] = [
      { addr: 0x1000, len: 20, flags: N },
      { addr: 0x2000, len: VSOCK_PKT_HDR_SIZE - 20 + MAX_PKT_BUF_SIZE, flags: 0 },
    ];
    const pkt = new VsockPacket();
    expect(pkt.assembleTx(new ListChain(m, descs), PROFILES.virtio)).toBeNull();
    expect(pkt.bufSize).toBe(MAX_PKT_BUF_SIZE);
    const got = new Uint8Array(MAX_PKT_BUF_SIZE);
    expect(pkt.readData(got)).toBe(MAX_PKT_BUF_SIZE);
    expect(Buffer.compare(got, bytes)).toBe(0);
  });
});
