"""What the analytics migrations' placeholders name: ``${attr:NAME}``, ``${str:NAME}``, ``${list:NAME}`` and
``${sql:NAME}`` (:mod:`vllm_otel_collector.store.migrations`) resolve here, at migration time.

Attribute names come from the instrumentation's semconv module (the one place they are spelled); the few SQL
fragments several views share are defined below.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.vllm import semconv as sc

from vllm_otel_collector.analytics.loads import LOAD_ATTRIBUTES, STARTUP_SPANS

#: The newest threshold set as ``[(pattern, metric, seconds), ...]`` in config order (migration 0130): the first
#: entry whose metric matches and whose anchored RE2 ``pattern`` matches a span name gives its threshold.
THRESHOLDS = ("(SELECT arrayMap(e -> e.2, arraySort(e -> e.1, groupArray((Position, (Pattern, toString(Metric), "
              "Seconds))))) FROM ${db}.llm_level_thresholds FINAL "
              "WHERE SetId = (SELECT max(SetId) FROM ${db}.llm_level_thresholds))")



def _setting(key: str, default: float) -> str:
    """A number from ``vllm_otel_settings`` (the newest value of ``key``), ``default`` when absent or unparsable."""
    return (f"(SELECT toFloat64OrDefault(argMax(Value, UpdatedAt), {default!r}) FROM ${{db}}.vllm_otel_settings "
            f"WHERE Key = '{key}')")


#: Settle and look-back of the model-load assembly (migration 0133), seconds: synced from the analytics config.
SETTLE_KEY, LOOKBACK_KEY = "analytics.model_load_settle_seconds", "analytics.model_load_lookback_seconds"

_LOCAL: dict[str, Any] = {"THRESHOLDS": THRESHOLDS, "STARTUP_SPANS": STARTUP_SPANS,
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
