/**
 * virtio-net throughput.
 *
 * - TX → loopback → RX, 64 B and 1500 B frames, against a plain copy of the same bytes
 *   from the TX buffer to the RX buffer (what the data path must at least do).
 * - On a real TAP inside a namespace this process creates (root and /dev/net/tun needed):
 *   frames/s and Gbit/s guest → device → writev, beside a raw writev of the same frames
 *   from the same guest memory to the same TAP; target: the device at >= 0.7 of raw.
 * - How the TAP backend waits (TAP-WAIT): wake-up latency of the koffi async poll, and the
 *   CPU the process burns while waiting on an idle link.
 *
 * The guest side here is a minimal driver (fixed descriptors, avail/used indices only),
 * so the figures are the device's cost, not the test driver's.
 */
import { Effect, Fiber } from "effect";
import { opsPerSecond, row, type BenchFigure, type BenchSuite } from "./harness.ts";
import { IoVecBuffer, IoVecBufferMut } from "../impl/iovec/iovec.ts";
import { SegmentList } from "../impl/iovec/segment-list.ts";
import { GuestMemory } from "../impl/memory/guest-memory.ts";
import { LoopbackBackend, type NetBackendShape } from "../impl/net/backend.ts";
import { NetDevice, RX_QUEUE, TX_QUEUE } from "../impl/net/device.ts";
import { SplitDriver } from "../impl/queue/split-driver.ts";
import { splitLayoutAt, splitLayoutEnd } from "../wire/split.ts";
import {
  acquireNetns,
  acquireTapBackendIn,
  configureTapIn,
  tapUnavailableReason,
} from "../impl/native/netns.ts";
import { PacketSocket } from "../impl/native/packet-socket.ts";
import type { TapBackend } from "../impl/native/tap-backend.ts";

const QSIZE = 256;
const BATCH = 128;
const SLOT = 2048;
const HDR = 12;

/** Guest memory, both queues and fixed one-descriptor chains: TX slot i is head i, RX likewise. */
class LeanGuest {
  readonly memory: GuestMemory;
  readonly tx: SplitDriver;
  readonly rx: SplitDriver;
  readonly txBase: number;
  readonly rxBase: number;
  private txIdx = 0;
  private rxIdx = 0;

  constructor(
    readonly dev: NetDevice,
    frameSize: number,
  ) {
    const rxQ = 0x1000;
    const txQ = Math.ceil(splitLayoutEnd(splitLayoutAt(rxQ, QSIZE), QSIZE) / 0x1000) * 0x1000;
    this.txBase = Math.ceil(splitLayoutEnd(splitLayoutAt(txQ, QSIZE), QSIZE) / 0x1000) * 0x1000;
    this.rxBase = this.txBase + QSIZE * SLOT;
    this.memory = GuestMemory.of([{ base: 0, bytes: new ArrayBuffer(this.rxBase + QSIZE * SLOT) }]);
    this.rx = SplitDriver.at(this.memory, QSIZE, rxQ);
    this.tx = SplitDriver.at(this.memory, QSIZE, txQ);
    const acked = dev.ackFeatures(dev.offeredFeatures);
    if (!acked.ok) throw new Error(acked.error._tag);
    for (const [q, d] of [
      [RX_QUEUE, this.rx],
      [TX_QUEUE, this.tx],
    ] as const) {
      dev.queues[q].configure({ size: QSIZE, ready: true, ...d.layout });
    }
    const a = dev.activate(this.memory, () => {});
    if (!a.ok) throw new Error(a.error._tag);
    for (let i = 0; i < QSIZE; i++) {
      const t = this.txBase + i * SLOT;
      const slot = this.memory.slice(t, HDR + frameSize, true)!;
      slot.fill(0, 0, HDR);
      for (let j = 0; j < frameSize; j++) slot[HDR + j] = (i + j) & 0xff;
      slot.set([0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, 0x02, 0x88, 0xb5], HDR); // unicast, not ours; local ethertype
      this.tx.writeDescriptor(i, { addr: t, len: HDR + frameSize, flags: 0, next: 0 });
      this.rx.writeDescriptor(i, { addr: this.rxBase + i * SLOT, len: SLOT, flags: 2, next: 0 });
    }
  }

  /** Makes `n` TX chains available (heads cycle through the fixed descriptors). */
  postTx(n: number): void {
    for (let i = 0; i < n; i++) this.tx.writeAvailRing(this.txIdx + i, (this.txIdx + i) % QSIZE);
    this.txIdx = (this.txIdx + n) & 0xffff;
    this.tx.setAvailIdx(this.txIdx);
  }

  postRx(n: number): void {
    for (let i = 0; i < n; i++) this.rx.writeAvailRing(this.rxIdx + i, (this.rxIdx + i) % QSIZE);
    this.rxIdx = (this.rxIdx + n) & 0xffff;
    this.rx.setAvailIdx(this.rxIdx);
  }
}

/**
 * After a 300 ms warm-up, runs `a(batch)` and `b(batch)` alternately for ~1.5 s and returns each one's rate at the
 * 25th percentile of its batch times (ops/s).
 */
const alternating = (
  a: (n: number) => number,
  b: (n: number) => number,
  batch: number,
): { a: number; b: number } => {
  const ta: number[] = [];
  const tb: number[] = [];
  let sink = 0;
  const warm = performance.now() + 300; // let both reach optimised code first
  while (performance.now() < warm) sink += a(batch) + b(batch);
  const end = performance.now() + 1500;
  while (performance.now() < end) {
    let t0 = performance.now();
    sink += a(batch);
    ta.push(performance.now() - t0);
    t0 = performance.now();
    sink += b(batch);
    tb.push(performance.now() - t0);
  }
  if (sink === Number.MIN_VALUE) console.log(sink);
  const q = (xs: number[]): number => xs.sort((x, y) => x - y)[Math.floor(xs.length / 4)]!;
  return { a: (batch * 1000) / q(ta), b: (batch * 1000) / q(tb) };
};

/** A backend that takes each packet and does nothing (the device's own TX cost). */
const nullBackend = (): NetBackendShape => ({
  name: "sink",
  carriesHeader: true,
  configure: () => true,
  send: (p) => p.frameLength,
  receive: () => -1,
  waitReadable: Effect.never,
  stats: { sent: 0, received: 0, dropped: 0, errors: 0 },
});

/**
 * The loopback's floor: a backend that hands every sent frame back to RX without copying a
 * byte (the header is still written), so what is left is the device's TX and RX paths.
 */
const noCopyLoopback = (): NetBackendShape => {
  let waiting = 0;
  return {
    name: "no-copy loopback",
    carriesHeader: false,
    configure: () => true,
    send: () => {
      waiting++;
      return 0;
    },
    receive: () => {
      if (waiting === 0) return -1;
      waiting--;
      return 0;
    },
    waitReadable: Effect.never,
    stats: { sent: 0, received: 0, dropped: 0, errors: 0 },
  };
};

/** TX's half of a loopback frame: a backend that copies each sent frame out (into one scratch frame). */
const copyOutBackend = (): NetBackendShape => {
  const scratch = new Uint8Array(65550);
  return {
    name: "copy-out sink",
    carriesHeader: false,
    configure: () => true,
    send: (p) => (p.copyFrame(scratch, 0, p.frameLength) === p.frameLength ? 0 : -5),
    receive: () => -1,
    waitReadable: Effect.never,
    stats: { sent: 0, received: 0, dropped: 0, errors: 0 },
  };
};

/**
 * RX's half of a loopback frame: a backend that always has a `size`-byte frame, copied into
 * each RX buffer after its header (or, with `copy` false, only counted: the header is still written).
 */
const rxSource = (size: number, copy: boolean): NetBackendShape => {
  const frame = new Uint8Array(size).fill(0x5a);
  return {
    name: copy ? "RX source" : "no-copy RX source",
    carriesHeader: false,
    configure: () => true,
    send: () => 0,
    receive: (dst) => (copy ? dst.write(frame, 0, size, dst.headerLength) : size),
    waitReadable: Effect.never,
    stats: { sent: 0, received: 0, dropped: 0, errors: 0 },
  };
};

/** TX then RX through `backend`, batches of BATCH. */
const loopRunner = (backend: NetBackendShape, size: number) => {
  const dev = new NetDevice({ mtu: 1500 }, backend);
  const g = new LeanGuest(dev, size);
  const run = (n: number): number => {
    let moved = 0;
    for (let done = 0; done < n; done += BATCH) {
      g.postTx(BATCH);
      g.postRx(BATCH);
      dev.processTxNow();
      moved += dev.processRxNow();
    }
    return moved;
  };
  return { dev, g, run };
};

/** TX alone through `backend` (the null backend by default), batches of BATCH. */
const txRunner = (size: number, backend: NetBackendShape = nullBackend()) => {
  const dev = new NetDevice({ mtu: 1500 }, backend);
  const g = new LeanGuest(dev, size);
  return (n: number): number => {
    let sent = 0;
    for (let done = 0; done < n; done += BATCH) {
      g.postTx(BATCH);
      sent += dev.processTxNow();
    }
    return sent;
  };
};

/** RX alone from `backend` into fresh guest buffers, batches of BATCH. */
const rxRunner = (size: number, backend: NetBackendShape) => {
  const dev = new NetDevice({ mtu: 1500 }, backend);
  const g = new LeanGuest(dev, size);
  const run = (n: number): number => {
    let got = 0;
    for (let done = 0; done < n; done += BATCH) {
      g.postRx(BATCH);
      got += dev.processRxNow();
    }
    return got;
  };
  return { dev, run };
};

const loopbackFigures = (size: number): BenchFigure[] => {
  const lo = loopRunner(new LoopbackBackend({ queueLimit: QSIZE, frameCapacity: 1600 }), size);
  const bytes = lo.g.memory.regions[0]!.bytes;
  let k = 0;
  const copyFrames = (n: number): number => {
    for (let i = 0; i < n; i++) {
      const src = lo.g.txBase + (k % QSIZE) * SLOT;
      bytes.copyWithin(lo.g.rxBase + (k % QSIZE) * SLOT, src, src + HDR + size);
      k++;
    }
    return k;
  };
  const { a: device, b: copy } = alternating(lo.run, copyFrames, BATCH);
  const moved = lo.dev.stats;
  if (moved.rxFrames === 0 || moved.rxFrames !== moved.txFrames) {
    throw new Error(`loopback moved ${moved.txFrames} TX and ${moved.rxFrames} RX frames`);
  }
  const out: BenchFigure[] = [
    {
      case: `TX → loopback → RX, ${size} B frames, batches of ${BATCH}`,
      value: device,
      unit: "frames/s",
      baseline: { name: "copy of header + frame, TX slot → RX slot", value: copy },
      ratio: device / copy,
      notes: `${((device * size * 8) / 1e9).toFixed(2)} Gbit/s of frames`,
    },
  ];
  // Every row below runs alternated with the TX path alone (null backend) and is reported as a
  // ratio to it: the loopback, then its parts, each measured alone.
  const tx = txRunner(size);
  const vsTx = (f: (n: number) => number): { rate: number; ratio: number; tx: number } => {
    const r = alternating(f, tx, BATCH);
    return { rate: r.a, ratio: r.a / r.b, tx: r.b };
  };
  const loop = vsTx(lo.run);
  if (size !== 64) {
    out.push({
      case: `TX → loopback → RX against the TX path alone, ${size} B frames`,
      value: loop.rate,
      unit: "frames/s",
      baseline: { name: "TX path alone (null backend), same run", value: loop.tx },
      ratio: loop.ratio,
    });
    return out;
  }
  const txOut = vsTx(txRunner(size, copyOutBackend()));
  const rx = rxRunner(size, rxSource(size, true));
  const rxIn = vsTx(rx.run);
  if (rx.dev.stats.rxFrames === 0) throw new Error("the RX source delivered nothing");
  const rxBare = vsTx(rxRunner(size, rxSource(size, false)).run);
  const floor = loopRunner(noCopyLoopback(), size);
  const noCopy = vsTx(floor.run);
  if (floor.dev.stats.rxFrames === 0) throw new Error("the no-copy loopback delivered nothing");
  // The reachable ceiling: a loopback frame costs at least TX with its copy out plus RX with its
  // copy in, each measured alone (in units of the TX path alone: 1/ratio each).
  const ceiling = 1 / (1 / txOut.ratio + 1 / rxIn.ratio);
  const part = (
    name: string,
    r: { rate: number; ratio: number; tx: number },
    notes: string,
  ): BenchFigure => ({
    case: `${name}, ${size} B frames`,
    value: r.rate,
    unit: "frames/s",
    baseline: { name: "TX path alone (null backend), same run", value: r.tx },
    ratio: r.ratio,
    notes,
  });
  out.push(
    row({
      case: `TX → loopback → RX against the TX path alone, ${size} B frames`,
      value: loop.rate,
      unit: "frames/s",
      reference: { name: "TX path alone (null backend), same run", value: loop.tx },
      target: {
        atLeast: 0.5,
        // Out of reach for any design only if even a loopback that copies no byte misses it
        // (a design that copies TX straight into RX has one copy, between these two).
        floor: Math.max(ceiling, noCopy.ratio),
        text: `>= 0.5 of the TX path alone (floor: with no copy at all ${noCopy.ratio.toFixed(2)}; with ours, the parts' ceiling ${ceiling.toFixed(2)}, this figure ${(loop.ratio / ceiling).toFixed(2)} of it)`,
      },
      issue: "18",
      notes:
        `the parts' ceiling in this run: ${ceiling.toFixed(3)} of the TX path alone = 1 / (1/${txOut.ratio.toFixed(3)} + 1/${rxIn.ratio.toFixed(3)}) ` +
        "(TX with its copy out and RX with its copy in, each alone; rows below); the loopback reaches " +
        `${(loop.ratio / ceiling).toFixed(2)} of that ceiling, the rest being the hand-over between them (queue, pool).`,
    }),
    part(
      "part: TX path with the frame copied out (one scratch frame)",
      txOut,
      "TX's half of a loopback frame: pop, gather, copy the frame out, used entry",
    ),
    part(
      "part: RX path with a frame copied in (a source that always has one)",
      rxIn,
      "RX's half of a loopback frame: pop, map, header and frame written, used entry",
    ),
    part(
      "part: RX path alone, no frame byte copied (header written)",
      rxBare,
      "the RX path's own cost; with the TX path alone it bounds the loopback even with free copies",
    ),
    part(
      "floor: TX → RX with a backend that copies no byte",
      noCopy,
      "the device's TX and RX paths with the frame copies taken out",
    ),
    {
      case: `ceiling: TX with copy out + RX with copy in, each measured alone, ${size} B frames`,
      value: ceiling * loop.tx,
      unit: "frames/s",
      baseline: { name: "TX path alone (null backend), same run", value: loop.tx },
      ratio: ceiling,
      notes:
        "1 / (1/tx-out + 1/rx-in) in units of the TX path alone: the most a loopback built from these parts can reach",
    },
  );
  return out;
};

/** The device's own TX cost: a backend that takes each packet and does nothing. */
const txPathFigure = (size: number): BenchFigure => {
  const tx = txRunner(size);
  const fps = opsPerSecond(tx);
  return {
    case: `TX path alone (pop, gather, hand over, used), ${size} B frames, null backend`,
    value: fps,
    unit: "frames/s",
    notes: `${(1e9 / fps).toFixed(0)} ns per frame: the device's share of a TAP writev`,
  };
};

const tapFigures = async (log: (line: string) => void): Promise<readonly BenchFigure[]> => {
  const reason = tapUnavailableReason();
  if (reason !== undefined) {
    log(`TAP figures skipped: ${reason}`);
    return [];
  }
  const program = Effect.scoped(
    Effect.gen(function* () {
      const ns = yield* acquireNetns("bench");
      const backend: TapBackend = yield* acquireTapBackendIn(ns, "vbench%d");
      configureTapIn(ns, backend.tap.ifName, "10.201.0.1/24");
      const out: BenchFigure[] = [];
      for (const size of [64, 1500]) {
        yield* Effect.void;
        const dev = new NetDevice({ mtu: 1500 }, backend as NetBackendShape);
        const g = new LeanGuest(dev, size);
        const before = backend.stats.errors;
        const viaDevice = (n: number): number => {
          let sent = 0;
          for (let done = 0; done < n; done += BATCH) {
            g.postTx(BATCH);
            sent += dev.processTxNow();
          }
          return sent;
        };
        // Raw: the same frames, from the same guest memory, one writev each.
        const bufs = Array.from({ length: QSIZE }, (_, i) => {
          const b = IoVecBuffer.fromChain(
            g.memory,
            new SegmentList([{ addr: g.txBase + i * SLOT, len: HDR + size, write: false }]),
          );
          if (!b.ok) throw new Error(b.error._tag);
          return b.value;
        });
        let k = 0;
        let failures = 0;
        const rawWritev = (n: number): number => {
          for (let i = 0; i < n; i++) {
            if (backend.tap.writeSegments(bufs[k % QSIZE]!, HDR + size) < 0) failures++;
            k++;
          }
          return k;
        };
        // Alternate batches of the two and compare the fast quartile of each: a batch takes
        // ~0.1-0.3 ms, so most batches run unpreempted even on a loaded machine, and a noisy
        // neighbour hurts both sides alike.
        const { a: device, b: raw } = alternating(viaDevice, rawWritev, BATCH);
        if (backend.stats.errors !== before) throw new Error(`TAP writev failed: ${backend.lastError}`);
        if (failures > 0) throw new Error(`raw writev failed ${failures} times`);
        const gbit = (fps: number): number => (fps * size * 8) / 1e9;
        out.push({
          case: `guest TX → device → TAP writev, ${size} B frames`,
          value: device,
          unit: "frames/s",
          baseline: { name: "raw writev of the same frames to the same TAP", value: raw },
          ratio: device / raw,
          target: { text: ">= 0.7 of raw writev", met: device / raw >= 0.7 },
          notes: `${gbit(device).toFixed(3)} Gbit/s through the device, ${gbit(raw).toFixed(3)} Gbit/s raw`,
        });
      }
      out.push(...rxFigures(ns, backend));
      out.push(...(yield* waitFigures(ns, backend)));
      return out;
    }),
  );
  return Effect.runPromise(program);
};

/**
 * RX on the TAP: the kernel side queues a batch of frames (untimed, through an AF_PACKET
 * socket), then the device drains them into guest RX chains (pop, readv, num_buffers,
 * used entry), beside raw readv of the same frames into the same guest buffers.
 */
const rxFigures = (ns: string, backend: TapBackend): BenchFigure[] => {
  const sock = PacketSocket.open(ns, backend.tap.ifName);
  if (!sock.ok) throw new Error(sock.error);
  const out: BenchFigure[] = [];
  const RX_BATCH = 64;
  const scratch = new Uint8Array(65562);
  try {
    for (const size of [64, 1500]) {
      const dev = new NetDevice({ mtu: 1500 }, backend as NetBackendShape);
      const g = new LeanGuest(dev, size);
      const frame = new Uint8Array(size);
      frame.set([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x99, 0x88, 0xb5]);
      const fill = (): void => {
        while (backend.tap.readInto(scratch) > 0) {
          // leftovers from earlier batches
        }
        for (let i = 0; i < RX_BATCH; i++) sock.value.send(frame);
      };
      const bufs = Array.from({ length: RX_BATCH }, (_, i) => {
        const b = IoVecBufferMut.fromChain(
          g.memory,
          new SegmentList([{ addr: g.rxBase + i * SLOT, len: SLOT, write: true }]),
        );
        if (!b.ok) throw new Error(b.error._tag);
        return b.value;
      });
      const times = { device: [] as number[], raw: [] as number[] };
      let got = { device: 0, raw: 0 };
      const end = performance.now() + 2000;
      while (performance.now() < end) {
        fill();
        g.postRx(RX_BATCH);
        let t0 = performance.now();
        const d = dev.processRxNow();
        times.device.push((performance.now() - t0) / Math.max(1, d));
        got = { ...got, device: got.device + d };
        fill();
        t0 = performance.now();
        let r = 0;
        for (let i = 0; i < RX_BATCH; i++) if (backend.tap.readSegments(bufs[i]!, SLOT) > 0) r++;
        times.raw.push((performance.now() - t0) / Math.max(1, r));
        got = { ...got, raw: got.raw + r };
      }
      if (got.device === 0 || got.raw === 0) throw new Error("no frames reached the RX side");
      const q = (xs: number[]): number => xs.sort((x, y) => x - y)[Math.floor(xs.length / 4)]!;
      const device = 1000 / q(times.device);
      const raw = 1000 / q(times.raw);
      out.push({
        case: `TAP → device → guest RX (readv into the RX chain), ${size} B frames`,
        value: device,
        unit: "frames/s",
        baseline: { name: "raw readv of the same frames into the same guest buffers", value: raw },
        ratio: device / raw,
        notes: `${((device * size * 8) / 1e9).toFixed(3)} Gbit/s through the device; ${got.device} frames delivered`,
      });
    }
  } finally {
    sock.value.close();
  }
  return out;
};

/** TAP-WAIT: how fast a parked wait wakes, and what waiting costs when nothing arrives. */
const waitFigures = (ns: string, backend: TapBackend) =>
  Effect.gen(function* () {
    const sock = PacketSocket.open(ns, backend.tap.ifName);
    if (!sock.ok) throw new Error(sock.error);
    const scratch = new Uint8Array(65562);
    const frame = new Uint8Array(64);
    frame.set([0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x09, 0x88, 0xb5]);
    const drain = (): void => {
      while (backend.tap.readInto(scratch) > 0) {
        // discard
      }
    };
    drain();
    const latencies: number[] = [];
    for (let i = 0; i < 200; i++) {
      const fiber = yield* Effect.forkChild(backend.waitReadable);
      yield* Effect.sleep("1 millis"); // the worker is parked in poll by now
      const sentAt = performance.now();
      sock.value.send(frame);
      yield* Fiber.join(fiber);
      latencies.push((performance.now() - sentAt) * 1000);
      drain();
    }
    latencies.sort((a, b) => a - b);
    const median = latencies[latencies.length >> 1]!;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    yield* Effect.timeoutOption(backend.waitReadable, "500 millis");
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    sock.value.close();
    const idle: BenchFigure = {
      case: "TAP wait on an idle link: CPU time per second waited",
      value: (cpuMs / wall) * 1000,
      unit: "ms CPU / s",
      notes: "koffi async poll([tap, eventfd]) parks a worker thread; the event loop stays free",
    };
    const wake: BenchFigure = {
      case: "TAP wait: wake-up latency, frame sent → waitReadable resumes (median of 200)",
      value: median,
      unit: "µs",
      notes: `p90 ${latencies[Math.floor(latencies.length * 0.9)]!.toFixed(0)} µs`,
    };
    return [wake, idle];
  });

const suite: BenchSuite = {
  name: "virtio-net",
  async run(log) {
    const figures: BenchFigure[] = [];
    for (const size of [64, 1500]) {
      const f = [...loopbackFigures(size), txPathFigure(size)];
      for (const x of f)
        log(
          `${x.case}: ${x.value.toFixed(0)} ${x.unit}${x.ratio !== undefined ? ` (ratio ${x.ratio.toFixed(3)})` : ""}`,
        );
      figures.push(...f);
    }
    const tap = await tapFigures(log);
    for (const x of tap)
      log(
        `${x.case}: ${x.value.toFixed(1)} ${x.unit}${x.ratio !== undefined ? ` (ratio ${x.ratio.toFixed(3)})` : ""} ${x.notes ?? ""}`,
      );
    figures.push(...tap);
    return figures;
  },
};

export default suite;
