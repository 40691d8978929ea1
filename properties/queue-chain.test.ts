/**
 * Descriptor chains: Firecracker's `verify_checked_new` harness over far larger bounds
 * (tables of up to 32768 entries anywhere in, across or outside memory of several regions,
 * any entry contents), and the chain walk refining the reference model.
 */
import fc from "fast-check";
import { describe } from "vitest";
import { DescriptorChain, newChainLengths } from "../impl/queue/descriptor-chain.ts";
import { checkedNew as specCheckedNew, splitChain, walkChain } from "../spec/queue.ts";
import type { GuestMemory } from "../impl/memory/guest-memory.ts";
import {
  DESC_SIZE,
  DESC_TABLE_ALIGN,
  MAX_CHAIN_BYTES,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  descOffset,
  decodeDescriptor,
  descTableBytes,
  encodeDescriptor,
} from "../wire/split.ts";
import { property } from "./harness.ts";
import type { RawDescriptor } from "./arbitraries/queue.ts";
import { buildMemories, inLayout } from "./arbitraries/memory.ts";
import { queuePlacementArb, ringAddressArb, rawDescriptorArb } from "./arbitraries/queue.ts";
import { same, show, walkImpl } from "./arbitraries/chain.ts";

const fail = (what: string): never => {
  throw new Error(what);
};

/**
 * A queue placement whose descriptor table is either where the queue put it or anywhere a
 * hostile driver may point it; memory contents random; and a head index (mostly < size).
 */
const tableCaseArb = queuePlacementArb().chain((q) =>
  fc.record({
    q: fc.constant(q),
    table: fc.oneof(
      { weight: 3, arbitrary: fc.constant(BigInt(q.descTable)) },
      { weight: 2, arbitrary: ringAddressArb(q.layout, descTableBytes(q.size), DESC_TABLE_ALIGN) },
    ),
    seed: fc.integer(),
    index: fc.oneof({ weight: 4, arbitrary: fc.nat(q.size - 1) }, { weight: 1, arbitrary: fc.nat(0xffff) }),
    // Entries to plant in the table (over the random bytes) so that well-formed heads are common.
    planted: fc.array(fc.tuple(fc.nat(q.size - 1), rawDescriptorArb(q.size, q.data)), { maxLength: 8 }),
  }),
);

const plant = (
  impl: GuestMemory,
  table: bigint,
  planted: readonly (readonly [number, RawDescriptor])[],
): void => {
  for (const [i, d] of planted) {
    const at = table + BigInt(descOffset(i));
    // Only where the entry lies in memory: a planted entry outside it is simply not there.
    impl.tryWrite(at, encodeDescriptor(d));
  }
};

describe("descriptor chain properties", () => {
  property(
    "verifyCheckedNew",
    ["CHAIN-CHECKED-NEW", "CHAIN-DESC-LAYOUT", "CHAIN-ADDR-U64"],
    fc.property(tableCaseArb, ({ q, table, seed, index, planted }) => {
      const { impl } = buildMemories(q.layout, seed);
      plant(impl, table, planted);
      const spec = impl.toSpecMemory(true);
      const chain = DescriptorChain.checkedNew(impl, Number(table), q.size, index);
      const model = specCheckedNew(spec, table, q.size, index);
      if ((chain === undefined) !== (model === undefined))
        fail(`impl ${chain === undefined ? "refused" : "accepted"}, spec disagrees`);
      if (index >= q.size) {
        if (chain !== undefined) fail(`index ${index} >= size ${q.size} accepted`);
        return;
      }
      const entry = table + BigInt(descOffset(index));
      const inside = inLayout(q.layout, entry, BigInt(DESC_SIZE));
      if (!inside) {
        if (chain !== undefined) fail(`entry at ${entry} is outside memory, yet accepted`);
        return;
      }
      // The entry is in memory: the head is refused exactly when NEXT (without INDIRECT) points out of range.
      const raw = impl.tryRead(entry, DESC_SIZE);
      if (!raw.ok) return fail("entry in layout but unreadable");
      const d = decodeDescriptor(raw.value);
      const { flags, next } = d;
      const refused =
        (flags & VIRTQ_DESC_F_INDIRECT) === 0 && (flags & VIRTQ_DESC_F_NEXT) !== 0 && next >= q.size;
      if ((chain === undefined) !== refused)
        fail(`flags ${flags} next ${next} size ${q.size}: refused=${chain === undefined}`);
      if (chain === undefined) return;
      // A returned head is valid: it is the entry asked for, and walks as the model says.
      if (chain.headIndex !== index) fail(`headIndex ${chain.headIndex} != ${index}`);
      if ((flags & VIRTQ_DESC_F_INDIRECT) === 0) {
        if (chain.index !== index || chain.addrBig() !== d.addr || chain.len !== d.len)
          fail("the cursor is not on the head entry");
        if (chain.flags !== flags || chain.next !== next) fail("head flags or next misread");
      }
      const walked = walkImpl(chain);
      const want = walkChain(spec, table, q.size, index);
      if (!same(walked, want)) fail(`walk ${show(walked)} != spec ${show(want)}`);
      // Walking again gives the same (the chain is a rewindable cursor).
      if (!same(walkImpl(chain), want)) fail("second walk differs");
    }),
    { numRuns: 400 },
  );

  property(
    "chainWalkRefinesSpec",
    [
      "CHAIN-RW-SPLIT",
      "CHAIN-TTL",
      "CHAIN-NEXT-RANGE",
      "CHAIN-MEMORY",
      "CHAIN-INDIRECT",
      "CHAIN-INDIRECT-LEN",
      "CHAIN-INDIRECT-NESTED",
      "CHAIN-LEN-U32",
      "CHAIN-ADDR-U64",
    ],
    fc.property(
      queuePlacementArb({ maxSize: 256 }).chain((q) =>
        fc.record({
          q: fc.constant(q),
          seed: fc.integer(),
          head: fc.nat(q.size - 1),
          // Dense hostile tables: every entry planted, some pointing to indirect tables in data regions.
          planted: fc.array(fc.tuple(fc.nat(q.size - 1), rawDescriptorArb(q.size, q.data)), {
            maxLength: 24,
          }),
          indirect: fc.array(
            fc.tuple(
              fc.nat(q.data.length - 1),
              fc.nat(4096),
              fc.array(rawDescriptorArb(8, q.data), { maxLength: 8 }),
            ),
            { maxLength: 3 },
          ),
          // The bound (fast) walk: another head loaded first, then rounds of rewind, `advances`
          // steps, the memory recorder switched (the fast and the general walk), `more` steps.
          other: fc.nat(q.size - 1),
          // A linked run from the head (a loop when an index repeats), some lens near 2^32.
          links: fc.array(
            fc.tuple(
              fc.oneof(fc.nat(q.size - 1), fc.constant(q.size)),
              fc.oneof(fc.nat(4096), fc.constant(0xffff_fff0)),
            ),
            {
              maxLength: 8,
            },
          ),
          rounds: fc.array(fc.record({ advances: fc.nat(4), recorder: fc.boolean(), more: fc.nat(2) }), {
            minLength: 1,
            maxLength: 4,
          }),
        }),
      ),
      ({ q, seed, head, planted, indirect, other, rounds, links }) => {
        const { impl } = buildMemories(q.layout, seed);
        plant(impl, BigInt(q.descTable), planted);
        const path = [head, ...links.map(([i]) => i)];
        const run = links.map(([next, len], k): readonly [number, RawDescriptor] => {
          const d = { addr: BigInt(q.data[0]!.base), len, flags: VIRTQ_DESC_F_NEXT, next };
          return [path[k]!, d];
        });
        plant(impl, BigInt(q.descTable), run);
        for (const [r, off, entries] of indirect) {
          const region = q.data[r]!;
          const at = BigInt(region.base + (off % region.size));
          entries.forEach((d, i) => impl.tryWrite(at + BigInt(descOffset(i)), encodeDescriptor(d)));
          // Point a planted entry (or the head) at it.
          impl.tryWrite(
            BigInt(q.descTable + descOffset(head)),
            encodeDescriptor({
              addr: at,
              len: DESC_SIZE * Math.max(1, entries.length),
              flags: VIRTQ_DESC_F_INDIRECT,
              next: 0,
            }),
          );
        }
        const spec = impl.toSpecMemory(true);
        const chain = DescriptorChain.checkedNew(impl, q.descTable, q.size, head);
        const model = specCheckedNew(spec, BigInt(q.descTable), q.size, head);
        if ((chain === undefined) !== (model === undefined)) fail("checkedNew disagrees");
        if (chain === undefined) return;
        const walked = walkImpl(chain);
        const want = walkChain(spec, BigInt(q.descTable), q.size, head);
        if (!same(walked, want)) fail(`walk ${show(walked)} != spec ${show(want)}`);
        // CHAIN-TTL, CHAIN-LEN-U32 stated directly, not only through the model.
        const perTable = new Map<boolean, number>();
        for (const d of walked.descriptors) perTable.set(d.indirect, (perTable.get(d.indirect) ?? 0) + 1);
        if ((perTable.get(false) ?? 0) > q.size) fail("more descriptors than the queue size");
        if ((perTable.get(true) ?? 0) > 0xffff) fail("more indirect descriptors than 65535");
        if (walked.descriptors.reduce((a, d) => a + d.len, 0) > MAX_CHAIN_BYTES)
          fail("chain longer than 2^32-1");
        if (chain.totalLength !== walked.descriptors.reduce((a, d) => a + d.len, 0))
          fail("totalLength wrong");
        // CHAIN-RW-SPLIT: the readable / writable views and byte counts agree with the model's split.
        const split = splitChain(want);
        const lengths = chain.lengths(newChainLengths());
        const counts = [
          split.readableBytes,
          split.writableBytes,
          split.readable.length,
          split.writable.length,
        ];
        const got = [
          lengths.readableBytes,
          lengths.writableBytes,
          lengths.readableCount,
          lengths.writableCount,
        ];
        if (!same(got, counts)) fail(`lengths ${show(got)}, spec ${show(counts)}`);
        const readable: number[] = [];
        for (let ok = chain.rewindReadable(); ok; ok = chain.advanceReadable()) readable.push(chain.index);
        const writable: number[] = [];
        for (let ok = chain.rewindWritable(); ok; ok = chain.advanceWritable()) {
          if (!chain.isWriteOnly()) fail("a readable descriptor in the writable view");
          writable.push(chain.index);
        }
        if (
          !same(
            readable,
            split.readable.map((d) => d.index),
          ) ||
          !same(
            writable,
            split.writable.map((d) => d.index),
          )
        )
          fail("readable/writable views differ from the model's split");
        // The same chain through the table bound as SplitQueue binds it (VQ-INIT-MEMORY).
        const t = impl.tryLocate(BigInt(q.descTable), BigInt(descTableBytes(q.size)), false);
        if (!t.ok) return fail("the queue's table is outside memory");
        const bound = new DescriptorChain(impl);
        bound.bind(impl, q.descTable, q.size, t.value.region.view, t.value.offset, {});
        for (let ok = bound.loadBound(other), k = 0; ok && k < 3; k++) ok = bound.advance();
        if (!bound.loadBound(head)) fail("loadBound refused a head checkedNew took");
        const want3 = want.descriptors.map((d) => [d.index, d.len, d.indirect]);
        try {
          for (const { advances, recorder, more } of rounds) {
            let n = 0;
            let ok = bound.rewind();
            for (; ok && n < advances; n++) ok = bound.advance();
            impl.recorder = recorder ? () => {} : null;
            const rest: unknown[] = [];
            for (; ok && rest.length <= more; ok = bound.advance()) {
              rest.push([bound.index, bound.len, bound.indirect]);
            }
            // Ended: the rest and the end as the model's; else still on the model's next descriptor.
            const now = ok ? [bound.index, bound.len, bound.indirect] : bound.end;
            const m = n + rest.length;
            if (!same([rest, now], [want3.slice(n, m), ok ? want3[m] : want.end]))
              fail(`bound walk at ${n}: ${show([rest, now])} != spec ${show(want)}`);
          }
        } finally {
          impl.recorder = null;
        }
      },
    ),
    { numRuns: 400 },
  );
});
