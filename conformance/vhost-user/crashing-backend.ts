/**
 * Test fixture: our net back-end with a planted crash. Before serving a kick it scans the
 * kicked ring's descriptor table; a descriptor of 2 GiB or more (what --hostile's
 * desc-len-huge writes) kills the process with SIGSEGV, as a C back-end that trusted the
 * length would. Run: `node --import tsx conformance/vhost-user/crashing-backend.ts SOCKET`.
 */
import { Effect } from "effect";
import type { VirtioDevice } from "../../impl/device/virtio-device.ts";
import type { GuestMemory } from "../../impl/memory/guest-memory.ts";
import { LoopbackBackend } from "../../impl/net/backend.ts";
import { NetDevice } from "../../impl/net/device.ts";
import { serveVhostUser } from "../../impl/vhost-user/backend.ts";
import { DESC_LEN, descOffset } from "../../wire/split.ts";

const socketPath = process.argv[2];
if (socketPath === undefined) {
  console.error("usage: crashing-backend.ts SOCKET");
  process.exit(2);
}
const inner = new NetDevice(
  { mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56], mrgRxbuf: true, eventIdx: true },
  new LoopbackBackend(),
);
let mem: GuestMemory | null = null;
const device: VirtioDevice = {
  deviceId: inner.deviceId,
  name: "net+crash",
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
    return inner.activate(m, notify);
  },
  get isActive() {
    return inner.isActive;
  },
  reset: () => inner.reset(),
  processQueue: (q) => {
    const st = inner.queues[q]!.state();
    const table = Number(st.descTable);
    for (let i = 0; mem !== null && i < st.size; i++) {
      if (mem.readU32(table + descOffset(i) + DESC_LEN) >= 0x8000_0000) process.kill(process.pid, "SIGSEGV");
    }
    return inner.processQueue(q);
  },
  get run() {
    return inner.run;
  },
};
Effect.runFork(Effect.scoped(serveVhostUser({ device, socketPath })));
