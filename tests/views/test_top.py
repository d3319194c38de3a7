"""``vllm-otel top --once`` against a real collector's read API (real HTTP, route handlers, chDB filled over OTLP)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from rich.console import Console

from vllm_otel_collector.views.top import fetch_snapshot, run_top


@pytest.fixture()
def api(filled, views_collector):
    """The real collector's read API (analytics routes + ``/api/v1/engine``)."""
    _, info = filled
    return f"http://127.0.0.1:{views_collector.api_port}", info


def test_snapshot_values_match_the_store(api, filled):
    url, info = api
    store, _ = filled
    snap = fetch_snapshot(url, window=600)
    def window(since):  # the API's window ends at its own "now", a few ms before taken_at
        return tuple(store.query("SELECT count(), sum(OutputTokens) FROM llm_requests WHERE Timestamp >= "
                                 "toDateTime64({s:Float64}, 9)", parameters={"s": since}).result_rows[0])

    got = (sum(g["requests"] for g in snap.groups), sum(g["tokens"]["output"] for g in snap.groups))
    assert got[0] > 0 and got in {window(snap.taken_at - 600.0), window(snap.taken_at - 602.0)}
    assert [a["RuleName"] for a in snap.alerts] == ["error_rate_high"]
    (engine,) = snap.engine
    assert engine["service"] == "vllm" and 0.1 <= engine["kv_cache_usage"] <= 0.7
    assert engine["running"] in {0.0, 1.0, 2.0, 3.0, 4.0}


def test_top_once_prints_one_frame(api):
    url, info = api
    console = Console(record=True, width=160, force_terminal=False)
    assert run_top(url, window=600, once=True, console=console) == 0
    text = console.export_text()
    assert "vLLM serving — last 600 s" in text and "SmolLM2-135M-Instruct" in text
    assert "firing alerts: 1" in text and "error_rate_high" in text
    assert re.search(r"\d+\.\d%", text), "KV cache percentage missing"
    assert re.search(r"\d+ run / \d+ wait", text)


def test_top_unreachable_api_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "vllm_otel_inference.cli", "top", "--once", "--api",
                           "http://127.0.0.1:9"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("vllm-otel top: error: cannot reach the collector read API at http://127.0.0.1:9")


def test_top_shows_goodput_and_causes(api, filled):
    """Goodput per model (good/s and good / requests) and the count per cause in the window, as the store has them
    (the last 600 s hold one of the requests built to be slow: decode)."""
    url, info = api
    store, _ = filled
    snap = fetch_snapshot(url, window=600)
    (g,) = snap.groups

    def window(since):  # the API's window ends at its own "now", a few ms before taken_at
        where = "FROM llm_requests WHERE Timestamp >= toDateTime64({s:Float64}, 9)"
        ((n, good),) = store.query(f"SELECT count(), countIf(Good = 1) {where}", parameters={"s": since}).result_rows
        causes = store.query(f"SELECT toString(Cause), count() {where} GROUP BY 1", parameters={"s": since})
        return n, good, dict(causes.result_rows)

    expected = [window(snap.taken_at - 600.0), window(snap.taken_at - 602.0)]
    got_causes = {c: k for c, k in g["causes"].items() if k}
    assert (g["requests"], g["goodput"]["good"], got_causes) in [(n, good, causes) for n, good, causes in expected]
    assert got_causes["decode"] == 1 and g["goodput"]["ratio"] == g["goodput"]["good"] / g["requests"]
    console = Console(record=True, width=200, force_terminal=False)
    assert run_top(url, window=600, once=True, console=console) == 0
    text = console.export_text()
    good_s = f"{g['goodput']['good'] / 600:.2f}/s {g['goodput']['ratio'] * 100:.1f}%"
    (row,) = [ln for ln in text.splitlines() if "SmolLM2-135M-Instruct" in ln and "/s" in ln]
    assert good_s in row
    assert "why slow — requests per cause, last 600 s" in text
    (causes_row,) = [ln for ln in text.splitlines() if "SmolLM2-135M-Instruct" in ln and "/s" not in ln]
    cells = re.sub(r"[│┃|]", " ", causes_row).split()
    assert cells[-7:] == [str(g["causes"][c]) for c in ("ok", "queued", "prefill", "decode", "preempted", "aborted",
                                                        "error")]


def test_top_without_goodput_from_an_older_api():
    """A collector whose /api/v1/stats has no goodput/causes: the goodput cell says n/a, no cause table."""
    from vllm_otel_collector.views.top import Snapshot, render

    group = {"service": "vllm", "model": "m", "requests": 30, "latency": {}, "tokens": {"output": 300},
             "error_rate": 0.0}
    console = Console(record=True, width=160, force_terminal=False)
    console.print(render(Snapshot(window=60, groups=[group], engine=[])))
    text = console.export_text()
    (row,) = [ln for ln in text.splitlines() if " m " in ln]
    assert re.sub(r"[│┃\s]+", " ", row).strip().startswith("vllm m 0.50 n/a")
    assert "why slow" not in text
    group.update(goodput={"good": 27, "ratio": 0.9, "per_second": 0.45, "throughput": 0.5},
                 causes={"ok": 27, "queued": 2, "prefill": 0, "decode": 0, "preempted": 0, "aborted": 1, "error": 0})
    console.print(render(Snapshot(window=60, groups=[group], engine=[])))
    text = console.export_text()
    assert "0.45/s 90.0%" in text
    (causes,) = [ln for ln in text.splitlines() if " m " in ln and "/s" not in ln]
    assert re.sub(r"[│┃\s]+", " ", causes).strip() == "vllm m 27 2 0 0 0 1 0"
