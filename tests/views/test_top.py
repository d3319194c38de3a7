"""``vllm-otel top --once`` against the real read API server (real HTTP, real route handlers, filled chDB)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from rich.console import Console

from vllm_otel_collector.analytics.api import make_routes
from vllm_otel_collector.api import api_server
from vllm_otel_collector.report.top import engine_route, fetch_snapshot, run_top


class _CollectorView:
    """What the read API server needs from a collector: the store, self-metrics, readiness."""

    def __init__(self, store):
        self.store = store
        self.metrics = None

    def readiness(self):
        return True, {}


@pytest.fixture()
def api(filled):
    store, info = filled
    routes = {**make_routes(clock=lambda: info.now), "/api/v1/engine": engine_route}
    srv = api_server(_CollectorView(store), "127.0.0.1", 0, routes)
    srv.start()
    yield f"http://127.0.0.1:{srv.port}", info
    srv.stop()


def test_snapshot_values_match_the_store(api, filled):
    url, info = api
    store, _ = filled
    snap = fetch_snapshot(url, window=600)
    expected = store.query("SELECT count(), sum(OutputTokens) FROM llm_requests "
                           "WHERE Timestamp >= toDateTime64({s:Float64}, 9)", parameters={"s": info.now - 600.0}
                           ).result_rows[0]
    assert sum(g["requests"] for g in snap.groups) == expected[0] > 0
    assert sum(g["tokens"]["output"] for g in snap.groups) == expected[1]
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
