"""Pre-aggregated points into an SDK ``MeterProvider``'s collections: the seam the registry source
(:mod:`.registry`) exports through.

The Python SDK (1.45) has no ``MetricProducer`` (open-telemetry/opentelemetry-python#3068 closed without one) and its
instruments cannot take bucket counts, and no Prometheus → OpenTelemetry bridge exists for Python (Go's is
``go.opentelemetry.io/contrib/bridges/prometheus``, a ``MetricProducer``). The one place between a provider and its
readers is the collect callback the provider hands each reader (``MetricReader._set_collect_callback``):
:meth:`ReaderBridge.install` wraps it, so every collection of every reader the provider had at that moment (the
periodic OTLP export, ``force_flush``, ``shutdown``, a Prometheus exporter's scrape) returns the SDK's own metrics
plus ours under the instrumentation's scope, with the reader's temporality (cumulative as vLLM counts; delta readers
get the difference to their previous collection). Feature-detected: a provider without that seam (not the SDK, or
a future SDK that moved it) makes :meth:`ReaderBridge.install` return False, and the caller keeps the stat-logger
source. User ``View`` s do not apply to these points (they never pass the SDK's aggregation).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from opentelemetry.instrumentation.vllm.engine.table import COUNTER, GAUGE, METRICS
from opentelemetry.instrumentation.vllm.safety import report_hook_error

#: What a source returns: :func:`.registry.translate`'s ``[(metric, kind, points), ...]``, or None (nothing now).
Source = Callable[[], "list[tuple] | None"]


class ReaderBridge:
    """Adds the points of ``source()`` to every collection of the readers of the providers it is installed on.
    ``scope``: the instrumentation scope name the points are exported under."""

    def __init__(self, scope: str, source: Source) -> None:
        self.scope = scope
        self.source = source
        self._lock = threading.Lock()
        self._last: dict[int, dict[tuple, tuple]] = {}  # delta readers: id(reader) -> series -> (time, value)
        self.installed = 0

    def install(self, meter_provider: Any) -> bool:
        """Wrap the collect callback of each of ``meter_provider``'s readers; False when it has no such seam."""
        readers = getattr(meter_provider, "_metric_readers", None)
        if readers is None or not all(callable(getattr(r, "_collect", None)) and
                                      hasattr(r, "_set_collect_callback") for r in readers):
            return False
        resource = getattr(getattr(meter_provider, "_sdk_config", None), "resource", None)
        if resource is None:
            return False
        for reader in readers:
            original = reader._collect
            if getattr(original, "_vllm_otel_bridge", None) is self:
                continue

            def collect(rdr: Any, timeout_millis: float = 10_000, _orig: Any = original, _res: Any = resource) -> Any:
                return self._merge(rdr, _orig(rdr, timeout_millis=timeout_millis), _res)

            collect._vllm_otel_bridge = self  # type: ignore[attr-defined]
            reader._set_collect_callback(collect)
            self.installed += 1
        return True

    # -- one collection -------------------------------------------------------------------------------------------
    def _merge(self, reader: Any, data: Any, resource: Any) -> Any:
        try:
            metrics = self._metrics(reader)
        except Exception as exc:  # noqa: BLE001 - never break the SDK's collection
            report_hook_error("engine.registry", exc)
            return data
        if not metrics:
            return data
        from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        if data is None or not data.resource_metrics:
            return MetricsData([ResourceMetrics(resource, [ScopeMetrics(InstrumentationScope(self.scope), metrics,
                                                                        "")], "")])
        first = data.resource_metrics[0]
        scopes = list(first.scope_metrics)
        for i, sm in enumerate(scopes):
            if sm.scope.name == self.scope:
                scopes[i] = ScopeMetrics(sm.scope, list(sm.metrics) + metrics, sm.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(InstrumentationScope(self.scope), metrics, ""))
        return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url)]
                           + list(data.resource_metrics[1:]))

    def _metrics(self, reader: Any) -> list:
        from opentelemetry.sdk.metrics import Counter, Histogram as SdkHistogram
        from opentelemetry.sdk.metrics.export import (AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
                                                      Metric, NumberDataPoint, Sum)

        points = self.source()
        if not points:
            return []
        temporality = getattr(reader, "_instrument_class_temporality", {})
        now = time.time_ns()
        delta_sum = _temporality(temporality, Counter) == AggregationTemporality.DELTA
        delta_hist = _temporality(temporality, SdkHistogram) == AggregationTemporality.DELTA
        out = []
        with self._lock:
            last = self._last.setdefault(id(reader), {})
            for name, kind, pts in points:
                _, unit, desc, _ = METRICS[name]
                if kind == GAUGE:
                    data: Any = Gauge([NumberDataPoint(a, s, now, v) for a, s, v in pts])
                elif kind == COUNTER:
                    dps = []
                    for a, s, v in pts:
                        if delta_sum:
                            s, v = _delta(last, (name, _key(a)), s, now, (v,))
                            v = v[0]
                        dps.append(NumberDataPoint(a, s, now, v))
                    data = Sum(dps, AggregationTemporality.DELTA if delta_sum else
                               AggregationTemporality.CUMULATIVE, True)
                else:
                    dps = []
                    for a, s, count, total, bounds, counts in pts:
                        if delta_hist:
                            s, vals = _delta(last, (name, _key(a)), s, now, (count, total, *counts))
                            count, total, counts = int(vals[0]), vals[1], [int(c) for c in vals[2:]]
                        dps.append(HistogramDataPoint(a, s, now, count, total, counts, bounds, None, None))
                    data = Histogram(dps, AggregationTemporality.DELTA if delta_hist else
                                     AggregationTemporality.CUMULATIVE)
                if data.data_points:
                    out.append(Metric(name, desc, unit, data))
        return out


def _temporality(table: dict, cls: type) -> Any:
    """The reader's temporality for instruments of class ``cls`` (its table is keyed by the SDK's private
    subclasses, e.g. ``_Counter``)."""
    for k, v in table.items():
        if isinstance(k, type) and issubclass(k, cls):
            return v
    return None


def _key(attrs: dict) -> tuple:
    return tuple(sorted(attrs.items()))


def _delta(last: dict, key: tuple, start: int, now: int, values: tuple) -> tuple[int, tuple]:
    """``values`` (cumulative; ``values[0]`` is the counter or the histogram's count) minus what this reader saw last
    time, starting then; a reset (the first value went down, e.g. vLLM re-created its logger) starts over from the
    cumulative values."""
    prev = last.get(key)
    last[key] = (now, values)
    if prev is None or len(prev[1]) != len(values) or values[0] < prev[1][0]:
        return start, values
    return prev[0], tuple(v - p for v, p in zip(values, prev[1]))
