"""Span → row mapping, validation and truncation rules (pure functions, no server)."""

from __future__ import annotations

from opentelemetry.proto.common.v1 import common_pb2

from collector.helpers import make_request, make_span
from vllm_otel_collector.otlp.traces import Limits, traces_from_bytes, value_str


def av(**kw) -> common_pb2.AnyValue:
    return common_pb2.AnyValue(**kw)


def test_value_stringification_matches_exporter():
    assert value_str(av(string_value="x")) == "x"
    assert value_str(av(int_value=-42)) == "-42"
    assert value_str(av(bool_value=True)) == "true"
    assert value_str(av(double_value=1.0)) == "1"
    assert value_str(av(double_value=0.125)) == "0.125"
    assert value_str(av(bytes_value=b"\x00\xff")) == "AP8="
    arr = av(array_value=common_pb2.ArrayValue(values=[av(string_value="stop"), av(int_value=3)]))
    assert value_str(arr) == '["stop",3]'
    kvl = av(kvlist_value=common_pb2.KeyValueList(values=[common_pb2.KeyValue(key="a", value=av(bool_value=False))]))
    assert value_str(kvl) == '{"a":false}'
    assert value_str(av()) == ""


def test_row_mapping_exact():
    tid, sid, pid = bytes(range(1, 17)), bytes(range(1, 9)), bytes(range(9, 17))
    span = make_span("chat m", trace_id=tid, span_id=sid, start=1_700_000_000_123_456_789, duration=2_500,
                     **{"gen_ai.usage.output_tokens": 7, "vllm.ttft": 0.25})
    span.parent_span_id = pid
    span.status.code, span.status.message = 2, "boom"
    ev = span.events.add(time_unix_nano=1_700_000_000_123_457_000, name="first_token")
    ev.attributes.add(key="n", value=av(int_value=1))
    link = span.links.add(trace_id=tid, span_id=pid, trace_state="k=v")
    batch = traces_from_bytes(make_request([span]).SerializeToString())
    row = {k: v[0] for k, v in batch.columns.items()}
    assert batch.rejected == 0 and batch.message() == ""
    assert row["Timestamp"] == 1_700_000_000_123_456_789 and row["Duration"] == 2_500
    assert row["TraceId"] == tid.hex() and row["SpanId"] == sid.hex() and row["ParentSpanId"] == pid.hex()
    assert (row["SpanName"], row["SpanKind"], row["ServiceName"]) == ("chat m", "Server", "svc")
    assert (row["StatusCode"], row["StatusMessage"]) == ("Error", "boom")
    assert (row["ScopeName"], row["ScopeVersion"]) == ("test-scope", "1.2")
    assert row["SpanAttributes"] == {"gen_ai.usage.output_tokens": "7", "vllm.ttft": "0.25"}
    assert row["ResourceAttributes"] == {"service.name": "svc"}
    assert row["Events.Name"] == ["first_token"] and row["Events.Timestamp"] == [1_700_000_000_123_457_000]
    assert row["Events.Attributes"] == [{"n": "1"}]
    assert row["Links.TraceId"] == [tid.hex()] and row["Links.SpanId"] == [pid.hex()]
    assert row["Links.TraceState"] == ["k=v"] and row["Links.Attributes"] == [{}]
    assert link is not None


def test_validation_rejects_bad_spans_and_keeps_good_ones():
    good = make_span("good")
    short_trace = make_span("short", trace_id=b"\x01" * 8)
    zero_span = make_span("zero", span_id=b"\x00" * 8)
    backwards = make_span("back", duration=0)
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1
    bad_kind = make_span("kind")
    bad_kind.kind = 9
    body = make_request([good, short_trace, zero_span, backwards, bad_kind]).SerializeToString()
    batch = traces_from_bytes(body)
    assert batch.columns["SpanName"] == ["good"]
    assert batch.rejected == 4
    msg = batch.message()
    assert "trace_id must be 16" in msg and "span_id must be 8" in msg and "end_time_unix_nano" in msg
    assert "unknown span kind 9" in msg
    # The clean body (what is spooled and forwarded) holds only the accepted span.
    assert traces_from_bytes(batch.clean_body).columns["SpanName"] == ["good"]


def test_invalid_utf8_rejects_only_that_span():
    good = make_request([make_span("good")]).SerializeToString()
    bad_span = make_span("BADNAME").SerializeToString().replace(b"BADNAME", b"BAD\xff\xfeME")
    # Append the bad span to the same ScopeSpans by rebuilding the bytes by hand.
    req = make_request([make_span("good"), make_span("BADNAME")])
    raw = req.SerializeToString().replace(b"BADNAME", b"BAD\xff\xfeME")
    batch = traces_from_bytes(raw)
    assert batch.columns["SpanName"] == ["good"] and batch.rejected == 1
    assert "undecodable span" in batch.message()
    assert good and bad_span


def test_truncation_rules():
    span = make_span("t", big="x" * 50, **{f"k{i}": i for i in range(10)})
    for i in range(5):
        span.events.add(time_unix_nano=span.start_time_unix_nano, name=f"e{i}")
    limits = Limits(max_value_chars=8, max_attributes=4, max_events=2)
    batch = traces_from_bytes(make_request([span]).SerializeToString(), limits)
    attrs = batch.columns["SpanAttributes"][0]
    assert attrs == {"big": "xxxxxxxx", "k0": "0", "k1": "1", "k2": "2"}
    assert batch.columns["Events.Name"][0] == ["e0", "e1"]
    assert batch.rejected == 0 and batch.truncated == 1 and "truncated" in batch.message()


def test_invalid_utf8_inside_span_or_event_attribute_rejects_that_span():
    good = make_span("good", k="fine")
    bad_attr = make_span("bad-attr", k="QQQQ")
    bad_event = make_span("bad-event")
    bad_event.events.add(time_unix_nano=1, name="e").attributes.add(key="x", value=av(string_value="ZZZZ"))
    raw = make_request([good, bad_attr, bad_event]).SerializeToString()
    raw = raw.replace(b"QQQQ", b"Q\xffQQ").replace(b"ZZZZ", b"Z\xfeZZ")
    batch = traces_from_bytes(raw)
    assert batch.columns["SpanName"] == ["good"] and batch.rejected == 2
    assert all(len(v) == 1 for v in batch.columns.values())
    assert batch.columns["SpanAttributes"] == [{"k": "fine"}]
    assert traces_from_bytes(batch.clean_body).columns["SpanName"] == ["good"]
