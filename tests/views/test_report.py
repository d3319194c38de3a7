"""HTML report: data → page, rendered in a real headless Chromium (chromium + chromium-driver, Debian)."""

from __future__ import annotations

import shutil
from pathlib import Path
import subprocess
import sys

import pytest

from vllm_otel_collector.errors import UserError
from vllm_otel_collector.views.data import alert_intervals, collect, parse_since
from vllm_otel_collector.views.html import write_report

PLOTS = ("ttft-hist", "tpot-hist", "ttft-heatmap", "tpot-heatmap", "e2e-heatmap", "latency-time", "tokens-time",
         "phase-waterfall", "load-waterfall", "load-cold-warm", "alerts-timeline", "causes-time", "goodput-time")
#: No network: every host resolves to nothing, so any fetch of plotly.js from a CDN (or anything else) fails loudly.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1800",
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9")
ARTIFACTS = Path(__file__).resolve().parents[2] / "data" / "test-artifacts"

# For each chart: labels (tick labels, axis titles, legend, colorbar, annotations) whose box leaves the chart's SVG,
# and whether the legend box overlaps the plot area.
CLIPPED_JS = """
var out = [];
document.querySelectorAll('div.chart').forEach(function(gd) {
  var svg = gd.querySelector('svg.main-svg'); if (!svg) { out.push([gd.id, 'no svg', '']); return; }
  var box = svg.getBoundingClientRect();
  gd.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text, .legend, .colorbar, '
                      + '.annotation-text, .cbaxis text').forEach(function(el) {
    var r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) return;
    if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
      out.push([gd.id, el.getAttribute('class') || el.tagName, (el.textContent || '').slice(0, 40)]);
  });
  var legend = gd.querySelector('.legend'), plot = gd.querySelector('.nsewdrag');
  if (legend && plot) {
    var l = legend.getBoundingClientRect(), p = plot.getBoundingClientRect();
    if (l.width > 0 && l.left < p.right && l.right > p.left && l.top < p.bottom && l.bottom > p.top)
      out.push([gd.id, 'legend over the plot area', '']);
  }
});
return out;
"""


def test_parse_since():
    assert parse_since("30m", now=10_000) == 10_000 - 1800
    assert parse_since("2d", now=200_000) == 200_000 - 172_800
    assert parse_since("2026-01-01T00:00:00Z") == 1767225600
    assert parse_since("2026-01-01T01:00:00+01:00") == 1767225600
    assert parse_since("1767225600") == 1767225600
    with pytest.raises(UserError, match="--since 'yesterday'"):
        parse_since("yesterday")


def test_alert_intervals_pair_firing_and_resolved():
    rows = [{"Timestamp": 10, "Fingerprint": "a", "RuleName": "r1", "State": "firing", "Severity": "warning"},
            {"Timestamp": 20, "Fingerprint": "b", "RuleName": "r2", "State": "firing", "Severity": "critical"},
            {"Timestamp": 30, "Fingerprint": "a", "RuleName": "r1", "State": "resolved", "Severity": "warning"}]
    assert alert_intervals(rows, 0, 100) == [("r1", 10, 30, "warning"), ("r2", 20, 100, "critical")]
    assert alert_intervals(rows, 25, 100) == [("r1", 25, 30, "warning"), ("r2", 25, 100, "critical")]


def test_collect_reads_the_window(filled):
    store, info = filled
    data = collect(store, info.start - 60, info.now + 60)
    assert len(data.requests) == info.requests
    assert [r["Timestamp"] for r in data.requests] == sorted(r["Timestamp"] for r in data.requests)
    assert sum(1 for r in data.requests if r["Status"] == "error") == info.statuses["error"]
    assert round(sum(v for _, v in data.throughput) * 60) == sum(r["OutputTokens"] for r in data.requests)
    assert [round(x["LoadSeconds"], 1) for x in data.loads] == [41.5, 17.2]
    half = collect(store, info.now - 45 * 60, info.now + 60)
    assert 0 < len(half.requests) < info.requests


def test_unreadable_store_is_one_line_error(filled):
    store, _ = filled
    from vllm_otel_collector.store.testing import fresh_store

    empty = fresh_store("views_empty", apply_migrations=False)
    try:
        with pytest.raises(UserError, match="cannot read the report data from ClickHouse"):
            collect(empty, 0, 1)
    finally:
        empty.close()


@pytest.fixture(scope="module")
def chrome():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium/chromium-driver not installed (make test installs them with apt-get)")
    webdriver = pytest.importorskip("selenium.webdriver")
    import tempfile

    profile = tempfile.mkdtemp(prefix="vllm-otel-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={profile}",):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=opts, service=service)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open(chrome, path):
    """Load ``path``, wait until every chart is drawn; returns the console errors."""
    from selenium.webdriver.support.ui import WebDriverWait

    chrome.get(path.as_uri())
    WebDriverWait(chrome, 60).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    return [e for e in chrome.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _js(chrome, expr: str):
    return chrome.execute_script(f"return {expr};")


def _screenshot(chrome, name: str) -> Path:
    """Full-page PNG under data/test-artifacts/ (gitignored); returns its path."""
    height = _js(chrome, "document.documentElement.scrollHeight")
    chrome.set_window_size(1400, height + 120)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / name
    out.write_bytes(chrome.get_screenshot_as_png())
    chrome.set_window_size(1400, 1800)
    return out


def test_report_renders_every_chart_in_chromium(filled, chrome, tmp_path):
    from selenium.webdriver.common.by import By

    store, info = filled
    out = write_report(store, tmp_path / "report.html", since=info.start - 60, until=info.now + 60)
    page = out.read_text()
    assert "<script src" not in page and "<link" not in page  # plotly.js is inlined, nothing to fetch
    assert _open(chrome, out) == []
    assert _js(chrome, "performance.getEntriesByType('resource').length") == 0  # opened without network
    body = chrome.find_element(By.TAG_NAME, "body")
    assert body.get_attribute("data-plots") == str(len(PLOTS))
    marks = {"ttft-hist": "g.trace.bars path", "tpot-hist": "g.trace.bars path", "ttft-heatmap": "g.hm image",
             "tpot-heatmap": "g.hm image", "e2e-heatmap": "g.hm image", "latency-time": "g.trace.scatter path.point",
             "tokens-time": "g.trace.scatter path.js-line", "phase-waterfall": "g.trace.bars path",
             "load-waterfall": "g.trace.bars path", "load-cold-warm": "g.trace.bars path",
             "alerts-timeline": "g.trace.bars path", "causes-time": "g.trace.bars path",
             "goodput-time": "g.trace.scatter path.js-line"}
    for plot_id in PLOTS:
        el = chrome.find_element(By.ID, plot_id)
        assert el.get_attribute("data-empty") == "false", plot_id
        assert el.size["width"] > 500 and el.size["height"] >= 300, plot_id
        assert el.find_elements(By.CSS_SELECTOR, marks[plot_id]), plot_id
    assert _js(chrome, "document.querySelectorAll('#latency-time path.point').length") == info.requests
    # every request is counted once in each heatmap
    for hm in ("ttft-heatmap", "tpot-heatmap", "e2e-heatmap"):
        z = _js(chrome, f"document.getElementById('{hm}').data[0].z")
        assert sum(c or 0 for row in z for c in row) == info.requests, hm
    # the slowest requests' phases, labelled with trace ids; the slowest first with its full id in the hover
    traces = _js(chrome, "document.getElementById('phase-waterfall').data.map(t => [t.name, t.y.length, t.customdata[0]])")
    assert traces == [[p, 12, f"trace {info.slowest_trace}"] for p in ("queue", "prefill", "decode")]
    ticks = sorted(chrome.find_elements(By.CSS_SELECTOR, "#phase-waterfall .ytick text"), key=lambda t: t.location["y"])
    assert len(ticks) == 12 and ticks[0].text.startswith(info.slowest_trace[:12])  # the slowest on top
    # cold (41.5 s, compile 12 s) next to warm (17.2 s, compile 2.5 s) for the same model
    cw = _js(chrome, "document.getElementById('load-cold-warm').data.map(t => [t.name, t.y])")
    assert dict((n, [round(v, 2) if v is not None else None for v in y]) for n, y in cw) == {
        "weights": [0.4, 0.2], "compile": [12.0, 2.5], "kv_cache": [1.1, 0.9], "warmup": [3.0, 1.5],
        "other": [25.0, 12.1]}
    assert "2.4× faster" in chrome.find_element(By.CSS_SELECTOR, "#load-cold-warm .annotation-text").text
    assert len(_js(chrome, "document.getElementById('alerts-timeline').data.flatMap(t => t.y)")) == 2
    assert chrome.execute_script(CLIPPED_JS) == []
    shot = _screenshot(chrome, "report.png")
    assert shot.stat().st_size > 100_000


def test_report_is_interactive(filled, chrome, tmp_path):
    """Hover shows values, a legend click hides a series, a drag zooms (real input events through WebDriver)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    store, info = filled
    out = write_report(store, tmp_path / "report.html", since=info.start - 60, until=info.now + 60)
    assert _open(chrome, out) == []
    chrome.execute_script("document.getElementById('phase-waterfall').scrollIntoView()")
    bar = chrome.find_elements(By.CSS_SELECTOR, "#phase-waterfall g.trace.bars path")[-1]  # a decode bar
    ActionChains(chrome).move_to_element(bar).perform()
    hover = chrome.find_element(By.CSS_SELECTOR, "#phase-waterfall .hoverlayer .hovertext").text
    assert hover.startswith("trace ") and "decode" in hover and " s" in hover
    chrome.execute_script("document.getElementById('latency-time').scrollIntoView()")
    first = chrome.find_elements(By.CSS_SELECTOR, "#latency-time .legend .traces .legendtoggle")[0]
    ActionChains(chrome).click(first).perform()
    # Plotly applies a single legend click after its double-click delay (300 ms)
    WebDriverWait(chrome, 5).until(
        lambda d: _js(d, "document.getElementById('latency-time').data[0].visible") == "legendonly")
    plot = chrome.find_element(By.CSS_SELECTOR, "#tokens-time .nsewdrag")
    before = _js(chrome, "document.getElementById('tokens-time').layout.xaxis.range")
    chrome.execute_script("arguments[0].scrollIntoView()", plot)
    ActionChains(chrome).move_to_element_with_offset(plot, -100, 0).click_and_hold().move_by_offset(150, 0)\
        .release().perform()
    after = _js(chrome, "document.getElementById('tokens-time').layout.xaxis.range")
    assert after != before and _js(chrome, "document.getElementById('tokens-time').layout.xaxis.autorange") is False


def test_empty_window_still_renders(filled, chrome, tmp_path):
    from selenium.webdriver.common.by import By

    store, info = filled
    out = write_report(store, tmp_path / "empty.html", since=info.start - 7200, until=info.start - 3600)
    assert _open(chrome, out) == []
    for plot_id in PLOTS:
        el = chrome.find_element(By.ID, plot_id)
        assert el.get_attribute("data-empty") == "true" and el.size["height"] > 100, plot_id
        assert "no data in this window" in el.text, plot_id
    assert chrome.execute_script(CLIPPED_JS) == []
    _screenshot(chrome, "report-empty.png")


def test_report_cli_bad_since_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vllm_otel_inference.cli", "report", "--out", str(tmp_path / "r.html"),
                           "--since", "yesterday", "--clickhouse", f"chdb://{tmp_path}/ch"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("vllm-otel report: error: --since 'yesterday'")


def test_report_cli_writes_the_page(filled, tmp_path, capsys):
    from vllm_otel_collector.store.testing import shared_chdb_path
    from vllm_otel_inference.cli import main

    store, info = filled
    out = tmp_path / "cli" / "report.html"
    rc = main(["report", "--out", str(out), "--since", "2h", "--clickhouse", f"chdb://{shared_chdb_path()}",
               "--database", store.database])
    assert rc == 0 and capsys.readouterr().out.strip() == str(out.resolve())
    page = out.read_text()
    assert all(f'id="{p}"' in page for p in PLOTS) and 'data-empty="true"' not in page
    assert f"<td>{info.requests}</td>" in page  # KPI table: every request of the 90 minutes is within 2 h


def test_report_cli_without_store_is_one_line(tmp_path, capsys):
    from vllm_otel_inference.cli import main

    rc = main(["report", "--out", str(tmp_path / "r.html"), "--data-dir", str(tmp_path / "nothing")])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (f"vllm-otel report: error: no embedded store at "
                                               f"{(tmp_path / 'nothing' / 'clickhouse').resolve()} (run the collector "
                                               "or the demo first, or pass --clickhouse)")


def test_short_runs_get_fine_throughput_buckets():
    from vllm_otel_collector.views.data import ReportData
    from vllm_otel_collector.views.html import _throughput

    reqs = [{"Timestamp": t, "OutputTokens": n} for t, n in ((100.2, 10), (100.7, 20), (103.1, 30))]
    points, caption = _throughput(ReportData(since=0, until=200, requests=reqs, throughput=[(60.0, 1.0)]))
    assert points == [(100, 30.0), (101, 0.0), (102, 0.0), (103, 30.0)] and "1 s buckets" in caption
    long = [{"Timestamp": t, "OutputTokens": 1} for t in (0.0, 4000.0)]
    assert _throughput(ReportData(since=0, until=5000, requests=long, throughput=[(60.0, 1.0)]))[0] == [(60.0, 1.0)]


# ---- heatmap rows labelled by their bucket bounds ------------------------------------------------------------------
NICE = (1, 1.5, 2, 3, 4, 6, 8)  # the report's bucket bounds per decade, written out independently of charts.py


def _spec(page: str, chart_id: str) -> dict:
    """The Plotly figure (data + layout) the page embeds for ``chart_id``."""
    import json
    import re

    m = re.search(rf'<script type="application/json" id="spec-{chart_id}">(.*?)</script>', page, re.S)
    return json.loads(m[1].replace("<\\/", "</"))


def _expected_rows(values: list[float]) -> list[tuple[float, float, int]]:
    """``(lo, hi, count)`` per bucket ``[lo, hi)`` from the lowest bucket holding a value to the highest."""
    from decimal import Decimal

    bounds = sorted(float(Decimal(m) * Decimal(10) ** e) for e in range(-5, 4) for m in map(str, NICE))
    lo = max(b for b in bounds if b <= min(values))
    hi = min(b for b in bounds if b > max(values))
    edges = [b for b in bounds if lo <= b <= hi]
    return [(a, b, sum(1 for v in values if a <= v < b)) for a, b in zip(edges, edges[1:])]


def _check_heatmap(fig: dict, values: list[float]) -> list[str]:
    """The figure's y ticks are the bounds of the buckets holding ``values`` (row centres, evenly thinned to at most
    12), and each row counts the values in its bucket. Returns the tick labels."""
    import math

    rows = _expected_rows(values)
    every = math.ceil(len(rows) / 12)
    shown = list(range(0, len(rows), every))
    y = fig["layout"]["yaxis"]
    assert y["tickmode"] == "array"
    assert y["ticktext"] == [f"{rows[i][0]:g}–{rows[i][1]:g} s" for i in shown]
    assert y["tickvals"] == [i + 0.5 for i in shown]
    (trace,) = fig["data"]
    assert trace["y"] == list(range(len(rows) + 1))  # row i spans [i, i + 1]
    assert [sum(c or 0 for c in row) for row in trace["z"]] == [n for _, _, n in rows]
    assert [row[0] for row in trace["customdata"]] == [f"{a:g}–{b:g} s" for a, b, _ in rows]
    return y["ticktext"]


def _request(ts: float, **latencies) -> dict:
    row = {"Timestamp": ts, "TraceId": f"{int(ts):032x}", "Model": "m", "Status": "ok", "TTFT": None, "TPOT": None,
           "E2E": None, "Queue": 0.001, "Prefill": 0.01, "Decode": 0.1, "InputTokens": 10, "OutputTokens": 10,
           "TokensPerSecond": 100.0, "E2ELevel": "GOOD", "TTFTLevel": "GOOD", "Cause": "ok", "Good": 1,
           "RunningAtArrival": None, "WaitingAtArrival": None, "KVCacheUsageAtArrival": None, "PrefixHitShare": None,
           "BaselineQueue": None, "BaselinePrefill": None, "BaselineTPOT": None, "SLOTTFT": 2.0, "SLOTPOT": 0.1}
    return {**row, **latencies}


def test_tpot_near_40_ms_is_labelled_by_its_buckets():
    """TPOT values near 0.04 s: the rows are 0.03–0.04 s and 0.04–0.06 s (formerly one log tick "5" off the data)."""
    from vllm_otel_collector.views.data import ReportData
    from vllm_otel_collector.views.html import render_html

    tpots = [0.038, 0.0399, 0.04, 0.041, 0.045, 0.0599]
    reqs = [_request(1000.0 + i, TTFT=0.2 + 0.1 * i, TPOT=v, E2E=1.5 + i) for i, v in enumerate(tpots)]
    page = render_html(ReportData(since=900, until=1100, requests=reqs))
    assert _check_heatmap(_spec(page, "tpot-heatmap"), tpots) == ["0.03–0.04 s", "0.04–0.06 s"]
    assert _spec(page, "tpot-heatmap")["data"][0]["z"] == [[1, 1, None, None, None, None],
                                                            [None, None, 1, 1, 1, 1]]
    assert _check_heatmap(_spec(page, "ttft-heatmap"), [r["TTFT"] for r in reqs]) == [
        "0.2–0.3 s", "0.3–0.4 s", "0.4–0.6 s", "0.6–0.8 s"]
    assert _check_heatmap(_spec(page, "e2e-heatmap"), [r["E2E"] for r in reqs]) == [
        "1.5–2 s", "2–3 s", "3–4 s", "4–6 s", "6–8 s"]


def test_many_buckets_are_thinned_evenly_at_real_bounds():
    from vllm_otel_collector.views import charts

    values = [0.0011, 0.02, 0.5, 3.0, 95.0]  # 1 ms … 95 s: 35 buckets
    labels = _check_heatmap(charts.heatmap([(float(i), v) for i, v in enumerate(values)], "x").to_plotly_json(),
                            values)
    assert labels == ["0.001–0.0015 s", "0.003–0.004 s", "0.008–0.01 s", "0.02–0.03 s", "0.06–0.08 s", "0.15–0.2 s",
                      "0.4–0.6 s", "1–1.5 s", "3–4 s", "8–10 s", "20–30 s", "60–80 s"]


def test_report_heatmap_ticks_are_the_bucket_bounds_of_the_data(filled, tmp_path):
    store, info = filled
    data = collect(store, info.start - 60, info.now + 60)
    page = write_report(store, tmp_path / "ticks.html", since=info.start - 60, until=info.now + 60).read_text()
    for chart_id, col in (("ttft-heatmap", "TTFT"), ("tpot-heatmap", "TPOT"), ("e2e-heatmap", "E2E")):
        values = [r[col] for r in data.requests if r[col] is not None]
        assert len(values) == info.requests
        labels = _check_heatmap(_spec(page, chart_id), values)
        assert labels, chart_id



# ---- why slow: causes and goodput (migration 0134) -----------------------------------------------------------------
def _tables(page: str) -> dict[str, list[list[str]]]:
    """Every ``<table id=...>`` of the page as rows of cell texts (header row first)."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.current, self.cell = {}, None, None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.current = self.tables.setdefault(dict(attrs).get("id", ""), [])
            elif tag == "tr" and self.current is not None:
                self.current.append([])
            elif tag in ("td", "th") and self.current is not None:
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.current[-1].append(self.cell)
                self.cell = None
            elif tag == "table":
                self.current = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    p = P()
    p.feed(page)
    return p.tables


def _raw(store, sql: str, info) -> list[tuple]:
    return store.query(sql.replace("WINDOW", "Timestamp >= toDateTime64({s:Float64}, 9) AND Timestamp < "
                                             "toDateTime64({u:Float64}, 9)"),
                       parameters={"s": info.start - 60.0, "u": info.now + 60.0}).result_rows


def test_why_slow_counts_causes_and_goodput(filled, tmp_path):
    from .data import MODEL, SLOW

    store, info = filled
    page = write_report(store, tmp_path / "why.html", since=info.start - 60, until=info.now + 60).read_text()
    # the requests built to miss one SLO each got their cause (exact: SLO rules, no baseline involved)
    ids = ", ".join(f"'{t}'" for t in info.slow)
    assert dict(_raw(store, f"SELECT TraceId, toString(Cause) FROM llm_requests WHERE TraceId IN ({ids})", info)) \
        == info.slow and sorted(info.slow.values()) == sorted(c for _, c, *_ in SLOW)
    raw = dict(_raw(store, "SELECT toString(Cause), count() FROM llm_requests WHERE WINDOW GROUP BY 1", info))
    assert raw.get("aborted", 0) == info.statuses["abort"]
    assert raw.get("error", 0) == info.statuses["error"] + info.statuses["timeout"]
    # good = ok and within the default SLOs (TTFT 2 s, TPOT 0.1 s): every ok request but the SLOW ones
    good = info.statuses["ok"] - len(SLOW)
    assert _raw(store, "SELECT countIf(Good = 1) FROM llm_requests WHERE WINDOW", info) == [(good,)]

    # causes over time: the rollup's counts, per cause, add up to the raw table's; each SLOW request in its column
    causes = {t["name"]: t for t in _spec(page, "causes-time")["data"]}
    assert list(causes) == ["ok", "queued", "prefill", "decode", "preempted", "aborted", "error"]
    assert {n: sum(t["y"]) for n, t in causes.items()} == {c: raw.get(c, 0) for c in causes}
    assert causes["ok"]["visible"] == "legendonly" and causes["decode"].get("visible", True) is True
    step = 120  # 90 minutes of rollup minutes: 2-minute columns
    centers = [_unix(x) for x in causes["decode"]["x"]]
    assert all(b - a == step for a, b in zip(centers, centers[1:])) and centers[0] % step == step / 2
    for offset, cause, *_ in SLOW:
        col = centers.index((info.start + offset) // step * step + step / 2)
        assert causes[cause]["y"][col] >= 1, (offset, cause)

    # goodput vs throughput per model: req/s per column x column seconds = the requests / the good ones
    lines = {t["name"]: t["y"] for t in _spec(page, "goodput-time")["data"]}
    assert sorted(lines) == [f"{MODEL} goodput", f"{MODEL} throughput"]
    assert round(sum(lines[f"{MODEL} throughput"]) * step) == info.requests
    assert round(sum(lines[f"{MODEL} goodput"]) * step) == good
    # the per-model table over the minutes the rollup covers (first minute to the end of the last)
    ((first, last),) = _raw(store, "SELECT toUnixTimestamp(min(toStartOfMinute(Timestamp))), toUnixTimestamp("
                                   "max(toStartOfMinute(Timestamp))) FROM llm_requests WHERE WINDOW", info)
    seconds = last + 60 - first
    tables = _tables(page)
    head, row = tables["goodput-table"]
    assert head == ["model", "requests", "good", "goodput ratio", "throughput req/s", "goodput req/s", "ok", "queued",
                    "prefill", "decode", "preempted", "aborted", "error"]
    assert row == [MODEL, str(info.requests), str(good), f"{good / info.requests * 100:.1f} %",
                   f"{info.requests / seconds:.4f}", f"{good / seconds:.4f}",
                   *(str(raw.get(c, 0)) for c in head[6:])]

    # the slowest requests with their cause, trace id and numbers, slowest first
    head, *rows = tables["slow-table"]
    assert head[:6] == ["time", "model", "trace id", "cause", "status", "e2e s"] and len(rows) == 12
    slowest = _raw(store, "SELECT TraceId, toString(Cause), E2E FROM llm_requests WHERE WINDOW "
                          "ORDER BY E2E DESC LIMIT 12", info)
    assert [(r[2], r[3], r[5]) for r in rows] == [(t, c, f"{e:.3f}") for t, c, e in slowest]
    assert rows[0][2] == info.slowest_trace
    # the decode request of 40 tokens at 0.15 s (5.96 s): its numbers against its SLOs, engine state at arrival
    (decode,) = [r for r in rows if info.slow.get(r[2]) == "decode" and r[5] == "5.960"]
    assert decode[1] == MODEL and decode[4] == "ok"
    assert decode[6:8] == ["0.110 / 2.000", "0.150 / 0.100"]
    assert decode[8].startswith("0.010 / ") and decode[9].startswith("0.100 / ")  # baseline: "–" until one exists
    assert decode[10:] == ["40", "9 / 1", "62 %", "25 %"]


def _unix(x: str) -> float:
    """A Plotly date (local time, as charts.py writes it) as unix seconds."""
    from datetime import datetime

    return datetime.fromisoformat(x).timestamp()


def test_why_slow_on_an_empty_window(filled, tmp_path):
    store, info = filled
    out = write_report(store, tmp_path / "empty-why.html", since=info.start - 7200, until=info.start - 3600)
    page = out.read_text()
    tables = _tables(page)
    assert tables["goodput-table"][1] == ["no requests in this window"]
    assert tables["slow-table"][1] == ["no requests in this window"]
    assert _spec(page, "causes-time")["data"] == [] and _spec(page, "goodput-time")["data"] == []


def test_a_warmup_that_contains_the_compile_is_not_stacked_twice():
    """CPU: the 112.2 s compile ran inside the 115 s warm-up of a 130 s load; the chart stacks 2.8 s of warm-up."""
    from vllm_otel_collector.views.charts import load_phases

    cpu = {"WeightsSeconds": 1.0, "CompileSeconds": 112.2, "KVCacheSeconds": 0.5, "WarmupSeconds": 115.0,
           "LoadSeconds": 130.0}
    got = dict(load_phases(cpu))
    assert got["warmup"] == pytest.approx(2.8) and got["other"] == pytest.approx(130.0 - 1.0 - 112.2 - 0.5 - 2.8)
    gpu = {"WeightsSeconds": 10.0, "CompileSeconds": 30.0, "KVCacheSeconds": 2.0, "WarmupSeconds": 40.0,
           "LoadSeconds": 95.0}  # separate phases that fit in the load: kept as stored
    assert dict(load_phases(gpu))["warmup"] == 40.0
