"""Read API handlers against chDB; retention; migrations idempotent; plug-in wiring."""

from __future__ import annotations

import pytest

from vllm_otel_collector.analytics.alerts import AlertManager
from vllm_otel_collector.analytics.api import make_routes
from vllm_otel_collector.analytics.config import AnalyticsConfig, DEFAULT_RULES
from vllm_otel_collector.analytics.retention import apply_retention
from vllm_otel_collector.errors import UserError
from vllm_otel_collector.store.migrations import migrate

from .synth import request, store_spans

T0 = 1_800_000_000


@pytest.fixture()
def loaded(store):
    spans = [request(i, T0 + i, ttft=0.1 * (i % 10), finish="error" if i % 5 == 0 else "stop",
                     model="m1" if i < 60 else "m2", lora="a" if i % 2 else None) for i in range(1, 121)]
    store_spans(store, spans)  # the views derive llm_requests and the rollups
    return store


def routes(now=T0 + 120):
    return make_routes(default_window=300, sla_seconds=2.0, clock=lambda: now)


def test_stats_current_history_aggregated(loaded):
    r = routes()
    status, body = r["/api/v1/stats"](loaded, {})
    assert status == 200 and body["mode"] == "current"
    assert [(g["model"], g["requests"], g["error_rate"]) for g in body["groups"]] == [
        ("m1", 59, pytest.approx(11 / 59)), ("m2", 60, 0.2)]  # window [now-300, now): span 120 excluded
    _, body = r["/api/v1/stats"](loaded, {"mode": "history", "since": str(T0), "until": str(T0 + 180)})
    assert [(p["bucket"], p["model"], p["requests"]) for p in body["points"]] == [
        (T0, "m1", 59), (T0 + 60, "m2", 60), (T0 + 120, "m2", 1)]
    _, body = r["/api/v1/stats"](loaded, {"mode": "aggregated", "since": str(T0), "until": str(T0 + 180),
                                          "model": "m2"})
    assert [(g["model"], g["requests"], g["errors"]) for g in body["groups"]] == [("m2", 61, 13)]
    assert body["usage"] == [{"model": "m2", "lora": "", "requests": 31, "input_tokens": 310, "output_tokens": 279},
                             {"model": "m2", "lora": "a", "requests": 30, "input_tokens": 300, "output_tokens": 270}]


@pytest.mark.parametrize("query,message", [
    ({"mode": "nope"}, "mode must be"), ({"window": "abc"}, "must be a number"), ({"since": "5", "until": "4"}, "before"),
])
def test_stats_bad_parameters(loaded, query, message):
    with pytest.raises(ValueError, match=message):
        routes()["/api/v1/stats"](loaded, query)


def test_requests_filters(loaded):
    r = routes()
    _, body = r["/api/v1/requests"](loaded, {"status": "error", "limit": "3"})
    assert [q["SpanId"] for q in body["requests"]] == [f"{i:016x}" for i in (120, 115, 110)]
    assert body["requests"][0]["Status"] == "error" and body["requests"][0]["ErrorType"] == "EngineDeadError"
    _, body = r["/api/v1/requests"](loaded, {"trace_id": f"{7:032x}"})
    assert len(body["requests"]) == 1 and body["requests"][0]["TTFT"] == pytest.approx(0.7)
    _, body = r["/api/v1/requests"](loaded, {"since": str(T0 + 100)})
    assert len(body["requests"]) == 21
    with pytest.raises(ValueError, match="trace_id"):
        r["/api/v1/requests"](loaded, {"trace_id": "x' OR 1=1 --"})
    with pytest.raises(ValueError, match="status"):
        r["/api/v1/requests"](loaded, {"status": "weird"})


def test_alerts_route(loaded):
    rule = next(d for d in DEFAULT_RULES if d["name"] == "ErrorRateHigh")
    AlertManager(AnalyticsConfig.load({"rules": [rule]})).evaluate(loaded, T0 + 120)
    _, body = routes()["/api/v1/alerts"](loaded, {})
    assert sorted((a["RuleName"], a["Labels"]["model"]) for a in body["alerts"]) == [("ErrorRateHigh", "m1"),
                                                                                ("ErrorRateHigh", "m2")]
    _, body = routes()["/api/v1/alerts"](loaded, {"state": "all"})
    assert {a["State"] for a in body["alerts"]} == {"firing"} and len(body["alerts"]) == 2


def test_retention_per_table_and_idempotent(store):
    assert sorted(apply_retention(store, {"llm_requests": 7, "llm_requests_1h": 0, "llm_alerts": 365})) == [
        "llm_alerts", "llm_requests"]
    assert apply_retention(store, {"llm_requests": 7, "llm_requests_1h": 0, "llm_alerts": 365}) == []
    engine = store.query("SELECT engine_full FROM system.tables WHERE database = {d:String} AND name = 'llm_requests'",
                         parameters={"d": store.database}).result_rows[0][0]
    assert "TTL toDateTime(Timestamp) + toIntervalDay(7)" in engine


def test_migrations_idempotent(store):
    assert migrate(store) == []
    versions = [v for (v,) in store.query("SELECT version FROM schema_migrations ORDER BY version").result_rows]
    from vllm_otel_collector.store.migrations import load_migrations

    known = [m.version for m in load_migrations() if 100 <= m.version < 200]
    assert [v for v in versions if v >= 100] == known and known[:6] == [100, 101, 102, 103, 104, 105]


def test_config_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="invalid analytics config at rules.0.threshold.value"):
        AnalyticsConfig.load({"rules": [{"kind": "threshold", "name": "x", "metric": "ttft_p95", "value": "big"}]})
    with pytest.raises(UserError, match="cannot read analytics config"):
        AnalyticsConfig.load(tmp_path / "missing.yaml")
    f = tmp_path / "a.yaml"
    f.write_text("analytics:\n  levels:\n    - {span: 'asr*', metric: duration, threshold_seconds: 0.3}\n")
    cfg = AnalyticsConfig.load({"file": str(f), "sla_seconds": 5})
    assert cfg.levels[0].span == "asr*" and cfg.sla_seconds == 5 and len(cfg.rules) == len(DEFAULT_RULES)


def test_analytics_migrations_render_on_cluster():
    from vllm_otel_collector.store.migrations import load_migrations

    mine = [m for m in load_migrations() if 100 <= m.version < 200]
    assert [m.version for m in mine][:6] == [100, 101, 102, 103, 104, 105]
    for m in mine:
        for stmt in m.render("otel", cluster="prod", ttl_days=7, names=m.names):
            assert "${" not in stmt
            # an INSERT (0105's, 0132's and 0135's backfills) runs where the migration runs; Replicated tables copy
            # it to the replicas
            assert "ON CLUSTER `prod`" in stmt or (stmt.startswith("INSERT INTO `otel`.") and m.version in (105, 132, 135))
            if stmt.startswith("CREATE TABLE"):
                assert "ENGINE = Replicated" in stmt
                # small tables every node must see alike: one replication group across the shards, no TTL
                global_table = "('/clickhouse/tables/global/{database}/{table}', '{replica}'" in stmt
                assert global_table or "toIntervalDay(7)" in stmt, stmt
