/**
 * Drives an implementation under test: starts the program, sends requests as JSON lines,
 * matches responses by id. A request that gets no answer within the timeout, or a program
 * that exits, is an outcome of its own (`Timeout`, `ProcessExited`), not an exception: the
 * suite reports it against the case (SAFE rules: no unbounded walk, keeps serving).
 */
import { spawn } from "node:child_process";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import type { Json, JsonObject, Outcome } from "./protocol.ts";
import { parseResponse } from "./protocol.ts";

export interface Hello {
  readonly protocol: number;
  readonly name: string;
  readonly ops: readonly string[];
  /** The adapter's own error names mapped onto the vocabulary (`{"PeerTag": "VocabularyTag"}`). */
  readonly errors?: Readonly<Record<string, string>>;
}

export interface ClientOptions {
  /** Per-request timeout in ms (default 5000). */
  readonly timeoutMs?: number;
  /** Extra time the first request after a (re)start may take: the program is starting (default 30000). */
  readonly startupMs?: number;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

export class ImplClient {
  private child: ChildProcessWithoutNullStreams | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, (o: Outcome) => void>();
  private stderrTail = "";
  private exited = false;
  private started = 0;

  constructor(
    readonly command: string,
    private readonly options: ClientOptions = {},
  ) {}

  /** How many times the program has been (re)started. */
  get starts(): number {
    return this.started;
  }

  /** The last few KiB the program wrote on stderr. */
  get log(): string {
    return this.stderrTail;
  }

  get alive(): boolean {
    return this.child !== null && !this.exited;
  }

  private start(): void {
    // detached: the program gets its own process group, so close() can end it and
    // whatever it spawned (npx -> node) by that group id.
    const child = spawn("sh", ["-c", this.command], {
      cwd: this.options.cwd,
      env: this.options.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    this.child = child;
    this.exited = false;
    this.started++;
    child.stdin.on("error", () => {
      // EPIPE after the program died: the exit handler answers the pending requests.
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (s: string) => {
      this.stderrTail = (this.stderrTail + s).slice(-8192);
    });
    const rl = createInterface({ input: child.stdout, crlfDelay: Infinity });
    rl.on("line", (line) => {
      // A program killed after a timeout may still flush lines: they answer nothing now.
      if (this.child !== child) return;
      const r = parseResponse(line);
      if (r === undefined) {
        this.stderrTail = (this.stderrTail + `\n[client] malformed response: ${line.slice(0, 200)}\n`).slice(
          -8192,
        );
        // stdout carries responses only (the log goes to stderr): a line that is not one
        // answers the oldest waiting request, at once, rather than letting it time out.
        const oldest = this.pending.entries().next();
        if (!oldest.done) {
          const [id, resolve] = oldest.value;
          this.pending.delete(id);
          resolve({ ok: false, error: { _tag: "MalformedResponse", line: line.slice(0, 200) } });
        }
        return;
      }
      const resolve = this.pending.get(r.id);
      if (resolve === undefined) return;
      this.pending.delete(r.id);
      resolve(r.ok ? { ok: true, value: r.value } : { ok: false, error: r.error });
    });
    child.on("exit", (code, signal) => {
      if (this.child !== child) return;
      this.exited = true;
      const error = { _tag: "ProcessExited", code: code ?? -1, signal: signal ?? "" };
      for (const resolve of this.pending.values()) resolve({ ok: false, error });
      this.pending.clear();
    });
    child.on("error", (e) => {
      this.stderrTail += `\n[client] ${e.message}\n`;
    });
  }

  /** Sends one request; starts (or restarts) the program if it is not running. */
  request(op: string, args: JsonObject = {}): Promise<Outcome> {
    const starting = !this.alive;
    if (starting) this.start();
    const child = this.child!;
    const id = this.nextId++;
    const timeoutMs = (this.options.timeoutMs ?? 5000) + (starting ? (this.options.startupMs ?? 30_000) : 0);
    return new Promise<Outcome>((resolve) => {
      const timer = setTimeout(() => {
        if (!this.pending.has(id)) return;
        this.pending.delete(id);
        resolve({ ok: false, error: { _tag: "Timeout", op, ms: timeoutMs } });
        // A program that stopped answering is restarted for the next case.
        this.kill();
      }, timeoutMs);
      this.pending.set(id, (o) => {
        clearTimeout(timer);
        resolve(o);
      });
      child.stdin.write(JSON.stringify({ id, op, args }) + "\n");
    });
  }

  async hello(): Promise<Hello | string> {
    const r = await this.request("hello");
    if (!r.ok) return `hello failed: ${r.error._tag}${this.log === "" ? "" : `\n${this.log}`}`;
    const v = r.value as { [k: string]: Json } | null;
    if (v === null || typeof v !== "object" || typeof v["protocol"] !== "number" || !Array.isArray(v["ops"]))
      return `hello answered ${JSON.stringify(v)}: expected {protocol, name, ops}`;
    const errs = v["errors"];
    const errors: Record<string, string> = {};
    if (errs !== null && typeof errs === "object" && !Array.isArray(errs))
      for (const [k, t] of Object.entries(errs)) if (typeof t === "string") errors[k] = t;
    return {
      protocol: v["protocol"],
      name: typeof v["name"] === "string" ? v["name"] : "(unnamed)",
      ops: (v["ops"] as Json[]).filter((o): o is string => typeof o === "string"),
      ...(Object.keys(errors).length > 0 ? { errors } : {}),
    };
  }

  /** Ends the program's process group now; the next request starts a fresh program. */
  private kill(): void {
    const child = this.child;
    if (child === null) return;
    this.child = null;
    const error = { _tag: "ProcessExited", code: -1, signal: "SIGKILL" };
    for (const resolve of this.pending.values()) resolve({ ok: false, error });
    this.pending.clear();
    if (this.exited || child.pid === undefined) return;
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }

  /** Closes stdin (a well-behaved program exits), then ends the process group if it lingers. */
  async close(): Promise<void> {
    const child = this.child;
    if (child === null || this.exited) return;
    child.stdin.end();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.kill();
        resolve();
      }, 2000);
      child.once("exit", () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
