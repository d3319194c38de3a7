"""The receivers' consumer interface: Signal objects, ConsumeResult → OTLP response, consumer errors → gRPC codes."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector.helpers import TRACE_EXPORT, make_request, make_span
from vllm_otel_collector.receivers.consumer import (
    BY_HTTP_PATH,
    METRICS,
    TRACES,
    CannotFitError,
    ConsumeResult,
    PermanentError,
    RetryableError,
)


def test_signal_response_sets_partial_success_only_when_something_happened():
    ok = TRACES.response(ConsumeResult(rejected=0, message="", accepted=3))
    assert isinstance(ok, ExportTraceServiceResponse) and not ok.HasField("partial_success")
    part = TRACES.response(ConsumeResult(rejected=2, message="bad ids"))
    assert (part.partial_success.rejected_spans, part.partial_success.error_message) == (2, "bad ids")
    truncated = METRICS.response(ConsumeResult(rejected=0, message="1 point truncated"))
    assert isinstance(truncated, ExportMetricsServiceResponse)
    assert truncated.HasField("partial_success") and truncated.partial_success.rejected_data_points == 0
    assert BY_HTTP_PATH["/v1/metrics"] is METRICS and str(TRACES) == "traces"
    assert issubclass(CannotFitError, PermanentError) and not issubclass(RetryableError, PermanentError)


def test_pipeline_consume_protobuf_json_and_malformed(make_collector):
    c = make_collector()
    span = make_span("consumed")
    result = c.pipeline.consume(TRACES, make_request([span]).SerializeToString())
    assert result == ConsumeResult(rejected=0, message="", accepted=1)
    doc = ('{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s","name":"j",'
           '"startTimeUnixNano":"5","endTimeUnixNano":"4"}]}]}]}' % ("ab" * 16, "cd" * 8)).encode()
    bad = c.pipeline.consume(TRACES, doc, encoding="json")
    assert (bad.rejected, bad.accepted) == (1, 0) and "end_time_unix_nano < start_time_unix_nano" in bad.message
    with pytest.raises(PermanentError, match="not an OTLP/JSON metrics request"):
        c.pipeline.consume(METRICS, b"[1]", encoding="json")
    assert c.drain(10)
    assert c.store.query("SELECT SpanName FROM otel_traces").result_rows == [("consumed",)]
    assert 'vllm_otel_collector_malformed_requests_total{signal="metrics"} 1.0' in c.metrics.render().decode()


def test_request_larger_than_the_queue_is_a_permanent_grpc_error(make_collector):
    c = make_collector(max_queue_rows=5)
    with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
        call = ch.unary_unary(TRACE_EXPORT)
        with pytest.raises(grpc.RpcError) as info:
            call(make_request([make_span(f"s{i}") for i in range(6)]).SerializeToString(), timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "request of 6 rows can never fit the queue (max_queue_rows 5)" in info.value.details()
        ExportTraceServiceResponse.FromString(call(make_request([make_span("fits")] * 5).SerializeToString(),
                                                   timeout=5))
    assert c.drain(10)
    assert c.store.query("SELECT count() FROM otel_traces").result_rows == [(5,)]
    assert 'vllm_otel_collector_refused_total{signal="traces"} 6.0' in c.metrics.render().decode()
