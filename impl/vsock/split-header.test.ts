/**
 * A TX header that spans descriptors (VIRTIO 1.2 §2.7.4 Message Framing: the device makes no assumption
 * about the arrangement of descriptors). The vhost-user front-end check splits every
 * readable buffer over 1..3 descriptors; before VSOCK-TX-SPLIT-HDR the virtio profile
 * refused a head shorter than 44 bytes, so such REQUESTs were consumed with no RST.
 */
import { describe, expect, it } from "vitest";
import { VsockVirtioDevice } from "../device/vsock.ts";
import { GuestMemory } from "../memory/guest-memory.ts";
import { SplitDriver } from "../queue/split-driver.ts";
import { PROFILES, decodeHeader, encodeHeader, emptyHeader } from "../../spec/vsock.ts";
import { ListChain } from "./chain.ts";
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../wire/split.ts";
import { RX_QUEUE, TX_QUEUE } from "./device.ts";
import { VsockPacket } from "./packet.ts";
import {
  HDROFF,
  VSOCK_HOST_CID,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RST,
  VSOCK_PKT_HDR_SIZE,
  VSOCK_TYPE_STREAM,
} from "../../wire/vsock.ts";

const CID = 5n;
const request = (srcPort: number, dstPort: number, len = 0): Uint8Array =>
  encodeHeader({
    ...emptyHeader,
    srcCid: CID,
    dstCid: VSOCK_HOST_CID,
    srcPort,
    dstPort,
    len,
    type: VSOCK_TYPE_STREAM,
    op: VSOCK_OP_REQUEST,
    bufAlloc: 65536,
  });

describe("TX header over several descriptors [VSOCK-TX-SPLIT-HDR]", () => {
  const memory = (): GuestMemory => GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x10000) }]);
  const R = 0;
  const N = VIRTQ_DESC_F_NEXT;

  it("profile virtio gathers 13 + 31 header bytes and reads the data right after them; rust-vmm and cloud-hypervisor refuse the short head [VSOCK-TX-SPLIT-HDR VSOCK-PROFILE]", () => {
    const m = memory();
    const h = request(1234, 4321, 6);
    m.writeFrom(0x1000, h.subarray(0, 13));
    m.writeFrom(0x2000, h.subarray(13));
    m.writeFrom(0x2000 + 31, Uint8Array.of(1, 2));
    m.writeFrom(0x3000, Uint8Array.of(3, 4, 5, 6));
    const descs = [
      { addr: 0x1000, len: 13, flags: N },
      { addr: 0x2000, len: 33, flags: N },
      { addr: 0x3000, len: 100, flags: R },
    ];
    const pkt = new VsockPacket();
    expect(pkt.assembleTx(new ListChain(m, descs), PROFILES.virtio)).toBeNull();
    expect(pkt.hdrAddr).toBe(0x1000);
    expect(decodeHeader(pkt.header.bytes())).toEqual(decodeHeader(h));
    const data = new Uint8Array(6);
    expect(pkt.readData(data)).toBe(6);
    expect([...data]).toEqual([1, 2, 3, 4, 5, 6]);
    for (const p of [PROFILES["rust-vmm"], PROFILES["cloud-hypervisor"]])
      expect(new VsockPacket().assembleTx(new ListChain(m, descs), p)).toEqual({
        _tag: "HdrDescTooSmall",
        len: 13,
      });
  });

  it("readable descriptors that end before 44 bytes are HdrDescTooSmall with the bytes found; a write-only one inside the header is UnreadableDescriptor [VSOCK-TX-SPLIT-HDR]", () => {
    const m = memory();
    const pkt = new VsockPacket();
    const short = [
      { addr: 0x1000, len: 20, flags: N },
      { addr: 0x2000, len: 10, flags: R },
    ];
    expect(pkt.assembleTx(new ListChain(m, short), PROFILES.virtio)).toEqual({
      _tag: "HdrDescTooSmall",
      len: 30,
    });
    const writeOnly = [
      { addr: 0x1000, len: 20, flags: N },
      { addr: 0x2000, len: 40, flags: VIRTQ_DESC_F_WRITE },
    ];
    expect(pkt.assembleTx(new ListChain(m, writeOnly), PROFILES.virtio)).toEqual({
      _tag: "UnreadableDescriptor",
    });
    expect(m.readU32(0x1000 + HDROFF.len)).toBe(0); // nothing written to guest memory
  });

  it("the vhost-user adapter answers two REQUESTs with split headers in one kick with two RSTs (no host side) [VSOCK-TX-SPLIT-HDR VSOCK-CONN-UNKNOWN]", () => {
    const m = memory();
    const created = VsockVirtioDevice.create({ guestCid: CID }, { queueCount: 2 });
    if (!created.ok) throw new Error("vsock device");
    const dev = created.value;
    const drivers = [SplitDriver.at(m, 16, 0x100), SplitDriver.at(m, 16, 0x800)];
    drivers.forEach((d, i) => dev.queues[i]!.configure({ size: 16, ready: true, ...d.layout }));
    const calls: number[] = [];
    expect(dev.activate(m, (q) => calls.push(q)).ok).toBe(true);
    const [rx, tx] = drivers as [SplitDriver, SplitDriver];
    for (let i = 0; i < 4; i++)
      rx.addChain([{ addr: 0x4000 + 0x100 * i, len: VSOCK_PKT_HDR_SIZE + 64, write: true }]);
    const ports: [number, number][] = [
      [5001, 40001],
      [5002, 40002],
    ];
    ports.forEach(([sp, dp], i) => {
      const h = request(sp, dp);
      const at = 0x8000 + 0x100 * i;
      m.writeFrom(at, h.subarray(0, 13));
      m.writeFrom(at + 0x40, h.subarray(13));
      tx.addChain([
        { addr: at, len: 13 },
        { addr: at + 0x40, len: VSOCK_PKT_HDR_SIZE - 13 },
      ]);
    });
    dev.processQueue(RX_QUEUE);
    expect(dev.processQueue(TX_QUEUE)).toBe(2);
    expect(tx.reapUsed().length).toBe(2);
    const used = rx.reapUsed();
    expect(used.map((u) => u.len)).toEqual([VSOCK_PKT_HDR_SIZE, VSOCK_PKT_HDR_SIZE]);
    const rsts = used.map((u) => {
      const b = m.slice(0x4000 + 0x100 * u.id, VSOCK_PKT_HDR_SIZE)!;
      const h = decodeHeader(b);
      expect(h.op).toBe(VSOCK_OP_RST);
      expect(h.srcCid).toBe(VSOCK_HOST_CID);
      expect(h.dstCid).toBe(CID);
      return [h.dstPort, h.srcPort];
    });
    expect(rsts).toEqual(ports);
    expect(calls).toContain(RX_QUEUE);
  });
});
