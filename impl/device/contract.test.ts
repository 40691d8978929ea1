/**
 * The VirtioDevice contract, one suite run against every device (net, vsock): what a
 * transport (simulator, vhost-user back-end) relies on.
 */
import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import { QueueDriver, layoutAt } from "../queue/driver.ts";
import { LoopbackBackend } from "../net/backend.ts";
import { NetDevice } from "../net/device.ts";
import { VsockVirtioDevice } from "./vsock.ts";
import type { VirtioDevice } from "./virtio-device.ts";

const VERSION_1 = 1n << 32n;
const QSIZE = 16;
const MEM = 0x40000;

interface Subject {
  readonly name: string;
  readonly make: () => VirtioDevice;
  readonly deviceId: number;
  readonly queueCount: number;
  /** Expected config bytes at offset 0. */
  readonly config: readonly number[];
  /** Writes one well-formed TX packet at `addr`; its length. */
  readonly txPacket: (mem: GuestMemory, addr: number) => number;
}

const subjects: Subject[] = [
  {
    name: "net",
    make: () => new NetDevice({ mac: [2, 0, 0, 0, 0, 1] }, new LoopbackBackend()),
    deviceId: 1,
    queueCount: 2,
    config: [2, 0, 0, 0, 0, 1],
    txPacket: (mem, addr) => {
      // 12-byte virtio_net_hdr (zeros) + a 60-byte Ethernet frame.
      for (let i = 0; i < 72; i++) mem.writeU8(addr + i, i < 12 ? 0 : i);
      return 72;
    },
  },
  {
    name: "vsock",
    make: () => {
      const d = VsockVirtioDevice.create({ guestCid: 3n });
      if (!d.ok) throw new Error(d.error._tag);
      return d.value;
    },
    deviceId: 19,
    queueCount: 3,
    config: [3, 0, 0, 0, 0, 0, 0, 0],
    txPacket: (mem, addr) => {
      // A 44-byte header: REQUEST from cid 3 port 1000 to the host (cid 2) port 9.
      for (let i = 0; i < 44; i++) mem.writeU8(addr + i, 0);
      mem.writeU64(addr, 3n);
      mem.writeU64(addr + 8, 2n);
      mem.writeU32(addr + 16, 1000);
      mem.writeU32(addr + 20, 9);
      mem.writeU16(addr + 28, 1);
      mem.writeU16(addr + 30, 1);
      mem.writeU32(addr + 36, 65536);
      return 44;
    },
  },
];

const setUp = (
  dev: VirtioDevice,
): { memory: GuestMemory; drivers: QueueDriver[]; notified: number[]; activate: () => void } => {
  const memory = GuestMemory.of([{ base: 0, bytes: new ArrayBuffer(MEM) }]);
  const drivers: QueueDriver[] = [];
  dev.queues.forEach((q, i) => {
    const layout = layoutAt(0x1000 * (i + 1), QSIZE);
    drivers.push(new QueueDriver(memory, QSIZE, layout));
    q.configure({ size: QSIZE, ready: true, ...layout });
  });
  const notified: number[] = [];
  return {
    memory,
    drivers,
    notified,
    activate: () => {
      const r = dev.activate(memory, (q) => notified.push(q));
      expect(r.ok).toBe(true);
    },
  };
};

describe.each(subjects)("VirtioDevice contract: $name", (s) => {
  it("says what it is: id, VERSION_1 offered, queues with power-of-two max sizes", () => {
    const dev = s.make();
    expect(dev.deviceId).toBe(s.deviceId);
    expect(dev.offeredFeatures & VERSION_1).toBe(VERSION_1);
    expect(dev.queues.length).toBe(s.queueCount);
    for (const q of dev.queues) expect(Number.isInteger(Math.log2(q.maxSize))).toBe(true);
    expect(dev.isActive).toBe(false);
  });

  it("acknowledges offered features, refuses others with a typed error, locks after activation", () => {
    const dev = s.make();
    const notOffered = 1n << 63n;
    expect(dev.offeredFeatures & notOffered).toBe(0n);
    const bad = dev.ackFeatures(VERSION_1 | notOffered);
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(typeof bad.error._tag).toBe("string");
    expect(dev.ackFeatures(VERSION_1).ok).toBe(true);
    expect(dev.ackedFeatures).toBe(VERSION_1);
    setUp(dev).activate();
    const locked = dev.ackFeatures(VERSION_1);
    expect(locked).toEqual({ ok: false, error: { _tag: "FeaturesLocked" } });
  });

  it("reads config into the caller's buffer; past the end reads 0", () => {
    const dev = s.make();
    expect(dev.configSize).toBeGreaterThanOrEqual(s.config.length);
    const into = new Uint8Array(s.config.length);
    dev.readConfig(0, into);
    expect([...into]).toEqual(s.config);
    const past = new Uint8Array(4).fill(0xff);
    dev.readConfig(dev.configSize, past);
    expect([...past]).toEqual([0, 0, 0, 0]);
  });

  it("activation with an unconfigured queue is a typed error", () => {
    const dev = s.make();
    const memory = GuestMemory.of([{ base: 0, bytes: new ArrayBuffer(MEM) }]);
    const r = dev.activate(memory, () => {});
    expect(r.ok).toBe(false);
    expect(dev.isActive).toBe(false);
  });

  it("a kick of the TX queue completes the chain and raises that queue's interrupt", () => {
    const dev = s.make();
    dev.ackFeatures(VERSION_1);
    const { memory, drivers, notified, activate } = setUp(dev);
    activate();
    const len = s.txPacket(memory, 0x20000);
    const head = drivers[1]!.addChain([{ addr: 0x20000, len }]);
    expect(dev.processQueue(1)).toBe(1);
    expect(drivers[1]!.reapUsed()).toEqual([{ id: head, len: 0 }]);
    expect(notified).toContain(1);
    // A queue index the device does not have does nothing.
    expect(dev.processQueue(dev.queues.length + 5)).toBe(0);
  });

  it("a hostile chain does not throw and the next well-formed chain is served", () => {
    const dev = s.make();
    dev.ackFeatures(VERSION_1);
    const { memory, drivers, activate } = setUp(dev);
    activate();
    const d = drivers[1]!;
    // A descriptor pointing past the end of guest memory.
    d.writeDescriptor(QSIZE - 1, { addr: MEM * 4, len: 64, flags: 0, next: 0 });
    d.pushAvail(QSIZE - 1);
    const len = s.txPacket(memory, 0x20000);
    const good = d.addChain([{ addr: 0x20000, len }]);
    expect(() => dev.processQueue(1)).not.toThrow();
    expect(d.reapUsed().map((e) => e.id)).toContain(good);
  });

  it("reset drops activation, features and queue state", () => {
    const dev = s.make();
    dev.ackFeatures(VERSION_1);
    setUp(dev).activate();
    expect(dev.isActive).toBe(true);
    dev.reset();
    expect(dev.isActive).toBe(false);
    expect(dev.ackedFeatures).toBe(0n);
    for (const q of dev.queues) expect(q.isActive).toBe(false);
    expect(dev.processQueue(1)).toBe(0);
  });
});
