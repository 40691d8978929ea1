/**
 * virtio-vsock under a hostile guest: arbitrary packets and chains never throw, never stop the
 * device, and never disturb a connection they do not address.
 */
import fc from "fast-check";
import { describe, expect } from "vitest";
import { RX_QUEUE, TX_QUEUE } from "../impl/vsock/device.ts";
import { VsockGuest } from "../impl/vsock/guest.ts";
import { MemoryHost } from "../impl/vsock/memory-host.ts";
import type { VsockHeader, VsockProfileName } from "../spec/vsock.ts";
import {
  VSOCK_HOST_CID,
  VSOCK_OP_REQUEST,
  VSOCK_PKT_HDR_SIZE as H,
  VSOCK_TYPE_STREAM,
} from "../wire/vsock.ts";
import { property } from "./harness.ts";

const GOOD_PORT = 80;
/** The same guest driver and device on either virtqueue layout. */
const ringArb = fc.constantFrom("split" as const, "packed" as const);
const CID = 3n;

type Hostile =
  | { readonly k: "pkt"; readonly h: VsockHeader; readonly data: number }
  | { readonly k: "chain"; readonly bufs: readonly { addr: number; len: number; write: boolean }[] }
  | { readonly k: "host"; readonly n: number }
  | { readonly k: "tick"; readonly ms: number }
  | { readonly k: "good"; readonly n: number }
  | { readonly k: "pump" };

const u32 = fc.oneof(fc.constantFrom(0, 1, 0xffffffff, 0x80000000), fc.nat({ max: 0xffffffff }));
const hostileArb: fc.Arbitrary<Hostile> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant("pkt" as const),
      // Mostly a well-routed envelope with one or two lies, so hostile connections exist and
      // then get bogus ops, credit lies and shutdowns; sometimes anything at all.
      h: fc.record({
        srcCid: fc.oneof(
          { weight: 8, arbitrary: fc.constant(CID) },
          fc.constantFrom(0n, 2n, 4n, (1n << 64n) - 1n),
          fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        ),
        dstCid: fc.oneof(
          { weight: 8, arbitrary: fc.constant(VSOCK_HOST_CID) },
          fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        ),
        // Never the good connection's own guest port: that would address it legitimately.
        srcPort: fc
          .oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 2 }) }, u32)
          .filter((p) => p < 50000 || p > 50010),
        dstPort: fc.oneof({ weight: 8, arbitrary: fc.constant(GOOD_PORT) }, fc.constant(81), u32),
        len: fc.oneof({ weight: 8, arbitrary: fc.constant(-1) }, fc.integer({ min: 0, max: 5000 }), u32),
        type: fc.oneof({ weight: 8, arbitrary: fc.constant(VSOCK_TYPE_STREAM) }, fc.nat({ max: 0xffff })),
        op: fc.oneof(
          { weight: 3, arbitrary: fc.constant(VSOCK_OP_REQUEST) },
          { weight: 8, arbitrary: fc.integer({ min: 0, max: 8 }) },
          fc.nat({ max: 0xffff }),
        ),
        flags: fc.oneof(fc.nat({ max: 3 }), u32),
        bufAlloc: u32,
        fwdCnt: u32,
      }),
      data: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, fc.integer({ min: 0, max: 5000 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("chain" as const),
      bufs: fc.array(
        fc.record({
          addr: fc.oneof(fc.nat({ max: 0x200000 }), fc.constantFrom(2 ** 53 - 1, 2 ** 60)),
          len: fc.oneof(fc.integer({ min: 0, max: 100 }), u32),
          write: fc.boolean(),
        }),
        { minLength: 1, maxLength: 4 },
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("host" as const), n: fc.integer({ min: 1, max: 3000 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("tick" as const), ms: fc.integer({ min: 0, max: 5000 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ k: fc.constant("good" as const), n: fc.integer({ min: 1, max: 3000 }) }),
  },
);

describe("vsock hostile guest", () => {
  property(
    "bogus ops, types, CIDs, credit lies and chains never throw and never stop another connection",
    ["VSOCK-HOSTILE", "VSOCK-CONN-UNKNOWN", "VSOCK-CONN-CID", "VSOCK-CREDIT-OVERRUN"],
    fc.property(
      fc.constantFrom<VsockProfileName>("cloud-hypervisor", "rust-vmm", "virtio"),
      fc.array(hostileArb, { minLength: 10, maxLength: 60 }),
      ringArb,
      (profile, actions, ring) => {
        const host = new MemoryHost();
        host.listening.add(GOOD_PORT);
        host.listening.add(81);
        const guest = VsockGuest.create(
          { guestCid: CID, profile, muxer: { maxConnections: 64, maxPendingRst: 8 } },
          host,
          {
            ring,
            queueSize: 64,
            rxBuffers: 16,
            txSlots: 16,
            txMaxData: 8192,
          },
        );
        const mux = guest.device.muxer;
        const sock = guest.connect(GOOD_PORT);
        guest.pump();
        const conn = mux.connection(GOOD_PORT, sock.port)!;
        expect(conn.state).toBe("Established");
        let up = 0;
        let down = 0;
        let now = 0;
        for (const a of actions) {
          switch (a.k) {
            case "pkt":
              // len -1: the header tells the truth about the data; otherwise it lies.
              guest.sendRaw({ ...a.h, len: a.h.len < 0 ? a.data : a.h.len }, new Uint8Array(a.data));
              break;
            case "chain":
              guest.addChainAt(TX_QUEUE, a.bufs);
              break;
            case "host":
              conn.hostWrite(new Uint8Array(a.n).fill(down & 0xff));
              down += a.n;
              break;
            case "tick":
              now += a.ms;
              guest.now = now;
              guest.device.tick(now);
              break;
            case "good":
              guest.write(sock, new Uint8Array(a.n).fill(up & 0xff));
              up += a.n;
              break;
            case "pump":
              // Hostile packets pile up between kicks, so several reach the device in one batch.
              guest.pump(2);
              host.read(conn);
              guest.read(sock);
              break;
          }
          expect(mux.connectionCount).toBeLessThanOrEqual(64);
        }
        for (let i = 0; i < 100 && (host.receivedBytes(conn).length < up || sock.receivedBytes < down); i++) {
          guest.pump(2);
          host.read(conn);
          guest.read(sock);
        }
        // The good connection is untouched: still established, every byte through both ways.
        expect(conn.state).toBe("Established");
        expect(host.receivedBytes(conn).length).toBe(up);
        expect(sock.receivedBytes).toBe(down);
        // The device still serves a fresh connection (after the hostile batch still queued).
        guest.pump();
        const fresh = guest.connect(81);
        guest.pump();
        expect(fresh.state).toBe("established");
      },
    ),
    { numRuns: 1000 },
  );
});

describe("vsock hostile rx buffers", () => {
  property(
    "arbitrary rx chains never hang or throw; the device writes only inside each used chain's buffers, never more than they hold",
    ["VSOCK-HOSTILE", "VSOCK-BOUNDS", "VSOCK-RX-ORDER", "VSOCK-RX-DATA-WRITABLE"],
    fc.property(
      fc.constantFrom<VsockProfileName>("cloud-hypervisor", "rust-vmm", "virtio"),
      fc.array(
        fc.array(
          fc.record({
            // Each chain has its own 2 KiB window of scratch memory; lengths may run past it.
            off: fc.oneof(fc.nat({ max: 0x7ff }), fc.constantFrom(0, 0x800 - H)),
            len: fc.oneof(
              { weight: 4, arbitrary: fc.integer({ min: 0, max: 0x400 }) },
              { weight: 2, arbitrary: fc.constantFrom(0, H) },
              fc.constantFrom(1, H - 1, H + 1, 100),
              fc.nat({ max: 0x9000 }),
              u32,
            ),
            write: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, fc.constant(false)),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        { minLength: 1, maxLength: 12 },
      ),
      fc.integer({ min: 0, max: 40000 }),
      ringArb,
      (profile, chains, hostBytes, ring) => {
        const host = new MemoryHost();
        host.listening.add(GOOD_PORT);
        const guest = VsockGuest.create({ guestCid: CID, profile }, host, {
          ring,
          queueSize: 64,
          rxBuffers: 4,
          txSlots: 16,
          txMaxData: 8192,
          rstStrays: false,
          scratch: 0x8000,
        });
        const sock = guest.connect(GOOD_PORT);
        guest.pump();
        const conn = guest.device.muxer.connection(GOOD_PORT, sock.port)!;
        conn.hostWrite(new Uint8Array(hostBytes).fill(7));
        const base = guest.scratchBase;
        const scratch = guest.memory.slice(base, 0x8000, true)!;
        scratch.fill(0xee);
        const posted = new Map<number, { addr: number; len: number }[]>();
        chains.forEach((c, k) => {
          const bufs = c.map((b) => ({ addr: base + k * 0x800 + b.off, len: b.len, write: b.write }));
          const head = guest.addChainAt(RX_QUEUE, bufs);
          if (head !== undefined) posted.set(head, bufs);
        });
        for (let round = 0; round < 12; round++) {
          const before = scratch.slice();
          const from = guest.foreignUsed.length;
          guest.now = round;
          guest.pollRx();
          guest.pump(1);
          guest.read(sock);
          const used = guest.foreignUsed.slice(from);
          // Every scratch byte that changed lies in a buffer of a chain used in this round.
          const mine = used.flatMap((u) => posted.get(u.head) ?? []);
          for (let i = 0; i < scratch.length; i++) {
            if (scratch[i] === before[i]) continue;
            const addr = base + i;
            expect(
              mine.some((b) => addr >= b.addr && addr < b.addr + b.len),
              `byte ${addr} written outside the used chains`,
            ).toBe(true);
          }
          for (const u of used) {
            const bufs = posted.get(u.head);
            if (bufs === undefined) continue;
            expect(u.len).toBeLessThanOrEqual(bufs.reduce((a, b) => a + b.len, 0));
            posted.delete(u.head);
          }
        }
      },
    ),
    { numRuns: 200 },
  );
});
