/** The summary table fits 100 columns with thousands separators; the fault chart's outcomes are all told apart. */
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import { runScenario } from "./engine.ts";
import { FAULT_GROUPS, faultGroup, renderHtml } from "./html.ts";
import { reportData, summaryMarkdown, summaryTable, TABLE_WIDTH } from "./report.ts";
import { findScenario, scenarios } from "./scenarios/index.ts";

const report = async (name: string, steps: number, faults: number) => {
  const s = findScenario(name)!;
  const r = await Effect.runPromise(runScenario(s, { seed: 4, steps, faults, oracle: false, trace: false }));
  expect(r.status).toBe("passed");
  return reportData(s, r);
};

describe("report formatting", () => {
  it("the terminal summary fits 100 columns and every count has thousands separators", async () => {
    const d = await report("hostile-guest", 600, 0.1);
    const table = summaryTable(d);
    for (const line of table.split("\n")) expect(line.length, line).toBeLessThanOrEqual(TABLE_WIDTH);
    const bytes = d.totals.find((t) => t.value >= 1_000_000)!;
    expect(table).toContain(bytes.value.toLocaleString("en-US"));
    expect(table).toMatch(new RegExp(`^faults injected +${d.faults.injected.toLocaleString("en-US")}$`, "m"));
    // No run of four digits anywhere a count is printed: they are all grouped.
    for (const line of table.split("\n").slice(2))
      if (!line.includes("0x")) expect(line, line).not.toMatch(/\d{4}/);
    const md = summaryMarkdown(d);
    expect(md).toContain(`| ${bytes.label} | ${bytes.value.toLocaleString("en-US")} |`);
    expect(md).toContain(`${d.steps.toLocaleString("en-US")} steps`);
  });

  it("every fault outcome the scenarios write falls in a named group, and the page lists each with its count", async () => {
    // linux-* scenarios boot a kernel under QEMU (minutes under TCG): their own tests cover them.
    const injecting = scenarios.filter((s) => s.noFaults === undefined && s.realGuest !== true);
    for (const s of injecting) {
      const d = await report(s.name, 300, 0.2);
      const html = renderHtml(d);
      for (const [kind, row] of Object.entries(d.faults.table))
        for (const [o, c] of Object.entries(row)) {
          expect(faultGroup(o), `${s.name} ${kind}: ${o}`).toBeLessThan(FAULT_GROUPS.length - 1);
          expect(html).toContain(`${o}</td><td class="num">${c.toLocaleString("en-US")}</td>`);
        }
    }
    expect(new Set(FAULT_GROUPS.map((g) => g.color)).size).toBe(FAULT_GROUPS.length);
  });

  it("every ring-occupancy chart says which queues it shows", () => {
    for (const s of scenarios)
      for (const c of s.charts)
        if (c.title.startsWith("Ring occupancy")) expect(c.title, s.name).toMatch(/^Ring occupancy: \S/);
  });
});

describe("fault outcome groups", () => {
  it("outcomes land in the group their words say", () => {
    const name = (o: string): string => FAULT_GROUPS[faultGroup(o)]!.name;
    expect(name("no effect observed")).toBe("not reached, no effect");
    expect(name("refused (InvalidHead); served after the guest repaired it")).toMatch(/^refused/);
    expect(name("served as written")).toBe("served, or read without harm");
    expect(name("dropped (not for this device's CIDs)")).toBe("dropped and counted");
    expect(name("answered with RST")).toBe("answered with RST");
  });
});
