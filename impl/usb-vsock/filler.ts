/**
 * The asynchronous transfer filler (Fuchsia `UsbPacketFiller`), with Effect.
 *
 * One reader (the USB OUT pump) offers an empty transfer with `fill`; any number of
 * writers put vsock packets into it. Writers wait until a transfer is on offer with room
 * for their packet (USB-FILL-WAIT-ROOM); the reader waits until its transfer holds at least
 * one packet (USB-FILL-WAIT-DATA); data larger than the room is split across packets and
 * transfers (USB-FILL-SPLIT); a second concurrent `fill` is AlreadyFilling (USB-FILL-ONE).
 *
 * Waiting is on a `Waiters` woken when the state it waits on changes (wakers.ts); a woken fiber
 * re-checks, so spurious wake-ups are harmless. Interrupted waiters remove themselves, and
 * an interrupted `fill` withdraws its transfer.
 */
import { Effect } from "effect";
import { HEADER_SIZE, PacketType } from "./packet.ts";
import type { Address, PacketTooBig, UsbPacketBuilder } from "./packet.ts";
import type { PacketType as PacketTypeT } from "../../spec/usb-vsock.ts";
import { waitOn, wake, Waiters } from "./wakers.ts";

export interface AlreadyFilling {
  readonly _tag: "AlreadyFilling";
}

export class UsbPacketFiller {
  private current: UsbPacketBuilder | undefined = undefined;
  /** The transfer on offer takes no more packets (it ends with a Sync, USB-SYNC-LAST). */
  private sealed = false;
  private readonly roomWaiters = new Waiters();
  private readonly dataWaiters = new Waiters();

  /** True while a transfer is on offer (a `fill` is pending). */
  get filling(): boolean {
    return this.current !== undefined;
  }

  /** Room left in the transfer on offer (0 when none). */
  available(): number {
    return this.current === undefined || this.sealed ? 0 : this.current.available();
  }

  /**
   * Waits until a transfer is on offer with at least `min` bytes of room. Fails with
   * PacketTooBig when the transfer on offer could never hold `min` bytes.
   */
  waitForFillable(min: number): Effect.Effect<UsbPacketBuilder, PacketTooBig> {
    return this.waitForRoom(min, true);
  }

  /**
   * Waits until a transfer is on offer with at least `min` bytes of room; one that could
   * never hold `min` bytes fails PacketTooBig with `tooBig`, else is waited past.
   */
  private waitForRoom(min: number, tooBig: true): Effect.Effect<UsbPacketBuilder, PacketTooBig>;
  private waitForRoom(min: number, tooBig: false): Effect.Effect<UsbPacketBuilder>;
  private waitForRoom(min: number, tooBig: boolean): Effect.Effect<UsbPacketBuilder, PacketTooBig> {
    const loop: Effect.Effect<UsbPacketBuilder, PacketTooBig> = Effect.suspend(() => {
      const b = this.current;
      if (b !== undefined && !this.sealed) {
        if (b.available() >= min) return Effect.succeed(b);
        if (tooBig && b.capacity < min)
          return Effect.fail<PacketTooBig>({ _tag: "PacketTooBig", size: min, available: b.capacity });
      }
      return Effect.flatMap(waitOn(this.roomWaiters), () => loop);
    });
    return loop;
  }

  /**
   * Writes one whole packet into the transfer on offer, waiting for room. With `last`, the
   * packet ends its transfer: later packets go into the next one (USB-SYNC-LAST).
   */
  writePacket(
    type: PacketTypeT,
    address: Address,
    payload?: Uint8Array,
    last = false,
  ): Effect.Effect<void, PacketTooBig> {
    const size = HEADER_SIZE + (payload === undefined ? 0 : payload.length);
    const write = (b: UsbPacketBuilder): Effect.Effect<void, PacketTooBig> => {
      const e = b.write(type, address, payload);
      if (e !== undefined) return Effect.fail(e);
      if (last) this.sealed = true;
      wake(this.dataWaiters);
      return Effect.void;
    };
    return Effect.suspend(() => {
      // Fast path: room now, no waiting machinery.
      const b = this.current;
      if (b !== undefined && !this.sealed && b.available() >= size) return write(b);
      return Effect.flatMap(this.waitForFillable(size), write);
    });
  }

  /**
   * Writes one Data packet carrying as much of `payload[start..]` as fits (at least one
   * byte) and returns how many bytes it carried. An empty remainder writes nothing.
   */
  writeData(address: Address, payload: Uint8Array, start = 0): Effect.Effect<number> {
    const left = payload.length - start;
    if (left <= 0) return Effect.succeed(0);
    // A transfer too small for a header and one byte can never carry data: wait for the
    // next one rather than fail, as the reference's writers do.
    const waitRoom = this.waitForRoom(HEADER_SIZE + 1, false);
    return Effect.map(waitRoom, (b) => {
      const n = Math.min(left, b.available() - HEADER_SIZE);
      b.writeRaw(
        PacketType.Data,
        address.deviceCid,
        address.hostCid,
        address.devicePort,
        address.hostPort,
        payload,
        start,
        n,
      );
      wake(this.dataWaiters);
      return n;
    });
  }

  /** USB-FILL-SPLIT: writes all of `payload` as consecutive Data packets. */
  writeDataAll(address: Address, payload: Uint8Array): Effect.Effect<void> {
    const from = (start: number): Effect.Effect<void> =>
      start >= payload.length
        ? Effect.void
        : Effect.flatMap(this.writeData(address, payload, start), (n) => from(start + n));
    return from(0);
  }

  /**
   * Offers `builder` to the writers and waits until it holds data, then withdraws and
   * returns it (USB-FILL-WAIT-DATA). A builder that already holds data comes straight back.
   * AlreadyFilling when another fill is pending (USB-FILL-ONE).
   */
  fill(builder: UsbPacketBuilder): Effect.Effect<UsbPacketBuilder, AlreadyFilling> {
    return Effect.suspend(() => {
      if (builder.hasData()) return Effect.succeed(builder);
      if (this.current !== undefined) return Effect.fail<AlreadyFilling>({ _tag: "AlreadyFilling" });
      this.current = builder;
      this.sealed = false;
      wake(this.roomWaiters);
      const wait: Effect.Effect<UsbPacketBuilder> = Effect.suspend(() => {
        if (builder.hasData()) {
          this.current = undefined;
          return Effect.succeed(builder);
        }
        // waitOn yields once after the wake-up, so writers that are ready add their packets
        // too: without it a busy writer would send one packet per transfer.
        return Effect.flatMap(waitOn(this.dataWaiters), () => wait);
      });
      return Effect.onInterrupt(wait, () =>
        Effect.sync(() => {
          if (this.current === builder) this.current = undefined;
        }),
      );
    });
  }
}
