/** The bench's row(): ratio, met / not met, and "floor" only when the measured floor misses the target too. */
import { describe, expect, it } from "vitest";
import { median, row } from "./harness.ts";

const ref = { name: "reference", value: 100 };

describe("bench row()", () => {
  it("a ratio at or above the bound is met, below it is not", () => {
    expect(
      row({ case: "a", value: 80, unit: "x/s", reference: ref, target: { atLeast: 0.8 } }).target,
    ).toEqual({
      text: ">= 0.8 of reference",
      met: true,
    });
    expect(
      row({ case: "b", value: 79, unit: "x/s", reference: ref, target: { atLeast: 0.8 } }).target?.met,
    ).toBe(false);
  });

  it("floor is set only for a target missed whose measured floor misses it too", () => {
    const at = (value: number, floor: number) =>
      row({ case: "c", value, unit: "x/s", reference: ref, target: { atLeast: 0.9, floor } }).target;
    expect(at(80, 0.84)).toMatchObject({ met: false, floor: true });
    expect(at(80, 0.95)).toMatchObject({ met: false, floor: false });
    expect(at(95, 0.84)).toMatchObject({ met: true, floor: false });
    expect(
      row({ case: "d", value: 1, unit: "s", target: { atMost: 2, on: "value", floor: 3 } }).target,
    ).toMatchObject({
      met: true,
      floor: false,
    });
  });

  it("median is the middle value, the upper one of an even count", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(3);
  });
});
