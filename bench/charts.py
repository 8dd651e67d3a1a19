#!/usr/bin/env python3
"""Charts for docs/BENCHMARKS.md: self-contained SVG drawn from the bench
scripts' JSON reports, with the standard library only.

    charts.py compare OUT_DIR IMG_DIR          bench/compare.sh's reports
    charts.py scaling OUT_DIR IMG_DIR          bench/scaling.sh's reports
    charts.py scaling-figures FILE IMG_DIR     scaling figures kept by hand in FILE
                                               (for a run whose reports are gone)

compare_table.py calls write_compare() whenever it writes BENCHMARKS.md and
scaling.sh runs `charts.py scaling` after its tables, so the commands that
make the tables redraw the charts. The compare charts take their figures
through compare_table.py's loaders (medians over the rounds, as the table).

Every bar and point carries its value as text. A scenario that failed is
drawn as "failed" and one without a report as "–", never as a zero. Fan-out
bars carry their loss beside them: a latency or an efficiency measured while
messages were lost is not comparable with one measured without.
"""
import datetime
import glob
import json
import math
import os
import sys
import textwrap
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_table  # noqa: E402  (the loaders and the table's own cell texts)

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
BLUE, VERMILLION, GREEN = "#0072B2", "#D55E00", "#009E73"
GREY = "#8A8A8A"  # other servers in a one-series chart; 3.4:1 on white
BAND = "#E8F0F8"  # the band behind Switchboard's rows
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', Arial, sans-serif"
STYLE = f"""
text {{ font-family: {FONT}; fill: #1A1A1A; }}
.title {{ font-size: 17px; font-weight: 700; }}
.sub {{ font-size: 12px; fill: #404040; }}
.label {{ font-size: 13px; }}
.hl {{ font-weight: 700; }}
.value {{ font-size: 12px; }}
.note {{ font-size: 12px; fill: #404040; }}
.head {{ font-size: 12px; font-weight: 700; fill: #404040; }}
.failed {{ font-size: 12px; font-weight: 700; fill: #A3300A; }}
.missing {{ font-size: 12px; fill: #595959; }}
.tick {{ font-size: 11px; fill: #404040; }}
.axis {{ font-size: 12px; }}
.grid {{ stroke: #DDDDDD; stroke-width: 1; }}
.ref {{ stroke: #404040; stroke-width: 1; stroke-dasharray: 4 3; }}
"""
PAD = 16
MISSING, FAILED = "–", "failed"


@dataclass
class Cell:
    """One bar or point: its value (None draws no bar), the text printed
    beside it, and a note (the loss) for the note column."""

    value: float | None
    text: str
    note: str = ""


@dataclass
class Row:
    label: str
    cells: list
    highlight: bool = False


@dataclass
class Series:
    name: str
    colour: str
    cells: list = field(default_factory=list)
    marker: str = "circle"
    dash: str = ""
    below: bool = False  # point labels below the points instead of above


@dataclass
class Chart:
    slug: str
    title: str
    subtitle: str
    axis_label: str
    log: bool = False
    reference: tuple | None = None  # (value, label): a dashed line


def text_width(text, size, bold=False):
    """An estimate of the rendered width in pixels (no font metrics here)."""
    narrow, wide = set(" .,:;'!|il1()[]–-"), set("mwMW%@")
    units = sum(0.33 if c in narrow else 0.9 if c in wide else 0.62 for c in text)
    return units * size * (1.07 if bold else 1.0)


def txt(x, y, text, cls, anchor="start", extra=""):
    return f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


def cell_text(x, y, cell, anchor="start"):
    """A cell's value text, or its "failed" / "–" in place of a bar."""
    cls = "value" if cell.value is not None else "failed" if cell.text == FAILED else "missing"
    return txt(x, y, cell.text, cls, anchor)


def describe(rows_or_series, names=None):
    """The chart's figures as sentences, for <desc> (what a screen reader reads)."""
    parts = []
    for item in rows_or_series:
        label = getattr(item, "label", None) or item.name
        cells = []
        for i, cell in enumerate(item.cells):
            name = f"{names[i]} " if names else ""
            text = "no report" if cell.text == MISSING else cell.text
            cells.append(f"{name}{text}" + (f", {cell.note}" if cell.note else ""))
        parts.append(f"{label}: " + "; ".join(cells))
    return ". ".join(parts) + "."


def svg(chart, width, height, desc, body):
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-labelledby="{chart.slug}-title {chart.slug}-desc">'
    )
    return "\n".join([
        head,
        f'<title id="{chart.slug}-title">{escape(chart.title)}</title>',
        f'<desc id="{chart.slug}-desc">{escape(chart.subtitle + " " + desc)}</desc>',
        f"<style>{STYLE}</style>",
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="#FFFFFF"/>',
        *body,
        "</svg>",
    ]) + "\n"


def header(chart, width):
    """The title and the wrapped subtitle; returns their elements and the y below them."""
    body = [txt(PAD, PAD + 16, chart.title, "title")]
    y = PAD + 16
    for line in textwrap.wrap(chart.subtitle, max(40, int((width - 2 * PAD) / 6.4))):
        y += 17
        body.append(txt(PAD, y, line, "sub"))
    return body, y + 8


def legend(entries, x, y):
    """Swatches in one line: entries are (name, colour, marker, dash)."""
    body = []
    for name, colour, marker, dash in entries:
        if marker:
            body.append(f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 22:.1f}" y2="{y - 4:.1f}" stroke="{colour}" '
                        f'stroke-width="2.5"{dash_attr(dash)}/>')
            body.append(mark(marker, x + 11, y - 4, colour))
            x += 28
        else:
            body.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" fill="{colour}"/>')
            x += 17
        body.append(txt(x, y, name, "label"))
        x += text_width(name, 13) + 18
    return body


def dash_attr(dash):
    return f' stroke-dasharray="{dash}"' if dash else ""


def mark(marker, x, y, colour):
    if marker == "square":
        return f'<rect x="{x - 4.5:.1f}" y="{y - 4.5:.1f}" width="9" height="9" fill="{colour}"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{colour}"/>'


class Scale:
    """Values to pixels along [start, end]: linear from zero, or logarithmic
    from the decade below the smallest value."""

    def __init__(self, values, start, end, log, lo=None, hi=None):
        values = [v for v in values if v is not None and v > 0] or [1.0]
        self.log, self.start, self.end = log, start, end
        if log:
            # A decade lower when the smallest value is near its decade's start, so its bar shows.
            floor = math.floor(math.log10(min(values)))
            self.lo = lo or 10.0 ** (floor - 1 if min(values) < 2 * 10.0**floor else floor)
            self.hi = hi or nice_ceiling(max(values))
        else:
            self.lo, self.hi = 0.0, hi or nice_ceiling(max(values))

    def __call__(self, value):
        if self.log:
            share = math.log10(value / self.lo) / math.log10(self.hi / self.lo)
        else:
            share = (value - self.lo) / (self.hi - self.lo)
        return self.start + share * (self.end - self.start)

    def ticks(self):
        if self.log:
            first, last = math.ceil(math.log10(self.lo) - 1e-9), math.floor(math.log10(self.hi) + 1e-9)
            decades = [10.0 ** k for k in range(first, last + 1)]
            if len(decades) > 3:
                return decades
            return sorted(m * d for d in decades for m in (1, 2, 5) if self.lo <= m * d <= self.hi)
        step = nice_ceiling(self.hi / 5)
        return [k * step for k in range(int(self.hi / step + 1e-9) + 1)]


def nice_ceiling(value):
    """The smallest of 1, 2, 2.5 and 5 times a power of ten that is at least value."""
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value * (1 - 1e-9))


def tick_text(value):
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def bar_chart(chart, series, rows, note_head=""):
    """Horizontal bars, one group a row and one bar a series, with the value
    at each bar's end and the notes in a column after the longest bar."""
    single = len(series) == 1
    bar_h, gap = (20, 12) if single else (15, 12)
    group_h = len(series) * bar_h + (len(series) - 1) * 2
    cells = [c for r in rows for c in r.cells]
    label_w = max(text_width(r.label, 13, r.highlight) for r in rows) + 14
    value_w = max(text_width(c.text, 12) for c in cells) + 16
    note_w = max([text_width(c.note, 12) for c in cells] + [text_width(note_head, 12, True)])
    x0 = PAD + label_w
    x1 = x0 + 440
    width = max(x1 + value_w + note_w + PAD, text_width(chart.title, 17, True) + 2 * PAD)
    body, y = header(chart, width)
    if not single:
        body += legend([(name, colour, None, "") for name, colour in series], x0, y + 16)
        y += 30
    top = y + 18
    bottom = top + len(rows) * (group_h + gap)
    scale = Scale([c.value for c in cells] + [chart.reference[0] if chart.reference else None], x0, x1, chart.log)
    body += axis_x(scale, top, bottom, chart.axis_label)
    if note_head:
        body.append(txt(x1 + value_w, top - 6, note_head, "head"))
    if chart.reference:
        body += reference_x(scale, chart.reference, top, bottom)
    for i, row in enumerate(rows):
        row_top = top + gap / 2 + i * (group_h + gap)
        body += bar_row(row, series, scale, row_top, (x0, x1 + value_w, width), (bar_h, group_h, gap))
    return svg(chart, width, bottom + 44 + PAD, describe(rows, None if single else [n for n, _ in series]), body)


def bar_row(row, series, scale, top, xs, sizes):
    x0, note_x, width = xs
    bar_h, group_h, gap = sizes
    body = []
    if row.highlight:
        body.append(f'<rect x="{PAD / 2}" y="{top - gap / 2 + 1:.1f}" width="{width - PAD:.1f}" '
                    f'height="{group_h + gap - 2}" fill="{BAND}"/>')
    body.append(txt(x0 - 8, top + group_h / 2 + 4.5, row.label, "label hl" if row.highlight else "label", "end"))
    for j, cell in enumerate(row.cells):
        y = top + j * (bar_h + 2)
        middle = y + bar_h / 2 + 4
        if cell.value is None:
            body.append(cell_text(x0 + 6, middle, cell))
        else:
            colour = series[j][1] if len(series) > 1 else BLUE if row.highlight else GREY
            end = scale(max(cell.value, scale.lo)) if scale.log else scale(cell.value)
            body.append(f'<rect class="bar" x="{x0:.1f}" y="{y:.1f}" width="{max(end - x0, 1):.1f}" '
                        f'height="{bar_h}" fill="{colour}"/>')
            body.append(cell_text(end + 6, middle, cell))
        if cell.note:
            body.append(txt(note_x, middle, cell.note, "note"))
    return body


def axis_x(scale, top, bottom, label):
    body = []
    for tick in scale.ticks():
        x = scale(tick)
        body.append(f'<line class="grid" x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}"/>')
        body.append(txt(x, bottom + 16, tick_text(tick), "tick", "middle"))
    body.append(f'<line x1="{scale.start:.1f}" y1="{bottom:.1f}" x2="{scale.end:.1f}" y2="{bottom:.1f}" '
                'stroke="#404040"/>')
    body.append(txt((scale.start + scale.end) / 2, bottom + 36, label, "axis", "middle"))
    return body


def reference_x(scale, reference, top, bottom):
    value, label = reference
    x = scale(value)
    return [f'<line class="ref" x1="{x:.1f}" y1="{top - 4:.1f}" x2="{x:.1f}" y2="{bottom:.1f}"/>',
            txt(x + 4, top - 6, label, "note")]


def line_chart(chart, x_label, xs, series, x_log=True):
    """Curves over the given x values (each also a tick), a value label at
    every point; a point without a value is drawn as its text at the axis."""
    width, plot_h = 760, 280
    x0, x1 = PAD + 84, width - PAD - 80
    body, y = header(chart, width)
    body += legend([(s.name, s.colour, s.marker, s.dash) for s in series], x0, y + 16)
    top = y + 46
    bottom = top + plot_h
    values = [c.value for s in series for c in s.cells] + [chart.reference[0] if chart.reference else None]
    # The axis runs past the largest value, leaving room for the label above its point.
    room = nice_ceiling(max([v for v in values if v] or [1]) * (2 if chart.log else 1.15))
    ys = Scale(values, bottom, top, chart.log, hi=room)
    xscale = Scale(xs, x0, x1, x_log, lo=min(xs) / 2, hi=max(xs) * 2) if x_log else Scale(xs, x0, x1, False)
    body += axis_y(ys, x0, x1, chart.axis_label, top, bottom)
    for x in xs:
        body.append(txt(xscale(x), bottom + 16, tick_text(x), "tick", "middle"))
    body.append(txt((x0 + x1) / 2, bottom + 36, x_label, "axis", "middle"))
    if chart.reference:
        value, label = chart.reference
        body.append(f'<line class="ref" x1="{x0}" y1="{ys(value):.1f}" x2="{x1}" y2="{ys(value):.1f}"/>')
        body.append(txt(x1, ys(value) - 5, label, "note", "end"))
    for s in series:
        body += curve(s, xs, xscale, ys, bottom)
    desc = describe(series, [f"at {tick_text(x)}" for x in xs])
    return svg(chart, width, bottom + 44 + PAD, desc, body)


def axis_y(scale, x0, x1, label, top, bottom):
    body = []
    for tick in scale.ticks():
        y = scale(tick)
        body.append(f'<line class="grid" x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}"/>')
        body.append(txt(x0 - 6, y + 4, tick_text(tick), "tick", "end"))
    body.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{bottom}" stroke="#404040"/>')
    body.append(f'<line x1="{x0}" y1="{bottom}" x2="{x1}" y2="{bottom}" stroke="#404040"/>')
    middle = (top + bottom) / 2
    body.append(txt(PAD + 12, middle, label, "axis", "middle", f' transform="rotate(-90 {PAD + 12} {middle:.1f})"'))
    return body


def curve(s, xs, xscale, ys, bottom):
    """A series' line, markers and labels: above or below each point, and
    to the right of the last one (where the lines meet most)."""
    points, body = [], []
    for i, (x, cell) in enumerate(zip(xs, s.cells)):
        if cell.value is None:
            body.append(cell_text(xscale(x), bottom - 8, cell, "middle"))
            continue
        px, py = xscale(x), ys(cell.value)
        points.append(f"{px:.1f},{py:.1f}")
        body.append(mark(s.marker, px, py, s.colour))
        label = cell.text + (f" ({cell.note})" if cell.note else "")
        if i == len(xs) - 1:
            body.append(txt(px + 9, py + 4, label, "value"))
        else:
            body.append(txt(px, py + 19 if s.below else py - 10, label, "value", "middle"))
    line = (f'<polyline points="{" ".join(points)}" fill="none" stroke="{s.colour}" stroke-width="2.5"'
            f'{dash_attr(s.dash)}/>')
    return [line] + body if len(points) > 1 else body


# --- the comparison (bench/compare.sh) --------------------------------------

RATES = (1000, 300, 100)
RATE_SERIES = [("1,000 msg/s", BLUE), ("300 msg/s", VERMILLION), ("100 msg/s", GREEN)]


def reports_date(out, pattern="*.json"):
    """The UTC day the newest report was written: the run's date."""
    times = [os.path.getmtime(p) for p in glob.glob(os.path.join(out, pattern))]
    if not times:
        return "an unknown date"
    return datetime.datetime.fromtimestamp(max(times), datetime.timezone.utc).date().isoformat()


def fanout_rows(out):
    """(label, Switchboard?, {rate: combined report or None}) in the table's order."""
    rows = [(name, name.startswith("switchboard"),
             {rate: compare_table.fanout(out, name, f"fanout-{rate}") for rate in RATES})
            for name in compare_table.servers(out)]
    wide = compare_table.fanout(out, "switchboard", "fanout-1000-wide")
    if wide is not None:
        rows.insert(1, (compare_table.wide_label(), True, {1000: wide, 300: None, 100: None}))
    return rows


def fanout_cell(report, figure):
    """A fan-out bar with the table's own texts: figure is "per_cpu" or "p99"."""
    if report is None:
        return Cell(None, MISSING)
    if "error" in report:
        return Cell(None, FAILED)
    per_cpu, latency, loss = compare_table.fanout_cells(report)
    note = "no loss" if loss == "0" else f"lost {loss}"
    if figure == "per_cpu":
        return Cell(report.get("deliveries_per_server_cpu_second"), per_cpu, note)
    value = compare_table.p99(report)
    return Cell(value, MISSING if value is None else f"{latency} ms", note)


def idle_cell(report):
    if report is None:
        return Cell(None, MISSING)
    if "error" in report:
        return Cell(None, FAILED)
    value = report.get("server_anon_bytes_per_connection")
    closed = report.get("closed_by_server")
    note = f"{closed:,} of {report.get('connections', 0):,} closed by the server" if closed else ""
    return Cell(value, MISSING if value is None else f"{compare_table.num(value)} B", note)


def compare_charts(out):
    """{file name: (alt text, SVG)} for the comparison's three charts (none
    without reports)."""
    date = reports_date(out)
    names = compare_table.servers(out)
    if not names:
        return {}
    idles = {name: compare_table.load(out, name, "idle") for name in names}
    shown = next((r for r in idles.values() if r and "error" not in r), {})
    idle = Chart(
        "compare-idle", "Server memory per idle WebSocket (less is better)",
        f"Anonymous resident memory (RssAnon) the server holds per open, joined, idle WebSocket, "
        f"{shown.get('connections', 0):,} connections in {shown.get('rooms', 0):,} rooms; bench/compare.sh, "
        f"reports of {date}. Log scale. Switchboard's rows in blue and bold.",
        "bytes per connection (log scale)", log=True, reference=(1024, "1 KB target"))
    rows = [Row(name, [idle_cell(idles[name])], name.startswith("switchboard")) for name in names]
    out_files = {"compare-idle.svg": (idle.title, bar_chart(idle, [("bytes", BLUE)], rows))}
    fan = fanout_rows(out)
    counts = {r.get("rounds", 1) for _, _, by in fan for r in by.values() if r and "error" not in r}
    over = f"median over {max(counts)} rounds" if counts and max(counts) > 1 else "one run"
    common = (f"One room of 1,000 subscribers, 100-byte messages at 1,000, 300 and 100 a second, each server on "
              f"one core; bench/compare.sh, reports of {date}; {over}, loss from the worst round.")
    efficiency = Chart(
        "compare-efficiency", "Deliveries per server CPU-second (more is better)",
        f"{common} Switchboard's rows are bold on a blue band. A server that lost messages did less work "
        "than asked, so its figure is not comparable.",
        "deliveries per second of server CPU time")
    latency = Chart(
        "compare-p99", "p99 delivery latency (less is better)",
        f"{common} Log scale. Switchboard's rows are bold on a blue band. A p99 with loss is not comparable: "
        "lost messages have no latency.",
        "99th-percentile latency, publisher to subscriber (ms, log scale)", log=True)
    for chart, figure in ((efficiency, "per_cpu"), (latency, "p99")):
        rows = [Row(label, [fanout_cell(by[rate], figure) for rate in RATES], hl) for label, hl, by in fan]
        out_files[f"{chart.slug}.svg"] = (chart.title, bar_chart(chart, RATE_SERIES, rows, "loss (worst round)"))
    return out_files


def write_charts(charts, img_dir):
    """Writes {file name: (alt, SVG)} into img_dir; returns [(alt, path)]."""
    os.makedirs(img_dir, exist_ok=True)
    written = []
    for name, (alt, text) in charts.items():
        path = os.path.join(img_dir, name)
        with open(path, "w") as f:
            f.write(text)
        written.append((alt, path))
    return written


def write_compare(out, img_dir):
    return write_charts(compare_charts(out), img_dir)


# --- the scaling curves (bench/scaling.sh) ----------------------------------


def scaling_reports(out):
    """{"idle-N": report, "fanout-S": report} from scaling.sh's OUT directory
    (files scaling.idle-N.json and scaling.fanout-S.json)."""
    found = {}
    for path in glob.glob(os.path.join(out, "scaling.*.json")):
        scenario = os.path.basename(path)[len("scaling."):-len(".json")]
        found[scenario] = compare_table.load(out, "scaling", scenario)
    return found


def by_size(reports, prefix):
    """[(size, report)] for the reports named PREFIX-SIZE, smallest first."""
    sized = [(int(k.split("-", 1)[1]), r) for k, r in reports.items()
             if k.startswith(prefix + "-") and k.split("-", 1)[1].isdigit()]
    return sorted(sized, key=lambda pair: pair[0])


def figure_cell(report, key, fmt, note=""):
    if report is None:
        return Cell(None, MISSING)
    if "error" in report:
        return Cell(None, FAILED)
    value = key(report)
    return Cell(value, MISSING if value is None else fmt.format(value), note)


def lost_note(report):
    return f"{report['lost']:,} lost" if report and report.get("lost") else ""


def scaling_charts(reports, source):
    """{file name: (alt, SVG)} for memory per connection against the number
    of connections, and fan-out cost and latency against room size."""
    idle, fan = by_size(reports, "idle"), by_size(reports, "fanout")
    charts = {}
    if idle:
        rooms = next((r.get("rooms") for _, r in idle if r and r.get("rooms")), None)
        chart = Chart("scaling-memory", "Memory per idle WebSocket against the number of connections",
                      f"Server anonymous memory (RssAnon) per open, joined, idle WebSocket"
                      f"{f' in {rooms:,} rooms' if rooms else ''}, a fresh server for each count. {source}",
                      "bytes per connection", reference=(1024, "1 KB target"))
        cells = [figure_cell(r, lambda r: r.get("server_anon_bytes_per_connection"), "{:,.0f} B") for _, r in idle]
        charts["scaling-memory.svg"] = (chart.title, line_chart(
            chart, "idle connections (log scale)", [n for n, _ in idle], [Series("Switchboard", BLUE, cells)]))
    if fan:
        first = next((r for _, r in fan if r and "error" not in r), {})
        room = (f"One room, {first.get('rate', 0):,.0f} messages a second of {first.get('size', 0):,} bytes, a "
                f"fresh server for each size. {source}")
        per_delivery = lambda r: 1e6 / r["deliveries_per_server_cpu_second"] if r.get(
            "deliveries_per_server_cpu_second") else None
        cost = Chart("scaling-fanout", "Server CPU per delivery against room size (less is better)", room,
                     "server CPU µs per delivery (log scale)", log=True)
        cells = [figure_cell(r, per_delivery, "{:.2f} µs", lost_note(r)) for _, r in fan]
        sizes = [s for s, _ in fan]
        charts["scaling-fanout.svg"] = (cost.title, line_chart(
            cost, "subscribers in the room (log scale)", sizes, [Series("Switchboard", BLUE, cells)]))
        latency = Chart("scaling-latency", "Delivery latency against room size (less is better)", room,
                        "latency, publisher to subscriber (ms, log scale)", log=True)
        p = lambda q: lambda r: (r.get("latency_ms") or {}).get(q)
        p99s = Series("p99", VERMILLION, [figure_cell(r, p("p99"), "{:.2f} ms", lost_note(r)) for _, r in fan])
        p50s = Series("p50", BLUE, [figure_cell(r, p("p50"), "{:.2f} ms") for _, r in fan], "square", "5 3", True)
        charts["scaling-latency.svg"] = (latency.title, line_chart(
            latency, "subscribers in the room (log scale)", sizes, [p99s, p50s]))
    return charts


def scaling_source_from_reports(out, reports):
    fan = next((r for _, r in by_size(reports, "fanout") if r and "error" not in r), {})
    seconds = f", {fan['duration_s']:g} s at each size" if fan.get("duration_s") else ""
    return f"bash bench/scaling.sh, reports of {reports_date(out, 'scaling.*.json')}{seconds}."


def main(argv):
    usage = "usage: charts.py compare OUT_DIR IMG_DIR | scaling OUT_DIR IMG_DIR | scaling-figures FILE IMG_DIR"
    if len(argv) != 3 or argv[0] not in ("compare", "scaling", "scaling-figures"):
        sys.exit(usage)
    kind, source, img_dir = argv
    if kind == "compare":
        written = write_compare(source, img_dir)
    elif kind == "scaling":
        reports = scaling_reports(source)
        written = write_charts(scaling_charts(reports, scaling_source_from_reports(source, reports)), img_dir)
    else:
        with open(source) as f:
            kept = json.load(f)
        written = write_charts(scaling_charts(kept["reports"], kept["source"]), img_dir)
    for _, path in written:
        print(path)
    if not written:
        sys.exit(f"charts: no reports in {source}")


if __name__ == "__main__":
    main(sys.argv[1:])
