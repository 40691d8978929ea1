import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect } from "effect";
import { GuestMemory } from "../memory/guest-memory.ts";
import { emptyHeader } from "../../spec/vsock.ts";
import { VsockGuest } from "./guest.ts";
import { makeUnixVsockDevice } from "./service.ts";
import { UnixSocketBackend } from "./unix-backend.ts";
import { VSOCK_OP_RST, VSOCK_TYPE_STREAM } from "../../wire/vsock.ts";

let dir = "";
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "vsock-unix-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const setup = async () => {
  const path = join(dir, "vsock.sock");
  const backend = await UnixSocketBackend.listen({ path, now: () => Date.now() });
  const guest = VsockGuest.create({ guestCid: 3n }, backend, {
    rxBuffers: 32,
    txSlots: 32,
    txMaxData: 16384,
  });
  backend.attach(guest.device.muxer);
  return { path, backend, guest };
};

/** Drives the guest until `done()` or 5 s; the device runs only when the guest or a socket did something. */
const drive = async (guest: VsockGuest, backend: UnixSocketBackend, done: () => boolean): Promise<void> => {
  const end = Date.now() + 5000;
  while (!done()) {
    if (Date.now() > end) throw new Error("timed out driving the guest");
    guest.pump();
    backend.resumeDrained();
    await Promise.race([backend.activity(), new Promise((r) => setTimeout(r, 5))]);
  }
};

const collect = (sock: Socket): { text: () => string; bytes: () => Buffer; ended: () => boolean } => {
  const chunks: Buffer[] = [];
  let ended = false;
  sock.on("data", (c: Buffer) => chunks.push(c));
  sock.on("end", () => (ended = true));
  return {
    text: () => Buffer.concat(chunks).toString("latin1"),
    bytes: () => Buffer.concat(chunks),
    ended: () => ended,
  };
};

describe("Unix-socket backend with real sockets", () => {
  it("host connects with CONNECT <port>, gets OK <port>, and bytes flow both ways [VSOCK-UNIX-CONNECT VSOCK-E2E]", async () => {
    const { path, backend, guest } = await setup();
    try {
      guest.listening.add(1234);
      const sock = createConnection({ path, allowHalfOpen: true });
      const got = collect(sock);
      sock.write("CONNECT 1234\n");
      await drive(guest, backend, () => got.text().includes("\n"));
      const conn = guest.device.muxer.connections()[0]!;
      expect(got.text()).toBe(`OK ${conn.localPort}\n`);
      const s = [...guest.sockets.values()][0]!;
      const payload = Buffer.alloc(100_000, 7);
      for (let i = 0; i < payload.length; i++) payload[i] = (i * 13) & 0xff;
      sock.write(payload);
      await drive(guest, backend, () => (guest.read(s), s.receivedBytes >= payload.length));
      expect(Buffer.concat(s.received)).toEqual(payload);
      guest.write(s, Buffer.from("world"));
      await drive(guest, backend, () => got.text().endsWith("world"));
      // Host half-close reaches the guest as SHUTDOWN(SEND) (VSOCK-CONN-SHUTDOWN).
      sock.end();
      await drive(guest, backend, () => s.peerShutdown !== 0);
      sock.destroy();
    } finally {
      await backend.close();
    }
    expect(existsSync(path)).toBe(false);
  });

  it("guest connects to port P through <path>_P; nothing there means RST [VSOCK-UNIX-LISTEN]", async () => {
    const { path, backend, guest } = await setup();
    let server: Server | null = null;
    try {
      const accepted: Socket[] = [];
      server = createServer({ allowHalfOpen: true }, (c) => accepted.push(c));
      await new Promise<void>((r) => server!.listen(`${path}_5000`, r));
      const s = guest.connect(5000);
      await drive(guest, backend, () => s.state === "established" && accepted.length === 1);
      const peer = collect(accepted[0]!);
      guest.write(s, Buffer.from("ping"));
      guest.shutdown(s, 2);
      await drive(guest, backend, () => peer.ended());
      expect(peer.text()).toBe("ping");
      accepted[0]!.write("pong");
      await drive(guest, backend, () => (guest.read(s), s.receivedBytes === 4));
      expect(Buffer.concat(s.received).toString()).toBe("pong");

      const t = guest.connect(5001);
      await drive(guest, backend, () => t.state === "closed");
      expect(t.reset).toBe(true);
      accepted[0]!.destroy();
    } finally {
      await new Promise<void>((r) => (server === null ? r() : server.close(() => r())));
      await backend.close();
    }
  });

  it("a slow host reader holds the guest to its credit; every byte arrives [VSOCK-CREDIT-LIMIT VSOCK-CREDIT-UPDATE VSOCK-E2E]", async () => {
    const { path, backend, guest } = await setup();
    try {
      guest.listening.add(7);
      const sock = createConnection({ path, allowHalfOpen: true });
      const got = collect(sock);
      sock.write("CONNECT 7\n");
      await drive(guest, backend, () => got.text().includes("\n"));
      const conn = guest.device.muxer.connections()[0]!;
      const s = [...guest.sockets.values()][0]!;
      const total = 4 << 20;
      const payload = Buffer.alloc(total);
      for (let i = 0; i < total; i++) payload[i] = (i * 31 + (i >> 10)) & 0xff;
      guest.write(s, payload);
      sock.pause(); // the host program does not read for a while
      let maxInFlight = 0;
      for (let i = 0; i < 30; i++) {
        guest.pump();
        maxInFlight = Math.max(maxInFlight, conn.unconsumed());
        await new Promise((r) => setTimeout(r, 1));
      }
      expect(s.pendingBytes).toBeGreaterThan(0); // the guest is held back by credit
      sock.resume();
      const header = got.text().indexOf("\n") + 1;
      await drive(guest, backend, () => {
        maxInFlight = Math.max(maxInFlight, conn.unconsumed());
        return got.bytes().length - header >= total;
      });
      expect(maxInFlight).toBeLessThanOrEqual(conn.options.bufAlloc);
      expect(Buffer.compare(got.bytes().subarray(header), payload)).toBe(0);
      sock.destroy();
    } finally {
      await backend.close();
    }
  });

  it("a bad handshake line is refused and does not disturb the device [VSOCK-UNIX-CONNECT VSOCK-HOSTILE]", async () => {
    const { path, backend, guest } = await setup();
    try {
      for (const line of ["CONNECT abc\n", "HELLO\n", "CONNECT 99999999999\n", "x".repeat(200)]) {
        const sock = createConnection({ path });
        const got = collect(sock);
        sock.on("error", () => {});
        sock.write(line);
        await new Promise<void>((r) => sock.on("close", () => r()));
        expect(got.text()).toBe("");
      }
      expect(backend.refusedHandshakes).toBe(4);
      expect(guest.device.muxer.connectionCount).toBe(0);
    } finally {
      await backend.close();
    }
  });

  it("the Effect service releases the listener and its socket file with the scope", async () => {
    const path = join(dir, "svc.sock");
    const memory = GuestMemory.of([{ base: 0, bytes: new Uint8Array(4096) }]);
    const seen = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const svc = yield* makeUnixVsockDevice(memory, { guestCid: 3n }, path);
          return existsSync(path) && svc.device.guestCid === 3n;
        }),
      ),
    );
    expect(seen).toBe(true);
    expect(existsSync(path)).toBe(false);
  });
});

describe("Unix-socket backend: a reset connection", () => {
  it("releases its host socket: a later host write fails instead of vanishing into a half-open fd [VSOCK-UNIX-CONNECT VSOCK-CONN-RST]", async () => {
    const { path, backend, guest } = await setup();
    try {
      guest.listening.add(1234);
      const sock = createConnection({ path, allowHalfOpen: true });
      const got = collect(sock);
      sock.write("CONNECT 1234\n");
      await drive(guest, backend, () => got.text().includes("\n"));
      const s = [...guest.sockets.values()][0]!;
      guest.sendRaw({
        ...emptyHeader,
        srcCid: 3n,
        dstCid: 2n,
        srcPort: s.port,
        dstPort: s.peerPort,
        type: VSOCK_TYPE_STREAM,
        op: VSOCK_OP_RST,
      });
      await drive(guest, backend, () => guest.device.muxer.connections().length === 0 && got.ended());
      const outcome = new Promise<string>((resolve) => {
        sock.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
        sock.once("close", () => resolve("close"));
        setTimeout(() => resolve("still open"), 2000);
      });
      sock.write("late bytes");
      expect(await outcome).not.toBe("still open");
      sock.destroy();
    } finally {
      await backend.close();
    }
  });
});

describe("Unix-socket backend: waiting for socket activity", () => {
  const NEVER = Symbol("timed out");
  const within = <A>(p: Promise<A>, ms: number): Promise<A | typeof NEVER> =>
    Promise.race([p, new Promise<typeof NEVER>((r) => setTimeout(() => r(NEVER), ms))]);

  it("a wait started before a host connects ends when it does; one event is not seen twice; close ends every wait [VSOCK-UNIX-CONNECT]", async () => {
    const { path, backend, guest } = await setup();
    try {
      guest.listening.add(1234);
      const waiting = backend.activity();
      const sock = createConnection({ path, allowHalfOpen: true });
      sock.write("CONNECT 1234\n");
      expect(await within(waiting, 2000)).not.toBe(NEVER);
      // Everything that happened so far is consumed by one more wait at most.
      await within(backend.activity(), 50);
      expect(await within(backend.activity(), 50)).toBe(NEVER);
      const pending = Effect.runPromise(backend.awaitActivity);
      sock.destroy();
      expect(await within(pending, 2000)).not.toBe(NEVER);
      const last = backend.activity();
      await backend.close();
      expect(await within(last, 2000)).not.toBe(NEVER);
    } finally {
      await backend.close();
    }
  });

  it("an event that ends a wait nobody awaits any more (it lost a race with a timer) still ends the next wait [VSOCK-UNIX-CONNECT]", async () => {
    const { path, backend, guest } = await setup();
    try {
      guest.listening.add(1234);
      const abandoned = backend.activity();
      const sock = createConnection({ path, allowHalfOpen: true });
      // One write, one event: the CONNECT line (the guest is not driven, so nothing follows).
      sock.write("CONNECT 1234\n");
      expect(await within(abandoned, 2000)).not.toBe(NEVER);
      expect(await within(backend.activity(), 50)).not.toBe(NEVER);
      // Waits abandoned turn after turn while nothing happens share one pending promise.
      const idle = backend.activity();
      for (let i = 0; i < 100; i++) expect(backend.activity()).toBe(idle);
      expect(await within(backend.activity(), 50)).toBe(NEVER);
      sock.destroy();
    } finally {
      await backend.close();
    }
  });
});
