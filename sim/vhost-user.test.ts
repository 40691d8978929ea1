import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import { ProtocolFeature, Req, bit } from "../spec/vhost-user.ts";
import { loadFdio } from "../impl/native/fdio.ts";
import { Poller, acquireUnixConnection, fdio } from "../impl/native/scoped.ts";
import { Frontend } from "../impl/vhost-user/frontend.ts";
import { vhostUserMain } from "./vhost-user.ts";

const capture = (): {
  out: string[];
  err: string[];
  io: { out: (l: string) => void; err: (l: string) => void };
} => {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l) => out.push(l), err: (l) => err.push(l) } };
};

describe("sim vhost-user", () => {
  it.each([
    [[], "--device net|vsock is required"],
    [["--device", "blk", "--socket", "/tmp/x"], "--device must be net or vsock"],
    [["--device", "net"], "--socket PATH is required"],
    [["--device", "net", "--socket", "/tmp/x", "--backend", "unix"], "--backend for net is tap or loopback"],
    [["--device", "vsock", "--socket", "/tmp/x", "--cid", "x"], "--cid"],
    [["--device", "net", "--socket", "/tmp/x", "--mac", "1:2:3"], "--mac"],
    [["--device", "net", "--socket", "/tmp/x", "--frobnicate"], "unknown option"],
    [["--device", "net", "--socket"], "--socket needs a value"],
  ])("usage error %j: one line, exit 2", async (argv, message) => {
    const c = capture();
    expect(await vhostUserMain(argv, c.io)).toBe(2);
    expect(c.err[0]).toContain(message);
  });

  it("--help prints the usage and exits 0", async () => {
    const c = capture();
    expect(await vhostUserMain(["--help"], c.io)).toBe(0);
    expect(c.out.join("\n")).toContain("--device net|vsock");
  });

  const skip = typeof loadFdio() === "string";
  it.skipIf(skip)(
    "serves a vsock device to a front-end, answers its CID, and removes its sockets when done",
    async () => {
      const sock = join(tmpdir(), `vlab-vu-cli-${process.pid}.sock`);
      const uds = `${sock}.host`;
      const c = capture();
      const main = vhostUserMain(
        [
          "--device",
          "vsock",
          "--socket",
          sock,
          "--cid",
          "7",
          "--uds",
          uds,
          "--connections",
          "1",
          "--verbose",
        ],
        c.io,
      );
      for (let i = 0; i < 200 && !c.out.some((l) => l.startsWith("listening")); i++)
        await new Promise((r) => setTimeout(r, 25));
      const cid = await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const io = yield* fdio;
            const fd = yield* acquireUnixConnection(io, sock);
            const fe = new Frontend(io, fd, yield* Poller.make(io), 5000);
            yield* fe.call(Req.GET_FEATURES);
            yield* fe.call(Req.SET_PROTOCOL_FEATURES, { _tag: "U64", value: bit(ProtocolFeature.CONFIG) });
            const r = yield* fe.call(Req.GET_CONFIG, {
              _tag: "Config",
              offset: 0,
              flags: 0,
              data: new Uint8Array(8),
            });
            return r?.body._tag === "Config" ? r.body.data[0] : undefined;
          }),
        ),
      );
      expect(cid).toBe(7);
      expect(await main).toBe(0);
      const out = c.out.join("\n");
      expect(out).toContain("front-end connected");
      expect(out).toContain("<- GET_CONFIG");
      expect(out).toContain("disconnected (connection 1): front-end closed the connection");
      expect(existsSync(sock)).toBe(false);
      expect(existsSync(uds)).toBe(false);
    },
  );
});
