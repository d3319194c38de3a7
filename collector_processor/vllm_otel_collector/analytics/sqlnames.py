"""What the analytics migrations' placeholders name: ``${attr:NAME}``, ``${str:NAME}``, ``${list:NAME}`` and
``${sql:NAME}`` (:mod:`vllm_otel_collector.store.migrations`) resolve here, at migration time.

Attribute names come from the instrumentation's semconv module (the one place they are spelled); the few SQL
fragments several views share are defined below.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.vllm import semconv as sc

from vllm_otel_collector.analytics import histogram as H
from vllm_otel_collector.analytics.levels import GLOB_SLOTS
from vllm_otel_collector.analytics.loads import LOAD_ATTRIBUTES, STARTUP_SPANS

def _setting(key: str, default: float) -> str:
    """A number from ``vllm_otel_settings`` (the newest value of ``key``), ``default`` when absent or unparsable."""
    return (f"(SELECT toFloat64OrDefault(argMax(Value, UpdatedAt), {default!r}) FROM ${{db}}.vllm_otel_settings "
            f"WHERE Key = '{key}')")


#: Settle and look-back of the model-load assembly (migration 0133), seconds: synced from the analytics config.
SETTLE_KEY, LOOKBACK_KEY = "analytics.model_load_settle_seconds", "analytics.model_load_lookback_seconds"
#: Goodput SLOs per model (analytics.slos): looked up by Model, not span name; compiled like the level metrics.
SLO_METRICS = ("slo_ttft", "slo_tpot")
METRICS = ("ttft", "tpot", "e2e", "queue", "duration", "load") + SLO_METRICS
#: Cause rules and baselines (migration 0134), synced from the analytics config: key -> default.
CAUSE_FACTOR_KEY, CAUSE_SLACK_KEY = "analytics.cause_slow_factor", "analytics.cause_min_excess_seconds"
BASELINE_SECONDS_KEY, BASELINE_MIN_KEY = "analytics.baseline_seconds", "analytics.baseline_min_requests"
#: A baseline row older than this (seconds; five refreshes) is not used: its key left the window.
BASELINE_FRESH_SECONDS = 300
#: Prompt-length bucket of a request (2^(b-1) < prompt tokens <= 2^b; 0 for <= 1 token); 255 = every prompt length.
PROMPT_BUCKET = "toUInt8(if(InputTokens <= 1, 0, ceil(log2(toFloat64(InputTokens)))))"
ALL_PROMPTS_BUCKET = 255


def _with_thresholds(*metrics: str) -> str:
    """The WITH-clause item ``lk``: one tuple holding, per metric of ``metrics`` (in that order), ``(exact names,
    their seconds, globs, their seconds, default)`` of the newest set (``llm_level_lookup``,
    :func:`~.levels.compile_lookup`), a constant of the insert block. One scalar subquery and no lambdas: ClickHouse
    analyzes a view's query for every inserted block, and that cost is per subquery and per expression
    (docs/BENCHMARKS.md §6)."""
    items = ", ".join(f"argMaxIf(tuple(ExactNames, ExactSeconds, Globs, GlobSeconds, Default), SetId, Metric = '{m}')"
                      for m in metrics)
    return f"(SELECT tuple({items}) FROM ${{db}}.llm_level_lookup) AS lk"


def _lookup(metrics: tuple[str, ...], metric: str, column: str = "SpanName") -> str:
    """The threshold (seconds) ``metric``'s entries give ``column`` (0 when none: a configured threshold is > 0): a
    span name listed exactly by its hash, any other by the first matching wildcard glob, else the ``*`` default.
    ``metrics`` is the view's :func:`_with_thresholds` list."""
    m = f"lk.{metrics.index(metric) + 1}"
    globs = ", ".join(f"match({column}, {m}.3[{i}]), {m}.4[{i}]" for i in range(1, GLOB_SLOTS + 1))
    return f"transform({column}, {m}.1, {m}.2, multiIf({globs}, {m}.5))"


def _settings_tuple(*items: tuple[str, float]) -> str:
    """One scalar subquery: the newest value of each ``(key, default)`` in ``vllm_otel_settings`` as a tuple of
    Float64 (the default when absent or unparsable)."""
    parts = ", ".join(f"toFloat64OrDefault(argMaxIf(Value, UpdatedAt, Key = '{k}'), {d!r})" for k, d in items)
    return f"(SELECT tuple({parts}) FROM ${{db}}.vllm_otel_settings)"


def _baseline_select(bucket: str, group: str) -> str:
    median = "toFloat32(if(count({c}) > 0, ifNull(quantileExact(0.5)({c}), -1), -1))"
    return (f"SELECT Model, {bucket} AS PromptBucket, count() AS Requests, {median.format(c='q')} AS Queue, "
            f"{median.format(c='p')} AS Prefill, {median.format(c='t')} AS TPOT, now() AS Until "
            f"FROM (SELECT Model, {PROMPT_BUCKET} AS b, Queue AS q, Prefill AS p, TPOT AS t FROM ${{db}}.llm_requests "
            f"WHERE Status = 'ok' AND Timestamp >= now() - toIntervalSecond(toInt64(bs.1))) "
            f"GROUP BY {group} HAVING count() >= bs.2")


_BASELINE_SETTINGS = _settings_tuple((BASELINE_SECONDS_KEY, 3600.0), (BASELINE_MIN_KEY, 20.0))
#: The refreshable view llm_baselines_mv (migration 0134): per (model, prompt bucket) and per model (bucket 255).
BASELINES_SELECT = (f"WITH {_BASELINE_SETTINGS} AS bs " + _baseline_select("b", "Model, b")
                    + f" UNION ALL WITH {_BASELINE_SETTINGS} AS bs "
                    + _baseline_select(f"toUInt8({ALL_PROMPTS_BUCKET})", "Model"))

_LEVEL_COLUMNS = ("TTFT", "TPOT", "E2E", "Queue")
#: The aggregates of one rollup row over ``llm_requests AS r`` (every level: 1m, 5m, 1h; migrations 0134/0135): the
#: columns of ``llm_requests_1m`` after 0101, 0105 and 0134, in table order, for ``SELECT <bucket>, ServiceName, Model,
#: Operation, ${sql:ROLLUP_AGGREGATES} FROM ${db}.llm_requests AS r GROUP BY …``.
ROLLUP_AGGREGATES = ",\n    ".join(
    ["count() AS Requests", "countIf(Status = 'ok') AS Ok", "countIf(Status = 'error') AS Errors",
     "countIf(Status = 'abort') AS Aborts", "countIf(Status = 'timeout') AS Timeouts",
     *(f"sum(toUInt64(r.{c})) AS {c}" for c in ("InputTokens", "OutputTokens", "CachedTokens")),
     "countIf(r.CachedTokens > 0) AS CacheHits",
     *(f"count({m}) AS {m}Count,\n    sum(ifNull(toFloat64({m}), 0)) AS {m}Sum" for m in H.METRICS),
     *(f"countIf({m}Level IN ('SLOW', 'BOTTLENECK')) AS {m}Over,\n    max(ifNull({m}, 0)) AS {m}Max"
       for m in _LEVEL_COLUMNS),
     "countIf(Good = 1) AS Good",
     *(f"countIf(Cause = '{c.lower()}') AS Cause{c}" for c in ("Queued", "Prefill", "Decode", "Preempted")),
     *(f"{H.state_sql(m)} AS {m}Hist" for m in H.METRICS)])

_REQUEST = ("ttft", "tpot", "e2e", "queue")
_REQUEST_SLO = _REQUEST + SLO_METRICS
_LOCAL: dict[str, Any] = {"WITH_REQUEST_THRESHOLDS": _with_thresholds(*_REQUEST),
                          "WITH_DURATION_THRESHOLDS": _with_thresholds("duration"),
                          "WITH_LOAD_THRESHOLDS": _with_thresholds("load"), "STARTUP_SPANS": STARTUP_SPANS,
                          **{f"LOOKUP_{m.upper()}": _lookup(_REQUEST, m) for m in _REQUEST},
                          "WITH_REQUEST_SLO_THRESHOLDS": _with_thresholds(*_REQUEST_SLO),
                          **{f"LOOKUP_{m.upper()}": _lookup(_REQUEST_SLO, m, "Model") for m in SLO_METRICS},
                          "WITH_BASELINES": "(SELECT tuple(groupArray(tuple(Model, PromptBucket)), groupArray(Queue), "
                                            "groupArray(Prefill), groupArray(TPOT)) FROM ${db}.llm_baselines FINAL "
                                            f"WHERE Until >= now() - {BASELINE_FRESH_SECONDS}) AS bl",
                          "WITH_CAUSE_SETTINGS": _settings_tuple((CAUSE_FACTOR_KEY, 2.0), (CAUSE_SLACK_KEY, 0.05))
                          + " AS cs",
                          "BASELINES_SELECT": BASELINES_SELECT, "ROLLUP_AGGREGATES": ROLLUP_AGGREGATES,
                          "LOOKUP_DURATION": _lookup(("duration",), "duration"),
                          "LOOKUP_LOAD": _lookup(("load",), "load", "root_name"),
                          "LOAD_ATTRIBUTES": LOAD_ATTRIBUTES, "SETTLE_SECONDS": _setting(SETTLE_KEY, 30.0),
                          "LOOKBACK_SECONDS": _setting(LOOKBACK_KEY, 86400.0)}


def resolve(name: str) -> Any:
    """The value a placeholder's ``NAME`` stands for: one of the constants above, else the semconv constant.

    Raises:
        AttributeError: an unknown name (the migration runner reports it as a one-line error).
    """
    if name in _LOCAL:
        return _LOCAL[name]
    return getattr(sc, name)
