"""What the analytics migrations' placeholders name: ``${attr:NAME}``, ``${str:NAME}``, ``${list:NAME}`` and
``${sql:NAME}`` (:mod:`vllm_otel_collector.store.migrations`) resolve here, at migration time.

Attribute names come from the instrumentation's semconv module (the one place they are spelled); the few SQL
fragments several views share are defined below.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.vllm import semconv as sc

from vllm_otel_collector.analytics.levels import GLOB_SLOTS
from vllm_otel_collector.analytics.loads import LOAD_ATTRIBUTES, STARTUP_SPANS

def _setting(key: str, default: float) -> str:
    """A number from ``vllm_otel_settings`` (the newest value of ``key``), ``default`` when absent or unparsable."""
    return (f"(SELECT toFloat64OrDefault(argMax(Value, UpdatedAt), {default!r}) FROM ${{db}}.vllm_otel_settings "
            f"WHERE Key = '{key}')")


#: Settle and look-back of the model-load assembly (migration 0133), seconds: synced from the analytics config.
SETTLE_KEY, LOOKBACK_KEY = "analytics.model_load_settle_seconds", "analytics.model_load_lookback_seconds"
METRICS = ("ttft", "tpot", "e2e", "queue", "duration", "load")


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


_REQUEST = ("ttft", "tpot", "e2e", "queue")
_LOCAL: dict[str, Any] = {"WITH_REQUEST_THRESHOLDS": _with_thresholds(*_REQUEST),
                          "WITH_DURATION_THRESHOLDS": _with_thresholds("duration"),
                          "WITH_LOAD_THRESHOLDS": _with_thresholds("load"), "STARTUP_SPANS": STARTUP_SPANS,
                          **{f"LOOKUP_{m.upper()}": _lookup(_REQUEST, m) for m in _REQUEST},
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
