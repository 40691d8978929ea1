#!/usr/bin/env python3
"""Starter adapter for the virtio-lab conformance protocol (docs/conformance-protocol.md).

Standard library only. It implements hello, reset and memory.* over byte arrays and answers
every other op {"_tag": "Unsupported"}, so the suite runs the memory cases and skips the rest.
To test your own code, replace the bodies of the memory ops (or add ops) with calls into it,
and list each op you implement in OPS.

    npx tsx sim conform --impl "python3 conformance/adapters/python/adapter.py"
"""
import json
import sys

U64 = 1 << 64
MAX_TOTAL = 64 << 20  # what this adapter will allocate (more: ResourceLimit)
OPS = ["hello", "reset", "memory.create", "memory.read", "memory.write"]


class Refused(Exception):
    """An error answer: the tag is a name from the protocol's error vocabulary."""

    def __init__(self, tag):
        super().__init__(tag)
        self.tag = tag


def u64(v):
    """A u64 argument: a decimal string (or a small JSON number)."""
    if isinstance(v, bool):
        raise Refused("BadRequest")
    if isinstance(v, int) and 0 <= v < U64:
        return v
    if isinstance(v, str) and v.isdigit() and int(v) < U64:
        return int(v)
    raise Refused("BadRequest")


def uint(v):
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
        raise Refused("BadRequest")
    return v


class Session:
    def __init__(self):
        self.regions = None  # list of (base, bytearray), sorted by base

    # ---- memory.*: replace with your guest memory ------------------------------------------

    def create(self, args):
        regions = args.get("regions")
        if not isinstance(regions, list):
            raise Refused("BadRequest")
        if not regions:
            raise Refused("NoMemoryRegion")
        out, total = [], 0
        for r in regions:
            if not isinstance(r, dict):
                raise Refused("BadRequest")
            base, size = u64(r.get("base")), uint(r.get("size"))
            if size == 0:
                raise Refused("EmptyRegion")
            if base + size > U64:
                raise Refused("RegionOutOfRange")
            total += size
            if total > MAX_TOTAL:
                raise Refused("ResourceLimit")
            out.append((base, size))
        out.sort()
        for (a, n), (b, _) in zip(out, out[1:]):
            if a + n > b:
                raise Refused("OverlappingRegions")
        self.regions = [(base, bytearray(size)) for base, size in out]
        return None

    def pieces(self, addr, length):
        """[(region bytes, offset, n)] covering [addr, addr+length) across touching regions."""
        if self.regions is None:
            raise Refused("NotConfigured")
        if addr + length > U64:
            raise Refused("GuestAddressOverflow")
        out, at, end = [], addr, addr + length
        while at < end:
            hit = next(((b, m) for b, m in self.regions if b <= at < b + len(m)), None)
            if hit is None:
                raise Refused("InvalidGuestAddress")
            base, mem = hit
            n = min(base + len(mem), end) - at
            out.append((mem, at - base, n))
            at += n
        return out

    def read(self, args):
        data = b"".join(bytes(m[o : o + n]) for m, o, n in self.pieces(u64(args.get("addr")), uint(args.get("len"))))
        return {"data": data.hex()}

    def write(self, args):
        hexdata = args.get("data")
        try:
            data = bytes.fromhex(hexdata) if isinstance(hexdata, str) and len(hexdata) % 2 == 0 else None
        except ValueError:
            data = None
        if data is None:
            raise Refused("BadRequest")
        done = 0
        for m, o, n in self.pieces(u64(args.get("addr")), len(data)):
            m[o : o + n] = data[done : done + n]
            done += n
        return None


def answer(session, op, args):
    if op == "hello":
        return session, {"protocol": 1, "name": "python starter adapter", "ops": OPS}
    if op == "reset":
        return Session(), None
    table = {"memory.create": session.create, "memory.read": session.read, "memory.write": session.write}
    if op not in table:
        raise Refused("Unsupported")
    return session, table[op](args)


def main():
    session = Session()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            rid = req["id"]
        except (ValueError, KeyError, TypeError):
            print(json.dumps({"id": -1, "ok": False, "error": {"_tag": "BadRequest"}}), flush=True)
            continue
        args = req.get("args") or {}
        try:
            session, value = answer(session, req.get("op"), args if isinstance(args, dict) else {})
            out = {"id": rid, "ok": True, "value": value}
        except Refused as e:
            out = {"id": rid, "ok": False, "error": {"_tag": e.tag}}
        except Exception as e:  # your code threw: say so, keep serving
            out = {"id": rid, "ok": False, "error": {"_tag": "InternalError", "message": str(e)}}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
