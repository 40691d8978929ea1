import { describe, expect, it } from "vitest";
import { Effect } from "effect";
import { TestClock } from "effect/testing";
import { GuestMemory } from "../memory/guest-memory.ts";
import { makeVsockDevice } from "./service.ts";
import { MemoryHost } from "./memory-host.ts";

describe("the Effect service", () => {
  it("a host-initiated connection the guest never answers is reset after 2 s of the Effect clock [VSOCK-CONN-TIMEOUT]", async () => {
    const memory = GuestMemory.of([{ base: 0, bytes: new Uint8Array(4096) }]);
    const states = await Effect.runPromise(
      Effect.gen(function* () {
        const svc = yield* makeVsockDevice(memory, { guestCid: 3n }, new MemoryHost());
        const conn = svc.device.muxer.hostConnect(22)!;
        yield* TestClock.adjust(1999);
        yield* svc.tick;
        const before = conn.state;
        yield* TestClock.adjust(1);
        yield* svc.tick;
        return [before, conn.state, conn.resetReason];
      }).pipe(Effect.provide(TestClock.layer())),
    );
    expect(states).toEqual(["LocalInit", "Killed", "Timeout"]);
  });

  it("a reserved CID fails the effect with InvalidGuestCid [VSOCK-CFG-CID]", async () => {
    const memory = GuestMemory.of([{ base: 0, bytes: new Uint8Array(4096) }]);
    const exit = await Effect.runPromise(Effect.flip(makeVsockDevice(memory, { guestCid: 2n }, null)));
    expect(exit).toEqual({ _tag: "InvalidGuestCid", cid: 2n });
  });
});
