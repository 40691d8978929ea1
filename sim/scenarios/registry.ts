/**
 * Every scenario `sim` knows, in the order `sim list` shows them, each loaded only when
 * asked: `sim run queue` loads the queue scenario's modules, not those of QEMU, TAP or vsock
 * (start-up is a good part of a short run). `index.ts` loads them all, for tests.
 */
import type { Scenario } from "../engine.ts";

export interface ScenarioEntry {
  readonly name: string;
  readonly load: () => Promise<Scenario>;
}

export const SCENARIOS: readonly ScenarioEntry[] = [
  { name: "queue", load: async () => (await import("./queue.ts")).queueScenario },
  { name: "net-loopback", load: async () => (await import("./net-loopback.ts")).netLoopbackScenario },
  { name: "net-tap", load: async () => (await import("./net-tap.ts")).netTapScenario },
  { name: "vsock-echo", load: async () => (await import("./vsock-echo.ts")).vsockEchoScenario },
  { name: "vsock-credit", load: async () => (await import("./vsock-credit.ts")).vsockCreditScenario },
  { name: "usb-vsock", load: async () => (await import("./usb-vsock.ts")).usbVsockScenario },
  { name: "hostile-guest", load: async () => (await import("./hostile-guest.ts")).hostileGuestScenario },
  { name: "linux-net", load: async () => (await import("./linux-net.ts")).linuxNetScenario },
  { name: "linux-vsock", load: async () => (await import("./linux-vsock.ts")).linuxVsockScenario },
];

export const scenarioNames: readonly string[] = SCENARIOS.map((s) => s.name);

/** The scenario of that name, loaded; undefined when there is none. */
export const loadScenario = async (name: string): Promise<Scenario | undefined> =>
  await SCENARIOS.find((s) => s.name === name)?.load();

/** Every scenario, loaded, in the registry's order. */
export const loadScenarios = (): Promise<Scenario[]> => Promise.all(SCENARIOS.map((s) => s.load()));
