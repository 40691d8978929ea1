import { describe, expect, it } from "vitest";
import { decodeHeader, encodeHeader } from "../../spec/vsock.ts";
import { VsockHeaderView } from "./header.ts";
import { HDROFF, VSOCK_PKT_HDR_SIZE } from "../../wire/vsock.ts";

describe("header accessors, the seed's case [VSOCK-HDR-LAYOUT VSOCK-HDR-ACCESSORS]", () => {
  it("chainable setters, getters, set_flag, raw offsets and clearing", () => {
    const bytes = new Uint8Array(100);
    const view = new DataView(bytes.buffer);
    const h = new VsockHeaderView(view, 7);
    h.setSrcCid(1n)
      .setDstCid(2n)
      .setSrcPort(3)
      .setDstPort(4)
      .setLen(5)
      .setType(6)
      .setOp(7)
      .setFlags(8)
      .setBufAlloc(9)
      .setFwdCnt(10);
    expect([h.srcCid(), h.dstCid()]).toEqual([1n, 2n]);
    expect([
      h.srcPort(),
      h.dstPort(),
      h.len(),
      h.type(),
      h.op(),
      h.flags(),
      h.bufAlloc(),
      h.fwdCnt(),
    ]).toEqual([3, 4, 5, 6, 7, 8, 9, 10]);
    const flags = h.flags() | 0b1000;
    h.setFlag(0b1000);
    expect(h.flags()).toBe(flags);
    // Raw little-endian offsets.
    expect(view.getBigUint64(7 + HDROFF.srcCid, true)).toBe(1n);
    expect(view.getBigUint64(7 + HDROFF.dstCid, true)).toBe(2n);
    expect(view.getUint32(7 + HDROFF.srcPort, true)).toBe(3);
    expect(view.getUint32(7 + HDROFF.dstPort, true)).toBe(4);
    expect(view.getUint32(7 + HDROFF.len, true)).toBe(5);
    expect(view.getUint16(7 + HDROFF.type, true)).toBe(6);
    expect(view.getUint16(7 + HDROFF.op, true)).toBe(7);
    expect(view.getUint32(7 + HDROFF.flags, true)).toBe(8 | 0b1000);
    expect(view.getUint32(7 + HDROFF.bufAlloc, true)).toBe(9);
    expect(view.getUint32(7 + HDROFF.fwdCnt, true)).toBe(10);
    expect(h.bytes().length).toBe(VSOCK_PKT_HDR_SIZE);
    expect(decodeHeader(h.bytes())).toEqual({
      srcCid: 1n,
      dstCid: 2n,
      srcPort: 3,
      dstPort: 4,
      len: 5,
      type: 6,
      op: 7,
      flags: 8 | 0b1000,
      bufAlloc: 9,
      fwdCnt: 10,
    });
    h.clear();
    expect([h.srcCid(), h.dstCid(), h.len(), h.op(), h.flags(), h.fwdCnt()]).toEqual([0n, 0n, 0, 0, 0, 0]);
    // The bytes outside the 44-byte window were never touched.
    expect(bytes[6]).toBe(0);
    expect(bytes.subarray(7 + 44).every((b) => b === 0)).toBe(true);
    expect(encodeHeader(decodeHeader(h.bytes()))).toEqual(h.bytes());
  });
});
