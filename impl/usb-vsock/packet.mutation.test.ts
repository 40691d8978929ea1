/**
 * Tests written to kill mutants that survived `npm run mutate -- usb-vsock` in packet.ts: the
 * type check on every byte, PacketMut at the edges of its buffer (negative offset, exact fit,
 * payload lengths that are negative, fractional or one too many), isPacketTooBig on every
 * kind of value, and writeRaw with a payload range, a negative length or no payload.
 */
import { describe, expect, it } from "vitest";
import { encodeHeader, isPacketType, PACKET_TYPES } from "../../spec/usb-vsock.ts";
import {
  HEADER_SIZE,
  isKnownType,
  isPacketTooBig,
  PacketMut,
  PacketType,
  UsbPacketBuilder,
} from "./packet.ts";

const addr = { deviceCid: 1, hostCid: 2, devicePort: 3, hostPort: 4 };

describe("packet types [USB-HDR-TYPES]", () => {
  it("isKnownType agrees with the spec on every byte and refuses anything else", () => {
    for (let b = 0; b < 256; b++) expect(isKnownType(b)).toBe(isPacketType(b));
    expect(PACKET_TYPES.every((t) => isKnownType(t))).toBe(true);
    for (const b of [-1, 256, 0x44 + 0.5, 0x144, Number.NaN]) expect(isKnownType(b)).toBe(false);
  });
});

describe("PacketMut at the edges of its buffer [USB-BUILD-TOO-BIG USB-HDR-LAYOUT]", () => {
  it("a header that exactly fits is built; one byte less, or past the end, is PacketTooBig", () => {
    const exact = PacketMut.newIn(PacketType.Finish, new Uint8Array(30), 6);
    if (isPacketTooBig(exact)) throw new Error("24 bytes fit in 24");
    expect(exact.payload.length).toBe(0);
    expect(exact.finish(0)).toBe(HEADER_SIZE);
    expect(PacketMut.newIn(PacketType.Finish, new Uint8Array(30), 7)).toEqual({
      _tag: "PacketTooBig",
      size: HEADER_SIZE,
      available: 23,
    });
    expect(PacketMut.newIn(PacketType.Finish, new Uint8Array(30), 10)).toEqual({
      _tag: "PacketTooBig",
      size: HEADER_SIZE,
      available: 20,
    });
  });

  it("a negative offset is PacketTooBig, and nothing is written", () => {
    const buf = new Uint8Array(64).fill(0xee);
    expect(PacketMut.newIn(PacketType.Data, buf, -1)).toEqual({
      _tag: "PacketTooBig",
      size: HEADER_SIZE,
      available: 65,
    });
    expect(buf.every((b) => b === 0xee)).toBe(true);
  });

  it("finish takes 0 up to the room left, and refuses negative, fractional or larger lengths", () => {
    const buf = new Uint8Array(HEADER_SIZE + 8);
    const p = PacketMut.newIn(PacketType.Data, buf, 0);
    if (isPacketTooBig(p)) throw new Error("header should fit");
    p.setAddress(addr);
    const available = HEADER_SIZE + 8;
    for (const n of [-1, 0.5, 9])
      expect(p.finish(n)).toEqual({ _tag: "PacketTooBig", size: HEADER_SIZE + n, available });
    // Nothing stamped by a refused finish.
    expect([...buf.subarray(20, 24)]).toEqual([0, 0, 0, 0]);
    expect(p.finish(0)).toBe(HEADER_SIZE);
    expect([...buf.subarray(0, HEADER_SIZE)]).toEqual([
      ...encodeHeader({ type: PacketType.Data, ...addr, payloadLen: 0 }),
    ]);
    expect(p.finish(8)).toBe(available);
  });

  it("isPacketTooBig is true only for a PacketTooBig value", () => {
    expect(isPacketTooBig({ _tag: "PacketTooBig", size: 1, available: 0 })).toBe(true);
    for (const x of [null, undefined, 0, "PacketTooBig", { _tag: "Other" }, {}, () => 0])
      expect(isPacketTooBig(x)).toBe(false);
    const p = PacketMut.newIn(PacketType.Data, new Uint8Array(HEADER_SIZE));
    expect(isPacketTooBig(p)).toBe(false);
  });
});

describe("UsbPacketBuilder.writeRaw [USB-BUILD-TOO-BIG USB-BUILDER-TAKE USB-HDR-LAYOUT]", () => {
  const payload = Uint8Array.of(10, 11, 12, 13, 14);
  const header = (payloadLen: number): number[] => [
    ...encodeHeader({ type: PacketType.Data, ...addr, payloadLen }),
  ];
  const raw = (b: UsbPacketBuilder, p: Uint8Array | undefined, start?: number, len?: number) =>
    b.writeRaw(PacketType.Data, addr.deviceCid, addr.hostCid, addr.devicePort, addr.hostPort, p, start, len);

  it("without a length, writes the payload from payloadStart to its end", () => {
    const b = new UsbPacketBuilder(new Uint8Array(64));
    expect(raw(b, payload, 2)).toBeUndefined();
    expect([...b.take()!]).toEqual([...header(3), 12, 13, 14]);
  });

  it("writes only payload[start, start + len)", () => {
    const b = new UsbPacketBuilder(new Uint8Array(64));
    expect(raw(b, payload, 1, 2)).toBeUndefined();
    expect([...b.take()!]).toEqual([...header(2), 11, 12]);
  });

  it("a range past the payload's end copies only the bytes there are", () => {
    const b = new UsbPacketBuilder(new Uint8Array(64).fill(0xee));
    expect(raw(b, payload, 2, 5)).toBeUndefined();
    expect([...b.take()!]).toEqual([...header(5), 12, 13, 14, 0xee, 0xee]);
  });

  it("a negative length is PacketTooBig with nothing written", () => {
    const b = new UsbPacketBuilder(new Uint8Array(64).fill(0xee));
    expect(raw(b, payload, 0, -1)).toEqual({ _tag: "PacketTooBig", size: HEADER_SIZE - 1, available: 64 });
    expect(b.written).toBe(0);
    expect(b.take()).toBeUndefined();
    expect(b.buffer.every((x) => x === 0xee)).toBe(true);
  });

  it("no payload with a length writes the header and leaves the room after it as it was", () => {
    const b = new UsbPacketBuilder(new Uint8Array(64).fill(0xee));
    expect(raw(b, undefined, 0, 3)).toBeUndefined();
    expect([...b.take()!]).toEqual([...header(3), 0xee, 0xee, 0xee]);
  });

  it("capacity, written, hasData and take follow what was written", () => {
    const b = new UsbPacketBuilder(new Uint8Array(50));
    expect([b.capacity, b.written, b.hasData()]).toEqual([50, 0, false]);
    expect(raw(b, payload, 0, 1)).toBeUndefined();
    expect([b.capacity, b.written, b.hasData()]).toEqual([50, 25, true]);
    expect(b.take()!.length).toBe(25);
    expect([b.written, b.hasData(), b.take()]).toEqual([0, false, undefined]);
  });
});
