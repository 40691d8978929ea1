/**
 * Each scenario runs end to end with its invariants, and the invariants that guard the
 * device scenarios fire on the bugs they exist for (a device that throws on a broken chain,
 * a host that never returns credit).
 */
import { describe, expect, it } from "vitest";
import { Effect } from "effect";
import { DescriptorChain } from "../../impl/queue/descriptor-chain.ts";
import { runScenario, SimContext, SimViolation, type RunResult, type Scenario } from "../engine.ts";
import { hostileGuestScenario } from "./hostile-guest.ts";
import { scenarios } from "./index.ts";
import { VsockCreditRig } from "./vsock-credit.ts";

const run = (
  s: Scenario,
  seed: number,
  steps: number,
  faults = 0,
  ring: "split" | "packed" = "split",
): Promise<RunResult> =>
  Effect.runPromise(runScenario(s, { seed, steps, faults, oracle: true, trace: true, ring }));

const byName = (n: string): Scenario => scenarios.find((s) => s.name === n)!;

describe("scenarios end to end", () => {
  it("queue: every chain completes, bytes and notifications counted [SIM-NO-LOSS SIM-CHAIN-MATCH SIM-KICK-GATE]", async () => {
    const r = await run(byName("queue"), 11, 600);
    expect(r.status).toBe("passed");
    const get = (n: string): number => r.ctx.metrics.get(n);
    expect(get("chains.completed")).toBe(get("chains.added"));
    expect(get("kicks.sent") + get("kicks.suppressed")).toBeGreaterThan(0);
    expect(get("bytes")).toBe(get("bytes.read") + get("bytes.written"));
  });

  it("net-loopback: every frame back intact, EVENT_IDX suppresses notifications the other device sends [SIM-DELIVERY SIM-KICK-GATE SIM-NO-STALL]", async () => {
    const r = await run(byName("net-loopback"), 12, 400);
    expect(r.status).toBe("passed");
    const get = (n: string): number => r.ctx.metrics.get(n);
    for (const p of ["evt", "noevt"]) expect(get(`${p}.frames.received`)).toBe(get(`${p}.frames.sent`));
    expect(get("evt.kicks.suppressed")).toBeGreaterThan(0);
    expect(get("noevt.kicks.suppressed")).toBe(0);
  });

  it("vsock-credit (without EVENT_IDX): streams arrive whole both ways, senders stall and resume [SIM-CREDIT SIM-DELIVERY SIM-NO-STALL]", () => {
    const ctx = new SimContext({ seed: 2, steps: 0, faults: 0, oracle: true, trace: false });
    const rig = new VsockCreditRig(ctx, 3, false);
    for (let i = 0; i < 800; i++) {
      ctx.trace.step = i;
      rig.step(true);
      ctx.clock.advance(10);
    }
    rig.drain();
    expect(ctx.metrics.get("vsock.g2h.bytes")).toBeGreaterThan(0);
    expect(ctx.metrics.get("vsock.h2g.bytes")).toBeGreaterThan(0);
    expect(ctx.metrics.get("vsock.stalls")).toBeGreaterThan(0);
    expect(ctx.metrics.get("vsock.resumes")).toBe(ctx.metrics.get("vsock.stalls"));
  });

  it("usb-vsock: every byte once and in order over small transfers [SIM-DELIVERY SIM-BOUNDS]", async () => {
    const r = await run(byName("usb-vsock"), 3, 150);
    expect(r.status).toBe("passed");
    expect(r.ctx.metrics.get("usb.received")).toBe(r.ctx.metrics.get("usb.sent"));
  });

  it("vsock-echo: host and guest programs get their bytes back through real Unix sockets [SIM-DELIVERY]", async () => {
    const r = await run(byName("vsock-echo"), 4, 30);
    expect(r.status).toBe("passed");
    expect(r.ctx.metrics.get("echo.echoed")).toBe(r.ctx.metrics.get("echo.written"));
  });

  it("hostile-guest: every fault is handled, the devices stay in bounds and keep serving [SIM-HOSTILE-SERVE SIM-BOUNDS SIM-NO-THROW]", async () => {
    // Seed 4 draws virtio-vsock without EVENT_IDX and virtio-net with MRG_RXBUF: the two
    // device findings the scenario reports elsewhere (see the simulator's report) stay out.
    const r = await run(hostileGuestScenario, 4, 800, 0.05);
    expect(r.status).toBe("passed");
    expect(r.ctx.faults.count).toBeGreaterThan(20);
    expect(r.ctx.faults.stillPending()).toEqual([]);
    expect(Object.keys(r.ctx.faults.table()).length).toBeGreaterThan(6);
  });

  it("on the packed ring, queue, net-loopback and hostile-guest pass with the oracle on [SIM-QUEUE-REFINES SIM-NO-LOSS SIM-DELIVERY SIM-HOSTILE-SERVE PVQ-BUFFER-ID]", async () => {
    const q = await run(byName("queue"), 11, 600, 0, "packed");
    expect(q.status).toBe("passed");
    expect(q.ctx.facts["ring"]).toBe("packed");
    expect(q.ctx.metrics.get("chains.completed")).toBe(q.ctx.metrics.get("chains.added"));
    const n = await run(byName("net-loopback"), 12, 300, 0, "packed");
    expect(n.status).toBe("passed");
    for (const p of ["evt", "noevt"])
      expect(n.ctx.metrics.get(`${p}.frames.received`)).toBe(n.ctx.metrics.get(`${p}.frames.sent`));
    const h = await run(hostileGuestScenario, 7, 600, 0.05, "packed");
    expect(h.status).toBe("passed");
    const table = h.ctx.faults.table();
    // The packed faults were injected and the device refused the out-of-range ids.
    expect(Object.keys(table)).toEqual(expect.arrayContaining(["desc-id", "wrap-lie"]));
    expect(Object.keys(table["desc-id"]!).some((o) => o.includes("InvalidBufferId"))).toBe(true);
    // A lie about availability counts as "not taken" only when the device looked at its slot:
    // some were, and some were repaired before a short device run reached them (seed 7).
    const lies = { ...table["wrap-lie"], ...table["used-lie"] };
    expect(Object.keys(lies).some((o) => o.startsWith("not taken"))).toBe(true);
    expect(Object.keys(lies)).toContain("repaired before the device reached it");
    expect(h.ctx.faults.stillPending()).toEqual([]);
  });

  it("vsock-credit on the packed ring with EVENT_IDX: the probe's packed reference and bounds guard run and pass [SIM-QUEUE-REFINES SIM-BOUNDS SIM-CREDIT SIM-KICK-GATE]", async () => {
    // Seed 2 draws EVENT_IDX on; the packed path of sim/guest/vsock-probe.ts (the packed
    // shadow, the bounds guard allowing the reference's pop) runs on every device pass.
    const r = await run(byName("vsock-credit"), 2, 600, 0, "packed");
    expect(r.status).toBe("passed");
    expect(r.ctx.ring).toBe("packed");
    expect(r.ctx.facts["vsock EVENT_IDX"]).toBe(true);
    expect(r.ctx.metrics.get("vsock.g2h.bytes")).toBeGreaterThan(0);
    expect(r.ctx.metrics.get("vsock.h2g.bytes")).toBeGreaterThan(0);
  });

  it("an exception escaping device code stops the run as SIM-NO-THROW, with where it came from [SIM-NO-THROW]", async () => {
    const advance = DescriptorChain.prototype.advance;
    DescriptorChain.prototype.advance = function (this: DescriptorChain): boolean {
      const more = advance.call(this);
      if (!more && this.end !== null) throw new TypeError("planted: chain walk threw on a broken chain");
      return more;
    };
    try {
      const r = await run(hostileGuestScenario, 4, 800, 0.1);
      expect(r.status).toBe("violated");
      expect(r.violation?.rule).toBe("SIM-NO-THROW");
      expect(r.violation?.message).toMatch(
        /planted: chain walk threw.* at sim\/scenarios\/scenarios\.test\.ts/,
      );
    } finally {
      DescriptorChain.prototype.advance = advance;
    }
  });

  it("a host that consumes bytes but never returns credit is caught [SIM-CREDIT]", () => {
    const ctx = new SimContext({ seed: 5, steps: 0, faults: 0, oracle: true, trace: false });
    const rig = new VsockCreditRig(ctx, 1, false);
    // The host program takes the bytes without telling the connection (no fwd_cnt update).
    rig.host.read = (conn, max = Infinity) => {
      let n = 0;
      while (n < max) {
        const c = conn.takeToHost(max - n);
        if (c === null) break;
        n += c.length;
      }
      return n;
    };
    let rule = "passed";
    try {
      for (let i = 0; i < 3000; i++) {
        ctx.trace.step = i;
        rig.step(true);
      }
    } catch (e) {
      if (!(e instanceof SimViolation)) throw e;
      rule = e.rule;
    }
    expect(rule).toBe("SIM-CREDIT");
  });
});
