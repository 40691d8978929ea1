import { afterEach, describe, expect, it } from "vitest";
import { ImplClient } from "./client.ts";

describe("the stdio client", () => {
  let client: ImplClient | null = null;
  afterEach(() => client?.close());

  it("answers a request with MalformedResponse at once when the program writes a line that is not a response", async () => {
    client = new ImplClient(`while read line; do echo 'not json'; done`, { timeoutMs: 20_000, startupMs: 0 });
    const r = await client.request("hello");
    expect(r.ok).toBe(false);
    // Not Timeout: the malformed line answered the request, not the 20 s timer.
    if (!r.ok) expect(r.error._tag).toBe("MalformedResponse");
  });
});
