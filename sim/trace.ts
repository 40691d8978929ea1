/**
 * The simulator's trace: a compact binary stream written while the run goes, decoded on
 * demand (`npx tsx sim trace FILE`) into one JSON object per line,
 * `{"s":step,"t":µs,"k":kind,...}`.
 *
 * Encoding (every count and id an unsigned LEB128 varint):
 * - the stream starts with the 4 bytes `VTR1`;
 * - a record starts with a code: 0 defines an event kind (id, name, key count, keys),
 *   1 is reserved, n >= 2 is an event of kind
 *   n - 2: the step as a zigzag delta from the last event's, the virtual time in ns as a
 *   delta (time never goes back), then one tagged value per key of the kind;
 * - a value is a tag then its payload: null, false, true, an unsigned integer, a negative
 *   integer (its magnitude), a float64, a string defined here (it takes the next id), a
 *   defined string's id, a literal string, an array of numbers, an array of strings.
 *
 * Kinds and short strings are defined once, so an event costs a few bytes and no JSON.
 * The SHA-256 of the byte stream identifies a run (two runs with the same seed and options
 * give the same bytes: SIM-DETERMINISM).
 */
import { createHash, type Hash } from "node:crypto";

export type TraceValue = number | string | boolean | null | readonly number[] | readonly string[];
export type TraceFields = Readonly<Record<string, TraceValue>>;

export const TRACE_MAGIC = Uint8Array.of(0x56, 0x54, 0x52, 0x31); // "VTR1"

const DEF_KIND = 0;
const RESERVED = 1;
const FIRST_EVENT = 2;

const T_NULL = 0;
const T_FALSE = 1;
const T_TRUE = 2;
const T_UINT = 3;
const T_NEG = 4;
const T_F64 = 5;
const T_STR_REF = 6;
const T_STR = 7;
const T_NUMS = 8;
const T_STRS = 9;
const T_STR_DEF = 10;

/** Strings up to this length are defined once and named by id after. */
const INTERN_MAX_LEN = 48;
/** At most this many defined strings per trace (memory stays bounded in any run). */
const INTERN_MAX = 4096;
const CHUNK = 1 << 16;

/** The virtual clock as the trace reads it (whole nanoseconds). */
export interface TraceClock {
  readonly nowNs: number;
}

/** Where chunks of the stream go; a promise asks the engine to wait (back-pressure). */
export type TraceSink = (chunk: Uint8Array) => void | Promise<void>;

const utf8 = new TextEncoder();

export class Trace {
  readonly on: boolean;
  events = 0;
  /** The step events are stamped with (the engine moves it). */
  step = 0;
  /** Set when the sink asked to wait; the engine awaits it between steps. */
  pending: Promise<void> | null = null;
  private buf = new Uint8Array(CHUNK);
  private view = new DataView(this.buf.buffer);
  private pos = 0;
  private lastStep = 0;
  private lastNs = 0;
  /** Values still owed to the event being written (a mismatch is a simulator bug). */
  private left = 0;
  private readonly kinds = new Map<string, number>();
  private readonly strings = new Map<string, number>();
  /** A defined string and its id, the last one named by reference. */
  private lastStr: string | null = null;
  private lastStrId = 0;
  private readonly hash: Hash = createHash("sha256");
  private readonly sink: TraceSink | null;
  private readonly clock: TraceClock;

  constructor(clock: TraceClock, on: boolean, sink: TraceSink | null) {
    this.clock = clock;
    this.on = on;
    this.sink = sink;
    if (on) {
      this.buf.set(TRACE_MAGIC);
      this.pos = TRACE_MAGIC.length;
    }
  }

  /**
   * An event kind with these keys, for the hot paths: `begin(kind)` then one value call
   * per key, in order. Defined in the stream when first made. -1 when the trace is off.
   */
  kind(name: string, keys: readonly string[]): number {
    if (!this.on) return -1;
    const sig = `${name}\u0000${keys.join("\u0000")}`;
    const have = this.kinds.get(sig);
    if (have !== undefined) return have;
    const id = this.kinds.size;
    this.kinds.set(sig, id);
    this.uint(DEF_KIND);
    this.uint(id);
    this.literal(name);
    this.uint(keys.length);
    for (const k of keys) this.literal(k);
    return id;
  }

  /** Starts an event of `kind` (from `kind()`); false when the trace is off. */
  begin(kind: number, keys: number): boolean {
    if (!this.on) return false;
    if (this.left !== 0) throw new Error(`trace: the previous event is ${this.left} values short`);
    this.events++;
    // Room for the three varints (8 bytes each at most: values below 2^53).
    this.ensure(24);
    this.putUint(kind + FIRST_EVENT);
    const d = this.step - this.lastStep;
    this.lastStep = this.step;
    this.putUint(d >= 0 ? d * 2 : -d * 2 - 1);
    const ns = this.clock.nowNs;
    this.putUint(ns - this.lastNs);
    this.lastNs = ns;
    this.left = keys;
    return true;
  }

  /** Any event: the kind and keys are looked up by name (the hot paths use kind/begin). */
  event(kind: string, fields?: TraceFields): void {
    if (!this.on) return;
    const keys = fields === undefined ? [] : Object.keys(fields);
    this.begin(this.kind(kind, keys), keys.length);
    for (const k of keys) this.value(fields![k]!);
  }

  /** A number value (an integer is a varint; anything else a float64). */
  num(v: number): void {
    this.left--;
    this.ensure(10);
    // Most values are small unsigned integers (ids, counts, lengths): one or two bytes
    // without the general checks. -0 is 0 here but must stay a float64 (1 / -0 < 0).
    if (v >>> 0 === v && v < 0x4000 && (v !== 0 || 1 / v > 0)) {
      const b = this.buf;
      let p = this.pos;
      b[p++] = T_UINT;
      if (v < 0x80) b[p++] = v;
      else {
        b[p++] = (v & 0x7f) | 0x80;
        b[p++] = v >>> 7;
      }
      this.pos = p;
      return;
    }
    if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
      if (v >= 0) {
        this.buf[this.pos++] = T_UINT;
        this.uint(v);
      } else {
        this.buf[this.pos++] = T_NEG;
        this.uint(-v);
      }
    } else {
      this.buf[this.pos++] = T_F64;
      this.view.setFloat64(this.pos, v, true);
      this.pos += 8;
    }
  }

  bool(v: boolean): void {
    this.left--;
    this.ensure(1);
    this.buf[this.pos++] = v ? T_TRUE : T_FALSE;
  }

  str(v: string): void {
    this.left--;
    // The string named last (often the same: a queue's name in each of its events).
    if (v === this.lastStr) {
      this.ensure(6);
      this.buf[this.pos++] = T_STR_REF;
      this.putUint(this.lastStrId);
      return;
    }
    if (v.length <= INTERN_MAX_LEN) {
      const id = this.strings.get(v);
      if (id === undefined && this.strings.size < INTERN_MAX) {
        this.strings.set(v, this.strings.size);
        this.ensure(1);
        this.buf[this.pos++] = T_STR_DEF;
        this.literal(v);
        return;
      }
      if (id !== undefined) {
        this.lastStr = v;
        this.lastStrId = id;
        this.ensure(6);
        this.buf[this.pos++] = T_STR_REF;
        this.putUint(id);
        return;
      }
    }
    this.ensure(1);
    this.buf[this.pos++] = T_STR;
    this.literal(v);
  }

  /** A string or null. */
  strOrNull(v: string | null): void {
    if (v !== null) return this.str(v);
    this.left--;
    this.ensure(1);
    this.buf[this.pos++] = T_NULL;
  }

  private value(v: TraceValue): void {
    if (typeof v === "number") return this.num(v);
    if (typeof v === "string") return this.str(v);
    if (typeof v === "boolean") return this.bool(v);
    if (v === null) return this.strOrNull(null);
    this.left--;
    const strs = v.length > 0 && typeof v[0] === "string";
    this.ensure(6);
    this.buf[this.pos++] = strs ? T_STRS : T_NUMS;
    this.uint(v.length);
    for (const x of v) {
      this.left++;
      if (typeof x === "string") this.str(x);
      else this.num(x);
    }
  }

  private uint(v: number): void {
    this.ensure(8);
    this.putUint(v);
  }

  /** A varint where room is already ensured. */
  private putUint(v: number): void {
    const b = this.buf;
    let p = this.pos;
    // Below 2^31 in 32-bit integer steps; above, in float division (exact to 2^53).
    if (v < 0x8000_0000) {
      while (v >= 0x80) {
        b[p++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      b[p++] = v;
      this.pos = p;
      return;
    }
    while (v >= 0x80) {
      b[p++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    b[p++] = v;
    this.pos = p;
  }

  private literal(s: string): void {
    this.ensure(8 + 3 * s.length);
    // Room for the longest length varint, then the bytes, then the length moved into place.
    const start = this.pos;
    const { written } = utf8.encodeInto(s, this.buf.subarray(start + 5));
    this.putUint(written);
    const lenBytes = this.pos - start;
    this.buf.copyWithin(this.pos, start + 5, start + 5 + written);
    this.pos = start + lenBytes + written;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    this.flush();
    if (n > this.buf.length) {
      this.buf = new Uint8Array(n);
      this.view = new DataView(this.buf.buffer);
    }
  }

  /** Hands what is buffered to the hash and the sink. */
  flush(): void {
    if (this.pos === 0) return;
    const chunk = this.buf.subarray(0, this.pos);
    this.hash.update(chunk);
    if (this.sink !== null) {
      const r = this.sink(chunk.slice());
      if (r !== undefined) this.pending = this.pending === null ? r : this.pending.then(() => r);
    }
    this.pos = 0;
  }

  /** Flushes and returns the hex SHA-256 of the stream so far. */
  digest(): string {
    this.flush();
    return this.hash.copy().digest("hex");
  }
}

/** Thrown inside the decoder when a record runs past the bytes it has (wait for more). */
class NeedMore {}
const NEED_MORE = new NeedMore();

const utf8d = new TextDecoder();

/**
 * Decodes a trace stream, chunk by chunk (a record may straddle chunks), into the JSON
 * lines it stands for. Throws an Error with a one-line reason on bytes that are not a trace.
 */
export class TraceDecoder {
  private carry: Uint8Array = new Uint8Array(0);
  private p = 0;
  private b: Uint8Array = this.carry;
  private started = false;
  private step = 0;
  private ns = 0;
  private readonly kinds: { readonly prefix: string; readonly keys: readonly string[] }[] = [];
  private readonly strings: string[] = [];
  /** Bytes decoded so far (for error messages). */
  private offset = 0;

  /** The JSON lines of every whole record in `chunk` and what came before it. */
  push(chunk: Uint8Array): string[] {
    if (this.carry.length > 0) {
      const both = new Uint8Array(this.carry.length + chunk.length);
      both.set(this.carry);
      both.set(chunk, this.carry.length);
      this.b = both;
    } else this.b = chunk;
    this.p = 0;
    const out: string[] = [];
    if (!this.started) {
      if (this.b.length < TRACE_MAGIC.length) {
        this.carry = this.b.slice();
        return out;
      }
      for (let i = 0; i < TRACE_MAGIC.length; i++)
        if (this.b[i] !== TRACE_MAGIC[i])
          throw new Error(
            "not a simulator trace (no VTR1 header); traces are trace.bin, trace.bin.br or trace.bin.gz",
          );
      this.started = true;
      this.p = TRACE_MAGIC.length;
    }
    let recordStart = this.p;
    let strings = this.strings.length;
    try {
      while (this.p < this.b.length) {
        recordStart = this.p;
        strings = this.strings.length;
        const line = this.record();
        if (line !== null) out.push(line);
      }
      recordStart = this.p;
    } catch (e) {
      if (e !== NEED_MORE) throw e;
      // The unfinished record is read again with the next chunk: forget what it defined.
      this.strings.length = strings;
    }
    this.offset += recordStart;
    this.carry = this.b.slice(recordStart);
    return out;
  }

  /** Throws unless the stream ended on a record boundary. */
  end(): void {
    if (!this.started) throw new Error("not a simulator trace: empty or shorter than its header");
    if (this.carry.length > 0)
      throw new Error(
        `the trace is cut short: ${this.carry.length} bytes of an unfinished record at the end`,
      );
  }

  private byte(): number {
    if (this.p >= this.b.length) throw NEED_MORE;
    return this.b[this.p++]!;
  }

  private uint(): number {
    let v = 0;
    let mul = 1;
    for (;;) {
      const x = this.byte();
      v += (x & 0x7f) * mul;
      if (x < 0x80) return v;
      mul *= 0x80;
      if (mul > 2 ** 56) throw new Error(`bad trace: a varint too long at byte ${this.offset + this.p}`);
    }
  }

  private literal(): string {
    const n = this.uint();
    if (this.p + n > this.b.length) throw NEED_MORE;
    const s = utf8d.decode(this.b.subarray(this.p, this.p + n));
    this.p += n;
    return s;
  }

  private value(): string {
    const tag = this.byte();
    switch (tag) {
      case T_NULL:
        return "null";
      case T_FALSE:
        return "false";
      case T_TRUE:
        return "true";
      case T_UINT:
        return String(this.uint());
      case T_NEG:
        return String(-this.uint());
      case T_F64: {
        if (this.p + 8 > this.b.length) throw NEED_MORE;
        const v = new DataView(this.b.buffer, this.b.byteOffset + this.p, 8).getFloat64(0, true);
        this.p += 8;
        return JSON.stringify(v);
      }
      case T_STR_REF: {
        const id = this.uint();
        const s = this.strings[id];
        if (s === undefined) throw new Error(`bad trace: string ${id} used before it is defined`);
        return JSON.stringify(s);
      }
      case T_STR:
        return JSON.stringify(this.literal());
      case T_STR_DEF: {
        const s = this.literal();
        this.strings.push(s);
        return JSON.stringify(s);
      }
      case T_NUMS:
      case T_STRS: {
        const n = this.uint();
        const parts: string[] = [];
        for (let i = 0; i < n; i++) parts.push(this.value());
        return `[${parts.join(",")}]`;
      }
      default:
        throw new Error(`bad trace: unknown value tag ${tag} at byte ${this.offset + this.p - 1}`);
    }
  }

  private record(): string | null {
    const code = this.uint();
    if (code === DEF_KIND) {
      const id = this.uint();
      const name = this.literal();
      const n = this.uint();
      const keys: string[] = [];
      for (let i = 0; i < n; i++) keys.push(this.literal());
      if (id !== this.kinds.length) throw new Error(`bad trace: kind ${id} defined out of order`);
      this.kinds.push({
        prefix: `,"k":${JSON.stringify(name)}`,
        keys: keys.map((k) => `,${JSON.stringify(k)}:`),
      });
      return null;
    }
    if (code === RESERVED) throw new Error(`bad trace: record code 1 at byte ${this.offset + this.p - 1}`);
    const kind = this.kinds[code - FIRST_EVENT];
    if (kind === undefined) throw new Error(`bad trace: event of undefined kind ${code - FIRST_EVENT}`);
    const z = this.uint();
    const step = this.step + (z % 2 === 0 ? z / 2 : -(z + 1) / 2);
    const ns = this.ns + this.uint();
    let line = `{"s":${step},"t":${ns / 1000}${kind.prefix}`;
    for (const k of kind.keys) line += k + this.value();
    // Commit the position only once the whole record is read.
    this.step = step;
    this.ns = ns;
    return line + "}";
  }
}

/** Every JSON line of a whole trace held in memory (tests, small traces). */
export const decodeTrace = (bytes: Uint8Array): string[] => {
  const d = new TraceDecoder();
  const lines = d.push(bytes);
  d.end();
  return lines;
};
