"""Small helpers shared by collector tests: OTel SDK pipelines and raw OTLP requests."""

from __future__ import annotations

import os

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def sdk_provider(exporter, service: str = "svc") -> TracerProvider:
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp


def make_span(name: str = "op", trace_id: bytes | None = None, span_id: bytes | None = None,
              start: int = 1_700_000_000_000_000_000, duration: int = 1_000, **attrs) -> trace_pb2.Span:
    span = trace_pb2.Span(trace_id=trace_id or os.urandom(16), span_id=span_id or os.urandom(8), name=name,
                          kind=trace_pb2.Span.SPAN_KIND_SERVER, start_time_unix_nano=start,
                          end_time_unix_nano=start + duration)
    for k, v in attrs.items():
        kv = span.attributes.add(key=k)
        if isinstance(v, bool):
            kv.value.bool_value = v
        elif isinstance(v, int):
            kv.value.int_value = v
        elif isinstance(v, float):
            kv.value.double_value = v
        else:
            kv.value.string_value = str(v)
    return span


def make_request(spans, service: str = "svc") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(common_pb2.KeyValue(key="service.name",
                                                      value=common_pb2.AnyValue(string_value=service)))
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "test-scope", "1.2"
    ss.spans.extend(spans)
    return req
