import { describe, expect, it } from "vitest";
import { readCpio, writeCpio } from "./cpio.ts";

describe("cpio newc writer", () => {
  it("writes entries the reader gives back, every header and data start 4-byte aligned", () => {
    const data = new Uint8Array([1, 2, 3, 4, 5]);
    const bytes = writeCpio([
      { kind: "dir", path: "/bin" },
      { kind: "file", path: "bin/x", data, mode: 0o755 },
      { kind: "symlink", path: "./bin/sh", target: "busybox" },
      { kind: "chardev", path: "dev/console", major: 5, minor: 1 },
    ]);
    expect(bytes.length % 4).toBe(0);
    const back = readCpio(bytes);
    expect(back?.map((r) => r.name)).toEqual(["bin", "bin/x", "bin/sh", "dev/console"]);
    expect(back?.[0]?.mode).toBe(0o040755);
    expect(back?.[1]?.mode).toBe(0o100755);
    expect([...(back?.[1]?.data ?? [])]).toEqual([...data]);
    expect(back?.[2]?.mode).toBe(0o120777);
    expect(new TextDecoder().decode(back?.[2]?.data)).toBe("busybox");
    expect(back?.[3]).toMatchObject({ mode: 0o020600, rdevMajor: 5, rdevMinor: 1 });
    // The kernel's own rule: the name starts right after the 110-byte header and the data
    // at the next multiple of 4; "bin/x" (6 bytes with NUL) puts its data at 116.
    const dataAt = bytes.indexOf(1, 112 + 4);
    expect(dataAt % 4).toBe(0);
  });

  it("ends with the TRAILER!!! entry, so two archives concatenate into one initramfs", () => {
    const a = writeCpio([{ kind: "dir", path: "a" }]);
    const text = new TextDecoder().decode(a);
    expect(text.includes("TRAILER!!!")).toBe(true);
    expect(readCpio(a)?.length).toBe(1);
  });

  it("refuses paths that climb out or are empty", () => {
    expect(() => writeCpio([{ kind: "dir", path: "../etc" }])).toThrow(RangeError);
    expect(() => writeCpio([{ kind: "dir", path: "/" }])).toThrow(RangeError);
    expect(() => writeCpio([{ kind: "dir", path: "a//b" }])).toThrow(RangeError);
  });

  it("reads back nothing from bytes that are not newc", () => {
    expect(readCpio(new TextEncoder().encode("070707" + "0".repeat(200)))).toBeUndefined();
  });
});
