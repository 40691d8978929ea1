/**
 * vsock echo: a host program writes through the Unix-socket backend (`CONNECT <port>`), the
 * device carries the bytes to a simulated guest that echoes them back, and the host reads the
 * echo. Baseline: the same echo over a raw Unix socket in the same process, without the
 * device. MB/s counts payload bytes one way; packets/s counts every packet through the
 * device (TX and RX, data and credit updates).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchFigure, BenchSuite } from "./harness.ts";
import { VsockGuest } from "../impl/vsock/guest.ts";
import { UnixSocketBackend } from "../impl/vsock/unix-backend.ts";

const writeAll = async (sock: Socket, chunk: Uint8Array, count: number): Promise<void> => {
  for (let i = 0; i < count; i++) {
    if (!sock.write(chunk)) await new Promise<void>((r) => sock.once("drain", () => r()));
  }
};

/** Raw Unix-socket echo: client writes `count` chunks, an in-process server echoes them. */
const rawEcho = async (dir: string, size: number, count: number): Promise<number> => {
  const path = join(dir, "raw.sock");
  const server = createServer((c) => c.pipe(c));
  await new Promise<void>((r) => server.listen(path, r));
  const sock = createConnection({ path });
  await new Promise<void>((r) => sock.once("connect", () => r()));
  const total = size * count;
  let got = 0;
  const t0 = performance.now();
  const done = new Promise<void>((r) =>
    sock.on("data", (c: Buffer) => {
      got += c.length;
      if (got >= total) r();
    }),
  );
  await writeAll(sock, new Uint8Array(size).fill(0x5a), count);
  await done;
  const secs = (performance.now() - t0) / 1000;
  sock.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  return total / secs / 1e6;
};

/** Echo through the device: returns MB/s and packets/s. */
const deviceEcho = async (
  dir: string,
  size: number,
  count: number,
): Promise<{ mbps: number; pps: number }> => {
  const path = join(dir, "vsock.sock");
  const backend = await UnixSocketBackend.listen({ path, now: () => performance.now() });
  const guest = VsockGuest.create({ guestCid: 3n }, backend, {
    rxBuffers: 128,
    rxBufSize: 4096,
    txSlots: 128,
    txMaxData: 64 * 1024,
    sockBufAlloc: 256 * 1024,
  });
  backend.attach(guest.device.muxer);
  guest.listening.add(1234);
  const sock = createConnection({ path, allowHalfOpen: true });
  await new Promise<void>((r) => sock.once("connect", () => r()));
  let line = "";
  let got = 0;
  const total = size * count;
  let established = false;
  sock.on("data", (c: Buffer) => {
    if (!established) {
      line += c.toString("latin1");
      const nl = line.indexOf("\n");
      if (nl < 0) return;
      established = true;
      got += line.length - nl - 1;
      return;
    }
    got += c.length;
  });
  sock.write("CONNECT 1234\n");
  const loop = async (until: () => boolean): Promise<void> => {
    while (!until()) {
      guest.pump(4);
      for (const s of guest.sockets.values()) for (const c of guest.take(s)) guest.write(s, c);
      backend.resumeDrained();
      guest.pump(4);
      await Promise.race([backend.activity(), new Promise((r) => setImmediate(r))]);
    }
  };
  await loop(() => established);
  const packets0 = guest.sent + guest.receivedPackets;
  const t0 = performance.now();
  const writer = writeAll(sock, new Uint8Array(size).fill(0xa5), count);
  await loop(() => got >= total);
  await writer;
  const secs = (performance.now() - t0) / 1000;
  const packets = guest.sent + guest.receivedPackets - packets0;
  sock.destroy();
  await backend.close();
  return { mbps: total / secs / 1e6, pps: packets / secs };
};

const suite: BenchSuite = {
  name: "vsock",
  async run(log) {
    const dir = mkdtempSync(join(tmpdir(), "vsock-bench-"));
    const figures: BenchFigure[] = [];
    try {
      for (const [size, count] of [
        [4096, 2048],
        [65536, 256],
      ] as const) {
        const label = size === 4096 ? "4 KiB" : "64 KiB";
        // Warm up both paths once, then take the best of three.
        await rawEcho(dir, size, Math.max(1, count >> 3));
        await deviceEcho(dir, size, Math.max(1, count >> 3));
        let raw = 0;
        let dev = { mbps: 0, pps: 0 };
        for (let i = 0; i < 3; i++) {
          raw = Math.max(raw, await rawEcho(dir, size, count));
          const d = await deviceEcho(dir, size, count);
          if (d.mbps > dev.mbps) dev = d;
        }
        log(
          `${label} writes: device echo ${dev.mbps.toFixed(1)} MB/s, ${Math.round(dev.pps)} packets/s; raw Unix echo ${raw.toFixed(1)} MB/s`,
        );
        figures.push({
          case: `echo host→device→guest→device→host over the Unix backend, ${label} writes (${(size * count) / 2 ** 20} MiB)`,
          value: dev.mbps,
          unit: "MB/s",
          baseline: { name: "raw Unix-socket echo, no device", value: raw },
          ratio: dev.mbps / raw,
        });
        figures.push({
          case: `packets through the device in that echo, ${label} writes (guest RX buffers 4 KiB)`,
          value: dev.pps,
          unit: "packets/s",
        });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return figures;
  },
};

export default suite;
