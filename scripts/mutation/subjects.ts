/**
 * What `npm run mutate` mutates: every file of impl/ whose behaviour a spec/ file defines,
 * grouped by subject, each subject with the tests that cover it (its own
 * `impl/<subject>/**\/*.test.ts` and `properties/<subject>*.test.ts`). Subjects are listed
 * smallest first so a full run gives early figures.
 *
 * The packed ring (impl/queue/packed-queue.ts, packed-chain.ts) is a subject of its own:
 * spec/packed-queue.ts defines it rule for rule (PVQ-*), and its tests are the packed ones of
 * impl/queue/ and properties/packed-*.test.ts (the split ring's files keep all of impl/queue/'s).
 *
 * Left out on purpose: impl/queue/split-driver.ts and packed-driver.ts (the guest side, test and simulator drivers), the Effect
 * devices and backends around the defined behaviour (vsock device/muxer/unix-backend,
 * usb-vsock endpoint/filler, net backend/guest/frame-pool/interceptor/packets) and
 * impl/native (real syscalls). properties/net-tap.test.ts is not run for net: it needs root
 * and /dev/net/tun, creates a network namespace per run, and covers device.ts no further
 * than properties/net.test.ts does.
 */
import { readdirSync } from "node:fs";
import { basename, join, relative } from "node:path";

export interface Subject {
  readonly name: string;
  /** Files to mutate, relative to the repository root. */
  readonly files: readonly string[];
  /** The folder of impl/ whose tests cover it (default: the name). */
  readonly dir?: string;
  /** Only those tests of `dir` whose file names start with this (default: all of them). */
  readonly testPrefix?: string;
  /** Test files of the subject not to run (relative to the root), with the reason above. */
  readonly skipTests?: readonly string[];
}

export const SUBJECTS: readonly Subject[] = [
  { name: "memory", files: ["impl/memory/guest-memory.ts"] },
  {
    name: "iovec",
    files: ["impl/iovec/segment-list.ts", "impl/iovec/sinks.ts", "impl/iovec/iovec.ts"],
  },
  {
    name: "usb-vsock",
    files: ["impl/usb-vsock/packet.ts", "impl/usb-vsock/protocol.ts"],
  },
  {
    name: "vsock",
    files: ["impl/vsock/header.ts", "impl/vsock/packet.ts", "impl/vsock/connection.ts"],
  },
  {
    name: "net",
    files: ["impl/net/header.ts", "impl/net/features.ts", "impl/net/config.ts", "impl/net/device.ts"],
    skipTests: ["properties/net-tap.test.ts"],
  },
  {
    name: "queue",
    files: ["impl/queue/descriptor-chain.ts", "impl/queue/split-queue.ts"],
  },
  {
    name: "packed",
    dir: "queue",
    testPrefix: "packed",
    files: ["impl/queue/packed-chain.ts", "impl/queue/packed-queue.ts"],
  },
];

/**
 * The test files that cover a subject: impl/<dir>/**\/<testPrefix>*.test.ts and
 * properties/<name>*.test.ts, less `skipTests`.
 */
export const testFilesOf = (root: string, subject: Subject): readonly string[] => {
  const dir = join(root, "impl", subject.dir ?? subject.name);
  const prefix = subject.testPrefix ?? "";
  const own = readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".test.ts") && basename(f).startsWith(prefix))
    .map((f) => relative(root, join(dir, f)));
  const props = readdirSync(join(root, "properties"))
    .filter((f) => f.startsWith(subject.name) && f.endsWith(".test.ts"))
    .map((f) => `properties/${f}`);
  const skip = new Set(subject.skipTests ?? []);
  return [...own, ...props].filter((f) => !skip.has(f)).sort();
};

/** Every file any subject mutates. */
export const MUTATED_FILES: ReadonlySet<string> = new Set(SUBJECTS.flatMap((s) => s.files));
