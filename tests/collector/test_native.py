"""The C hot path (native.py + _otlp_native.c) against the reference converter (convert.py), through real chDB.

The two paths must store identical rows; the C path must decline (→ Python path) every request the reference would
reject spans of or truncate; processors get the rows they declared interest in.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from collector.helpers import TRACE_EXPORT, make_request, make_span
from vllm_otel_collector.otlp import native
from vllm_otel_collector.otlp.traces import Limits, traces_from_bytes
from vllm_otel_collector.otlp.native import SpanInterest, convert_traces_fast
from vllm_otel_collector.store.testing import drop_store, fresh_store

AV = common_pb2.AnyValue


def test_extension_is_built():
    assert native.AVAILABLE, ("vllm_otel_collector.otlp._otlp_native is not importable: install a C compiler and Python "
                              "headers (make toolchain) and reinstall; the collector is on its slow Python path")


@pytest.fixture(scope="module")
def cmp_store():
    s = fresh_store("native")
    for t in ("via_c", "via_py"):
        s.command(f"CREATE TABLE {t} ENGINE = Memory AS SELECT * FROM otel_traces WHERE 0")
    yield s
    drop_store(s)


def _rows(store, table: str) -> list[str]:
    # toString of the whole row keeps DateTime64 nanoseconds and map order exact
    return [r[0] for r in store.query(f"SELECT toString(tuple(*)) AS r FROM {table} ORDER BY r").result_rows]


def compare(store, body: bytes, limits: Limits = Limits()):
    """Convert ``body`` both ways; when C takes it, insert both results and assert identical rows. Returns the C
    batch (or None) and the reference batch."""
    fast = convert_traces_fast(body, limits)
    ref = traces_from_bytes(body, limits)
    if fast is not None:
        assert ref.rejected == 0 and ref.truncated == 0, "C accepted a request the reference rejects or truncates"
        assert fast.rows == ref.rows
        for t in ("via_c", "via_py"):
            store.command(f"TRUNCATE TABLE {t}")
        store.insert_native("via_c", fast.block, fast.rows)
        store.insert("via_py", ref.columns)
        assert _rows(store, "via_c") == _rows(store, "via_py")
    return fast, ref


# -- generated requests ------------------------------------------------------------------------------------------------
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
doubles = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, -0.0, 1e-7, 1.5e-7, 1e16, 1e20, 1e21, 1.5e300, 0.1, 3.0, 2.5, -7.0]))
scalars = st.one_of(
    texts.map(lambda s: AV(string_value=s)),
    st.integers(-2**63, 2**63 - 1).map(lambda i: AV(int_value=i)),
    doubles.map(lambda d: AV(double_value=d)),
    st.booleans().map(lambda b: AV(bool_value=b)),
    st.binary(max_size=10).map(lambda b: AV(bytes_value=b)),
    st.just(AV()),
)
finite_scalars = st.one_of(
    texts.map(lambda s: AV(string_value=s)), st.integers(-2**63, 2**63 - 1).map(lambda i: AV(int_value=i)),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda d: AV(double_value=d)),
    st.booleans().map(lambda b: AV(bool_value=b)), st.binary(max_size=10).map(lambda b: AV(bytes_value=b)),
    st.just(AV()))
arrays = st.lists(finite_scalars, max_size=4).map(lambda vs: AV(array_value=common_pb2.ArrayValue(values=vs)))
plain_values = st.one_of(scalars, arrays)
odd_values = st.one_of(  # the C path declines these: the reference stringifies them
    # a non-finite double inside an array: Go's json.Marshal fails, the exporter (and we) store ''
    st.lists(st.sampled_from([math.nan, math.inf, -math.inf]).map(lambda d: AV(double_value=d)), min_size=1,
             max_size=2).map(lambda vs: AV(array_value=common_pb2.ArrayValue(values=vs))),
    st.lists(st.tuples(texts, scalars), max_size=3).map(lambda kvs: AV(kvlist_value=common_pb2.KeyValueList(
        values=[common_pb2.KeyValue(key=k, value=v) for k, v in kvs]))),
    arrays.map(lambda a: AV(array_value=common_pb2.ArrayValue(values=[a]))),
)


def attr_lists(values, unique: bool):
    kv = st.tuples(texts, values)
    lists = st.lists(kv, max_size=5, unique_by=(lambda t: t[0]) if unique else None)
    return lists.map(lambda kvs: [common_pb2.KeyValue(key=k, value=v) for k, v in kvs])


ids16 = st.binary(min_size=16, max_size=16).filter(any)
ids8 = st.binary(min_size=8, max_size=8).filter(any)


@st.composite
def spans(draw, values, unique=True, valid=True):
    if valid is None:  # mostly valid spans, so that whole requests still reach the C path
        valid = draw(st.sampled_from([True, True, True, True, False]))
    start = draw(st.integers(0, 2**62))
    end = max(0, start + draw(st.integers(0 if valid else -5, 10**12)))
    span = trace_pb2.Span(
        trace_id=draw(ids16 if valid else st.binary(max_size=17)), span_id=draw(ids8 if valid else st.binary(max_size=9)),
        parent_span_id=draw(st.sampled_from([b""]) | ids8), name=draw(texts), trace_state=draw(texts),
        kind=draw(st.integers(0, 5 if valid else 7)), start_time_unix_nano=start, end_time_unix_nano=end)
    span.attributes.extend(draw(attr_lists(values, unique)))
    for _ in range(draw(st.integers(0, 2))):
        ev = span.events.add(time_unix_nano=draw(st.integers(0, 2**62)), name=draw(texts))
        ev.attributes.extend(draw(attr_lists(values, unique)))
    for _ in range(draw(st.integers(0, 2))):
        link = span.links.add(trace_id=draw(st.sampled_from([b""]) | ids16), span_id=draw(st.sampled_from([b""]) | ids8),
                              trace_state=draw(texts))
        link.attributes.extend(draw(attr_lists(values, unique)))
    span.status.code = draw(st.integers(0, 2 if valid else 4))
    span.status.message = draw(texts)
    return span


@st.composite
def requests(draw, values=plain_values, unique=True, valid=True):
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        rs = req.resource_spans.add()
        attrs = draw(attr_lists(values, unique))
        if draw(st.booleans()):
            attrs = [kv for kv in attrs if kv.key != "service.name"] if unique else attrs
            attrs.append(common_pb2.KeyValue(key="service.name", value=AV(string_value=draw(texts))))
        rs.resource.attributes.extend(attrs)
        for _ in range(draw(st.integers(1, 2))):
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = draw(texts), draw(texts)
            ss.spans.extend(draw(st.lists(spans(values, unique, valid), min_size=1, max_size=3)))
    return req


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=requests())
def test_valid_requests_take_the_c_path_with_identical_rows(cmp_store, req):
    fast, ref = compare(cmp_store, req.SerializeToString())
    assert fast is not None, "a valid request without rare value types must take the C path"
    assert fast.rows == ref.rows == sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=requests(values=st.one_of(plain_values, plain_values, odd_values), unique=False, valid=None),
       limits=st.sampled_from([Limits(), Limits(max_value_chars=3, max_attributes=2, max_events=1, max_links=1)]))
def test_any_request_gives_identical_rows_or_takes_the_python_path(cmp_store, req, limits):
    compare(cmp_store, req.SerializeToString(), limits)


# -- each reason to decline ----------------------------------------------------------------------------------------------
def _patched(span: trace_pb2.Span, marker: bytes, replacement: bytes) -> bytes:
    body = make_request([make_span("ok"), span]).SerializeToString()
    assert body.count(marker) == 1 and len(marker) == len(replacement)
    return body.replace(marker, replacement)


@pytest.mark.parametrize("case", ["bad_utf8_value", "bad_utf8_name", "rejected_span", "long_value", "many_attrs",
                                  "duplicate_key", "kvlist", "nested_array", "end_before_start", "unknown_kind"])
def test_declines_what_the_reference_must_handle(cmp_store, case):
    limits = Limits(max_value_chars=8, max_attributes=3)
    span = make_span("s", a="x")
    if case == "bad_utf8_value":
        body = _patched(make_span("s", a="MARK"), b"MARK", b"\xffARK")
    elif case == "bad_utf8_name":
        body = _patched(make_span("NAME1"), b"NAME1", b"NAM\xc0\x80")
    elif case == "rejected_span":
        body = make_request([make_span("ok"), make_span("bad", trace_id=b"\x01" * 8)]).SerializeToString()
    else:
        if case == "long_value":
            span = make_span("s", a="123456789")
        elif case == "many_attrs":
            span = make_span("s", a=1, b=2, c=3, d=4)
        elif case == "duplicate_key":
            span.attributes.add(key="a", value=AV(string_value="y"))
        elif case == "kvlist":
            span.attributes.add(key="m", value=AV(kvlist_value=common_pb2.KeyValueList()))
        elif case == "nested_array":
            inner = AV(array_value=common_pb2.ArrayValue(values=[AV(int_value=1)]))
            span.attributes.add(key="n", value=AV(array_value=common_pb2.ArrayValue(values=[inner])))
        elif case == "end_before_start":
            span.end_time_unix_nano = span.start_time_unix_nano - 1
        elif case == "unknown_kind":
            span.kind = 9
        body = make_request([make_span("ok"), span]).SerializeToString()
    fast, ref = compare(cmp_store, body, limits)
    assert fast is None
    expected = {"bad_utf8_value": (1, 0), "bad_utf8_name": (1, 0), "rejected_span": (1, 0), "long_value": (0, 1),
                "many_attrs": (0, 1), "duplicate_key": (0, 0), "kvlist": (0, 0), "nested_array": (0, 0),
                "end_before_start": (1, 0), "unknown_kind": (1, 0)}[case]
    assert (ref.rejected, ref.truncated) == expected
    assert ref.rows == 2 - ref.rejected


def test_merged_submessages_are_left_to_the_reference():
    """Protobuf merges a singular message field sent twice (two array_value fields → one array of both): the C parser
    declines instead of keeping only the last one, and the reference stores the merged value."""
    from vllm_otel_collector.otlp.wire import encode_field as ld

    arrays = [common_pb2.ArrayValue(values=[AV(string_value=v)]).SerializeToString() for v in ("one", "two")]
    key_value = ld(1, b"a") + ld(2, ld(5, arrays[0]) + ld(5, arrays[1]))
    req = make_request([make_span("s")])
    rs, = req.resource_spans
    ss, = rs.scope_spans
    span_bytes = ss.spans[0].SerializeToString() + ld(9, key_value)
    del ss.spans[:]
    ss_bytes = ss.SerializeToString() + ld(2, span_bytes)
    del rs.scope_spans[:]
    body = ld(1, rs.SerializeToString() + ld(2, ss_bytes))
    assert convert_traces_fast(body) is None
    assert traces_from_bytes(body).columns["SpanAttributes"] == [{"a": '["one","two"]'}]


@pytest.mark.parametrize("where", ["span_name", "trace_state", "attribute_key", "string_value", "event_name",
                                   "link_trace_state", "status_message", "scope_name", "scope_schema_url",
                                   "resource_schema_url"])
def test_invalid_utf8_in_any_occurrence_of_a_string_field_is_left_to_the_reference(where):
    """A singular string field sent twice keeps its last occurrence, but the reference parser refuses invalid UTF-8
    in any of them, and in the fields we do not store (schema_url): the C parser declines (found by the mutation
    fuzz: a flipped tag turned a span into a schema_url, and C stored nothing where the reference refused)."""
    from vllm_otel_collector.otlp.wire import encode_field as ld

    bad = b"\xc0\x80"
    span = make_span("s", a="x")
    span.events.add(name="e")
    span.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, trace_state="t")
    span.status.message = "m"
    req = make_request([span])
    rs, = req.resource_spans
    ss, = rs.scope_spans
    sp = ss.spans[0]
    extra_span = b""
    if where == "span_name":
        extra_span = ld(5, bad) + ld(5, b"ok")
    elif where == "trace_state":
        extra_span = ld(3, bad) + ld(3, b"ok")
    elif where == "attribute_key":
        extra_span = ld(9, ld(1, bad) + ld(1, b"k") + ld(2, ld(1, b"v")))
    elif where == "string_value":
        extra_span = ld(9, ld(1, b"k") + ld(2, ld(1, bad) + ld(1, b"v")))
    elif where == "event_name":
        del sp.events[:]
        extra_span = ld(11, b"\x11" + (1).to_bytes(8, "little") + ld(2, bad) + ld(2, b"e"))
    elif where == "link_trace_state":
        del sp.links[:]
        extra_span = ld(13, ld(1, b"\x01" * 16) + ld(2, b"\x02" * 8) + ld(3, bad) + ld(3, b"t"))
    elif where == "status_message":
        sp.ClearField("status")
        extra_span = ld(15, ld(2, bad) + ld(2, b"m"))
    span_bytes = sp.SerializeToString() + extra_span
    del ss.spans[:]
    scope = ss.scope.SerializeToString()
    ss.ClearField("scope")
    if where == "scope_name":
        scope = ld(1, bad) + ld(1, b"scope")
    ss_bytes = ss.SerializeToString() + ld(1, scope) + ld(2, span_bytes)
    if where == "scope_schema_url":
        ss_bytes += ld(3, bad)
    del rs.scope_spans[:]
    rs_bytes = rs.SerializeToString() + ld(2, ss_bytes)
    if where == "resource_schema_url":
        rs_bytes += ld(3, bad)
    body = ld(1, rs_bytes)
    assert convert_traces_fast(body) is None
    try:
        ref = traces_from_bytes(body)
    except ValueError:  # MalformedRequest: refused whole
        return
    assert ref.rejected == 1 and ref.rows == 0
    if where.endswith("schema_url"):  # a valid schema_url keeps the C path
        assert convert_traces_fast(body.replace(bad, b"ok")) is not None


def test_malformed_framing_is_declined_not_raised():
    good = make_request([make_span("ok")]).SerializeToString()
    for body in (good[:-3], b"\x0a\xff\xff\xff\xff\x0f", b"\x08"):
        assert convert_traces_fast(body) is None


@pytest.mark.chdb
def test_value_formats_exact():
    """Values as the contrib exporter stores them (pdata AsString; tests/stockpipe/contrib_exporter.py)."""
    span = make_span("s")
    values = {"d_int": AV(double_value=3.0), "d_frac": AV(double_value=0.1), "d_small": AV(double_value=1e-7),
              "d_big": AV(double_value=1e21), "d_nan": AV(double_value=math.nan), "d_ninf": AV(double_value=-math.inf),
              "d_negzero": AV(double_value=-0.0), "d_tiny_f": AV(double_value=4.0791000174067e-05),
              "i_min": AV(int_value=-2**63), "b": AV(bool_value=False),
              "bytes": AV(bytes_value=b"\x00\xff\x10"), "empty": AV(),
              "arr": AV(array_value=common_pb2.ArrayValue(values=[
                  AV(string_value='q"\\\n\x01é'), AV(double_value=3.0), AV(double_value=2.5e-7), AV(int_value=-1),
                  AV(bool_value=True), AV(bytes_value=b"\xff"), AV()]))}
    for k, v in values.items():
        span.attributes.add(key=k, value=v)
    fast, ref = compare_store_free(make_request([span]).SerializeToString())
    attrs = ref.columns["SpanAttributes"][0]
    assert attrs == {"d_int": "3", "d_frac": "0.1", "d_small": "1e-7", "d_big": "1e+21",
                     "d_nan": "json: unsupported value: NaN", "d_ninf": "json: unsupported value: -Inf",
                     "d_negzero": "-0", "d_tiny_f": "0.000040791000174067", "i_min": str(-2**63), "b": "false",
                     "bytes": "AP8Q", "empty": "", "arr": '["q\\"\\\\\\n\\u0001é",3,2.5e-7,-1,true,"/w==",null]'}
    assert fast is not None
    # a non-finite double inside an array: Go's json.Marshal fails, the exporter stores ''; C leaves it to Python
    inf_span = make_span("s")
    inf_span.attributes.add(key="arr", value=AV(array_value=common_pb2.ArrayValue(values=[AV(double_value=math.inf)])))
    fast, ref = compare_store_free(make_request([inf_span]).SerializeToString())
    assert fast is None and ref.columns["SpanAttributes"][0] == {"arr": ""}


def compare_store_free(body: bytes):
    """As :func:`compare` but the row equality is checked by decoding the C block through chDB in a fresh store."""
    s = fresh_store("native_v")
    try:
        s.command("CREATE TABLE via_c ENGINE = Memory AS SELECT * FROM otel_traces WHERE 0")
        s.command("CREATE TABLE via_py ENGINE = Memory AS SELECT * FROM otel_traces WHERE 0")
        return compare(s, body)
    finally:
        drop_store(s)


def test_timestamps_keep_nanoseconds(cmp_store):
    span = make_span("s", start=1_700_000_000_123_456_789, duration=7)
    span.events.add(time_unix_nano=1_700_000_000_123_456_791, name="e")
    fast, _ = compare(cmp_store, make_request([span]).SerializeToString())
    assert fast is not None
    got = cmp_store.query("SELECT toUnixTimestamp64Nano(Timestamp), Duration, "
                          "arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) FROM via_c").result_rows
    assert got == [(1_700_000_000_123_456_789, 7, [1_700_000_000_123_456_791])]


# -- processors' rows ------------------------------------------------------------------------------------------------------
def test_interest_selects_rows_and_columns_match_the_reference():
    spans_ = [make_span("other", a=1), make_span("chat m", **{"vllm.finish_reason": "stop"}),
              make_span("stt_processing"), make_span("other2"), make_span("chat m", **{"gen_ai.latency.e2e": 0.5})]
    body = make_request(spans_).SerializeToString()
    fast = convert_traces_fast(body, Limits(), (b"gen_ai.latency.e2e", b"vllm.finish_reason"))
    assert fast is not None
    assert fast.keyed_rows == [1, 4]
    assert fast.span_names == {"other": [0], "chat m": [1, 4], "stt_processing": [2], "other2": [3]}
    interest = SpanInterest(frozenset({"vllm.finish_reason"}), span_name=lambda n: n.startswith("stt_"))
    assert fast.rows_for([interest]) == [1, 2, 4]
    assert fast.rows_for(None) == [0, 1, 2, 3, 4]
    ref = traces_from_bytes(body).columns
    sub = fast.columns_of([1, 2, 4])
    assert {k: v for k, v in sub.items()} == {k: [v[i] for i in (1, 2, 4)] for k, v in ref.items()}


def test_pipeline_uses_the_c_path_and_processors_get_their_spans(make_collector):
    import grpc

    seen: list[list[str]] = []

    class Recorder:
        interest = SpanInterest(frozenset({"vllm.finish_reason"}))

        def process(self, traces):
            seen.append(list(traces["SpanName"]))
            return []

    c = make_collector(processors=[Recorder()])
    good = make_request([make_span("a"), make_span("req", **{"vllm.finish_reason": "stop"}), make_span("b")])
    bad = make_request([make_span("c"), make_span("bad", trace_id=b"\x01")])
    with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
        call = ch.unary_unary(TRACE_EXPORT)
        call(good.SerializeToString(), timeout=30)
        call(bad.SerializeToString(), timeout=30)
    assert c.pipeline.drain(30)
    paths = {s.labels["path"]: s.value for m in c.metrics.registry.collect() for s in m.samples
             if s.name == "vllm_otel_collector_trace_requests_total"}
    assert paths == {"native": 1.0, "python": 1.0}
    names = sorted(r[0] for r in c.store.query("SELECT SpanName FROM otel_traces").result_rows)
    assert names == ["a", "b", "c", "req"]
    flat = sorted(n for batch in seen for n in batch)
    assert flat == ["c", "req"]  # the C request's matching span + every span of the Python request


def test_timestamps_beyond_int64_are_declined():
    span = make_span("s")
    span.start_time_unix_nano = 2**63  # beyond DateTime64(9)'s Int64: C declines, the reference decides
    span.end_time_unix_nano = 2**63 + 1
    assert convert_traces_fast(make_request([span]).SerializeToString()) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=requests(), data=st.data())
def test_mutated_bodies_never_crash_and_never_disagree(cmp_store, req, data):
    """The C parser reads bytes from the network: flipped, cut, inserted or deleted bytes must give either None or
    exactly the rows the reference converter stores (compared through chDB)."""
    body = bytearray(req.SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(0, len(body) - 1)))
        if op == "flip" and body:
            body[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del body[pos:]
        elif op == "insert":
            body[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif body:
            del body[pos]
    try:
        traces_from_bytes(bytes(body))
    except ValueError:  # MalformedRequest: the reference refuses the body, so must C
        assert convert_traces_fast(bytes(body)) is None
        return
    fast, ref = compare(cmp_store, bytes(body))
    if fast is not None:
        assert len(fast.name_index) == 4 * fast.rows
