import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import { peerFree, U64_MAX, type VsockHeader } from "../../spec/vsock.ts";
import * as V from "../../wire/vsock.ts";
import { RX_QUEUE, TX_QUEUE, VsockDevice } from "./device.ts";
import { VsockGuest, type VsockGuestOptions } from "./guest.ts";
import { MemoryHost } from "./memory-host.ts";

const CID = 3n;
const setup = (opts: Partial<VsockGuestOptions> & { readonly ring?: "split" } = {}, muxer = {}) => {
  const host = new MemoryHost();
  const guest = VsockGuest.create({ guestCid: CID, muxer: { trace: true, ...muxer } }, host, {
    rxBuffers: 16,
    txSlots: 16,
    txMaxData: 8192,
    ...opts,
  });
  return { host, guest, dev: guest.device, mux: guest.device.muxer };
};
const hdr = (over: Partial<VsockHeader>): VsockHeader => ({
  srcCid: CID,
  dstCid: V.VSOCK_HOST_CID,
  srcPort: 1000,
  dstPort: 80,
  len: 0,
  type: V.VSOCK_TYPE_STREAM,
  op: V.VSOCK_OP_REQUEST,
  flags: 0,
  bufAlloc: 65536,
  fwdCnt: 0,
  ...over,
});
const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

describe("device config and features", () => {
  it("reserved guest CIDs are refused; guest_cid is little-endian in config space [VSOCK-CFG-CID]", () => {
    const memory = GuestMemory.of([{ base: 0, bytes: new Uint8Array(4096) }]);
    for (const cid of [0n, 1n, 2n, 0xffffffffn, U64_MAX]) {
      expect(VsockDevice.create(memory, { guestCid: cid })).toEqual({
        ok: false,
        error: { _tag: "InvalidGuestCid", cid },
      });
    }
    const d = VsockDevice.create(memory, { guestCid: 0x1_0000_0003n });
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect([...d.value.configSpace()]).toEqual([3, 0, 0, 0, 1, 0, 0, 0]);
    expect([...d.value.readConfig(4, 6)]).toEqual([1, 0, 0, 0, 0, 0]);
  });
  it("offers STREAM and VERSION_1, and has rx, tx, event queues [VSOCK-FEATURES VSOCK-QUEUES]", () => {
    const { dev } = setup();
    expect(dev.deviceFeatures & 1n).toBe(1n);
    expect((dev.deviceFeatures >> 32n) & 1n).toBe(1n);
    expect((dev.deviceFeatures >> 1n) & 1n).toBe(0n); // no SEQPACKET
    expect(dev.queues.length).toBe(3);
  });
});

describe("credit arithmetic", () => {
  it("peer_free wraps in u32 like the counters do [VSOCK-CREDIT-FREE]", () => {
    expect(peerFree(65536, 1000, 0)).toBe(64536);
    // tx_cnt wrapped past 2^32 while fwd_cnt has not yet: still 100 bytes in flight.
    expect(peerFree(65536, 50, 0xffffffff - 49)).toBe(65436);
    expect(peerFree(4096, 4096, 0)).toBe(0);
    // A peer lying with fwd_cnt ahead of what we sent gets a huge but finite u32, never negative.
    expect(peerFree(0, 0, 10)).toBe(10);
  });
});

describe("connections through the device", () => {
  it("guest connects, both sides write, bytes arrive in order [VSOCK-CONN-HANDSHAKE VSOCK-E2E]", () => {
    const { host, guest, mux } = setup();
    host.listening.add(80);
    const s = guest.connect(80);
    guest.pump();
    expect(s.state).toBe("established");
    const conn = mux.connection(80, s.port)!;
    expect(conn.state).toBe("Established");
    const up = bytes(20000);
    guest.write(s, up);
    for (let i = 0; i < 20; i++) {
      guest.pump();
      host.read(conn);
    }
    expect(host.receivedBytes(conn)).toEqual(Buffer.from(up));
    const down = bytes(30000, 5);
    conn.hostWrite(down);
    for (let i = 0; i < 20; i++) {
      guest.pump();
      guest.read(s);
    }
    expect(Buffer.concat(s.received)).toEqual(Buffer.from(down));
    expect(guest.interrupts[0]).toBeGreaterThan(0);
    expect(guest.interrupts[1]).toBeGreaterThan(0);
  });

  it("connect to a port nobody listens on is answered with RST [VSOCK-CONN-RST VSOCK-UNIX-LISTEN]", () => {
    const { guest, mux } = setup();
    const s = guest.connect(81);
    guest.pump();
    expect(s.state).toBe("closed");
    expect(s.reset).toBe(true);
    expect(mux.connectionCount).toBe(0);
  });

  it("host-initiated connection: REQUEST, guest RESPONSE, Established; no answer times out with RST [VSOCK-CONN-HANDSHAKE VSOCK-CONN-TIMEOUT]", () => {
    const { guest, mux } = setup();
    guest.listening.add(5000);
    const c = mux.hostConnect(5000)!;
    expect(c.state).toBe("LocalInit");
    guest.pump();
    expect(c.state).toBe("Established");
    // A guest that neither answers nor listens: drop its REQUEST by not pumping TX, then time out.
    const d = mux.hostConnect(6000)!;
    guest.device.processRx(0);
    guest.device.tick(1999);
    expect(d.state).toBe("LocalInit");
    guest.device.tick(2000);
    expect(d.state).toBe("Killed");
    expect(d.resetReason).toBe("Timeout");
  });

  it("unknown op or type gets RST; other CIDs are dropped; bad chains are refused and the device goes on [VSOCK-CONN-UNKNOWN VSOCK-CONN-CID VSOCK-HOSTILE]", () => {
    const { host, guest, mux, dev } = setup({ scratch: 0x100 });
    host.listening.add(80);
    guest.sendRaw(hdr({ op: 99, srcPort: 1 }));
    guest.sendRaw(hdr({ type: V.VSOCK_TYPE_SEQPACKET, srcPort: 2 }));
    guest.sendRaw(hdr({ srcCid: 4n, srcPort: 3 }));
    guest.sendRaw(hdr({ dstCid: 7n, srcPort: 4 }));
    guest.kickTx();
    expect(mux.stats.droppedCid).toBe(2);
    const got = guest.pollRx();
    expect(got.map((p) => [p.header.op, p.header.dstPort])).toEqual([
      [V.VSOCK_OP_RST, 1],
      [V.VSOCK_OP_RST, 2],
    ]);
    // A TX chain with a 10-byte head: HdrDescTooSmall, then a good connect still works.
    guest.addChainAt(TX_QUEUE, [{ addr: guest.scratchBase, len: 10, write: false }]);
    const s = guest.connect(80);
    guest.pump();
    expect(dev.assemblyErrors["HdrDescTooSmall"]).toBe(1);
    expect(s.state).toBe("established");
    // An op the state does not allow (REQUEST again) resets that connection only.
    const t = guest.connect(80);
    guest.pump();
    guest.sendRaw(hdr({ srcPort: s.port, op: V.VSOCK_OP_REQUEST }));
    guest.pump();
    expect(s.state).toBe("closed");
    expect(t.state).toBe("established");
  });

  it("a guest CID above 32 bits: RST replies and a connection's packets carry both CIDs whole [VSOCK-CONN-RST VSOCK-CONN-HANDSHAKE VSOCK-HDR-LAYOUT]", () => {
    const cid = 0x8765_4321_0000_0005n;
    const host = new MemoryHost();
    host.listening.add(80);
    const guest = VsockGuest.create({ guestCid: cid }, host, { rxBuffers: 8, txSlots: 8 });
    const raw = (over: Partial<VsockHeader>): VsockHeader => hdr({ srcCid: cid, ...over });
    guest.sendRaw(raw({ op: 99, srcPort: 1 })); // no connection: the muxer's RST
    guest.sendRaw(raw({ srcPort: 2 })); // REQUEST to a listener: the connection's RESPONSE
    guest.kickTx();
    const got = guest.pollRx().map((p) => [p.header.op, p.header.srcCid, p.header.dstCid, p.header.dstPort]);
    expect(got).toEqual([
      [V.VSOCK_OP_RST, V.VSOCK_HOST_CID, cid, 1],
      [V.VSOCK_OP_RESPONSE, V.VSOCK_HOST_CID, cid, 2],
    ]);
  });

  it("a guest that overruns its credit is reset [VSOCK-CREDIT-OVERRUN]", () => {
    const { host, guest, mux } = setup({}, { bufAlloc: 4096 });
    host.listening.add(80);
    const s = guest.connect(80);
    guest.pump();
    const conn = mux.connection(80, s.port)!;
    guest.sendRaw(hdr({ srcPort: s.port, op: V.VSOCK_OP_RW, len: 3000 }), bytes(3000));
    guest.sendRaw(hdr({ srcPort: s.port, op: V.VSOCK_OP_RW, len: 3000 }), bytes(3000));
    guest.pump();
    expect(conn.state).toBe("Killed");
    expect(conn.resetReason).toBe("Overrun");
    expect(s.reset).toBe(true);
    expect(host.receivedBytes(conn).length + conn.toHost.length).toBe(3000);
  });

  it("CREDIT_REQUEST is answered with CREDIT_UPDATE; reading past the threshold sends one [VSOCK-CREDIT-UPDATE]", () => {
    const { host, guest, mux } = setup({}, { bufAlloc: 100000, creditUpdateThreshold: 60000 });
    host.listening.add(80);
    const s = guest.connect(80);
    guest.pump();
    const conn = mux.connection(80, s.port)!;
    guest.sendRaw(hdr({ srcPort: s.port, op: V.VSOCK_OP_CREDIT_REQUEST }));
    guest.kickTx();
    let got = guest.pollRx();
    expect(got.map((p) => p.header.op)).toEqual([V.VSOCK_OP_CREDIT_UPDATE]);
    expect(got[0]!.header.bufAlloc).toBe(100000);
    guest.write(s, bytes(8000 * 6));
    guest.pump();
    expect(host.read(conn)).toBe(48000);
    got = guest.pollRx();
    expect(got.map((p) => [p.header.op, p.header.fwdCnt])).toEqual([[V.VSOCK_OP_CREDIT_UPDATE, 48000]]);
  });

  it("the host never sends more than the guest's free credit [VSOCK-CREDIT-LIMIT VSOCK-CREDIT-FREE]", () => {
    const { host, guest, mux } = setup({ sockBufAlloc: 10000 });
    host.listening.add(80);
    const s = guest.connect(80);
    guest.pump();
    const conn = mux.connection(80, s.port)!;
    conn.hostWrite(bytes(50000));
    guest.pump();
    expect(s.unreadBytes).toBe(10000);
    expect(conn.peerCredit()).toBe(0);
    guest.read(s, 4000);
    guest.pump();
    expect(s.unreadBytes).toBe(10000);
    expect(s.maxInFlight).toBeLessThanOrEqual(10000);
  });

  it("shutdown: guest SEND then RCV closes with RST; host close goes LocalClosed then Killed [VSOCK-CONN-SHUTDOWN]", () => {
    const { host, guest, mux } = setup();
    host.listening.add(80);
    const s = guest.connect(80);
    guest.pump();
    const conn = mux.connection(80, s.port)!;
    guest.write(s, bytes(100));
    guest.shutdown(s, V.VSOCK_FLAGS_SHUTDOWN_SEND);
    guest.pump();
    expect(conn.state).toBe("PeerClosed");
    host.read(conn);
    expect(conn.hostReadClosed).toBe(true);
    guest.sendRaw(hdr({ srcPort: s.port, op: V.VSOCK_OP_SHUTDOWN, flags: V.VSOCK_FLAGS_SHUTDOWN_RCV }));
    guest.pump();
    expect(conn.state).toBe("Killed");
    expect(s.state).toBe("closed");
    expect(host.receivedBytes(conn).length).toBe(100);

    const t = guest.connect(80);
    guest.pump();
    const c2 = mux.connection(80, t.port)!;
    c2.hostClose(0);
    expect(c2.state).toBe("LocalClosed");
    guest.pump();
    expect(c2.state).toBe("Killed");
    expect(c2.trace!.map((x) => x.event)).toEqual(["SendResponse", "LocalShutdown", "Rst"]);
  });

  it("a host that writes, half-closes and closes while the guest is out of credit: every byte still reaches the guest, then SHUTDOWN(SEND) [VSOCK-CONN-SHUTDOWN VSOCK-CREDIT-LIMIT]", () => {
    // The order a Unix echo peer produces after the guest's SHUTDOWN(SEND): its last bytes,
    // then 'end', then 'close', all before a slow guest has read what it was sent.
    const { host, guest, mux } = setup({ sockBufAlloc: 10000 });
    host.listening.add(80);
    const s = guest.connect(80);
    guest.pump();
    const conn = mux.connection(80, s.port)!;
    guest.shutdown(s, V.VSOCK_FLAGS_SHUTDOWN_SEND);
    guest.pump();
    expect(conn.state).toBe("PeerClosed");
    const sent = bytes(50000, 5);
    conn.hostWrite(sent);
    conn.hostShutdown();
    conn.hostClose(0);
    guest.pump();
    let rounds = 0;
    while (s.unreadBytes > 0 && rounds++ < 100) {
      guest.read(s, 4000);
      guest.pump();
    }
    expect(Buffer.concat(s.received)).toEqual(Buffer.from(sent));
    expect(s.peerShutdown & V.VSOCK_FLAGS_SHUTDOWN_SEND).toBe(V.VSOCK_FLAGS_SHUTDOWN_SEND);
    expect(conn.state).toBe("Killed");
  });

  it("transport reset drops every connection and writes TRANSPORT_RESET to the event queue [VSOCK-EVENT-RESET]", () => {
    const { host, guest, mux, dev } = setup();
    host.listening.add(80);
    guest.connect(80);
    guest.connect(80);
    guest.pump();
    expect(mux.connectionCount).toBe(2);
    expect(dev.transportReset()).toBe(true);
    expect(mux.connectionCount).toBe(0);
    guest.pollRx();
    expect(guest.events).toEqual([V.VIRTIO_VSOCK_EVENT_TRANSPORT_RESET]);
    expect(guest.interrupts[2]).toBe(1);
  });

  it.each([
    // Only a profile that demands a separate data descriptor has RX buffers with no data room;
    // under virtio a lone header is a valid buffer for a header-only packet.
    { profile: "cloud-hypervisor" as const, layout: "zero-length data descriptor" },
  ])(
    "$profile: an RX buffer with no room for data ($layout) is given back and data flows through the next ones [VSOCK-HOSTILE]",
    ({ profile }) => {
      const host = new MemoryHost();
      const guest = VsockGuest.create({ guestCid: CID, profile, muxer: { trace: true } }, host, {
        rxBuffers: 2,
        txSlots: 16,
        txMaxData: 8192,
        scratch: 0x1000,
      });
      const dev = guest.device;
      const mux = dev.muxer;
      host.listening.add(80);
      const s = guest.connect(80);
      guest.pump();
      const conn = mux.connection(80, s.port)!;
      // Two chains with no data room go beside the regular buffers.
      for (const at of [guest.scratchBase, guest.scratchBase + 0x200]) {
        guest.addChainAt(RX_QUEUE, [
          { addr: at, len: V.VSOCK_PKT_HDR_SIZE, write: true },
          { addr: at + 0x100, len: 0, write: true },
        ]);
      }
      conn.hostWrite(bytes(20000, 9));
      for (let i = 0; i < 10; i++) {
        guest.pump();
        guest.read(s);
      }
      expect(Buffer.concat(s.received)).toEqual(Buffer.from(bytes(20000, 9)));
      expect(dev.unusableRxBuffers).toBeGreaterThan(0);
    },
  );

  it("RESPONSE from the guest on a guest-initiated connection is unexpected and resets [VSOCK-CONN-UNKNOWN]", () => {
    const { host, guest, mux } = setup();
    host.listening.add(80);
    const s = guest.connect(80);
    guest.pump();
    guest.sendRaw(hdr({ srcPort: s.port, op: V.VSOCK_OP_RESPONSE }));
    guest.pump();
    expect(mux.connectionCount).toBe(0);
    expect(s.reset).toBe(true);
  });
});

describe("notification suppression (EVENT_IDX)", () => {
  it("draining a queue writes avail_event = next_avail, so a Linux driver kicks for its next chain [VQ-POP-OR-ENABLE VSOCK-FEATURES]", () => {
    const { host, guest, dev } = setup();
    // VsockGuest acks without EVENT_IDX; re-negotiate with it and re-activate the queues.
    dev.ackFeatures(dev.deviceFeatures);
    expect(dev.activate().ok).toBe(true);
    host.listening.add(80);
    const s = guest.connect(80);
    guest.pump();
    // TX is drained by the device; RX still holds the guest's spare buffers, so only TX
    // must have asked for the next kick.
    const tx = dev.queues[1]!;
    expect(tx.nextAvail).toBeGreaterThan(0);
    const ev = tx.availEvent();
    expect(ev.ok && ev.value).toBe(tx.nextAvail);
    expect(s.reset).toBe(false);
  });
});

describe("credit requests", () => {
  it("a host sender blocked on a stalled guest reader asks for credit once, not once per CREDIT_UPDATE that grants none [VSOCK-CREDIT-UPDATE VSOCK-CREDIT-LIMIT]", () => {
    const { host, guest, mux } = setup();
    host.listening.add(80);
    const s = guest.connect(80);
    guest.pump();
    const conn = mux.connection(80, s.port)!;
    conn.hostWrite(bytes(4 * s.bufAlloc, 3)); // far more than the guest's buffer
    let requests = 0;
    for (let round = 0; round < 50; round++) {
      guest.flush();
      guest.kickTx();
      for (const p of guest.pollRx()) if (p.header.op === V.VSOCK_OP_CREDIT_REQUEST) requests++;
      // The guest program never reads, so every CREDIT_UPDATE it sends grants nothing.
    }
    expect(s.unreadBytes).toBe(s.bufAlloc);
    expect(requests).toBe(1);
  });
});
