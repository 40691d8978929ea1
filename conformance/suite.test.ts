import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { RULES as IOVEC } from "../spec/iovec.ts";
import { RULES as MEMORY } from "../spec/memory.ts";
import { RULES as NET } from "../spec/net.ts";
import { RULES as PACKED } from "../spec/packed-queue.ts";
import { RULES as QUEUE } from "../spec/queue.ts";
import { RULES as USB } from "../spec/usb-vsock.ts";
import { RULES as VSOCK } from "../spec/vsock.ts";
import { handlers } from "./adapter.ts";
import { allCases } from "./suite.ts";

const declared = new Set(
  [...MEMORY, ...QUEUE, ...PACKED, ...IOVEC, ...VSOCK, ...USB, ...NET].map((r) => r.id),
);

describe("the suite's cases [MEM-RANGE-ONE-REGION VQ-LAYOUT]", () => {
  it("cite only rule ids declared in spec/*.ts and have unique ids", () => {
    const cases = allCases();
    expect(cases.flatMap((c) => c.rules).filter((r) => !declared.has(r))).toEqual([]);
    expect(new Set(cases.map((c) => c.id)).size).toBe(cases.length);
  });

  it("send only operations they declare (so an implementation without one skips, never fails) and the reference serves them all", () => {
    const served = new Set(["hello", "reset", ...Object.keys(handlers())]);
    for (const c of allCases()) {
      const ops = new Set(c.ops);
      for (const op of c.ops) expect(served.has(op), `${c.id} needs ${op}`).toBe(true);
      const inputs = [...c.examples, ...fc.sample(c.arb, { seed: 11, numRuns: 5 })];
      for (const input of inputs) {
        for (const s of c.steps(input))
          expect(ops.has(s.op) || s.op === "reset", `${c.id} sends ${s.op}`).toBe(true);
      }
    }
  });
});
