"""OTel SDK exporters and raw OTLP clients → real collector (gRPC/HTTP) → rows in real chDB."""

from __future__ import annotations

import json
import time

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind, Status, StatusCode

from collector.helpers import TRACE_EXPORT, make_request, make_span, sdk_provider
from vllm_otel_collector.errors import UserError


def _rows(store, sql, **params):
    return store.query(sql, parameters=params or None).result_rows


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_exporter_to_exact_rows(make_collector, transport):
    c = make_collector()
    exporter = (GrpcSpanExporter(endpoint=f"127.0.0.1:{c.grpc_port}", insecure=True) if transport == "grpc"
                else HttpSpanExporter(endpoint=f"http://127.0.0.1:{c.http_port}/v1/traces"))
    tp = sdk_provider(exporter, service=f"svc-{transport}")
    tracer = tp.get_tracer("vllm-test", "0.9")
    expected = {}
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        for i in range(5):
            with tracer.start_as_current_span(f"child-{i}", attributes={"i": i, "ok": i % 2 == 0, "f": 0.5}) as s:
                s.add_event("tick", {"n": i})
                if i == 4:
                    s.set_status(Status(StatusCode.ERROR, "bad"))
                expected[format(s.get_span_context().span_id, "016x")] = i
    parent_id = format(parent.get_span_context().span_id, "016x")
    trace_id = format(parent.get_span_context().trace_id, "032x")
    tp.shutdown()
    assert c.drain(10)
    rows = _rows(c.store, "SELECT SpanId, ParentSpanId, TraceId, SpanName, SpanKind, ServiceName, ScopeName, "
                 "ScopeVersion, SpanAttributes, StatusCode, StatusMessage, Events.Name, Events.Attributes, Duration "
                 "FROM otel_traces WHERE SpanName LIKE 'child-%' ORDER BY SpanName")
    assert len(rows) == 5
    for i, row in enumerate(rows):
        span_id, parent_span, tid, name, kind, service, scope, version, attrs, code, msg, evn, eva, dur = row
        assert expected[span_id] == i and parent_span == parent_id and tid == trace_id
        assert (name, kind, service, scope, version) == (f"child-{i}", "Internal", f"svc-{transport}", "vllm-test",
                                                          "0.9")
        assert attrs == {"i": str(i), "ok": "true" if i % 2 == 0 else "false", "f": "0.5"}
        assert (code, msg) == (("Error", "bad") if i == 4 else ("Unset", ""))
        assert evn == ["tick"] and eva == [{"n": str(i)}] and dur > 0
    assert _rows(c.store, "SELECT SpanKind, ParentSpanId FROM otel_traces WHERE SpanName = 'parent'") == [
        ("Server", "")]
    assert _rows(c.store, "SELECT count() FROM otel_traces_trace_id_ts WHERE TraceId = {t:String}", t=trace_id) \
        == [(1,)]


def test_sdk_metrics_exporter_to_metric_tables(make_collector):
    c = make_collector()
    reader = PeriodicExportingMetricReader(GrpcMetricExporter(endpoint=f"127.0.0.1:{c.grpc_port}", insecure=True),
                                           export_interval_millis=3_600_000)
    mp = MeterProvider(resource=Resource.create({"service.name": "m"}), metric_readers=[reader])
    meter = mp.get_meter("meter", "1")
    meter.create_counter("reqs").add(3, {"model": "a"})
    meter.create_histogram("ttft", unit="s").record(0.5, {"model": "a"})
    meter.create_gauge("kv").set(0.75)
    mp.shutdown()
    assert c.drain(10)
    assert _rows(c.store, "SELECT MetricName, Value, Attributes, IsMonotonic, AggregationTemporality, ServiceName "
                 "FROM otel_metrics_sum") == [("reqs", 3.0, {"model": "a"}, True, 2, "m")]
    assert _rows(c.store, "SELECT MetricName, MetricUnit, Count, Sum, Min, Max FROM otel_metrics_histogram") == [
        ("ttft", "s", 1, 0.5, 0.5, 0.5)]
    assert _rows(c.store, "SELECT MetricName, Value FROM otel_metrics_gauge") == [("kv", 0.75)]


def test_http_json_and_partial_success(make_collector):
    c = make_collector()
    url = f"http://127.0.0.1:{c.http_port}/v1/traces"
    doc = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "j"}}]},
                              "scopeSpans": [{"scope": {"name": "s"}, "spans": [
                                  {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                                   "name": "json-span", "kind": 2, "startTimeUnixNano": "1700000000000000000",
                                   "endTimeUnixNano": "1700000000000000500",
                                   "attributes": [{"key": "n", "value": {"intValue": "5"}}]},
                                  {"traceId": "zz", "spanId": "eee19b7ec3c1b175", "name": "bad-id",
                                   "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}
    r = httpx.post(url, content=json.dumps(doc), headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    body = r.json()
    assert body["partialSuccess"]["rejectedSpans"] == "1"
    assert "trace_id must be 16" in body["partialSuccess"]["errorMessage"]
    assert c.drain(10)
    assert _rows(c.store, "SELECT TraceId, SpanId, SpanName, SpanKind, Duration, SpanAttributes FROM otel_traces") \
        == [("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "json-span", "Server", 500, {"n": "5"})]


def test_malformed_bodies_get_invalid_argument_and_400(make_collector):
    c = make_collector()
    with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
        call = ch.unary_unary(TRACE_EXPORT)
        with pytest.raises(grpc.RpcError) as info:
            call(b"\x0a\xff\xff\xff\xff\x0f", timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        ok = ExportTraceServiceResponse.FromString(call(make_request([make_span()]).SerializeToString(), timeout=5))
        assert not ok.HasField("partial_success")
    base = f"http://127.0.0.1:{c.http_port}"
    assert httpx.post(base + "/v1/traces", content=b"\x0a\xff",
                      headers={"Content-Type": "application/x-protobuf"}).status_code == 400
    assert httpx.post(base + "/v1/traces", content=b"{not json",
                      headers={"Content-Type": "application/json"}).status_code == 400
    assert httpx.post(base + "/v1/traces", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert httpx.post(base + "/v1/nope", content=b"").status_code == 404
    assert httpx.get(base + "/v1/traces").status_code == 405
    m = httpx.get(f"http://127.0.0.1:{c.api_port}/metrics").text
    assert 'vllm_otel_collector_malformed_requests_total{signal="traces"} 3.0' in m
    assert 'vllm_otel_collector_accepted_total{signal="traces"} 1.0' in m


def test_processor_periodic_and_route_hooks(make_collector):
    seen = []

    class CountByName:
        def process(self, traces):
            seen.append(len(traces["SpanId"]))
            return [("hook_rows", {"SpanName": list(traces["SpanName"]), "Duration": list(traces["Duration"])})]

    ticks = []
    c = make_collector(processors=[CountByName()], periodic=[(0.1, lambda store, now: ticks.append((store, now)))],
                       routes={"/api/v1/echo": lambda store, q: (200, {"db": store.database, "q": q})})
    c.store.command("CREATE TABLE hook_rows (SpanName String, Duration UInt64) ENGINE = MergeTree ORDER BY SpanName")
    with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
        ch.unary_unary(TRACE_EXPORT)(make_request([make_span("a", duration=7), make_span("b", duration=9)])
                                     .SerializeToString(), timeout=5)
    assert c.drain(10)
    assert sum(seen) == 2
    assert _rows(c.store, "SELECT SpanName, Duration FROM hook_rows ORDER BY SpanName") == [("a", 7), ("b", 9)]
    deadline = time.time() + 5
    while not ticks and time.time() < deadline:
        time.sleep(0.05)
    assert ticks and ticks[0][0] is c.store and abs(ticks[0][1] - time.time()) < 5
    r = httpx.get(f"http://127.0.0.1:{c.api_port}/api/v1/echo?x=1")
    assert r.json() == {"db": c.store.database, "q": {"x": "1"}}
    api = f"http://127.0.0.1:{c.api_port}"
    assert httpx.get(api + "/healthz").json() == {"status": "ok"}
    assert httpx.get(api + "/readyz").json()["ready"] is True
    assert httpx.get(api + "/api/v1/unknown").status_code == 404


def test_port_in_use_is_one_line_error(make_collector):
    c = make_collector()
    with pytest.raises(UserError, match=rf"port {c.grpc_port} is already in use"):
        make_collector(grpc_listen=f"127.0.0.1:{c.grpc_port}")
    with pytest.raises(UserError, match=rf"port {c.api_port} is already in use"):
        make_collector(api_listen=f"127.0.0.1:{c.api_port}")


def test_gzip_http_body_and_spool_full_pushback(make_collector):
    import gzip

    from vllm_otel_collector.store import Store

    c = make_collector(spool={"fsync": False, "max_bytes": 3000}, retry_max_wait_s=0.2)
    url = f"http://127.0.0.1:{c.http_port}/v1/traces"
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    body = make_request([make_span("zipped")]).SerializeToString()
    assert httpx.post(url, content=gzip.compress(body), headers=headers).status_code == 200
    assert httpx.post(url, content=b"not gzip", headers=headers).status_code == 400
    assert c.drain(10)
    Store(c.config.dsn, database=c.config.database).command("DETACH TABLE otel_traces")  # store down
    statuses = []
    for i in range(40):
        r = httpx.post(url, content=make_request([make_span(f"s{i}", note="x" * 200)]).SerializeToString(),
                       headers={"Content-Type": "application/x-protobuf"})
        statuses.append(r.status_code)
        if r.status_code == 503:
            assert r.headers["Retry-After"] == "5" and "spool full" in r.text
            break
    assert statuses[-1] == 503 and set(statuses[:-1]) == {200}
    Store(c.config.dsn, database=c.config.database).command("ATTACH TABLE otel_traces")
    assert c.drain(20)
    names = {r[0] for r in c.store.query("SELECT SpanName FROM otel_traces").result_rows}
    assert names == {"zipped"} | {f"s{i}" for i in range(len(statuses) - 1)}


def test_http_json_metrics(make_collector):
    c = make_collector()
    doc = {"resourceMetrics": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "jm"}}]},
                                "scopeMetrics": [{"scope": {"name": "s"}, "metrics": [
                                    {"name": "kv_usage", "unit": "1", "gauge": {"dataPoints": [
                                        {"asDouble": 0.5, "timeUnixNano": "1700000000000000000",
                                         "attributes": [{"key": "engine", "value": {"intValue": "0"}}],
                                         "exemplars": [{"asDouble": 0.5, "timeUnixNano": "1700000000000000000",
                                                        "traceId": "5b8efff798038103d269b633813fc60c",
                                                        "spanId": "eee19b7ec3c1b174"}]}]}},
                                    {"name": "no_time", "gauge": {"dataPoints": [{"asInt": "1"}]}}]}]}]}
    r = httpx.post(f"http://127.0.0.1:{c.http_port}/v1/metrics", content=json.dumps(doc),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedDataPoints"] == "1"
    assert c.drain(10)
    assert _rows(c.store, "SELECT ServiceName, MetricName, MetricUnit, Value, Attributes, toUnixTimestamp64Nano(TimeUnix), "
                 "Exemplars.TraceId, Exemplars.SpanId FROM otel_metrics_gauge") == [
        ("jm", "kv_usage", "1", 0.5, {"engine": "0"}, 1_700_000_000_000_000_000,
         ["5b8efff798038103d269b633813fc60c"], ["eee19b7ec3c1b174"])]
