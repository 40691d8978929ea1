/**
 * The device on a real TAP (TAP-E2E): the guest side sends an ARP request and an ICMP
 * echo request through the TX queue; the kernel, on the TAP's side inside a namespace this
 * test creates, answers both, and the replies come back through the RX queue. Skipped,
 * with the reason printed, without root or /dev/net/tun.
 */
import { Duration, Effect } from "effect";
import { describe, expect, it } from "vitest";
import { existsSync, readlinkSync } from "node:fs";
import { NetBackend } from "../net/backend.ts";
import { NetDevice, RX_QUEUE } from "../net/device.ts";
import { NetGuest, type ReceivedPacket } from "../net/guest.ts";
import {
  ARP_REPLY,
  ICMP_DEST_UNREACHABLE,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  arpRequest,
  formatMac,
  icmpEcho,
  parseArp,
  parseIcmp,
  parseIpv4,
  udpPartialChecksum,
} from "../net/packets.ts";
import { encodeNetHeader } from "../net/header.ts";
import { acquireNetns, acquireTapBackendIn, configureTapIn, ip, tapUnavailableReason } from "./netns.ts";
import { VIRTIO_NET_F as F, featureBit as bit } from "../../wire/features.ts";
import { VIRTIO_NET_HDR_F_NEEDS_CSUM } from "../../wire/net.ts";

const reason = tapUnavailableReason();
if (reason !== undefined) console.log(`TAP end-to-end test skipped: ${reason}`);
const d = reason === undefined ? describe : describe.skip;

const GUEST_MAC = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const GUEST_IP = parseIpv4("10.200.0.2");
const HOST_IP = parseIpv4("10.200.0.1");

/** RX packets until `want` accepts one (others, e.g. a neighbour probe, are kept aside). */
const receiveUntil = (dev: NetDevice, guest: NetGuest, want: (p: ReceivedPacket) => boolean) =>
  Effect.gen(function* () {
    const seen: ReceivedPacket[] = [];
    for (;;) {
      dev.processRxNow();
      for (const p of guest.reapRx()) {
        seen.push(p);
        if (want(p)) return { packet: p, seen };
      }
      guest.postRx(4);
      yield* dev.backend.waitReadable;
    }
  }).pipe(Effect.timeout(Duration.seconds(5)));

d("virtio-net on a real TAP in a namespace", () => {
  for (const legacy of [false, true]) {
    it(`the kernel answers ARP and ICMP echo sent through the TX queue, replies arrive on RX (${legacy ? "10" : "12"}-byte header) [TAP-E2E TAP-READV TAP-WRITEV TAP-SCOPE NET-RX-HDR NET-RX-FLAGS]`, async () => {
      let nsName = "";
      let ifName = "";
      const program = Effect.scoped(
        Effect.gen(function* () {
          const ns = yield* acquireNetns("e2e");
          nsName = ns;
          const backend = yield* acquireTapBackendIn(ns, "vlab%d");
          ifName = backend.tap.ifName;
          configureTapIn(ns, ifName, "10.200.0.1/24");
          const hostMac = /link\/ether ([0-9a-f:]+)/.exec(ip("-n", ns, "link", "show", ifName))![1]!;
          const dev = new NetDevice({ mac: GUEST_MAC, mtu: 1500, status: true }, backend);
          const guest = NetGuest.create(dev, {
            queueSize: 64,
            features: legacy ? bit(F.MAC) | bit(F.MTU) : dev.offeredFeatures,
          });
          expect(dev.headerLength).toBe(legacy ? 10 : 12);
          guest.postRx(8);

          // ARP: who has 10.200.0.1? tell 10.200.0.2
          guest.send(arpRequest(GUEST_MAC, GUEST_IP, HOST_IP));
          expect(dev.processTxNow()).toBe(1);
          expect(dev.stats.txFrames).toBe(1);
          const arp = yield* receiveUntil(dev, guest, (p) => parseArp(p.frame)?.op === ARP_REPLY);
          const reply = parseArp(arp.packet.frame)!;
          expect(reply.senderIp).toEqual(HOST_IP);
          expect(formatMac(reply.senderMac)).toBe(hostMac);
          expect(reply.targetMac).toEqual(GUEST_MAC);
          expect(reply.targetIp).toEqual(GUEST_IP);
          expect(Array.from(arp.packet.frame.subarray(0, 6))).toEqual(GUEST_MAC);
          expect(arp.packet.header.gsoType).toBe(0);
          expect(arp.packet.header.flags).toBe(0);
          expect(arp.packet.header.numBuffers).toBe(legacy ? 0 : 1);

          // ICMP echo request to the kernel's address.
          const payload = Uint8Array.from({ length: 56 }, (_, i) => i);
          const hostMacBytes = hostMac.split(":").map((h) => parseInt(h, 16));
          guest.send(
            icmpEcho(ICMP_ECHO_REQUEST, hostMacBytes, GUEST_MAC, GUEST_IP, HOST_IP, 0x4242, 1, payload),
          );
          expect(dev.processTxNow()).toBe(1);
          const echo = yield* receiveUntil(dev, guest, (p) => parseIcmp(p.frame)?.type === ICMP_ECHO_REPLY);
          const icmp = parseIcmp(echo.packet.frame)!;
          expect(icmp.srcIp).toEqual(HOST_IP);
          expect(icmp.dstIp).toEqual(GUEST_IP);
          expect(icmp.dstMac).toEqual(GUEST_MAC);
          expect(formatMac(icmp.srcMac)).toBe(hostMac);
          expect(icmp.id).toBe(0x4242);
          expect(icmp.seq).toBe(1);
          expect(icmp.payload).toEqual(payload);
          expect(icmp.ipChecksumOk).toBe(true);
          expect(icmp.icmpChecksumOk).toBe(true);
          expect(echo.packet.header.numBuffers).toBe(legacy ? 0 : 1);
          expect(echo.packet.header.gsoType).toBe(0);
          expect(echo.packet.usedLength).toBe(dev.headerLength + echo.packet.frame.length);
          expect(guest.interrupts[RX_QUEUE]).toBeGreaterThan(0);
          expect(backend.stats.errors).toBe(0);
        }),
      );
      await Effect.runPromise(program);
      // TAP-SCOPE: the namespace (and the interface in it) is gone once the scope closed.
      expect(ip("netns", "list")).not.toContain(nsName);
      expect(() => ip("-n", nsName, "link", "show", ifName)).toThrow();
    });
  }

  it("with MRG_RXBUF a large echo reply is read with one readv across several small RX chains [TAP-E2E TAP-READV NET-RX-MRG]", async () => {
    const program = Effect.scoped(
      Effect.gen(function* () {
        const ns = yield* acquireNetns("mrg");
        const backend = yield* acquireTapBackendIn(ns, "");
        configureTapIn(ns, backend.tap.ifName, "10.200.0.1/24");
        const hostMac = /link\/ether ([0-9a-f:]+)/.exec(
          ip("-n", ns, "link", "show", backend.tap.ifName),
        )![1]!;
        const hostMacBytes = hostMac.split(":").map((h) => parseInt(h, 16));
        const dev = new NetDevice({ mac: GUEST_MAC, mtu: 1500, mrgRxbuf: true }, backend);
        const guest = NetGuest.create(dev, { queueSize: 64 });
        guest.postRx(16, 256); // 16 × 256 B >= 12 + 1518: the device may start
        guest.send(arpRequest(GUEST_MAC, GUEST_IP, HOST_IP));
        dev.processTxNow();
        const payload = Uint8Array.from({ length: 1200 }, (_, i) => (i * 13) & 0xff);
        guest.send(icmpEcho(ICMP_ECHO_REQUEST, hostMacBytes, GUEST_MAC, GUEST_IP, HOST_IP, 7, 9, payload));
        dev.processTxNow();
        const deadline = Date.now() + 5000;
        for (;;) {
          dev.processRxNow();
          const got = guest.reapRxMerged().find((p) => parseIcmp(p.frame)?.type === ICMP_ECHO_REPLY);
          if (got !== undefined) return got;
          if (Date.now() > deadline) throw new Error("no echo reply");
          guest.postRx(8, 256);
          yield* Effect.timeoutOption(backend.waitReadable, "200 millis");
        }
      }),
    );
    const reply = await Effect.runPromise(program);
    const icmp = parseIcmp(reply.frame)!;
    expect(icmp.payload).toEqual(Uint8Array.from({ length: 1200 }, (_, i) => (i * 13) & 0xff));
    expect(icmp.icmpChecksumOk && icmp.ipChecksumOk).toBe(true);
    // 12 + 14 + 20 + 8 + 1200 = 1254 bytes over 256-byte buffers: 5 of them.
    expect(reply.header.numBuffers).toBe(5);
    expect(reply.usedLength).toBe(12 + reply.frame.length);
  });

  it("CSUM pass-through: a partially checksummed UDP datagram is completed by the kernel, not dropped [NET-CSUM-PASSTHROUGH TAP-OFFLOAD TAP-E2E]", async () => {
    const program = Effect.scoped(
      Effect.gen(function* () {
        const ns = yield* acquireNetns("csum");
        const backend = yield* acquireTapBackendIn(ns, "");
        configureTapIn(ns, backend.tap.ifName, "10.200.0.1/24");
        const hostMac = /link\/ether ([0-9a-f:]+)/.exec(
          ip("-n", ns, "link", "show", backend.tap.ifName),
        )![1]!;
        const hostMacBytes = hostMac.split(":").map((h) => parseInt(h, 16));
        const dev = new NetDevice({ mac: GUEST_MAC, mtu: 1500, csum: true }, backend);
        const guest = NetGuest.create(dev, { queueSize: 64 });
        guest.postRx(16);
        guest.send(arpRequest(GUEST_MAC, GUEST_IP, HOST_IP));
        dev.processTxNow();
        yield* receiveUntil(dev, guest, (p) => parseArp(p.frame)?.op === ARP_REPLY);
        const udp = udpPartialChecksum(
          hostMacBytes,
          GUEST_MAC,
          GUEST_IP,
          HOST_IP,
          40000,
          9,
          new Uint8Array(32).fill(7),
        );
        const unreachable = (p: ReceivedPacket): boolean =>
          parseIcmp(p.frame)?.type === ICMP_DEST_UNREACHABLE;
        // Control: the same datagram without NEEDS_CSUM has a wrong checksum; the kernel drops
        // it silently (no port-unreachable).
        guest.send(udp.frame);
        dev.processTxNow();
        const control = yield* Effect.timeoutOption(receiveUntil(dev, guest, unreachable), "300 millis");
        expect(control._tag).toBe("None");
        // With NEEDS_CSUM the header passes through to the TAP, the kernel completes the
        // checksum, finds port 9 closed and answers.
        const hdr = new Uint8Array(12);
        encodeNetHeader(
          {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gsoType: 0,
            hdrLen: 0,
            gsoSize: 0,
            csumStart: udp.csumStart,
            csumOffset: udp.csumOffset,
            numBuffers: 0,
          },
          12,
          hdr,
        );
        guest.send(udp.frame, [], hdr);
        dev.processTxNow();
        const reply = yield* receiveUntil(dev, guest, unreachable);
        const icmp = parseIcmp(reply.packet.frame)!;
        expect(icmp.srcIp).toEqual(HOST_IP);
        expect(icmp.icmpChecksumOk).toBe(true);
        // The quoted datagram: IP header (20) + UDP header; destination port 9.
        expect((icmp.payload[20 + 2]! << 8) | icmp.payload[20 + 3]!).toBe(9);
      }),
    );
    await Effect.runPromise(program);
  });

  it("device, fd and namespace are released with the scope, the device reset [TAP-SCOPE]", async () => {
    let dev: NetDevice | undefined;
    let tapFd = -1;
    const program = Effect.scoped(
      Effect.gen(function* () {
        const ns = yield* acquireNetns("scope");
        const backend = yield* acquireTapBackendIn(ns, "");
        tapFd = backend.tap.fd;
        dev = yield* NetDevice.scoped({ mac: GUEST_MAC }).pipe(Effect.provideService(NetBackend, backend));
        NetGuest.create(dev, { queueSize: 8 });
        yield* dev.start;
        expect(dev.isActive).toBe(true);
        return backend;
      }),
    );
    const backend = await Effect.runPromise(program);
    expect(dev!.isActive).toBe(false);
    expect(dev!.processTxNow()).toBe(0);
    expect(backend.tap.isOpen).toBe(false);
    expect(existsSync(`/proc/self/fd/${tapFd}`) ? readlinkSync(`/proc/self/fd/${tapFd}`) : "").not.toBe(
      "/dev/net/tun",
    );
  });

  it("resources are released when the program fails half-way [TAP-SCOPE]", async () => {
    let nsName = "";
    const failing = Effect.scoped(
      Effect.gen(function* () {
        nsName = yield* acquireNetns("fail");
        const b = yield* acquireTapBackendIn(nsName, "");
        // Start a wait on the worker thread, then fail: the release must stop it first.
        yield* Effect.forkScoped(b.waitReadable);
        yield* Effect.sleep("10 millis");
        return yield* Effect.fail("boom" as const);
      }),
    );
    expect(await Effect.runPromise(Effect.flip(failing))).toBe("boom");
    expect(ip("netns", "list")).not.toContain(nsName);
  });
});
