"""Grafana: the committed dashboard is the generator's output; every panel's SQL runs and returns its columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vllm_otel_collector.views import grafana

from .data import MODEL

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "llm-serving-overview.json"


def test_committed_dashboard_matches_generator():
    pytest.importorskip("grafana_foundation_sdk")
    assert DASHBOARD.read_text() == grafana.render_json(), \
        "regenerate: make grafana"


def test_dashboard_covers_the_issue_and_links_traces():
    board = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in board["panels"]]
    assert len(titles) == len(grafana.PANELS) == 16
    for needed in ("Request rate", "TTFT p50 / p95 / p99", "TPOT p50 / p95 / p99", "E2E latency p50 / p95 / p99",
                   "Tokens per second", "Error / abort / timeout rate", "KV cache usage", "Running / waiting requests",
                   "Performance levels", "Active alerts", "Model loads", "Model load phases", "Cold vs warm start"):
        assert needed in titles
    slow = next(p for p in board["panels"] if p["title"].startswith("Slowest requests"))
    links = slow["fieldConfig"]["overrides"][0]["properties"][0]["value"]
    assert [link["title"] for link in links] == ["Trace view (this dashboard)", "Explore in Grafana (Jaeger)",
                                                 "Open in Jaeger UI"]
    assert links[1]["internal"]["datasourceUid"] == "jaeger"
    trace_panel = next(p for p in board["panels"] if p["type"] == "traces")
    assert trace_panel["targets"][0]["format"] == 3
    assert [v["name"] for v in board["templating"]["list"]] == ["model", "trace_id", "jaeger_url"]
    model_var = board["templating"]["list"][0]
    assert model_var["query"] == grafana.MODEL_VARIABLE_SQL and model_var["includeAll"] and model_var["multi"]
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "clickhouse" and panel["targets"][0]["rawSql"]


def test_provisioning_matches_dashboard_datasources():
    ds = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/datasources.yaml").read_text())
    by_uid = {d["uid"]: d for d in ds["datasources"]}
    assert by_uid["clickhouse"]["type"] == grafana.CLICKHOUSE_TYPE
    assert by_uid["clickhouse"]["jsonData"]["traces"]["otelEnabled"] is True
    assert by_uid["clickhouse"]["jsonData"]["traces"]["defaultTable"] == "otel_traces"
    assert by_uid["jaeger"]["type"] == "jaeger"
    prov = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/dashboards.yaml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_conditional_all_and_singlequote():
    sql = "WHERE $__conditionalAll(Model IN (${model:singlequote}), $model) AND x"
    assert grafana.expand_macros(sql, 0, 1, 1, {"model": grafana.ALL}) == "WHERE 1=1 AND x"
    assert grafana.expand_macros(sql, 0, 1, 1, {"model": ["a", "b'c"]}) == "WHERE Model IN ('a','b\\'c') AND x"


def test_expand_macros_like_the_plugin():
    sql = "SELECT 1 WHERE $__timeFilter(Bucket) AND x < $__toTime AND y > $__fromTime LIMIT $__interval_s -- ${trace_id}"
    assert grafana.expand_macros(sql, 100, 200, 30, {"trace_id": "abc"}) == (
        "SELECT 1 WHERE Bucket >= toDateTime(100) AND Bucket <= toDateTime(200) AND x < toDateTime(200) "
        "AND y > toDateTime(100) LIMIT 30 -- abc")


@pytest.mark.parametrize("model", ["all", "one"])
@pytest.mark.parametrize("interval_s", [15, 300])
@pytest.mark.parametrize("spec", grafana.PANELS, ids=[p.title for p in grafana.PANELS])
def test_every_panel_query_runs_with_rows(filled, spec, interval_s, model):
    store, info = filled
    sql = grafana.expand_macros(spec.sql, info.start - 60, info.now + 60, interval_s,
                                {"trace_id": info.slowest_trace, "model": grafana.ALL if model == "all" else [MODEL]})
    result = store.query(sql)
    assert tuple(result.column_names) == spec.columns
    assert result.result_rows, f"{spec.title}: no rows"
    if spec.fmt == 0:  # time series: time first, ascending, no NULL values
        times = [r[0] for r in result.result_rows]
        assert times == sorted(times)
        assert all(v is not None for r in result.result_rows for v in r[1:]), spec.title


def test_model_variable_lists_models_and_filters(filled):
    store, info = filled
    models = store.query(grafana.expand_macros(grafana.MODEL_VARIABLE_SQL, info.start - 60, info.now + 60, 60))
    assert models.result_rows == [(MODEL,)]
    rate = next(p for p in grafana.PANELS if p.title == "Request rate")
    other = grafana.expand_macros(rate.sql, info.start - 60, info.now + 60, 60, {"model": ["no-such-model"]})
    assert store.query(other).result_rows == []


def test_panel_values_match_the_data(filled):
    store, info = filled
    expand = lambda spec: grafana.expand_macros(spec.sql, info.start - 60, info.now + 60, 300,  # noqa: E731
                                                {"trace_id": info.slowest_trace})
    by_title = {p.title: p for p in grafana.PANELS}
    rate = store.query(expand(by_title["Request rate"])).result_rows
    assert round(sum(r[1] for r in rate) * 300) == info.requests
    errors = store.query(expand(by_title["Error / abort / timeout rate"])).result_rows
    assert errors and any(r[1] > 0 for r in errors)
    alerts = store.query(expand(by_title["Active alerts"])).result_rows
    assert [a[0] for a in alerts] == ["error_rate_high"]
    slow = store.query(expand(by_title["Slowest requests (click a trace id)"])).result_rows
    assert slow[0][1] == info.slowest_trace and len(slow) == 20
    trace = store.query(expand(next(p for p in grafana.PANELS if p.kind == "traces"))).result_rows
    assert [t[0] for t in trace] == [info.slowest_trace]
    levels = store.query(expand(by_title["Performance levels"])).result_rows
    assert sum(r[3] for r in levels) <= info.requests and sum(r[1] for r in levels) > 0
    loads = store.query(expand(by_title["Model loads"])).result_rows
    assert [round(r[3], 1) for r in loads] == [17.2, 41.5]
    cold_warm = store.query(expand(by_title["Cold vs warm start"])).result_rows
    assert [(r[0], *(round(v, 2) for v in r[1:])) for r in cold_warm] == [
        (f"{MODEL} cold (compile cache miss)", 0.4, 12.0, 1.1, 3.0, 25.0),
        (f"{MODEL} warm (compile cache hit)", 0.2, 2.5, 0.9, 1.5, 12.1)]
