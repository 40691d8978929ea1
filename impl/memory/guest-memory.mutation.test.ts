/**
 * Tests written to kill mutants that survived `npm run mutate memory`: the locate cache,
 * memory with no regions, the direction every accessor reports, and the error tag at the
 * edges of the u64 range.
 */
import { describe, expect, it } from "vitest";
import { GuestMemory } from "./guest-memory.ts";

const U64_MAX = (1n << 64n) - 1n;

describe("locate's last-region cache", () => {
  it("a region just used still refuses a negative or fractional length [MEM-RANGE-ONE-REGION]", () => {
    const m = GuestMemory.of([
      { base: 0x1000, bytes: new Uint8Array(0x100) },
      { base: 0x4000, bytes: new Uint8Array(0x100) },
    ]);
    for (const region of [0, 1]) {
      const base = region === 0 ? 0x1000 : 0x4000;
      expect(m.locate(base + 8, 4, false)).toBe(region); // now the cached region
      expect(m.locate(base + 8, -1, false)).toBe(-1);
      expect(m.locate(base + 8, -0x10, true)).toBe(-1);
      expect(m.locate(base + 8, 1.5, false)).toBe(-1);
      expect(m.locate(base + 8.5, 1, false)).toBe(-1);
      expect(m.locate(base + 0xff, 2, false)).toBe(-1);
      expect(m.readInto(base + 8, new Uint8Array(0))).toBe(true);
    }
  });

  it("memory with no regions refuses every access without throwing [MEM-RANGE-ONE-REGION]", () => {
    const built = GuestMemory.create([]);
    expect(built.ok).toBe(true);
    if (!built.ok) return;
    const m = built.value;
    expect(m.locate(0, 0, false)).toBe(-1);
    expect(m.readU8(0)).toBe(-1);
    expect(m.writeU32(0x1000, 1)).toBe(false);
    expect(m.slice(0, 1)).toBeUndefined();
    expect(m.tryRead(0n, 1)).toEqual({
      ok: false,
      error: { _tag: "InvalidGuestAddress", addr: 0n, len: 1n },
    });
  });
});

describe("the recorder", () => {
  it("sees the direction of every accessor: reads false, writes true, slices as asked", () => {
    const m = GuestMemory.of([{ base: 0x1000, bytes: new Uint8Array(0x100) }]);
    const seen: [number, number, boolean][] = [];
    m.recorder = (addr, len, write) => seen.push([addr, len, write]);
    m.readU8(0x1000);
    m.readU16(0x1002);
    m.readU32(0x1004);
    m.readU64(0x1008);
    m.writeU8(0x1010, 1);
    m.writeU16(0x1012, 1);
    m.writeU32(0x1014, 1);
    m.writeU64(0x1018, 1n);
    m.readInto(0x1020, new Uint8Array(3));
    m.writeFrom(0x1030, new Uint8Array(5));
    m.slice(0x1040, 6);
    m.slice(0x1048, 7, true);
    m.tryRead(0x1050n, 9);
    m.tryWrite(0x1060n, new Uint8Array(10));
    m.recorder = null;
    expect(seen).toEqual([
      [0x1000, 1, false],
      [0x1002, 2, false],
      [0x1004, 4, false],
      [0x1008, 8, false],
      [0x1010, 1, true],
      [0x1012, 2, true],
      [0x1014, 4, true],
      [0x1018, 8, true],
      [0x1020, 3, false],
      [0x1030, 5, true],
      [0x1040, 6, false],
      [0x1048, 7, true],
      [0x1050, 9, false],
      [0x1060, 10, true],
    ]);
  });
});

describe("rangeError picks the tag from the u64 arithmetic alone [MEM-ADDR-U64 MEM-RANGE-ONE-REGION]", () => {
  const tag = (addr: bigint, len: bigint): string => GuestMemory.rangeError(addr, len)._tag;

  it("a negative length or address, or one above u64, overflows", () => {
    expect(tag(0n, -1n)).toBe("GuestAddressOverflow");
    expect(tag(0x1000n, -0x10n)).toBe("GuestAddressOverflow");
    expect(tag(-1n, 0n)).toBe("GuestAddressOverflow");
    expect(tag(2n ** 64n, 0n)).toBe("GuestAddressOverflow");
    expect(tag(2n ** 64n + 1n, 0n)).toBe("GuestAddressOverflow");
  });

  it("a range ending exactly at 2^64 is in u64 and so only invalid; one byte more overflows", () => {
    expect(tag(U64_MAX, 0n)).toBe("InvalidGuestAddress");
    expect(tag(U64_MAX, 1n)).toBe("InvalidGuestAddress");
    expect(tag(1n, U64_MAX)).toBe("InvalidGuestAddress");
    expect(tag(2n, U64_MAX - 1n)).toBe("InvalidGuestAddress");
    expect(tag(U64_MAX, 2n)).toBe("GuestAddressOverflow");
    expect(tag(2n, U64_MAX)).toBe("GuestAddressOverflow");
    expect(tag(U64_MAX - 1n, 3n)).toBe("GuestAddressOverflow");
  });
});
