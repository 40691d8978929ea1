/**
 * Edge cases for the small net parts, written for `npm run mutate net`: headers at every
 * offset and at the buffer's edge, every feature bit alone and with each dependency, the
 * header length for each feature combination, and every config-space window, each checked
 * against the spec model (spec/net.ts).
 */
import { describe, expect, it } from "vitest";
import * as spec from "../../spec/net.ts";
import { NetConfigSpace } from "./config.ts";
import { checkAck, hasFeature, netHeaderLength, offeredFeatures } from "./features.ts";
import { decodeNetHeader, encodeNetHeader, writeRxHeader, type NetHeader } from "./header.ts";
import { VIRTIO_NET_F, featureBit } from "../../wire/features.ts";
import { NET_CONFIG_SIZE } from "../../wire/net.ts";

const header: NetHeader = {
  flags: 0x01,
  gsoType: 0x04,
  hdrLen: 0x1234,
  gsoSize: 0xabcd,
  csumStart: 0x0102,
  csumOffset: 0xfedc,
  numBuffers: 0x8765,
};

describe("virtio_net_hdr at offsets and edges [NET-HDR-LAYOUT]", () => {
  for (const len of [10, 12] as const) {
    it(`a ${len}-byte header encodes and decodes at every offset that fits, and nowhere else`, () => {
      const size = len + 3;
      for (let at = -2; at <= size; at++) {
        const dst = new Uint8Array(size).fill(0xee);
        const fits = at >= 0 && at + len <= size;
        expect(encodeNetHeader(header, len, dst, at)).toBe(fits);
        if (!fits) {
          expect(dst.every((x) => x === 0xee)).toBe(true);
          expect(decodeNetHeader(dst, len, at)).toBeUndefined();
          continue;
        }
        expect([...dst.subarray(at, at + len)]).toEqual([...spec.encodeHeader(header, len)]);
        expect(dst.subarray(0, at).every((x) => x === 0xee)).toBe(true);
        expect(dst.subarray(at + len).every((x) => x === 0xee)).toBe(true);
        expect(decodeNetHeader(dst, len, at)).toEqual(spec.decodeHeader(dst.subarray(at, at + len), len));
      }
    });
  }

  it("the RX header zeroes only its own bytes; num_buffers only in the 12-byte form [NET-RX-HDR]", () => {
    for (const len of [10, 12] as const) {
      const dst = new Uint8Array(16).fill(0xee);
      writeRxHeader(dst, len, 0x1234);
      expect([...dst.subarray(0, len)]).toEqual([...spec.rxHeader(len, 0x1234)]);
      expect(dst.subarray(len).every((x) => x === 0xee)).toBe(true);
    }
  });
});

describe("feature negotiation, bit by bit [NET-FEAT-ACK-SUBSET NET-FEAT-DEPS NET-HDR-LEN]", () => {
  const all = (1n << 64n) - 1n;
  /** Feature n with everything it needs, all of a dependency's features included. */
  const closure = (n: number): bigint =>
    spec.FEATURE_DEPENDENCIES.filter((d) => d.feature === n).reduce(
      (m, d) => d.requires.reduce((acc, r) => acc | closure(r), m),
      featureBit(n),
    );

  it("each feature acked alone, and with each one feature it may need, agrees with the spec", () => {
    for (let n = 0; n < 64; n++) {
      const alone = featureBit(n);
      expect(checkAck(all, alone)).toEqual(spec.validateAck(all, alone));
      expect(checkAck(0n, alone)).toEqual(spec.validateAck(0n, alone));
      expect(checkAck(all & ~alone, alone)).toEqual(spec.validateAck(all & ~alone, alone));
      for (const dep of spec.FEATURE_DEPENDENCIES) {
        for (const r of dep.requires) {
          // r, with and without what r itself needs (GUEST_ECN + GUEST_TSO4 needs GUEST_CSUM too).
          for (const ack of [alone | featureBit(r), alone | closure(r)])
            expect(checkAck(all, ack)).toEqual(spec.validateAck(all, ack));
        }
        const both = alone | dep.requires.reduce((m, r) => m | featureBit(r), 0n);
        expect(checkAck(all, both)).toEqual(spec.validateAck(all, both));
      }
    }
  });

  it("hasFeature and the header length follow the acked bits", () => {
    for (let n = 0; n < 64; n++) {
      expect(hasFeature(featureBit(n), n)).toBe(true);
      expect(hasFeature(~featureBit(n) & all, n)).toBe(false);
    }
    for (const acked of [
      0n,
      featureBit(VIRTIO_NET_F.VERSION_1),
      featureBit(VIRTIO_NET_F.MRG_RXBUF),
      all,
      featureBit(VIRTIO_NET_F.MTU),
    ])
      expect(netHeaderLength(acked)).toBe(spec.headerLength(acked));
  });

  it("what is offered follows each config field alone [NET-FEAT-OFFER]", () => {
    const configs: spec.NetConfig[] = [
      {},
      { mac: [2, 0, 0, 0, 0, 1] },
      { mtu: 1500 },
      { status: true },
      { status: false },
      { csum: true },
      { csum: false },
      { mrgRxbuf: true },
      { mrgRxbuf: false },
      { eventIdx: true },
      { eventIdx: false },
    ];
    for (const c of configs) expect(offeredFeatures(c)).toBe(spec.offeredFeatures(c));
  });
});

describe("config space windows [NET-CFG-LAYOUT NET-CFG-PAST-END NET-CFG-STATUS NET-CFG-MTU]", () => {
  it("every window, inside, across the end and before the start, reads as the spec says", () => {
    const configs: spec.NetConfig[] = [
      { mac: [0x02, 0x34, 0x56, 0x78, 0x9a, 0xbc], mtu: 0x1234, status: true },
      { mac: [1, 2, 3, 4, 5, 6], status: false, mtu: 68 },
      {},
    ];
    for (const c of configs) {
      for (const linkUp of [true, false]) {
        const space = new NetConfigSpace(c, linkUp);
        for (let offset = -3; offset <= NET_CONFIG_SIZE + 2; offset++) {
          for (let len = 0; len <= NET_CONFIG_SIZE + 3; len++) {
            const got = new Uint8Array(len).fill(0xee);
            space.read(offset, got);
            const want = new Uint8Array(len);
            for (let i = 0; i < len; i++) {
              const at = offset + i;
              want[i] = at >= 0 && at < NET_CONFIG_SIZE ? spec.configSpace(c, linkUp)[at]! : 0;
            }
            expect([...got]).toEqual([...want]);
          }
        }
        space.setLinkUp(!linkUp);
        const status = new Uint8Array(2);
        space.read(6, status);
        expect([...status]).toEqual([...spec.configSpace(c, !linkUp).subarray(6, 8)]);
      }
    }
  });
});
