"""The telemetry child's side of the pipe (#13; handoff/child.py, link.py, wire.py), without vLLM: what crosses the pipe (marshal of
the values the server reads from vLLM's objects, engine records) is built into exactly the spans and metric points that
in-process writing builds from the same values — for boundary values too — and a torn message never stops the child.
Also the link itself: a real child process, flush confirmations, EOF = exit, a killed child counted."""

from __future__ import annotations

import marshal
import math
import os
import signal
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind

from conftest import new_sdk, points_of, wire_records  # noqa: E402  (tests/instrumentation is on sys.path)
from opentelemetry.instrumentation.vllm import safety
from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.engine.aggregator import EngineAggregator
from opentelemetry.instrumentation.vllm.engine.table import EngineInfo
from opentelemetry.instrumentation.vllm.handoff import child as child_process
from opentelemetry.instrumentation.vllm.handoff import link as handoff_link
from opentelemetry.instrumentation.vllm.handoff import wire
from opentelemetry.instrumentation.vllm.request import emit as record
from opentelemetry.instrumentation.vllm.request.instruments import RequestInstruments
from opentelemetry.instrumentation.vllm.settings import Settings

@pytest.fixture(autouse=True)
def _restore_error_counter():
    """:class:`handoff.child.Child` points the process-wide hook-error counter at its own meter (as in the child)."""
    saved = safety.error_counter()
    yield
    safety.set_error_counter(saved)


FLOATS = st.one_of(st.sampled_from([0.0, -0.0, 1e-9, -1.0, math.inf, -math.inf, math.nan, 1.7976931348623157e308]),
                   st.floats(allow_nan=True, allow_infinity=True))
INTS = st.one_of(st.sampled_from([0, -1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]), st.integers())
TEXT = st.one_of(st.sampled_from(["", "x" * 100_000, "é\u2028\x00"]), st.text(max_size=50))
OPT_F = st.one_of(st.none(), FLOATS)
OPT_I = st.one_of(st.none(), INTS)


@st.composite
def raw_records(draw) -> tuple:
    """A wire record as the server builds it (wire.request_record): values read from vLLM's objects, any of them
    at a boundary (NaN, ±Inf, huge or negative ints, empty or huge strings, None where vLLM may have none)."""
    stats = st.one_of(st.none(), st.tuples(FLOATS, FLOATS, FLOATS, FLOATS, FLOATS, INTS, OPT_I))
    spec = st.one_of(st.none(), st.tuples(INTS, st.lists(INTS, max_size=4)))
    per_state = st.lists(st.tuples(stats, INTS, spec, st.one_of(st.none(), TEXT)), min_size=1, max_size=3)
    reason = draw(st.sampled_from([sc.FINISH_STOP, sc.FINISH_LENGTH, sc.FINISH_ABORT, sc.FINISH_ERROR,
                                   sc.FINISH_TIMEOUT]))
    raw = (draw(st.sampled_from([sc.OP_CHAT, sc.OP_TEXT_COMPLETION])), draw(TEXT), draw(st.lists(TEXT, max_size=3)),
           reason, draw(st.one_of(st.none(), TEXT)), draw(st.floats(0, 4e9)), draw(st.floats(0, 4e9)), draw(FLOATS),
           draw(OPT_I), draw(OPT_I), draw(st.one_of(st.none(), TEXT)), draw(st.booleans()), draw(OPT_I), draw(OPT_I),
           draw(per_state))
    capture = draw(st.one_of(st.none(), st.tuples(
        OPT_I, st.one_of(st.none(), FLOATS), FLOATS, INTS, INTS, OPT_I, TEXT, st.one_of(st.none(), TEXT),
        st.one_of(st.none(), TEXT), st.booleans(), st.one_of(st.none(), TEXT), st.one_of(st.none(), st.booleans()),
        st.sampled_from([SpanKind.SERVER.value, SpanKind.INTERNAL.value]), st.floats(0, 4e9),
        st.one_of(st.none(), st.tuples(st.one_of(INTS, FLOATS), st.one_of(INTS, FLOATS), FLOATS)))))
    parent = draw(st.one_of(st.none(), st.tuples(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1),
                                                 st.sampled_from([0, 1]), st.booleans(), st.just(""))))
    return (parent, None, capture, raw)


def _sdk():
    n = new_sdk()
    return n.tp, n.mp, n.exporter, n.reader


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _points(reader) -> dict:
    """:func:`points_of` without the process gauges (their values differ between two readings) and the hook-error
    counter (the child counts on its own meter, the in-process writer on the process's)."""
    skip = (sc.METRIC_PROCESS_CPU, sc.METRIC_PROCESS_RSS, sc.METRIC_HOOK_ERRORS)
    return {k: v for k, v in points_of(reader).items() if k[0] not in skip}


def _in_process(rec: tuple):
    """What the server's writer does with a record when it writes in-process (handoff/sink.write_one)."""
    tp, mp, exporter, reader = _sdk()
    parent, plan, summary = wire.read_request(rec)  # raises on a record it cannot read (the child counts it)
    if not record.emit(tp.get_tracer("t"), Settings(), RequestInstruments(mp.get_meter("t")), plan, parent, summary):
        raise ValueError("emit refused it")  # failed part-way (counted): nothing to compare but the child's refusal
    return exporter.get_finished_spans(), _points(reader)


def _through_child(rec: tuple):
    tp, mp, exporter, reader = _sdk()
    child = child_process.Child(tp, mp, os.getpid())
    message = marshal.loads(marshal.dumps((wire.REQUESTS, [rec]), 4))
    child.requests(message[1])
    return exporter.get_finished_spans(), _points(reader), child.written


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rec=raw_records())
def test_child_builds_what_in_process_writing_builds(rec):
    back = marshal.loads(marshal.dumps(rec, 4))
    assert repr(back) == repr(rec)  # marshal carries every value as it is (NaN included)
    try:
        expected_spans, expected_points = _in_process(rec)
    except Exception as exc:  # noqa: BLE001 - whatever cannot be written in-process, the child must survive
        expected_spans, expected_points = None, repr(type(exc))
    spans, points, written = _through_child(rec)
    if expected_spans is None:
        assert written == 0  # the child refused it too, caught and counted (no crash is the property)
        return
    assert written == 1
    assert len(spans) == len(expected_spans)
    for got, want in zip(sorted(spans, key=lambda s: s.name), sorted(expected_spans, key=lambda s: s.name)):
        assert (got.name, got.kind, got.start_time, got.end_time) == (want.name, want.kind, want.start_time,
                                                                       want.end_time)
        if got.name not in (sc.SPAN_QUEUE, sc.SPAN_PREFILL, sc.SPAN_DECODE):  # (phases: the request span's new id)
            assert (got.parent is None) == (want.parent is None)
            assert got.parent is None or (got.parent.trace_id, got.parent.span_id) == (want.parent.trace_id,
                                                                                        want.parent.span_id)
        assert set(got.attributes) == set(want.attributes)
        assert all(_same(got.attributes[k], want.attributes[k]) for k in want.attributes)
        assert [e.name for e in got.events] == [e.name for e in want.events]
        assert got.status.status_code == want.status.status_code
    assert set(points) == set(expected_points)
    for k in points:
        assert all(_same(a, b) for a, b in zip(points[k], expected_points[k])) if isinstance(points[k], tuple) \
            else _same(points[k], expected_points[k])


def test_engine_records_aggregate_in_the_child_as_in_process():
    info = EngineInfo(model="m", engine_indexes=(0, 1), buckets={"inter_token_latency": [0.01, 0.1, 1.0]})
    records = [(sc.METRIC_GENERATION_TOKENS, (), 7), (sc.METRIC_RUNNING, (), 3),
               (sc.METRIC_INTER_TOKEN_LATENCY, (), 0.05), (sc.METRIC_INTER_TOKEN_LATENCY, (), 0.5),
               (sc.METRIC_REQUEST_SUCCESS, ((sc.VLLM_FINISH_REASON, "stop"),), 1),
               (sc.METRIC_GENERATION_TOKENS, (), math.nan), (sc.METRIC_PROMPT_TOKENS, (), -1),
               (sc.METRIC_GENERATION_TOKENS, (), 2**64)]
    _, mp, _, reader = _sdk()
    here = EngineAggregator(start_thread=False)
    here.bind(mp.get_meter("t"))
    here.apply(info, (0, 1), records)
    here.add_dropped(3)
    expected = _points(reader)

    tp2, mp2, _, reader2 = _sdk()
    child = child_process.Child(tp2, mp2, os.getpid())
    msgs = [(wire.ENGINE_INFO, 17, (info.model, info.buckets)),
            (wire.ENGINE, [(17, (0, 1), False, records)], 3)]
    for m in msgs:
        m = marshal.loads(marshal.dumps(m, 4))
        child.engine_info(m[1], m[2]) if m[0] == wire.ENGINE_INFO else child.engine_steps(m[1], m[2])
    got = _points(reader2)
    assert got == expected
    assert got[(sc.METRIC_GENERATION_TOKENS, frozenset({sc.REQUEST_MODEL: "m", sc.VLLM_ENGINE_INDEX: 1}.items()))] \
        == 7 + 2**64
    assert got[(sc.METRIC_ENGINE_VALUES_REJECTED, frozenset({sc.VLLM_OTEL_METRIC: sc.METRIC_GENERATION_TOKENS
                                                             }.items()))] == 2  # NaN on each engine
    assert got[(sc.METRIC_ENGINE_STATS_DROPPED, frozenset())] == 3


def test_torn_message_is_counted_and_the_child_keeps_serving():
    tp, mp, exporter, reader = _sdk()
    child = child_process.Child(tp, mp, os.getpid())
    good = marshal.dumps(wire_records(1), 4)
    wrong_shape = marshal.dumps((wire.REQUESTS, [(None, None, None, (1, 2))]), 4)
    frames = [b"\x00garbage", good[:5], wrong_shape, good]

    class Conn:
        sent: list = []

        @staticmethod
        def recv_bytes():
            if not frames:
                raise EOFError
            return frames.pop(0)

        @staticmethod
        def send_bytes(b):
            Conn.sent.append(b)

    assert child_process.serve(Conn, child) == 1  # only the good request; the three bad frames were skipped
    points = points_of(reader)
    assert points[(sc.METRIC_REQUESTS, frozenset({sc.OPERATION_NAME: "chat", sc.PROVIDER_NAME: sc.PROVIDER_VLLM,
                                                 sc.REQUEST_MODEL: "m", sc.RESPONSE_MODEL: "m",
                                                 sc.VLLM_FINISH_REASON: "stop"}.items()))] == 1
    errors = {(dict(k[1])["hook"], dict(k[1])["error.type"]): v for k, v in points.items()
              if k[0] == sc.METRIC_HOOK_ERRORS}
    assert errors == {("export_child.decode", "ValueError"): 1, ("export_child.decode", "EOFError"): 1,
                      ("export_child.request", "ValueError"): 1}


@pytest.fixture()
def quiet_child_env(monkeypatch):
    for k, v in {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}.items():
        monkeypatch.setenv(k, v)


def test_link_starts_lazily_flushes_and_the_child_exits_on_eof(quiet_child_env):
    holder = handoff_link.LinkHolder()
    assert holder.get() is None and holder.link is None  # disabled: nothing started
    holder.enabled = True
    assert holder.link is None and not holder.up()  # enabled but unused: still nothing started
    link = holder.get()
    assert link is not None and holder.up() and link.proc.pid != os.getpid()
    link.send(wire_records(5), 5)
    assert link.unconfirmed == 5
    assert link.flush(30.0) and link.unconfirmed == 0
    pid = link.proc.pid
    holder.close()  # flush + EOF: the child shuts its SDK down and exits by itself
    assert link.proc.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_killed_child_is_counted_once_per_unconfirmed_record(quiet_child_env, monkeypatch):
    counted = []
    monkeypatch.setattr(safety, "_error_counter", type("C", (), {"add": staticmethod(
        lambda n, attrs: counted.append((n, attrs["hook"])))})())
    holder = handoff_link.LinkHolder()
    holder.enabled = True
    link = holder.get()
    assert link.flush(30.0)
    link.send(wire_records(3), 3)
    os.kill(link.proc.pid, signal.SIGKILL)
    link.proc.wait(10)
    deadline = time.monotonic() + 10
    while link.up and time.monotonic() < deadline:  # the next write sees the broken pipe
        try:
            link.send((wire.REQUESTS, []), 0)
        except handoff_link.ExportLost:
            break
    assert not link.up and holder.get() is None  # within the backoff: the caller writes in-process
    assert counted == [(1, "export_process")] * 3  # the 3 records sent after the last confirmed flush
    # after the backoff the next sender starts a new child, counted once; the dead one's pipes are released
    clock = [time.monotonic()]
    monkeypatch.setattr(handoff_link.time, "monotonic", lambda: clock[0])
    clock[0] += handoff_link.restart_delay_s(holder._deaths) - 0.01
    assert holder.get() is None and holder.restarts == 0
    clock[0] += 0.02
    new = holder.get()
    assert new is not None and new is not link and new.proc.pid != link.proc.pid and holder.restarts == 1
    assert counted[3:] == [(1, "export_process.restart")] and link._send.closed and link._recv.closed
    assert new.flush(30.0)  # the new child answers
    holder.close()


def test_restart_backoff_doubles_for_short_lived_children_up_to_a_minute():
    assert [handoff_link.restart_delay_s(n) for n in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert handoff_link.restart_delay_s(-1) == 1


def test_child_environment_drops_only_the_auto_instrumentation_sitecustomize():
    import opentelemetry.instrumentation.auto_instrumentation as auto

    site = os.path.dirname(auto.__file__)
    env = handoff_link.child_environment({"PYTHONPATH": os.pathsep.join(["/opt/a", site, site + "/", "/opt/b"]),
                                            "OTEL_SERVICE_NAME": "svc"})
    assert env == {"PYTHONPATH": os.pathsep.join(["/opt/a", "/opt/b"]), "OTEL_SERVICE_NAME": "svc"}
    assert "PYTHONPATH" not in handoff_link.child_environment({"PYTHONPATH": site})
