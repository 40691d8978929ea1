/** The small parts: header codec, frame pool (squib's FramePool cases), packet helpers. */
import { describe, expect, it } from "vitest";
import { decodeHeader, encodeHeader } from "../../spec/net.ts";
import { FramePool } from "./frame-pool.ts";
import { decodeNetHeader, encodeNetHeader, writeRxHeader } from "./header.ts";
import { ICMP_ECHO_REQUEST, arpRequest, icmpEcho, internetChecksum, parseArp, parseIcmp } from "./packets.ts";

describe("virtio_net_hdr [NET-HDR-LAYOUT]", () => {
  const h = {
    flags: 1,
    gsoType: 3,
    hdrLen: 0x1234,
    gsoSize: 0x5678,
    csumStart: 0x9abc,
    csumOffset: 0xdef0,
    numBuffers: 0x0102,
  };
  it("encodes little-endian at the spec offsets, 12 and 10 bytes", () => {
    const b = new Uint8Array(12);
    expect(encodeNetHeader(h, 12, b)).toBe(true);
    expect(Array.from(b)).toEqual([1, 3, 0x34, 0x12, 0x78, 0x56, 0xbc, 0x9a, 0xf0, 0xde, 0x02, 0x01]);
    expect(b).toEqual(encodeHeader(h, 12));
    const l = new Uint8Array(12).fill(0xee);
    encodeNetHeader(h, 10, l);
    expect(Array.from(l.subarray(10))).toEqual([0xee, 0xee]);
    expect(decodeNetHeader(l, 10)).toEqual({ ...h, numBuffers: 0 });
    expect(decodeNetHeader(b, 12)).toEqual(decodeHeader(b, 12));
  });
  it("refuses to encode or decode past the buffer", () => {
    expect(encodeNetHeader(h, 12, new Uint8Array(11))).toBe(false);
    expect(decodeNetHeader(new Uint8Array(9), 10)).toBeUndefined();
  });
  it("the RX header is zero but num_buffers [NET-RX-HDR]", () => {
    const b = new Uint8Array(12).fill(9);
    writeRxHeader(b, 12, 3);
    expect(Array.from(b)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0]);
  });
});

describe("FramePool", () => {
  it("acquires and reuses released buffers [NET-POOL-REUSE]", () => {
    const pool = new FramePool(1500, 4);
    expect(pool.freeCount).toBe(0);
    const a = pool.acquire();
    expect(a.length).toBe(0);
    expect(a.data.length).toBeGreaterThanOrEqual(1500);
    const b = pool.acquire();
    pool.release(a);
    pool.release(b);
    expect(pool.freeCount).toBe(2);
    expect(pool.acquire()).toBe(b);
    expect(pool.freeCount).toBe(1);
    expect(pool.allocated).toBe(2);
  });
  it("drops releases beyond its capacity [NET-POOL-BOUND]", () => {
    const pool = new FramePool(1500, 2);
    for (let i = 0; i < 3; i++) pool.release(pool.acquire());
    const held = [pool.acquire(), pool.acquire(), pool.acquire()];
    for (const f of held) pool.release(f);
    expect(pool.freeCount).toBe(2);
  });
  it("hands out clean buffers: empty and zeroed [NET-POOL-CLEAN]", () => {
    const pool = new FramePool(64, 2);
    const f = pool.acquire();
    f.set(new TextEncoder().encode("hello"));
    expect(f.length).toBe(5);
    pool.release(f);
    const g = pool.acquire();
    expect(g.length).toBe(0);
    expect(g.data).toEqual(new Uint8Array(64));
  });
});

describe("packets", () => {
  it("ARP and ICMP frames parse back, with valid checksums [TAP-E2E]", () => {
    const mac = [2, 0, 0, 0, 0, 2];
    const arp = parseArp(arpRequest(mac, [10, 0, 0, 2], [10, 0, 0, 1]))!;
    expect(arp).toMatchObject({ op: 1, senderMac: mac, targetIp: [10, 0, 0, 1] });
    const f = icmpEcho(
      ICMP_ECHO_REQUEST,
      [2, 0, 0, 0, 0, 1],
      mac,
      [10, 0, 0, 2],
      [10, 0, 0, 1],
      7,
      1,
      new Uint8Array([1, 2, 3]),
    );
    const p = parseIcmp(f)!;
    expect(p).toMatchObject({ type: 8, id: 7, seq: 1, ipChecksumOk: true, icmpChecksumOk: true });
    f[f.length - 1]! ^= 1;
    expect(parseIcmp(f)!.icmpChecksumOk).toBe(false);
    expect(internetChecksum(new Uint8Array([0x45, 0x00]), 0, 2)).toBe(0xbaff);
  });
});
