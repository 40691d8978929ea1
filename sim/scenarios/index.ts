/** Every scenario `sim run` knows, in the order `sim list` shows them. */
import type { Scenario } from "../engine.ts";
import { hostileGuestScenario } from "./hostile-guest.ts";
import { linuxNetScenario } from "./linux-net.ts";
import { linuxVsockScenario } from "./linux-vsock.ts";
import { netLoopbackScenario } from "./net-loopback.ts";
import { netTapScenario } from "./net-tap.ts";
import { queueScenario } from "./queue.ts";
import { usbVsockScenario } from "./usb-vsock.ts";
import { vsockCreditScenario } from "./vsock-credit.ts";
import { vsockEchoScenario } from "./vsock-echo.ts";

export const scenarios: readonly Scenario[] = [
  queueScenario,
  netLoopbackScenario,
  netTapScenario,
  vsockEchoScenario,
  vsockCreditScenario,
  usbVsockScenario,
  hostileGuestScenario,
  linuxNetScenario,
  linuxVsockScenario,
];

export const findScenario = (name: string): Scenario | undefined => scenarios.find((s) => s.name === name);
