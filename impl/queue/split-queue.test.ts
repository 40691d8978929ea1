import { describe, expect, it } from "vitest";
import { GuestMemory } from "../memory/guest-memory.ts";
import type { SpecMemory } from "../../spec/memory.ts";
import * as S from "../../spec/queue.ts";
import type { Result } from "../../spec/result.ts";
import {
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_USED_F_NO_NOTIFY,
  availRingBytes,
  descTableBytes,
  usedRingBytes,
  splitLayoutAt,
} from "../../wire/split.ts";
import { DescriptorChain } from "./descriptor-chain.ts";
import { SplitDriver } from "./split-driver.ts";
import { PopStatus, SplitQueue, type QueueError } from "./split-queue.ts";

const NEXT = VIRTQ_DESC_F_NEXT;
const WRITE = VIRTQ_DESC_F_WRITE;

/** The first byte where two memories differ, as "region:offset", or "same". */
const diff = (a: SpecMemory | GuestMemory, b: SpecMemory | GuestMemory): string => {
  if (a.regions.length !== b.regions.length) return "region count";
  for (let r = 0; r < a.regions.length; r++) {
    const x = a.regions[r]!.bytes;
    const y = b.regions[r]!.bytes;
    if (x.length !== y.length) return `${r}:length`;
    if (Buffer.compare(x, y) === 0) continue;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return `${r}:${i}`;
  }
  return "same";
};

/** The impl's chain in the spec's shape. */
const popped = (c: DescriptorChain): S.SpecPopped => {
  const descriptors: S.SpecDescriptor[] = [];
  for (let ok = c.rewind(); ok; ok = c.advance()) {
    descriptors.push({
      index: c.index,
      addr: c.addrBig(),
      len: c.len,
      flags: c.flags,
      next: c.next,
      indirect: c.indirect,
    });
  }
  return { head: c.headIndex, walk: { descriptors, end: c.end } };
};
const popView = (r: Result<DescriptorChain | null, QueueError>): Result<S.SpecPopped | null, QueueError> =>
  r.ok ? { ok: true, value: r.value === null ? null : popped(r.value) } : r;

/**
 * A queue run on impl and spec side by side: every `step` checks the two results, the two
 * states and the two memories are equal. The driver writes the impl's memory; the spec
 * sees a copy of it before each step.
 */
class Pair {
  readonly m: GuestMemory;
  readonly q: SplitQueue;
  s: S.SpecQueue;
  readonly drv: SplitDriver;

  constructor(size = 16, memSize = 0x10000, base = 0, maxSize = 256) {
    this.m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(memSize) }]);
    this.drv = SplitDriver.at(this.m, size, base);
    this.q = new SplitQueue(maxSize);
    this.s = S.newQueue(maxSize)!;
    const cfg = {
      size,
      ready: true,
      descTable: BigInt(this.drv.layout.descTable),
      availRing: BigInt(this.drv.layout.availRing),
      usedRing: BigInt(this.drv.layout.usedRing),
    };
    this.q.configure(cfg);
    this.s = S.configure(this.s, cfg);
    expect(this.step(() => this.q.initialize(this.m), S.initialize)).toEqual({ ok: true, value: undefined });
  }

  step<A, B>(impl: () => A, spec: (q: S.SpecQueue, m: SpecMemory) => S.Step<B>, view?: (a: A) => unknown): A {
    const before = this.m.toSpecMemory(true);
    const a = impl();
    const st = spec(this.s, before);
    this.s = st.queue;
    expect(view === undefined ? a : view(a)).toEqual(st.result);
    expect(this.q.state()).toEqual(this.s);
    expect(diff(this.m, st.memory)).toBe("same");
    return a;
  }

  pop(): Result<S.SpecPopped | null, QueueError> {
    return popView(this.step(() => this.q.pop(), S.pop, popView));
  }
  popOrEnable(): Result<S.SpecPopped | null, QueueError> {
    return popView(this.step(() => this.q.popOrEnableNotification(), S.popOrEnableNotification, popView));
  }
  undoPop(): void {
    this.step(
      () => this.q.undoPop(),
      (q, m) => ({ queue: S.undoPop(q), memory: m, result: undefined }),
    );
  }
  addUsed(index: number, len: number): Result<void, QueueError> {
    return this.step(
      () => this.q.addUsed(index, len),
      (q, m) => S.addUsed(q, m, index, len),
    );
  }
  publish(): Result<void, QueueError> {
    return this.step(() => this.q.publishUsed(), S.publishUsed);
  }
  prepareKick(honour = false): boolean {
    return this.step(
      () => this.q.prepareKick(honour),
      (q, m) => S.prepareKick(q, m, honour),
    );
  }
  tryEnable(): Result<boolean, QueueError> {
    return this.step(() => this.q.tryEnableNotification(), S.tryEnableNotification);
  }
  len(): number {
    const n = this.q.len();
    expect(n).toBe(S.len(this.s, this.m.toSpecMemory(true)));
    expect(this.q.isEmpty()).toBe(n === 0);
    return n;
  }
  positions(p: { nextAvail?: number; nextUsed?: number; numAdded?: number }): void {
    this.q.setPositions(p);
    this.s = S.setPositions(this.s, p);
  }
  eventIdx(): void {
    this.q.enableNotifSuppression();
    this.s = S.enableNotifSuppression(this.s);
  }
  /** Descriptors 0..n-1 at 0x1000*(i+1), chained as `flags` says; avail gets the heads. */
  chains(flags: readonly number[], heads: readonly number[], publishIdx?: number): void {
    flags.forEach((f, i) =>
      this.drv.writeDescriptor(i, { addr: 0x1000 * (i + 1), len: 0x1000, flags: f, next: i + 1 }),
    );
    for (const h of heads) this.drv.pushAvail(h);
    if (publishIdx === undefined) this.drv.publish();
    else this.drv.setAvailIdx(publishIdx);
  }
}

const walkLen = (r: Result<S.SpecPopped | null, QueueError>): number =>
  r.ok && r.value !== null ? r.value.walk.descriptors.length : -1;

describe("SplitQueue initialize", () => {
  const fresh = (
    cfg: Parameters<SplitQueue["configure"]>[0],
    m: GuestMemory,
  ): [Result<void, QueueError>, Result<void, QueueError>] => {
    const q = new SplitQueue(16);
    q.configure(cfg);
    const specCfg = {
      ...cfg,
      descTable: cfg.descTable === undefined ? undefined : BigInt(cfg.descTable),
      availRing: cfg.availRing === undefined ? undefined : BigInt(cfg.availRing),
      usedRing: cfg.usedRing === undefined ? undefined : BigInt(cfg.usedRing),
    };
    const clean = Object.fromEntries(Object.entries(specCfg).filter(([, v]) => v !== undefined));
    const s = S.initialize(S.configure(S.newQueue(16)!, clean), m.toSpecMemory(true));
    return [q.initialize(m), s.result];
  };
  const m = GuestMemory.of([
    { base: 0, bytes: new Uint8Array(0x10000) },
    { base: 0x10000 + 0x1000, bytes: new Uint8Array(0x1000) },
  ]);
  const good = { size: 16, ready: true, descTable: 0, availRing: 0x100, usedRing: 0x200 };
  const check = (cfg: Parameters<SplitQueue["configure"]>[0], expected: Result<void, QueueError>): void => {
    const [impl, spec] = fresh(cfg, m);
    expect(impl).toEqual(expected);
    expect(spec).toEqual(expected);
  };
  const e = (error: QueueError): Result<void, QueueError> => ({ ok: false, error });

  it("accepts a valid queue [VQ-INIT-READY VQ-INIT-SIZE VQ-INIT-ALIGN VQ-INIT-MEMORY]", () => {
    check(good, { ok: true, value: undefined });
  });
  it("a queue not marked ready is NotReady [VQ-INIT-READY]", () => {
    check({ ...good, ready: false }, e({ _tag: "NotReady" }));
  });
  it("size 0, not a power of two, or above max size is InvalidSize [VQ-INIT-SIZE VQ-SIZE-ZERO]", () => {
    for (const size of [0, 11, 32, 65536, 1.5])
      check({ ...good, size }, e({ _tag: "InvalidSize", size, maxSize: 16 }));
  });
  it("misaligned rings are rejected per ring [VQ-INIT-ALIGN]", () => {
    check({ ...good, descTable: 0x1001 }, e({ _tag: "InvalidDescTableAlign", addr: 0x1001n }));
    check({ ...good, descTable: 0x1008 }, e({ _tag: "InvalidDescTableAlign", addr: 0x1008n }));
    check({ ...good, availRing: 0x1001 }, e({ _tag: "InvalidAvailRingAlign", addr: 0x1001n }));
    check({ ...good, usedRing: 0x1002 }, e({ _tag: "InvalidUsedRingAlign", addr: 0x1002n }));
  });
  it("a ring outside memory, across two regions or past 2^64 is RingOutOfMemory [VQ-INIT-MEMORY]", () => {
    check(
      { ...good, descTable: 0xffff_fff0 },
      e({ _tag: "RingOutOfMemory", ring: "descTable", addr: 0xffff_fff0n, len: 256n }),
    );
    check(
      { ...good, availRing: 0xffff_fffe },
      e({ _tag: "RingOutOfMemory", ring: "availRing", addr: 0xffff_fffen, len: 38n }),
    );
    check(
      { ...good, usedRing: 0xffff_fffc },
      e({ _tag: "RingOutOfMemory", ring: "usedRing", addr: 0xffff_fffcn, len: 134n }),
    );
    // The used ring would end past the first region and into the gap before the second.
    check(
      { ...good, usedRing: 0x10000 - 64 },
      e({ _tag: "RingOutOfMemory", ring: "usedRing", addr: 0xffc0n, len: 134n }),
    );
    check(
      { ...good, descTable: 0xffff_ffff_ffff_fff0n },
      e({ _tag: "RingOutOfMemory", ring: "descTable", addr: 0xffff_ffff_ffff_fff0n, len: 256n }),
    );
    // Wholly inside the second region is fine.
    check({ ...good, usedRing: 0x11000 }, { ok: true, value: undefined });
  });
  it("checks in Firecracker's order [VQ-INIT-ORDER]", () => {
    check({ size: 0, ready: false, descTable: 1, availRing: 1, usedRing: 1 }, e({ _tag: "NotReady" }));
    check(
      { size: 3, ready: true, descTable: 1, availRing: 1, usedRing: 1 },
      e({ _tag: "InvalidSize", size: 3, maxSize: 16 }),
    );
    check(
      { ...good, descTable: 1, availRing: 1, usedRing: 1 },
      e({ _tag: "InvalidDescTableAlign", addr: 1n }),
    );
    check({ ...good, availRing: 1, usedRing: 1 }, e({ _tag: "InvalidAvailRingAlign", addr: 1n }));
    check(
      { ...good, descTable: 0xffff_0000, availRing: 0xffff_0000, usedRing: 0xffff_0000 },
      e({ _tag: "RingOutOfMemory", ring: "descTable", addr: 0xffff_0000n, len: 256n }),
    );
    check(
      { ...good, availRing: 0xffff_0000, usedRing: 0xffff_0000 },
      e({ _tag: "RingOutOfMemory", ring: "availRing", addr: 0xffff_0000n, len: 38n }),
    );
  });
  it("a max size that is not a power of two in 1..=32768 is refused [VQ-MAX-SIZE]", () => {
    for (const bad of [0, 3, 65536, 1.5]) {
      expect(() => new SplitQueue(bad)).toThrow(RangeError);
      expect(S.newQueue(bad)).toBeUndefined();
    }
    expect(new SplitQueue(32768).state()).toEqual(S.newQueue(32768));
  });
});

describe("SplitQueue pop", () => {
  it("pops chains (0,1) and (2,3,4), undoes and re-pops, then enables notifications [VQ-POP-ADVANCE VQ-UNDO-POP VQ-LEN VQ-POP-OR-ENABLE VQ-POP-EMPTY]", () => {
    // Firecracker test_queue_processing.
    const p = new Pair(16);
    p.chains([NEXT, 0, NEXT, NEXT, 0], [0, 2]);
    expect(p.len()).toBe(2);
    expect(walkLen(p.pop())).toBe(2);
    expect(p.len()).toBe(1);
    expect(walkLen(p.pop())).toBe(3);
    expect(p.len()).toBe(0);
    expect(p.pop()).toEqual({ ok: true, value: null });
    p.undoPop();
    expect(p.len()).toBe(1);
    expect(walkLen(p.pop())).toBe(3);
    p.undoPop();
    expect(walkLen(p.popOrEnable())).toBe(3);
    // No suppression: popOrEnable is pop, and avail_event stays untouched.
    expect(p.drv.availEvent()).toBe(0);
    expect(p.popOrEnable()).toEqual({ ok: true, value: null });
    expect(p.drv.availEvent()).toBe(0);
    p.eventIdx();
    expect(p.popOrEnable()).toEqual({ ok: true, value: null });
    expect(p.drv.availEvent()).toBe(2);
  });

  it("avail.idx more than size ahead is InvalidAvailIdx and changes nothing [VQ-POP-AVAIL-IDX]", () => {
    // Firecracker test_invalid_avail_idx_no_notification (which panics; here a typed error).
    const p = new Pair(4, 0x6000);
    p.chains([NEXT, 0, NEXT, 0], [0, 2]);
    expect(p.len()).toBe(2);
    expect(walkLen(p.pop())).toBe(2);
    p.drv.setAvailIdx(6);
    expect(p.len()).toBe(5);
    expect(p.pop()).toEqual({ ok: false, error: { _tag: "InvalidAvailIdx", len: 5, size: 4 } });
    expect(p.q.nextAvail).toBe(1);
    // The driver fixing its idx lets the queue serve the next chain.
    p.drv.setAvailIdx(2);
    expect(walkLen(p.pop())).toBe(2);
  });

  it("InvalidAvailIdx through popOrEnableNotification with suppression [VQ-POP-AVAIL-IDX VQ-POP-OR-ENABLE VQ-TRY-ENABLE-NOTIFICATION]", () => {
    // Firecracker test_invalid_avail_idx_with_notification.
    const p = new Pair(4, 0x6000);
    p.eventIdx();
    p.chains([NEXT, NEXT, NEXT, 0], [0], 6);
    expect(p.popOrEnable()).toEqual({ ok: false, error: { _tag: "InvalidAvailIdx", len: 6, size: 4 } });
    expect(p.q.lastPop).toBe(PopStatus.Error);
  });

  it("a driver decrementing avail.idx (len wraps past size) is InvalidAvailIdx [VQ-POP-AVAIL-IDX VQ-LEN]", () => {
    // rust-vmm test_invalid_avail_idx.
    const p = new Pair(16);
    p.chains([NEXT, 0, NEXT, NEXT, 0, NEXT, 0], [0, 2, 5]);
    for (let i = 0; i < 3; i++) expect(walkLen(p.pop())).toBeGreaterThan(0);
    p.drv.setAvailIdx(1);
    expect(p.len()).toBe(0xfffe);
    expect(p.pop()).toEqual({ ok: false, error: { _tag: "InvalidAvailIdx", len: 0xfffe, size: 16 } });
  });

  it("len up to exactly size is valid across the u16 wrap [VQ-LEN VQ-POP-AVAIL-IDX]", () => {
    // rust-vmm test_iterator_and_avail_idx (PR 196).
    const p = new Pair(2);
    p.chains([0, 0], [0, 1]);
    p.positions({ nextAvail: 0xffff });
    p.drv.setAvailIdx((0xffff + 2) & 0xffff);
    expect(p.len()).toBe(2);
    expect(walkLen(p.pop())).toBe(1);
    p.undoPop();
    p.drv.setAvailIdx((0xffff + 3) & 0xffff);
    expect(p.pop()).toEqual({ ok: false, error: { _tag: "InvalidAvailIdx", len: 3, size: 2 } });
  });

  it("an invalid head gives none and does not advance; the queue is not poisoned for a valid head [VQ-POP-HEAD CHAIN-CHECKED-NEW]", () => {
    const p = new Pair(8);
    p.drv.writeDescriptor(0, { addr: 0x1000, len: 1, flags: NEXT, next: 8 });
    p.drv.pushAvail(0);
    p.drv.publish();
    expect(p.pop()).toEqual({ ok: true, value: null });
    expect(p.q.lastPop).toBe(PopStatus.InvalidHead);
    expect(p.q.nextAvail).toBe(0);
    // A head index >= size too.
    p.drv.writeAvailRing(0, 9);
    expect(p.pop()).toEqual({ ok: true, value: null });
    expect(p.q.nextAvail).toBe(0);
    // The driver rewriting the slot with a valid head is served.
    p.drv.writeDescriptor(1, { addr: 0x2000, len: 2, flags: 0, next: 0 });
    p.drv.writeAvailRing(0, 1);
    const r = p.pop();
    expect(r.ok && r.value?.head).toBe(1);
  });

  it("popInto into a bound chain with no recorder (the short path) refuses a head of exactly size, and the chain then holds the refused head [VQ-POP-HEAD CHAIN-CHECKED-NEW]", () => {
    const p = new Pair(8);
    const chain = new DescriptorChain(p.m);
    p.drv.writeDescriptor(7, { addr: 0x1000, len: 3, flags: 0, next: 0 });
    p.drv.writeDescriptor(8 % 8, { addr: 0x2000, len: 5, flags: 0, next: 0 });
    p.drv.pushAvail(7);
    p.drv.publish();
    expect(p.q.popInto(chain)).toBe(true); // binds the chain: later pops take the short path
    expect(chain.headIndex).toBe(7);
    // Entry 8 of a size-8 table lies past its end (in memory here): the head must be refused.
    p.drv.pushAvail(8);
    p.drv.publish();
    expect(p.m.recorder).toBeNull();
    expect(p.q.popInto(chain)).toBe(false);
    expect(p.q.lastPop).toBe(PopStatus.InvalidHead);
    expect(p.q.nextAvail).toBe(1);
    // As loadBound leaves it: the refused head, and a walk that yields nothing.
    expect(chain.headIndex).toBe(8);
    expect(chain.rewind()).toBe(false);
    // Size - 1 is still served on the short path.
    p.drv.writeAvailRing(1, 7);
    expect(p.q.popInto(chain)).toBe(true);
    expect(chain.rewind() && chain.len).toBe(3);
  });

  it("popped chains that loop, overflow or use indirect tables walk as the spec's walkChain [CHAIN-TTL CHAIN-LEN-U32 CHAIN-INDIRECT VQ-POP-ADVANCE]", () => {
    for (const size of [1, 2, 8]) {
      const p = new Pair(size);
      p.drv.writeDescriptor(0, { addr: 0x1000, len: 0x8000_0000, flags: NEXT, next: 0 });
      p.drv.pushAvail(0);
      p.drv.publish();
      const r = p.pop();
      const end = r.ok && r.value !== null ? r.value.walk.end : undefined;
      expect(end?._tag).toBe(size === 1 ? "ChainTtlExpired" : "DescriptorChainOverflow");
    }
    const p = new Pair(8);
    // Entries 6 and 7 loop (the driver's allocator hands out 0 first).
    p.drv.writeDescriptor(6, { addr: 0x1000, len: 1, flags: NEXT, next: 7 });
    p.drv.writeDescriptor(7, { addr: 0x2000, len: 1, flags: NEXT, next: 6 });
    p.drv.pushAvail(6);
    p.drv.addChain(
      [
        { addr: 0x3000, len: 3 },
        { addr: 0x4000, len: 4, write: true },
      ],
      { indirectTable: 0x5003 },
    );
    expect(walkLen(p.pop())).toBe(8);
    expect(walkLen(p.pop())).toBe(2);
    // Walking a popped chain twice gives the same descriptors (rewind re-reads from the head).
    const chain = new DescriptorChain(p.m);
    p.q.undoPop();
    expect(p.q.popInto(chain)).toBe(true);
    const first = popped(chain);
    expect(popped(chain)).toEqual(first);
  });

  it("popInto reuses one chain object; lastPop says why nothing was popped [VQ-POP-EMPTY VQ-POP-ADVANCE]", () => {
    const p = new Pair(8);
    const chain = new DescriptorChain(p.m);
    expect(p.q.popInto(chain)).toBe(false);
    expect(p.q.lastPop).toBe(PopStatus.Empty);
    const a = p.drv.addChain([{ addr: 0x1000, len: 10 }])!;
    const b = p.drv.addChain([
      { addr: 0x2000, len: 20 },
      { addr: 0x3000, len: 30, write: true },
    ])!;
    expect(p.q.popInto(chain)).toBe(true);
    expect([chain.headIndex, chain.len]).toEqual([a, 10]);
    expect(p.q.popInto(chain)).toBe(true);
    expect(chain.headIndex).toBe(b);
    expect(popped(chain).walk.descriptors.map((d) => d.len)).toEqual([20, 30]);
    expect(p.q.popInto(chain)).toBe(false);
    expect(p.q.lastPop).toBe(PopStatus.Empty);
  });

  it("a popped one-descriptor chain answers every cursor field, and a rewind after its walk reads guest memory again, as for any chain [VQ-POP-ADVANCE CHAIN-DESC-LAYOUT]", () => {
    const p = new Pair(8);
    const chain = new DescriptorChain(p.m);
    const h = p.drv.addChain([{ addr: 0x1000, len: 10, write: true }])!;
    expect(p.q.popInto(chain)).toBe(true);
    const fields = (): unknown[] => [
      chain.headIndex,
      chain.index,
      chain.addr,
      chain.len,
      chain.isWriteOnly(),
      chain.indirect,
      chain.hasNext(),
      chain.totalLength,
      chain.end,
    ];
    expect(fields()).toEqual([h, h, 0x1000, 10, true, false, false, 10, null]);
    expect(chain.rewind()).toBe(true);
    expect(fields()).toEqual([h, h, 0x1000, 10, true, false, false, 10, null]);
    expect(chain.advance()).toBe(false);
    expect([chain.totalLength, chain.end, chain.advance()]).toEqual([10, null, false]);
    // The guest rewrites the descriptor; the next walk sees it (the old code re-read too).
    p.drv.writeDescriptor(h, { addr: 0x2000, len: 20, flags: 0, next: 0 });
    expect(chain.rewind()).toBe(true);
    expect(fields()).toEqual([h, h, 0x2000, 20, false, false, false, 20, null]);
    expect(chain.advance()).toBe(false);
    expect(chain.rewind()).toBe(true);
    expect(chain.len).toBe(20);
  });

  it("chains (0,1), (2,3,4), (5,6) with readable and writable parts [VQ-POP-ADVANCE CHAIN-RW-SPLIT]", () => {
    // rust-vmm test_descriptor_and_iterator.
    const p = new Pair(16);
    p.chains([NEXT, 0, NEXT | WRITE, NEXT, WRITE, NEXT | WRITE, 0], [0, 2, 5]);
    const kinds = (r: Result<S.SpecPopped | null, QueueError>): [number, number] => {
      const s = S.splitChain(r.ok && r.value !== null ? r.value.walk : { descriptors: [], end: null });
      return [s.readable.length, s.writable.length];
    };
    expect(kinds(p.pop())).toEqual([2, 0]);
    expect(kinds(p.pop())).toEqual([1, 2]);
    expect(kinds(p.pop())).toEqual([1, 1]);
  });
});

describe("SplitQueue used ring", () => {
  it("addUsed rejects index >= size without writing, and publishing is its own step [VQ-ADD-USED-INDEX VQ-ADD-USED VQ-PUBLISH-USED]", () => {
    // Firecracker test_add_used; rust-vmm test_add_used (used.idx now published separately).
    const p = new Pair(16);
    expect(p.drv.usedIdx()).toBe(0);
    expect(p.addUsed(16, 0x1000)).toEqual({ ok: false, error: { _tag: "DescIndexOutOfBounds", index: 16 } });
    expect(p.addUsed(-1, 0x1000)).toEqual({ ok: false, error: { _tag: "DescIndexOutOfBounds", index: -1 } });
    expect(p.addUsed(1.5, 0x1000)).toEqual({
      ok: false,
      error: { _tag: "DescIndexOutOfBounds", index: 1.5 },
    });
    expect(p.q.nextUsed).toBe(0);
    expect(p.addUsed(1, 0x1000)).toEqual({ ok: true, value: undefined });
    expect([p.q.nextUsed, p.q.numAdded, p.drv.usedIdx()]).toEqual([1, 1, 0]);
    expect(p.drv.readUsed(0)).toEqual({ id: 1, len: 0x1000 });
    expect(p.publish()).toEqual({ ok: true, value: undefined });
    expect(p.drv.usedIdx()).toBe(1);
  });

  it("used entries wrap around the ring and next_used wraps at 2^16 [VQ-ADD-USED VQ-PUBLISH-USED]", () => {
    const p = new Pair(4);
    p.positions({ nextUsed: 0xfffe });
    for (let i = 0; i < 4; i++) expect(p.addUsed(i, 100 + i).ok).toBe(true);
    expect(p.q.nextUsed).toBe(2);
    p.publish();
    expect(p.drv.usedIdx()).toBe(2);
    expect([0, 1, 2, 3].map((s) => p.drv.readUsed(s).id)).toEqual([2, 3, 0, 1]);
  });

  it("a driver-side reap sees what the device completed [VQ-ADD-USED VQ-PUBLISH-USED]", () => {
    const p = new Pair(8);
    const heads = [1, 2, 3].map((n) => p.drv.addChain([{ addr: 0x1000 * n, len: n, write: true }])!);
    const chain = new DescriptorChain(p.m);
    while (p.q.popInto(chain)) p.q.addUsed(chain.headIndex, chain.len);
    expect(p.drv.reapUsed()).toEqual([]);
    p.q.publishUsed();
    expect(p.drv.reapUsed()).toEqual(heads.map((id, i) => ({ id, len: i + 1 })));
    expect(p.drv.freeDescriptors).toBe(8);
  });
});

describe("SplitQueue notifications", () => {
  it("used_event is read from the avail ring [VQ-EVENT-FIELDS]", () => {
    // Firecracker test_used_event.
    const p = new Pair(16);
    const get = (): Result<number, QueueError> => {
      const r = p.q.usedEvent();
      expect(r).toEqual(S.usedEvent(p.s, p.m.toSpecMemory(true)));
      return r;
    };
    expect(get()).toEqual({ ok: true, value: 0 });
    p.drv.setUsedEvent(10);
    expect(get()).toEqual({ ok: true, value: 10 });
    p.drv.setUsedEvent(0xffff);
    expect(get()).toEqual({ ok: true, value: 0xffff });
  });

  it("avail.ring entries are read for slot < size only [VQ-LAYOUT VQ-INACTIVE]", () => {
    const p = new Pair(4);
    [7, 8, 9, 10].forEach((h, slot) => p.drv.writeAvailRing(slot, h));
    for (const slot of [0, 3, 4, -1, 1.5]) {
      const want = slot >>> 0 === slot && slot < 4 ? 7 + slot : -1;
      expect(p.q.readAvailRing(slot)).toBe(want);
      expect(S.readAvailRing(p.s, p.m.toSpecMemory(true), slot)).toBe(want);
    }
    p.q.reset();
    expect(p.q.readAvailRing(0)).toBe(-1);
  });

  it("avail_event written then read back [VQ-EVENT-FIELDS]", () => {
    // Firecracker test_set_used_ring_avail_event.
    const p = new Pair(16);
    for (const v of [10, 0xffff]) {
      p.step(
        () => p.q.setAvailEvent(v),
        (q, m) => S.setAvailEvent(q, m, v),
      );
      expect(p.drv.availEvent()).toBe(v);
      expect(p.q.availEvent()).toEqual({ ok: true, value: v });
      expect(S.availEvent(p.s, p.m.toSpecMemory(true))).toEqual({ ok: true, value: v });
    }
  });

  it("prepareKick without suppression is always true; with it, vring_need_event over the batch [VQ-PREPARE-KICK VQ-EVENT-IDX]", () => {
    // Firecracker test_needs_kick.
    const p = new Pair(16);
    for (let used = 0; used < 10; used++)
      for (let ev = 0; ev < 10; ev++)
        for (let added = 0; added < 10; added++) {
          p.positions({ nextUsed: used, numAdded: added });
          p.drv.setUsedEvent(ev);
          expect(p.prepareKick()).toBe(true);
        }
    p.eventIdx();
    const kick = (nextUsed: number, event: number, numAdded: number): boolean => {
      p.positions({ nextUsed, numAdded });
      p.drv.setUsedEvent(event);
      const r = p.prepareKick();
      expect(p.q.numAdded).toBe(0);
      return r;
    };
    expect(kick(10, 6, 5)).toBe(true); // old < used_event < new
    expect(kick(10, 6, 4)).toBe(true); // old == used_event < new
    expect(kick(10, 6, 3)).toBe(false); // used_event < old < new
  });

  it("needs_notification across the u16 wrap [VQ-PREPARE-KICK]", () => {
    // rust-vmm test_needs_notification.
    const p = new Pair(16);
    p.drv.setUsedEvent(4);
    p.eventIdx();
    const wrap = 0x10000;
    for (let i = 0; i < wrap + 12; i += i < 20 || i > wrap - 4 ? 1 : 997) {
      p.positions({ nextUsed: i, numAdded: 1 });
      expect([p.prepareKick(), i]).toEqual([i === 5 || i === 5 + wrap, i]);
    }
    p.drv.setUsedEvent(8);
    expect(p.prepareKick()).toBe(false);
    p.drv.setUsedEvent(15);
    p.positions({ numAdded: 1 });
    expect(p.prepareKick()).toBe(false);
    p.positions({ nextUsed: 15, numAdded: 1 });
    expect(p.prepareKick()).toBe(false);
    p.positions({ nextUsed: 16, numAdded: 1 });
    expect(p.prepareKick()).toBe(true);
    expect(p.prepareKick()).toBe(false);
    p.drv.setUsedEvent(0xffff - 3);
    p.positions({ nextUsed: 0xffff - 2, numAdded: 1 });
    expect(p.prepareKick()).toBe(true);
  });

  it("tryEnableNotification: true without suppression; with it false while chains wait, then writes avail_event [VQ-TRY-ENABLE-NOTIFICATION]", () => {
    // Firecracker test_try_enable_notification.
    const p = new Pair(16);
    p.drv.writeDescriptor(0, { addr: 0x1000, len: 0x1000, flags: 0, next: 0 });
    p.drv.pushAvail(0);
    p.drv.publish();
    expect(p.len()).toBe(1);
    expect(p.tryEnable()).toEqual({ ok: true, value: true });
    expect(p.drv.availEvent()).toBe(0);
    p.eventIdx();
    expect(p.tryEnable()).toEqual({ ok: true, value: false });
    expect(p.drv.availEvent()).toBe(0);
    expect(walkLen(p.pop())).toBe(1);
    expect(p.tryEnable()).toEqual({ ok: true, value: true });
    expect(p.drv.availEvent()).toBe(1);
    p.drv.setAvailIdx(20);
    expect(p.tryEnable()).toEqual({ ok: false, error: { _tag: "InvalidAvailIdx", len: 19, size: 16 } });
  });

  it("enable/disable notification: used.flags NO_NOTIFY without EVENT_IDX, avail_event with it [VQ-NO-NOTIFY]", () => {
    // rust-vmm test_enable_disable_notification.
    const p = new Pair(16);
    const enable = (): Result<boolean, QueueError> =>
      p.step(() => p.q.enableNotification(), S.enableNotification);
    const disable = (): Result<void, QueueError> =>
      p.step(() => p.q.disableNotification(), S.disableNotification);
    expect(enable()).toEqual({ ok: true, value: false });
    expect(p.drv.usedFlags()).toBe(0);
    disable();
    expect(p.drv.usedFlags()).toBe(VRING_USED_F_NO_NOTIFY);
    // Firecracker's tryEnableNotification (no EVENT_IDX) also clears the flag.
    expect(p.tryEnable()).toEqual({ ok: true, value: true });
    expect(p.drv.usedFlags()).toBe(0);
    disable();
    expect(enable()).toEqual({ ok: true, value: false });
    expect(p.drv.usedFlags()).toBe(0);
    p.eventIdx();
    p.drv.setAvailIdx(2);
    expect(enable()).toEqual({ ok: true, value: true });
    p.positions({ nextAvail: 2 });
    expect(enable()).toEqual({ ok: true, value: false });
    expect(p.drv.availEvent()).toBe(2);
    p.drv.setAvailIdx(8);
    expect(enable()).toEqual({ ok: true, value: true });
    p.positions({ nextAvail: 8 });
    expect(enable()).toEqual({ ok: true, value: false });
    expect(p.drv.availEvent()).toBe(8);
    // With EVENT_IDX, disabling writes nothing.
    const flagsBefore = p.drv.usedFlags();
    disable();
    expect(p.drv.usedFlags()).toBe(flagsBefore);
  });

  it("consumes chains with notifications re-enabled in a loop [VQ-NO-NOTIFY VQ-POP-ADVANCE VQ-ADD-USED]", () => {
    // rust-vmm test_consume_chains_with_notif.
    const p = new Pair(16);
    const ends = new Set([1, 4, 6, 8, 12]);
    p.chains(
      Array.from({ length: 13 }, (_, i) => (ends.has(i) ? 0 : NEXT)),
      [0, 2, 5, 7, 9],
      2,
    );
    const chain = new DescriptorChain(p.m);
    const drain = (afterBatch?: () => void): number => {
      let rounds = 0;
      for (;;) {
        rounds++;
        p.q.disableNotification();
        while (p.q.popInto(chain)) p.q.addUsed(chain.headIndex, 0);
        afterBatch?.();
        const more = p.q.enableNotification();
        if (!(more.ok && more.value)) return rounds;
      }
    };
    expect(drain()).toBe(1);
    expect([p.q.nextAvail, p.q.nextUsed]).toEqual([2, 2]);
    p.drv.setAvailIdx(3);
    expect(drain(() => p.drv.setAvailIdx(4))).toBe(2);
    expect([p.q.nextAvail, p.q.nextUsed]).toEqual([4, 4]);
    p.drv.setAvailIdx(7);
    drain();
    expect([p.q.nextAvail, p.q.nextUsed]).toEqual([7, 7]);
  });

  it("without EVENT_IDX, prepareKick(true) honours VRING_AVAIL_F_NO_INTERRUPT [VQ-NO-INTERRUPT]", () => {
    const p = new Pair(16);
    expect(p.prepareKick(true)).toBe(true);
    p.drv.setAvailFlags(VRING_AVAIL_F_NO_INTERRUPT);
    expect(p.prepareKick(true)).toBe(false);
    expect(p.prepareKick()).toBe(true);
    // With EVENT_IDX the flag is ignored.
    p.eventIdx();
    p.positions({ nextUsed: 1, numAdded: 1 });
    p.drv.setUsedEvent(0);
    expect(p.prepareKick(true)).toBe(true);
  });
});

describe("SplitQueue reset and inactive queues", () => {
  it("reset restores a new queue's state [VQ-RESET]", () => {
    // rust-vmm test_reset_queue.
    const p = new Pair(16, 0x10000, 0, 16);
    p.q.configure({ size: 8, descTable: 0x5000 });
    p.eventIdx();
    p.positions({ nextAvail: 2, nextUsed: 4, numAdded: 15 });
    p.q.reset();
    p.s = S.reset(p.s);
    expect(p.q.state()).toEqual(p.s);
    expect(p.q.state()).toEqual({
      maxSize: 16,
      size: 16,
      ready: false,
      descTable: 0n,
      availRing: 0n,
      usedRing: 0n,
      eventIdx: false,
      active: false,
      nextAvail: 0,
      nextUsed: 0,
      numAdded: 0,
    });
  });

  it("after reset nothing reads the old rings: pop is NotReady until initialized again [VQ-RESET VQ-INACTIVE]", () => {
    // rust-vmm PR 225.
    const p = new Pair(8);
    p.drv.addChain([{ addr: 0x1000, len: 1 }]);
    p.q.reset();
    p.s = S.reset(p.s);
    const seen: number[] = [];
    p.m.recorder = (addr) => seen.push(addr);
    const notReady = { ok: false, error: { _tag: "NotReady" } };
    expect(p.pop()).toEqual(notReady);
    expect(p.q.lastPop).toBe(PopStatus.Error);
    expect(p.popOrEnable()).toEqual(notReady);
    expect(p.addUsed(0, 1)).toEqual(notReady);
    expect(p.publish()).toEqual(notReady);
    expect(p.tryEnable()).toEqual(notReady);
    expect(p.prepareKick()).toBe(false);
    expect(p.len()).toBe(0);
    expect(p.q.usedEvent()).toEqual(notReady);
    expect(p.q.setAvailEvent(1)).toEqual(notReady);
    expect(p.q.enableNotification()).toEqual(notReady);
    expect(p.q.disableNotification()).toEqual(notReady);
    expect(seen).toEqual([]);
    // Re-configured and initialized, it serves the chain again.
    p.m.recorder = null;
    const cfg = {
      size: 8,
      ready: true,
      ...Object.fromEntries(Object.entries(p.drv.layout).map(([k, v]) => [k, BigInt(v)])),
    };
    p.q.configure(cfg);
    p.s = S.configure(p.s, cfg);
    p.step(() => p.q.initialize(p.m), S.initialize);
    expect(walkLen(p.pop())).toBe(1);
  });

  it("a size-0 queue never divides by zero: initialize refuses it and every operation is NotReady [VQ-SIZE-ZERO VQ-INACTIVE]", () => {
    // rust-vmm PR 173.
    const m = GuestMemory.of([{ base: 0, bytes: new Uint8Array(0x1000) }]);
    const q = new SplitQueue(16);
    q.configure({ size: 0, ready: true, descTable: 0, availRing: 0x100, usedRing: 0x200 });
    expect(q.initialize(m)).toEqual({ ok: false, error: { _tag: "InvalidSize", size: 0, maxSize: 16 } });
    const chain = new DescriptorChain(m);
    expect(q.popInto(chain)).toBe(false);
    expect(q.lastError).toEqual({ _tag: "NotReady" });
    expect(q.addUsed(0, 0).ok).toBe(false);
    expect(q.len()).toBe(0);
    expect(q.prepareKick()).toBe(false);
  });

  it("changing the configuration deactivates the queue until initialize [VQ-INACTIVE]", () => {
    const p = new Pair(8);
    p.drv.addChain([{ addr: 0x1000, len: 1 }]);
    p.q.configure({ usedRing: 0x9000 });
    p.s = S.configure(p.s, { usedRing: 0x9000n });
    expect(p.pop()).toEqual({ ok: false, error: { _tag: "NotReady" } });
  });

  it("every ring access of an active queue lies inside its rings or the popped chain's entries [VQ-INIT-MEMORY VQ-LAYOUT]", () => {
    const size = 8;
    const p = new Pair(size, 0x10000, 0x100);
    p.eventIdx();
    const { descTable, availRing, usedRing } = splitLayoutAt(0x100, size);
    const inside = (a: number, l: number, start: number, len: number): boolean =>
      a >= start && a + l <= start + len;
    const bad: [number, number][] = [];
    p.drv.addChain([
      { addr: 0x1000, len: 1 },
      { addr: 0x2000, len: 2, write: true },
    ]);
    p.m.recorder = (a, l) => {
      if (
        !inside(a, l, descTable, descTableBytes(size)) &&
        !inside(a, l, availRing, availRingBytes(size)) &&
        !inside(a, l, usedRing, usedRingBytes(size))
      )
        bad.push([a, l]);
    };
    const chain = new DescriptorChain(p.m);
    let n = 0;
    while (p.q.popOrEnableNotificationInto(chain)) {
      for (let ok = chain.rewind(); ok; ok = chain.advance()) n++;
      p.q.addUsed(chain.headIndex, 0);
    }
    p.q.publishUsed();
    p.q.prepareKick();
    p.q.tryEnableNotification();
    p.m.recorder = null;
    expect(n).toBe(2);
    expect(bad).toEqual([]);
  });
});
