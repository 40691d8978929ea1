import { readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect, Fiber } from "effect";
import { describe, expect, it } from "vitest";
import { MsgIo, drainEventFd, loadFdio, signalEventFd, sockaddrUn } from "./fdio.ts";
import {
  Poller,
  acceptOne,
  acquireEventFd,
  acquireMapping,
  acquireMemfd,
  acquireUnixConnection,
  acquireUnixListener,
  fdio,
} from "./scoped.ts";

const io = loadFdio();
const skip = typeof io === "string" ? io : null;
if (skip !== null) console.log(`skipping native fd tests: ${skip}`);

export const fdCount = (): number => readdirSync("/proc/self/fd").length;
export const memfdMappings = (name: string): number =>
  readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .filter((l) => l.includes(`memfd:${name}`)).length;

let n = 0;
const sockPath = (): string => join(tmpdir(), `vlab-fdio-${process.pid}-${n++}.sock`);

describe.skipIf(skip !== null)("native fd bindings", () => {
  it("sockaddr_un refuses empty, NUL and over-long paths", () => {
    expect(sockaddrUn("")).toBeUndefined();
    expect(sockaddrUn("a\0b")).toBeUndefined();
    expect(sockaddrUn("x".repeat(108))).toBeUndefined();
    expect(sockaddrUn("x".repeat(107))?.length).toBe(110);
  });

  it("passes eventfds with SCM_RIGHTS over a Unix socket; everything closed with the scope", async () => {
    const before = fdCount();
    const path = sockPath();
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const f = yield* fdio;
          const poller = yield* Poller.make(f);
          const listener = yield* acquireUnixListener(f, path);
          const client = yield* acquireUnixConnection(f, path);
          const server = yield* acceptOne(f, poller, listener);
          const a = yield* acquireEventFd(f);
          const b = yield* acquireEventFd(f);
          const out = new MsgIo(f);
          const inp = new MsgIo(f);
          expect(out.send(client, new Uint8Array([1, 2, 3, 4, 5]), [a, b])).toBe(5);
          yield* poller.wait([server]);
          const fds: number[] = [];
          const buf = new Uint8Array(3);
          expect(inp.recv(server, buf, fds)).toBe(3);
          expect([...buf]).toEqual([1, 2, 3]);
          expect(fds.length).toBe(2);
          expect(inp.truncatedFds).toBe(false);
          // The rest of the bytes carry no fds.
          const more: number[] = [];
          expect(inp.recv(server, buf, more)).toBe(2);
          expect(more).toEqual([]);
          // The received fds are the same eventfds.
          expect(signalEventFd(f, a)).toBe(true);
          expect(drainEventFd(f, fds[0]!)).toBe(1);
          expect(drainEventFd(f, fds[1]!)).toBe(0);
          for (const fd of fds) f.libc.close(fd);
          // Nothing to read: -EAGAIN, without blocking.
          expect(inp.recv(server, buf, more)).toBe(-11);
        }),
      ),
    );
    expect(fdCount()).toBe(before);
    expect(readdirSync(tmpdir()).includes(path.split("/").pop()!)).toBe(false);
  });

  it("maps a memfd shared and zero-copy; unmapped and closed with the scope", async () => {
    const before = fdCount();
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const f = yield* fdio;
          const fd = yield* acquireMemfd(f, "vlab-fdio-test", 1 << 20);
          const m1 = yield* acquireMapping(f, fd, 0, 1 << 20);
          const m2 = yield* acquireMapping(f, fd, 4096, 8192);
          expect(memfdMappings("vlab-fdio-test")).toBe(2);
          const a = new Uint8Array(m1.buffer);
          const b = new Uint8Array(m2.buffer);
          a[4096 + 7] = 0x5a;
          expect(b[7]).toBe(0x5a);
          b[100] = 0xa5;
          expect(a[4096 + 100]).toBe(0xa5);
          const bad = yield* Effect.flip(acquireMapping(f, fd, 1, 4096));
          expect(bad).toMatchObject({ _tag: "SyscallFailed", call: "mmap", errno: 22 });
        }),
      ),
    );
    expect(memfdMappings("vlab-fdio-test")).toBe(0);
    expect(fdCount()).toBe(before);
  });

  it("a parked wait is interrupted without blocking the event loop, and the poller closes after it", async () => {
    const before = fdCount();
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const f = yield* fdio;
          const poller = yield* Poller.make(f);
          const efd = yield* acquireEventFd(f);
          const fiber = yield* Effect.forkChild(poller.wait([efd]));
          // The event loop still runs timers while the worker is parked.
          yield* Effect.sleep(20);
          signalEventFd(f, efd);
          const ready = yield* Fiber.join(fiber);
          expect(ready).toBe(1);
          expect(poller.revents[0]! & 1).toBe(1);
          const parked = yield* Effect.forkChild(poller.wait([efd, efd]));
          yield* Effect.sleep(10);
          yield* Fiber.interrupt(parked);
        }),
      ),
    );
    expect(fdCount()).toBe(before);
  });
});
