/**
 * The VirtioDevice contract, one suite run against every device (net, vsock) on either ring
 * (split, packed): what a transport (simulator, vhost-user back-end) relies on. The devices
 * are the same code on both rings; only the RingKind they are built with differs.
 */
import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import type { DriverBuffer } from "../queue/guest-queue.ts";
import { SplitDriver } from "../queue/split-driver.ts";
import { splitLayoutAt } from "../../wire/split.ts";
import { PACKED_RING, SPLIT_RING, type DeviceQueue, type RingKind } from "../queue/device-queue.ts";
import { PackedDriver, packedLayoutAt } from "../queue/packed-driver.ts";
import { LoopbackBackend } from "../net/backend.ts";
import { NetDevice } from "../net/device.ts";
import { VsockVirtioDevice } from "./vsock.ts";
import type { VirtioDevice } from "./virtio-device.ts";

const VERSION_1_BIT = 1n << 32n;
const QSIZE = 16;
const MEM = 0x40000;

interface Subject {
  readonly name: string;
  readonly make: (ring: RingKind) => VirtioDevice<DeviceQueue>;
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
    make: (ring) => new NetDevice({ mac: [2, 0, 0, 0, 0, 1], ring }, new LoopbackBackend()),
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
    make: (ring) => {
      const d = VsockVirtioDevice.create({ guestCid: 3n, ring });
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

/** The guest side of one queue, on either ring. */
interface TestDriver {
  /** Makes a well-formed chain available; its id. */
  addChain(buffers: readonly DriverBuffer[]): number | undefined;
  /** Makes available a chain whose one descriptor lies past the end of guest memory. */
  addHostile(): void;
  reapUsed(): readonly { readonly id: number; readonly len: number }[];
}

interface Ring {
  readonly ring: RingKind;
  /** The feature bits a driver acknowledges for this ring besides VERSION_1. */
  readonly ack: bigint;
  readonly driver: (
    memory: GuestMemory,
    base: number,
  ) => { driver: TestDriver; layout: ReturnType<typeof splitLayoutAt> };
}

const rings: Ring[] = [
  {
    ring: SPLIT_RING,
    ack: 0n,
    driver: (memory, base) => {
      const layout = splitLayoutAt(base, QSIZE);
      const d = new SplitDriver(memory, QSIZE, layout);
      return {
        layout,
        driver: {
          addChain: (b) => d.addChain(b),
          addHostile: () => {
            d.writeDescriptor(QSIZE - 1, { addr: MEM * 4, len: 64, flags: 0, next: 0 });
            d.pushAvail(QSIZE - 1);
          },
          reapUsed: () => d.reapUsed(),
        },
      };
    },
  },
  {
    ring: PACKED_RING,
    ack: PACKED_RING.featureBits,
    driver: (memory, base) => {
      const layout = packedLayoutAt(base, QSIZE);
      const d = new PackedDriver(memory, QSIZE, layout);
      return {
        layout,
        driver: {
          addChain: (b) => d.addChain(b),
          addHostile: () => {
            d.addChain([{ addr: MEM * 4, len: 64 }]);
          },
          reapUsed: () => d.reapUsed().map((e) => ({ id: e.id, len: e.len })),
        },
      };
    },
  },
];

const setUp = (
  dev: VirtioDevice<DeviceQueue>,
  r: Ring,
): { memory: GuestMemory; drivers: TestDriver[]; notified: number[]; activate: () => void } => {
  const memory = GuestMemory.of([{ base: 0, bytes: new ArrayBuffer(MEM) }]);
  const drivers: TestDriver[] = [];
  dev.queues.forEach((q, i) => {
    const { driver, layout } = r.driver(memory, 0x1000 * (i + 1));
    drivers.push(driver);
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

const cases = subjects.flatMap((subject) =>
  rings.map((ring) => ({ subject, ring, name: `${subject.name} on the ${ring.ring.name} ring` })),
);

describe.each(cases)("VirtioDevice contract: $name", ({ subject: s, ring: r }) => {
  const VERSION_1 = VERSION_1_BIT | r.ack;
  it("says what it is: id, VERSION_1 offered, queues with power-of-two max sizes", () => {
    const dev = s.make(r.ring);
    expect(dev.deviceId).toBe(s.deviceId);
    expect(dev.offeredFeatures & VERSION_1).toBe(VERSION_1);
    // VIRTIO_F_RING_PACKED is offered exactly by a packed-ring device.
    expect(dev.offeredFeatures & PACKED_RING.featureBits).toBe(r.ack);
    expect(dev.queues.length).toBe(s.queueCount);
    for (const q of dev.queues) expect(Number.isInteger(Math.log2(q.maxSize))).toBe(true);
    expect(dev.isActive).toBe(false);
  });

  it("acknowledges offered features, refuses others with a typed error, locks after activation", () => {
    const dev = s.make(r.ring);
    const notOffered = 1n << 63n;
    expect(dev.offeredFeatures & notOffered).toBe(0n);
    const bad = dev.ackFeatures(VERSION_1 | notOffered);
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(typeof bad.error._tag).toBe("string");
    expect(dev.ackFeatures(VERSION_1).ok).toBe(true);
    expect(dev.ackedFeatures).toBe(VERSION_1);
    setUp(dev, r).activate();
    const locked = dev.ackFeatures(VERSION_1);
    expect(locked).toEqual({ ok: false, error: { _tag: "FeaturesLocked" } });
  });

  it("reads config into the caller's buffer; past the end reads 0", () => {
    const dev = s.make(r.ring);
    expect(dev.configSize).toBeGreaterThanOrEqual(s.config.length);
    const into = new Uint8Array(s.config.length);
    dev.readConfig(0, into);
    expect([...into]).toEqual(s.config);
    const past = new Uint8Array(4).fill(0xff);
    dev.readConfig(dev.configSize, past);
    expect([...past]).toEqual([0, 0, 0, 0]);
  });

  it("activation with an unconfigured queue is a typed error", () => {
    const dev = s.make(r.ring);
    const memory = GuestMemory.of([{ base: 0, bytes: new ArrayBuffer(MEM) }]);
    const a = dev.activate(memory, () => {});
    expect(a.ok).toBe(false);
    expect(dev.isActive).toBe(false);
  });

  it("a kick of the TX queue completes the chain and raises that queue's interrupt", () => {
    const dev = s.make(r.ring);
    dev.ackFeatures(VERSION_1);
    const { memory, drivers, notified, activate } = setUp(dev, r);
    activate();
    const len = s.txPacket(memory, 0x20000);
    const head = drivers[1]!.addChain([{ addr: 0x20000, len }]);
    expect(dev.processQueue(1)).toBe(1);
    expect(drivers[1]!.reapUsed()).toEqual([{ id: head, len: 0 }]);
    expect(notified).toContain(1);
    // A queue index the device does not have does nothing.
    expect(dev.processQueue(dev.queues.length + 5)).toBe(0);
  });

  it("what the guest sends is answered into its RX buffer (net: the loopback frame, vsock: the reply)", () => {
    const dev = s.make(r.ring);
    dev.ackFeatures(VERSION_1);
    const { memory, drivers, activate } = setUp(dev, r);
    activate();
    const rxId = drivers[0]!.addChain([{ addr: 0x30000, len: 4096, write: true }]);
    const len = s.txPacket(memory, 0x20000);
    drivers[1]!.addChain([{ addr: 0x20000, len }]);
    dev.processQueue(1);
    dev.processQueue(0);
    const used = drivers[0]!.reapUsed();
    expect(used.map((e) => e.id)).toEqual([rxId]);
    expect(used[0]!.len).toBeGreaterThan(0);
  });

  it("a hostile chain does not throw and the next well-formed chain is served", () => {
    const dev = s.make(r.ring);
    dev.ackFeatures(VERSION_1);
    const { memory, drivers, activate } = setUp(dev, r);
    activate();
    const d = drivers[1]!;
    // A descriptor pointing past the end of guest memory.
    d.addHostile();
    const len = s.txPacket(memory, 0x20000);
    const good = d.addChain([{ addr: 0x20000, len }]);
    expect(() => dev.processQueue(1)).not.toThrow();
    expect(d.reapUsed().map((e) => e.id)).toContain(good);
  });

  it("a packed-ring device refuses a driver that does not acknowledge VIRTIO_F_RING_PACKED; a split one never offers it", () => {
    const dev = s.make(r.ring);
    const r1 = dev.ackFeatures(VERSION_1_BIT);
    if (r.ack === 0n) {
      expect(r1.ok).toBe(true);
      expect(dev.ackFeatures(VERSION_1_BIT | PACKED_RING.featureBits).ok).toBe(false);
    } else {
      expect(r1).toEqual({ ok: false, error: { _tag: "RingNotAcked", ring: "packed" } });
      expect(dev.ackFeatures(VERSION_1).ok).toBe(true);
    }
  });

  it("reset drops activation, features and queue state", () => {
    const dev = s.make(r.ring);
    dev.ackFeatures(VERSION_1);
    setUp(dev, r).activate();
    expect(dev.isActive).toBe(true);
    dev.reset();
    expect(dev.isActive).toBe(false);
    expect(dev.ackedFeatures).toBe(0n);
    for (const q of dev.queues) expect(q.isActive).toBe(false);
    expect(dev.processQueue(1)).toBe(0);
  });
});
