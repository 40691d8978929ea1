/**
 * The smallest vhost-user front-end: sends requests (with fds) and waits for the replies the
 * protocol says come back (explicit ones, or REPLY_ACK's u64 when NEED_REPLY is set). Tests
 * and properties drive our back-end with it; issue 14's front-end can grow from it.
 */
import { Effect } from "effect";
import {
  FLAG_NEED_REPLY,
  VERSION,
  hasExplicitReply,
  type Body,
  type Message,
  type SessionError,
} from "../../spec/vhost-user.ts";
import type { Fdio } from "../native/fdio.ts";
import type { Poller } from "../native/scoped.ts";
import { Channel } from "./channel.ts";

export type FrontEndError =
  | SessionError
  | { readonly _tag: "PeerClosed" }
  | { readonly _tag: "UnexpectedReply"; readonly request: number; readonly got: number };

export class FrontEnd {
  readonly channel: Channel;

  constructor(
    readonly io: Fdio,
    readonly fd: number,
    private readonly poller: Poller,
  ) {
    this.channel = new Channel(io, fd, "reply");
  }

  /** Sends raw bytes (hostile tests): header and payload as given, with fds. */
  sendRaw(bytes: Uint8Array, fds: readonly number[] = []): Effect.Effect<void, FrontEndError> {
    return Effect.suspend(() => {
      const r = this.channel.sendBytes(bytes, fds);
      return r.ok ? Effect.void : Effect.fail(r.error);
    });
  }

  /** The next message from the back-end (waits on the poller). */
  receive(): Effect.Effect<Message, FrontEndError> {
    const { channel, poller, fd } = this;
    return Effect.gen(function* () {
      for (;;) {
        const r = channel.read();
        if (r._tag === "Message") return r.message;
        if (r._tag === "Closed") return yield* Effect.fail({ _tag: "PeerClosed" } as const);
        if (r._tag === "Refused") return yield* Effect.fail(r.error);
        yield* poller.wait([fd]);
      }
    });
  }

  /** Sends `request` with `body` and fds; returns the reply when one is due, else null. */
  call(
    request: number,
    body: Body = { _tag: "Empty" },
    opts: { readonly fds?: readonly number[]; readonly needReply?: boolean } = {},
  ): Effect.Effect<Message | null, FrontEndError> {
    return Effect.suspend(() => {
      const flags = VERSION | (opts.needReply === true ? FLAG_NEED_REPLY : 0);
      const s = this.channel.send({ request, flags, body }, opts.fds ?? []);
      if (!s.ok) return Effect.fail(s.error);
      if (!hasExplicitReply(request) && opts.needReply !== true) return Effect.succeed(null);
      return Effect.flatMap(this.receive(), (m) =>
        m.request === request
          ? Effect.succeed(m)
          : Effect.fail({ _tag: "UnexpectedReply", request, got: m.request } as const),
      );
    });
  }
}
