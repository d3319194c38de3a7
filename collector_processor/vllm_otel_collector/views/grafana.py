"""The Grafana "LLM serving overview" dashboard as code (grafana-foundation-sdk), and its panels' SQL in one place.

Every panel is a :class:`PanelSpec`: title, visualization, the raw SQL for the grafana-clickhouse-datasource plugin
(with its macros ``$__timeFilter(col)``, ``$__fromTime``, ``$__toTime``, ``$__interval_s``) and the columns the panel
reads. :func:`build_dashboard` turns the specs into dashboard JSON; ``make grafana`` (``python -m vllm_otel_collector.views.grafana
--out deploy/grafana/dashboards/llm-serving-overview.json``) regenerates the committed file (a test checks they match).
The tests expand the macros (:func:`expand_macros`) and run every query against a chDB store with data.

Latency panels read the 1-minute rollups (``llm_requests_1m``; quantiles from t-digest states, so approximate);
distribution, slow-request and level panels read raw ``llm_requests``. Units: seconds throughout.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

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
_Q = "quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)"


def _latency_sql(metric: str) -> str:
    return (f"SELECT {_BUCKET} AS time, {_Q}({metric}Quantiles)[1] AS p50, {_Q}({metric}Quantiles)[3] AS p95, "
            f"{_Q}({metric}Quantiles)[4] AS p99 FROM llm_requests_1m WHERE $__timeFilter(Bucket) AND {_MODEL} "
            f"GROUP BY time HAVING sum({metric}Count) > 0 ORDER BY time")


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


def _trace_links() -> list[dict]:
    return [
        {"title": "Trace view (this dashboard)", "url": "/d/" + DASHBOARD_UID + "?var-trace_id=${__value.raw}&${__url_time_range}"},
        {"title": "Explore in Grafana (Jaeger)", "url": "",
         "internal": {"datasourceUid": JAEGER_UID, "datasourceName": "Jaeger",
                      "query": {"query": "${__value.raw}", "queryType": ""}}},
        {"title": "Open in Jaeger UI", "url": "${jaeger_url}/trace/${__value.raw}", "targetBlank": True},
    ]


def build_dashboard() -> dict:
    """The dashboard as a JSON-ready dict (requires ``grafana-foundation-sdk``)."""
    from grafana_foundation_sdk.builders import barchart, dashboard, piechart, table, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models import dashboard as dm

    kinds = {"timeseries": timeseries.Panel, "table": table.Panel, "piechart": piechart.Panel,
             "barchart": barchart.Panel}
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
