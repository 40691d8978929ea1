import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { extractVmlinux, hasPvhNote, isDynamicElf, moduleDepends, moduleLoadOrder } from "./prepare.ts";

/** A minimal 64-bit ELF with one program header (PT_NOTE or PT_INTERP) over `body`. */
const elf = (phType: number, body: Buffer): Buffer => {
  const b = Buffer.alloc(64 + 56 + body.length);
  b.writeUInt32BE(0x7f454c46, 0);
  b[4] = 2; // 64-bit
  b[5] = 1; // little-endian
  b.writeBigUInt64LE(64n, 0x20); // e_phoff
  b.writeUInt16LE(56, 0x36); // e_phentsize
  b.writeUInt16LE(1, 0x38); // e_phnum
  b.writeUInt32LE(phType, 64);
  b.writeBigUInt64LE(120n, 64 + 8); // p_offset
  b.writeBigUInt64LE(BigInt(body.length), 64 + 32); // p_filesz
  body.copy(b, 120);
  return b;
};

const note = (name: string, type: number, desc: Buffer): Buffer => {
  const n = Buffer.from(name + "\0");
  const pad = (x: Buffer): Buffer => Buffer.concat([x, Buffer.alloc((4 - (x.length % 4)) % 4)]);
  const h = Buffer.alloc(12);
  h.writeUInt32LE(n.length, 0);
  h.writeUInt32LE(desc.length, 4);
  h.writeUInt32LE(type, 8);
  return Buffer.concat([h, pad(n), pad(desc)]);
};

/** A bzImage (boot protocol 2.15) whose payload is `payload` plus the appended size. */
const bzImage = (payload: Buffer, size: number): Buffer => {
  const setupSects = 1;
  const b = Buffer.alloc((setupSects + 1) * 512 + payload.length + 4);
  b[0x1f1] = setupSects;
  b.writeUInt32LE(0x53726448, 0x202); // "HdrS"
  b.writeUInt16LE(0x20f, 0x206);
  b.writeUInt32LE(0, 0x248);
  b.writeUInt32LE(payload.length + 4, 0x24c);
  payload.copy(b, 1024);
  b.writeUInt32LE(size, 1024 + payload.length);
  return b;
};

describe("guest preparation helpers", () => {
  const pvh = elf(4, Buffer.concat([note("GNU", 3, Buffer.alloc(20)), note("Xen", 18, Buffer.alloc(4))]));

  it("finds the PVH entry note (Xen, type 18) after other notes, and only that one", () => {
    expect(hasPvhNote(pvh)).toBe(true);
    expect(hasPvhNote(elf(4, note("Xen", 17, Buffer.alloc(4))))).toBe(false);
    expect(hasPvhNote(elf(4, note("Xe", 18, Buffer.alloc(4))))).toBe(false);
    expect(
      hasPvhNote(Buffer.from("not an elf at all, just text.........................................")),
    ).toBe(false);
  });

  it("tells a dynamically linked ELF (PT_INTERP) from a static one", () => {
    expect(isDynamicElf(elf(3, Buffer.from("/lib64/ld-linux-x86-64.so.2\0")))).toBe(true);
    expect(isDynamicElf(pvh)).toBe(false);
  });

  it("takes the kernel out of a bzImage through the setup header's payload fields", () => {
    const r = extractVmlinux(bzImage(gzipSync(pvh), pvh.length));
    expect(r.ok && r.value.equals(pvh)).toBe(true);
    const noPvh = elf(4, note("GNU", 3, Buffer.alloc(4)));
    const r2 = extractVmlinux(bzImage(gzipSync(noPvh), noPvh.length));
    expect(!r2.ok && r2.error.step).toBe("vmlinux");
    const r3 = extractVmlinux(Buffer.alloc(4096));
    expect(!r3.ok && r3.error.message).toMatch(/not a bzImage/);
    const r4 = extractVmlinux(bzImage(Buffer.from("BZh91AY&SY"), 10));
    expect(!r4.ok && r4.error.message).toMatch(/unsupported kernel compression/);
  });

  it("reads a module's depends= from its modinfo", () => {
    const ko = Buffer.from("\x7fELF....\0license=GPL\0depends=virtio_ring,virtio\0retpoline=Y\0");
    expect(moduleDepends(ko)).toEqual(["virtio_ring", "virtio"]);
    expect(moduleDepends(Buffer.from("\0depends=\0name=vsock\0"))).toEqual([]);
  });

  it("orders modules dependencies first, each once, and names what is missing or cyclic", () => {
    const deps: Record<string, string[]> = {
      virtio_ring: [],
      virtio: ["virtio_ring"],
      virtio_pci: ["virtio_ring", "virtio"],
      virtio_net: ["virtio_ring", "virtio", "net_failover"],
      net_failover: ["failover"],
      failover: [],
    };
    const r = moduleLoadOrder(["virtio_pci", "virtio_net"], (n) => deps[n]);
    expect(r.ok && r.value).toEqual([
      "virtio_ring",
      "virtio",
      "virtio_pci",
      "failover",
      "net_failover",
      "virtio_net",
    ]);
    const missing = moduleLoadOrder(["virtio_net"], (n) => (n === "failover" ? undefined : deps[n]));
    expect(!missing.ok && missing.error.message).toMatch(/failover \(needed by net_failover\)/);
    const cyclic = moduleLoadOrder(["a"], (n) => ({ a: ["b"], b: ["a"] })[n]);
    expect(!cyclic.ok && cyclic.error.message).toMatch(/cycle/);
  });
});
