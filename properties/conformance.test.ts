/**
 * The conformance cases as properties of the reference adapter over impl/, reached through
 * the real stdio protocol in its own process (what `sim conform --reference` runs). Each
 * case's inputs are drawn by fast-check, the spec model gives every expected answer, and a
 * failure shrinks to a request list; FC_SEED / FC_PATH / FC_ONLY replay as for any property.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe } from "vitest";
import { ImplClient } from "../conformance/client.ts";
import { showStep } from "../conformance/report.ts";
import { execRun } from "../conformance/runner.ts";
import { allCases, referenceCommand, repoRoot } from "../conformance/suite.ts";
import { property } from "./harness.ts";

const client = new ImplClient(referenceCommand(), { cwd: repoRoot, timeoutMs: 10_000 });

beforeAll(async () => {
  const hello = await client.hello();
  if (typeof hello === "string") throw new Error(hello);
});
afterAll(() => client.close());

describe("conformance of the reference adapter, through the stdio protocol", () => {
  for (const c of allCases()) {
    property(
      `conformance ${c.id} (${c.level}): ${c.title}`,
      c.rules,
      fc.asyncProperty(c.arb, async (input) => {
        const r = await execRun(client, c.steps(input), { level: c.level, rules: c.setupRules ?? c.rules });
        if (!r.pass) {
          const steps = r.steps.slice(0, r.failedAt + 1).map(showStep);
          throw new Error(
            `${r.message}\nrequests:\n${steps.join("\n")}${client.log === "" ? "" : `\nadapter log:\n${client.log}`}`,
          );
        }
      }),
      {
        numRuns: Math.max(5, Math.ceil(c.numRuns / 3)),
        params: { examples: c.examples.map((e) => [e] as [unknown]) },
      },
    );
  }
});
