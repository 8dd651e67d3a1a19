#!/usr/bin/env python3
"""Fail (exit 1) unless an Autobahn|Testsuite fuzzingclient report is all green.

usage: check_autobahn.py [--expect N] INDEX_JSON [AGENT]   (exit 1 on any failure)

wstest exits 0 whatever the outcome, so its index.json is the only verdict.
kosoku writes the same layout, but names the agent itself (the server's
`Server` header, else host:port): leave AGENT out to check every agent.
--expect N fails a report with fewer than N cases: wstest stops at the first
connection it cannot open and still writes the cases it ran.
"""
import argparse
import json
import os
import sys
from collections import Counter

PASS_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
FAIL_CLOSE = {"WRONG CODE", "UNCLEAN"}


def case_key(case_id):
    # "9.10.2" sorts after "9.2.1"
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


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
    failures = []
    for agent in agents:
        for case_id, r in sorted(index[agent].items(), key=lambda kv: case_key(kv[0])):
            behavior = r.get("behavior", "MISSING")
            close = r.get("behaviorClose", "MISSING")
            if behavior in PASS_BEHAVIOR and close not in FAIL_CLOSE:
                counts[behavior] += 1
            else:
                failures.append((agent, case_id, behavior, close, r.get("reportfile")))

    total = sum(counts.values()) + len(failures)
    print(f"autobahn: {total} cases: {counts['OK']} OK, {counts['NON-STRICT']} NON-STRICT, "
          f"{counts['INFORMATIONAL']} INFORMATIONAL, {len(failures)} failed")
    short = total < args.expect
    if short:
        print(f"autobahn: FAIL: {total} cases in {index_path}, expected {args.expect}")
    for agent, case_id, behavior, close, reportfile in failures:
        html = os.path.splitext(reportfile)[0] + ".html" if reportfile else ""
        print(f"  case {case_id:<8} behavior={behavior:<14} behaviorClose={close:<14} {html}"
              + (f"  ({agent})" if len(agents) > 1 else ""))
    if failures:
        outdir = os.path.dirname(os.path.abspath(index_path))
        print(f"autobahn: FAIL: open {os.path.join(outdir, 'index.html')} for details "
              f"(per-case .json beside it: fields expected, received, result, resultClose)")
    return 1 if short or failures else 0

if __name__ == "__main__":
    sys.exit(main())
