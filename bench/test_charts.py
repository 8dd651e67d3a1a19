"""Tests for bench/charts.py on synthetic reports: the SVG parses, names
every server with its figures, and draws a failed or missing scenario as
text, never as a bar.

    python3 -m unittest bench/test_charts.py
"""
import contextlib
import io
import json
import os
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import charts  # noqa: E402
import compare_table  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"
RUN_TIME = 1796241600  # 2026-12-02 20:00 UTC


def fanout_report(per_cpu, p99, lost=0, members_closed=0):
    expected = 10_000_000
    return {
        "scenario": "fanout", "members": 1000, "rate": 1000.0, "duration_s": 10.0, "size": 100, "sent": 10000,
        "expected": expected, "received": expected - lost, "lost": lost, "loss_percent": 100 * lost / expected,
        "members_closed": members_closed, "publisher_errors": 0, "latency_ms": {"p50": p99 / 2, "p99": p99},
        "deliveries_per_server_cpu_second": per_cpu,
    }


def idle_report(per_conn, closed=0):
    return {"scenario": "idle", "connections": 15000, "rooms": 100, "closed_by_server": closed,
            "connects_per_second": 2000.0, "server_anon_bytes_per_connection": per_conn}


def write_reports(out):
    """switchboard (three rounds, and one single run), node-ws with loss,
    socketio failed throughout, nats with no fan-out reports at all and
    python-websockets with no reports (so no row)."""
    reports = {
        "switchboard.idle": idle_report(819.4),
        "switchboard.fanout-100": fanout_report(112_486, 11.6),
        "node-ws.idle": idle_report(5714.6, closed=3),
        "socketio.idle": {"error": "Error: connect refused"},
        "nats.idle": idle_report(23989.0),
    }
    for k, (per_cpu, p99) in enumerate([(1_400_000, 22.5), (1_500_000, 30.0), (1_300_000, 20.0)], 1):
        reports[f"switchboard.fanout-1000.r{k}"] = fanout_report(per_cpu, p99)
        reports[f"switchboard.fanout-300.r{k}"] = fanout_report(300_000 + k, 19.6)
        reports[f"node-ws.fanout-1000.r{k}"] = fanout_report(82_287, 10_944.5, lost=9_324_000)
        reports[f"node-ws.fanout-300.r{k}"] = fanout_report(88_620, 7_831.6)
        reports[f"node-ws.fanout-100.r{k}"] = fanout_report(100_101, 444.4)
        for rate in (1000, 300, 100):
            reports[f"socketio.fanout-{rate}.r{k}"] = {"error": "Error: the server closed the connection"}
    for name, report in reports.items():
        path = os.path.join(out, f"{name}.json")
        with open(path, "w") as f:
            f.write(json.dumps(report) + "\n")
        os.utime(path, (RUN_TIME, RUN_TIME))


def parse(path):
    """(root, {text: [class, ...]}, number of bars) of an SVG file."""
    root = ET.parse(path).getroot()
    texts = {}
    for element in root.iter(SVG + "text"):
        texts.setdefault(element.text, []).append(element.get("class"))
    bars = sum(1 for rect in root.iter(SVG + "rect") if rect.get("class") == "bar")
    return root, texts, bars


class CompareCharts(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.out = os.path.join(self.tmp.name, "compare")
        os.makedirs(self.out)
        write_reports(self.out)
        self.img = os.path.join(self.tmp.name, "img")
        self.written = dict((os.path.basename(p), alt) for alt, p in charts.write_compare(self.out, self.img))

    def tearDown(self):
        self.tmp.cleanup()

    def chart(self, name):
        return parse(os.path.join(self.img, name))

    def test_every_chart_is_svg_with_a_title_and_a_description(self):
        self.assertEqual(set(self.written), {"compare-idle.svg", "compare-efficiency.svg", "compare-p99.svg"})
        for name in self.written:
            root, _, _ = self.chart(name)
            self.assertEqual(root.tag, SVG + "svg")
            self.assertEqual(root.get("role"), "img")
            self.assertEqual(root.find(SVG + "title").text, self.written[name])
            self.assertIn("reports of 2026-12-02", root.find(SVG + "desc").text)

    def test_each_server_with_a_report_is_labelled_and_one_without_is_not(self):
        for name in self.written:
            _, texts, _ = self.chart(name)
            for server in ("switchboard", "node-ws", "socketio", "nats"):
                self.assertIn(server, texts, f"{server} in {name}")
            self.assertNotIn("python-websockets", texts)

    def test_idle_values_and_the_failed_server(self):
        root, texts, bars = self.chart("compare-idle.svg")
        for value in ("819 B", "5,715 B", "23,989 B"):
            self.assertEqual(texts.get(value), ["value"], value)
        self.assertIn("3 of 15,000 closed by the server", texts)
        self.assertEqual(texts.get("failed"), ["failed"])
        self.assertEqual(bars, 3, "no bar for the failed server")
        self.assertIn("socketio: failed.", root.find(SVG + "desc").text)

    def test_efficiency_is_the_median_of_the_rounds_with_loss_beside_it(self):
        root, texts, bars = self.chart("compare-efficiency.svg")
        self.assertIn("1,400,000", texts)  # the median of 1.4M, 1.5M and 1.3M
        self.assertIn("112,486", texts)  # a scenario run once, not in rounds
        self.assertIn("lost 93.24%", texts)
        self.assertEqual(texts.get("failed"), ["failed"] * 3)
        self.assertEqual(texts.get(charts.MISSING), ["missing"] * 3, "nats has no fan-out reports")
        self.assertEqual(bars, 6, "switchboard and node-ws, three rates each")
        desc = root.find(SVG + "desc").text
        self.assertIn("socketio: 1,000 msg/s failed; 300 msg/s failed; 100 msg/s failed.", desc)
        self.assertIn("nats: 1,000 msg/s no report", desc)

    def test_p99_values_with_loss_on_a_log_axis(self):
        _, texts, bars = self.chart("compare-p99.svg")
        for value in ("22.5 ms", "19.6 ms", "11.6 ms", "10,944.5 ms", "444.4 ms"):
            self.assertIn(value, texts)
        self.assertIn("lost 93.24%", texts)
        self.assertIn("no loss", texts)
        self.assertEqual(bars, 6)
        for tick in ("1", "10", "100", "1,000", "10,000"):
            self.assertEqual(texts.get(tick), ["tick"], f"decade tick {tick}")

    def test_no_reports_no_charts(self):
        with tempfile.TemporaryDirectory() as empty:
            self.assertEqual(charts.compare_charts(empty), {})
            self.assertEqual(charts.scaling_charts(charts.scaling_reports(empty), "nothing"), {})

    def test_compare_table_writes_the_charts_and_shows_them_below_the_table(self):
        doc = os.path.join(self.tmp.name, "docs", "BENCHMARKS.md")
        os.makedirs(os.path.dirname(doc))
        with open(doc, "w") as f:
            f.write(f"# Benchmarks\n\n{compare_table.BEGIN}\nold\n{compare_table.END}\nafter\n")
        argv = sys.argv
        sys.argv = ["compare_table.py", self.out, "bash bench/compare.sh", "", doc]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                compare_table.main()
        finally:
            sys.argv = argv
        with open(doc) as f:
            text = f.read()
        table_end = text.index("| nats |")
        for name in self.written:
            self.assertTrue(os.path.exists(os.path.join(os.path.dirname(doc), "img", name)))
            self.assertGreater(text.index(f"](img/{name})"), table_end)
        self.assertIn("| socketio | failed | failed |", text)
        self.assertTrue(text.endswith(f"{compare_table.END}\nafter\n"))


class ScalingCharts(unittest.TestCase):
    def test_curves_from_reports_with_a_failed_room_size(self):
        with tempfile.TemporaryDirectory() as tmp:
            for n, per_conn in ((1000, 1008.0), (5000, 804.0), (15000, 833.0)):
                with open(os.path.join(tmp, f"scaling.idle-{n}.json"), "w") as f:
                    json.dump(idle_report(per_conn) | {"connections": n}, f)
            for s, per_cpu in ((10, 27_027), (100, 106_383), (10000, 1_020_408)):
                with open(os.path.join(tmp, f"scaling.fanout-{s}.json"), "w") as f:
                    json.dump(fanout_report(per_cpu, 3.17) | {"members": s, "lost": 5 if s == 10000 else 0}, f)
            with open(os.path.join(tmp, "scaling.fanout-1000.json"), "w") as f:
                f.write("Error: too many open files\n")
            with contextlib.redirect_stdout(io.StringIO()):
                charts.main(["scaling", tmp, os.path.join(tmp, "img")])
            _, texts, _ = parse(os.path.join(tmp, "img", "scaling-memory.svg"))
            for value in ("1,008 B", "804 B", "833 B", "1,000", "15,000"):
                self.assertIn(value, texts)
            root, texts, _ = parse(os.path.join(tmp, "img", "scaling-fanout.svg"))
            for value in ("37.00 µs", "9.40 µs", "0.98 µs (5 lost)"):
                self.assertIn(value, texts)
            self.assertEqual(texts.get("failed"), ["failed"])
            self.assertIn("at 1,000 failed", root.find(SVG + "desc").text)
            _, texts, _ = parse(os.path.join(tmp, "img", "scaling-latency.svg"))
            self.assertIn("3.17 ms", texts)
            self.assertEqual(texts.get("failed"), ["failed", "failed"], "p99 and p50")


class KeptScalingFigures(unittest.TestCase):
    def test_the_figures_kept_by_hand_draw_and_say_where_they_came_from(self):
        kept = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "img", "scaling-2026-11-30.json")
        with tempfile.TemporaryDirectory() as tmp:
            with contextlib.redirect_stdout(io.StringIO()):
                charts.main(["scaling-figures", kept, tmp])
            root, texts, _ = parse(os.path.join(tmp, "scaling-latency.svg"))
            self.assertIn("157.69 ms", texts)
            self.assertIn("copied by hand", root.find(SVG + "desc").text)
            _, texts, _ = parse(os.path.join(tmp, "scaling-fanout.svg"))
            self.assertIn("37.00 µs", texts)  # 1e6 / 27,027, as the table's column


class Scale(unittest.TestCase):
    def test_log_axis_starts_a_decade_below_and_covers_the_largest_value(self):
        scale = charts.Scale([819, 131_936], 0, 100, log=True)
        self.assertEqual((scale.lo, scale.hi), (100, 200_000))
        self.assertEqual(scale.ticks(), [100, 1_000, 10_000, 100_000])
        self.assertAlmostEqual(scale(100), 0)
        self.assertAlmostEqual(scale(200_000), 100)

    def test_linear_axis_starts_at_zero(self):
        scale = charts.Scale([1_937_984, 68_683], 0, 100, log=False)
        self.assertEqual(scale.ticks()[0], 0)
        self.assertGreaterEqual(scale.hi, 1_937_984)


if __name__ == "__main__":
    unittest.main()
