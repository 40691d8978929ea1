/**
 * The credit counters of one end of a vsock stream (VIRTIO 1.2 §5.10.6.3; Linux
 * virtio_transport_common.c `struct virtio_vsock_sock`): what we advertise (buf_alloc,
 * fwd_cnt), what we received (rx_cnt) and sent (tx_cnt), and the peer's buf_alloc and fwd_cnt
 * from its last header. Every end that speaks the stream protocol (the guest driver model,
 * a conformance peer, the device's connection) keeps the same counters; the arithmetic is
 * spec/vsock.ts's (`peerFree`, `inFlight`, all u32 wrapping).
 */
import { inFlight, peerFree, type VsockHeader } from "../../spec/vsock.ts";
import { VSOCK_TYPE_STREAM } from "../../wire/vsock.ts";

export class StreamCredit {
  /** Bytes received in RW packets (u32, wrapping). */
  rxCnt = 0;
  /** Bytes received and consumed by the program: the fwd_cnt we advertise. */
  fwdCnt = 0;
  /** The fwd_cnt our last header carried: what the peer knows we consumed. */
  lastFwdCntSent = 0;
  /** Bytes sent in RW packets. */
  txCnt = 0;
  /** The peer's buf_alloc and fwd_cnt from its last header. */
  peerBufAlloc = 0;
  peerFwdCnt = 0;

  /** `bufAlloc`: our receive buffer, advertised as buf_alloc. */
  constructor(readonly bufAlloc: number) {}

  /** Every header carries the sender's buf_alloc and fwd_cnt (VSOCK-CREDIT-FREE). */
  fromPeer(bufAlloc: number, fwdCnt: number): void {
    this.peerBufAlloc = bufAlloc;
    this.peerFwdCnt = fwdCnt;
  }

  /** Bytes we may send now without overrunning the peer (VSOCK-CREDIT-LIMIT). */
  peerCredit(): number {
    return peerFree(this.peerBufAlloc, this.txCnt, this.peerFwdCnt);
  }

  /** n bytes went out in RW. */
  countSent(n: number): void {
    this.txCnt = (this.txCnt + n) >>> 0;
  }

  /** n bytes came in RW. */
  countReceived(n: number): void {
    this.rxCnt = (this.rxCnt + n) >>> 0;
  }

  /** The program consumed n received bytes. */
  countConsumed(n: number): void {
    this.fwdCnt = (this.fwdCnt + n) >>> 0;
  }

  /** Bytes received and not yet consumed (never above bufAlloc from an honest peer). */
  unconsumed(): number {
    return inFlight(this.rxCnt, this.fwdCnt);
  }

  /** Our free space as the peer last heard of it (from the fwd_cnt we last sent). */
  freeAsPeerKnows(): number {
    return this.bufAlloc - inFlight(this.rxCnt, this.lastFwdCntSent);
  }

  /** The fwd_cnt for an outgoing header, remembered as what the peer now knows. */
  stampFwdCnt(): number {
    this.lastFwdCntSent = this.fwdCnt;
    return this.fwdCnt;
  }
}

/** The two ends' addresses of a stream packet. */
export interface StreamEnds {
  readonly srcCid: bigint;
  readonly dstCid: bigint;
  readonly srcPort: number;
  readonly dstPort: number;
}

/** A stream packet's header from this end: our credit (buf_alloc, fwd_cnt stamped as sent) on every packet. */
export const streamHeader = (
  ends: StreamEnds,
  credit: StreamCredit,
  op: number,
  len = 0,
  flags = 0,
): VsockHeader => ({
  srcCid: ends.srcCid,
  dstCid: ends.dstCid,
  srcPort: ends.srcPort,
  dstPort: ends.dstPort,
  len,
  type: VSOCK_TYPE_STREAM,
  op,
  flags,
  bufAlloc: credit.bufAlloc,
  fwdCnt: credit.stampFwdCnt(),
});
