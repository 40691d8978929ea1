#!/usr/bin/env python3
"""Replays virtio-lab conformance vectors against an adapter, without Node.

    python3 replay_vectors.py [--timeout MS] VECTORS_DIR -- <adapter command...>

  --timeout MS   per-request timeout in milliseconds (default 5000); a request past it
                 fails its case and the adapter is restarted for the next one; the
                 first request (hello) may take up to 60 s more while the adapter starts
  -h, --help     this text

Standard library only. Follows docs/conformance-protocol.md section 8: every run starts with
`reset`; an `expect` step must match exactly (values) or by tag (errors); a `profiles` step
must match at least one profile still alive in the run. Prints one line per case. Exit
status: 0 nothing failed, 1 a case failed, 2 a usage or setup error (one line on stderr,
before any request is sent).
"""
import json
import os
import queue
import re
import subprocess
import sys
import threading

PROG = "replay_vectors.py"
# Starting an adapter (a Node program, say) on a loaded machine can take seconds.
STARTUP_S = 60

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


class Timeout(Exception):
    pass


class Adapter:
    """The adapter process; a reader thread hands its lines over so a read can time out."""

    def __init__(self, argv, timeout_s):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.timeout_s = timeout_s
        self.next_id = 1
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def send(self, op, args, extra_s=0):
        rid = self.next_id
        self.next_id += 1
        try:
            self.proc.stdin.write(json.dumps({"id": rid, "op": op, "args": args}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return {"ok": False, "error": {"_tag": "ProcessExited"}}
        while True:
            try:
                line = self.lines.get(timeout=self.timeout_s + extra_s)
            except queue.Empty:
                raise Timeout(f"no answer to {op} within {round((self.timeout_s + extra_s) * 1000)} ms")
            if line == "":
                return {"ok": False, "error": {"_tag": "ProcessExited"}}
            try:
                answer = json.loads(line)
            except ValueError:
                return {"ok": False, "error": {"_tag": "NotJson"}, "line": line[:200]}
            if isinstance(answer, dict) and answer.get("id") == rid:
                return answer

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        self.proc.kill()
        self.proc.wait()


class Usage(Exception):
    pass


def parse_args(argv):
    """[--timeout MS] VECTORS_DIR -- COMMAND...; numbers are decimal digits only."""
    if any(a in ("-h", "--help") for a in argv[: argv.index("--") if "--" in argv else len(argv)]):
        return None
    if "--" not in argv:
        raise Usage("missing -- before the adapter command")
    head, command = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    timeout_ms, folder = 5000, None
    i = 0
    while i < len(head):
        a = head[i]
        if a == "--timeout" or a.startswith("--timeout="):
            raw = a.split("=", 1)[1] if "=" in a else (head[i + 1] if i + 1 < len(head) else None)
            i += 0 if "=" in a else 1
            if raw is None:
                raise Usage("--timeout needs a value")
            if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
                raise Usage(f"--timeout must be an integer >= 1, got {json.dumps(raw)}")
            timeout_ms = int(raw)
        elif a.startswith("-"):
            raise Usage(f"unknown option {a}; valid options: --timeout, --help")
        elif folder is None:
            folder = a
        else:
            raise Usage(f"one vectors directory, got {folder} and {a}")
        i += 1
    if folder is None:
        raise Usage("a vectors directory is required")
    if not command:
        raise Usage("an adapter command is required after --")
    return folder, command, timeout_ms / 1000


def load_manifest(folder):
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except OSError as e:
        raise Usage(f"{path}: cannot read: {e.strerror}")
    except ValueError as e:
        raise Usage(f"{path}: not JSON: {e}")
    cases = manifest.get("cases") if isinstance(manifest, dict) else None
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "id" in c and "file" in c for c in cases):
        raise Usage(f"{path}: not a vectors manifest (cases with id and file)")
    for c in cases:
        if not os.path.isfile(os.path.join(folder, c["file"])):
            raise Usage(f"{path}: case file {c['file']} is missing")
    return manifest


def main():
    try:
        parsed = parse_args(sys.argv[1:])
        if parsed is None:
            print(__doc__.strip())
            return 0
        folder, argv, timeout_s = parsed
        manifest = load_manifest(folder)
        try:
            adapter = Adapter(argv, timeout_s)
        except OSError as e:
            raise Usage(f"cannot start the adapter {argv[0]}: {e.strerror}")
        try:
            hello = adapter.send("hello", {}, STARTUP_S)
        except Timeout as e:
            adapter.kill()
            raise Usage(f"the adapter did not answer hello: {e}")
        if not hello.get("ok") or not isinstance(hello.get("value", {}).get("ops"), list):
            adapter.kill()
            raise Usage(f"the adapter did not answer hello: {canonical(hello)[:200]}")
    except Usage as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        print(f"try: python3 {PROG} --help", file=sys.stderr)
        return 2
    supported = set(hello["value"]["ops"])
    failed = 0
    for case in manifest["cases"]:
        missing = [op for op in case["ops"] if op not in supported]
        if missing:
            print(f"skipped {case['id']} (unsupported: {', '.join(missing)})")
            continue
        runs = {}
        problem = None
        with open(os.path.join(folder, case["file"])) as f:
            for n, line in enumerate(f, 1):
                try:
                    step = json.loads(line) if line.strip() else None
                    if step is not None:
                        runs.setdefault(step["run"], []).append(step)
                except (ValueError, KeyError, TypeError):
                    problem = f"{case['file']} line {n} is not a vectors step"
                    runs = {}
                    break
        for k in sorted(runs):
            alive = set(PROFILES)
            for i, step in enumerate(runs[k]):
                try:
                    answer = adapter.send(step["op"], step["args"])
                except Timeout as e:
                    problem = f"run {k} step {i} {step['op']}: {e} (adapter restarted)"
                    adapter.kill()
                    adapter = Adapter(argv, timeout_s)
                    break
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
