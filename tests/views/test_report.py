"""HTML report: data → page, rendered in a real headless Chromium (chromium + chromium-driver, Debian)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from vllm_otel_collector.errors import UserError
from vllm_otel_collector.views.data import alert_intervals, collect, parse_since
from vllm_otel_collector.views.html import write_report

PLOTS = ("ttft-hist", "tpot-hist", "latency-time", "tokens-time", "phase-waterfall", "load-waterfall",
         "alerts-timeline")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1800")


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
    chrome.get(path.as_uri())
    errors = [e for e in chrome.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    return errors


def test_report_renders_every_plot_in_chromium(filled, chrome, tmp_path):
    from selenium.webdriver.common.by import By

    store, info = filled
    out = write_report(store, tmp_path / "report.html", since=info.start - 60, until=info.now + 60)
    page = out.read_text()
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert _open(chrome, out) == []
    body = chrome.find_element(By.TAG_NAME, "body")
    assert body.get_attribute("data-ready") == "1" and body.get_attribute("data-plots") == str(len(PLOTS))
    expected_marks = {"ttft-hist": "rect.bar", "tpot-hist": "rect.bar", "latency-time": "circle.point",
                      "tokens-time": "path.series", "phase-waterfall": "rect.bar", "load-waterfall": "rect.bar",
                      "alerts-timeline": "rect.bar"}
    for plot_id in PLOTS:
        el = chrome.find_element(By.ID, plot_id)
        assert el.get_attribute("data-empty") == "false", plot_id
        assert el.size["width"] > 300 and el.size["height"] > 100, plot_id
        assert el.find_elements(By.CSS_SELECTOR, expected_marks[plot_id]), plot_id
        png = el.screenshot_as_png
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000, plot_id
    assert len(chrome.find_elements(By.CSS_SELECTOR, "#latency-time circle.point")) == info.requests  # one dot per request
    waterfall_rows = chrome.find_elements(By.CSS_SELECTOR, "#phase-waterfall rect.bar")
    assert len(waterfall_rows) == 12 * 3
    assert len(chrome.find_elements(By.CSS_SELECTOR, "#alerts-timeline rect.bar")) == 2
    full = chrome.get_screenshot_as_png()
    assert len(full) > 50_000


def test_empty_window_still_renders(filled, chrome, tmp_path):
    from selenium.webdriver.common.by import By

    store, info = filled
    out = write_report(store, tmp_path / "empty.html", since=info.start - 7200, until=info.start - 3600)
    assert _open(chrome, out) == []
    for plot_id in PLOTS:
        el = chrome.find_element(By.ID, plot_id)
        assert el.get_attribute("data-empty") == "true" and el.size["height"] > 100, plot_id


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
