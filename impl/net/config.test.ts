import { describe, expect, it } from "vitest";
import * as spec from "../../spec/net.ts";
import { checkConfig } from "./config.ts";

describe("checkConfig is the implementation's own check and agrees with the model [NET-CFG-MTU NET-CFG-MAC]", () => {
  it("accepts and refuses exactly the configurations validateConfig does, with the same error", () => {
    const macs: (readonly number[] | undefined)[] = [
      undefined,
      [2, 0, 0, 0, 0, 1],
      [0, 0, 0, 0, 0, 0],
      [255, 255, 255, 255, 255, 255],
      [],
      [1, 2, 3, 4, 5],
      [1, 2, 3, 4, 5, 6, 7],
      [1, 2, 3, 4, 5, 256],
      [-1, 2, 3, 4, 5, 6],
      [1, 2, 3, 4.5, 5, 6],
      [1, 2, 3, 4, 5, Number.NaN],
    ];
    const mtus = [undefined, 0, 67, 68, 1500, 65535, 65536, -1, 1500.5, Number.NaN, Number.POSITIVE_INFINITY];
    for (const mac of macs)
      for (const mtu of mtus) {
        const c: spec.NetConfig = { mac, mtu, status: true };
        expect(checkConfig(c)).toEqual(spec.validateConfig(c));
      }
  });
});
