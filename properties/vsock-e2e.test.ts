/**
 * virtio-vsock end to end: a guest driver model, the device and an in-memory host, over random
 * interleavings of guest writes, host writes, reads, credit updates and shutdowns.
 */
import fc from "fast-check";
import { describe, expect } from "vitest";
import type { VsockConnection } from "../impl/vsock/connection.ts";
import { VsockGuest, type GuestSocket } from "../impl/vsock/guest.ts";
import { MemoryHost } from "../impl/vsock/memory-host.ts";
import { streamHeader } from "../impl/vsock/credit.ts";
import { nextState, type VsockProfileName } from "../spec/vsock.ts";
import {
  VSOCK_FLAGS_SHUTDOWN_RCV,
  VSOCK_FLAGS_SHUTDOWN_SEND,
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_SHUTDOWN,
} from "../wire/vsock.ts";
import { property } from "./harness.ts";

type Cmd =
  | { readonly k: "gw"; readonly c: number; readonly n: number }
  | { readonly k: "hw"; readonly c: number; readonly n: number }
  | { readonly k: "gr"; readonly c: number; readonly n: number }
  | { readonly k: "hr"; readonly c: number; readonly n: number }
  | { readonly k: "credit"; readonly c: number; readonly request: boolean }
  | { readonly k: "gshut"; readonly c: number }
  | { readonly k: "hshut"; readonly c: number }
  | { readonly k: "pump"; readonly rounds: number };

const cmdArb = (conns: number): fc.Arbitrary<Cmd> => {
  const c = fc.nat({ max: conns - 1 });
  const n = fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 20000 }));
  return fc.oneof(
    { weight: 4, arbitrary: fc.record({ k: fc.constant("gw" as const), c, n }) },
    { weight: 4, arbitrary: fc.record({ k: fc.constant("hw" as const), c, n }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant("gr" as const), c, n }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant("hr" as const), c, n }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant("credit" as const), c, request: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant("gshut" as const), c }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant("hshut" as const), c }) },
    {
      weight: 4,
      arbitrary: fc.record({ k: fc.constant("pump" as const), rounds: fc.integer({ min: 1, max: 3 }) }),
    },
  );
};

const scenarioArb = fc
  .record({
    profile: fc.constantFrom<VsockProfileName>("cloud-hypervisor", "rust-vmm", "virtio"),
    layout: fc.constantFrom("split", "single", "scatter"),
    initiators: fc.array(fc.boolean(), { minLength: 1, maxLength: 3 }),
    guestBuf: fc.constantFrom(4096, 16384, 65536),
    hostBuf: fc.constantFrom(4096, 16384, 65536),
    rxBufSize: fc.constantFrom(512, 4096),
    // The same driver and device on either virtqueue layout, with or without EVENT_IDX.
    ring: fc.constantFrom("split" as const, "packed" as const),
    eventIdx: fc.boolean(),
  })
  .chain((s) =>
    fc.record({ s: fc.constant(s), cmds: fc.array(cmdArb(s.initiators.length), { maxLength: 50 }) }),
  );

/** Bytes of connection i at stream offset o: different on every connection, so misrouting shows. */
const pattern = (i: number, dir: number, from: number, n: number): Uint8Array => {
  const out = new Uint8Array(n);
  for (let k = 0; k < n; k++) {
    const o = from + k;
    out[k] = (o * 7 + (o >>> 8) * 3 + i * 59 + dir * 101) & 0xff;
  }
  return out;
};

interface Pair {
  readonly sock: GuestSocket;
  readonly conn: VsockConnection;
  up: number; // bytes the guest program wrote
  down: number; // bytes the host program wrote
  guestDone: boolean;
  hostDone: boolean;
}

describe("vsock end to end", () => {
  property(
    "every byte arrives once, in order, on its connection; in-flight bytes never exceed buf_alloc; final states are the spec's",
    [
      "VSOCK-E2E",
      "VSOCK-CREDIT-FREE",
      "VSOCK-CREDIT-LIMIT",
      "VSOCK-CREDIT-UPDATE",
      "VSOCK-CONN-HANDSHAKE",
      "VSOCK-CONN-SHUTDOWN",
      "VSOCK-LAYOUT-SINGLE",
      "VSOCK-LAYOUT-SCATTER",
    ],
    fc.property(scenarioArb, ({ s, cmds }) => {
      const host = new MemoryHost();
      const guest = VsockGuest.create(
        {
          guestCid: 3n,
          profile: s.profile,
          muxer: { trace: true, bufAlloc: s.hostBuf, creditUpdateThreshold: Math.min(s.hostBuf, 65536) },
        },
        host,
        {
          ring: s.ring,
          eventIdx: s.eventIdx,
          queueSize: 64,
          rxBuffers: 16,
          rxBufSize: s.rxBufSize,
          txSlots: 16,
          txMaxData: 8192,
          // Each profile gets the layouts it accepts (VSOCK-LAYOUT-SINGLE, VSOCK-LAYOUT-SCATTER).
          layout:
            s.profile === "virtio" || (s.profile === "rust-vmm" && s.layout === "single")
              ? s.layout
              : "split",
          sockBufAlloc: s.guestBuf,
        },
      );
      const mux = guest.device.muxer;
      const pairs: Pair[] = [];
      for (const [i, guestInit] of s.initiators.entries()) {
        let sock: GuestSocket;
        let conn: VsockConnection;
        if (guestInit) {
          host.listening.add(100 + i);
          sock = guest.connect(100 + i);
          guest.pump();
          conn = mux.connection(100 + i, sock.port)!;
        } else {
          guest.listening.add(200 + i);
          conn = mux.hostConnect(200 + i)!;
          guest.pump();
          sock = guest.socket(200 + i, conn.localPort)!;
        }
        expect(conn.state).toBe("Established");
        expect(sock.state).toBe("established");
        pairs.push({ sock, conn, up: 0, down: 0, guestDone: false, hostDone: false });
      }
      const check = (): void => {
        for (const p of pairs) {
          // VSOCK-CREDIT-LIMIT, both directions.
          expect(p.conn.unconsumed()).toBeLessThanOrEqual(s.hostBuf);
          expect(p.sock.maxInFlight).toBeLessThanOrEqual(s.guestBuf);
          // A well-behaved guest is never reset for overrun, an unexpected op or a timeout.
          expect([null, "PeerShutdownBoth"]).toContain(p.conn.resetReason);
        }
      };
      const pump = (rounds: number): void => {
        for (let r = 0; r < rounds; r++) {
          guest.pump(1);
          check();
        }
      };
      for (const cmd of cmds) {
        if (cmd.k === "pump") {
          pump(cmd.rounds);
          continue;
        }
        const p = pairs[cmd.c]!;
        switch (cmd.k) {
          case "gw":
            if (p.guestDone) break;
            guest.write(p.sock, pattern(cmd.c, 0, p.up, cmd.n));
            p.up += cmd.n;
            break;
          case "hw":
            if (p.hostDone) break;
            p.conn.hostWrite(pattern(cmd.c, 1, p.down, cmd.n));
            p.down += cmd.n;
            break;
          case "gr":
            guest.read(p.sock, cmd.n);
            break;
          case "hr":
            host.read(p.conn, cmd.n);
            break;
          case "credit":
            guest.sendRaw(
              streamHeader(p.sock, p.sock, cmd.request ? VSOCK_OP_CREDIT_REQUEST : VSOCK_OP_CREDIT_UPDATE),
            );
            break;
          case "gshut":
            if (p.guestDone && p.sock.sentShutdown !== 0) {
              // SHUTDOWN flags are sticky hints: sending SEND again changes nothing.
              guest.sendRaw(streamHeader(p.sock, p.sock, VSOCK_OP_SHUTDOWN, 0, VSOCK_FLAGS_SHUTDOWN_SEND));
              break;
            }
            p.guestDone = true;
            guest.shutdown(p.sock, VSOCK_FLAGS_SHUTDOWN_SEND);
            break;
          case "hshut":
            p.hostDone = true;
            p.conn.hostShutdown();
            break;
        }
        check();
      }
      // Drain: both programs read everything.
      for (let i = 0; i < 400; i++) {
        pump(1);
        for (const p of pairs) {
          host.read(p.conn);
          guest.read(p.sock);
        }
        const idle = pairs.every(
          (p) =>
            p.sock.pendingBytes === 0 &&
            p.sock.unreadBytes === 0 &&
            p.conn.fromHost.length === 0 &&
            p.conn.toHost.length === 0 &&
            p.sock.receivedBytes === p.down &&
            host.receivedBytes(p.conn).length === p.up,
        );
        if (idle) break;
      }
      for (const [i, p] of pairs.entries()) {
        // VSOCK-E2E: once, in order, on the right connection.
        expect(Buffer.compare(host.receivedBytes(p.conn), pattern(i, 0, 0, p.up))).toBe(0);
        expect(Buffer.compare(Buffer.concat(p.sock.received), pattern(i, 1, 0, p.down))).toBe(0);
      }
      // Close: the guest shuts both directions; the device resets with RST.
      for (const p of pairs) guest.shutdown(p.sock, VSOCK_FLAGS_SHUTDOWN_SEND | VSOCK_FLAGS_SHUTDOWN_RCV);
      pump(4);
      expect(mux.connectionCount).toBe(0);
      for (const c of mux.history!) {
        expect(c.state).toBe("Killed");
        for (const t of c.trace!) expect(nextState(t.from, t.event), `${t.from} --${t.event}->`).toBe(t.to);
      }
    }),
    { numRuns: 500 },
  );
});
