#!/usr/bin/env python3
"""Replays virtio-lab conformance vectors against an adapter, without Node.

    python3 replay_vectors.py [--timeout MS] [--json FILE] VECTORS_DIR -- <adapter command...>

  --timeout MS   per-request timeout in milliseconds (default 5000); a request past it is
                 answered Timeout (a difference) and the adapter is restarted for the next
                 request; the first request after a start may take up to 60 s more
  --json FILE    also write the verdict, per case and per rule, as JSON to FILE
  -h, --help     this text

Standard library only. Judges as `sim conform --vectors` does (docs/conformance-protocol.md
section 8), with the tables the manifest's "judging" gives: every run of every case is run
(each starts with `reset`); a difference is charged to the step's rules (else the case's)
at the step's level (profile for a profiles step, safety for a safe step, else the case's);
at safety level any refusal matches an expected error; chain walk fields the answer leaves
out are not compared; Unsupported / ResourceLimit answers skip the run; an implementation
that refuses a setup step with the error a later step expects passes (refused early); a
profiles step passes when some profile with an opinion matches, and the case reports the
profiles every passing run agreed with. Error tags are first mapped through hello's
`errors` and the manifest's errorAliases.

Prints one line per case, then one per failing rule and the verdict. Exit status: 0 no MUST
or SAFETY rule failed, 1 one did or nothing was tested, 2 a usage or setup error (one line on
stderr, before any request is sent).
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
LEVELS = ("must", "safety", "profile")


def canonical(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def show(o):
    return "ok " + canonical(o.get("value")) if o.get("ok") else "error " + o["error"]["_tag"]


class Judge:
    """The comparisons of docs/conformance-protocol.md section 8, over the manifest's tables."""

    def __init__(self, judging, own_errors):
        self.profiles = list(judging["profiles"])
        self.skip = set(judging["skipTags"])
        self.not_a_refusal = set(judging["notARefusal"])
        self.walk_keys = set(judging["optionalWalkKeys"])
        self.walk_ops = set(judging["optionalWalkOps"])
        self.aliases = judging["errorAliases"]
        self.own = own_errors

    def normalize(self, op, o):
        if o.get("ok"):
            return o
        tag = o["error"]["_tag"]
        new = self.own.get(tag)
        if new is None:
            new = next((a["tag"] for a in self.aliases if a["peer"] == tag and a["op"] in ("*", op)), tag)
        return o if new == tag else {"ok": False, "error": dict(o["error"], _tag=new, peerTag=tag)}

    def drop_absent(self, expected, actual):
        if isinstance(expected, list) and isinstance(actual, list):
            return [self.drop_absent(e, actual[i]) if i < len(actual) else e for i, e in enumerate(expected)]
        if not isinstance(expected, dict) or not isinstance(actual, dict):
            return expected
        return {
            k: (self.drop_absent(v, actual[k]) if k in actual else v)
            for k, v in expected.items()
            if not (k in self.walk_keys and k not in actual)
        }

    def matches(self, expect, answer, op=None, any_refusal=False):
        if expect["ok"] != answer.get("ok"):
            return False
        if not expect["ok"]:
            tag = answer["error"]["_tag"]
            return tag == expect["error"]["_tag"] or (any_refusal and tag not in self.not_a_refusal)
        want = expect.get("value")
        if op in self.walk_ops:
            want = self.drop_absent(want, answer.get("value"))
        return canonical(want) == canonical(answer.get("value"))


def project(outcome, keys):
    if keys is None or not outcome.get("ok") or not isinstance(outcome.get("value"), dict):
        return outcome
    v = outcome["value"]
    return {"ok": True, "value": {k: v[k] for k in keys if k in v}}


def step_level(step, case_level):
    return "profile" if "profiles" in step else "safety" if step.get("safe") else case_level


def early_refusal(steps, at, got):
    """A refusal earlier than the model's: the first later step expecting an error expects this tag."""
    if got.get("ok"):
        return -1
    for j in range(at + 1, len(steps)):
        e = steps[j].get("expect")
        if e is None or e["ok"]:
            continue
        return j if e["error"]["_tag"] == got["error"]["_tag"] else -1
    return -1


def exec_run(adapter, judge, steps, level, case_rules):
    """One run: {status, failedAt, message, checked, charged, profiles, opined}."""
    checked, opined = set(), set()
    profiles = list(judge.profiles)

    def keys(s):
        lvl = step_level(s, level)
        return {(lvl, r) for r in (s.get("rules") or case_rules)}

    def end(status, at, message, charged=()):
        return {
            "status": status,
            "failedAt": at,
            "message": message,
            "checked": checked,
            "charged": set(charged),
            "profiles": [] if status == "fail" else profiles,
            "opined": opined,
        }

    for i, s in enumerate(steps):
        got = judge.normalize(s["op"], adapter.send(s["op"], s["args"]))
        lvl = step_level(s, level)
        tag = None if got.get("ok") else got["error"]["_tag"]
        if "expect" in s:
            if judge.matches(s["expect"], got, s["op"], any_refusal=lvl == "safety"):
                if i > 0:
                    checked |= keys(s)
                continue
            if tag in judge.skip:
                return end("skipped", i, f"step {i} {s['op']}: {tag}")
            later = early_refusal(steps, i, got)
            if later >= 0:
                checked |= keys(steps[later])
                return end("pass", -1, f"step {i} {s['op']}: refused early with {show(got)} (step {later})")
            return end("fail", i, f"step {i} {s['op']}: expected {show(s['expect'])}, got {show(got)}", keys(s))
        if s.get("safe"):
            if tag is None or tag not in judge.not_a_refusal:
                if tag in judge.skip:
                    return end("skipped", i, f"step {i} {s['op']}: {tag}")
                if i > 0:
                    checked |= keys(s)
                continue
            return end("fail", i, f"step {i} {s['op']}: hostile input answered with {show(got)}", keys(s))
        exp, pkeys = s["profiles"], s.get("keys")
        opined |= {p for p in judge.profiles if p in exp}
        matched = [
            p for p in judge.profiles if p in exp and judge.matches(project(exp[p], pkeys), project(got, pkeys), s["op"])
        ]
        if not matched:
            if tag in judge.skip:
                return end("skipped", i, f"step {i} {s['op']}: {tag}")
            wanted = "; ".join(f"{p}: {show(exp[p])}" for p in judge.profiles if p in exp)
            return end(
                "fail", i, f"step {i} {s['op']}: got {show(got)}, which matches no profile ({wanted})", keys(s)
            )
        profiles = [p for p in profiles if p not in exp or p in matched]
        checked |= keys(s)
    return end("pass", -1, "")


def run_case(adapter, judge, case, runs):
    """Every run of one case: per rule (level, id) the runs that differed / checked it."""
    tally = {}
    agreed, opined = list(judge.profiles), set()
    differed = skipped = 0
    smallest, first_skip = None, ""
    for steps in runs:
        r = exec_run(adapter, judge, steps, case["level"], case["rules"])
        for k in r["checked"]:
            tally.setdefault(k, {"differed": 0, "checked": 0, "cx": None})["checked"] += 1
        opined |= r["opined"]
        if r["status"] == "skipped":
            skipped += 1
            first_skip = first_skip or r["message"]
            continue
        if r["status"] == "pass":
            agreed = [p for p in agreed if p in r["profiles"]]
            continue
        differed += 1
        if smallest is None or r["failedAt"] < smallest["failedAt"]:
            smallest = r
        for k in r["charged"]:
            e = tally.setdefault(k, {"differed": 0, "checked": 0, "cx": None})
            e["differed"] += 1
            if e["cx"] is None or r["failedAt"] < e["cx"]["failedAt"]:
                e["cx"] = r
    status = "fail" if differed else "skipped" if skipped == len(runs) else "pass"
    reason = (
        smallest["message"]
        if status == "fail"
        else f"every run skipped ({first_skip})"
        if status == "skipped"
        else f"{skipped} of {len(runs)} runs skipped ({first_skip})"
        if skipped
        else ""
    )
    out = {
        "id": case["id"],
        "level": case["level"],
        "rules": case["rules"],
        "status": status,
        "reason": reason,
        "runs": len(runs),
        "differed": differed,
        "skippedRuns": skipped,
        "tallies": {
            f"{lvl} {rule}": {
                "differed": e["differed"],
                "checked": e["checked"],
                **({"counterexample": e["cx"]["message"]} if e["cx"] else {}),
            }
            for (lvl, rule), e in tally.items()
        },
    }
    if case["level"] == "profile" or any(lvl == "profile" for lvl, _ in tally):
        out["profiles"] = agreed
        out["opined"] = [p for p in judge.profiles if p in opined]
    return out


def rule_lines(cases):
    """Per (level, rule) over every case: fail when a run differed, pass when one checked it, else skipped."""
    acc = {}
    for c in cases:
        for key, t in c["tallies"].items():
            e = acc.setdefault(key, {"differed": 0, "checked": 0, "cx": None, "case": None})
            e["differed"] += t["differed"]
            e["checked"] += t["checked"]
            if "counterexample" in t and e["cx"] is None:
                e["cx"], e["case"] = t["counterexample"], c["id"]
        for r in c["rules"]:
            if not any(k.split(" ", 1)[1] == r for k in c["tallies"]):
                acc.setdefault(f"{c['level']} {r}", {"differed": 0, "checked": 0, "cx": None, "case": None})
    return {
        k: {
            "status": "fail" if e["differed"] else "pass" if e["checked"] else "skipped",
            "differed": e["differed"],
            "checked": e["checked"],
            **({"counterexample": f"{e['case']}: {e['cx']}"} if e["cx"] else {}),
        }
        for k, e in sorted(acc.items(), key=lambda kv: (LEVELS.index(kv[0].split(" ")[0]), kv[0].split(" ", 1)[1]))
    }


class Adapter:
    """The adapter process; restarted for the next request after it exits or times out."""

    def __init__(self, argv, timeout_s):
        self.argv, self.timeout_s = argv, timeout_s
        self.next_id = 1
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.fresh, self.eof = True, False
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()

    @staticmethod
    def _read(proc, lines):
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    def send(self, op, args):
        if self.proc is None or self.eof or self.proc.poll() is not None:
            self.kill()
            self.start()
        extra_s = STARTUP_S if self.fresh else 0
        self.fresh = False
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
                self.kill()
                return {"ok": False, "error": {"_tag": "Timeout", "op": op}}
            if line == "":
                self.eof = True
                return {"ok": False, "error": {"_tag": "ProcessExited"}}
            try:
                answer = json.loads(line)
            except ValueError:
                return {"ok": False, "error": {"_tag": "MalformedResponse", "line": line[:200]}}
            if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
                return {"ok": False, "error": {"_tag": "MalformedResponse", "line": line[:200]}}
            if answer.get("id") != rid:
                continue
            if answer["ok"]:
                return {"ok": True, "value": answer.get("value")}
            e = answer.get("error")
            if not isinstance(e, dict) or not isinstance(e.get("_tag"), str):
                return {"ok": False, "error": {"_tag": "MalformedResponse", "line": line[:200]}}
            return {"ok": False, "error": e}

    def close(self):
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Usage(Exception):
    pass


def parse_args(argv):
    """[--timeout MS] [--json FILE] VECTORS_DIR -- COMMAND...; numbers are decimal digits only."""
    if any(a in ("-h", "--help") for a in argv[: argv.index("--") if "--" in argv else len(argv)]):
        return None
    if "--" not in argv:
        raise Usage("missing -- before the adapter command")
    head, command = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    timeout_ms, folder, json_out = 5000, None, None
    i = 0
    while i < len(head):
        a = head[i]
        name = a.split("=", 1)[0]
        if name in ("--timeout", "--json"):
            raw = a.split("=", 1)[1] if "=" in a else (head[i + 1] if i + 1 < len(head) else None)
            i += 0 if "=" in a else 1
            if raw is None:
                raise Usage(f"{name} needs a value")
            if name == "--json":
                json_out = raw
            elif not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
                raise Usage(f"--timeout must be an integer >= 1, got {json.dumps(raw)}")
            else:
                timeout_ms = int(raw)
        elif a.startswith("-"):
            raise Usage(f"unknown option {a}; valid options: --timeout, --json, --help")
        elif folder is None:
            folder = a
        else:
            raise Usage(f"one vectors directory, got {folder} and {a}")
        i += 1
    if folder is None:
        raise Usage("a vectors directory is required")
    if not command:
        raise Usage("an adapter command is required after --")
    return folder, command, timeout_ms / 1000, json_out


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
    if not isinstance(cases, list) or not all(
        isinstance(c, dict) and "id" in c and "file" in c and c.get("level") in LEVELS for c in cases
    ):
        raise Usage(f"{path}: not a vectors manifest (cases with id, file and level)")
    if not isinstance(manifest.get("judging"), dict):
        raise Usage(f"{path}: no judging tables (written by an older suite): write the vectors again")
    for c in cases:
        if not os.path.isfile(os.path.join(folder, c["file"])):
            raise Usage(f"{path}: case file {c['file']} is missing")
    return manifest


def load_runs(folder, case):
    """The runs of a case file in order, or a string saying which line is bad."""
    runs = {}
    with open(os.path.join(folder, case["file"])) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                step = json.loads(line)
                ok = isinstance(step["run"], int) and isinstance(step["op"], str) and isinstance(step["args"], dict)
                ok = ok and ("expect" in step or "profiles" in step or step.get("safe") is True)
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                return f"{case['file']} line {n} is not a vectors step"
            runs.setdefault(step["run"], []).append(step)
    return [runs[k] for k in sorted(runs)]


def main():
    try:
        parsed = parse_args(sys.argv[1:])
        if parsed is None:
            print(__doc__.strip())
            return 0
        folder, argv, timeout_s, json_out = parsed
        manifest = load_manifest(folder)
        try:
            adapter = Adapter(argv, timeout_s)
        except OSError as e:
            raise Usage(f"cannot start the adapter {argv[0]}: {e.strerror}")
        hello = adapter.send("hello", {})
        value = hello.get("value") if hello.get("ok") else None
        if not isinstance(value, dict) or not isinstance(value.get("ops"), list):
            adapter.kill()
            raise Usage(f"the adapter did not answer hello: {canonical(hello)[:200]}")
    except Usage as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        print(f"try: python3 {PROG} --help", file=sys.stderr)
        return 2
    supported = set(value["ops"])
    own = value.get("errors") if isinstance(value.get("errors"), dict) else {}
    judge = Judge(manifest["judging"], {k: v for k, v in own.items() if isinstance(v, str)})
    results = []
    for case in manifest["cases"]:
        missing = [op for op in case["ops"] if op not in supported]
        runs = [] if missing else load_runs(folder, case)
        if missing or isinstance(runs, str):
            why = f"unsupported: {', '.join(missing)}" if missing else runs
            results.append(dict(id=case["id"], level=case["level"], rules=case["rules"], status="skipped",
                                reason=why, runs=0, differed=0, skippedRuns=0, tallies={}))
            print(f"skipped {case['id']} ({why})")
            continue
        r = run_case(adapter, judge, case, runs)
        results.append(r)
        print(f"{r['status']:<7} {r['id']}" + (f": {r['reason']}" if r["status"] == "fail" else ""))
    adapter.close()
    lines = rule_lines(results)
    for key, line in lines.items():
        if line["status"] == "fail":
            print(f"fail {key}: {line['differed']} runs differed; smallest in {line.get('counterexample', '?')}")
    if any(l["status"] == "fail" and not k.startswith("profile ") for k, l in lines.items()):
        verdict = "fail"
    elif any(l["status"] != "skipped" for l in lines.values()):
        verdict = "pass"
    else:
        verdict = "untested"
    print(f"verdict: {verdict}")
    if json_out is not None:
        with open(json_out, "w") as f:
            json.dump({"verdict": verdict, "cases": results, "rules": lines}, f, indent=1, ensure_ascii=False)
    return 0 if verdict == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
