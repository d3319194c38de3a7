"""Every alert rule fires AND resolves on deterministic data in chDB; dedup, restart, webhook payload."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from vllm_otel_collector.analytics.alerts import AlertManager, alertmanager_payload, diff, firing_state
from vllm_otel_collector.analytics.config import AnalyticsConfig, DEFAULT_RULES
from vllm_otel_collector.analytics.histogram import RELATIVE_ERROR
from vllm_otel_collector.analytics.rules import Observation, dominant_phase, failure_streak, multiwindow_burn, robust_z

from .synth import request, store_spans

T0 = 1_800_000_000
_N = [0]


def add(store, start_s: float, end_s: float, n: int, **kw):
    """``n`` requests evenly spread over [start, end) seconds after T0."""
    spans = []
    for i in range(n):
        _N[0] += 1
        spans.append(request(_N[0], T0 + start_s + i * (end_s - start_s) / n, **kw))
    store_spans(store, spans)


def manager(rule_name: str, **cfg) -> AlertManager:
    rule = next(r for r in DEFAULT_RULES if r["name"] == rule_name)
    return AlertManager(AnalyticsConfig.load({"rules": [rule], **cfg}))


def states(transitions):
    return [(t.rule, t.state, t.labels.get("model", t.labels.get("pid"))) for t in transitions]


# ---- pure math ---------------------------------------------------------------------------------------------------
def test_pure_rule_math():
    assert failure_streak(["error", "timeout", "error", "ok", "error"]) == 3
    assert failure_streak(["abort", "error"]) == 0
    assert robust_z(10.0, [1, 2, 3, 4, 5]) == pytest.approx(0.6745 * 7 / 1)
    assert robust_z(1.0, [1.0] * 10) == 0.0
    assert multiwindow_burn(20, 100, 5, 10, 0.99, 14.4) == (True, pytest.approx(20.0), pytest.approx(50.0))
    assert multiwindow_burn(20, 100, 0, 10, 0.99, 14.4)[0] is False
    assert dominant_phase(1.0, 4.0, 35.0) == ("decode", 0.875)


def test_diff_state_machine():
    o = Observation("R", "warning", {"model": "m"}, True, 3.0, 2.0, 300, "x")
    fired = diff([o], {}, 100.0)
    assert [(t.state, t.starts_at) for t in fired] == [("firing", 100.0)]
    firing = {o.fingerprint: {"rule": "R", "severity": "warning", "labels": {"model": "m"}, "starts_at": 100.0}}
    assert diff([o], firing, 130.0) == []  # dedup: still firing, nothing new
    assert diff([], firing, 160.0, failed_rules={"R"}) == []  # rule failed: keep state
    res = diff([], firing, 160.0)
    assert [(t.state, t.starts_at, t.at) for t in res] == [("resolved", 100.0, 160.0)]


# ---- each rule fires and resolves --------------------------------------------------------------------------------
def test_ttft_p95_threshold(store):
    am = manager("TTFTP95High")
    add(store, 300, 600, 20, ttft=3.0)
    assert states(am.evaluate(store, T0 + 605)) == [("TTFTP95High", "firing", "m1")]
    assert am.evaluate(store, T0 + 630) == []
    add(store, 600, 900, 50, ttft=0.2)
    t = am.evaluate(store, T0 + 905)
    # p95 comes from the rollups' log-scale histograms: within their documented relative error (analytics/histogram.py)
    assert states(t) == [("TTFTP95High", "resolved", "m1")] and t[0].value == pytest.approx(0.2, rel=RELATIVE_ERROR)


@pytest.mark.parametrize("rule,bad,good", [
    ("ErrorRateHigh", {"finish": "error"}, {}),
    ("SuccessRateLow", {"finish": "timeout"}, {}),
    ("ThroughputLow", {"out": 4, "e2e": 2.0, "decode": 1.8}, {}),
])
def test_rate_thresholds(store, rule, bad, good):
    am = manager(rule)
    add(store, 300, 600, 80, **good)
    add(store, 300, 600, 20, **bad)  # 20% bad (throughput: 2 tok/s for all bad ones)
    if rule == "ThroughputLow":
        store.command("TRUNCATE TABLE llm_requests")
        store.command("TRUNCATE TABLE llm_requests_1m")
        add(store, 300, 600, 20, **bad)
    assert states(am.evaluate(store, T0 + 600)) == [(rule, "firing", "m1")]
    add(store, 600, 900, 100, **good)
    assert states(am.evaluate(store, T0 + 900)) == [(rule, "resolved", "m1")]


def test_timeouts_per_minute(store):
    am = manager("TimeoutsPerMinuteHigh")
    add(store, 540, 600, 5, finish="timeout")
    assert am.evaluate(store, T0 + 600) == []  # 5 is not more than 5
    add(store, 540, 600, 1, finish="timeout")
    t = am.evaluate(store, T0 + 601)
    assert states(t) == [("TimeoutsPerMinuteHigh", "firing", "m1")] and t[0].value == 6.0
    add(store, 600, 660, 10)
    assert states(am.evaluate(store, T0 + 661)) == [("TimeoutsPerMinuteHigh", "resolved", "m1")]


def test_process_memory(store):
    am = manager("ProcessMemoryHigh")

    def gauge(at_s, gib):
        store.insert("otel_metrics_gauge", {
            "ServiceName": ["vllm"], "MetricName": ["process.memory.usage"],
            "Attributes": [{"process.pid": "42"}], "TimeUnix": [int((T0 + at_s) * 1e9)],
            "Value": [gib * 2**30]})

    gauge(500, 5.0)
    t = am.evaluate(store, T0 + 600)
    assert states(t) == [("ProcessMemoryHigh", "firing", "42")] and t[0].value == 5 * 2**30
    gauge(700, 1.0)
    assert states(am.evaluate(store, T0 + 750)) == [("ProcessMemoryHigh", "resolved", "42")]


def test_consecutive_failures(store):
    am = manager("ConsecutiveFailures")
    add(store, 0, 10, 2)
    add(store, 10, 20, 3, finish="error")
    assert am.evaluate(store, T0 + 30) == []  # 3 in a row: not more than 3
    add(store, 20, 21, 1, finish="timeout")
    assert states(am.evaluate(store, T0 + 30)) == [("ConsecutiveFailures", "firing", "m1")]
    add(store, 40, 41, 1)
    assert states(am.evaluate(store, T0 + 60)) == [("ConsecutiveFailures", "resolved", "m1")]


def test_ttft_anomaly_robust_z(store):
    am = manager("TTFTAnomaly")
    for k in range(60):  # baseline: one minute each, medians 0.20..0.24
        add(store, 60 * k, 60 * k + 60, 5, ttft=0.20 + 0.01 * (k % 5))
    add(store, 3600, 3900, 25, ttft=0.21)
    assert am.evaluate(store, T0 + 3900) == []  # normal window: no alert
    add(store, 3900, 4200, 25, ttft=1.0)
    t = am.evaluate(store, T0 + 4200)
    assert states(t) == [("TTFTAnomaly", "firing", "m1")] and t[0].value > 3.5
    add(store, 4200, 4500, 25, ttft=0.22)
    assert states(am.evaluate(store, T0 + 4500)) == [("TTFTAnomaly", "resolved", "m1")]


def test_throughput_anomaly_low_is_bad(store):
    am = manager("ThroughputAnomaly")
    for k in range(60):
        add(store, 60 * k, 60 * k + 60, 5, out=10 + k % 3, e2e=1.0)
    add(store, 3600, 3900, 25, out=2, e2e=1.0)
    assert states(am.evaluate(store, T0 + 3900)) == [("ThroughputAnomaly", "firing", "m1")]
    add(store, 3900, 4200, 25, out=11, e2e=1.0)
    assert states(am.evaluate(store, T0 + 4200)) == [("ThroughputAnomaly", "resolved", "m1")]


def test_error_budget_burn_fast_multiwindow(store):
    am = manager("ErrorBudgetBurnFast")  # objective 99%: 14.4x burn = 14.4% errors
    add(store, 0, 3600, 600)
    add(store, 3300, 3600, 100, finish="error")  # short window 100/150 bad; 1h burn (100/700)/0.01 = 14.29
    assert am.evaluate(store, T0 + 3600) == []  # long window not burning fast enough yet
    add(store, 3590, 3600, 2, finish="error")  # 1h burn 102/702/0.01 = 14.53
    t = am.evaluate(store, T0 + 3600)
    assert states(t) == [("ErrorBudgetBurnFast", "firing", "m1")] and t[0].value == pytest.approx(14.53, abs=0.01)
    add(store, 3600, 3900, 100)  # short window recovers → resolved even though the long window still burns
    t = am.evaluate(store, T0 + 3900)
    assert states(t) == [("ErrorBudgetBurnFast", "resolved", "m1")] and t[0].value > 6


def test_latency_budget_burn_fast_multiwindow(store):
    am = manager("LatencyBudgetBurnFast")  # objective 95% of TTFT <= 2 s: 14.4x burn = 72% slow
    add(store, 0, 3600, 100)
    add(store, 0, 3600, 500, ttft=3.0)  # 83% slow: burn 16.7 in both windows
    t = am.evaluate(store, T0 + 3600)
    assert states(t) == [("LatencyBudgetBurnFast", "firing", "m1")] and t[0].value == pytest.approx(50 / 3)
    add(store, 3600, 3900, 200)
    assert states(am.evaluate(store, T0 + 3900)) == [("LatencyBudgetBurnFast", "resolved", "m1")]


def test_burn_rate_slow_6h_30m(store):
    am = manager("ErrorBudgetBurnSlow")
    add(store, 0, 21600, 1000)
    add(store, 0, 21600, 80, finish="error")  # 7.4% errors → burn 7.4 > 6 in both windows
    assert states(am.evaluate(store, T0 + 21600)) == [("ErrorBudgetBurnSlow", "firing", "m1")]
    add(store, 21600, 23400, 300)
    assert states(am.evaluate(store, T0 + 23400)) == [("ErrorBudgetBurnSlow", "resolved", "m1")]


@pytest.mark.parametrize("phases,phase", [({"queue": 1.0, "prefill": 4.0, "decode": 35.0}, "decode"),
                                          ({"queue": 30.0, "prefill": 2.0, "decode": 8.0}, "queue"),
                                          ({"queue": 0.5, "prefill": 36.0, "decode": 3.5}, "prefill")])
def test_bottleneck_names_dominant_phase(store, phases, phase):
    am = manager("LatencyBottleneck")
    add(store, 300, 600, 10, e2e=40.0, **phases)
    t = am.evaluate(store, T0 + 600)
    assert states(t) == [("LatencyBottleneck", "firing", "m1")]
    assert f"dominant phase {phase}" in t[0].message and t[0].suggestion.startswith(f"{phase}-bound")
    add(store, 600, 900, 10, e2e=2.0)
    assert states(am.evaluate(store, T0 + 900)) == [("LatencyBottleneck", "resolved", "m1")]


def _load(store, trace: str, at_s: float, hit: int, seconds: float):
    store.insert("llm_model_loads", {
        "Timestamp": [int((T0 + at_s) * 1e9)], "TraceId": [trace], "ServiceName": ["vllm"], "Model": ["m1"],
        "CompileCacheHit": [hit], "LoadSeconds": [seconds],
        "AssembledAt": [dt.datetime.fromtimestamp(T0 + at_s, dt.timezone.utc)]})


@pytest.mark.parametrize("rule", ["CompileCacheMiss", "SlowColdStart"])
def test_model_load_rules(store, rule):
    am = manager(rule)
    _load(store, "t1", 100, 0, 200.0)
    t = am.evaluate(store, T0 + 200)
    assert states(t) == [(rule, "firing", "m1")]
    assert "keep the torch.compile cache warm" in t[0].suggestion or "warm up" in t[0].suggestion
    _load(store, "t2", 300, 1, 30.0)
    assert states(am.evaluate(store, T0 + 400)) == [(rule, "resolved", "m1")]


# ---- lifecycle ---------------------------------------------------------------------------------------------------
class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_restart_does_not_refire_and_webhook_gets_alertmanager_payload(store):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        add(store, 300, 600, 20, ttft=3.0)
        assert states(manager("TTFTP95High", webhook_url=url).evaluate(store, T0 + 605))[0][1] == "firing"
        # a new evaluator (restart, or another replica) reads the stored state: no second "firing"
        assert manager("TTFTP95High", webhook_url=url).evaluate(store, T0 + 610) == []
        add(store, 600, 900, 50)
        manager("TTFTP95High", webhook_url=url).evaluate(store, T0 + 905)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert [p["status"] for p in _Hook.received] == ["firing", "resolved"]
    alert = _Hook.received[0]["alerts"][0]
    assert alert["labels"] == {"alertname": "TTFTP95High", "severity": "warning", "service": "vllm", "model": "m1"}
    assert alert["endsAt"] == "0001-01-01T00:00:00Z" and alert["startsAt"] == "2027-01-15T08:10:05Z"
    assert _Hook.received[1]["alerts"][0]["endsAt"] == "2027-01-15T08:15:05Z"
    assert set(_Hook.received[0]) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                                      "commonLabels", "commonAnnotations", "externalURL", "alerts"}
    rows = store.query("SELECT RuleName, State, Labels['model'] FROM llm_alerts ORDER BY Timestamp").result_rows
    assert rows == [("TTFTP95High", "firing", "m1"), ("TTFTP95High", "resolved", "m1")]
    assert firing_state(store) == {}


def test_all_default_rules_evaluate_on_empty_store(store):
    am = AlertManager(AnalyticsConfig())
    obs, failed = am.observe(store, T0)
    assert obs == [] and failed == set()
    assert alertmanager_payload([])["status"] == "resolved"


def test_goodput_low_fires_below_the_ratio_and_names_the_cause(store):
    am = manager("GoodputLow")
    add(store, 0, 300, 18, decode=0.8, out=9)  # TPOT 0.1: meets the 0.1 s TPOT level threshold
    add(store, 0, 300, 2, decode=4.0, out=9)  # TPOT 0.5: missed → decode
    assert am.evaluate(store, T0 + 300) == []  # 18 / 20 = 90 % is not below 90 %
    add(store, 300, 600, 15, decode=0.8, out=9)
    add(store, 300, 600, 5, decode=4.0, out=9)
    t = am.evaluate(store, T0 + 600)
    assert states(t) == [("GoodputLow", "firing", "m1")]
    assert t[0].value == pytest.approx(15 / 20) and t[0].threshold == 0.9  # the last 300 s window
    assert "most missed: decode (5 requests)" in t[0].message and t[0].suggestion.startswith("decode-bound")
    add(store, 600, 900, 20, decode=0.8, out=9)
    assert states(am.evaluate(store, T0 + 900)) == [("GoodputLow", "resolved", "m1")]


def test_goodput_burn_rate_counts_requests_that_missed_an_slo(store):
    rule = {"kind": "burn_rate", "name": "GoodputBurn", "slo": "goodput", "objective": 0.9, "factor": 2.0}
    am = AlertManager(AnalyticsConfig.load({"rules": [rule]}))
    add(store, 0, 3600, 70, decode=0.8, out=9)
    add(store, 0, 3600, 30, decode=4.0, out=9)  # 30 % bad: burn 3 > 2 in both windows
    t = am.evaluate(store, T0 + 3600)
    assert states(t) == [("GoodputBurn", "firing", "m1")] and t[0].value == pytest.approx(3.0)
