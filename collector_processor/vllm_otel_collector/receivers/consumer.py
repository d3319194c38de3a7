"""The consumer interface between the receivers and the pipeline (the OpenTelemetry Collector's ``consumer`` package:
``otlpreceiver`` ``Export`` → ``nextConsumer.ConsumeTraces``).

A receiver knows three things only: the :class:`Signal` a request carries (from its gRPC service or HTTP path), the
:class:`Consumer` it hands the request body to, and how to map the consumer's answer to an OTLP answer:

===========================  ==========================================  ==============================================
consumer says                gRPC status                                 HTTP status
===========================  ==========================================  ==============================================
:class:`ConsumeResult`       OK + ``partial_success`` when anything was  200 + ``partial_success`` likewise
                             rejected or truncated
:class:`RetryableError`      UNAVAILABLE + ``retry-after`` trailer       503 + ``Retry-After`` header
:class:`PermanentError`      INVALID_ARGUMENT                            400
:class:`CannotFitError`      INVALID_ARGUMENT (not RESOURCE_EXHAUSTED:   413
                             SDK exporters retry that one)
===========================  ==========================================  ==============================================

(OTLP spec, "OTLP/gRPC Response" and "OTLP/HTTP Response"; the retryable codes are the ones every OTLP exporter
retries, the permanent ones are never retried.) Any other exception is a bug: gRPC INTERNAL / HTTP 500, and the
server keeps serving.

A signal is an object, not a string: ``signal.name`` is the metric label and spool file suffix, ``signal.http_path``
the OTLP/HTTP path, ``signal.grpc_service`` the gRPC service, ``signal.request_type`` / ``signal.response_type`` the
protobuf messages, and :meth:`Signal.response` builds the export response for a result. Logs are a third signal
later (one more :class:`Signal` value, no new switch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from vllm_otel_collector.otlp.jsonpb import fix_metric_ids, fix_trace_ids

Encoding = Literal["protobuf", "json"]


@dataclass(frozen=True)
class ConsumeResult:
    """What the consumer did with an accepted request.

    Attributes:
        rejected: items (spans, data points) refused by validation — OTLP ``partial_success.rejected_spans`` /
            ``rejected_data_points``. The rest of the request is stored.
        message: ``partial_success.error_message`` ("" when everything was accepted unchanged); also names
            truncations, which reject nothing.
        accepted: items stored in the spool (informational; not sent to the client).
    """

    rejected: int = 0
    message: str = ""
    accepted: int = 0


class ConsumerError(Exception):
    """Base of the errors a :class:`Consumer` raises; ``str(err)`` is the one-line message for the client."""


class RetryableError(ConsumerError):
    """The collector cannot take this request now (spool or queue full, store down, shutting down); nothing of it
    was stored. The client should retry after ``retry_after_s`` seconds (→ gRPC UNAVAILABLE / HTTP 503)."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentError(ConsumerError):
    """The request can never be accepted as sent: undecodable body, not an OTLP export request (→ gRPC
    INVALID_ARGUMENT / HTTP 400). Nothing of it was stored."""


class CannotFitError(PermanentError):
    """The request is valid but larger than the collector can ever hold at once (more rows than the queue): the
    client must split it (→ HTTP 413 / gRPC INVALID_ARGUMENT). Nothing of it was stored."""


@dataclass(frozen=True)
class Signal:
    """One OTLP signal (traces, metrics; logs later) with everything a receiver needs to serve it.

    Attributes:
        name: ``"traces"`` / ``"metrics"`` — the ``signal`` label of the self-metrics and the spool file suffix.
        http_path: OTLP/HTTP path (``/v1/traces``).
        grpc_service: fully qualified gRPC service whose ``Export`` method carries it.
        request_type / response_type: the protobuf ``Export*ServiceRequest`` / ``Export*ServiceResponse`` classes.
        rejected_field: the ``partial_success`` field counting rejected items (``rejected_spans``).
        fix_json_ids: rewrites the hex ids of an OTLP/JSON document of this signal in place (see
            :mod:`vllm_otel_collector.otlp.jsonpb`).
    """

    name: str
    http_path: str
    grpc_service: str
    request_type: type
    response_type: type
    rejected_field: str
    fix_json_ids: Callable[[dict], None]

    def response(self, result: ConsumeResult):
        """The ``Export*ServiceResponse`` for ``result``: ``partial_success`` set only when something was rejected
        or the message is not empty (an empty ``partial_success`` means full success per the OTLP spec)."""
        resp = self.response_type()
        if result.rejected or result.message:
            setattr(resp.partial_success, self.rejected_field, result.rejected)
            resp.partial_success.error_message = result.message
        return resp

    def __str__(self) -> str:
        return self.name


TRACES = Signal("traces", "/v1/traces", "opentelemetry.proto.collector.trace.v1.TraceService",
                ExportTraceServiceRequest, ExportTraceServiceResponse, "rejected_spans", fix_trace_ids)
METRICS = Signal("metrics", "/v1/metrics", "opentelemetry.proto.collector.metrics.v1.MetricsService",
                 ExportMetricsServiceRequest, ExportMetricsServiceResponse, "rejected_data_points", fix_metric_ids)
SIGNALS: tuple[Signal, ...] = (TRACES, METRICS)
BY_NAME: dict[str, Signal] = {s.name: s for s in SIGNALS}
BY_HTTP_PATH: dict[str, Signal] = {s.http_path: s for s in SIGNALS}


class Consumer(Protocol):
    """What a receiver hands requests to (implemented by :class:`vllm_otel_collector.pipeline.Pipeline`).

    Thread-safe: receivers call it from many handler threads at once.
    """

    def consume(self, signal: Signal, body: bytes, encoding: Encoding = "protobuf") -> ConsumeResult:
        """Validate, convert and durably accept one export request.

        Args:
            signal: which signal ``body`` carries.
            body: the request after transport decoding (gunzipped): protobuf bytes of ``signal.request_type``, or
                its OTLP/JSON form when ``encoding == "json"`` (hex ids, enum names or numbers, int64 as strings).
        Returns:
            :class:`ConsumeResult`; when it returns, every accepted item is in the spool (safe to acknowledge).
        Raises:
            PermanentError: undecodable body (counted in ``malformed_requests_total``).
            CannotFitError: the request alone is larger than the queue.
            RetryableError: spool/queue full, or shutting down.
        """
        ...

    def malformed(self, signal: Signal, message: str) -> PermanentError:
        """Count a request the receiver itself could not decode (bad gzip) as malformed and return the
        :class:`PermanentError` to answer it with."""
        ...
