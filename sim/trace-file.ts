/**
 * The trace on disk: written in the background while a run goes (compressed on libuv's
 * thread pool; the engine waits only when the writer falls more than WRITE_AHEAD behind), and
 * read back as JSON lines by `npx tsx sim trace FILE`.
 *
 * The default is brotli at quality 0 (trace.bin.br): on this stream it costs about half the
 * CPU of gzip at level 1 for a file ~7% larger. gzip (trace.bin.gz, the default before) is
 * still written on request and read.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { once } from "node:events";
import { finished } from "node:stream/promises";
import { constants, createBrotliCompress, createBrotliDecompress, createGunzip, createGzip } from "node:zlib";
import type { Writable } from "node:stream";
import { TraceDecoder, type TraceSink } from "./trace.ts";

export type TraceMode = "br" | "gz" | "raw" | "jsonl" | "none";
export const TRACE_MODES: readonly TraceMode[] = ["br", "gz", "raw", "jsonl", "none"];
export const TRACE_FILES = {
  br: "trace.bin.br",
  gz: "trace.bin.gz",
  raw: "trace.bin",
  jsonl: "trace.jsonl",
} as const;
/** What `sim run` writes unless told otherwise. */
export const DEFAULT_TRACE_MODE = "br" satisfies TraceMode;

/** Bytes the writer may hold before the run waits for it (memory stays flat). */
const WRITE_AHEAD = 4 << 20;

export interface TraceWriter {
  readonly sink: TraceSink;
  /** Ends the file; rejects with the first write error, if any. */
  close(): Promise<void>;
  /** Stops writing (the run failed or was interrupted); the file is left as it is. */
  abort(): void;
}

export const openTraceWriter = (path: string, mode: Exclude<TraceMode, "none">): TraceWriter => {
  const file = createWriteStream(path, { highWaterMark: WRITE_AHEAD });
  let failure: Error | null = null;
  const fail = (e: Error): void => {
    failure ??= e;
  };
  file.on("error", fail);
  let head: Writable = file;
  // The stream is already compact: speed matters more than the last few bytes (gzip level
  // 1, brotli quality 0). highWaterMark reaches the stream underneath; the zlib options do
  // not list it.
  const stream = { highWaterMark: WRITE_AHEAD };
  const gzip = { level: 1, ...stream };
  const brotli = { params: { [constants.BROTLI_PARAM_QUALITY]: 0 }, ...stream };
  const zip = mode === "gz" ? createGzip(gzip) : mode === "br" ? createBrotliCompress(brotli) : null;
  if (zip !== null) {
    zip.on("error", fail);
    zip.pipe(file);
    head = zip;
  }
  const decoder = mode === "jsonl" ? new TraceDecoder() : null;
  const write = (data: Uint8Array | string): void | Promise<void> => {
    if (failure !== null) return;
    if (head.write(data)) return;
    return once(head, "drain").then(
      () => undefined,
      () => undefined,
    );
  };
  return {
    sink: (chunk) => {
      if (decoder === null) return write(chunk);
      const lines = decoder.push(chunk);
      return lines.length === 0 ? undefined : write(lines.join("\n") + "\n");
    },
    close: async () => {
      head.end();
      await finished(file).catch(fail);
      if (failure !== null) throw failure;
    },
    abort: () => {
      head.destroy();
      file.destroy();
    },
  };
};

/**
 * Reads a trace file (trace.bin, trace.bin.gz or trace.bin.br: gzip told by its magic,
 * brotli, which has none, by the .br name) and hands its JSON lines to `out`, a batch at a
 * time.
 */
export const readTraceFile = async (
  path: string,
  out: (lines: readonly string[]) => void,
): Promise<number> => {
  const first = await new Promise<Buffer>((resolve, reject) => {
    const s = createReadStream(path, { start: 0, end: 1 });
    const parts: Buffer[] = [];
    s.on("data", (c) => parts.push(c as Buffer));
    s.on("error", reject);
    s.on("end", () => resolve(Buffer.concat(parts)));
  });
  const gz = first.length === 2 && first[0] === 0x1f && first[1] === 0x8b;
  const br = !gz && path.endsWith(".br");
  const raw = createReadStream(path);
  const stream = gz ? raw.pipe(createGunzip()) : br ? raw.pipe(createBrotliDecompress()) : raw;
  raw.on("error", (e) => stream.destroy(e));
  const decoder = new TraceDecoder();
  let n = 0;
  try {
    for await (const chunk of stream) {
      const lines = decoder.push(chunk as Buffer);
      n += lines.length;
      if (lines.length > 0) out(lines);
    }
  } catch (e) {
    // A zlib error names no file kind: say which decompression the file failed.
    if (stream === raw || !(e instanceof Error) || !("errno" in e)) throw e;
    // The stream ended inside a block: a trace cut short, not another kind of file.
    if ("code" in e && e.code === "Z_BUF_ERROR")
      throw new Error(`the trace is cut short: its ${gz ? "gzip" : "brotli"} stream ends early`, {
        cause: e,
      });
    throw new Error(`not a ${gz ? "gzip" : "brotli"}-compressed simulator trace: ${e.message}`, { cause: e });
  }
  decoder.end();
  return n;
};
