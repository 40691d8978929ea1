import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { JsonObject, Outcome } from "./protocol.ts";
import { outcomeMatches } from "./protocol.ts";
import type { AnyCase, Level, Step } from "./cases/types.ts";
import { defineCase, expectErr, expectOk, step } from "./cases/types.ts";
import { execRun, runCaseProperty, runCaseVectors } from "./runner.ts";
import { ruleLines, unmetRequirements, verdict } from "./report.ts";

const R1 = "MEM-RANGE-ONE-REGION";
const R2 = "MEM-ADDR-U64";

/** An in-process "implementation": answers each request with `answer`. */
const fake = (answer: (op: string, args: JsonObject) => Outcome) => ({
  request: (op: string, args: JsonObject = {}): Promise<Outcome> =>
    Promise.resolve(op === "reset" ? { ok: true, value: null } : answer(op, args)),
});

// a(n) is wrong for n in [100, 200); b(n) is wrong for n >= 500; b(n) is Unsupported for odd n
// when `unsupportedOdd`.
const twoRuleImpl = (unsupportedOdd: boolean) =>
  fake((op, args) => {
    const n = args["n"] as number;
    if (op === "a") return { ok: true, value: n >= 100 && n < 200 ? -1 : n };
    if (unsupportedOdd && n % 2 === 1) return { ok: false, error: { _tag: "Unsupported" } };
    return { ok: true, value: n >= 500 ? 1 : 0 };
  });

const twoRuleCase = (level: Level): AnyCase =>
  defineCase<number>({
    id: "test.two-rules",
    title: "two steps, each citing its own rule",
    rules: [R1, R2],
    level,
    ops: ["a", "b"],
    arb: fc.integer({ min: 0, max: 1000 }),
    examples: [],
    steps: (n): Step[] => [step("a", { n }, expectOk(n), [R1]), step("b", { n }, expectOk(0), [R2])],
    numRuns: 200,
  });

const ops = new Set(["a", "b"]);

describe(`per-rule results [${R1} ${R2}]`, () => {
  it("runs every run, charges each difference to the rules of its step, and shrinks a counterexample per rule", async () => {
    const c = twoRuleCase("must");
    const r = await runCaseProperty(twoRuleImpl(false), c, ops, { numRuns: 200, seed: 3 });
    expect(r.runs).toBe(200);
    const inputs = fc.sample(c.arb, { seed: 3, numRuns: 200 }) as number[];
    const t1 = r.tallies.find((t) => t.rule === R1)!;
    const t2 = r.tallies.find((t) => t.rule === R2)!;
    expect(t1.differed).toBe(inputs.filter((n) => n >= 100 && n < 200).length);
    expect(t2.differed).toBe(inputs.filter((n) => n >= 500).length);
    expect(r.differed).toBe(t1.differed + t2.differed);
    // Each rule's own smallest counterexample: shrunk to the edge of its failing range.
    expect(t1.counterexample!.steps[1]!.args).toEqual({ n: 100 });
    expect(t2.counterexample!.steps[2]!.args).toEqual({ n: 500 });
    const lines = ruleLines([r]);
    expect(lines.map((l) => [l.rule, l.status, l.differed])).toEqual([
      [R2, "fail", t2.differed],
      [R1, "fail", t1.differed],
    ]);
    expect(verdict([r])).toBe("fail");
  });

  it("an Unsupported answer skips only the runs that needed it; the rule is still checked by the rest", async () => {
    const c = twoRuleCase("must");
    const runs = [2, 3, 4, 5].map((n) => c.steps(n));
    const r = await runCaseVectors(twoRuleImpl(true), c, runs, ops);
    expect(r.status).toBe("pass");
    expect(r.skippedRuns).toBe(2);
    expect(r.tallies.find((t) => t.rule === R2)!.checked).toBe(2);
    const all = await runCaseVectors(
      twoRuleImpl(true),
      c,
      [3, 5].map((n) => c.steps(n)),
      ops,
    );
    expect(all.status).toBe("skipped");
    expect(ruleLines([all]).find((l) => l.rule === R2)!.status).toBe("skipped");
    expect(unmetRequirements([all], [R2, "b", R1])).toEqual([R2, "b"]);
  });

  it("nothing tested is its own verdict, not a pass", async () => {
    const c = twoRuleCase("must");
    // Run 1 checks R1, then its b is Unsupported: R1 tested, R2 not.
    const half = await runCaseVectors(twoRuleImpl(true), c, [c.steps(1)], ops);
    expect(verdict([half])).toBe("pass");
    expect(unmetRequirements([half], [R1, R2])).toEqual([R2]);
    const skippedWhole = await runCaseVectors(twoRuleImpl(false), c, [c.steps(1)], new Set(["a"]));
    expect(skippedWhole.status).toBe("skipped");
    expect(verdict([skippedWhole])).toBe("untested");
    expect(verdict([])).toBe("untested");
  });

  it("a profile-level or safety-level difference is reported but only safety fails the verdict", async () => {
    const p = await runCaseVectors(
      twoRuleImpl(false),
      twoRuleCase("profile"),
      [[step("a", { n: 150 }, expectOk(150))]],
      ops,
    );
    expect(ruleLines([p]).every((l) => l.level === "profile")).toBe(true);
    expect(verdict([p])).toBe("pass");
    const s = await runCaseVectors(
      twoRuleImpl(false),
      twoRuleCase("safety"),
      [[step("a", { n: 150 }, expectOk(150))]],
      ops,
    );
    expect(verdict([s])).toBe("fail");
  });
});

describe(`answers a peer may give differently [${R1}]`, () => {
  it("a refusal earlier than the model's, for the same rule, is accepted; for another rule it is a difference", async () => {
    const steps = [
      step("queue.configure", { size: 3 }, expectOk(null)),
      step("queue.initialize", {}, expectErr("InvalidSize")),
    ];
    const early = fake(() => ({ ok: false, error: { _tag: "InvalidSize" } }));
    expect((await execRun(early, steps)).status).toBe("pass");
    const other = fake(() => ({ ok: false, error: { _tag: "NotReady" } }));
    expect((await execRun(other, steps)).status).toBe("fail");
  });

  it("chain walks compare index, indirect and end only when the answer gives them", () => {
    const full = {
      accepted: true,
      descriptors: [{ index: 0, addr: "4096", len: 8, flags: 0, next: 0, indirect: false }],
      end: null,
    };
    const bare = { accepted: true, descriptors: [{ addr: "4096", len: 8, flags: 0, next: 0 }] };
    const want: Outcome = { ok: true, value: full };
    expect(outcomeMatches(want, { ok: true, value: bare }, { op: "chain.walk" })).toBe(true);
    expect(outcomeMatches(want, { ok: true, value: bare }, { op: "memory.read" })).toBe(false);
    const wrong = { accepted: true, descriptors: [{ addr: "4096", len: 9, flags: 0, next: 0 }] };
    expect(outcomeMatches(want, { ok: true, value: wrong }, { op: "chain.walk" })).toBe(false);
  });

  it("peer error names map onto the vocabulary (the table, then the adapter's own hello map)", async () => {
    const s = [step("queue.addUsed", { head: 9, len: 0 }, expectErr("DescIndexOutOfBounds"))];
    const rustVmm = fake(() => ({ ok: false, error: { _tag: "InvalidDescriptorIndex" } }));
    expect((await execRun(rustVmm, s)).status).toBe("pass");
    const own = fake(() => ({ ok: false, error: { _tag: "BadHead" } }));
    expect((await execRun(own, s)).status).toBe("fail");
    expect(
      (await execRun(own, s, { level: "must", rules: [], errors: { BadHead: "DescIndexOutOfBounds" } }))
        .status,
    ).toBe("pass");
  });

  it("a safety step needs a refusal, any refusal; a crash is never one", async () => {
    const s = [step("memory.read", { addr: "0", len: 1 }, expectErr("InvalidGuestAddress"))];
    const ctx = { level: "safety" as const, rules: [R1] };
    const otherTag = fake(() => ({ ok: false, error: { _tag: "GuestAddressOverflow" } }));
    expect((await execRun(otherTag, s, ctx)).status).toBe("pass");
    expect((await execRun(otherTag, s, { ...ctx, level: "must" })).status).toBe("fail");
    const threw = fake(() => ({ ok: false, error: { _tag: "InternalError" } }));
    expect((await execRun(threw, s, ctx)).status).toBe("fail");
  });
});
