"""A small in-test OTLP/gRPC receiver for metrics (and traces), on opentelemetry-proto's servicers.

Keeps each exporting process's latest export, flattened: ``points(name)`` returns the points of ``name`` in the latest
export of every connection (the periodic reader exports every metric of a process in one request, counters as
cumulative totals; an observable gauge without observations is absent, i.e. ``[]``).
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass
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


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink: "OtlpMetricsReceiver") -> None:
        self._sink = sink

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        batch: dict[str, list[Point]] = {}
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    data = getattr(m, kind)
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
        self._sink._add(batch, f"pid:{pids.pop()}" if len(pids) == 1 else context.peer())
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: "OtlpMetricsReceiver") -> None:
        self._sink = sink

    def Export(self, request, context):  # noqa: N802
        spans = [{"name": s.name, "kind": s.kind, "attributes": {a.key: _value(a.value) for a in s.attributes},
                  "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(), "parent_span_id": s.parent_span_id.hex()}
                 for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
        with self._sink._lock:
            self._sink.spans.extend(spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpMetricsReceiver:
    """``with OtlpMetricsReceiver() as r: ... r.endpoint`` — OTLP/gRPC on 127.0.0.1, a free port."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exports = 0
        self._latest: dict[str, dict[str, list[Point]]] = {}  # per exporting connection (= process)
        self.spans: list[dict] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), self._server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "OtlpMetricsReceiver":
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop(grace=None)

    def _add(self, batch: dict[str, list[Point]], peer: str) -> None:
        with self._lock:
            self.exports += 1
            # one export = the whole current state of that process (a gauge with no observation is absent); the
            # API server, EngineCore and workers each export over their own connection
            self._latest[peer] = batch

    def points(self, name: str) -> list[Point]:
        with self._lock:
            return [p for batch in self._latest.values() for p in batch.get(name, [])]

    def names(self) -> set[str]:
        with self._lock:
            return {n for batch in self._latest.values() for n in batch}

    def wait_exports(self, n: int, timeout: float = 30.0) -> None:
        """Block until ``n`` more exports arrived (each one starts after this call for n >= 2)."""
        target = self.exports + n
        self.wait_for(lambda: self.exports >= target, timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {self.exports} exports; names: {sorted(self.names())}")
            time.sleep(0.1)
