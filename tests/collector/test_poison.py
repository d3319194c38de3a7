"""Issue #12 item 1 and the writer's dead letters: no single request can stop the collector.

Each value outside the validation table (otlp/validation.py) rejects just its span/point with a partial_success
message (on the old code these were answered 200, then the writer retried the batch forever and every later request
was acknowledged but never stored). A request ClickHouse refuses for good goes to the dead letters, the rest of its
batch is stored, and the dead letter can be listed and replayed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import grpc
import httpx

from collector.helpers import TRACE_EXPORT, make_request, make_span
from vllm_otel_collector.otlp.validation import TIME_NS_MAX
from vllm_otel_collector.receivers.consumer import TRACES
from vllm_otel_collector.store import Store

T0 = 1_700_000_000_000_000_000
TID, SID = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b17"


def _span(n: int, start=T0, end=T0 + 500, events=()) -> dict:
    return {"traceId": TID, "spanId": f"{SID}{n}", "name": f"s{n}", "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end), "events": [{"timeUnixNano": str(t), "name": "e"} for t in events]}


def _post(c, path: str, doc: dict) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{c.http_port}{path}", content=json.dumps(doc),
                      headers={"Content-Type": "application/json"}, timeout=10)


def _stored_soon(c, sql: str, expected, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while True:
        got = c.store.query(sql).result_rows
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_span_times_beyond_int64_reject_only_those_spans(make_collector):
    c = make_collector()
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
        _span(1), _span(2, start=2**63, end=2**63), _span(3, end=2**64 - 1), _span(4, events=[T0, 2**63]),
        _span(5, start=TIME_NS_MAX - 1, end=TIME_NS_MAX, events=[TIME_NS_MAX])]}]}]}
    r = _post(c, "/v1/traces", doc)
    assert r.status_code == 200
    part = r.json()["partialSuccess"]
    assert part["rejectedSpans"] == "3"
    assert part["errorMessage"] == (
        "span 's2': start_time_unix_nano = 9223372036854775808 is outside 0..2^63-1 ns (DateTime64(9)); "
        "span 's3': end_time_unix_nano = 18446744073709551615 is outside 0..2^63-1 ns (DateTime64(9)); "
        "span 's4': event time_unix_nano = 9223372036854775808 is outside 0..2^63-1 ns (DateTime64(9))")
    r2 = _post(c, "/v1/traces", {"resourceSpans": [{"scopeSpans": [{"spans": [_span(6)]}]}]})
    assert r2.status_code == 200 and "partialSuccess" not in r2.json()
    assert _stored_soon(c, "SELECT SpanName, toUnixTimestamp64Nano(Timestamp), Duration FROM otel_traces "
                           "ORDER BY SpanName", [("s1", T0, 500), ("s5", TIME_NS_MAX - 1, 1), ("s6", T0, 500)]) \
        == [("s1", T0, 500), ("s5", TIME_NS_MAX - 1, 1), ("s6", T0, 500)]
    assert c.readiness()[0]


def test_grpc_protobuf_out_of_range_span_takes_the_python_path_and_is_rejected(make_collector):
    c = make_collector()
    bad = make_span("bad", start=2**63, duration=0)
    ok = make_span("ok")
    with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
        resp = ch.unary_unary(TRACE_EXPORT, response_deserializer=TRACES.response_type.FromString)(
            make_request([bad, ok]).SerializeToString(), timeout=5)
    assert resp.partial_success.rejected_spans == 1
    assert "start_time_unix_nano = 9223372036854775808 is outside" in resp.partial_success.error_message
    assert _stored_soon(c, "SELECT SpanName FROM otel_traces", [("ok",)]) == [("ok",)]
    m = c.metrics.render().decode()
    assert 'vllm_otel_collector_trace_requests_total{path="python"} 1.0' in m
    assert 'vllm_otel_collector_rejected_total{signal="traces"} 1.0' in m


def test_metric_point_times_and_exemplars_beyond_range_reject_those_points(make_collector):
    c = make_collector()

    def point(t=T0, start=0, ex_t=T0, ex_span="eee19b7ec3c1b174", v=1.0):
        return {"asDouble": v, "timeUnixNano": str(t), "startTimeUnixNano": str(start),
                "exemplars": [{"asDouble": v, "timeUnixNano": str(ex_t), "traceId": TID, "spanId": ex_span}]}

    doc = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "g", "gauge": {"dataPoints": [point(v=1.0), point(t=2**63, v=2.0), point(start=2**64 - 1, v=3.0),
                                               point(ex_t=2**63, v=4.0), point(ex_span="ee", v=5.0)]}},
        {"name": "h", "histogram": {"dataPoints": [
            {"count": "1", "sum": 1.0, "bucketCounts": ["1"], "explicitBounds": [], "timeUnixNano": str(2**63)}]}},
    ]}]}]}
    r = _post(c, "/v1/metrics", doc)
    assert r.status_code == 200
    part = r.json()["partialSuccess"]
    assert part["rejectedDataPoints"] == "5"
    assert part["errorMessage"] == (
        "metric 'g': data point time_unix_nano = 9223372036854775808 is outside 0..2^63-1 ns (DateTime64(9)); "
        "metric 'g': data point start_time_unix_nano = 18446744073709551615 is outside 0..2^63-1 ns (DateTime64(9)); "
        "metric 'g': data point exemplar time_unix_nano = 9223372036854775808 is outside 0..2^63-1 ns "
        "(DateTime64(9)); metric 'g': data point exemplar ids must be empty or 16/8 bytes (got 16/1); "
        "metric 'h': data point time_unix_nano = 9223372036854775808 is outside 0..2^63-1 ns (DateTime64(9))")
    assert _post(c, "/v1/metrics", {"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "after", "gauge": {"dataPoints": [point(v=9.0)]}}]}]}]}).status_code == 200
    assert _stored_soon(c, "SELECT MetricName, Value FROM otel_metrics_gauge ORDER BY Value",
                        [("g", 1.0), ("after", 9.0)]) == [("g", 1.0), ("after", 9.0)]
    assert c.store.query("SELECT count() FROM otel_metrics_histogram").result_rows == [(0,)]


def test_a_request_clickhouse_refuses_for_good_is_dead_lettered_and_replayable(make_collector, tmp_path):
    c = make_collector(batch_rows=100_000, flush_interval_s=0.5)
    outsider = Store(c.config.dsn, database=c.config.database)
    outsider.command("ALTER TABLE otel_traces ADD CONSTRAINT no_poison CHECK SpanName != 'poison'")
    bodies = [make_request([make_span("a1"), make_span("a2")]), make_request([make_span("poison"), make_span("p2")]),
              make_request([make_span("c1")])]
    for b in bodies:  # one batch: all three within the flush interval
        c.pipeline.consume(TRACES, b.SerializeToString())
    assert c.drain(30)
    assert sorted(r[0] for r in c.store.query("SELECT SpanName FROM otel_traces").result_rows) == ["a1", "a2", "c1"]
    m = c.metrics.render().decode()
    assert 'vllm_otel_collector_dead_lettered_total{signal="traces"} 2.0' in m
    assert c.readiness()[0]
    after = make_request([make_span("after")])
    c.pipeline.consume(TRACES, after.SerializeToString())
    assert _stored_soon(c, "SELECT count() FROM otel_traces WHERE SpanName = 'after'", [(1,)]) == [(1,)]
    data_dir = str(c.config.data_dir)
    cli = [sys.executable, "-m", "vllm_otel_inference.cli", "dead-letters", "--data-dir", data_dir]
    listed = json.loads(subprocess.run(cli + ["--json"], capture_output=True, text=True, check=True).stdout)
    assert [(x["signal"], x["table"]) for x in listed] == [("traces", "otel_traces")]
    assert "VIOLATED_CONSTRAINT" in listed[0]["error"]
    busy = subprocess.run(cli + ["--replay"], capture_output=True, text=True)
    assert busy.returncode == 2 and "in use by another collector" in busy.stderr  # the running collector holds it
    c.stop()
    outsider.command("ALTER TABLE otel_traces DROP CONSTRAINT no_poison")
    done = subprocess.run(cli + ["--replay"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1 dead letter(s) moved back into the spool; the next collector start writes them"
    assert subprocess.run(cli, capture_output=True, text=True, check=True).stdout.startswith("no dead letters in")
    again = make_collector(data_dir=data_dir, database=c.config.database)
    assert again.drain(30)
    assert sorted(r[0] for r in again.store.query("SELECT SpanName FROM otel_traces").result_rows) == \
        ["a1", "a2", "after", "c1", "p2", "poison"]


def test_readyz_not_ready_while_the_writer_is_stuck_and_stop_is_bounded(make_collector):
    c = make_collector(shutdown_timeout_s=1.0, retry_max_wait_s=0.2)
    outsider = Store(c.config.dsn, database=c.config.database)
    outsider.command("DETACH TABLE otel_traces")  # a real, transient store failure
    c.pipeline.consume(TRACES, make_request([make_span("waits")]).SerializeToString())
    deadline = time.monotonic() + 10
    while c.readiness()[0] and time.monotonic() < deadline:
        time.sleep(0.1)
    ready, detail = c.readiness()
    assert not ready and detail["reason"].startswith("writer retrying for ") and "otel_traces" in detail["reason"]
    r = httpx.get(f"http://127.0.0.1:{c.api_port}/readyz")
    assert r.status_code == 503 and r.json()["reason"].startswith("writer retrying")
    started = time.monotonic()
    assert c.stop() is False  # the store stayed down: the request stays spooled
    assert time.monotonic() - started < 10
    assert [p.suffix for p in (c.config.data_dir / "spool").iterdir() if p.suffix == ".traces"] == [".traces"]
    outsider.command("ATTACH TABLE otel_traces")
    again = make_collector(data_dir=c.config.data_dir, database=c.config.database)
    assert again.drain(30)
    assert again.store.query("SELECT SpanName FROM otel_traces").result_rows == [("waits",)]
    assert again.readiness()[0]


def test_c_and_python_paths_share_the_time_range_of_the_validation_table():
    from vllm_otel_collector.otlp import native
    from vllm_otel_collector.otlp.traces import traces_from_bytes

    edge = make_request([make_span("edge", start=TIME_NS_MAX - 1, duration=1)]).SerializeToString()
    fast = native.convert_traces_fast(edge)
    assert fast is not None and fast.rows == 1  # the C path takes the largest storable time
    assert fast.columns_of([0]) == traces_from_bytes(edge).columns
    assert traces_from_bytes(edge).columns["Timestamp"] == [TIME_NS_MAX - 1]
    for span in (make_span("start", start=2**63, duration=0), make_span("end", start=0, duration=2**63)):
        body = make_request([span]).SerializeToString()
        assert native.convert_traces_fast(body) is None  # declined: the Python path rejects it
        assert (traces_from_bytes(body).rows, traces_from_bytes(body).rejected) == (0, 1)
    ev = make_span("ev")
    ev.events.add(time_unix_nano=2**63, name="late")
    body = make_request([ev]).SerializeToString()
    assert native.convert_traces_fast(body) is None and traces_from_bytes(body).rejected == 1


def test_a_poison_request_left_in_the_spool_by_an_older_collector_is_replayed_without_sticking(make_collector,
                                                                                               tmp_path):
    from vllm_otel_collector.pipeline.spool import Spool

    data_dir = tmp_path / "old-run"
    spool = Spool(data_dir / "spool", fsync=False)  # what the old code acknowledged and spooled as is
    spool.append("traces", make_request([make_span("late", start=2**63, duration=0), make_span("kept")])
                 .SerializeToString())
    spool.close()
    c = make_collector(data_dir=data_dir)
    assert c.drain(30)
    assert c.store.query("SELECT SpanName FROM otel_traces").result_rows == [("kept",)]
    assert not [p for p in (data_dir / "spool").iterdir() if p.suffix in (".traces", ".batch")]
    assert c.readiness()[0]
