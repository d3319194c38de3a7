"""The Grafana "LLM serving overview" dashboard as code (grafana-foundation-sdk), and its panels' SQL in one place.

Every panel is a :class:`PanelSpec`: title, visualization, the raw SQL for the grafana-clickhouse-datasource plugin
(with its macros ``$__timeFilter(col)``, ``$__fromTime``, ``$__toTime``, ``$__interval_s``) and the columns the panel
reads. :func:`build_dashboard` turns the specs into dashboard JSON; ``make grafana`` (``python -m vllm_otel_collector.views.grafana
--out deploy/grafana/dashboards/llm-serving-overview.json``) regenerates the committed file (a test checks they match).
The tests expand the macros (:func:`expand_macros`) and run every query against a chDB store with data.

Latency panels read the 1-minute rollups (``llm_requests_1m``): quantile lines and heatmaps from the log-scale
histograms (:mod:`vllm_otel_collector.analytics.histogram`, quantiles within 1.083 % of the exact ones; heatmap rows
are the histogram downscaled to ``HEATMAP_SCALE``: 4 buckets per doubling, each row's count exact). The SLO row uses
the configured burn-rate rules (:class:`~vllm_otel_collector.analytics.config.BurnRateRule`, the same the alerts
evaluate) and their events (:data:`vllm_otel_collector.analytics.rules.SLO_EVENTS`). Slow-request, exemplar and level
panels read raw ``llm_requests`` / ``otel_metrics_histogram``. Units: seconds throughout.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

from vllm_otel_collector.analytics import histogram as H
from vllm_otel_collector.analytics import otlp_histograms
from vllm_otel_collector.analytics.config import AnalyticsConfig, BurnRateRule
from vllm_otel_collector.analytics.rules import SLO_EVENTS

CLICKHOUSE_UID = "clickhouse"
JAEGER_UID = "jaeger"
CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
DASHBOARD_UID = "vllm-otel-overview"

#: Dashboard variable ``model`` (multi-select with "All"): the plugin's ``$__conditionalAll`` drops the filter for All.
_MODEL = "$__conditionalAll(Model IN (${model:singlequote}), $model)"
MODEL_VARIABLE_SQL = "SELECT DISTINCT Model FROM llm_requests_1m WHERE $__timeFilter(Bucket) ORDER BY Model"
#: Value the tests pass for a variable set to "All".
ALL = "$__all"

#: Rollup bucket for time-series panels: never finer than the 1-minute rollup.
_BUCKET = "toStartOfInterval(Bucket, INTERVAL greatest($__interval_s, 60) SECOND)"
#: Heatmap rows: the rollup histograms downscaled to this scale (2: 4 buckets per doubling, bounds 2^(k/4)).
HEATMAP_SCALE = 2


def _latency_sql(metric: str) -> str:
    q = H.quantiles_sql(f"sumMap({metric}Hist)", (0.5, 0.95, 0.99), metric)
    return (f"SELECT time, q[1] AS p50, q[2] AS p95, q[3] AS p99 FROM (SELECT {_BUCKET} AS time, {q} AS q "
            f"FROM llm_requests_1m WHERE $__timeFilter(Bucket) AND {_MODEL} GROUP BY time "
            f"HAVING sum({metric}Count) > 0) ORDER BY time")


def heatmap_sql(metric: str) -> str:
    """Heatmap rows ``(time, le, count)`` of ``<metric>Hist``: per time bucket, the requests whose value is in
    (previous le, le] seconds at :data:`HEATMAP_SCALE` (``le`` as text: the plugin turns it into one field per
    bucket; the zero bucket has le 0)."""
    shift = H.SCALE - HEATMAP_SCALE
    return (f"SELECT time, toString(toFloat32({H.upper_bound_sql('hk', shift)})) AS le, sum(c) AS count FROM ("
            f"SELECT time, {H.heatmap_key_sql('k', shift)} AS hk, c FROM (SELECT {_BUCKET} AS time, "
            f"sumMap({metric}Hist) AS h FROM llm_requests_1m WHERE $__timeFilter(Bucket) AND {_MODEL} GROUP BY time) "
            f"ARRAY JOIN mapKeys(h) AS k, mapValues(h) AS c) GROUP BY time, hk ORDER BY time, hk")


def exemplar_sql(metric: str) -> str:
    """The slowest request per time bucket (raw ``llm_requests``): ``(time, <metric>_s, TraceId)`` — the trace
    behind the heatmap's top row, one click away."""
    col = f"{metric.lower()}_s"
    return (f"SELECT toStartOfInterval(Timestamp, INTERVAL greatest($__interval_s, 60) SECOND) AS time, "
            f"max({metric}) AS {col}, argMax(TraceId, {metric}) AS TraceId FROM llm_requests "
            f"WHERE $__timeFilter(Timestamp) AND {_MODEL} AND {metric} IS NOT NULL GROUP BY time ORDER BY time")


#: OTLP histogram exemplars (SDK exemplar filter trace_based): one row per stored exemplar with its trace id.
OTLP_EXEMPLAR_SQL = (
    "SELECT ex.TimeUnix AS time, MetricName AS metric, ex.Value AS value, ex.TraceId AS TraceId "
    "FROM otel_metrics_histogram ARRAY JOIN Exemplars AS ex "
    "WHERE $__timeFilter(TimeUnix) AND ex.TraceId != '' AND MetricName LIKE 'gen_ai.server.%' "
    "ORDER BY time LIMIT 1000")


#: The same distribution from OTLP metrics alone (explicit-bucket histograms; cumulative points differenced).
OTLP_HEATMAP_SQL = (
    "SELECT time, if(isInfinite(b), '+Inf', toString(b)) AS le, count FROM (SELECT time, le AS b, count FROM ("
    + otlp_histograms.heatmap_sql("'gen_ai.server.time_to_first_token'", "toUnixTimestamp($__fromTime)",
                                  "toUnixTimestamp($__toTime) + 1", "greatest($__interval_s, 60)",
                                  extra_filter="$__conditionalAll(Attributes['gen_ai.request.model'] IN "
                                               "(${model:singlequote}), $model)")
    + ")) ORDER BY time, b")


def burn_rate_rules(config: AnalyticsConfig | None = None) -> list[BurnRateRule]:
    """The burn-rate rules of ``config`` (default: the built-in defaults), in config order."""
    return [r for r in (config or AnalyticsConfig()).rules if isinstance(r, BurnRateRule)]


def slo_sql(rules: list[BurnRateRule]) -> str:
    """One row per burn-rate rule: burn over its long and short windows ending at the last complete minute before
    ``$__toTime`` (as the evaluator's ``complete_until``), whether both exceed its factor (the alert fires), and the
    error budget left over the dashboard range: ``1 − (bad / total) / (1 − objective)`` (negative: overspent)."""
    parts = []
    for r in rules:
        bad, total = SLO_EVENTS[r.slo]

        def burn(since: str, until: str = "u") -> str:
            cond = f"Bucket >= {since} AND Bucket < {until}"
            return (f"if(sumIf({total}, {cond}) > 0, sumIf({bad}, {cond}) / sumIf({total}, {cond}) / "
                    f"{1.0 - r.objective!r}, NULL)")

        parts.append(
            f"WITH toStartOfMinute($__toTime) AS u SELECT '{r.name}' AS rule, '{r.slo}' AS slo, {r.objective!r} AS objective, "
            f"{burn(f'u - {r.long_seconds}')} AS long_burn, {burn(f'u - {r.short_seconds}')} AS short_burn, "
            f"{r.factor!r} AS factor, ifNull(long_burn > factor AND short_burn > factor, 0) AS firing, "
            f"if(sumIf({total}, $__timeFilter(Bucket)) > 0, 1 - sumIf({bad}, $__timeFilter(Bucket)) / "
            f"sumIf({total}, $__timeFilter(Bucket)) / {1.0 - r.objective!r}, NULL) AS budget_left "
            f"FROM llm_requests_1m WHERE Bucket >= least($__fromTime, toStartOfMinute($__toTime) - "
            f"{max(r.long_seconds, r.short_seconds)}) AND Bucket < $__toTime AND {_MODEL}")
    return "SELECT * FROM (" + " UNION ALL ".join(parts) + ") ORDER BY rule"


def _gauge_sql(metric: str, alias: str) -> str:
    return (f"SELECT toStartOfInterval(TimeUnix, INTERVAL greatest($__interval_s, 1) SECOND) AS time, "
            f"avg(Value) AS {alias} FROM otel_metrics_gauge WHERE MetricName = '{metric}' "
            f"AND $__timeFilter(TimeUnix) GROUP BY time ORDER BY time")


@dataclass(frozen=True)
class PanelSpec:
    """One dashboard panel: ``kind`` is the Grafana panel type; ``fmt`` the plugin's result format
    (0 time series, 1 table, 3 trace); ``columns`` the result columns the panel reads (checked by the tests)."""

    title: str
    kind: str
    sql: str
    columns: tuple[str, ...]
    unit: str = ""
    width: int = 8
    height: int = 8
    fmt: int = 0
    description: str = ""
    row: str = ""  # a collapsible row with this title starts before the panel
    repeat: str = ""  # a dashboard variable: one copy of the panel per selected value


PANELS: tuple[PanelSpec, ...] = (
    PanelSpec("Request rate", "timeseries",
              f"SELECT {_BUCKET} AS time, sum(Requests) / greatest($__interval_s, 60) AS requests_per_s "
              "FROM llm_requests_1m WHERE $__timeFilter(Bucket) AND {_MODEL} GROUP BY time ORDER BY time",
              ("time", "requests_per_s"), unit="reqps", description="Requests finished per second (1m rollup)."),
    PanelSpec("TTFT p50 / p95 / p99", "timeseries", _latency_sql("TTFT"), ("time", "p50", "p95", "p99"), unit="s",
              description="Time to first token, seconds (t-digest quantiles from the 1m rollup)."),
    PanelSpec("TPOT p50 / p95 / p99", "timeseries", _latency_sql("TPOT"), ("time", "p50", "p95", "p99"), unit="s",
              description="Time per output token after the first, seconds."),
    PanelSpec("E2E latency p50 / p95 / p99", "timeseries", _latency_sql("E2E"), ("time", "p50", "p95", "p99"),
              unit="s", description="End-to-end request latency, seconds."),
    PanelSpec("Tokens per second", "timeseries",
              f"SELECT {_BUCKET} AS time, sum(OutputTokens) / greatest($__interval_s, 60) AS output_tokens_per_s, "
              "sum(InputTokens) / greatest($__interval_s, 60) AS input_tokens_per_s "
              "FROM llm_requests_1m WHERE $__timeFilter(Bucket) AND {_MODEL} GROUP BY time ORDER BY time",
              ("time", "output_tokens_per_s", "input_tokens_per_s"), unit="short",
              description="Generated (output) and prompt (input) tokens per second, all requests."),
    PanelSpec("Error / abort / timeout rate", "timeseries",
              f"SELECT {_BUCKET} AS time, sum(Errors) / sum(Requests) AS error_rate, "
              "sum(Aborts) / sum(Requests) AS abort_rate, sum(Timeouts) / sum(Requests) AS timeout_rate "
              "FROM llm_requests_1m WHERE $__timeFilter(Bucket) AND {_MODEL} GROUP BY time HAVING sum(Requests) > 0 ORDER BY time",
              ("time", "error_rate", "abort_rate", "timeout_rate"), unit="percentunit"),
    PanelSpec("Where time goes: queue vs prefill vs decode", "piechart",
              "SELECT sum(QueueSum) AS queue_s, sum(PrefillSum) AS prefill_s, sum(DecodeSum) AS decode_s "
              "FROM llm_requests_1m WHERE $__timeFilter(Bucket) AND {_MODEL}",
              ("queue_s", "prefill_s", "decode_s"), unit="s", fmt=1,
              description="Total seconds spent per phase over the range (sums from the 1m rollup)."),
    PanelSpec("KV cache usage", "timeseries", _gauge_sql("vllm.kv_cache.usage", "kv_cache_usage"),
              ("time", "kv_cache_usage"), unit="percentunit", description="vLLM KV cache usage (0..1), gauge."),
    PanelSpec("Running / waiting requests", "timeseries",
              "SELECT toStartOfInterval(TimeUnix, INTERVAL greatest($__interval_s, 1) SECOND) AS time, "
              "avgIf(Value, MetricName = 'vllm.requests.running') AS running, "
              "avgIf(Value, MetricName = 'vllm.requests.waiting') AS waiting FROM otel_metrics_gauge "
              "WHERE MetricName IN ('vllm.requests.running', 'vllm.requests.waiting') AND $__timeFilter(TimeUnix) "
              "GROUP BY time ORDER BY time",
              ("time", "running", "waiting"), unit="short"),
    PanelSpec("Performance levels", "barchart",
              "SELECT level, countIf(toString(TTFTLevel) = level) AS TTFT, countIf(toString(TPOTLevel) = level) AS TPOT, "
              "countIf(toString(E2ELevel) = level) AS E2E, countIf(toString(QueueLevel) = level) AS Queue "
              "FROM llm_requests ARRAY JOIN ['EXCELLENT', 'GOOD', 'SLOW', 'BOTTLENECK'] AS level "
              "WHERE $__timeFilter(Timestamp) AND {_MODEL} GROUP BY level "
              "ORDER BY indexOf(['EXCELLENT', 'GOOD', 'SLOW', 'BOTTLENECK'], level)",
              ("level", "TTFT", "TPOT", "E2E", "Queue"), fmt=1,
              description="Requests per performance level (thresholds from the analytics config)."),
    PanelSpec("Active alerts", "table",
              "SELECT RuleName AS rule, Severity AS severity, Message AS message, Value AS value, "
              "Threshold AS threshold, StartsAt AS since, Suggestion AS suggestion FROM ("
              "SELECT Fingerprint, argMax(State, Timestamp) AS st, argMax(RuleName, Timestamp) AS RuleName, "
              "argMax(Severity, Timestamp) AS Severity, argMax(Message, Timestamp) AS Message, "
              "argMax(Value, Timestamp) AS Value, argMax(Threshold, Timestamp) AS Threshold, "
              "argMax(StartsAt, Timestamp) AS StartsAt, argMax(Suggestion, Timestamp) AS Suggestion "
              "FROM llm_alerts WHERE Timestamp <= $__toTime GROUP BY Fingerprint) WHERE st = 'firing' "
              "ORDER BY since DESC",
              ("rule", "severity", "message", "value", "threshold", "since", "suggestion"), fmt=1, width=12),
    PanelSpec("Model loads", "table",
              "SELECT Timestamp AS time, Model AS model, ServiceName AS service, LoadSeconds AS load_s, "
              "WeightsSeconds AS weights_s, CompileSeconds AS compile_s, KVCacheSeconds AS kv_cache_s, "
              "ColdStartSeconds AS cold_start_s, CompileCacheHit AS compile_cache_hit, toString(LoadLevel) AS level, "
              "TraceId FROM llm_model_loads FINAL WHERE $__timeFilter(Timestamp) AND {_MODEL} ORDER BY time DESC",
              ("time", "model", "service", "load_s", "weights_s", "compile_s", "kv_cache_s", "cold_start_s",
               "compile_cache_hit", "level", "TraceId"), fmt=1, width=12,
              description="One row per engine start: phase durations (seconds), compile-cache hit, cold start."),
    PanelSpec("Model load phases", "barchart",
              "SELECT formatDateTime(Timestamp, '%m-%d %H:%i') || ' ' || Model AS load, "
              "ifNull(WeightsSeconds, 0) AS weights_s, ifNull(CompileSeconds, 0) AS compile_s, "
              "ifNull(KVCacheSeconds, 0) AS kv_cache_s, ifNull(WarmupSeconds, 0) AS warmup_s, "
              "greatest(ifNull(LoadSeconds, 0) - weights_s - compile_s - kv_cache_s - warmup_s, 0) AS other_s "
              "FROM llm_model_loads FINAL WHERE $__timeFilter(Timestamp) AND {_MODEL} ORDER BY Timestamp",
              ("load", "weights_s", "compile_s", "kv_cache_s", "warmup_s", "other_s"), unit="s", fmt=1, width=12,
              description="Where each engine start spent its time (stacked, seconds)."),
    PanelSpec("Cold vs warm start", "barchart",
              "SELECT Model || if(CompileCacheHit = 1, ' warm (compile cache hit)', ' cold (compile cache miss)') "
              "AS start, ifNull(WeightsSeconds, 0) AS weights_s, ifNull(CompileSeconds, 0) AS compile_s, "
              "ifNull(KVCacheSeconds, 0) AS kv_cache_s, ifNull(WarmupSeconds, 0) AS warmup_s, "
              "greatest(ifNull(LoadSeconds, 0) - weights_s - compile_s - kv_cache_s - warmup_s, 0) AS other_s "
              "FROM (SELECT * FROM llm_model_loads FINAL WHERE $__timeFilter(Timestamp) AND {_MODEL} "
              "AND CompileCacheHit IS NOT NULL ORDER BY Timestamp DESC LIMIT 1 BY Model, CompileCacheHit) "
              "ORDER BY Model, CompileCacheHit",
              ("start", "weights_s", "compile_s", "kv_cache_s", "warmup_s", "other_s"), unit="s", fmt=1, width=12,
              description="Per model, its newest engine start with a compile cache miss next to its newest with a "
                          "hit (stacked phases, seconds)."),
    PanelSpec("Slowest requests (click a trace id)", "table",
              "SELECT Timestamp AS time, TraceId, Model AS model, E2E AS e2e_s, TTFT AS ttft_s, TPOT AS tpot_s, "
              "Queue AS queue_s, Prefill AS prefill_s, Decode AS decode_s, OutputTokens AS output_tokens, "
              "toString(Status) AS status, toString(E2ELevel) AS level FROM llm_requests "
              "WHERE $__timeFilter(Timestamp) AND {_MODEL} ORDER BY E2E DESC NULLS LAST LIMIT 20",
              ("time", "TraceId", "model", "e2e_s", "ttft_s", "tpot_s", "queue_s", "prefill_s", "decode_s",
               "output_tokens", "status", "level"), fmt=1, width=24, height=9,
              description="Click a TraceId: the trace view below (ClickHouse), Explore with Jaeger, or Jaeger's UI."),
    PanelSpec("Trace $trace_id", "traces",
              "WITH '${trace_id}' AS trace_id, "
              "(SELECT min(Start) FROM otel_traces_trace_id_ts WHERE TraceId = trace_id) AS trace_start, "
              "(SELECT max(End) + 1 FROM otel_traces_trace_id_ts WHERE TraceId = trace_id) AS trace_end "
              "SELECT TraceId AS traceID, SpanId AS spanID, ParentSpanId AS parentSpanID, ServiceName AS serviceName, "
              "SpanName AS operationName, toUnixTimestamp64Nano(Timestamp) / 1000000 AS startTime, "
              "Duration / 1000000 AS duration, "
              "arrayMap(k -> map('key', k, 'value', SpanAttributes[k]), mapKeys(SpanAttributes)) AS tags, "
              "arrayMap(k -> map('key', k, 'value', ResourceAttributes[k]), mapKeys(ResourceAttributes)) "
              "AS serviceTags, SpanKind AS kind, StatusCode AS statusCode "
              "FROM otel_traces WHERE TraceId = trace_id AND Timestamp >= trace_start AND Timestamp <= trace_end "
              "ORDER BY startTime",
              ("traceID", "spanID", "parentSpanID", "serviceName", "operationName", "startTime", "duration", "tags",
               "serviceTags", "kind", "statusCode"), fmt=3, width=24, height=12,
              description="Grafana's trace view of the selected trace (times in ms, as the trace panel expects)."),
    *(PanelSpec(f"{label} distribution ($model)", "heatmap", heatmap_sql(metric), ("time", "le", "count"),
                unit="s", width=8, height=9, repeat="model", row="Latency distributions" if metric == "TTFT" else "",
                description=f"{label} per time bucket: requests per latency bucket (upper bound le, seconds; "
                            f"4 buckets per doubling) from the 1m rollup histograms, one heatmap per model.")
      for metric, label in (("TTFT", "TTFT"), ("TPOT", "TPOT"), ("E2E", "E2E"))),
    PanelSpec("TTFT distribution from OTLP metrics (gen_ai.server.time_to_first_token)", "heatmap", OTLP_HEATMAP_SQL,
              ("time", "le", "count"), unit="s", width=24, height=8,
              description="For metrics-only setups: the OTLP explicit-bucket histogram's counts per bucket (le, "
                          "seconds) and time bucket; cumulative points are differenced, delta points summed."),
    PanelSpec("Slowest request per interval (click for its trace)", "timeseries", exemplar_sql("E2E"),
              ("time", "e2e_s", "TraceId"), unit="s", fmt=1, width=12,
              description="The slowest request of each interval (raw llm_requests): its point links to the trace."),
    PanelSpec("OTLP histogram exemplars (click for the trace)", "timeseries", OTLP_EXEMPLAR_SQL,
              ("time", "metric", "value", "TraceId"), unit="s", fmt=1, width=12,
              description="Exemplars of the gen_ai.server.* histograms (SDK exemplar filter trace_based) stored with "
                          "the clickhouseexporter's Exemplars columns; each links to its trace in Jaeger."),
    PanelSpec("SLOs: burn rate and error budget left", "table", slo_sql(burn_rate_rules()),
              ("rule", "slo", "objective", "long_burn", "short_burn", "factor", "firing", "budget_left"),
              fmt=1, width=24, height=7, row="SLOs",
              description="Per burn-rate alert rule (analytics config): burn = (bad / total) / (1 − objective) over "
                          "its long and short windows ending at the last complete minute, firing when both exceed "
                          "its factor (Google SRE workbook); budget left over the dashboard's time range."),
)


PANELS = tuple(PanelSpec(**{**p.__dict__, "sql": p.sql.replace("{_MODEL}", _MODEL)}) for p in PANELS)


def _conditional_all(sql: str, variables: dict[str, str | list[str]]) -> str:
    """``$__conditionalAll(condition, $var)`` → ``1=1`` when ``var`` is All, else the condition (parens balanced)."""
    out, i, token = [], 0, "$__conditionalAll("
    while (j := sql.find(token, i)) >= 0:
        out.append(sql[i:j])
        depth, k = 1, j + len(token)
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[k], 0)
            k += 1
        args = sql[j + len(token):k - 1]
        condition, var = args.rsplit(",", 1)
        out.append("1=1" if variables.get(var.strip().lstrip("$"), ALL) == ALL else condition.strip())
        i = k
    return "".join(out) + sql[i:]


def expand_macros(sql: str, from_s: int, to_s: int, interval_s: int,
                  variables: dict[str, str | list[str]] | None = None) -> str:
    """Expand the grafana-clickhouse-datasource macros the way the plugin does (times in unix seconds), then
    dashboard variables: ``${name:singlequote}`` (a list → ``'a','b'``), ``${name}`` and ``$name``. A variable set
    to :data:`ALL` (or absent) makes ``$__conditionalAll(...)`` ``1=1``."""
    variables = dict(variables or {})
    out = _conditional_all(sql, variables)
    out = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m[1]} >= toDateTime({from_s}) AND {m[1]} <= toDateTime({to_s})", out)
    out = out.replace("$__fromTime", f"toDateTime({from_s})").replace("$__toTime", f"toDateTime({to_s})")
    out = out.replace("$__interval_s", str(interval_s))
    for name, value in variables.items():
        values = value if isinstance(value, list) else [value]
        quoted = ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)
        out = out.replace("${" + name + ":singlequote}", quoted)
        out = out.replace("${" + name + "}", ",".join(values)).replace("$" + name, ",".join(values))
    return out


def _query(spec: PanelSpec, ref: str):
    from grafana_foundation_sdk.cog import variants as cogvariants

    class ClickHouseQuery(cogvariants.Dataquery):
        def to_json(self) -> dict:
            query_type = {0: "timeseries", 1: "table", 3: "traces"}[spec.fmt]
            return {"refId": ref, "datasource": {"type": CLICKHOUSE_TYPE, "uid": CLICKHOUSE_UID},
                    "editorType": "sql", "format": spec.fmt, "queryType": query_type, "rawSql": spec.sql}

    class Builder:
        def build(self):
            return ClickHouseQuery()

    return Builder()


def _trace_links(trace: str = "${__value.raw}") -> list[dict]:
    """Data links to a trace: ``trace`` is the id's template (the clicked cell, or ``${__data.fields.TraceId}`` for
    a point whose row carries the trace id)."""
    return [
        {"title": "Trace view (this dashboard)", "url": "/d/" + DASHBOARD_UID + "?var-trace_id=" + trace + "&${__url_time_range}"},
        {"title": "Explore in Grafana (Jaeger)", "url": "",
         "internal": {"datasourceUid": JAEGER_UID, "datasourceName": "Jaeger",
                      "query": {"query": trace, "queryType": ""}}},
        {"title": "Open in Jaeger UI", "url": "${jaeger_url}/trace/" + trace, "targetBlank": True},
    ]


def build_dashboard() -> dict:
    """The dashboard as a JSON-ready dict (requires ``grafana-foundation-sdk``)."""
    from grafana_foundation_sdk.builders import barchart, dashboard, heatmap, piechart, table, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models import dashboard as dm

    kinds = {"timeseries": timeseries.Panel, "table": table.Panel, "piechart": piechart.Panel,
             "barchart": barchart.Panel, "heatmap": heatmap.Panel}
    ds = dm.DataSourceRef(type_val=CLICKHOUSE_TYPE, uid=CLICKHOUSE_UID)
    board = (dashboard.Dashboard("LLM serving overview").uid(DASHBOARD_UID)
             .tags(["vllm", "llm", "opentelemetry"]).time("now-3h", "now").refresh("30s").timezone("browser")
             .description("vLLM serving: latency (TTFT/TPOT/e2e), throughput, errors, KV cache, levels, alerts, "
                          "model loads, and drill-down to traces. Generated by vllm_otel_collector.views.grafana.")
             .with_variable(dashboard.QueryVariable("model").label("Model").datasource(ds).query(MODEL_VARIABLE_SQL)
                            .multi(True).include_all(True).refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
                            .sort(dm.VariableSort.ALPHABETICAL_ASC))
             .with_variable(dashboard.TextBoxVariable("trace_id").label("Trace id"))
             .with_variable(dashboard.ConstantVariable("jaeger_url").value("http://localhost:16686")))
    for n, spec in enumerate(PANELS):
        if spec.row:
            board = board.with_row(dashboard.Row(spec.row))
        if spec.kind == "traces":
            panel = dashboard.Panel().type("traces")
        else:
            panel = kinds[spec.kind]()
        panel = (panel.title(spec.title).datasource(ds).span(spec.width).height(spec.height)
                 .with_target(_query(spec, "A")))
        if spec.description:
            panel = panel.description(spec.description)
        if spec.unit and spec.kind != "traces":
            panel = panel.unit(spec.unit)
        if spec.kind == "barchart" and spec.columns[0] in ("load", "start"):
            panel = panel.stacking(common.StackingMode.NORMAL).orientation(common.VizOrientation.HORIZONTAL)
        if "TraceId" in spec.columns and spec.kind == "table":
            panel = panel.override_by_name("TraceId", [dm.DynamicConfigValue(id_val="links", value=_trace_links())])
        if "TraceId" in spec.columns and spec.kind == "timeseries":  # each point links to its row's trace
            panel = (panel.override_by_name(spec.columns[-2], [dm.DynamicConfigValue(
                id_val="links", value=_trace_links("${__data.fields.TraceId}"))])
                .draw_style(common.GraphDrawStyle.POINTS).point_size(6))
        if spec.kind == "heatmap":  # pre-bucketed rows: one field per le (named by its label), no re-bucketing
            panel = (panel.calculate(False).rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
                     .y_axis(heatmap.YAxisConfig().unit("s")).cell_values(heatmap.CellValues().unit("short"))
                     .display_name("${__field.labels.le}").show_y_histogram().show_tooltip())
        if spec.repeat:
            panel = panel.repeat(spec.repeat).repeat_direction("h")
        board = board.with_panel(panel)
    out = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    for panel in out["panels"]:  # the SDK leaves unset options as null; Grafana wants an object
        panel["options"] = panel.get("options") or {}
    return out


def render_json() -> str:
    """The committed file's exact text."""
    return json.dumps(build_dashboard(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - thin CLI around render_json
    parser = argparse.ArgumentParser(description="Generate the Grafana 'LLM serving overview' dashboard JSON.")
    parser.add_argument("--out", type=Path, required=True,
                        help="dashboard JSON to write (`make grafana` passes deploy/grafana/dashboards/...)")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_json())
    print(args.out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
