"""Grafana: the committed dashboard is the generator's output; every panel's SQL runs and returns its columns."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from vllm_otel_collector.analytics import histogram as H
from vllm_otel_collector.analytics import rules as R
from vllm_otel_collector.analytics.evaluate import burn_rate
from vllm_otel_collector.analytics.levels import Thresholds
from vllm_otel_collector.analytics.stats import rollup_window
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
    titles = [p["title"] for p in board["panels"] if p["type"] != "row"]
    assert len(titles) == len(grafana.PANELS) == 23
    assert [p["title"] for p in board["panels"] if p["type"] == "row"] == ["Latency distributions", "SLOs"]
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
    for panel in (p for p in board["panels"] if p["type"] != "row"):
        assert panel["datasource"]["uid"] == "clickhouse" and panel["targets"][0]["rawSql"]
    heatmaps = [p for p in board["panels"] if p["type"] == "heatmap"]
    assert [p["title"] for p in heatmaps] == [f"{m} distribution ($model)" for m in ("TTFT", "TPOT", "E2E")] + [
        "TTFT distribution from OTLP metrics (gen_ai.server.time_to_first_token)"]
    for p in heatmaps[:3]:  # pre-bucketed (no re-bucketing by Grafana), one per selected model, bound from the le label
        assert p["options"]["calculate"] is False and p["options"]["rowsFrame"]["layout"] == "le"
        assert p["repeat"] == "model" and p["fieldConfig"]["defaults"]["displayName"] == "${__field.labels.le}"
        assert p["options"]["yAxis"]["unit"] == "s" and "Hist)" in p["targets"][0]["rawSql"]
    for title in ("Slowest request per interval (click for its trace)", "OTLP histogram exemplars (click for the trace)"):
        panel = next(p for p in board["panels"] if p["title"] == title)
        links = panel["fieldConfig"]["overrides"][0]["properties"][0]["value"]
        assert links[1]["internal"]["query"]["query"] == "${__data.fields.TraceId}"
        assert links[2]["url"] == "${jaeger_url}/trace/${__data.fields.TraceId}"
        assert panel["targets"][0]["format"] == 1  # table frame: the TraceId stays a field of each point
    assert "quantilesTDigest" not in DASHBOARD.read_text()


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
def test_every_panel_query_runs_with_rows(grafana_data, spec, interval_s, model):
    store, info = grafana_data
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


# ---- issue 15: heatmaps, exemplars, SLOs ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grafana_data(filled, views_collector):
    """``filled`` plus OTLP ``gen_ai.server.time_to_first_token`` histogram points with exemplars, recorded by the
    OpenTelemetry SDK (exemplar filter trace_based) inside spans and exported over OTLP/HTTP to the collector.
    Returns ``(store, info)``; ``info.exemplar_traces`` holds the recording spans' trace ids."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics._internal.exemplar import TraceBasedExemplarFilter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    store, info = filled
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"http://127.0.0.1:{views_collector.http_port}/v1/metrics"),
        export_interval_millis=3_600_000)
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "vllm"}),
                             exemplar_filter=TraceBasedExemplarFilter(),
                             views=[View(instrument_name="gen_ai.server.time_to_first_token",
                                         aggregation=ExplicitBucketHistogramAggregation([0.01, 0.05, 0.1, 0.5, 1, 5]))])
    hist = provider.get_meter("grafana-test").create_histogram("gen_ai.server.time_to_first_token", unit="s")
    tracer = TracerProvider().get_tracer("grafana-test")
    traces = []
    for v in (0.03, 0.4, 1.5, 7.0):  # four different buckets: one exemplar each (the SDK keeps one per bucket)
        with tracer.start_as_current_span("chat") as span:
            hist.record(v, {"gen_ai.request.model": MODEL})
            traces.append(format(span.get_span_context().trace_id, "032x"))
    provider.shutdown()  # one final export: one point
    from .data import wait_for

    wait_for(store, "SELECT count() FROM otel_metrics_histogram WHERE MetricName = 'gen_ai.server.time_to_first_token'",
             1)
    info.exemplar_traces = traces
    return store, info


def _expand(spec, info, interval_s=300, model=grafana.ALL):
    return grafana.expand_macros(spec.sql, info.start - 60, info.now + 60, interval_s,
                                 {"trace_id": info.slowest_trace, "model": model})


@pytest.mark.parametrize("metric", ["TTFT", "TPOT", "E2E"])
@pytest.mark.parametrize("interval_s", [60, 300])
def test_heatmap_counts_per_bucket_equal_raw_counts(filled, metric, interval_s):
    store, info = filled
    spec = next(p for p in grafana.PANELS if p.title == f"{metric} distribution ($model)")
    got = {(t.timestamp() if hasattr(t, "timestamp") else t, le): c
           for t, le, c in store.query(_expand(spec, info, interval_s, [MODEL])).result_rows}
    raw = store.query(f"SELECT toUnixTimestamp(toStartOfInterval(toDateTime(Timestamp), INTERVAL {interval_s} SECOND)), "
                      f"toFloat64({metric}) FROM llm_requests WHERE {metric} IS NOT NULL").result_rows
    expected: dict = {}
    for t, v in raw:
        k = H.bucket_index(v, grafana.HEATMAP_SCALE)
        expected[(t, k)] = expected.get((t, k), 0) + 1

    def key(le: str) -> int:  # le is 2^((k+1)/4) printed as Float32; 0 for the zero bucket
        return H.ZERO_KEY if float(le) == 0 else round(math.log2(float(le)) * 4) - 1

    for (_t, le) in got:
        k = key(le)
        assert float(le) == pytest.approx(H.upper_bound(k, grafana.HEATMAP_SCALE), rel=1e-6)
    assert {(int(t), key(le)): c for (t, le), c in got.items()} == expected
    assert sum(got.values()) == store.query(f"SELECT count({metric}) FROM llm_requests").result_rows[0][0] > 100


def test_latency_quantile_panel_within_relative_error(filled):
    store, info = filled
    spec = next(p for p in grafana.PANELS if p.title == "TTFT p50 / p95 / p99")
    rows = store.query(_expand(spec, info, 3600 * 3)).result_rows  # one time bucket: the whole range
    assert len(rows) <= 2
    for t, p50, p95, p99 in rows:
        vals = sorted(float(v[0]) for v in store.query(
            "SELECT TTFT FROM llm_requests WHERE TTFT IS NOT NULL AND toStartOfInterval(toDateTime(Timestamp), "
            "INTERVAL 10800 SECOND) = {t:DateTime}", parameters={"t": t}).result_rows)
        from vllm_otel_collector.analytics.stats import _percentile

        for est, q in ((p50, 0.5), (p95, 0.95), (p99, 0.99)):
            exact = _percentile(vals, q)
            assert abs(est - exact) <= H.RELATIVE_ERROR * exact * (1 + 1e-9), (q, est, exact)


def test_exemplar_panels_link_the_right_traces(grafana_data):
    store, info = grafana_data
    by_title = {p.title: p for p in grafana.PANELS}
    slow = store.query(_expand(by_title["Slowest request per interval (click for its trace)"], info)).result_rows
    assert max(slow, key=lambda r: r[1])[2] == info.slowest_trace
    otlp = store.query(_expand(by_title["OTLP histogram exemplars (click for the trace)"], info)).result_rows
    assert sorted(r[3] for r in otlp) == sorted(info.exemplar_traces)
    assert sorted(r[2] for r in otlp) == [0.03, 0.4, 1.5, 7.0]
    heat = store.query(_expand(by_title["TTFT distribution from OTLP metrics (gen_ai.server.time_to_first_token)"],
                               info, 300, [MODEL])).result_rows
    counts = {}
    for _t, le, c in heat:
        counts[le] = counts.get(le, 0) + c
    assert counts == {"0.01": 0, "0.05": 1, "0.1": 0, "0.5": 1, "1": 0, "5": 1, "+Inf": 1}


def test_slo_panel_equals_the_burn_rate_alert_rules(filled):
    store, info = filled
    spec = next(p for p in grafana.PANELS if p.title == "SLOs: burn rate and error budget left")
    to_s = info.now + 60
    rows = store.query(grafana.expand_macros(spec.sql, info.start - 60, to_s, 300, {"model": grafana.ALL})).result_rows
    rules = {r.name: r for r in grafana.burn_rate_rules()}
    assert sorted(r[0] for r in rows) == sorted(rules) and len(rules) == 4
    whole = next(iter(rollup_window(store, info.start - 60, to_s + 1).values()))
    for name, slo, objective, long_b, short_b, factor, firing, budget in rows:
        rule = rules[name]
        assert (slo, objective, factor) == (rule.slo, rule.objective, rule.factor)
        obs = burn_rate(rule, store, to_s, Thresholds([]))
        assert len(obs) == 1  # one (service, model) in the data
        assert long_b == pytest.approx(obs[0].value) and bool(firing) == obs[0].firing
        bad, total = R.slo_events(rule.slo, whole)
        assert budget == pytest.approx(R.budget_left(bad, total, rule.objective))
    err = next(r for r in rows if r[1] == "error")
    assert err[3] > 0  # the data has errors and timeouts in the last hour
