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
    assert len(titles) == len(grafana.PANELS) == 25
    assert [p["title"] for p in board["panels"] if p["type"] == "row"] == ["Latency distributions", "SLOs"]
    for needed in ("Request rate", "TTFT p50 / p95 / p99", "TPOT p50 / p95 / p99", "E2E latency p50 / p95 / p99",
                   "Tokens per second", "Error / abort / timeout rate", "KV cache usage", "Running / waiting requests",
                   "Performance levels", "Active alerts", "Model loads", "Model load phases", "Cold vs warm start",
                   "Why slow: requests per cause", "Goodput vs throughput per model"):
        assert needed in titles
    causes = next(p for p in board["panels"] if p["title"] == "Why slow: requests per cause")
    assert causes["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    assert causes["fieldConfig"]["overrides"][0]["matcher"]["options"] == "ok"  # hidden until clicked
    assert causes["fieldConfig"]["overrides"][0]["properties"][0]["value"]["viz"] is True
    for p in board["panels"]:  # rollup time series and heatmaps: Grafana's interval 5 min at 24 h, 1 h at 7 d
        if "llm_requests_1h" in p.get("targets", [{}])[0].get("rawSql", "") and "$__interval_s % 3600" in \
                p["targets"][0]["rawSql"]:
            assert p["maxDataPoints"] == grafana.MAX_DATA_POINTS, p["title"]
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
@pytest.mark.parametrize("interval_s", [15, 300, 3600])
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
    assert slow[0][10] == info.slowest_trace and len(slow) == 20
    assert [r[3] for r in slow] == sorted((r[3] for r in slow), reverse=True)
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
@pytest.mark.parametrize("interval_s", [60, 300, 3600])
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


# ---- issue 24: the rollup an interval chooses; why slow, goodput, slowest requests --------------------------------
def _rollup_panels():
    return [p for p in grafana.PANELS if "$__interval_s % 3600 = 0" in p.sql]


#: ``$__interval_s`` → the one rollup table it reads: whole hours → hourly, else multiples of 5 minutes → 5-minute,
#: else (a minute, 2 minutes, under a minute, 90 s) → minute.
INTERVAL_TABLES = ((3600, "llm_requests_1h"), (7200, "llm_requests_1h"), (86400, "llm_requests_1h"),
                   (300, "llm_requests_5m"), (600, "llm_requests_5m"), (1800, "llm_requests_5m"),
                   (5400, "llm_requests_5m"), (60, "llm_requests_1m"), (120, "llm_requests_1m"),
                   (90, "llm_requests_1m"), (1, "llm_requests_1m"), (3660, "llm_requests_1m"))


def test_rollup_panels_read_only_the_table_their_interval_chooses(filled):
    """Whole-hour intervals read the hourly rollup, other multiples of 5 minutes the 5-minute rollup, the rest the
    minute rollup, and no part of the other two (the gates are constants after expansion): what ClickHouse plans to
    read (EXPLAIN ESTIMATE)."""
    store, info = filled
    panels = _rollup_panels()
    assert {p.title for p in panels} >= {"Request rate", "TTFT p50 / p95 / p99", "TTFT distribution ($model)",
                                         "Why slow: requests per cause", "Goodput vs throughput per model"}
    tables = {t for _i, t in INTERVAL_TABLES}
    for spec in panels:
        for interval_s, read in INTERVAL_TABLES:
            rows = {t: r for _db, t, _parts, r, _marks in store.query("EXPLAIN ESTIMATE " + _expand(
                spec, info, interval_s)).result_rows}
            assert rows.get(read, 0) > 0 and all(rows.get(t, 0) == 0 for t in tables - {read}), (
                spec.title, interval_s, rows)


def test_exactly_one_gate_holds_for_every_interval(filled):
    from vllm_otel_collector.views import grafana_sql as G

    store, _info = filled
    gates = ", ".join(f"toUInt8({g.replace('$__interval_s', 'i')})" for _t, g in G.GATES)
    rows = store.query(f"SELECT i, {gates} FROM (SELECT toUInt64(number + 1) AS i FROM numbers(7300) UNION ALL "
                       "SELECT arrayJoin([86400, 604800, 86700]) AS i) ORDER BY i").result_rows
    assert len(rows) == 7303
    for i, *held in rows:
        assert sum(held) == 1, (i, held)
        chosen = G.GATES[held.index(1)][0]
        assert chosen == ("llm_requests_1h" if i % 3600 == 0 else "llm_requests_5m" if i % 300 == 0 else
                          "llm_requests_1m"), i
        assert chosen == dict(INTERVAL_TABLES).get(i, chosen), i


@pytest.mark.parametrize("interval_s", [60, 120, 300, 600, 3600])
def test_request_rate_per_bucket_equals_raw_counts(filled, interval_s):
    store, info = filled
    spec = next(p for p in grafana.PANELS if p.title == "Request rate")
    got = {t: round(v * max(interval_s, 60)) for t, v in store.query(_expand(spec, info, interval_s)).result_rows}
    raw = dict(store.query(f"SELECT toDateTime(toStartOfInterval(Timestamp, INTERVAL {interval_s} SECOND)) AS t, "
                           "count() FROM llm_requests GROUP BY t").result_rows)
    assert got == raw and sum(raw.values()) == info.requests


def test_phase_totals_split_whole_hours_and_edges_exactly(filled):
    """The pie's range total: whole hours from the hourly rollup, edges from the minute rollup = the minute rollup
    alone, for a range with unaligned ends (and for the whole data)."""
    store, info = filled
    spec = next(p for p in grafana.PANELS if p.title == "Where time goes: queue vs prefill vs decode")
    for from_s, to_s in ((info.start + 125, info.now - 77), (info.start - 60, info.now + 60),
                         (info.now - 600, info.now - 300)):
        got = store.query(grafana.expand_macros(spec.sql, from_s, to_s, 300, {"model": grafana.ALL})).result_rows[0]
        want = store.query(f"SELECT sum(QueueSum), sum(PrefillSum), sum(DecodeSum) FROM llm_requests_1m "
                           f"WHERE Bucket >= toDateTime({from_s}) AND Bucket <= toDateTime({to_s})").result_rows[0]
        assert got == pytest.approx(want, rel=1e-9) and want[0] > 0


def _causes_raw(store, interval_s):
    rows = store.query(f"SELECT toDateTime(toStartOfInterval(Timestamp, INTERVAL {interval_s} SECOND)) AS t, "
                       "toString(Cause), count() FROM llm_requests GROUP BY t, Cause").result_rows
    out: dict = {}
    for t, cause, n in rows:
        out.setdefault(t, {})[cause] = n
    return out


@pytest.mark.parametrize("interval_s", [300, 3600])
def test_why_slow_counts_per_cause_equal_the_requests(filled, interval_s):
    from .data import SLOW

    store, info = filled
    spec = next(p for p in grafana.PANELS if p.title == "Why slow: requests per cause")
    rows = store.query(_expand(spec, info, interval_s)).result_rows
    names = spec.columns[1:]
    got = {t: {n: v for n, v in zip(names, vals)} for t, *vals in rows}
    raw = _causes_raw(store, interval_s)
    assert sorted(got) == sorted(raw)
    for t, counts in raw.items():  # every cell exact: the stored causes of the requests in that time bucket
        assert got[t] == {n: counts.get(n, 0) for n in names}, t
    totals = {n: sum(c[n] for c in got.values()) for n in names}
    assert totals["aborted"] == info.statuses["abort"]
    assert totals["error"] == info.statuses["error"] + info.statuses["timeout"]
    assert sum(totals.values()) == info.requests
    assert totals["queued"] == 2 and totals["prefill"] == 1 and totals["decode"] == 2 and totals["preempted"] == 1
    for offset, cause, *_ in SLOW:  # each request built to miss one SLO is counted in its cause's column
        t = (info.start + offset) // interval_s * interval_s
        assert next(v[cause] for k, v in got.items() if int(k.timestamp()) == t) >= 1, (offset, cause)


@pytest.mark.parametrize("interval_s", [300, 3600])
def test_goodput_vs_throughput_per_model(filled, interval_s):
    from .data import MODEL, SLOW

    store, info = filled
    spec = next(p for p in grafana.PANELS if p.title == "Goodput vs throughput per model")
    rows = store.query(_expand(spec, info, interval_s)).result_rows
    assert {r[1] for r in rows} == {MODEL}
    raw = dict(((t, (good, n)) for t, good, n in store.query(
        f"SELECT toDateTime(toStartOfInterval(Timestamp, INTERVAL {interval_s} SECOND)) AS t, countIf(Good = 1), "
        "count() FROM llm_requests GROUP BY t").result_rows))
    assert {t: (round(g * interval_s), round(n * interval_s)) for t, _m, g, n in rows} == raw
    good = sum(g for g, _n in raw.values())
    assert good == info.statuses["ok"] - len(SLOW)  # ok and within the default SLOs: every ok request but SLOW's
    assert sum(n for _g, n in raw.values()) == info.requests


def test_slowest_requests_show_cause_and_engine_numbers(filled):
    """Around each request built to miss one SLO, the table shows it with its stored cause and exact numbers."""
    from .data import SLOW

    store, info = filled
    spec = next(p for p in grafana.PANELS if p.title == "Slowest requests (click a trace id)")
    by_cause_offset = {}
    for trace, cause in info.slow.items():
        ts = store.query("SELECT toUnixTimestamp(Timestamp) FROM llm_requests WHERE TraceId = {t:String}",
                         parameters={"t": trace}).result_rows[0][0]
        by_cause_offset[(cause, ts - info.start)] = trace
    for offset, cause, queue, prefill, tpot, n_out, preempted, *_ in SLOW:
        trace = by_cause_offset[(cause, offset)]
        rows = store.query(grafana.expand_macros(spec.sql, info.start + offset - 1, info.start + offset + 1, 60,
                                                 {"model": grafana.ALL})).result_rows
        row = next(r for r in rows if r[10] == trace)
        _ts, model, got_cause, e2e, ttft, got_tpot, got_queue, n_in, got_out, preemptions, _trace = row
        assert (got_cause, n_in, got_out, preemptions) == (cause, 256, n_out, preempted)
        assert (got_queue, ttft, got_tpot) == pytest.approx((queue, queue + prefill, tpot), rel=1e-6)
        assert e2e == pytest.approx(queue + prefill + tpot * (n_out - 1), rel=1e-6)
