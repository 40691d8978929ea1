/**
 * The real-guest scenarios in the gate: a Linux guest under QEMU drives our vsock and net
 * devices through the vhost-user back-end, with the reference model watching every split ring
 * (on the packed ring, linux-vsock checks negotiation and delivery).
 * Prepares the guest cache when it is empty; skipped, with the reason printed, where QEMU,
 * the kernel package or (for the TAP) root is missing. These are the scenarios' only
 * runs in the gate (their smoke entry has no seeds: one boot each is enough).
 */
import { existsSync, readdirSync } from "node:fs";
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import { tapUnavailableReason } from "../../impl/native/netns.ts";
import { runScenario, type RunResult, type Scenario } from "../engine.ts";
import { linuxNetScenario } from "../scenarios/linux-net.ts";
import { linuxVsockScenario } from "../scenarios/linux-vsock.ts";
import { guestAvailable } from "./prepare.ts";

const avail = guestAvailable({ progress: (l) => console.log(l) });
if (!avail.ok) console.log(`real-guest scenario tests skipped: ${avail.reason}`);
const tapReason = tapUnavailableReason();
if (avail.ok && tapReason !== undefined) console.log(`linux-net scenario test skipped: ${tapReason}`);

const run = (s: Scenario, seed: number, ring: "split" | "packed" = "split"): Promise<RunResult> =>
  Effect.runPromise(
    runScenario(s, { seed, steps: s.defaultSteps, faults: 0, oracle: true, trace: true, ring }),
  );

const verdict = (r: RunResult): string =>
  r.status === "violated" ? `${r.violation?.rule}: ${r.violation?.message}` : (r.skipReason ?? r.status);

const namespaces = (): string[] =>
  existsSync("/var/run/netns")
    ? readdirSync("/var/run/netns").filter((n) => n.startsWith(`vlabnet-${process.pid}-`))
    : [];

describe.skipIf(!avail.ok)("real Linux guests drive our devices over vhost-user", () => {
  it("linux-vsock: streams both ways through our vsock device arrive whole, and the model finds no departure of our device [SIM-DELIVERY SIM-QUEUE-REFINES SIM-USED-ID SIM-USED-LEN]", async () => {
    const r = await run(linuxVsockScenario, 5);
    expect(verdict(r)).toBe("passed");
    const f = r.ctx.facts;
    expect(String(f["guest said (1)"])).toMatch(/^VLAB-XFER ok proto=vsock mode=echo/);
    expect(String(f["oracle vsock RX queue"])).toMatch(/^[1-9]\d* pops/);
    expect(String(f["oracle vsock TX queue"])).toMatch(/^[1-9]\d* pops/);
  });

  it("linux-vsock on the packed ring: Linux negotiates VIRTIO_F_RING_PACKED (packed=on) and both streams arrive whole [SIM-DELIVERY PVQ-WRAP PVQ-BUFFER-ID]", async () => {
    const r = await run(linuxVsockScenario, 6, "packed");
    expect(verdict(r)).toBe("passed");
    const f = r.ctx.facts;
    expect(f["ring"]).toBe("packed");
    expect(String(f["guest said (1)"])).toMatch(/^VLAB-XFER ok proto=vsock mode=echo/);
    expect(String(f["host -> guest stream"])).not.toBe("undefined");
    const features = r.ctx.notes.find((n) => n.includes("device activated with features"));
    expect(features).toBeDefined();
    // VIRTIO_F_RING_PACKED is bit 34.
    expect((BigInt(features!.replace(/^.*features /, "").split(/\s/)[0]!) >> 34n) & 1n).toBe(1n);
  });

  it.skipIf(tapReason !== undefined)(
    "linux-net: ping and TCP both ways through our net device to a TAP, bytes checked, the model watching, the namespace removed [SIM-DELIVERY SIM-QUEUE-REFINES SIM-USED-ID SIM-USED-LEN]",
    async () => {
      const r = await run(linuxNetScenario, 5);
      expect(verdict(r)).toBe("passed");
      const f = r.ctx.facts;
      expect(String(f["guest said (2)"])).toMatch(/3 packets transmitted, 3 packets received/);
      expect(String(f["guest -> host TCP"])).toMatch(/md5 equal/);
      expect(String(f["host -> guest TCP"])).toMatch(/md5 equal/);
      expect(String(f["oracle net TX queue"])).toMatch(/^[1-9]\d* pops/);
      expect(namespaces()).toEqual([]);
    },
  );
});
