/**
 * sim conform --vhost-user against real back-ends: ours (net with the loopback far side,
 * vsock) served in this process, planted bugs in ours (through a wrapper device), hostile
 * rounds, QEMU's virtiofsd (spawned; skipped where missing), and back-ends that misbehave
 * on the control socket (never answer, garbage, a reply to another request, a close).
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect, Fiber } from "effect";
import { afterAll, describe, expect, it } from "vitest";
import { RULES } from "../../spec/vhost-user-frontend.ts";
import type { VirtioDevice } from "../../impl/device/virtio-device.ts";
import { VsockVirtioDevice } from "../../impl/device/vsock.ts";
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import { LoopbackBackend } from "../../impl/net/backend.ts";
import { NetDevice } from "../../impl/net/device.ts";
import { loadFdio } from "../../impl/native/fdio.ts";
import { serveVhostUser } from "../../impl/vhost-user/backend.ts";
import { LEVEL } from "../../spec/vhost-user-frontend.ts";
import { exitStatus, runConformance, type RunOptions, type RunResult, type SetupFailed } from "./run.ts";

const native = loadFdio();
const skipNative = typeof native === "string" ? native : null;
if (skipNative !== null) console.log(`skipping vhost-user conformance tests: ${skipNative}`);

const dir = mkdtempSync(join(tmpdir(), "vuf-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const sock = (): string => join(dir, `s${n++}.sock`);
const openFds = (): number => readdirSync("/proc/self/fd").length;

const base = (socket: string, o: Partial<RunOptions>): RunOptions => ({
  socket,
  device: "net",
  payload: "random",
  listen: false,
  steps: 12,
  seed: 7,
  hostile: 0,
  timeoutMs: 1500,
  log: () => {},
  ...o,
});

const run = (o: RunOptions): Promise<RunResult | SetupFailed> =>
  Effect.runPromise(Effect.match(runConformance(o), { onFailure: (e) => e, onSuccess: (r) => r }));

/** Serves `device` on a fresh socket in this process while `body` runs. */
const withBackend = async <A>(device: VirtioDevice, body: (socket: string) => Promise<A>): Promise<A> => {
  const socket = sock();
  const fiber = Effect.runFork(Effect.scoped(serveVhostUser({ device, socketPath: socket })));
  try {
    return await body(socket);
  } finally {
    await Effect.runPromise(Fiber.interrupt(fiber));
  }
};

const netDevice = (): NetDevice =>
  new NetDevice(
    { mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56], mrgRxbuf: true, eventIdx: true },
    new LoopbackBackend(),
  );

const rule = (r: RunResult, id: keyof typeof LEVEL) => r.rules.find((x) => x.id === id)!;
const safetyFailures = (r: RunResult): string[] =>
  r.rules.filter((x) => x.level === "safety" && x.failures > 0).map((x) => `${x.id}: ${x.first?.detail}`);

const asResult = (r: RunResult | SetupFailed): RunResult => {
  if ("_tag" in r) throw new Error(`setup failed: ${r.message}`);
  return r;
};

/**
 * A planted bug: after the real device completes chains, either writes one byte past the
 * last device-writable buffer of each new used element, or adds 1 to its used.len.
 */
const planted = (
  inner: VirtioDevice,
  bug: "write-past" | "len-plus" | "rw-flip" | "late-notify" | "drop-tx" | "trust-used-idx",
): VirtioDevice => {
  // trust-used-idx: the used.idx each ring had when the device last wrote it.
  const shadow = inner.queues.map(() => 0);
  const usedAt = (q: number): number => Number(inner.queues[q]!.state().usedRing);
  let mem: GuestMemory | null = null;
  let notifyLater: (q: number) => void = () => {};
  const seen = inner.queues.map(() => 0);
  const plant = (q: number): void => {
    const m = mem;
    if (m === null) return;
    const st = inner.queues[q]!.state();
    const used = Number(st.usedRing);
    const table = Number(st.descTable);
    const idx = m.readU16(used + 2);
    while (seen[q] !== idx) {
      const at = used + 4 + 8 * (seen[q]! % st.size);
      const id = m.readU32(at);
      if (bug === "len-plus") m.writeU32(at + 4, m.readU32(at + 4) + 1);
      else if (bug === "rw-flip") {
        // vsock RX: the first data byte of an RW packet (header and data in the head buffer).
        const buf = Number(m.readU64(table + 16 * id));
        if (q === 0 && m.readU16(buf + 30) === 5 && m.readU32(buf + 24) > 0)
          m.writeU8(buf + 44, m.readU8(buf + 44) ^ 0xff);
      } else if (bug === "write-past") {
        let last: [number, number] | null = null;
        for (let i = id, hops = 0; hops < st.size; hops++) {
          const d = table + 16 * i;
          const flags = m.readU16(d + 12);
          if ((flags & 2) !== 0) last = [Number(m.readU64(d)), m.readU32(d + 8)];
          if ((flags & 1) === 0) break;
          i = m.readU16(d + 14);
        }
        if (last !== null) m.writeU8(last[0] + last[1], 0x5a);
      }
      seen[q] = (seen[q]! + 1) & 0xffff;
    }
  };
  return {
    deviceId: inner.deviceId,
    name: `${inner.name}+${bug}`,
    get offeredFeatures() {
      return inner.offeredFeatures;
    },
    get ackedFeatures() {
      return inner.ackedFeatures;
    },
    ackFeatures: (a) => inner.ackFeatures(a),
    configSize: inner.configSize,
    readConfig: (o, into) => inner.readConfig(o, into),
    writeConfig: (o, d) => inner.writeConfig(o, d),
    queues: inner.queues,
    activate: (m, notify) => {
      mem = m;
      seen.fill(0);
      // A call the device owes nobody, 150 ms after it processed a queue (never after a reset).
      notifyLater = (q) =>
        void setTimeout(() => {
          if (inner.isActive) notify(q);
        }, 150);
      return inner.activate(m, (q) => {
        plant(q);
        notify(q);
      });
    },
    get isActive() {
      return inner.isActive;
    },
    reset: () => inner.reset(),
    processQueue: (q) => {
      if (bug === "drop-tx" && q === 1) return 0;
      const m = mem;
      if (bug === "trust-used-idx" && m !== null) {
        // Someone else wrote used.idx: this device believes it and puts an element there, unwrapped.
        const idx = m.readU16(usedAt(q) + 2);
        if (idx !== shadow[q]) m.writeU32(usedAt(q) + 4 + 8 * idx, 0x5a5a5a5a);
      }
      const done = inner.processQueue(q);
      if (bug === "trust-used-idx" && m !== null)
        for (let i = 0; i < shadow.length; i++) shadow[i] = m.readU16(usedAt(i) + 2);
      plant(q);
      if (bug === "late-notify") notifyLater(q);
      return done;
    },
    get run() {
      return inner.run;
    },
  };
};

describe.skipIf(skipNative !== null)("sim conform --vhost-user", () => {
  it("every VUF rule has a level and every level a rule [VUF-WRITE-BOUNDS]", () => {
    expect(RULES.map((r) => r.id).sort()).toEqual(Object.keys(LEVEL).sort());
  });

  it("our net back-end: writes in bounds, used elements, notifications, loopback frames and header, GET_VRING_BASE [VUF-WRITE-BOUNDS VUF-USED-ONCE VUF-USED-LEN VUF-USED-IDX VUF-CALL-EVENT-IDX VUF-NET-TX-RX VUF-NET-RX-HDR VUF-VRING-BASE]", async () => {
    const before = openFds();
    const r = asResult(
      await withBackend(netDevice(), (s) => run(base(s, { steps: 10, seed: 8, eventIdx: true }))),
    );
    expect(r.stepsRun).toBe(10);
    expect(r.completions).toBeGreaterThan(10);
    for (const id of [
      "VUF-WRITE-BOUNDS",
      "VUF-USED-ONCE",
      "VUF-USED-LEN",
      "VUF-USED-IDX",
      "VUF-CALL-EVENT-IDX",
      "VUF-NET-TX-RX",
      "VUF-NET-RX-HDR",
      "VUF-VRING-BASE",
    ] as const) {
      expect(rule(r, id).checks, id).toBeGreaterThan(0);
      expect(rule(r, id).first, id).toBeNull();
    }
    expect(openFds()).toBe(before);
  }, 60_000);

  it("our vsock back-end (no host side): writes in bounds, well-formed headers, RST for every REQUEST [VUF-WRITE-BOUNDS VUF-VSOCK-HDR VUF-VSOCK-RST VUF-MSG-FRAMING VUF-CALL-NOTIFY]", async () => {
    const created = VsockVirtioDevice.create({ guestCid: 5n }, { queueCount: 2 });
    if (!created.ok) throw new Error("vsock device");
    const r = asResult(
      await withBackend(created.value, (s) =>
        run(base(s, { device: "vsock", steps: 6, seed: 9, eventIdx: false, timeoutMs: 400 })),
      ),
    );
    expect(r.stepsRun).toBe(6);
    for (const id of [
      "VUF-WRITE-BOUNDS",
      "VUF-VSOCK-HDR",
      "VUF-USED-LEN",
      "VUF-USED-ONCE",
      "VUF-CALL-NOTIFY",
    ] as const)
      expect(rule(r, id).failures, `${id}: ${rule(r, id).first?.detail}`).toBe(0);
    expect(rule(r, "VUF-VSOCK-HDR").checks).toBeGreaterThan(0);
    // Every REQUEST to a port without a listener gets its RST, headers split over descriptors
    // included (they went unanswered before VSOCK-TX-SPLIT-HDR).
    expect(rule(r, "VUF-VSOCK-RST").checks).toBeGreaterThan(0);
    expect(rule(r, "VUF-VSOCK-RST").failures, rule(r, "VUF-VSOCK-RST").first?.detail).toBe(0);
    expect(rule(r, "VUF-MSG-FRAMING").failures, rule(r, "VUF-MSG-FRAMING").first?.detail).toBe(0);
  }, 60_000);

  it("a planted write one byte past a writable buffer is caught, and the seed replays it [VUF-WRITE-BOUNDS]", async () => {
    const once = async (): Promise<RunResult> =>
      asResult(
        await withBackend(planted(netDevice(), "write-past"), (s) =>
          run(base(s, { steps: 4, seed: 11, eventIdx: false })),
        ),
      );
    const a = await once();
    const f = rule(a, "VUF-WRITE-BOUNDS");
    expect(f.failures).toBeGreaterThan(0);
    expect(f.first!.detail).toMatch(/outside every device-writable buffer/);
    const b = await once();
    expect(rule(b, "VUF-WRITE-BOUNDS").first).toEqual(f.first);
    expect(a.replay).toContain("--seed 11");
  }, 60_000);

  it("a planted used.len larger than written is caught, and the seed replays it [VUF-USED-LEN]", async () => {
    const once = async (): Promise<RunResult> =>
      asResult(
        await withBackend(planted(netDevice(), "len-plus"), (s) =>
          run(base(s, { steps: 4, seed: 12, eventIdx: false })),
        ),
      );
    const a = await once();
    const f = rule(a, "VUF-USED-LEN");
    expect(f.failures).toBeGreaterThan(0);
    expect(f.first!.detail).toMatch(/used.len 1 > 0 writable bytes/);
    expect(rule(await once(), "VUF-USED-LEN").first).toEqual(f.first);
  }, 60_000);

  it("hostile rounds against our net back-end: corruptions sent, no SAFETY finding, it keeps answering, also after the driver wrote used.idx [VUF-NO-HANG VUF-WRITE-BOUNDS VUF-HOSTILE-USED]", async () => {
    const r = asResult(
      await withBackend(netDevice(), (s) =>
        run(base(s, { steps: 30, seed: 13, hostile: 0.3, timeoutMs: 1500 })),
      ),
    );
    expect(r.hostileRounds).toBeGreaterThan(3);
    expect(r.stepsRun).toBe(30);
    expect(safetyFailures(r)).toEqual([]);
    expect(rule(r, "VUF-NO-HANG").checks).toBeGreaterThan(0);
    expect(r.corruptions.some((c) => / used-idx-write: /.test(c))).toBe(true);
    expect(rule(r, "VUF-HOSTILE-USED").checks).toBeGreaterThan(0);
  }, 120_000);

  it("a planted device that believes a used.idx the driver wrote is caught with the corruption named, and the seed replays it [VUF-HOSTILE-USED VUF-WRITE-BOUNDS]", async () => {
    const once = async (): Promise<RunResult> =>
      asResult(
        await withBackend(planted(netDevice(), "trust-used-idx"), (s) =>
          run(base(s, { steps: 6, seed: 20, hostile: 0.5, timeoutMs: 1500 })),
        ),
      );
    const a = await once();
    const f = rule(a, "VUF-HOSTILE-USED");
    expect(f.level).toBe("safety");
    expect(f.failures).toBeGreaterThan(0);
    expect(f.first!.detail).toMatch(
      /after step \d+: ring \d used-idx-write: driver wrote used.idx = \d+: \d+ byte\(s\) written outside/,
    );
    expect(exitStatus(a)).toBe(1);
    expect(rule(await once(), "VUF-HOSTILE-USED").first).toEqual(f.first);
    expect(a.replay).toContain("--seed 20");
    expect(a.replay).toContain("--hostile 0.5");
  }, 60_000);

  it("notification suppression: with EVENT_IDX our net back-end stays quiet until used_event; without it, it notifies despite NO_INTERRUPT (Firecracker's choice: advisory, exit 0) [VUF-CALL-EVENT-IDX-QUIET VUF-CALL-NO-INTERRUPT]", async () => {
    const on = asResult(
      await withBackend(netDevice(), (s) => run(base(s, { steps: 12, seed: 15, eventIdx: true }))),
    );
    expect(rule(on, "VUF-CALL-EVENT-IDX-QUIET").checks).toBeGreaterThan(0);
    expect(rule(on, "VUF-CALL-EVENT-IDX-QUIET").first).toBeNull();
    const off = asResult(
      await withBackend(netDevice(), (s) => run(base(s, { steps: 12, seed: 15, eventIdx: false }))),
    );
    const ni = rule(off, "VUF-CALL-NO-INTERRUPT");
    expect(ni.failures).toBeGreaterThan(0);
    expect(ni.first!.detail).toMatch(/NO_INTERRUPT set/);
    expect(exitStatus(off)).toBe(0);
  }, 60_000);

  it("a call that arrives after the check window is judged, not dropped: a planted late notification breaks EVENT_IDX quiet [VUF-CALL-EVENT-IDX-QUIET]", async () => {
    const r = asResult(
      await withBackend(planted(netDevice(), "late-notify"), (s) =>
        run(base(s, { steps: 6, seed: 16, eventIdx: true })),
      ),
    );
    const late = r.findings.filter((f) => f.rule === "VUF-CALL-EVENT-IDX-QUIET" && /late/.test(f.detail));
    expect(late.length, JSON.stringify(r.findings)).toBeGreaterThan(0);
    expect(late[0]!.detail).toMatch(/call\(s\) after the check window \(late\)/);
  }, 60_000);

  it("a device that never completes TX chains fails progress, named by ring and timeout [VUF-PROGRESS]", async () => {
    const r = asResult(
      await withBackend(planted(netDevice(), "drop-tx"), (s) =>
        run(base(s, { steps: 2, seed: 17, eventIdx: false, timeoutMs: 300 })),
      ),
    );
    const p = rule(r, "VUF-PROGRESS");
    expect(p.failures).toBeGreaterThan(0);
    expect(p.first!.detail).toMatch(/ring 1: \d+ chain\(s\) not completed within 300 ms/);
    const ok = asResult(
      await withBackend(netDevice(), (s) => run(base(s, { steps: 2, seed: 17, eventIdx: false }))),
    );
    expect(rule(ok, "VUF-PROGRESS").checks).toBeGreaterThan(0);
    expect(rule(ok, "VUF-PROGRESS").failures).toBe(0);
  }, 60_000);

  /** Our vsock device with its Unix host side at `uds`, served on `socket` while `body` runs. */
  const withVsockHost = async <A>(
    wrap: (d: VirtioDevice) => VirtioDevice,
    body: (socket: string, uds: string) => Promise<A>,
  ): Promise<A> => {
    const socket = sock();
    const uds = join(dir, `host${n++}`);
    const fiber = Effect.runFork(
      Effect.scoped(
        Effect.flatMap(VsockVirtioDevice.withUnixHost(uds, 5n), (d) =>
          serveVhostUser({ device: wrap(d), socketPath: socket }),
        ),
      ),
    );
    try {
      return await body(socket, uds);
    } finally {
      await Effect.runPromise(Fiber.interrupt(fiber));
    }
  };
  const VSOCK_STREAM_RULES = [
    "VUF-VSOCK-CONNECT",
    "VUF-VSOCK-CREDIT",
    "VUF-VSOCK-CREDIT-REQUEST",
    "VUF-VSOCK-ORDER",
    "VUF-VSOCK-STREAM",
  ] as const;

  it("our vsock back-end with its Unix host side: REQUEST -> RESPONSE, credit never exceeded, CREDIT_REQUEST answered, SHUTDOWN -> RST, bytes in order both ways [VUF-VSOCK-CONNECT VUF-VSOCK-CREDIT VUF-VSOCK-CREDIT-REQUEST VUF-VSOCK-ORDER VUF-VSOCK-STREAM]", async () => {
    const before = openFds();
    const r = asResult(
      await withVsockHost(
        (d) => d,
        (s, uds) => run(base(s, { device: "vsock", vsockHost: uds, steps: 20, seed: 9, timeoutMs: 1500 })),
      ),
    );
    expect(r.stepsRun).toBe(20);
    for (const id of [...VSOCK_STREAM_RULES, "VUF-VSOCK-HDR", "VUF-WRITE-BOUNDS", "VUF-USED-LEN"] as const) {
      expect(rule(r, id).checks, id).toBeGreaterThan(0);
      expect(rule(r, id).failures, `${id}: ${rule(r, id).first?.detail}`).toBe(0);
    }
    expect(r.replay).toContain("--vsock-uds");
    expect(openFds()).toBe(before);
  }, 120_000);

  it("our vsock back-end spawned as a user runs it (npx tsx sim vhost-user --uds): the stream rules hold and no socket is left behind [VUF-VSOCK-STREAM VUF-VSOCK-CREDIT]", async () => {
    const s = sock();
    const uds = join(dir, `spawned${n++}`);
    const r = asResult(
      await run(
        base(s, {
          device: "vsock",
          vsockHost: uds,
          steps: 6,
          seed: 23,
          timeoutMs: 3000,
          spawn: `npx tsx sim vhost-user --device vsock --socket ${s} --uds ${uds}`,
        }),
      ),
    );
    expect(r.stepsRun).toBe(6);
    for (const id of ["VUF-VSOCK-STREAM", "VUF-VSOCK-CREDIT", "VUF-WRITE-BOUNDS"] as const) {
      expect(rule(r, id).checks, id).toBeGreaterThan(0);
      expect(rule(r, id).failures, `${id}: ${rule(r, id).first?.detail}`).toBe(0);
    }
    expect(
      readdirSync(dir).filter((f) => f.startsWith(`spawned${n - 1}`) || f === s.split("/").pop()),
    ).toEqual([]);
  }, 180_000);

  it("a planted flipped byte in the device's RW data is caught by the stream rule, and the seed replays it [VUF-VSOCK-STREAM]", async () => {
    const once = async (): Promise<RunResult> =>
      asResult(
        await withVsockHost(
          (d) => planted(d, "rw-flip"),
          // EVENT_IDX off: our device then notifies every completion, and the plant runs before the guest reads.
          (s, uds) =>
            run(
              base(s, {
                device: "vsock",
                vsockHost: uds,
                steps: 8,
                seed: 10,
                timeoutMs: 1500,
                eventIdx: false,
              }),
            ),
        ),
      );
    const a = await once();
    const f = rule(a, "VUF-VSOCK-STREAM");
    expect(f.failures).toBeGreaterThan(0);
    expect(f.first!.detail).toMatch(/RW byte \d+ is \d+, the host wrote \d+/);
    // The host side's timing decides how bytes split into packets: the replay fails the same rule.
    expect(rule(await once(), "VUF-VSOCK-STREAM").failures).toBeGreaterThan(0);
  }, 120_000);

  const virtiofsd = "/usr/lib/qemu/virtiofsd";
  const fsSkip = !existsSync(virtiofsd)
    ? `${virtiofsd} missing (Debian qemu-system-common)`
    : process.getuid?.() !== 0
      ? "virtiofsd needs root"
      : null;
  if (fsSkip !== null) console.log(`skipping virtiofsd: ${fsSkip}`);
  it.skipIf(fsSkip !== null)(
    "virtiofsd (QEMU 7.2) through FUSE_INIT and GETATTR: generic rules hold [VUF-WRITE-BOUNDS VUF-USED-LEN VUF-USED-ONCE VUF-VRING-BASE]",
    async () => {
      const s = sock();
      const share = mkdtempSync(join(dir, "share-"));
      const r = asResult(
        await run(
          base(s, {
            device: "generic",
            payload: "fuse",
            steps: 10,
            seed: 14,
            spawn: `${virtiofsd} --socket-path=${s} -o source=${share} -o cache=none -o sandbox=chroot`,
          }),
        ),
      );
      expect(r.completions).toBeGreaterThan(10);
      for (const id of [
        "VUF-WRITE-BOUNDS",
        "VUF-USED-LEN",
        "VUF-USED-ONCE",
        "VUF-USED-IDX",
        "VUF-VRING-BASE",
      ] as const) {
        expect(rule(r, id).checks, id).toBeGreaterThan(0);
        expect(rule(r, id).failures, `${id}: ${rule(r, id).first?.detail}`).toBe(0);
      }
      expect(existsSync(s)).toBe(false);
    },
    120_000,
  );

  it.skipIf(fsSkip !== null)(
    "virtiofsd under hostile rounds: no SAFETY finding, no crash by signal (it stops on a broken ring) [VUF-NO-CRASH VUF-WRITE-BOUNDS]",
    async () => {
      for (const seed of [31, 32, 33]) {
        const s = sock();
        const share = mkdtempSync(join(dir, "share-"));
        const r = asResult(
          await run(
            base(s, {
              device: "generic",
              payload: "fuse",
              steps: 20,
              seed,
              hostile: 0.5,
              spawn: `${virtiofsd} --socket-path=${s} -o source=${share} -o cache=none -o sandbox=chroot`,
            }),
          ),
        );
        expect(r.hostileRounds).toBeGreaterThan(0);
        expect(r.crash).toBeNull();
        expect(safetyFailures(r)).toEqual([]);
      }
    },
    120_000,
  );

  /** A fake back-end on the control socket. */
  const fake = async (on: (c: Socket) => void, body: (socket: string) => Promise<void>): Promise<void> => {
    const socket = sock();
    const server: Server = createServer(on);
    await new Promise<void>((ok) => server.listen(socket, ok));
    const clients: Socket[] = [];
    server.on("connection", (c) => clients.push(c));
    try {
      await body(socket);
    } finally {
      for (const c of clients) c.destroy();
      await new Promise<void>((ok) => server.close(() => ok()));
    }
  };
  const header = (request: number, flags: number, size: number): Buffer => {
    const b = Buffer.alloc(12 + size);
    b.writeUInt32LE(request, 0);
    b.writeUInt32LE(flags, 4);
    b.writeUInt32LE(size, 8);
    return b;
  };
  const setupError = async (on: (c: Socket) => void): Promise<string> => {
    let message = "";
    const before = openFds();
    await fake(on, async (s) => {
      const r = await run(base(s, { timeoutMs: 300 }));
      if (!("_tag" in r)) throw new Error("expected a setup failure");
      message = r.message;
    });
    expect(openFds()).toBe(before);
    return message;
  };

  it("a back-end that never answers: a typed timeout naming the step, nothing left open", async () => {
    expect(await setupError(() => {})).toMatch(/^GET_FEATURES: the back-end did not answer within 300 ms/);
  });
  it("a spawned back-end that never answers: the step is named after --timeout (not the start-up wait), the process and its socket are gone", async () => {
    const s = sock();
    const before = openFds();
    const t0 = Date.now();
    const r = await run(
      base(s, {
        timeoutMs: 300,
        spawn: `exec node -e "require('net').createServer(() => {}).listen(process.argv[1])" ${s}`,
      }),
    );
    expect("_tag" in r ? r.message : "no failure").toMatch(
      /^GET_FEATURES: the back-end did not answer within 300 ms/,
    );
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(existsSync(s)).toBe(false);
    expect(openFds()).toBe(before);
  }, 60_000);
  it("garbage, a reply to another request, a closed socket: one line naming the step", async () => {
    expect(await setupError((c) => c.once("data", () => c.write(Buffer.alloc(12, 0xff))))).toMatch(
      /^GET_FEATURES: unreadable reply/,
    );
    expect(
      await setupError((c) =>
        c.once("data", () => {
          const b = header(15, 5, 8);
          c.write(b);
        }),
      ),
    ).toMatch(/^GET_FEATURES: the back-end answered another request \(GET_PROTOCOL_FEATURES\)/);
    expect(await setupError((c) => c.once("data", () => c.end()))).toMatch(
      /^GET_FEATURES: the back-end closed the connection/,
    );
  });
});

describe.skipIf(skipNative !== null)("sim conform --vhost-user: a back-end that crashes", () => {
  it("a back-end killed by a signal on hostile input is reported with the input and a replay that reproduces it [VUF-NO-CRASH]", async () => {
    const fixture = join(import.meta.dirname, "crashing-backend.ts");
    const once = async (steps: number): Promise<RunResult> => {
      const s = sock();
      return asResult(
        await run(
          base(s, {
            steps,
            seed: 21,
            hostile: 0.5,
            timeoutMs: 1000,
            spawn: `exec node --import tsx ${fixture} ${s}`,
          }),
        ),
      );
    };
    const r = await once(40);
    expect(r.crash).not.toBeNull();
    expect(r.crash!.signal).toBe("SIGSEGV");
    expect(r.crash!.input).toMatch(/desc-len-huge/);
    expect(rule(r, "VUF-NO-CRASH").failures).toBe(1);
    // The replay (same seed, up to the crash step) crashes at the same step with the same input.
    const again = await once(r.crash!.step);
    expect(again.crash?.step).toBe(r.crash!.step);
    expect(again.crash?.input).toBe(r.crash!.input);
  }, 120_000);
});
