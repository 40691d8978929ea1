#!/usr/bin/env python3
"""Replays virtio-lab conformance vectors against an adapter, without Node.

    python3 replay_vectors.py VECTORS_DIR -- <adapter command...>

Standard library only. Follows docs/conformance-protocol.md section 8: every run starts with
`reset`; an `expect` step must match exactly (values) or by tag (errors); a `profiles` step
must match at least one profile still alive in the run. Prints one line per case and exits
1 when a case failed, 0 otherwise.
"""
import json
import os
import subprocess
import sys

PROFILES = ("firecracker", "rust-vmm", "cloud-hypervisor")


def canonical(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def matches(expect, answer):
    if expect["ok"] != answer.get("ok"):
        return False
    if expect["ok"]:
        return canonical(expect.get("value")) == canonical(answer.get("value"))
    return expect["error"]["_tag"] == answer.get("error", {}).get("_tag")


def project(outcome, keys):
    if keys is None or not outcome.get("ok") or not isinstance(outcome.get("value"), dict):
        return outcome
    v = outcome["value"]
    return {"ok": True, "value": {k: v[k] for k in keys if k in v}}


class Adapter:
    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.next_id = 1

    def send(self, op, args):
        rid = self.next_id
        self.next_id += 1
        self.proc.stdin.write(json.dumps({"id": rid, "op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if line == "":
                return {"ok": False, "error": {"_tag": "ProcessExited"}}
            answer = json.loads(line)
            if answer.get("id") == rid:
                return answer

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=5)


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    folder, argv = sys.argv[1], sys.argv[3:]
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    adapter = Adapter(argv)
    supported = set(adapter.send("hello", {})["value"]["ops"])
    failed = 0
    for case in manifest["cases"]:
        missing = [op for op in case["ops"] if op not in supported]
        if missing:
            print(f"skipped {case['id']} (unsupported: {', '.join(missing)})")
            continue
        runs = {}
        with open(os.path.join(folder, case["file"])) as f:
            for line in f:
                if line.strip():
                    step = json.loads(line)
                    runs.setdefault(step["run"], []).append(step)
        problem = None
        for k in sorted(runs):
            alive = set(PROFILES)
            for i, step in enumerate(runs[k]):
                answer = adapter.send(step["op"], step["args"])
                if "expect" in step:
                    ok = matches(step["expect"], answer)
                else:
                    keys = step.get("keys")
                    alive = {
                        p
                        for p in alive
                        if p not in step["profiles"] or matches(project(step["profiles"][p], keys), project(answer, keys))
                    }
                    ok = bool(alive)
                if not ok:
                    problem = f"run {k} step {i} {step['op']}: got {canonical(answer)[:200]}"
                    break
            if problem:
                break
        if problem:
            failed += 1
            print(f"fail    {case['id']}: {problem}")
        else:
            print(f"pass    {case['id']}")
    adapter.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
