/**
 * `vsock-echo`: host programs and guest programs talking through the virtio-vsock device
 * and its Unix-socket backend (real sockets in a temporary folder):
 *
 * - host → guest: a host program connects to the backend's socket, writes
 *   `CONNECT <port>\n`, reads `OK <port>\n`, then sends chunks that a guest program
 *   listening on that port echoes back;
 * - guest → host: a guest program connects to host port P; the backend connects to
 *   `<path>_<P>`, where a host echo server answers.
 *
 * Every chunk must come back intact and in order. Steps are lock-step (each waits for its
 * echoes), so the trace records only what the programs wrote and got back, not how the
 * kernel happened to split the bytes. Counters of kicks and packets do depend on that
 * split (real I/O), which is why the determinism property leaves this scenario out.
 */
import { Effect } from "effect";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UnixSocketBackend } from "../../impl/vsock/unix-backend.ts";
import type { GuestSocket } from "../../impl/vsock/guest.ts";
import { simVsockGuest } from "../guest/vsock-probe.ts";
import type { ChartSpec, Scenario, ScenarioInstance, SimContext } from "../engine.ts";
import { streamByte, streamChunk } from "./vsock-credit.ts";

const GUEST_PORT = 1234;
const HOST_PORT = 4321;
/** Wall-clock limit for one step's echoes (real sockets): beyond it the bytes are lost. */
const STEP_WALL_MS = 10_000;

export const ECHO_CHARTS: readonly ChartSpec[] = [
  {
    title: "Throughput",
    kind: "rate",
    unit: "bytes/s (virtual time)",
    series: [
      { metric: "echo.h2g.bytes", label: "host-initiated: echoed back" },
      { metric: "echo.g2h.bytes", label: "guest-initiated: echoed back" },
    ],
  },
  {
    title: "Bytes in flight at each sync point",
    kind: "level",
    unit: "bytes",
    series: [
      { metric: "echo.written", label: "written by the programs, cumulative" },
      { metric: "echo.echoed", label: "echoed back, cumulative" },
    ],
  },
];

/** A program on one end that writes chunks and checks the echo. */
interface Talker {
  readonly id: number;
  readonly kind: "host-initiated" | "guest-initiated";
  written: number;
  echoed: number;
  write(bytes: Uint8Array): void;
}

export const vsockEchoScenario: Scenario = {
  name: "vsock-echo",
  rings: ["split", "packed"],
  realIo: "how real Unix sockets split the bytes",
  summary:
    "host and guest programs echo through the vsock device and its Unix-socket backend (CONNECT/OK handshake and <path>_<port>), real sockets; every byte back in order",
  defaultSteps: 300,
  smoke: { steps: 40, seeds: [1] },
  defaultFaults: 0,
  noFaults:
    "it checks the Unix-socket backend with real sockets, whose timing is not under the seed (vsock-credit and hostile-guest inject vsock faults)",
  charts: ECHO_CHARTS,
  create: (ctx: SimContext) =>
    Effect.gen(function* () {
      const r = ctx.rng;
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "vsim-"))),
        (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true })),
      );
      const path = join(dir, "v.sock");
      const backend = yield* Effect.acquireRelease(
        Effect.promise(() => UnixSocketBackend.listen({ path, now: () => ctx.clock.nowUs / 1000 })),
        (b) => Effect.promise(() => b.close()),
      );
      // EVENT_IDX stays off here: this scenario is about the Unix-socket backend; vsock-credit
      // varies it.
      const { guest, probe } = simVsockGuest(
        ctx,
        backend,
        { guestCid: 3n, profile: "virtio", muxer: {} },
        {
          queueSize: 128,
          eventIdx: false,
          layout: r.chance(0.5) ? "single" : "split",
          rxBufSize: 4096,
          txMaxData: 4096,
          sockBufAlloc: 256 * 1024,
          creditUpdateBelow: 128 * 1024,
        },
      );
      backend.attach(guest.device.muxer);
      guest.listening.add(GUEST_PORT);
      ctx.facts["socket"] = "<tmp>/v.sock";
      ctx.facts["guest listens on"] = GUEST_PORT;
      ctx.facts["host echo server"] = `<tmp>/v.sock_${HOST_PORT}`;

      // The host echo server for guest-initiated connections.
      const served = new Set<Socket>();
      yield* Effect.acquireRelease(
        Effect.promise(
          () =>
            new Promise<Server>((resolve, reject) => {
              const s = createServer({ allowHalfOpen: true }, (sock) => {
                served.add(sock);
                sock.on("close", () => served.delete(sock));
                sock.on("error", () => {});
                sock.on("data", (c) => sock.write(c));
              });
              s.once("error", reject);
              s.listen(`${path}_${HOST_PORT}`, () => resolve(s));
            }),
        ),
        // close() waits for open connections: end them first (the backend holds the other ends).
        (s) =>
          Effect.promise(
            () =>
              new Promise<void>((res) => {
                for (const c of served) c.destroy();
                s.close(() => res());
              }),
          ),
      );

      const talkers: Talker[] = [];
      const hostSockets: Socket[] = [];
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          for (const s of hostSockets) s.destroy();
        }),
      );
      const failures: string[] = [];

      // Host-initiated connections: CONNECT <port>, then echo through the guest program.
      const nHost = r.range(1, 3);
      for (let i = 0; i < nHost; i++) {
        const id = talkers.length;
        const sock = createConnection({ path });
        sock.on("error", (e) => failures.push(`talker ${talkers.length}: ${e.message}`));
        hostSockets.push(sock);
        let handshake = "";
        let ready = false;
        const t: Talker = {
          id,
          kind: "host-initiated",
          written: 0,
          echoed: 0,
          write: (b) => {
            sock.write(b);
            t.written += b.length;
          },
        };
        sock.on("data", (chunk: Buffer) => {
          let data = chunk;
          if (!ready) {
            handshake += chunk.toString("latin1");
            const nl = handshake.indexOf("\n");
            if (nl < 0) return;
            if (!/^OK \d+$/.test(handshake.slice(0, nl)))
              failures.push(`talker ${id}: handshake answer ${JSON.stringify(handshake.slice(0, nl))}`);
            ready = true;
            data = Buffer.from(handshake.slice(nl + 1), "latin1");
          }
          for (let k = 0; k < data.length; k++) {
            if (data[k] !== streamByte(id, t.echoed + k)) {
              failures.push(`talker ${id} (host-initiated): echoed byte ${t.echoed + k} differs`);
              break;
            }
          }
          t.echoed += data.length;
        });
        sock.write(`CONNECT ${GUEST_PORT}\n`);
        talkers.push(t);
      }

      // Guest-initiated connections: the guest program writes, the host server echoes.
      const guestSockets: { t: Talker; s: GuestSocket }[] = [];
      const nGuest = r.range(1, 3);
      for (let i = 0; i < nGuest; i++) {
        const id = talkers.length;
        const s = guest.connect(HOST_PORT);
        const t: Talker = {
          id,
          kind: "guest-initiated",
          written: 0,
          echoed: 0,
          write: (b) => {
            guest.write(s, b);
            t.written += b.length;
          },
        };
        talkers.push(t);
        guestSockets.push({ t, s });
      }
      ctx.facts["host-initiated connections"] = nHost;
      ctx.facts["guest-initiated connections"] = nGuest;

      const mx = ctx.metrics;
      const m = {
        h2g: mx.counter("echo.h2g.bytes", "bytes echoed on host-initiated connections"),
        g2h: mx.counter("echo.g2h.bytes", "bytes echoed on guest-initiated connections"),
        written: mx.gauge("echo.written", "bytes written"),
        echoed: mx.gauge("echo.echoed", "bytes echoed"),
      };

      /** The guest side: pump the device, echo what guest listeners read, read echoes. */
      const guestRound = (): void => {
        guest.pump(8);
        for (const s of guest.sockets.values()) {
          if (s.port !== GUEST_PORT || s.state !== "established") continue;
          const before = s.received.length;
          guest.read(s);
          for (let k = before; k < s.received.length; k++) guest.write(s, s.received[k]!.slice());
          s.received.length = 0;
        }
        for (const { t, s } of guestSockets) {
          guest.read(s);
          for (const c of s.received) {
            for (let k = 0; k < c.length; k++) {
              if (c[k] !== streamByte(t.id, t.echoed + k)) {
                failures.push(`talker ${t.id} (guest-initiated): echoed byte ${t.echoed + k} differs`);
                break;
              }
            }
            t.echoed += c.length;
          }
          s.received.length = 0;
        }
        guest.pump(8);
        probe.checkStall();
        backend.resumeDrained();
      };

      /** Pump until every talker got all its echoes (or the wall limit). */
      const settle = (what: string): Effect.Effect<void> =>
        Effect.promise(async () => {
          const started = Date.now();
          for (;;) {
            guestRound();
            if (failures.length > 0) return;
            if (
              talkers.every((t) => t.echoed === t.written) &&
              guestSockets.every(({ s }) => s.state === "established")
            )
              return;
            if (Date.now() - started > STEP_WALL_MS) {
              failures.push(
                `${what}: echoes still missing after ${STEP_WALL_MS / 1000} s: ${talkers
                  .map((t) => `${t.kind} ${t.id}: ${t.echoed}/${t.written}`)
                  .join(", ")}`,
              );
              return;
            }
            await Promise.race([backend.activity(), new Promise((res) => setTimeout(res, 2))]);
          }
        });

      yield* settle("connection set-up");
      if (failures.length > 0) return ctx.fail("SIM-DELIVERY", failures[0]!);

      const inst: ScenarioInstance = {
        step: () =>
          Effect.gen(function* () {
            for (const t of talkers) {
              if (!r.chance(0.6)) continue;
              const len = r.range(1, 16 * 1024);
              t.write(streamChunk(t.id, t.written, len));
              if (ctx.trace.on) ctx.trace.event("write", { talker: t.id, kind: t.kind, len });
            }
            yield* settle(`step ${ctx.step}`);
            if (failures.length > 0) ctx.fail("SIM-DELIVERY", failures[0]!);
            let h = 0;
            let g = 0;
            for (const t of talkers) {
              if (t.kind === "host-initiated") h += t.echoed;
              else g += t.echoed;
            }
            m.h2g.value = h;
            m.g2h.value = g;
            m.written.value = talkers.reduce((a, t) => a + t.written, 0);
            m.echoed.value = h + g;
            if (ctx.trace.on) ctx.trace.event("echoed", { bytes: h + g });
            ctx.clock.advance(100);
          }),
        drain: () =>
          Effect.gen(function* () {
            yield* settle("drain");
            if (failures.length > 0) ctx.fail("SIM-DELIVERY", failures[0]!);
            for (const t of talkers)
              if (t.echoed !== t.written)
                ctx.fail(
                  "SIM-DELIVERY",
                  `talker ${t.id} (${t.kind}): ${t.echoed} of ${t.written} bytes came back`,
                );
          }),
      };
      return inst;
    }),
};
