import { describe, expect, it } from "vitest";
import {
  HEADER_SIZE,
  PacketMut,
  PacketType,
  UsbPacketBuilder,
  VsockPacketIterator,
  isPacketTooBig,
} from "./packet.ts";
import { encodeHeader, encodePackets, makePacket, parseTransfer } from "../../spec/usb-vsock.ts";

const addr = { deviceCid: 1, hostCid: 2, devicePort: 3, hostPort: 4 };
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

const collect = (buf: Uint8Array) => [...new VsockPacketIterator(buf)];

describe("usb-vsock framing", () => {
  it("header is 24 bytes: ffx, type, four LE u32 addresses, LE u32 length [USB-HDR-LAYOUT USB-HDR-TYPES]", () => {
    const b = new UsbPacketBuilder(new Uint8Array(64));
    const a = { deviceCid: 0x01020304, hostCid: 2, devicePort: 3, hostPort: 0xffffffff };
    expect(b.write(PacketType.Data, a, text("hi"))).toBeUndefined();
    const bytes = b.take()!;
    expect(HEADER_SIZE).toBe(24);
    expect([...bytes.subarray(0, 4)]).toEqual([0x66, 0x66, 0x78, 0x44]);
    expect([...bytes.subarray(4, 8)]).toEqual([4, 3, 2, 1]);
    expect([...bytes.subarray(16, 20)]).toEqual([255, 255, 255, 255]);
    expect([...bytes.subarray(20, 24)]).toEqual([2, 0, 0, 0]);
    const header = encodeHeader({ type: PacketType.Data, ...a, payloadLen: 2 });
    expect(bytes).toEqual(new Uint8Array([...header, 0x68, 0x69]));
    const letters = Object.values(PacketType).map((t) => String.fromCharCode(t));
    expect(letters.join("")).toBe("SCFRADEeX");
  });

  it("round-trips a packet through the builder and the parser [USB-BUILDER-TAKE USB-PARSE-STOP]", () => {
    const payload = text("hello world!");
    const b = new UsbPacketBuilder(new Uint8Array(HEADER_SIZE + payload.length));
    expect(b.write(PacketType.Data, addr, payload)).toBeUndefined();
    expect(b.available()).toBe(0);
    const got = collect(b.take()!);
    expect(got).toHaveLength(1);
    const p = got[0]!;
    expect(p.ok && p.value).toMatchObject({
      type: PacketType.Data,
      ...addr,
      payloadLen: payload.length,
      payload,
    });
    expect(b.take()).toBeUndefined();
  });

  it("an empty transfer yields nothing [USB-PARSE-STOP]", () => {
    expect(collect(new Uint8Array(0))).toEqual([]);
  });

  it("reports the four errors with the reference's check order [USB-PARSE-SHORT USB-PARSE-TYPE USB-PARSE-MAGIC USB-PARSE-PAYLOAD-LEN]", () => {
    const good = encodePackets([makePacket(PacketType.Connect, addr)]);
    const short = good.slice(0, 23);
    expect(collect(short)).toEqual([
      { ok: false, error: { _tag: "InsufficientData", offset: 0, remaining: 23 } },
    ]);
    const badTypeAndMagic = good.slice();
    badTypeAndMagic[0] = 0x00;
    badTypeAndMagic[3] = 0x5a; // 'Z': type is checked before magic
    expect(collect(badTypeAndMagic)).toEqual([
      { ok: false, error: { _tag: "UnknownPacketType", offset: 0, type: 0x5a } },
    ]);
    const badMagic = good.slice();
    badMagic[2] = 0x79;
    expect(collect(badMagic)).toEqual([{ ok: false, error: { _tag: "InvalidMagic", offset: 0 } }]);
    const tooLong = good.slice();
    tooLong[20] = 1;
    expect(collect(tooLong)).toEqual([
      { ok: false, error: { _tag: "PayloadTooLong", offset: 0, payloadLen: 1, available: 0 } },
    ]);
  });

  it("stops for good after the first error, even if valid packets follow [USB-PARSE-STOP]", () => {
    const one = encodePackets([makePacket(PacketType.Data, addr, text("a"))]);
    const buf = new Uint8Array(one.length * 3);
    buf.set(one, 0);
    buf.set(one, one.length);
    buf.set(one, one.length * 2);
    buf[one.length + 1] = 0; // break the second packet's magic
    const it = new VsockPacketIterator(buf);
    expect(it.next()).toBe(true);
    expect(it.next()).toBe(false);
    expect(it.error).toEqual({ _tag: "InvalidMagic", offset: one.length });
    expect(it.next()).toBe(false);
    expect(it.next()).toBe(false);
    expect(parseTransfer(buf).packets).toHaveLength(1);
  });

  it("builds a packet in place and refuses one that does not fit [USB-BUILD-TOO-BIG]", () => {
    const buf = new Uint8Array(40);
    const p = PacketMut.newIn(PacketType.Data, buf, 0);
    if (isPacketTooBig(p)) throw new Error("header should fit");
    p.setAddress(addr);
    p.payload.set(text("0123456789abcdef"));
    expect(p.finish(17)).toEqual({ _tag: "PacketTooBig", size: 41, available: 40 });
    expect(p.finish(16)).toBe(40);
    const got = collect(buf);
    expect(got[0]).toMatchObject({
      ok: true,
      value: { ...addr, payloadLen: 16, payload: text("0123456789abcdef") },
    });
    expect(PacketMut.newIn(PacketType.Sync, new Uint8Array(23))).toEqual({
      _tag: "PacketTooBig",
      size: 24,
      available: 23,
    });
  });

  it("a builder refuses a packet larger than its room and writes nothing [USB-BUILD-TOO-BIG USB-BUILDER-TAKE]", () => {
    const b = new UsbPacketBuilder(new Uint8Array(60));
    expect(b.write(PacketType.Data, addr, new Uint8Array(10))).toBeUndefined();
    expect(b.available()).toBe(26);
    expect(b.write(PacketType.Data, addr, new Uint8Array(3))).toEqual({
      _tag: "PacketTooBig",
      size: 27,
      available: 26,
    });
    expect(b.written).toBe(34);
    expect(b.write(PacketType.Reset, addr)).toBeUndefined();
    expect(b.available()).toBe(2);
    expect(b.take()!.length).toBe(58);
    expect(b.available()).toBe(60);
  });
});
