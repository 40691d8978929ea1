/**
 * The vsock echo benchmark counts bytes only: if its lean guest or its floor server dropped,
 * reordered or mangled bytes, or left a connection unanswered, the figures would mean nothing.
 * Here the same guest, driver and floor server carry a patterned stream and every byte is
 * compared (no timing).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { UnixSocketBackend } from "../impl/vsock/unix-backend.ts";
import { copyServer, driveUntil, hostClient, leanGuest, memoryCopies, memoryEcho } from "./vsock.bench.ts";

/** `n` bytes of a pattern that differs per connection and does not repeat every 4 or 64 KiB. */
const pattern = (n: number, seed: number): Uint8Array => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + seed * 13 + (i >> 12)) % 251;
  return out;
};

/** Writes `bytes` in writes of `size` (the last one shorter), waiting for drain. */
const writeIn = async (sock: Socket, bytes: Uint8Array, size: number): Promise<void> => {
  for (let at = 0; at < bytes.length; at += size) {
    if (!sock.write(bytes.subarray(at, at + size)))
      await new Promise<void>((r) => sock.once("drain", () => r()));
  }
};

/** What a socket receives, bytes after the first `skipLine` newline-ended line. */
const received = (sock: Socket, skipLine: boolean): (() => Buffer) => {
  const chunks: Buffer[] = [];
  sock.on("data", (c: Buffer) => chunks.push(c));
  return () => {
    const all = Buffer.concat(chunks);
    return skipLine ? all.subarray(all.indexOf(0x0a) + 1) : all;
  };
};

let dir = "";
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "vsock-bench-test-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("vsock echo benchmark: the lean guest and the floor echo every byte", () => {
  for (const size of [4096, 65536, 5000]) {
    it(`one connection, ${size} B writes, 1 MiB + 123 B through the device and the lean guest`, async () => {
      const path = join(dir, "v.sock");
      const backend = await UnixSocketBackend.listen({ path, now: () => performance.now() });
      const guest = leanGuest(backend);
      try {
        const { sock, state, data } = await hostClient(path);
        const got = received(sock, true);
        const deadline = Date.now() + 20_000;
        await driveUntil(backend, guest, () => state.established || Date.now() > deadline, data);
        const bytes = pattern((1 << 20) + 123, 1);
        const writer = writeIn(sock, bytes, size);
        await driveUntil(backend, guest, () => state.got >= bytes.length || Date.now() > deadline, data);
        await writer;
        expect(state.got).toBe(bytes.length);
        expect(Buffer.compare(got(), Buffer.from(bytes))).toBe(0);
        sock.destroy();
      } finally {
        await backend.close();
      }
    });
  }

  it("40 connections at once (more than the lean guest's 32 TX buffers), 70 KiB each", async () => {
    const path = join(dir, "v.sock");
    const backend = await UnixSocketBackend.listen({ path, now: () => performance.now() });
    const guest = leanGuest(backend);
    try {
      const clients = await Promise.all(Array.from({ length: 40 }, () => hostClient(path)));
      const gots = clients.map((c) => received(c.sock, true));
      const deadline = Date.now() + 20_000;
      // Every CONNECT read before the guest runs: its first RX round brings 40 REQUESTs.
      while (guest.device.muxer.connectionCount < 40 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 5));
      await driveUntil(
        backend,
        guest,
        () => clients.every((c) => c.state.established) || Date.now() > deadline,
      );
      expect(clients.filter((c) => !c.state.established)).toHaveLength(0);
      const payloads = clients.map((_, i) => pattern(70 * 1024, i + 2));
      const writers = clients.map((c, i) => writeIn(c.sock, payloads[i]!, 65536));
      await driveUntil(
        backend,
        guest,
        () => clients.every((c, i) => c.state.got >= payloads[i]!.length) || Date.now() > deadline,
      );
      await Promise.all(writers);
      clients.forEach((c, i) => {
        expect(Buffer.compare(gots[i]!(), Buffer.from(payloads[i]!))).toBe(0);
        c.sock.destroy();
      });
    } finally {
      await backend.close();
    }
  });

  for (const [size, count] of [
    [65536, 20],
    [4096, 300],
    [5000, 250],
  ] as const) {
    it(`the in-memory echo (memoryEcho) gives back every byte in order, ${count} writes of ${size} B`, () => {
      const chunk = pattern(size, 3);
      const back: Buffer[] = [];
      expect(memoryEcho(size, count, chunk, (c) => back.push(Buffer.from(c)))).toBeGreaterThan(0);
      const all = Buffer.concat(back);
      expect(all.length).toBe(size * count);
      for (let i = 0; i < count; i++)
        expect(Buffer.compare(all.subarray(i * size, (i + 1) * size), chunk)).toBe(0);
      expect(memoryCopies(size, count)).toBeGreaterThan(0);
    });
  }

  it("the floor's server (copyServer) echoes 1 MiB + 123 B in 64 KiB writes unchanged", async () => {
    const path = join(dir, "floor.sock");
    const server = createServer(copyServer());
    await new Promise<void>((r) => server.listen(path, r));
    const sock = createConnection({ path });
    try {
      await new Promise<void>((r) => sock.once("connect", () => r()));
      const got = received(sock, false);
      const bytes = pattern((1 << 20) + 123, 9);
      await writeIn(sock, bytes, 65536);
      const deadline = Date.now() + 20_000;
      while (got().length < bytes.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(Buffer.compare(got(), Buffer.from(bytes))).toBe(0);
    } finally {
      sock.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
