"""Summarises bench/cluster.sh's reports: one row per setup and rate.

Reports are OUT/<setup>.r<rate>.k<repetition>.json (the `bench fanout`
JSON), with .redis-ticks (Redis's CPU over the case) and .scripts (publish
scripts the publisher's node ran) beside them for cluster setups. With one
repetition the row shows that run; with more, the median and the range of
each figure. "vs single" compares each repetition with the single node of
the same repetition and rate (run next to it, under the same load), then
takes the median of those ratios.

    python3 bench/cluster_summary.py OUT SUBSCRIBERS
"""

import glob
import json
import os
import statistics
import sys
from collections import defaultdict

TICK = os.sysconf("SC_CLK_TCK")


def load(out):
    """Every case: {(setup, rate): {repetition: figures}}."""
    cases = defaultdict(dict)
    for path in glob.glob(f"{out}/*.json"):
        stem = path[: -len(".json")]
        setup, rest = os.path.basename(stem).split(".r")
        rate, _, repetition = rest.partition(".k")
        rate, repetition = int(rate), int(repetition or 1)
        report = json.load(open(path))
        delivered, cpu = report["received"], report.get("server_cpu_seconds")
        figures = {
            "sent": report["sent"],
            "delivered": delivered,
            "lost": report["lost"],
            "out_of_order": report.get("out_of_order") or 0,
            "publisher_errors": report.get("publisher_errors") or 0,
            "p99": (report.get("latency_ms") or {}).get("p99"),
            "cpu_per_delivery": cpu / delivered * 1e6 if cpu and delivered else None,
            "redis_seconds": read_number(f"{stem}.redis-ticks", scale=1 / TICK),
            "scripts": read_number(f"{stem}.scripts"),
        }
        cases[(setup, rate)][repetition] = figures
    return cases


def read_number(path, scale=1.0):
    if not os.path.exists(path):
        return None
    text = open(path).read().strip()
    return float(text) * scale if text else None


def spread(values, digits):
    """The value, or with several the median and the range."""
    values = [value for value in values if value is not None]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    low, high = min(values), max(values)
    return f"{statistics.median(values):.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def ratios(cases, setup, rate, figure):
    """Per repetition: this setup's figure over the single node's."""
    single = cases.get(("single", rate), {})
    found = []
    for repetition, figures in cases[(setup, rate)].items():
        reference = single.get(repetition, {}).get(figure)
        if figures[figure] is not None and reference:
            found.append(figures[figure] / reference)
    return found


def redis_per_message(cases, setup, rates):
    """Redis's CPU per message with the setup's cost (connecting, joining
    and presence of every subscriber, the same at every rate) taken out:
    the difference between the lowest and highest rate, per repetition."""
    low, high = cases.get((setup, rates[0]), {}), cases.get((setup, rates[-1]), {})
    found = []
    for repetition in low.keys() & high.keys():
        a, b = low[repetition], high[repetition]
        if a["redis_seconds"] is not None and b["redis_seconds"] is not None and b["sent"] > a["sent"]:
            found.append((b["redis_seconds"] - a["redis_seconds"]) / (b["sent"] - a["sent"]) * 1e6)
    return found


def main():
    out, subscribers = sys.argv[1], int(sys.argv[2])
    cases = load(out)
    rates = sorted({rate for _, rate in cases})
    order = lambda key: (key[1], key[0] != "single", key[0])
    print(
        "| setup | msg/s | subscribers | runs | delivered | lost | out of order | publisher errors "
        "| p99 ms | p99 vs single | µs CPU per delivery | CPU vs single | messages per publish script |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for setup, rate in sorted(cases, key=order):
        runs = cases[(setup, rate)].values()
        total = lambda figure: sum(run[figure] for run in runs)
        per_script = [run["sent"] / run["scripts"] for run in runs if run["scripts"]]
        versus = lambda figure: "" if setup == "single" else spread(ratios(cases, setup, rate, figure), 2)
        print(
            f"| {setup} | {rate} | {subscribers} | {len(runs)} | {total('delivered')} | {total('lost')} "
            f"| {total('out_of_order')} | {total('publisher_errors')} | {spread([r['p99'] for r in runs], 2)} "
            f"| {versus('p99')} | {spread([r['cpu_per_delivery'] for r in runs], 2)} | {versus('cpu_per_delivery')} "
            f"| {spread(per_script, 2)} |"
        )
    setups = sorted({setup for setup, _ in cases if setup != "single"})
    if len(rates) >= 2 and setups:
        print()
        print(f"| setup | Redis CPU µs per message (between {rates[0]} and {rates[-1]} msg/s) |")
        print("|---|---|")
        for setup in setups:
            print(f"| {setup} | {spread(redis_per_message(cases, setup, rates), 1)} |")


if __name__ == "__main__":
    main()
