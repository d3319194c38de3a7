"""A null OTLP/gRPC receiver for the overhead benchmark: accepts traces and metrics, counts spans and data points,
stores nothing (so the variants pay only for producing and exporting their telemetry, not for a collector).

``with OtlpSink() as sink: sink.endpoint`` → ``"http://127.0.0.1:<port>"``; ``sink.spans`` / ``sink.points`` are
running totals (thread-safe reads of ints).
"""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: "OtlpSink"):
        self.sink = sink

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        names = {}
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    names[s.name.split(" ")[0]] = names.get(s.name.split(" ")[0], 0) + 1
        with self.sink.lock:
            self.sink.spans += n
            for k, v in names.items():
                self.sink.span_names[k] = self.sink.span_names.get(k, 0) + v
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink: "OtlpSink"):
        self.sink = sink

    def Export(self, request, context):  # noqa: N802
        n = 0
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    n += len(getattr(m, kind).data_points) if kind else 0
        with self.sink.lock:
            self.sink.points += n
        return metrics_service_pb2.ExportMetricsServiceResponse()


class OtlpSink:
    """OTLP/gRPC traces+metrics receiver on ``127.0.0.1`` (port 0 = any free port)."""

    def __init__(self, port: int = 0):
        self.lock = threading.Lock()
        self.spans = 0
        self.points = 0
        self.span_names: dict[str, int] = {}
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self) -> dict:
        with self.lock:
            return {"spans": self.spans, "points": self.points, "span_names": dict(self.span_names)}

    def __enter__(self) -> "OtlpSink":
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop(grace=1.0)
