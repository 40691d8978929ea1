import { describe, expect, it } from "vitest";
import { GuestMemory, u64ToBigInt, u64ToNumber } from "./guest-memory.ts";

const U64_MAX = (1n << 64n) - 1n;
const LIMIT = 2 ** 53;

const mem = (
  ...regions: { base: number | bigint; bytes: Uint8Array | ArrayBuffer | SharedArrayBuffer }[]
) => {
  const m = GuestMemory.create(regions);
  if (!m.ok) throw new Error(m.error._tag);
  return m.value;
};

describe("building memory", () => {
  it("keeps several regions, sorted by base, whatever order they are given in [MEM-REGION-DISJOINT]", () => {
    const m = mem(
      { base: 0x3000, bytes: new Uint8Array(0x100) },
      { base: 0x1000, bytes: new Uint8Array(0x800) },
      { base: 0x1800, bytes: new Uint8Array(0x10) },
    );
    expect(m.regions.map((r) => [r.base, r.size, r.end])).toEqual([
      [0x1000, 0x800, 0x1800],
      [0x1800, 0x10, 0x1810],
      [0x3000, 0x100, 0x3100],
    ]);
  });

  it("rejects an empty region [MEM-REGION-NONEMPTY]", () => {
    const m = GuestMemory.create([
      { base: 0, bytes: new Uint8Array(16) },
      { base: 0x100, bytes: new Uint8Array(0) },
    ]);
    expect(m).toEqual({ ok: false, error: { _tag: "EmptyRegion", base: 0x100n } });
  });

  it("rejects overlapping regions, by one byte or wholly, and accepts adjacent ones [MEM-REGION-DISJOINT]", () => {
    expect(
      GuestMemory.create([
        { base: 0x100, bytes: new Uint8Array(0x10) },
        { base: 0x10f, bytes: new Uint8Array(1) },
      ]),
    ).toEqual({ ok: false, error: { _tag: "OverlappingRegions", first: 0x100n, second: 0x10fn } });
    expect(
      GuestMemory.create([
        { base: 0x100, bytes: new Uint8Array(0x100) },
        { base: 0x140, bytes: new Uint8Array(0x10) },
      ]),
    ).toEqual({ ok: false, error: { _tag: "OverlappingRegions", first: 0x100n, second: 0x140n } });
    expect(
      GuestMemory.create([
        { base: 0x100, bytes: new Uint8Array(4) },
        { base: 0x100, bytes: new Uint8Array(4) },
      ]).ok,
    ).toBe(false);
    expect(
      GuestMemory.create([
        { base: 0x100, bytes: new Uint8Array(0x10) },
        { base: 0x110, bytes: new Uint8Array(0x10) },
      ]).ok,
    ).toBe(true);
  });

  it("rejects regions reaching past 2^53 or at a negative base [MEM-REGION-LIMIT]", () => {
    expect(GuestMemory.create([{ base: 2n ** 53n - 8n, bytes: new Uint8Array(9) }])).toEqual({
      ok: false,
      error: { _tag: "RegionOutOfRange", base: 2n ** 53n - 8n, size: 9n },
    });
    expect(GuestMemory.create([{ base: -1, bytes: new Uint8Array(1) }]).ok).toBe(false);
    expect(GuestMemory.create([{ base: U64_MAX, bytes: new Uint8Array(1) }]).ok).toBe(false);
    const top = mem({ base: 2n ** 53n - 8n, bytes: new Uint8Array(8) });
    expect(top.regions[0]!.end).toBe(LIMIT);
  });

  it("GuestMemory.of throws only for a layout the caller promised was valid", () => {
    expect(() => GuestMemory.of([{ base: 0, bytes: new Uint8Array(0) }])).toThrow(/EmptyRegion/);
  });
});

describe("external memory is never copied [MEM-ZERO-COPY]", () => {
  it("an ArrayBuffer region: writes through memory show in the buffer and back", () => {
    const buffer = new ArrayBuffer(64);
    const m = mem({ base: 0x1000, bytes: buffer });
    expect(m.writeU32(0x1004, 0xdeadbeef)).toBe(true);
    expect(new DataView(buffer).getUint32(4, true)).toBe(0xdeadbeef);
    new Uint8Array(buffer)[10] = 0x5a;
    expect(m.readU8(0x100a)).toBe(0x5a);
    expect(m.regions[0]!.bytes.buffer).toBe(buffer);
  });

  it("a SharedArrayBuffer region is used in place", () => {
    const shared = new SharedArrayBuffer(32);
    const m = mem({ base: 0, bytes: shared });
    m.writeU16(30, 0xbeef);
    expect(new Uint8Array(shared)[30]).toBe(0xef);
    expect(new Uint8Array(shared)[31]).toBe(0xbe);
  });

  it("a Uint8Array view into a bigger buffer touches only its window", () => {
    const backing = new Uint8Array(48).fill(0xcc);
    const window = backing.subarray(16, 32);
    const m = mem({ base: 0x2000, bytes: window });
    expect(m.writeU64(0x2008, 0x0102030405060708n)).toBe(true);
    expect(m.writeFrom(0x2000, new Uint8Array(8).fill(0x11))).toBe(true);
    expect([...backing.subarray(0, 16)]).toEqual(new Array<number>(16).fill(0xcc));
    expect([...backing.subarray(32)]).toEqual(new Array<number>(16).fill(0xcc));
    expect([...backing.subarray(16, 32)]).toEqual([
      0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 8, 7, 6, 5, 4, 3, 2, 1,
    ]);
  });

  it("slice is a view: writes through it reach guest memory and the caller's buffer", () => {
    const buffer = new ArrayBuffer(32);
    const m = mem({ base: 0x100, bytes: buffer });
    const s = m.slice(0x108, 8, true);
    expect(s).toBeDefined();
    expect(s!.buffer).toBe(buffer);
    s![0] = 0x42;
    expect(m.readU8(0x108)).toBe(0x42);
    expect(new Uint8Array(buffer)[8]).toBe(0x42);
    expect(m.slice(0x11c, 8)).toBeUndefined();
  });
});

describe("typed accessors are little-endian and bounds-checked [MEM-LE MEM-RANGE-ONE-REGION]", () => {
  const fresh = () => {
    const bytes = Uint8Array.from([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xff, 0xfe, 0xfd, 0xfc]);
    return { bytes, m: mem({ base: 0x400, bytes }) };
  };

  it("reads u8, u16, u32, u64 little-endian", () => {
    const { m } = fresh();
    expect(m.readU8(0x400)).toBe(0x01);
    expect(m.readU16(0x400)).toBe(0x0201);
    expect(m.readU16(0x401)).toBe(0x0302);
    expect(m.readU32(0x400)).toBe(0x04030201);
    expect(m.readU32(0x408)).toBe(0xfcfdfeff);
    expect(m.readU64(0x400)).toBe(0x0807060504030201n);
    expect(m.readU64(0x404)).toBe(0xfcfdfeff08070605n);
  });

  it("writes u8, u16, u32, u64 little-endian, truncating to the width", () => {
    const { m, bytes } = fresh();
    expect(m.writeU8(0x400, 0xab)).toBe(true);
    expect(m.writeU16(0x402, 0x1234)).toBe(true);
    expect(m.writeU32(0x404, 0x89abcdef)).toBe(true);
    expect([...bytes.subarray(0, 8)]).toEqual([0xab, 0x02, 0x34, 0x12, 0xef, 0xcd, 0xab, 0x89]);
    expect(m.writeU64(0x404, 0x1_1122334455667788n)).toBe(true);
    expect([...bytes.subarray(4, 12)]).toEqual([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
    expect(m.writeU64(0x404, -1n)).toBe(true);
    expect(m.readU64(0x404)).toBe(U64_MAX);
  });

  it("an access reaching one byte past the end is refused with a sentinel and writes nothing", () => {
    const { m, bytes } = fresh();
    const before = Uint8Array.from(bytes);
    expect(m.readU8(0x40c)).toBe(-1);
    expect(m.readU16(0x40b)).toBe(-1);
    expect(m.readU32(0x409)).toBe(-1);
    expect(m.readU64(0x405)).toBeUndefined();
    expect(m.readU8(0x3ff)).toBe(-1);
    expect(m.writeU8(0x40c, 1)).toBe(false);
    expect(m.writeU16(0x40b, 1)).toBe(false);
    expect(m.writeU32(0x409, 1)).toBe(false);
    expect(m.writeU64(0x405, 1n)).toBe(false);
    expect(m.writeFrom(0x408, new Uint8Array(5))).toBe(false);
    const dst = new Uint8Array(5).fill(9);
    expect(m.readInto(0x408, dst)).toBe(false);
    expect([...dst]).toEqual([9, 9, 9, 9, 9]);
    expect(bytes).toEqual(before);
    expect(m.readU32(0x408)).toBe(0xfcfdfeff);
  });
});

describe("a range lies inside one region [MEM-RANGE-ONE-REGION]", () => {
  const m = mem({ base: 0x1000, bytes: new Uint8Array(0x10) }, { base: 0x1010, bytes: new Uint8Array(0x10) });

  it("a range spanning two adjacent regions is refused, even though every byte exists", () => {
    expect(m.locate(0x100e, 2, false)).toBe(0);
    expect(m.locate(0x1010, 2, false)).toBe(1);
    expect(m.locate(0x100f, 2, false)).toBe(-1);
    expect(m.readU16(0x100f)).toBe(-1);
    expect(m.readU64(0x100c)).toBeUndefined();
    expect(m.tryRead(0x100fn, 2)).toEqual({
      ok: false,
      error: { _tag: "InvalidGuestAddress", addr: 0x100fn, len: 2n },
    });
  });

  it("a whole region is one range; a zero-length range must start inside a region", () => {
    expect(m.locate(0x1000, 0x10, false)).toBe(0);
    expect(m.locate(0x1010, 0x10, true)).toBe(1);
    expect(m.locate(0x101f, 0, false)).toBe(1);
    expect(m.locate(0x1020, 0, false)).toBe(-1);
    expect(m.locate(0xfff, 0, false)).toBe(-1);
  });

  it("non-integer, negative and NaN arguments are refused", () => {
    expect(m.locate(-1, 2, false)).toBe(-1);
    expect(m.locate(0x1000, -1, false)).toBe(-1);
    expect(m.locate(Number.NaN, 1, false)).toBe(-1);
    expect(m.locate(0x1000, Number.NaN, false)).toBe(-1);
    expect(m.locate(0x1000, Number.POSITIVE_INFINITY, false)).toBe(-1);
  });

  it("the recorder sees every access, with its direction", () => {
    const seen: [number, number, boolean][] = [];
    m.recorder = (addr, len, write) => seen.push([addr, len, write]);
    m.readU32(0x1000);
    m.writeU16(0x1012, 7);
    m.readU64(0x100f);
    m.recorder = null;
    m.readU8(0x1000);
    expect(seen).toEqual([
      [0x1000, 4, false],
      [0x1012, 2, true],
      [0x100f, 8, false],
    ]);
  });
});

describe("u64 guest addresses give typed errors, never a wrong access [MEM-ADDR-U64 MEM-REGION-LIMIT]", () => {
  const top = 2n ** 53n - 0x20n;
  const m = mem({ base: 0, bytes: new Uint8Array(0x20) }, { base: top, bytes: new Uint8Array(0x20) });

  it("addresses at and above 2^53 are InvalidGuestAddress", () => {
    for (const addr of [2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, U64_MAX - 8n]) {
      expect(m.tryRead(addr, 1)).toEqual({
        ok: false,
        error: { _tag: "InvalidGuestAddress", addr, len: 1n },
      });
      expect(m.tryWrite(addr, new Uint8Array(1))).toEqual({
        ok: false,
        error: { _tag: "InvalidGuestAddress", addr, len: 1n },
      });
    }
    // As rounded numbers they stay >= 2^53, so the sentinel accessors refuse them too.
    expect(m.readU8(Number(2n ** 53n + 1n))).toBe(-1);
    expect(m.readU64(Number(2n ** 64n - 1n))).toBeUndefined();
    expect(m.writeU32(2 ** 60, 1)).toBe(false);
  });

  it("the last bytes below 2^53 are reachable, one past is not", () => {
    expect(m.tryWrite(2n ** 53n - 8n, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]))).toEqual({
      ok: true,
      value: undefined,
    });
    expect(m.readU64(2 ** 53 - 8)).toBe(0x0807060504030201n);
    expect(m.tryRead(2n ** 53n - 7n, 8).ok).toBe(false);
  });

  it("a range whose end overflows 2^64 is GuestAddressOverflow", () => {
    expect(m.tryRead(U64_MAX, 2)).toEqual({
      ok: false,
      error: { _tag: "GuestAddressOverflow", addr: U64_MAX, len: 2n },
    });
    expect(m.tryLocate(U64_MAX - 3n, 8n, false)).toEqual({
      ok: false,
      error: { _tag: "GuestAddressOverflow", addr: U64_MAX - 3n, len: 8n },
    });
    expect(m.tryLocate(0x10n, U64_MAX, false)).toEqual({
      ok: false,
      error: { _tag: "GuestAddressOverflow", addr: 0x10n, len: U64_MAX },
    });
    // Ending exactly at 2^64 is not an overflow, only outside memory.
    expect(m.tryLocate(U64_MAX, 1n, false)).toEqual({
      ok: false,
      error: { _tag: "InvalidGuestAddress", addr: U64_MAX, len: 1n },
    });
  });

  it("values that are not u64 are GuestAddressOverflow", () => {
    expect(m.tryLocate(-1n, 1n, false)).toEqual({
      ok: false,
      error: { _tag: "GuestAddressOverflow", addr: -1n, len: 1n },
    });
    expect(m.tryLocate(2n ** 64n, 0n, false)).toEqual({
      ok: false,
      error: { _tag: "GuestAddressOverflow", addr: 2n ** 64n, len: 0n },
    });
    expect(m.tryLocate(0n, -1n, false).ok).toBe(false);
  });

  it("a length far beyond a region but below 2^64 is InvalidGuestAddress", () => {
    expect(m.tryLocate(0n, 2n ** 60n, false)).toEqual({
      ok: false,
      error: { _tag: "InvalidGuestAddress", addr: 0n, len: 2n ** 60n },
    });
  });

  it("tryLocate gives the region and offset; tryRead copies", () => {
    const at = m.tryLocate(top + 4n, 4n, false);
    expect(at.ok && at.value.region === m.regions[1] && at.value.offset).toBe(4);
    const copy = m.tryRead(top, 4);
    expect(copy.ok).toBe(true);
    if (copy.ok) {
      copy.value[0] = 0x77;
      expect(m.readU8(Number(top))).toBe(0);
    }
  });

  it("u64ToNumber is exact below 2^53 and never below 2^53 above it; u64ToBigInt is exact", () => {
    expect(u64ToNumber(0x89abcdef, 0x1234)).toBe(0x1234_89abcdef);
    expect(u64ToNumber(0, 0x200000)).toBe(2 ** 53);
    expect(u64ToNumber(1, 0x200000)).toBeGreaterThanOrEqual(2 ** 53);
    expect(u64ToNumber(0xffffffff, 0xffffffff)).toBeGreaterThanOrEqual(2 ** 53);
    expect(u64ToBigInt(0xffffffff, 0xffffffff)).toBe(U64_MAX);
    expect(u64ToBigInt(1, 0x200000)).toBe(2n ** 53n + 1n);
  });
});

describe("the model's view of guest memory [MEM-REGION-NONEMPTY]", () => {
  it("toSpecMemory(true) copies the bytes as they are now; toSpecMemory(false) shares them", () => {
    const m = GuestMemory.of([
      { base: 0x1000, bytes: new Uint8Array([1, 2, 3]) },
      { base: 0x8000, bytes: new Uint8Array([4]) },
    ]);
    const copy = m.toSpecMemory(true);
    const shared = m.toSpecMemory(false);
    expect(copy.regions.map((r) => [r.base, [...r.bytes]])).toEqual([
      [0x1000n, [1, 2, 3]],
      [0x8000n, [4]],
    ]);
    m.writeU8(0x1001, 9);
    expect(copy.regions[0]!.bytes[1]).toBe(2);
    expect(shared.regions[0]!.bytes[1]).toBe(9);
  });
});
