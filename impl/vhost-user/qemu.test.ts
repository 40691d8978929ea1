/**
 * A real VMM against our back-end, no guest kernel needed: QEMU's firmware runs the
 * virtio-net option ROM (iPXE), which negotiates, sends DHCP through our TX queue and reads
 * the looped-back frames from RX. Killing QEMU mid-run must leave nothing behind.
 * Skipped (with the reason printed) where QEMU or the native bindings are missing.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect, Fiber } from "effect";
import { describe, expect, it } from "vitest";
import { loadFdio } from "../native/fdio.ts";
import { LoopbackBackend } from "../net/backend.ts";
import { NetDevice } from "../net/device.ts";
import { serveVhostUser, type VhostUserEvent } from "./backend.ts";
import { openFds } from "./testing.ts";

const QEMU = "qemu-system-x86_64";
const reason = ((): string | null => {
  const io = loadFdio();
  if (typeof io === "string") return io;
  if (spawnSync(QEMU, ["--version"]).status !== 0) return `${QEMU} is not installed`;
  return null;
})();
if (reason !== null) console.log(`skipping the QEMU vhost-user test: ${reason}`);

const qemuArgs = (sock: string): string[] => [
  "-accel",
  "tcg",
  "-m",
  "128M",
  "-nographic",
  "-nodefaults",
  "-no-reboot",
  "-serial",
  "none",
  "-monitor",
  "none",
  "-object",
  "memory-backend-memfd,id=mem,size=128M,share=on",
  "-numa",
  "node,memdev=mem",
  "-chardev",
  `socket,id=c0,path=${sock}`,
  "-netdev",
  "vhost-user,id=n0,chardev=c0",
  "-device",
  "virtio-net-pci,netdev=n0,vectors=0",
];

describe.skipIf(reason !== null)("vhost-user back-end against QEMU", () => {
  it("QEMU's firmware drives our net device (features, memory table, rings, frames both ways); killing QEMU releases everything [VU-RING-START VU-MEM-MAP VU-CALL VU-DISCONNECT]", async () => {
    const sock = join(tmpdir(), `vlab-vu-qemu-${process.pid}.sock`);
    const before = openFds();
    const dev = new NetDevice(
      { mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56], mrgRxbuf: true, eventIdx: true },
      new LoopbackBackend(),
    );
    const events: VhostUserEvent[] = [];
    let qemu: ChildProcess | null = null;
    try {
      await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            let listening: () => void = () => {};
            const ready = new Promise<void>((r) => (listening = r));
            const server = yield* Effect.forkChild(
              serveVhostUser({
                device: dev,
                socketPath: sock,
                connections: 1,
                onEvent: (e) => {
                  events.push(e);
                  if (e._tag === "Listening") listening();
                },
              }),
            );
            yield* Effect.promise(() => ready);
            qemu = spawn(QEMU, qemuArgs(sock), { stdio: "ignore" });
            // Wait (bounded) until a frame went out and came back.
            for (let i = 0; i < 600 && !(dev.stats.txFrames > 0 && dev.stats.rxFrames > 0); i++)
              yield* Effect.sleep(100);
            expect(dev.stats.txFrames).toBeGreaterThan(0);
            expect(dev.stats.rxFrames).toBeGreaterThan(0);
            expect(dev.isActive).toBe(true);
            // The VMM dies mid-run.
            qemu.kill("SIGKILL");
            yield* Fiber.join(server);
          }),
        ),
      );
    } finally {
      const q = qemu as ChildProcess | null;
      if (q !== null && q.exitCode === null) q.kill("SIGKILL");
    }
    const tags = events.map((e) => e._tag);
    expect(tags).toContain("MemoryTable");
    expect(tags).toContain("DeviceActivated");
    expect(tags[tags.length - 1]).toBe("Disconnected");
    expect(dev.isActive).toBe(false);
    expect(existsSync(sock)).toBe(false);
    expect(openFds()).toBe(before);
  }, 90_000);
});
