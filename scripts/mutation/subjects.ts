/**
 * What `npm run mutate` mutates: every file of impl/ whose behaviour a spec/ file defines,
 * grouped by subject, each subject with the tests that cover it (its own
 * `impl/<subject>/**\/*.test.ts` and `properties/<subject>*.test.ts`). Subjects are listed
 * smallest first so a full run gives early figures.
 *
 * Left out on purpose: impl/queue/driver.ts (the guest side, a test helper), the Effect
 * devices and backends around the defined behaviour (vsock device/muxer/unix-backend,
 * usb-vsock endpoint/filler, net backend/guest/frame-pool/interceptor/packets) and
 * impl/native (real syscalls). properties/net-tap.test.ts is not run for net: it needs root
 * and /dev/net/tun, creates a network namespace per run, and covers device.ts no further
 * than properties/net.test.ts does.
 */
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";

export interface Subject {
  readonly name: string;
  /** Files to mutate, relative to the repository root. */
  readonly files: readonly string[];
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
];

/** The test files that cover a subject: impl/<name>/**\/*.test.ts and properties/<name>*.test.ts. */
export const testFilesOf = (root: string, subject: Subject): readonly string[] => {
  const own = readdirSync(join(root, "impl", subject.name), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".test.ts"))
    .map((f) => relative(root, join(root, "impl", subject.name, f)));
  const props = readdirSync(join(root, "properties"))
    .filter((f) => f.startsWith(subject.name) && f.endsWith(".test.ts"))
    .map((f) => `properties/${f}`);
  const skip = new Set(subject.skipTests ?? []);
  return [...own, ...props].filter((f) => !skip.has(f)).sort();
};

/** Every file any subject mutates. */
export const MUTATED_FILES: ReadonlySet<string> = new Set(SUBJECTS.flatMap((s) => s.files));
