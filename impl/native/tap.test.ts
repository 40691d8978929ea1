/**
 * Firecracker tap.rs's own cases, re-expressed, on real TAPs inside a network namespace
 * this file creates and removes. Skipped (with the reason printed) without root or
 * /dev/net/tun.
 */
import { Effect, Exit, Scope } from "effect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IoVecBuffer, IoVecBufferMut } from "../iovec/iovec.ts";
import { SegmentList } from "../iovec/segment-list.ts";
import { GuestMemory } from "../memory/guest-memory.ts";
import {
  acquireNetns,
  configureTapIn,
  ip,
  openTapIn,
  removeStaleNamespaces,
  tapUnavailableReason,
} from "./netns.ts";
import { PacketSocket } from "./packet-socket.ts";
import type { Tap } from "./tap.ts";
import { NOT_ADDRESSABLE, terminatedIfName } from "./tap.ts";

const reason = tapUnavailableReason();
if (reason !== undefined) console.log(`TAP tests skipped: ${reason}`);
const d = reason === undefined ? describe : describe.skip;

describe("interface names without a TAP [TAP-IFNAME-LEN]", () => {
  it("16 bytes is InvalidIfname, 15 is accepted and NUL-terminated", () => {
    expect(terminatedIfName("a123456789abcdef")).toEqual({
      ok: false,
      error: { _tag: "InvalidIfname", name: "a123456789abcdef" },
    });
    const r = terminatedIfName("a123456789abcde");
    expect(r.ok).toBe(true);
    if (r.ok) expect(Array.from(r.value)).toEqual([...new TextEncoder().encode("a123456789abcde"), 0]);
    // Bytes, not characters: 8 two-byte characters are 16 bytes.
    expect(terminatedIfName("éééééééé").ok).toBe(false);
  });
});

d("TAP on /dev/net/tun in a namespace", () => {
  let scope: Scope.Closeable;
  let ns = "";
  const taps: Tap[] = [];
  const open = (name: string): Tap => {
    const t = openTapIn(ns, name);
    if (!t.ok) throw new Error(`open ${name}: ${JSON.stringify(t.error)}`);
    taps.push(t.value);
    return t.value;
  };

  beforeAll(async () => {
    scope = Effect.runSync(Scope.make());
    ns = await Effect.runPromise(Scope.provide(scope)(acquireNetns("tap")));
  });
  afterAll(async () => {
    for (const t of taps) t.close();
    await Effect.runPromise(Scope.close(scope, Exit.void));
    expect(ip("netns", "list")).not.toContain(ns);
    removeStaleNamespaces();
  });

  it("an empty name and tap%d get kernel-chosen names [TAP-IFNAME-KERNEL TAP-OPEN-FLAGS]", () => {
    const a = open("");
    expect(a.ifName).toMatch(/^tap\d+$/);
    expect(a.ifNameBytes.length).toBe(16);
    expect(a.ifNameBytes[a.ifName.length]).toBe(0);
    const b = open("tap%d");
    expect(b.ifName).toMatch(/^tap\d+$/);
    expect(b.ifName).not.toBe(a.ifName);
    // The interface exists in the namespace, not in ours.
    expect(ip("-n", ns, "link", "show", a.ifName)).toContain(a.ifName);
  });

  it("a 15-byte name is kept, a 16-byte one is InvalidIfname [TAP-IFNAME-LEN]", () => {
    expect(openTapIn(ns, "a123456789abcdef")).toEqual({
      ok: false,
      error: { _tag: "InvalidIfname", name: "a123456789abcdef" },
    });
    const t = open("a123456789abcde");
    expect(t.ifName).toBe("a123456789abcde");
  });

  it("opening a name already open fails [TAP-EXCLUSIVE]", () => {
    open("exclusivetap");
    const second = openTapIn(ns, "exclusivetap");
    expect(second.ok).toBe(false);
    if (!second.ok) expect(second.error).toMatchObject({ _tag: "IfreqExecuteError", errno: 16 });
  });

  it("vnet header size and offload flags can be set [TAP-VNET-HDR-SZ TAP-OFFLOAD]", () => {
    const t = open("");
    expect(t.setVnetHdrSize(16)).toEqual({ ok: true, value: undefined });
    expect(t.setVnetHdrSize(12)).toEqual({ ok: true, value: undefined });
    expect(t.setOffload(0)).toEqual({ ok: true, value: undefined });
    expect(t.setVnetHdrSize(1).ok).toBe(false); // below sizeof(virtio_net_hdr)
    expect(t.setOffload(0x80000000).ok).toBe(false); // unknown flag
  });

  it("a closed TAP frees its name [TAP-SCOPE]", () => {
    const t = open("reopened0");
    t.close();
    open("reopened0");
  });

  for (const hdr of [10, 12] as const) {
    const PAYLOAD = 512;
    const setup = (tag: string): { tap: Tap; sock: PacketSocket } => {
      const tap = open(`${tag}${hdr}`);
      expect(tap.setVnetHdrSize(hdr).ok).toBe(true);
      configureTapIn(ns, tap.ifName, `10.77.${tag === "w" ? hdr : hdr + 100}.1/24`);
      const sock = PacketSocket.open(ns, tap.ifName);
      if (!sock.ok) throw new Error(sock.error);
      return { tap, sock: sock.value };
    };

    it(`writev of three guest-memory fragments, ${hdr}-byte vnet header [TAP-WRITEV TAP-VNET-HDR-SZ]`, async () => {
      const { tap, sock } = setup("w");
      try {
        const mem = GuestMemory.of([{ base: 0x1000, bytes: new ArrayBuffer(0x4000) }]);
        const f1 = mem.slice(0x1000, PAYLOAD)!;
        const f2 = mem.slice(0x2000, PAYLOAD)!;
        const f3 = mem.slice(0x3000, PAYLOAD)!;
        for (const f of [f1, f2, f3]) for (let i = 0; i < f.length; i++) f[i] = (Math.random() * 256) | 0;
        f1.fill(0, 0, hdr); // a plain header: no offload
        f1.set([0x02, 0, 0, 0, 0, 0x01], hdr); // a unicast destination
        f1.set([0x02, 0, 0, 0, 0, 0x02], hdr + 6);
        f1.set([0x88, 0xb5], hdr + 12); // local experimental ethertype
        const chain = new SegmentList([
          { addr: 0x1000, len: PAYLOAD, write: false },
          { addr: 0x2000, len: PAYLOAD, write: false },
          { addr: 0x3000, len: PAYLOAD, write: false },
        ]);
        const buf = IoVecBuffer.fromChain(mem, chain);
        if (!buf.ok) throw new Error(buf.error._tag);
        expect(tap.writeSegments(buf.value, buf.value.len)).toBe(3 * PAYLOAD);
        const got = new Uint8Array(4096);
        let n: number | undefined;
        do n = await sock.recv(got, 2000);
        while (n !== undefined && !(got[12] === 0x88 && got[13] === 0xb5));
        expect(n).toBe(3 * PAYLOAD - hdr);
        expect(got.subarray(0, PAYLOAD - hdr)).toEqual(f1.subarray(hdr));
        expect(got.subarray(PAYLOAD - hdr, 2 * PAYLOAD - hdr)).toEqual(f2);
        expect(got.subarray(2 * PAYLOAD - hdr, 3 * PAYLOAD - hdr)).toEqual(f3);
      } finally {
        sock.close();
      }
    });

    it(`readv into two guest-memory buffers, ${hdr}-byte vnet header [TAP-READV TAP-VNET-HDR-SZ]`, async () => {
      const { tap, sock } = setup("r");
      try {
        const mem = GuestMemory.of([{ base: 0, bytes: new ArrayBuffer(0x4000) }]);
        const chain = new SegmentList([
          { addr: 0x100, len: PAYLOAD + hdr, write: true },
          { addr: 0x1000, len: 2 * PAYLOAD, write: true },
        ]);
        const rx = IoVecBufferMut.fromChain(mem, chain);
        if (!rx.ok) throw new Error(rx.error._tag);
        const packet = new Uint8Array(2 * PAYLOAD);
        const alnum = "abcdefghijklmnopqrstuvwxyz0123456789";
        for (let i = 0; i < packet.length; i++)
          packet[i] = alnum.charCodeAt((Math.random() * alnum.length) | 0);
        packet.set([0x02, 0, 0, 0, 0, 0x09], 6); // a unicast source
        packet.set([0x88, 0xb5], 12);
        expect(sock.send(packet)).toBe(packet.length);
        // Anything else the kernel emits is skipped; ours is recognised by its ethertype.
        let n = -11;
        const deadline = Date.now() + 2000;
        while (Date.now() < deadline) {
          n = tap.readSegments(rx.value, rx.value.len);
          if (n === -11) {
            await new Promise((r) => setTimeout(r, 5));
            continue;
          }
          if (mem.readU8(0x100 + hdr + 12) === 0x88 && mem.readU8(0x100 + hdr + 13) === 0xb5) break;
        }
        expect(n).not.toBe(NOT_ADDRESSABLE);
        expect(n).toBe(2 * PAYLOAD + hdr);
        expect(mem.slice(0x100 + hdr, PAYLOAD)).toEqual(packet.subarray(0, PAYLOAD));
        expect(mem.slice(0x1000, PAYLOAD)).toEqual(packet.subarray(PAYLOAD));
        expect(mem.slice(0x1000 + PAYLOAD, PAYLOAD)).toEqual(new Uint8Array(PAYLOAD));
      } finally {
        sock.close();
      }
    });
  }
});
