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
