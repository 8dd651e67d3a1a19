#!/usr/bin/env python3
"""Fail (exit 1) unless an Autobahn|Testsuite fuzzingclient report is all green.

usage: check_autobahn.py [--expect N] INDEX_JSON [AGENT]   (exit 1 on any failure)

wstest exits 0 whatever the outcome, so its index.json is the only verdict.
kosoku writes the same layout, but names the agent itself (the server's
`Server` header, else host:port): leave AGENT out to check every agent.
--expect N fails a report with fewer than N cases: wstest stops at the first
connection it cannot open and still writes the cases it ran.

Each case has two outcomes: `behavior` (what the server did with the case's
frames) and `behaviorClose` (how the connection was closed), and Autobahn
sets each on its own: a case can be OK in one and FAILED in the other. A case
passes when both are OK, or when it is one of ALLOWED below with exactly the
outcomes listed there. Anything else fails, FAILED, WRONG CODE, UNCLEAN and
an informational outcome in any other case included.
"""
import argparse
import json
import os
import sys
from collections import Counter

OK = ("OK", "OK")

# case -> ((behavior, behaviorClose) outcomes allowed besides OK/OK, why).
# In the runs recorded in README.md and docs/ARCHITECTURE.md (469 cases on
# 2026-12-02, 517 in the full run), these five and no other case came out
# other than OK/OK.
ALLOWED = {
    # The invalid UTF-8 arrives in the middle of one frame, sent in three
    # chops. The decoder checks a frame once it is whole (fragments are
    # checked as they arrive), so the 1007 comes at the end of the frame, not
    # at the bad byte: Autobahn's "fail fast" wants the latter and calls this
    # NON-STRICT. RFC 6455 (8.1) requires failing, not when.
    "6.4.3": ({("NON-STRICT", "OK")}, "invalid UTF-8 found when its frame is whole, not mid-frame"),
    "6.4.4": ({("NON-STRICT", "OK")}, "invalid UTF-8 found when its frame is whole, not mid-frame"),
    # A 256 KiB message, a close and a ping back to back: whether the echo is
    # written before the close is implementation-defined (the case's own
    # words), so Autobahn only informs.
    "7.1.6": ({("INFORMATIONAL", "INFORMATIONAL")}, "implementation-defined order of echo and close"),
    # Close codes 5000 and 65535: "actual events are undefined by the spec".
    "7.13.1": ({("INFORMATIONAL", "INFORMATIONAL")}, "close code 5000: undefined by RFC 6455"),
    "7.13.2": ({("INFORMATIONAL", "INFORMATIONAL")}, "close code 65535: undefined by RFC 6455"),
}


def case_key(case_id):
    # "9.10.2" sorts after "9.2.1"
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


def verdict(case_id, outcome):
    """None when the case passes, else why it does not."""
    if outcome == OK:
        return None
    allowed, _ = ALLOWED.get(case_id, (set(), ""))
    if outcome in allowed:
        return None
    if allowed:
        return "allowed only " + ", ".join("/".join(pair) for pair in sorted(allowed))
    return "not OK"


def main():
    ap = argparse.ArgumentParser(description="Check an Autobahn fuzzingclient report.")
    ap.add_argument("--expect", type=int, default=1, metavar="N", help="minimum number of cases")
    ap.add_argument("index_json")
    ap.add_argument("agent", nargs="?")
    args = ap.parse_args()
    index_path = args.index_json
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print(f"autobahn: FAIL: cannot read report {index_path}: {e}")
        return 1

    if args.agent:
        agent = args.agent
        if agent not in index:
            print(f"autobahn: FAIL: agent {agent!r} not in report "
                  f"(agents: {', '.join(sorted(index)) or 'none'})")
            return 1
        agents = [agent]
    else:
        agents = sorted(index)

    counts = Counter()
    allowed_seen = []
    failures = []
    for agent in agents:
        for case_id, r in sorted(index[agent].items(), key=lambda kv: case_key(kv[0])):
            outcome = (r.get("behavior", "MISSING"), r.get("behaviorClose", "MISSING"))
            why = verdict(case_id, outcome)
            if why is None:
                counts[outcome[0]] += 1
                if outcome != OK:
                    allowed_seen.append((case_id, outcome))
            else:
                failures.append((agent, case_id, outcome, why, r.get("reportfile")))

    total = sum(counts.values()) + len(failures)
    print(f"autobahn: {total} cases: {counts['OK']} OK, {counts['NON-STRICT']} NON-STRICT, "
          f"{counts['INFORMATIONAL']} INFORMATIONAL (allowed: "
          f"{', '.join(case for case, _ in allowed_seen) or 'none'}), {len(failures)} failed")
    short = total < args.expect
    if short:
        print(f"autobahn: FAIL: {total} cases in {index_path}, expected {args.expect}")
    for agent, case_id, (behavior, close), why, reportfile in failures:
        html = os.path.splitext(reportfile)[0] + ".html" if reportfile else ""
        print(f"  case {case_id:<8} behavior={behavior:<14} behaviorClose={close:<14} ({why}) {html}"
              + (f"  ({agent})" if len(agents) > 1 else ""))
    if failures:
        outdir = os.path.dirname(os.path.abspath(index_path))
        print(f"autobahn: FAIL: open {os.path.join(outdir, 'index.html')} for details "
              f"(per-case .json beside it: fields expected, received, result, resultClose)")
    return 1 if short or failures else 0


if __name__ == "__main__":
    sys.exit(main())
