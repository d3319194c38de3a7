"""Request bytes → :class:`~vllm_otel_collector.otlp.base.Batch`, per signal: the converter choice for traces (the C
hot path when it takes the request, else the Python reference converter) and the metrics converter."""

from __future__ import annotations

from vllm_otel_collector.otlp.base import Batch, Limits
from vllm_otel_collector.otlp.metrics import metrics_from_bytes
from vllm_otel_collector.otlp.native import convert_traces_fast
from vllm_otel_collector.otlp.traces import traces_from_bytes
from vllm_otel_collector.plugins import SpanInterest
from vllm_otel_collector.receivers.consumer import METRICS, TRACES, Signal
from vllm_otel_collector.selfmetrics import SelfMetrics


class Converters:
    """Converts requests of every signal.

    Args:
        limits: size limits (truncation).
        native: use the C hot path for traces when it is built.
        interests: what the processors need from natively converted batches (None: every span); their attribute
            keys are handed to the C pass.
        metrics: ``trace_requests_total{path}`` is counted here.
    """

    def __init__(self, limits: Limits, native: bool, interests: list[SpanInterest] | None, metrics: SelfMetrics):
        self.limits, self.native, self.metrics = limits, native, metrics
        self.interests = interests
        self._interest_keys = tuple(sorted({k.encode() for i in (interests or []) for k in i.attribute_keys}))
        self._by_signal = {TRACES: self.traces, METRICS: self.metrics_batch}

    def __call__(self, signal: Signal, body: bytes) -> Batch:
        """Convert one request of ``signal``. Raises ``MalformedRequest`` (undecodable body)."""
        return self._by_signal[signal](body)

    def traces(self, body: bytes) -> Batch:
        """The C hot path when it takes the request, else the Python converter. Raises ``MalformedRequest``."""
        batch = convert_traces_fast(body, self.limits, self._interest_keys) if self.native else None
        if batch is not None:
            self.metrics.trace_requests.labels("native").inc()
            return batch
        self.metrics.trace_requests.labels("python").inc()
        return traces_from_bytes(body, self.limits)

    def metrics_batch(self, body: bytes) -> Batch:
        """One ``ExportMetricsServiceRequest``. Raises ``MalformedRequest``."""
        return metrics_from_bytes(body, self.limits)
