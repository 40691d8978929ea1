import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import { MAX_PKT_BUF_SIZE, PROFILES } from "../../spec/vsock.ts";
import { ListChain, type ListDesc } from "./chain.ts";
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";
import { VsockPacket } from "./packet.ts";
import { HDROFF, VSOCK_PKT_HDR_SIZE } from "../../wire/vsock.ts";

// The seed's test context: a header descriptor and a data descriptor, header len 1024.
const HDR = 0x1000;
const BUF = 0x4000;
const BUF_LEN = 4096;

const context = (write: boolean) => {
  const memory = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x20000) }]);
  const w = write ? VIRTQ_DESC_F_WRITE : 0;
  const descs: ListDesc[] = [
    { addr: HDR, len: VSOCK_PKT_HDR_SIZE, flags: VIRTQ_DESC_F_NEXT | w },
    { addr: BUF, len: BUF_LEN, flags: w },
  ];
  memory.writeU32(HDR + HDROFF.len, 1024);
  return { memory, descs, setPktLen: (len: number) => memory.writeU32(HDR + HDROFF.len, len) };
};

const tx = (memory: GuestMemory, descs: ListDesc[], profile = PROFILES["cloud-hypervisor"]) => {
  const pkt = new VsockPacket();
  return { pkt, error: pkt.assembleTx(new ListChain(memory, descs), profile) };
};
const rx = (memory: GuestMemory, descs: ListDesc[], profile = PROFILES["cloud-hypervisor"]) => {
  const pkt = new VsockPacket();
  return { pkt, error: pkt.assembleRx(new ListChain(memory, descs), profile) };
};

describe("TX packet assembly, the seed's cases [VSOCK-TX-ORDER]", () => {
  it("assembles header and data buffer (whole data descriptor)", () => {
    const { memory, descs } = context(false);
    const { pkt, error } = tx(memory, descs);
    expect(error).toBeNull();
    expect(pkt.hdrAddr).toBe(HDR);
    expect(pkt.header.len()).toBe(1024);
    expect(pkt.bufSize).toBe(BUF_LEN);
  });
  it("write-only header descriptor is UnreadableDescriptor", () => {
    const { memory, descs } = context(false);
    descs[0] = { ...descs[0]!, flags: VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE };
    expect(tx(memory, descs).error).toEqual({ _tag: "UnreadableDescriptor" });
  });
  it("header descriptor of 43 bytes is HdrDescTooSmall", () => {
    const { memory, descs } = context(false);
    descs[0] = { ...descs[0]!, len: VSOCK_PKT_HDR_SIZE - 1 };
    expect(tx(memory, descs).error).toEqual({ _tag: "HdrDescTooSmall", len: 43 });
  });
  it("len 0 has no data buffer [VSOCK-TX-EMPTY]", () => {
    const { memory, descs, setPktLen } = context(false);
    setPktLen(0);
    descs[1] = { ...descs[1]!, flags: VIRTQ_DESC_F_WRITE }; // never looked at
    const { pkt, error } = tx(memory, descs);
    expect(error).toBeNull();
    expect(pkt.data.segmentCount).toBe(0);
    expect(pkt.bufSize).toBe(0);
  });
  it("len above 64 KiB is InvalidPktLen", () => {
    const { memory, descs, setPktLen } = context(false);
    setPktLen(MAX_PKT_BUF_SIZE + 1);
    expect(tx(memory, descs).error).toEqual({ _tag: "InvalidPktLen", len: MAX_PKT_BUF_SIZE + 1 });
    setPktLen(MAX_PKT_BUF_SIZE);
    descs[1] = { ...descs[1]!, len: MAX_PKT_BUF_SIZE };
    expect(tx(memory, descs).error).toBeNull();
  });
  it("missing data descriptor is BufDescMissing", () => {
    const { memory, descs } = context(false);
    descs[0] = { ...descs[0]!, flags: 0 };
    expect(tx(memory, descs).error).toEqual({ _tag: "BufDescMissing" });
  });
  it("write-only data descriptor is UnreadableDescriptor", () => {
    const { memory, descs } = context(false);
    descs[1] = { ...descs[1]!, flags: VIRTQ_DESC_F_WRITE };
    expect(tx(memory, descs).error).toEqual({ _tag: "UnreadableDescriptor" });
  });
  it("data descriptor smaller than len is BufDescTooSmall", () => {
    const { memory, descs, setPktLen } = context(false);
    setPktLen(8 * 1024);
    descs[1] = { ...descs[1]!, len: 4 * 1024 };
    expect(tx(memory, descs).error).toEqual({ _tag: "BufDescTooSmall" });
  });
  it("header or data outside guest memory is GuestMemory [VSOCK-BOUNDS]", () => {
    const { memory, descs } = context(false);
    descs[1] = { ...descs[1]!, addr: 0x20000 - 100 };
    expect(tx(memory, descs).error).toEqual({ _tag: "GuestMemory" });
    descs[0] = { ...descs[0]!, addr: 2 ** 60 };
    expect(tx(memory, descs).error).toEqual({ _tag: "GuestMemory" });
  });
});

describe("RX packet assembly, the seed's cases [VSOCK-RX-ORDER]", () => {
  it("assembles header and data buffer", () => {
    const { memory, descs } = context(true);
    const { pkt, error } = rx(memory, descs);
    expect(error).toBeNull();
    expect(pkt.bufSize).toBe(BUF_LEN);
  });
  it("read-only header is UnwritableDescriptor", () => {
    const { memory, descs } = context(true);
    descs[0] = { ...descs[0]!, flags: VIRTQ_DESC_F_NEXT };
    expect(rx(memory, descs).error).toEqual({ _tag: "UnwritableDescriptor" });
  });
  it("header descriptor of 43 bytes is HdrDescTooSmall", () => {
    const { memory, descs } = context(true);
    descs[0] = { ...descs[0]!, len: 43 };
    expect(rx(memory, descs).error).toEqual({ _tag: "HdrDescTooSmall", len: 43 });
  });
  it("missing buffer descriptor is BufDescMissing", () => {
    const { memory, descs } = context(true);
    descs[0] = { ...descs[0]!, flags: VIRTQ_DESC_F_WRITE };
    expect(rx(memory, descs).error).toEqual({ _tag: "BufDescMissing" });
  });
  it("read-only data is accepted by cloud-hypervisor (2022) but not rust-vmm [VSOCK-RX-DATA-WRITABLE VSOCK-PROFILE]", () => {
    const { memory, descs } = context(true);
    descs[1] = { ...descs[1]!, flags: 0 };
    expect(rx(memory, descs).error).toBeNull();
    expect(rx(memory, descs, PROFILES["rust-vmm"]).error).toEqual({ _tag: "UnwritableDescriptor" });
    expect(rx(memory, descs, PROFILES.virtio).error).toEqual({ _tag: "UnwritableDescriptor" });
  });
});

describe("the packet buffer, the seed's case", () => {
  it("bytes written to the RX buffer read back [VSOCK-RX-ORDER]", () => {
    const { memory, descs } = context(true);
    const { pkt } = rx(memory, descs);
    const src = Uint8Array.from({ length: BUF_LEN }, (_, i) => i % 0x100);
    expect(pkt.writeData(src)).toBe(BUF_LEN);
    const back = new Uint8Array(BUF_LEN);
    expect(pkt.readData(back)).toBe(BUF_LEN);
    expect(back).toEqual(src);
    expect(memory.readU8(BUF + 300)).toBe(300 % 0x100);
  });
});

describe("Linux 6.2+ layouts and the profiles [VSOCK-LAYOUT-SINGLE VSOCK-LAYOUT-SCATTER VSOCK-PROFILE]", () => {
  it("header and data in one TX descriptor: BufDescMissing for cloud-hypervisor, data after the header otherwise", () => {
    const { memory, setPktLen } = context(false);
    setPktLen(100);
    const one: ListDesc[] = [{ addr: HDR, len: VSOCK_PKT_HDR_SIZE + 100, flags: 0 }];
    expect(tx(memory, one).error).toEqual({ _tag: "BufDescMissing" });
    for (const p of [PROFILES["rust-vmm"], PROFILES.virtio]) {
      const { pkt, error } = tx(memory, one, p);
      expect(error).toBeNull();
      expect([pkt.data.segmentAddr(0), pkt.data.segment(0)?.length, pkt.data.segmentCount]).toEqual([
        HDR + 44,
        100,
        1,
      ]);
    }
  });
  it("header and data in one RX descriptor", () => {
    const { memory } = context(true);
    const one: ListDesc[] = [{ addr: HDR, len: 4096, flags: VIRTQ_DESC_F_WRITE }];
    expect(rx(memory, one).error).toEqual({ _tag: "BufDescMissing" });
    const { pkt, error } = rx(memory, one, PROFILES["rust-vmm"]);
    expect(error).toBeNull();
    expect(pkt.bufSize).toBe(4096 - 44);
  });
  it("data over three descriptors: only the virtio profile gathers it", () => {
    const { memory, setPktLen } = context(false);
    setPktLen(3000);
    const three: ListDesc[] = [
      { addr: HDR, len: 44, flags: VIRTQ_DESC_F_NEXT },
      { addr: BUF, len: 1000, flags: VIRTQ_DESC_F_NEXT },
      { addr: BUF + 2000, len: 1000, flags: VIRTQ_DESC_F_NEXT },
      { addr: BUF + 4000, len: 1500, flags: 0 },
    ];
    for (let i = 0; i < 3000; i++)
      memory.writeU8(BUF + (i < 1000 ? i : i < 2000 ? 1000 + i : 2000 + i), i & 0xff);
    expect(tx(memory, three).error).toEqual({ _tag: "BufDescTooSmall" });
    expect(tx(memory, three, PROFILES["rust-vmm"]).error).toEqual({ _tag: "BufDescTooSmall" });
    const { pkt, error } = tx(memory, three, PROFILES.virtio);
    expect(error).toBeNull();
    expect(pkt.bufSize).toBe(3000);
    const out = new Uint8Array(3000);
    expect(pkt.readData(out)).toBe(3000);
    expect(out.every((b, i) => b === (i & 0xff))).toBe(true);
  });
  it("a rust-vmm RX data descriptor above 64 KiB is DescriptorLengthTooLong", () => {
    const memory = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x30000) }]);
    const descs: ListDesc[] = [
      { addr: 0, len: 44, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT },
      { addr: 0x100, len: MAX_PKT_BUF_SIZE + 1, flags: VIRTQ_DESC_F_WRITE },
    ];
    expect(rx(memory, descs, PROFILES["rust-vmm"]).error).toEqual({
      _tag: "DescriptorLengthTooLong",
      len: MAX_PKT_BUF_SIZE + 1,
    });
    expect(rx(memory, descs).error).toBeNull();
  });
});
