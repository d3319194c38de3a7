"""The Grafana "LLM serving overview" dashboard's panels: one :class:`PanelSpec` each, in dashboard order.

A spec holds the title, visualization, the raw SQL (built in :mod:`vllm_otel_collector.views.grafana_sql`) and the
columns the panel reads; :func:`vllm_otel_collector.views.grafana.build_dashboard` turns them into dashboard JSON.
Slow-request, exemplar and level panels read raw ``llm_requests`` / ``otel_metrics_histogram``; rate, latency
and heatmap panels the rollups (hourly when ``$__interval_s`` is whole hours, else 1-minute:
:func:`~vllm_otel_collector.views.grafana_sql.by_interval`). Units: seconds throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

from vllm_otel_collector.store.schema import Profile
from vllm_otel_collector.views.grafana_sql import (
    BUCKET,
    MAX_DATA_POINTS,
    MODEL_FILTER,
    by_interval,
    SLOWEST_SQL,
    burn_rate_rules,
    causes_sql,
    exemplar_sql,
    gauge_sql,
    goodput_sql,
    heatmap_sql,
    latency_sql,
    otlp_exemplar_sql,
    otlp_heatmap_sql,
    running_waiting_sql,
    slo_sql,
    trace_sql,
    whole_hours_split,
)


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
    max_data_points: int = 0  # the panel's maxDataPoints (0: Grafana's default, the panel width in pixels)


def build_panels(prof: Profile = Profile()) -> tuple[PanelSpec, ...]:
    """The panels, reading the contrib tables (names, attribute mode) of ``prof``; ``$model`` filters in place."""
    return tuple(PanelSpec(**{**p.__dict__, "sql": p.sql.replace("{_MODEL}", MODEL_FILTER)}) for p in _panels(prof))


def _panels(prof: Profile) -> tuple[PanelSpec, ...]:
    return (
        PanelSpec("Request rate", "timeseries",
                  "SELECT * FROM (" + by_interval(
                      f"SELECT {BUCKET} AS time, sum(Requests) / greatest($__interval_s, 60) AS requests_per_s "
                      "FROM {table} WHERE {range} AND {hourly} AND {_MODEL} GROUP BY time")
                  + ") ORDER BY time",
                  ("time", "requests_per_s"), unit="reqps", max_data_points=MAX_DATA_POINTS,
                  description="Requests finished per second (hourly rollup at whole-hour intervals, else 1m)."),
        PanelSpec("TTFT p50 / p95 / p99", "timeseries", latency_sql("TTFT"), ("time", "p50", "p95", "p99"), unit="s",
                  max_data_points=MAX_DATA_POINTS,
                  description="Time to first token, seconds (quantiles of the rollup histograms, within 1.083 %; "
                              "hourly rollup at whole-hour intervals, else 1m)."),
        PanelSpec("TPOT p50 / p95 / p99", "timeseries", latency_sql("TPOT"), ("time", "p50", "p95", "p99"), unit="s",
                  max_data_points=MAX_DATA_POINTS,
                  description="Time per output token after the first, seconds."),
        PanelSpec("E2E latency p50 / p95 / p99", "timeseries", latency_sql("E2E"), ("time", "p50", "p95", "p99"),
                  unit="s", max_data_points=MAX_DATA_POINTS, description="End-to-end request latency, seconds."),
        PanelSpec("Tokens per second", "timeseries",
                  "SELECT * FROM (" + by_interval(
                      f"SELECT {BUCKET} AS time, sum(OutputTokens) / greatest($__interval_s, 60) AS output_tokens_per_s, "
                      "sum(InputTokens) / greatest($__interval_s, 60) AS input_tokens_per_s "
                      "FROM {table} WHERE {range} AND {hourly} AND {_MODEL} GROUP BY time")
                  + ") ORDER BY time",
                  ("time", "output_tokens_per_s", "input_tokens_per_s"), unit="short", max_data_points=MAX_DATA_POINTS,
                  description="Generated (output) and prompt (input) tokens per second, all requests."),
        PanelSpec("Error / abort / timeout rate", "timeseries",
                  "SELECT * FROM (" + by_interval(
                      f"SELECT {BUCKET} AS time, sum(Errors) / sum(Requests) AS error_rate, "
                      "sum(Aborts) / sum(Requests) AS abort_rate, sum(Timeouts) / sum(Requests) AS timeout_rate "
                      "FROM {table} WHERE {range} AND {hourly} AND {_MODEL} GROUP BY time "
                      "HAVING sum(Requests) > 0") + ") ORDER BY time",
                  ("time", "error_rate", "abort_rate", "timeout_rate"), unit="percentunit",
                  max_data_points=MAX_DATA_POINTS),
        PanelSpec("Where time goes: queue vs prefill vs decode", "piechart",
                  "SELECT sum(q) AS queue_s, sum(p) AS prefill_s, sum(d) AS decode_s FROM ("
                  + whole_hours_split("sum(QueueSum) AS q, sum(PrefillSum) AS p, sum(DecodeSum) AS d", "{_MODEL}")
                  + ")",
                  ("queue_s", "prefill_s", "decode_s"), unit="s", fmt=1,
                  description="Total seconds spent per phase over the range (sums: whole hours from the hourly "
                              "rollup, the edges from the 1m rollup)."),
        PanelSpec("Why slow: requests per cause", "timeseries", causes_sql(),
                  ("time", "ok", "queued", "prefill", "decode", "preempted", "aborted", "error"), unit="short",
                  width=12, max_data_points=MAX_DATA_POINTS,
                  description="Requests per time bucket by cause (migration 0134): slow ones by the phase that made "
                              "them miss their SLO (queued, prefill, decode, preempted), aborted, error (errors and "
                              "timeouts), ok the rest (hidden until its legend entry is clicked)."),
        PanelSpec("Goodput vs throughput per model", "timeseries", goodput_sql(),
                  ("time", "Model", "good_per_s", "requests_per_s"), unit="reqps", width=12,
                  max_data_points=MAX_DATA_POINTS,
                  description="Per model: requests per second that were good (ok and within the model's TTFT and "
                              "TPOT SLOs) next to all requests per second."),
        PanelSpec("KV cache usage", "timeseries", gauge_sql("vllm.kv_cache.usage", "kv_cache_usage", prof),
                  ("time", "kv_cache_usage"), unit="percentunit", description="vLLM KV cache usage (0..1), gauge."),
        PanelSpec("Running / waiting requests", "timeseries", running_waiting_sql(prof),
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
        PanelSpec("Slowest requests (click a trace id)", "table", SLOWEST_SQL,
                  ("Timestamp", "Model", "Cause", "E2E", "TTFT", "TPOT", "Queue", "InputTokens", "OutputTokens",
                   "Preemptions", "TraceId"), fmt=1, width=24, height=9,
                  description="The 20 slowest requests of the range (raw llm_requests) with their cause; seconds. "
                              "Click a TraceId: the trace view below (ClickHouse), Explore with Jaeger, or Jaeger's UI."),
        PanelSpec("Trace $trace_id", "traces", trace_sql(prof),
                  ("traceID", "spanID", "parentSpanID", "serviceName", "operationName", "startTime", "duration", "tags",
                   "serviceTags", "kind", "statusCode"), fmt=3, width=24, height=12,
                  description="Grafana's trace view of the selected trace (times in ms, as the trace panel expects)."),
        *(PanelSpec(f"{label} distribution ($model)", "heatmap", heatmap_sql(metric), ("time", "le", "count"),
                    unit="s", width=8, height=9, repeat="model", row="Latency distributions" if metric == "TTFT" else "",
                    max_data_points=MAX_DATA_POINTS,
                    description=f"{label} per time bucket: requests per latency bucket (upper bound le, seconds; "
                                f"4 buckets per doubling) from the rollup histograms (hourly at whole-hour intervals, "
                                f"else 1m), one heatmap per model.")
          for metric, label in (("TTFT", "TTFT"), ("TPOT", "TPOT"), ("E2E", "E2E"))),
        PanelSpec("TTFT distribution from OTLP metrics (gen_ai.server.time_to_first_token)", "heatmap",
                  otlp_heatmap_sql(prof),
                  ("time", "le", "count"), unit="s", width=24, height=8,
                  description="For metrics-only setups: the OTLP explicit-bucket histogram's counts per bucket (le, "
                              "seconds) and time bucket; cumulative points are differenced, delta points summed."),
        PanelSpec("Slowest request per interval (click for its trace)", "timeseries", exemplar_sql("E2E"),
                  ("time", "e2e_s", "TraceId"), unit="s", fmt=1, width=12,
                  description="The slowest request of each interval (raw llm_requests): its point links to the trace."),
        PanelSpec("OTLP histogram exemplars (click for the trace)", "timeseries", otlp_exemplar_sql(prof),
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


#: The panels for our own collector's tables (the committed dashboard).
PANELS = build_panels()
