import { afterEach, describe, expect, it, vi } from "vitest";
import { conformMain } from "../cli.ts";

describe("sim conform --vhost-user: the command line", () => {
  afterEach(() => vi.restoreAllMocks());
  const capture = async (argv: string[]): Promise<{ code: number; err: string; out: string }> => {
    const err: string[] = [];
    const out: string[] = [];
    vi.spyOn(console, "error").mockImplementation((l: unknown) => void err.push(String(l)));
    vi.spyOn(console, "log").mockImplementation((l: unknown) => void out.push(String(l)));
    const code = await conformMain(argv);
    return { code, err: err.join("\n"), out: out.join("\n") };
  };

  it("--help prints the vhost-user usage", async () => {
    const r = await capture(["--vhost-user", "/tmp/x.sock", "--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/--device KIND/);
  });
  it("usage errors: one line, a hint, exit 2", async () => {
    expect((await capture(["--vhost-user", "/tmp/x.sock"])).err).toMatch(
      /--device net\|vsock\|generic is required/,
    );
    const bad = await capture(["--vhost-user", "/tmp/x.sock", "--device", "blk"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--device must be one of net, vsock, generic/);
    expect((await capture(["--vhost-user", "/tmp/x.sock", "--device", "net", "--hostile", "2"])).code).toBe(
      2,
    );
    expect(
      (await capture(["--vhost-user", "/tmp/x.sock", "--device", "net", "--payload", "fuse"])).err,
    ).toMatch(/--payload goes with --device generic/);
    const uds = await capture(["--vhost-user", "/tmp/x.sock", "--device", "net", "--vsock-uds", "/tmp/h"]);
    expect(uds.code).toBe(2);
    expect(uds.err).toMatch(/--vsock-uds goes with --device vsock/);
  });
  it("a socket nobody listens on: exit 2 naming the step", async () => {
    const r = await capture([
      "--vhost-user",
      "/tmp/vuf-nobody.sock",
      "--device",
      "net",
      "--timeout",
      "200",
      "--no-report",
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/connect \/tmp\/vuf-nobody.sock: the back-end did not answer within 200 ms/);
  });
});
