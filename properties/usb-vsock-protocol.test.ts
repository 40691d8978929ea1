/**
 * vsock over USB: the connection protocol over random interleavings of both ends.
 *
 * A host and a device endpoint (impl/usb-vsock/protocol.ts) each run beside the reference
 * model (spec/usb-vsock.ts `step`). Random actions: local requests on either end, delivery
 * of the next few packets of either direction (packed into a transfer with the real
 * builder and parsed back), mid-stream re-synchronisation by the host, echoes. After every
 * event the implementation must agree with the model (packets sent, notices, errors,
 * state); at the end both directions are drained and the two ends must agree on every
 * connection, and data must have arrived once and in order.
 *
 * One precondition is imposed on the driver, because the protocol (Fuchsia's too) has no
 * sequence numbers: an end does not reopen an address while an Accept, Reset or Finish
 * for that address is in flight in either direction (USB-CONN-ADDR-REUSE); the example
 * tests "stale ..." in impl/usb-vsock/protocol.test.ts show what goes wrong otherwise
 * (this property found both).
 */
import fc from "fast-check";
import { isDeepStrictEqual } from "node:util";
import { describe } from "vitest";
import { property } from "./harness.ts";
import {
  PacketType,
  addressKey,
  initialEndpoint,
  step,
  type Address,
  type Event,
  type Notice,
  type Packet,
  type ProtocolError,
  type SpecEndpoint,
  type Version,
  type PacketType as PacketTypeT,
} from "../spec/usb-vsock.ts";
import { ProtocolEndpoint } from "../impl/usb-vsock/protocol.ts";
import { UsbPacketBuilder, VsockPacketIterator } from "../impl/usb-vsock/packet.ts";

const ADDRS: readonly Address[] = [
  { deviceCid: 3, hostCid: 2, devicePort: 10, hostPort: 20 },
  { deviceCid: 3, hostCid: 2, devicePort: 11, hostPort: 20 },
  { deviceCid: 3, hostCid: 2, devicePort: 10, hostPort: 21 },
  { deviceCid: 0, hostCid: 0, devicePort: 0, hostPort: 0 },
];
const HIGH_WATER = 48;

type LocalOp = "connect" | "accept" | "reject" | "close" | "reset" | "read";
type Action =
  | { readonly k: "op"; readonly side: 0 | 1; readonly op: LocalOp; readonly addr: number }
  | { readonly k: "send"; readonly side: 0 | 1; readonly addr: number; readonly len: number }
  | { readonly k: "deliver"; readonly from: 0 | 1; readonly count: number }
  | { readonly k: "resync"; readonly nonce: number }
  | { readonly k: "echo"; readonly side: 0 | 1 }
  | { readonly k: "quiesce" };

const side = fc.constantFrom<0 | 1>(0, 1);
const addrIdx = fc.oneof(
  { weight: 12, arbitrary: fc.nat({ max: 2 }) },
  { weight: 1, arbitrary: fc.constant(3) },
);
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant("op" as const),
      side,
      op: fc.constantFrom<LocalOp>(
        "connect",
        "connect",
        "accept",
        "accept",
        "reject",
        "close",
        "reset",
        "read",
      ),
      addr: addrIdx,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant("send" as const),
      side,
      addr: addrIdx,
      len: fc.integer({ min: 4, max: 40 }),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant("deliver" as const),
      from: side,
      count: fc.integer({ min: 1, max: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("resync" as const), nonce: fc.nat({ max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("echo" as const), side }) },
  { weight: 1, arbitrary: fc.constant({ k: "quiesce" as const }) },
);

const versionArb: fc.Arbitrary<Version> = fc.oneof(
  fc.constant<Version>({ v: 0 }),
  fc.constant<Version>({ v: 1 }),
  fc.constant<Version>({ v: 2, nonce: 0 }),
);

interface WirePacket {
  readonly type: PacketTypeT;
  readonly address: Address;
  readonly payload: number[];
}

interface End {
  readonly name: string;
  readonly impl: ProtocolEndpoint;
  spec: SpecEndpoint;
  /** Packets sent and not yet delivered, oldest first. */
  readonly queue: WirePacket[];
  emitted: WirePacket[];
  notices: Notice[];
  /** Per address: ids sent / received in the current incarnation of the local entry. */
  readonly sent: Map<string, number[]>;
  readonly recv: Map<string, number[]>;
  /** Last id received per address (ever) and on the control stream. */
  readonly lastRecv: Map<string, number>;
}

const plainNotice = (n: Notice): unknown => ("payload" in n ? { ...n, payload: [...n.payload] } : { ...n });
const plainSpecPacket = (p: Packet): WirePacket => ({
  type: p.header.type,
  address: {
    deviceCid: p.header.deviceCid,
    hostCid: p.header.hostCid,
    devicePort: p.header.devicePort,
    hostPort: p.header.hostPort,
  },
  payload: [...p.payload],
});
const plainAddr = (a: Address): Address => ({
  deviceCid: a.deviceCid,
  hostCid: a.hostCid,
  devicePort: a.devicePort,
  hostPort: a.hostPort,
});

const makeEnd = (name: string, role: "host" | "device", v: Version): End => {
  const end: End = {
    name,
    impl: undefined as unknown as ProtocolEndpoint,
    spec: initialEndpoint(role, v, HIGH_WATER),
    queue: [],
    emitted: [],
    notices: [],
    sent: new Map(),
    recv: new Map(),
    lastRecv: new Map(),
  };
  (end as { impl: ProtocolEndpoint }).impl = new ProtocolEndpoint(role, v, HIGH_WATER, {
    emit: (type, address, payload) =>
      end.emitted.push({
        type,
        address: plainAddr(address),
        payload: payload === undefined ? [] : [...payload],
      }),
    notice: (n) => end.notices.push(n),
  });
  return end;
};

const implState = (e: End) => ({
  sync: e.impl.sync,
  conns: [...e.impl.connections()]
    .map((c) => ({ ...c, address: plainAddr(c.address) }))
    .sort((a, b) => addressKey(a.address).localeCompare(addressKey(b.address))),
});
const specState = (e: End) => ({
  sync: e.spec.sync,
  conns: [...e.spec.conns.values()]
    .map((c) => ({ ...c, address: plainAddr(c.address) }))
    .sort((a, b) => addressKey(a.address).localeCompare(addressKey(b.address))),
});

class Broken extends Error {}
const fail = (msg: string): never => {
  throw new Broken(msg);
};

let nextId = 1;
const payloadFor = (id: number, len: number): Uint8Array => {
  const p = new Uint8Array(len).fill(id & 0xff);
  new DataView(p.buffer).setUint32(0, id, true);
  return p;
};
const idOf = (p: Uint8Array): number => new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(0, true);

/** Runs one event on both the implementation and the model of `e` and compares them. */
const apply = (e: End, ev: Event, runImpl: () => ProtocolError | undefined): ProtocolError | undefined => {
  e.emitted = [];
  e.notices = [];
  const r = step(e.spec, ev);
  const err = runImpl();
  const what = `${e.name} ${ev._tag}${"address" in ev ? " " + addressKey(ev.address) : ""}`;
  if (
    !isDeepStrictEqual(
      err === undefined ? undefined : { ...err },
      r.error === undefined ? undefined : { ...r.error },
    )
  )
    fail(`${what}: error ${JSON.stringify(err)} vs spec ${JSON.stringify(r.error)}`);
  if (!isDeepStrictEqual(e.emitted, r.out.map(plainSpecPacket)))
    fail(`${what}: sent ${JSON.stringify(e.emitted)} vs spec ${JSON.stringify(r.out.map(plainSpecPacket))}`);
  if (!isDeepStrictEqual(e.notices.map(plainNotice), r.notices.map(plainNotice)))
    fail(
      `${what}: notices ${JSON.stringify(e.notices.map(plainNotice))} vs spec ${JSON.stringify(r.notices.map(plainNotice))}`,
    );
  e.spec = r.state;
  if (!isDeepStrictEqual(implState(e), specState(e)))
    fail(`${what}: state ${JSON.stringify(implState(e))} vs spec ${JSON.stringify(specState(e))}`);
  e.queue.push(...e.emitted);
  for (const n of e.notices) {
    if (n._tag === "Incoming") {
      const k = addressKey(n.address);
      e.sent.set(k, []);
      e.recv.set(k, []);
    } else if (n._tag === "Data" || n._tag === "Control") {
      const k = n._tag === "Data" ? addressKey(n.address) : "control";
      const id = idOf(n.payload);
      const last = e.lastRecv.get(k) ?? 0;
      // USB-CONN-DATA: once and in order (ids only grow per address and direction).
      if (id <= last) fail(`${e.name} received id ${id} on ${k} after ${last}: duplicate or out of order`);
      e.lastRecv.set(k, id);
      if (n._tag === "Data") e.recv.get(k)?.push(id);
    }
  }
  return err;
};

const blocksReuse = (q: readonly WirePacket[], a: Address): boolean =>
  q.some(
    (p) =>
      (p.type === PacketType.Accept || p.type === PacketType.Reset || p.type === PacketType.Finish) &&
      isDeepStrictEqual(p.address, plainAddr(a)),
  );

const deliver = (from: End, to: End, count: number): void => {
  const batch = from.queue.splice(0, count);
  if (batch.length === 0) return;
  // Through the real framing: one transfer, parsed back packet by packet.
  const b = new UsbPacketBuilder(new Uint8Array(batch.reduce((n, p) => n + 24 + p.payload.length, 0)));
  for (const p of batch)
    if (b.write(p.type, p.address, Uint8Array.from(p.payload)) !== undefined) fail("builder refused");
  const it = new VsockPacketIterator(b.take()!);
  while (it.next()) {
    const payload = it.payload().slice();
    const packet: Packet = {
      header: {
        type: it.type,
        deviceCid: it.deviceCid,
        hostCid: it.hostCid,
        devicePort: it.devicePort,
        hostPort: it.hostPort,
        payloadLen: it.payloadLen,
      },
      payload,
    };
    const h = packet.header;
    apply(to, { _tag: "receive", packet }, () =>
      to.impl.receive(h.type, h.deviceCid, h.hostCid, h.devicePort, h.hostPort, payload),
    );
  }
  if (it.error !== undefined) fail(`parse error ${it.error._tag}`);
};

/** Drains both directions, then checks what must hold whenever nothing is in flight. */
const quiesce = (host: End, dev: End): void => {
  // Drain both directions until nothing is in flight (the protocol must quiesce).
  for (let round = 0; host.queue.length + dev.queue.length > 0; round++) {
    if (round > 1000) fail("did not quiesce");
    deliver(host, dev, host.queue.length);
    deliver(dev, host, dev.queue.length);
  }
  // Both synchronised on the same version.
  if (host.impl.sync.tag !== "Synced" || dev.impl.sync.tag !== "Synced")
    fail(`not synchronised: ${JSON.stringify([host.impl.sync, dev.impl.sync])}`);
  if (!isDeepStrictEqual(host.impl.version, dev.impl.version)) fail("versions differ");
  // USB-CONN-STATES: both ends agree on every connection; nothing half open.
  const mirror = {
    ConnectingOutgoing: "ConnectingIncoming",
    ConnectingIncoming: "ConnectingOutgoing",
    Connected: "Connected",
  };
  for (const a of ADDRS.slice(0, 3)) {
    const h = host.impl.connection(a)?.state;
    const d = dev.impl.connection(a)?.state;
    if ((h === undefined ? undefined : mirror[h]) !== d) fail(`${addressKey(a)}: host ${h} but device ${d}`);
    if (h === "Connected") {
      const k = addressKey(a);
      // Data on a live connection arrived once, in order, all of it, both ways.
      if (!isDeepStrictEqual(dev.recv.get(k), host.sent.get(k)))
        fail(`${k}: host sent ${host.sent.get(k)} device got ${dev.recv.get(k)}`);
      if (!isDeepStrictEqual(host.recv.get(k), dev.sent.get(k)))
        fail(`${k}: device sent ${dev.sent.get(k)} host got ${host.recv.get(k)}`);
    }
  }
};

const runScenario = (
  hostV: Version,
  devV: Version,
  actions: readonly Action[],
  expectEmpty = false,
): void => {
  const host = makeEnd("host", "host", hostV);
  const dev = makeEnd("device", "device", devV);
  const ends = [host, dev] as const;
  apply(host, { _tag: "sync", nonce: 1 }, () => host.impl.startSync(1));
  for (const act of actions) {
    switch (act.k) {
      case "deliver": {
        const from = ends[act.from];
        deliver(from, ends[1 - act.from]!, act.count);
        break;
      }
      case "quiesce":
        quiesce(host, dev);
        break;
      case "resync":
        apply(host, { _tag: "sync", nonce: act.nonce }, () => host.impl.startSync(act.nonce));
        break;
      case "echo": {
        const e = ends[act.side];
        const p = payloadFor(0, 4);
        apply(e, { _tag: "echo", payload: p }, () => e.impl.echo(p));
        break;
      }
      case "send": {
        const e = ends[act.side];
        const a = ADDRS[act.addr]!;
        const id = nextId++;
        const p = payloadFor(id, act.len);
        const err = apply(e, { _tag: "send", address: a, payload: p }, () => e.impl.send(a, p));
        if (err === undefined && act.addr !== 3) e.sent.get(addressKey(a))?.push(id);
        break;
      }
      case "op": {
        const e = ends[act.side];
        const peer = ends[1 - act.side]!;
        const a = ADDRS[act.addr]!;
        if (act.op === "connect" && (blocksReuse(peer.queue, a) || blocksReuse(e.queue, a))) break; // USB-CONN-ADDR-REUSE
        const err = apply(e, { _tag: act.op, address: a }, () => e.impl[act.op](a));
        if (act.op === "connect" && err === undefined) {
          e.sent.set(addressKey(a), []);
          e.recv.set(addressKey(a), []);
        }
        break;
      }
    }
  }
  quiesce(host, dev);
  if (expectEmpty && [...host.impl.connections(), ...dev.impl.connections()].length > 0)
    fail("a connection survived the mid-stream Sync");
};

describe("usb-vsock connection protocol", () => {
  property(
    "over random interleavings both ends agree with the model and each other; data arrives once and in order; nothing half open",
    [
      "USB-CONN-STATES",
      "USB-CONN-CONNECT",
      "USB-CONN-ACCEPT",
      "USB-CONN-REJECT",
      "USB-CONN-FINISH",
      "USB-CONN-RESET",
      "USB-CONN-DATA",
      "USB-CONN-SIMULTANEOUS",
      "USB-CONN-ADDR",
      "USB-CONN-ADDR-REUSE",
      "USB-SYNC-NEGOTIATE",
      "USB-SYNC-FIRST",
      "USB-SYNC-MIDSTREAM",
      "USB-SYNC-NONCE",
      "USB-CONTROL-STREAM",
      "USB-PAUSE",
      "USB-ECHO",
    ],
    fc.property(
      versionArb,
      versionArb,
      fc.array(actionArb, { maxLength: 80, size: "max" }),
      (hv, dv, actions) => {
        runScenario(hv, dv, actions);
        return true;
      },
    ),
    { numRuns: 1000 },
  );

  property(
    "a mid-stream Sync or a reset leaves no connection half open, whatever is in flight",
    ["USB-SYNC-MIDSTREAM", "USB-CONN-RESET", "USB-CONN-STATES"],
    fc.property(
      fc.array(actionArb, { maxLength: 40, size: "max" }),
      fc.constantFrom<"resync" | "reset">("resync", "reset"),
      side,
      fc.array(
        actionArb.filter((a) => a.k === "deliver"),
        { maxLength: 6 },
      ),
      (before, how, who, after) => {
        const connectAll: Action[] = [0, 1, 2].flatMap((addr) => [
          { k: "op", side: 0, op: "connect", addr } as const,
          { k: "deliver", from: 0, count: 4 } as const,
          { k: "op", side: 1, op: "accept", addr } as const,
          { k: "deliver", from: 1, count: 4 } as const,
        ]);
        const teardown: Action[] =
          how === "resync"
            ? [{ k: "resync", nonce: 3 }]
            : [0, 1, 2].map((addr) => ({ k: "op", side: who, op: "reset", addr }) as const);
        runScenario(
          { v: 2, nonce: 0 },
          { v: 2, nonce: 0 },
          [
            { k: "deliver", from: 0, count: 4 },
            { k: "deliver", from: 1, count: 4 },
            ...connectAll,
            ...before,
            ...teardown,
            ...after,
          ],
          how === "resync",
        );
        return true;
      },
    ),
    { numRuns: 400 },
  );
});

describe("usb-vsock hostile peer", () => {
  const hostileTransfer = fc.oneof(
    fc.uint8Array({ maxLength: 120 }),
    fc
      .array(
        fc.record({
          type: fc.constantFrom(...Object.values(PacketType)),
          address: fc.constantFrom(...ADDRS),
          payload: fc.oneof(
            fc.uint8Array({ maxLength: 24 }),
            fc
              .constantFrom("vsock:0", "vsock:1", "vsock:2:7", "vsock:3", "vsock:2:", "")
              .map((t) => new TextEncoder().encode(t)),
          ),
        }),
        { maxLength: 8 },
      )
      .map((ps) => {
        const b = new UsbPacketBuilder(new Uint8Array(ps.reduce((n, p) => n + 24 + p.payload.length, 0)));
        for (const p of ps) b.write(p.type, p.address, p.payload);
        return b.take() ?? new Uint8Array(0);
      }),
  );

  property(
    "any transfers from a hostile peer never throw and never stop the endpoint serving the next well-formed exchange",
    ["USB-PARSE-BOUNDS", "USB-SYNC-FIRST", "USB-SYNC-MIDSTREAM", "USB-CONN-STATES", "USB-PAUSE"],
    fc.property(
      fc.constantFrom<"host" | "device">("host", "device"),
      versionArb,
      fc.array(hostileTransfer, { maxLength: 10 }),
      (role, v, transfers) => {
        const sent: { type: number; payload: number[] }[] = [];
        const ep = new ProtocolEndpoint(role, v, HIGH_WATER, {
          emit: (type, _a, payload) =>
            sent.push({ type, payload: payload === undefined ? [] : [...payload] }),
          notice: () => undefined,
        });
        if (role === "host") ep.startSync(5);
        for (const t of transfers) ep.receiveTransfer(t);
        for (const c of ep.connections())
          if (!["ConnectingOutgoing", "ConnectingIncoming", "Connected"].includes(c.state)) return false;
        // The next well-formed exchange still works: (re)synchronise, then a Connect is heard.
        sent.length = 0;
        const sync = (text: string): Uint8Array => {
          const b = new UsbPacketBuilder(new Uint8Array(64));
          b.write(PacketType.Sync, ADDRS[3]!, new TextEncoder().encode(text));
          return b.take()!;
        };
        if (role === "device") {
          ep.receiveTransfer(sync("vsock:1"));
          // Answered with the negotiated version, unless this Sync confirmed an earlier
          // downgrade to vsock:1 (then nothing is owed).
          const reply = sent.find((p) => p.type === PacketType.Sync);
          const replyText =
            reply === undefined ? undefined : new TextDecoder().decode(Uint8Array.from(reply.payload));
          if (replyText !== undefined && replyText !== (v.v === 0 ? "vsock:0" : "vsock:1")) return false;
          if (replyText === "vsock:0") ep.receiveTransfer(sync("vsock:0")); // confirm the downgrade
        } else {
          ep.startSync(9);
          ep.receiveTransfer(sync(v.v === 2 ? "vsock:2:9" : `vsock:${v.v}`));
        }
        if (ep.sync.tag !== "Synced") return false;
        const a = ADDRS[0]!;
        const b = new UsbPacketBuilder(new Uint8Array(64));
        b.write(PacketType.Connect, a);
        const before = ep.connection(a);
        ep.receiveTransfer(b.take()!);
        return before === undefined ? ep.connection(a)?.state === "ConnectingIncoming" : true;
      },
    ),
    { numRuns: 1000 },
  );
});
