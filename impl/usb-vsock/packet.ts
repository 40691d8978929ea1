/**
 * vsock-over-USB framing: header codec, in-place packet building, the transfer parser and
 * the transfer builder (Fuchsia usb_vsock packet.rs semantics, spec/usb-vsock.ts rules).
 *
 * Hot paths work on byte offsets in caller buffers: no per-packet allocation, no copies
 * except the payload bytes a builder writes. Errors use the spec's tags and fields.
 */
import {
  HEADER_SIZE,
  PacketType,
  type Address,
  type PacketTooBig,
  type ParseError,
  type PacketType as PacketTypeT,
} from "../../spec/usb-vsock.ts";
import type { Result } from "../../spec/result.ts";

export { HEADER_SIZE, PacketType };
export type { Address, PacketTooBig, ParseError };

const M0 = 0x66;
const M1 = 0x66;
const M2 = 0x78;

// USB-HDR-TYPES: a 256-entry table so the type check is one load, not a search.
const KNOWN_TYPE = new Uint8Array(256);
for (const t of Object.values(PacketType)) KNOWN_TYPE[t] = 1;

export const isKnownType = (b: number): b is PacketTypeT => b >= 0 && b < 256 && KNOWN_TYPE[b] === 1;

const rdU32 = (b: Uint8Array, at: number): number =>
  (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

const wrU32 = (b: Uint8Array, at: number, v: number): void => {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = (v >>> 24) & 0xff;
};

/**
 * USB-HDR-LAYOUT: writes a header at `at`. The caller guarantees 24 bytes of room
 * (every public entry point below checks it).
 */
export const writeHeader = (
  buf: Uint8Array,
  at: number,
  type: PacketTypeT,
  deviceCid: number,
  hostCid: number,
  devicePort: number,
  hostPort: number,
  payloadLen: number,
): void => {
  buf[at] = M0;
  buf[at + 1] = M1;
  buf[at + 2] = M2;
  buf[at + 3] = type;
  wrU32(buf, at + 4, deviceCid);
  wrU32(buf, at + 8, hostCid);
  wrU32(buf, at + 12, devicePort);
  wrU32(buf, at + 16, hostPort);
  wrU32(buf, at + 20, payloadLen);
};

/**
 * A packet being built in place (Fuchsia `PacketMut`): the header is written with zeroed
 * address and length; `payload` is a view of the rest of the buffer; `finish` stamps the
 * payload length. USB-BUILD-TOO-BIG.
 */
export class PacketMut {
  private constructor(
    readonly buf: Uint8Array,
    readonly offset: number,
    /** View of the bytes after the header, up to the end of `buf`. */
    readonly payload: Uint8Array,
  ) {}

  /** Starts a packet of `type` at `offset`; PacketTooBig when even the header does not fit. */
  static newIn(type: PacketTypeT, buf: Uint8Array, offset = 0): PacketMut | PacketTooBig {
    const available = buf.length - offset;
    if (offset < 0 || available < HEADER_SIZE) return { _tag: "PacketTooBig", size: HEADER_SIZE, available };
    writeHeader(buf, offset, type, 0, 0, 0, 0, 0);
    return new PacketMut(buf, offset, buf.subarray(offset + HEADER_SIZE));
  }

  setAddress(a: Address): void {
    wrU32(this.buf, this.offset + 4, a.deviceCid);
    wrU32(this.buf, this.offset + 8, a.hostCid);
    wrU32(this.buf, this.offset + 12, a.devicePort);
    wrU32(this.buf, this.offset + 16, a.hostPort);
  }

  /** The packet's total size, or PacketTooBig when `payloadLen` exceeds the payload room. */
  finish(payloadLen: number): number | PacketTooBig {
    if (!Number.isInteger(payloadLen) || payloadLen < 0 || payloadLen > this.payload.length)
      return {
        _tag: "PacketTooBig",
        size: HEADER_SIZE + payloadLen,
        available: HEADER_SIZE + this.payload.length,
      };
    wrU32(this.buf, this.offset + 20, payloadLen);
    return HEADER_SIZE + payloadLen;
  }
}

export const isPacketTooBig = (x: unknown): x is PacketTooBig =>
  typeof x === "object" && x !== null && (x as { _tag?: unknown })._tag === "PacketTooBig";

/** A parsed packet: a view into the transfer (valid until the transfer buffer is reused). */
export interface PacketView extends Address {
  readonly type: PacketTypeT;
  readonly payloadLen: number;
  readonly payload: Uint8Array;
}

/**
 * Parses the vsock packets of one USB transfer (Fuchsia `VsockPacketIterator`).
 *
 * Hot use: `reset(buf)`, then `while (it.next()) { it.type, it.payloadOffset, ... }`; when
 * `next()` returns false, `error` says whether it stopped on an error (USB-PARSE-STOP).
 * Reads only `buf[start, end)` (USB-PARSE-BOUNDS). It is also an Iterable of Results.
 */
export class VsockPacketIterator implements Iterable<Result<PacketView, ParseError>> {
  private buf: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private end = 0;
  private stopped = true;
  type: PacketTypeT = PacketType.Data;
  deviceCid = 0;
  hostCid = 0;
  devicePort = 0;
  hostPort = 0;
  payloadLen = 0;
  /** Offset of the current packet's payload in the buffer. */
  payloadOffset = 0;
  /** Offset of the current packet's header in the buffer. */
  packetOffset = 0;
  error: ParseError | undefined = undefined;

  constructor(buf?: Uint8Array) {
    if (buf !== undefined) this.reset(buf);
  }

  reset(buf: Uint8Array, start = 0, end = buf.length): this {
    this.buf = buf;
    this.pos = Math.max(0, Math.min(start, buf.length));
    this.end = Math.max(this.pos, Math.min(end, buf.length));
    this.stopped = false;
    this.error = undefined;
    return this;
  }

  /** Advances to the next packet; false at the end or after the first error, for good. */
  next(): boolean {
    if (this.stopped) return false;
    const b = this.buf;
    const at = this.pos;
    const remaining = this.end - at;
    if (remaining === 0) {
      this.stopped = true;
      return false;
    }
    // Order as the reference: length, type byte, magic, payload length.
    if (remaining < HEADER_SIZE) return this.fail({ _tag: "InsufficientData", offset: at, remaining });
    const type = b[at + 3]!;
    if (KNOWN_TYPE[type] !== 1) return this.fail({ _tag: "UnknownPacketType", offset: at, type });
    if (b[at] !== M0 || b[at + 1] !== M1 || b[at + 2] !== M2)
      return this.fail({ _tag: "InvalidMagic", offset: at });
    const payloadLen = rdU32(b, at + 20);
    const available = remaining - HEADER_SIZE;
    if (payloadLen > available)
      return this.fail({ _tag: "PayloadTooLong", offset: at, payloadLen, available });
    this.type = type as PacketTypeT;
    this.deviceCid = rdU32(b, at + 4);
    this.hostCid = rdU32(b, at + 8);
    this.devicePort = rdU32(b, at + 12);
    this.hostPort = rdU32(b, at + 16);
    this.payloadLen = payloadLen;
    this.packetOffset = at;
    this.payloadOffset = at + HEADER_SIZE;
    this.pos = at + HEADER_SIZE + payloadLen;
    return true;
  }

  /** The current packet's payload as a view (allocates a view object; not for hot loops). */
  payload(): Uint8Array {
    return this.buf.subarray(this.payloadOffset, this.payloadOffset + this.payloadLen);
  }

  /** The current packet as a PacketView (a view, valid while the buffer is unchanged). */
  view(): PacketView {
    return {
      type: this.type,
      deviceCid: this.deviceCid,
      hostCid: this.hostCid,
      devicePort: this.devicePort,
      hostPort: this.hostPort,
      payloadLen: this.payloadLen,
      payload: this.payload(),
    };
  }

  private fail(e: ParseError): false {
    this.error = e;
    this.stopped = true;
    return false;
  }

  *[Symbol.iterator](): Iterator<Result<PacketView, ParseError>> {
    while (this.next()) yield { ok: true, value: this.view() };
    if (this.error !== undefined) yield { ok: false, error: this.error };
  }
}

/**
 * Packs vsock packets back to back into one USB transfer buffer (Fuchsia
 * `UsbPacketBuilder`). USB-BUILDER-TAKE, USB-BUILD-TOO-BIG.
 */
export class UsbPacketBuilder {
  private offset = 0;

  constructor(readonly buffer: Uint8Array) {}

  get capacity(): number {
    return this.buffer.length;
  }

  /** Bytes written since the last take. */
  get written(): number {
    return this.offset;
  }

  available(): number {
    return this.buffer.length - this.offset;
  }

  hasData(): boolean {
    return this.offset > 0;
  }

  /**
   * Writes one packet: header fields plus `payload[payloadStart, payloadStart+payloadLen)`.
   * Returns undefined, or PacketTooBig with nothing written.
   */
  writeRaw(
    type: PacketTypeT,
    deviceCid: number,
    hostCid: number,
    devicePort: number,
    hostPort: number,
    payload: Uint8Array | undefined,
    payloadStart = 0,
    payloadLen = payload === undefined ? 0 : payload.length - payloadStart,
  ): PacketTooBig | undefined {
    const size = HEADER_SIZE + payloadLen;
    const available = this.buffer.length - this.offset;
    if (size > available || payloadLen < 0) return { _tag: "PacketTooBig", size, available };
    const at = this.offset;
    writeHeader(this.buffer, at, type, deviceCid, hostCid, devicePort, hostPort, payloadLen);
    if (payload !== undefined && payloadLen > 0) {
      if (payloadStart === 0 && payloadLen === payload.length) this.buffer.set(payload, at + HEADER_SIZE);
      else this.buffer.set(payload.subarray(payloadStart, payloadStart + payloadLen), at + HEADER_SIZE);
    }
    this.offset = at + size;
    return undefined;
  }

  /** Writes a packet of `type` on `address` carrying all of `payload`. */
  write(type: PacketTypeT, address: Address, payload?: Uint8Array): PacketTooBig | undefined {
    return this.writeRaw(
      type,
      address.deviceCid,
      address.hostCid,
      address.devicePort,
      address.hostPort,
      payload,
    );
  }

  /**
   * The bytes written so far, as a view of the buffer, and resets to empty; undefined when
   * nothing was written. The view is valid until the next write.
   */
  take(): Uint8Array | undefined {
    const n = this.offset;
    if (n === 0) return undefined;
    this.offset = 0;
    return this.buffer.subarray(0, n);
  }
}
