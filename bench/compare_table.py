#!/usr/bin/env python3
"""Turns bench/compare.sh's JSON reports into the comparison table.

    compare_table.py OUT_DIR COMMAND [-] BENCHMARKS_MD

Prints the section; unless the third argument is "-", also writes it into
BENCHMARKS_MD between the compare markers (appended if they are missing).
Every figure comes from a report file; a scenario that failed shows its
error instead of a number, and a missed target says so with the figure.
The fan-out scenarios ran in rounds (files NAME.fanout-R.rK.json): a cell
shows the median of its figure over the rounds and loss the worst round,
and each verdict lists the rounds it was taken from. Writing BENCHMARKS_MD
also redraws the charts in img/ beside it (bench/charts.py), which the
section shows below the table.
"""
import datetime
import glob
import json
import os
import re
import statistics
import platform
import subprocess
import sys

BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"
SERVERS = ["switchboard", "switchboard-token", "node-ws", "socketio", "python-websockets", "axum-chat", "nats"]


def load(out, name, scenario):
    path = os.path.join(out, f"{name}.{scenario}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read().strip()
    try:
        return json.loads(text.splitlines()[-1]) if text else {"error": "no report"}
    except json.JSONDecodeError:
        return {"error": text[-200:]}


def rounds(out, name, scenario):
    """The reports of every round of a fan-out scenario, in round order."""
    paths = glob.glob(os.path.join(out, f"{glob.escape(name)}.{scenario}.r*.json"))
    numbered = []
    for path in paths:
        match = re.search(r"\.r(\d+)\.json$", path)
        if match:
            numbered.append((int(match.group(1)), path))
    return [load(out, name, f"{scenario}.r{k}") for k, _ in sorted(numbered)]


def p99(report):
    return (report.get("latency_ms") or {}).get("p99")


def combined(reports):
    """One report standing for the rounds: the median deliveries per
    CPU-second and the median p99, with the loss, drops and errors of the
    worst round. None without reports; an error if every round failed."""
    ok = [r for r in reports if r and "error" not in r]
    if not reports:
        return None
    if not ok:
        return reports[-1] or {"error": "no report"}
    worst = max(ok, key=lambda r: (r.get("members_closed", 0), r.get("lost", 0), r.get("publisher_errors", 0)))
    report = dict(worst)
    per_cpu = [r["deliveries_per_server_cpu_second"] for r in ok if r.get("deliveries_per_server_cpu_second")]
    report["deliveries_per_server_cpu_second"] = statistics.median(per_cpu) if per_cpu else None
    p99s = [p99(r) for r in ok if p99(r) is not None]
    report["latency_ms"] = {"p99": statistics.median(p99s) if p99s else None}
    report["failed_rounds"] = len(reports) - len(ok)
    report["rounds"] = len(reports)
    return report


def fanout(out, name, scenario):
    """The combined report of a fan-out scenario's rounds, or of its single
    run when it was not run in rounds."""
    found = rounds(out, name, scenario)
    return combined(found) if found else load(out, name, scenario)


def num(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def fanout_cells(report):
    if report is None:
        return ["–"] * 3
    if "error" in report:
        return ["failed", "", ""]
    latency = report.get("latency_ms") or {}
    per_cpu = report.get("deliveries_per_server_cpu_second")
    loss = f'{report["loss_percent"]:.2f}%' if report["lost"] else "0"
    if report.get("members_closed"):
        loss += f' ({report["members_closed"]} dropped)'
    if report.get("publisher_errors"):
        loss += " (publisher dropped)" if report["sent"] < report["rate"] * report["duration_s"] * 0.99 else " (errors)"
    if report.get("failed_rounds"):
        loss += f' ({report["failed_rounds"]} of {report["rounds"]} rounds failed)'
    return [num(per_cpu), num(latency.get("p99"), 1), loss]


def row(out, name):
    idle = load(out, name, "idle") or {}
    cells = [name]
    if "error" in idle:
        cells += ["failed", "failed"]
    else:
        cells += [num(idle.get("server_anon_bytes_per_connection")), num(idle.get("connects_per_second"))]
        if idle.get("closed_by_server"):
            cells[-2] += f' ({idle["closed_by_server"]} closed)'
    for rate in (1000, 300, 100):
        cells += fanout_cells(fanout(out, name, f"fanout-{rate}"))
    churn = load(out, name, "churn") or {}
    cells.append("failed" if "error" in churn else num(churn.get("cycles_per_second")))
    echo = load(out, name, "echo") or {}
    cells.append("failed" if "error" in echo else num(echo.get("round_trips_per_second")))
    return cells


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} × {cpu}, Linux {platform.release()}, Switchboard at {rev or '?'}"


def verdicts(out):
    """The issue's targets, each met or missed with its figure."""
    lines = []
    sb = lambda scenario: load(out, "switchboard", scenario) or {}
    idle = sb("idle").get("server_anon_bytes_per_connection")
    if idle is not None:
        lines.append(f"- Idle memory ≤ 1 KB per connection: {'met' if idle <= 1024 else 'missed'} ({idle:,.0f} B).")
    churn = sb("churn").get("cycles_per_second")
    if churn is not None:
        state = "met" if churn >= 15000 else "missed"
        lines.append(
            f"- WebSocket handshakes ≥ 15,000/s: {state} ({churn:,.0f}/s in `churn`, each with a join and a "
            "close handshake besides)."
        )
    connects = sb("idle").get("connects_per_second")
    if connects is not None:
        state = "also above" if connects >= 15000 else "below"
        lines.append(
            f"- Connects in `idle` ({connects:,.0f}/s) are {state} that line: there every join is announced "
            "to the other members of its room (100 rooms), so the server writes and the load generator reads "
            "about n²/200 presence events while connecting."
        )
    lines += efficiency_verdicts(out, "fanout-1000", "")
    token = load(out, "switchboard-token", "churn") or {}
    if token.get("cycles_per_second") is not None:
        rate = token["cycles_per_second"]
        state = "met" if rate >= 15000 else "missed"
        lines.append(f"- Handshakes ≥ 15,000/s in token mode (HS256): {state} ({rate:,.0f}/s in `churn`).")
    token_idle = (load(out, "switchboard-token", "idle") or {}).get("server_anon_bytes_per_connection")
    if token_idle is not None:
        state = "met" if token_idle <= 1024 else "missed"
        lines.append(f"- Idle memory ≤ 1 KB per connection in token mode: {state} ({token_idle:,.0f} B).")
    if fanout(out, "switchboard-token", "fanout-1000"):
        lines += efficiency_verdicts(out, "fanout-1000", " in token mode", mine_name="switchboard-token")
    if fanout(out, "switchboard", "fanout-1000-wide"):
        setting = f"with `write_window_max` at {os.environ.get('WIDE_WINDOW', 'the wide setting')}"
        lines += efficiency_verdicts(out, "fanout-1000-wide", f" ({setting}, not the default)")
    for rate, bound in ((100, 5), (300, 10)):
        median = p99(fanout(out, "switchboard", f"fanout-{rate}") or {})
        if median is not None:
            state = "met" if median <= bound else "missed"
            each = per_round([p99(r) for r in rounds(out, "switchboard", f"fanout-{rate}") if r], "{:.1f} ms")
            lines.append(f"- p99 ≤ {bound} ms at {rate} msg/s to 1,000: {state} ({median:.1f} ms{each}).")
    floors = [(f"before round {k}", sb(f"floor-r{k}")) for k in range(1, 100) if load(out, "switchboard", f"floor-r{k}")]
    floors += [(f"at the {when}", sb(f"floor-{when}")) for when in ("start", "end") if load(out, "switchboard", f"floor-{when}")]
    floors = [(when, p99(report)) for when, report in floors if p99(report) is not None]
    if floors:
        listed = ", ".join(f"{value:.1f} ms {when}" for when, value in floors)
        lines.append(
            "- The machine's own delay in this run: p99 with 10 subscribers at 100 msg/s, where the server's "
            f"sweep takes about 0.05 ms: {listed}. The latency figures above include it."
        )
    return lines


def per_round(values, fmt):
    """'; per round: a, b, c' when there was more than one round."""
    if len(values) < 2:
        return ""
    return "; per round: " + ", ".join(fmt.format(v) for v in values)


def medians(report):
    return " in the medians" if report.get("rounds", 1) > 1 else ""


def carried(report):
    return not (report.get("lost") or report.get("members_closed") or report.get("publisher_errors"))


def efficiency_verdicts(out, scenario, setting, mine_name="switchboard"):
    """Deliveries per CPU-second against the axum chat and NATS at 1,000 ×
    1,000, and p99 against the axum chat's, for one Switchboard scenario.
    Rounds are paired (Switchboard's round k with the peer's round k, run
    minutes apart); a round where the peer did not carry the load (lost
    messages, dropped subscribers) is listed but not judged, and the verdict
    is the median over the rounds it carried."""
    lines = []
    mine = fanout(out, mine_name, scenario) or {}
    for peer in ("axum-chat", "nats"):
        pairs = paired(out, scenario, peer, mine_name)
        if not pairs:
            continue
        judged = [ratio for ratio, theirs in pairs if carried(theirs)]
        listed = [f"{ratio:.2f}×" + ("" if carried(theirs) else " (not carried)") for ratio, theirs in pairs]
        each = "; per round: " + ", ".join(listed) if len(pairs) > 1 else ""
        if judged:
            median = statistics.median(judged)
            state = "met" if median >= 3 else "missed"
            over = f" over the {len(judged)} rounds it carried" if len(judged) < len(pairs) else ""
            figure = f"{median:.2f}×{' median' if len(pairs) > 1 else ''}{over}{each}"
        else:
            worst = fanout(out, peer, "fanout-1000") or {}
            state = "not comparable"
            figure = (
                f"{pairs[0][0]:.2f}×{each}; {peer} did not carry the load: {worst.get('members_closed', 0)} of "
                f"1,000 subscribers dropped, {worst.get('loss_percent', 0):.0f}% undelivered"
                + (", its publisher disconnected" if worst.get("publisher_errors") else "")
                + (" in its worst round" if len(pairs) > 1 else ""))
        lines.append(f"- Deliveries per CPU-second ≥ 3× {peer} at 1,000 × 1,000{setting}: {state} ({figure}).")
    axum_rounds = [r for r in rounds(out, "axum-chat", "fanout-1000") if r and "error" not in r] or [
        load(out, "axum-chat", "fanout-1000") or {}]
    kept = [p99(r) for r in axum_rounds if carried(r) and p99(r) is not None]
    axum = statistics.median(kept) if kept else p99(fanout(out, "axum-chat", "fanout-1000") or {})
    mine_p99 = p99(mine)
    if mine_p99 is not None and axum is not None:
        state = "met" if mine_p99 <= axum else "missed"
        if not kept:
            state += ", though the axum chat's p99 is over the few subscribers it kept"
        lines.append(
            f"- p99 no worse than axum-chat's at 1,000 × 1,000{setting}: {state} "
            f"({mine_p99:.1f} ms against {axum:.1f} ms{medians(mine)}"
            f"{'' if len(kept) in (0, len(axum_rounds)) else ', the axum chat over the rounds it carried'})."
        )
    if mine.get("lost"):
        lines.append(f"- No loss at 1,000 × 1,000{setting}: missed ({mine['lost']} lost in the worst round).")
    return lines


def paired(out, scenario, peer, mine_name="switchboard"):
    """(Switchboard ÷ peer deliveries per CPU-second, the peer's report) for
    each round both completed; the single runs when there were no rounds."""
    mine, theirs = rounds(out, mine_name, scenario), rounds(out, peer, "fanout-1000")
    if not mine:
        mine, theirs = [load(out, mine_name, scenario)], [load(out, peer, "fanout-1000")]
    pairs = []
    for x, y in zip(mine, theirs):
        if x and y and "error" not in x and "error" not in y:
            a, b = x.get("deliveries_per_server_cpu_second"), y.get("deliveries_per_server_cpu_second")
            if a and b:
                pairs.append((a / b, y))
    return pairs


def servers(out):
    """The servers of SERVERS with a report in OUT, in that order."""
    return [name for name in SERVERS if any(
        os.path.exists(os.path.join(out, f"{name}.{s}.json")) for s in ("idle", "fanout-1000", "fanout-1000.r1", "churn"))]


def wide_label():
    return f"switchboard, write_window_max {os.environ.get('WIDE_WINDOW', 'wide')}"


def section(out, command, images=()):
    """The generated section; images are (alt text, link) shown below the table."""
    header = [
        "server", "idle B/conn", "connects/s",
        "1k×1000: deliveries/CPU-s", "p99 ms", "loss",
        "1k×300: deliveries/CPU-s", "p99 ms", "loss",
        "1k×100: deliveries/CPU-s", "p99 ms", "loss",
        "churn/s", "echo round trips/s",
    ]
    rows = [row(out, name) for name in servers(out)]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    wide = fanout(out, "switchboard", "fanout-1000-wide")
    if wide is not None:
        rows.insert(1, [wide_label(), "–", "–", *fanout_cells(wide), *["–"] * 8])
    table += ["| " + " | ".join(cells) + " |" for cells in rows]
    today = datetime.date.today().isoformat()
    pictures = [line for alt, link in images for line in (f"![{alt}]({link})", "")]
    lines = [
        BEGIN,
        f"Generated by `{command}` on {today}; {machine()}.",
        "",
        *table,
        "",
        *pictures,
        "Fan-out cells are medians over the rounds (loss: the worst round). Targets (issue 5), from this run:",
        *verdicts(out),
        END,
    ]
    return "\n".join(lines) + "\n"


def main():
    out, command, mode, doc = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    images = []
    if mode != "-":
        import charts  # imported here: charts.py imports this module for its loaders

        here = os.path.dirname(doc) or "."
        written = charts.write_compare(out, os.path.join(here, "img"))
        images = [(alt, os.path.relpath(path, here)) for alt, path in written]
    text = section(out, command, images)
    print(text)
    if mode == "-":
        return
    with open(doc) as f:
        current = f.read()
    if BEGIN in current and END in current:
        before, rest = current.split(BEGIN, 1)
        after = rest.split(END, 1)[1].lstrip("\n")
        updated = before + text + after
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    with open(doc, "w") as f:
        f.write(updated)


if __name__ == "__main__":
    main()
