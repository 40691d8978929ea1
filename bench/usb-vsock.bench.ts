/**
 * vsock over USB: packing vsock packets into 16 KiB USB transfers with UsbPacketBuilder and
 * parsing them back with VsockPacketIterator, for 64-byte and 4 KiB payloads; plus the
 * same 64-byte stream through the Effect UsbPacketFiller (one writer fiber, one reader).
 *
 * Baseline: one memcpy (Uint8Array.set) of the same 16 KiB per transfer, in this process.
 * MB/s counts payload bytes; the memcpy baseline counts the transfer's bytes, so the ratio
 * says how close framing gets to just moving the bytes.
 */
import { Effect, Fiber } from "effect";
import type { BenchFigure, BenchSuite } from "./harness.ts";
import { opsPerSecond } from "./harness.ts";
import { HEADER_SIZE, PacketType, UsbPacketBuilder, VsockPacketIterator } from "../impl/usb-vsock/packet.ts";
import { UsbPacketFiller } from "../impl/usb-vsock/filler.ts";
import { ProtocolEndpoint } from "../impl/usb-vsock/protocol.ts";

const TRANSFER = 16 * 1024;

const suite: BenchSuite = {
  name: "usb-vsock",
  async run(log) {
    const figures: BenchFigure[] = [];
    const src = new Uint8Array(TRANSFER).map((_, i) => i & 0xff);
    const dst = new Uint8Array(TRANSFER);
    // Baseline: transfers/s of one plain 16 KiB copy.
    const memcpyPerSec = opsPerSecond((n) => {
      let s = 0;
      for (let i = 0; i < n; i++) {
        src[0] = i & 0xff;
        dst.set(src);
        s += dst[TRANSFER - 1]!;
      }
      return s;
    });
    const memcpyMBs = (memcpyPerSec * TRANSFER) / 1e6;
    log(`baseline memcpy of ${TRANSFER} B: ${memcpyMBs.toFixed(0)} MB/s`);

    for (const payloadSize of [64, 4096]) {
      const payload = new Uint8Array(payloadSize).fill(0x5a);
      const perTransfer = Math.floor(TRANSFER / (HEADER_SIZE + payloadSize));
      const builder = new UsbPacketBuilder(new Uint8Array(TRANSFER));
      const it = new VsockPacketIterator();

      const pack = (): Uint8Array => {
        for (let k = 0; k < perTransfer; k++)
          builder.writeRaw(PacketType.Data, 3, 2, 1000 + k, 50000, payload, 0, payloadSize);
        return builder.take()!;
      };
      const parse = (bytes: Uint8Array): number => {
        it.reset(bytes);
        let got = 0;
        while (it.next()) got += it.payloadLen + it.devicePort;
        return got;
      };
      // Correctness of what is timed: every packet comes back.
      let count = 0;
      for (const r of new VsockPacketIterator(pack()))
        if (r.ok && r.value.payloadLen === payloadSize) count++;
      if (count !== perTransfer) throw new Error(`round trip lost packets: ${count} of ${perTransfer}`);

      const roundTrips = opsPerSecond((n) => {
        let s = 0;
        for (let i = 0; i < n; i++) s += parse(pack());
        return s;
      });
      const packOnly = opsPerSecond((n) => {
        let s = 0;
        for (let i = 0; i < n; i++) s += pack().length;
        return s;
      });
      const packed = pack().slice();
      const parseOnly = opsPerSecond((n) => {
        let s = 0;
        for (let i = 0; i < n; i++) s += parse(packed);
        return s;
      });
      for (const [what, perSec] of [
        ["pack + parse", roundTrips],
        ["pack", packOnly],
        ["parse", parseOnly],
      ] as const) {
        const pps = perSec * perTransfer;
        const mbs = (pps * payloadSize) / 1e6;
        log(
          `${what} ${payloadSize} B payloads: ${(pps / 1e6).toFixed(2)} M packets/s, ${mbs.toFixed(0)} MB/s`,
        );
        figures.push({
          case: `${what}, ${payloadSize} B payloads in 16 KiB transfers`,
          value: pps,
          unit: "packets/s",
        });
        figures.push({
          case: `${what}, ${payloadSize} B payloads in 16 KiB transfers (payload bytes)`,
          value: mbs,
          unit: "MB/s",
          baseline: { name: "memcpy 16 KiB", value: memcpyMBs },
          ratio: mbs / memcpyMBs,
          ...(what === "parse"
            ? { notes: "parsing yields views: payload bytes are framed, not copied" }
            : {}),
        });
      }
    }

    // Received Data through the connection state machine (parse + lookup + notice).
    {
      const addr = { deviceCid: 3, hostCid: 2, devicePort: 1000, hostPort: 50000 };
      let delivered = 0;
      const host = new ProtocolEndpoint("host", { v: 1 }, 1 << 30, {
        emit: () => undefined,
        notice: (n) => {
          if (n._tag === "Data") delivered += n.payload.length;
        },
      });
      const sync = new UsbPacketBuilder(new Uint8Array(64));
      host.startSync(0);
      sync.write(
        PacketType.Sync,
        { deviceCid: 0, hostCid: 0, devicePort: 0, hostPort: 0 },
        new TextEncoder().encode("vsock:1"),
      );
      host.receiveTransfer(sync.take()!);
      host.connect(addr);
      const accept = new UsbPacketBuilder(new Uint8Array(64));
      accept.write(PacketType.Accept, addr);
      host.receiveTransfer(accept.take()!);
      if (host.connection(addr)?.state !== "Connected") throw new Error("bench setup: not connected");
      const b = new UsbPacketBuilder(new Uint8Array(TRANSFER));
      const payload = new Uint8Array(64).fill(7);
      while (b.write(PacketType.Data, addr, payload) === undefined);
      const transfer = b.take()!.slice();
      const perTransfer = Math.floor(TRANSFER / (HEADER_SIZE + 64));
      const it = new VsockPacketIterator();
      const perSec = opsPerSecond((n) => {
        for (let i = 0; i < n; i++) host.receiveTransfer(transfer, it);
        host.read(addr);
        return delivered;
      });
      const pps = perSec * perTransfer;
      log(`state machine receive 64 B Data: ${(pps / 1e6).toFixed(2)} M packets/s`);
      figures.push({
        case: "ProtocolEndpoint.receiveTransfer, 64 B Data on one connection, 16 KiB transfers",
        value: pps,
        unit: "packets/s",
        baseline: {
          name: "memcpy 16 KiB (as 64 B packets)",
          value: (memcpyPerSec * TRANSFER) / (HEADER_SIZE + 64),
        },
        ratio: pps / ((memcpyPerSec * TRANSFER) / (HEADER_SIZE + 64)),
      });
    }

    // Through the Effect filler: one writer fiber, the reader offering 16 KiB transfers.
    const packets = 200_000;
    const payload = new Uint8Array(64).fill(1);
    const addr = { deviceCid: 3, hostCid: 2, devicePort: 1000, hostPort: 50000 };
    const started = performance.now();
    const transfers = await Effect.runPromise(
      Effect.gen(function* () {
        const filler = new UsbPacketFiller();
        const writer = yield* Effect.forkChild(
          Effect.gen(function* () {
            for (let i = 0; i < packets; i++) yield* filler.writePacket(PacketType.Data, addr, payload);
          }),
        );
        let builder = new UsbPacketBuilder(new Uint8Array(TRANSFER));
        const it = new VsockPacketIterator();
        let got = 0;
        let n = 0;
        while (got < packets) {
          builder = yield* filler.fill(builder);
          it.reset(builder.take()!);
          while (it.next()) got++;
          n++;
        }
        yield* Fiber.join(writer);
        return n;
      }),
    );
    const secs = (performance.now() - started) / 1000;
    const pps = packets / secs;
    log(
      `filler 64 B: ${(pps / 1e6).toFixed(2)} M packets/s, ${(packets / transfers).toFixed(1)} packets per transfer`,
    );
    figures.push({
      case: "UsbPacketFiller (Effect) write + fill + parse, 64 B payloads, 16 KiB transfers",
      value: pps,
      unit: "packets/s",
      baseline: {
        name: "memcpy 16 KiB (as 64 B packets)",
        value: (memcpyPerSec * TRANSFER) / (HEADER_SIZE + 64),
      },
      ratio: pps / ((memcpyPerSec * TRANSFER) / (HEADER_SIZE + 64)),
      notes: `${(packets / transfers).toFixed(1)} packets per transfer on average`,
    });
    return figures;
  },
};

export default suite;
