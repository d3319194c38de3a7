"""The one in-test OTLP/gRPC receiver (grpcio + opentelemetry-proto's servicers), for traces and metrics.

``with OtlpSink() as sink: ... sink.endpoint`` listens on 127.0.0.1 (a free port) and counts what arrives (spans,
data points, span names by first word: :meth:`OtlpSink.snapshot`). ``raw=True`` keeps every request body as it
arrived (``raw_traces``, ``raw_metrics``: serialized ``Export*ServiceRequest``). With ``keep=True`` (the default) it
also keeps:

- every span, flattened (:class:`Span`): :meth:`OtlpSink.spans`, :meth:`OtlpSink.wait_for` (poll a predicate over the
  spans);
- each exporting process's latest metrics export (:class:`Point`): :meth:`OtlpSink.points` returns the points of a
  metric in the latest export of every process (the periodic reader exports every metric of a process in one request,
  counters as cumulative totals; an observable gauge without observations is absent), :meth:`OtlpSink.wait_exports`.

The benchmarks use it with ``keep=False`` (``bench/instrumentation/sink.py``): a null receiver that stores nothing, so the variants
pay only for producing and exporting their telemetry.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Callable

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    return getattr(v, kind) if kind else None


@dataclass
class Span:
    """A received span, flattened: ids as hex strings, times in ns, attributes as a dict."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    status_code: int
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass
class Point:
    """One data point: ``kind`` gauge|sum|histogram; ``value`` for gauge/sum; ``count``/``sum``/``bucket_counts``/
    ``bounds`` for histograms; ``temporality`` 1 delta, 2 cumulative."""

    name: str
    kind: str
    attributes: dict[str, Any]
    value: float | None = None
    count: int | None = None
    sum: float | None = None
    bucket_counts: tuple[int, ...] = ()
    bounds: tuple[float, ...] = ()
    temporality: int = 0
    unit: str = ""


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: "OtlpSink") -> None:
        self._sink = sink

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        if self._sink.raw:
            self._sink._add_raw(self._sink.raw_traces, request.SerializeToString())
        names: dict[str, int] = {}
        out = []
        for rs in request.resource_spans:
            res = {a.key: _value(a.value) for a in rs.resource.attributes} if self._sink.keep else {}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    word = s.name.split(" ")[0]
                    names[word] = names.get(word, 0) + 1
                    if self._sink.keep:
                        out.append(Span(
                            name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(), kind=s.kind, start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano, attributes={a.key: _value(a.value) for a in s.attributes},
                            events=[(e.name, e.time_unix_nano, {a.key: _value(a.value) for a in e.attributes})
                                    for e in s.events],
                            status_code=s.status.code, resource=res))
        self._sink._add_spans(out, names)
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink: "OtlpSink") -> None:
        self._sink = sink

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        if self._sink.raw:
            self._sink._add_raw(self._sink.raw_metrics, request.SerializeToString())
        batch: dict[str, list[Point]] = {}
        n = 0
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if not kind:
                        continue
                    data = getattr(m, kind)
                    n += len(data.data_points)
                    if not self._sink.keep:
                        continue
                    pts = batch.setdefault(m.name, [])
                    for p in data.data_points:
                        attrs = {a.key: _value(a.value) for a in p.attributes}
                        if kind == "histogram":
                            pts.append(Point(m.name, kind, attrs, count=p.count, sum=p.sum,
                                             bucket_counts=tuple(p.bucket_counts), bounds=tuple(p.explicit_bounds),
                                             temporality=data.aggregation_temporality, unit=m.unit))
                        else:
                            value = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                            pts.append(Point(m.name, kind, attrs, value=value, unit=m.unit,
                                             temporality=getattr(data, "aggregation_temporality", 0)))
        # the exporting process: our process.memory.usage point carries process.pid (else the connection)
        pids = {p.attributes.get("process.pid") for p in batch.get("process.memory.usage", [])}
        self._sink._add_metrics(batch, f"pid:{pids.pop()}" if len(pids) == 1 else context.peer(), n)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class OtlpSink:
    """OTLP/gRPC traces + metrics receiver on ``127.0.0.1`` (``port`` 0: any free port); ``keep=False`` counts only."""

    def __init__(self, keep: bool = True, port: int = 0, workers: int = 4, raw: bool = False) -> None:
        self.keep = keep
        self.raw = raw
        self.raw_traces: list[bytes] = []
        self.raw_metrics: list[bytes] = []
        self._lock = threading.Lock()
        self.exports = 0  # metrics exports received
        self.span_count = 0
        self.point_count = 0
        self.span_names: dict[str, int] = {}
        self._spans: list[Span] = []
        self._latest: dict[str, dict[str, list[Point]]] = {}  # per exporting process
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "OtlpSink":
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop(grace=None)

    # ---- receiving ----------------------------------------------------------------------------------------------
    def _add_raw(self, bodies: list[bytes], body: bytes) -> None:
        with self._lock:
            bodies.append(body)

    def _add_spans(self, spans: list[Span], names: dict[str, int]) -> None:
        with self._lock:
            self._spans.extend(spans)
            self.span_count += sum(names.values())
            for k, v in names.items():
                self.span_names[k] = self.span_names.get(k, 0) + v

    def _add_metrics(self, batch: dict[str, list[Point]], process: str, points: int) -> None:
        with self._lock:
            self.exports += 1
            self.point_count += points
            if self.keep:
                # one export = the whole current state of that process (a gauge with no observation is absent); the
                # API server, EngineCore and workers each export over their own connection
                self._latest[process] = batch

    # ---- reading ------------------------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Running totals: ``{"spans", "points", "span_names"}``."""
        with self._lock:
            return {"spans": self.span_count, "points": self.point_count, "span_names": dict(self.span_names)}

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def raw_bodies(self) -> tuple[list[bytes], list[bytes]]:
        """Copies of the raw trace and metrics request bodies (``raw=True``)."""
        with self._lock:
            return list(self.raw_traces), list(self.raw_metrics)

    def wait_for(self, predicate: Callable[[list[Span]], bool], timeout: float = 30.0) -> list[Span]:
        """Poll until ``predicate(spans)`` is true; raises AssertionError with what arrived on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; {len(spans)} spans: {sorted({s.name for s in spans})}")
            time.sleep(0.1)

    def points(self, name: str) -> list[Point]:
        with self._lock:
            return [p for batch in self._latest.values() for p in batch.get(name, [])]

    def names(self) -> set[str]:
        with self._lock:
            return {n for batch in self._latest.values() for n in batch}

    def wait_exports(self, n: int, timeout: float = 30.0) -> None:
        """Block until ``n`` more metrics exports arrived (each one starts after this call for n >= 2)."""
        target = self.exports + n
        self.wait_until(lambda: self.exports >= target, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Poll until ``predicate()`` is true; raises AssertionError naming the metrics that arrived on timeout."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {self.exports} exports; names: {sorted(self.names())}")
            time.sleep(0.1)
