/**
 * Tests written to kill mutants that survived `npm run mutate -- impl/vsock/header.ts`: every
 * accessor of a header at an odd offset inside a larger buffer, against the spec's codec, with
 * the bytes around the 44-byte window watched (clear, copyFrom and every setter touch exactly
 * those 44 bytes), the 32-bit halves of both CIDs, isEmpty, and the header a view allocates.
 */
import { describe, expect, it } from "vitest";
import { decodeHeader, encodeHeader, type VsockHeader } from "../../spec/vsock.ts";
import { VsockHeaderView } from "./header.ts";
import { VSOCK_PKT_HDR_SIZE } from "../../wire/vsock.ts";

const AT = 5;
const fields: VsockHeader = {
  srcCid: 0x0123_4567_89ab_cdefn,
  dstCid: 0xfedc_ba98_7654_3210n,
  srcPort: 0x1122_3344,
  dstPort: 0x5566_7788,
  len: 0x99aa_bbcc,
  type: 0xddee,
  op: 0x0ff1,
  flags: 0x8000_0001,
  bufAlloc: 0xa5a5_5a5a,
  fwdCnt: 0x0f0f_f0f0,
};
/** A buffer of `AT + 44 + 7` bytes of `fill`, and a header view at `AT`. */
const framed = (fill: number): { bytes: Uint8Array; h: VsockHeaderView } => {
  const bytes = new Uint8Array(AT + VSOCK_PKT_HDR_SIZE + 7).fill(fill);
  return { bytes, h: new VsockHeaderView(new DataView(bytes.buffer), AT) };
};
const outside = (bytes: Uint8Array): number[] => [
  ...bytes.subarray(0, AT),
  ...bytes.subarray(AT + VSOCK_PKT_HDR_SIZE),
];
const window = (bytes: Uint8Array): Uint8Array => bytes.subarray(AT, AT + VSOCK_PKT_HDR_SIZE);
const setAll = (h: VsockHeaderView, f: VsockHeader): VsockHeaderView =>
  h
    .setSrcCid(f.srcCid)
    .setDstCid(f.dstCid)
    .setSrcPort(f.srcPort)
    .setDstPort(f.dstPort)
    .setLen(f.len)
    .setType(f.type)
    .setOp(f.op)
    .setFlags(f.flags)
    .setBufAlloc(f.bufAlloc)
    .setFwdCnt(f.fwdCnt);

describe("VsockHeaderView inside a larger buffer [VSOCK-HDR-LAYOUT VSOCK-HDR-ACCESSORS]", () => {
  it("setters write the spec's bytes at the view's offset and nothing around them", () => {
    const { bytes, h } = framed(0xee);
    setAll(h, fields);
    expect([...window(bytes)]).toEqual([...encodeHeader(fields)]);
    expect(outside(bytes).every((b) => b === 0xee)).toBe(true);
    expect([...h.bytes()]).toEqual([...encodeHeader(fields)]);
  });

  it("getters read the spec's fields, and each CID's 32-bit halves", () => {
    const { bytes, h } = framed(0x11);
    window(bytes).set(encodeHeader(fields));
    expect({
      srcCid: h.srcCid(),
      dstCid: h.dstCid(),
      srcPort: h.srcPort(),
      dstPort: h.dstPort(),
      len: h.len(),
      type: h.type(),
      op: h.op(),
      flags: h.flags(),
      bufAlloc: h.bufAlloc(),
      fwdCnt: h.fwdCnt(),
    }).toEqual(decodeHeader(window(bytes)));
    expect([h.srcCidLo(), h.srcCidHi()]).toEqual([0x89ab_cdef, 0x0123_4567]);
    expect([h.dstCidLo(), h.dstCidHi()]).toEqual([0x7654_3210, 0xfedc_ba98]);
  });

  it("setters keep the low bits of wider values (u64 CIDs, u32 and u16 fields)", () => {
    const { bytes, h } = framed(0);
    setAll(h, {
      ...fields,
      srcCid: (1n << 64n) + 7n,
      dstCid: -1n,
      srcPort: 2 ** 32 + 3,
      dstPort: -1,
      len: 2 ** 32,
      type: 0x1_0002,
      op: -1,
      flags: 2 ** 33 + 9,
      bufAlloc: -2,
      fwdCnt: 2 ** 32 + 2 ** 31,
    });
    expect(decodeHeader(window(bytes))).toEqual({
      srcCid: 7n,
      dstCid: (1n << 64n) - 1n,
      srcPort: 3,
      dstPort: 0xffff_ffff,
      len: 0,
      type: 2,
      op: 0xffff,
      flags: 9,
      bufAlloc: 0xffff_fffe,
      fwdCnt: 2 ** 31,
    });
  });

  it("setSrcCidHalves / setDstCidHalves write what setSrcCid / setDstCid do, and nothing around them", () => {
    const { bytes, h } = framed(0xee);
    setAll(h, fields);
    const viaBigint = [...window(bytes)];
    h.setSrcCid(0n).setDstCid(0n);
    expect(h.setSrcCidHalves(0x89ab_cdef, 0x0123_4567)).toBe(h);
    expect(h.setDstCidHalves(0x7654_3210, 0xfedc_ba98)).toBe(h);
    expect([...window(bytes)]).toEqual(viaBigint);
    expect(outside(bytes).every((b) => b === 0xee)).toBe(true);
    // Halves wider than 32 bits keep their low 32 bits, as the u32 fields' setters do.
    h.setSrcCidHalves(2 ** 32 + 3, -1).setDstCidHalves(-2, 2 ** 33 + 1);
    expect([h.srcCid(), h.dstCid()]).toEqual([0xffff_ffff_0000_0003n, 0x0000_0001_ffff_fffen]);
    expect(outside(bytes).every((b) => b === 0xee)).toBe(true);
  });

  it("setFlag ORs bits into flags and keeps the others", () => {
    const { h } = framed(0);
    h.setFlags(0b0101).setFlag(0b0011);
    expect(h.flags()).toBe(0b0111);
    h.setFlag(0x8000_0000);
    expect(h.flags()).toBe(0x8000_0007);
  });

  it("isEmpty is len === 0", () => {
    const { h } = framed(0xff);
    expect(h.setLen(0).isEmpty()).toBe(true);
    expect(h.setLen(1).isEmpty()).toBe(false);
    expect(h.setLen(0x8000_0000).isEmpty()).toBe(false);
  });

  it("clear zeroes the 44 bytes and nothing around them", () => {
    const { bytes, h } = framed(0xee);
    h.clear();
    expect(window(bytes).every((b) => b === 0)).toBe(true);
    expect(outside(bytes).every((b) => b === 0xee)).toBe(true);
  });

  it("copyFrom copies another view's 44 bytes, from its own offset, and nothing around them", () => {
    const src = new Uint8Array(3 + VSOCK_PKT_HDR_SIZE + 4).fill(0x77);
    src.set(encodeHeader(fields), 3);
    const from = new VsockHeaderView(new DataView(src.buffer), 3);
    const { bytes, h } = framed(0xee);
    expect(h.copyFrom(from)).toBe(h);
    expect([...window(bytes)]).toEqual([...encodeHeader(fields)]);
    expect(outside(bytes).every((b) => b === 0xee)).toBe(true);
  });

  it("bind re-targets the view; alloc and the default constructor own 44 zeroed bytes", () => {
    const { bytes, h } = framed(0);
    const other = new Uint8Array(VSOCK_PKT_HDR_SIZE + 2);
    other.set(encodeHeader(fields), 2);
    expect(h.bind(new DataView(other.buffer), 2)).toBe(h);
    expect(h.srcCid()).toBe(fields.srcCid);
    h.setLen(1);
    expect(window(bytes).every((b) => b === 0)).toBe(true);
    for (const own of [VsockHeaderView.alloc(), new VsockHeaderView()]) {
      expect([...own.bytes()]).toEqual(new Array<number>(VSOCK_PKT_HDR_SIZE).fill(0));
      setAll(own, fields);
      expect([...own.bytes()]).toEqual([...encodeHeader(fields)]);
    }
  });

  it("bytes() is a copy: changing it leaves the header alone", () => {
    const { h } = framed(0);
    setAll(h, fields);
    const copy = h.bytes();
    copy.fill(0);
    expect([...h.bytes()]).toEqual([...encodeHeader(fields)]);
  });
});
