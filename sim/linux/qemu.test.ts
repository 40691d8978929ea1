/**
 * Real guests in the gate: the prepared Debian kernel boots under QEMU (TCG) and runs a
 * script; interrupting a boot leaves no QEMU and no files behind; QEMU's built-in
 * virtio-net on a TAP in a namespace of ours carries the guest's pings. Prepares the guest
 * cache when it is empty; skipped, with the reason printed, where QEMU, the kernel package
 * or (for the TAP) root is missing.
 */
import { existsSync } from "node:fs";
import { Effect, Fiber } from "effect";
import { describe, expect, it } from "vitest";
import { acquireNetns, tapUnavailableReason } from "../../impl/native/netns.ts";
import { GUEST_NET, acquireTapIn, builtinNetArgs } from "./devices.ts";
import { guestAvailable } from "./prepare.ts";
import { describeGuestError, launchGuest, type Guest } from "./qemu.ts";

const avail = guestAvailable({ progress: (l) => console.log(l) });
if (!avail.ok) console.log(`real-guest tests skipped: ${avail.reason}`);
const d = avail.ok ? describe : describe.skip;
const tapReason = tapUnavailableReason();
if (avail.ok && tapReason !== undefined) console.log(`real-guest TAP test skipped: ${tapReason}`);
const dTap = avail.ok && tapReason === undefined ? describe : describe.skip;

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Runs an Effect; a guest error fails the test with its one-line description. */
const run = <A>(e: Effect.Effect<A, { readonly _tag: string }>): Promise<A> =>
  Effect.runPromise(
    e.pipe(
      Effect.mapError((x) =>
        "waitingFor" in x || x._tag === "GuestLaunchError"
          ? new Error(describeGuestError(x as Parameters<typeof describeGuestError>[0]))
          : new Error(JSON.stringify(x)),
      ),
    ),
  );

d("a real Linux guest under QEMU", () => {
  if (!avail.ok) return;
  const { image, qemu } = avail;

  it("boots the PVH vmlinux, loads every module in order and runs the given script", async () => {
    const out = await run(
      Effect.scoped(
        Effect.gen(function* () {
          const g = yield* launchGuest({
            image,
            qemu,
            script: "#!/bin/sh\necho guest-says-$((6 * 7))\ncat /sys/module/virtio_net/initstate\nexit 3\n",
          });
          const mods = yield* g.waitFor(/^VLAB-MODULES-OK (.*)$/, {
            timeoutMs: 60_000,
            what: "modules loaded",
          });
          yield* g.waitFor(/^guest-says-42$/, { timeoutMs: 30_000 });
          const exit = yield* g.waitFor(/^VLAB-RUN-EXIT (\d+)$/, { timeoutMs: 30_000 });
          const code = yield* g.waitExit(30_000);
          return {
            mods: mods.match[1]!.trim().split(" "),
            exit: exit.match[1],
            code,
            lines: g.lines.map((l) => l.text),
          };
        }),
      ),
    );
    expect(out.mods).toEqual([...image.modules]);
    expect(out.lines).toContain("live");
    expect(out.exit).toBe("3");
    expect(out.code).toBe(0);
  });

  it("interrupted mid-boot, leaves no QEMU process and no run folder behind", async () => {
    let seen: Guest | undefined;
    const fiber = Effect.runFork(
      Effect.scoped(
        Effect.gen(function* () {
          const g = yield* launchGuest({ image, qemu, script: "#!/bin/sh\nsleep 600\n" });
          seen = g;
          yield* g.waitFor(/^VLAB-HALT$/, { timeoutMs: 120_000 });
        }),
      ),
    );
    // Wait until QEMU runs (its pid exists), then interrupt before the guest got anywhere.
    for (let i = 0; i < 200 && seen === undefined; i++) await new Promise((r) => setTimeout(r, 25));
    expect(seen).toBeDefined();
    const g = seen!;
    expect(pidAlive(g.pid)).toBe(true);
    expect(existsSync(g.runDir)).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    await Effect.runPromise(Fiber.interrupt(fiber));
    expect(g.exited).toBe(true);
    expect(pidAlive(g.pid)).toBe(false);
    expect(existsSync(g.runDir)).toBe(false);
  });
});

dTap("a real Linux guest on QEMU's built-in virtio-net", () => {
  if (!avail.ok) return;
  const { image, qemu } = avail;

  it("pings the host end of a TAP in a namespace of ours, and the namespace goes afterwards", async () => {
    let nsName = "";
    const out = await run(
      Effect.scoped(
        Effect.gen(function* () {
          const ns = yield* acquireNetns("guest");
          nsName = ns;
          const tap = yield* acquireTapIn(ns, "vlabg0", `${GUEST_NET.hostIp}/${GUEST_NET.prefix}`);
          const g = yield* launchGuest({
            image,
            qemu,
            netns: ns,
            devices: builtinNetArgs(tap),
            cmdline: [`vlab.ip=${GUEST_NET.guestIp}/${GUEST_NET.prefix}`],
            script: `#!/bin/sh\nping -c 3 -W 5 ${GUEST_NET.hostIp}\n`,
          });
          const up = yield* g.waitFor(/^VLAB-NET-UP dev=(\S+) addr=(\S+) mac=(\S+)$/, { timeoutMs: 60_000 });
          const rc = yield* g.waitFor(/^VLAB-RUN-EXIT (\d+)$/, { timeoutMs: 60_000 });
          return { up: up.match, rc: rc.match[1], lines: g.lines.map((l) => l.text) };
        }),
      ),
    );
    expect(out.up[3]).toBe(GUEST_NET.guestMac);
    expect(out.lines.some((l) => /3 packets transmitted, 3 packets received/.test(l))).toBe(true);
    expect(out.rc).toBe("0");
    expect(existsSync(`/var/run/netns/${nsName}`)).toBe(false);
  });
});
