"""The request rooms without vLLM (fake vLLM state objects with vLLM's field names): the tracker's bookkeeping
(add, siblings, finish, abort, engine death, zombies, eviction, backpressure, flush ordering), the facts (span plan,
parent precedence, the summary's latencies and reasons), the one SDK writer (span, children, event, status,
metrics) and the wire round trip."""

from __future__ import annotations

import marshal
import threading
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from conftest import new_sdk, points_of  # noqa: E402  (tests/instrumentation is on sys.path)
from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.handoff import wire
from opentelemetry.instrumentation.vllm.request.emit import emit
from opentelemetry.instrumentation.vllm.request.facts import (Capture, RequestInfo, RequestSummary, SpanPlan,
                                                              build_plan, parent_of, summarize, to_ns)
from opentelemetry.instrumentation.vllm.request.instruments import RequestInstruments
from opentelemetry.instrumentation.vllm.request.tracker import RequestTracker
from opentelemetry.instrumentation.vllm.settings import Settings

T0 = 1_700_000_000.0


# ---- fakes with vLLM's field names ----------------------------------------------------------------------------------
def _state(rid: str, *, prompt=5, cached=0, generated=4, stats=True, parent=None, external=None):
    st_ = SimpleNamespace(first_token_latency=0.5, queued_ts=100.0, scheduled_ts=100.25, first_token_ts=100.75,
                          last_token_ts=102.25, num_generation_tokens=generated, num_preemptions=1) if stats else None
    return SimpleNamespace(request_id=rid, external_req_id=external or rid, parent_req=parent, prompt_len=prompt,
                           num_cached_tokens=cached, stats=st_, detokenizer=None, is_prefilling=False, queue=object(),
                           spec_decode_metrics=None)


def _request(rid: str, *, n=1, arrival=T0, max_tokens=4):
    sp = SimpleNamespace(max_tokens=max_tokens, temperature=0.5, top_p=0.9, top_k=-1, n=n, seed=7)
    return SimpleNamespace(request_id=rid, external_req_id=rid, arrival_time=arrival, sampling_params=sp,
                           trace_headers=None, lora_request=None)


class RecordingSink:
    """A request sink that records what the tracker hands over (and can push back)."""

    def __init__(self, push_back: bool = False) -> None:
        self.submitted: list[tuple] = []
        self.written: list[tuple] = []
        self.push_back = push_back
        self.markers = 0
        self.closed = False

    def submit(self, item):
        if self.push_back:
            return item
        self.submitted.append(item)
        return None

    def write_one(self, item):
        self.written.append(item)

    def flush_marker(self):
        self.markers += 1
        return None

    def close(self):
        self.closed = True


def _tracker(sink=None, **settings_kw):
    sink = sink or RecordingSink()
    return RequestTracker(Settings(**settings_kw), sink), sink


def _processor(states: dict):
    return SimpleNamespace(request_states=states, tracing_enabled=False, _otel_model="tiny")


# ---- tracker --------------------------------------------------------------------------------------------------------
def test_one_request_from_add_to_finish():
    tracker, sink = _tracker()
    state = _state("r1")
    proc = _processor({"r1": state})
    tracker.on_add(proc, _request("r1"), "hello", None)
    assert tracker.in_flight() == 1 and sink.submitted == []
    tracker.finished(state, "length", SimpleNamespace(iteration_timestamp=T0 + 3))
    assert tracker.in_flight() == 0
    ((entry, end, reason, error_type),) = sink.submitted
    assert (end, reason, error_type) == (T0 + 3, "length", None)
    assert entry.model == "tiny" and entry.operation == sc.OP_TEXT_COMPLETION and entry.capture.prompt is None


def test_parallel_sampling_siblings_share_one_entry_and_end_once():
    tracker, sink = _tracker()
    parent = SimpleNamespace(request_id="p", external_req_id="p", n=2)
    a, b = _state("p_0", parent=parent), _state("p_1", parent=parent)
    proc = _processor({"p_0": a, "p_1": b})
    tracker.on_add(proc, _request("p_0", n=2), None, parent)
    tracker.on_add(proc, _request("p_1", n=2), None, parent)
    assert tracker.in_flight() == 1
    tracker.finish("p_0", "stop", T0 + 1)
    assert sink.submitted == []
    tracker.finish("p_1", "length", T0 + 2)
    ((entry, end, reason, _),) = sink.submitted
    assert entry.reasons == ["stop", "length"] and reason == "length" and end == T0 + 2 and len(entry.states) == 2


def test_abort_and_engine_death():
    tracker, sink = _tracker()
    proc, other = _processor({"a": _state("a"), "b": _state("b")}), _processor({"c": _state("c")})
    for p, rid in ((proc, "a"), (proc, "b"), (other, "c")):
        tracker.on_add(p, _request(rid), None, None)
    tracker.abort(["a"], T0 + 1)
    tracker.fail_all(proc, RuntimeError("engine died"))
    got = {e.key: (reason, err) for e, _, reason, err in sink.submitted}
    assert got == {"a": (sc.FINISH_ABORT, None), "b": (sc.FINISH_ERROR, "RuntimeError")}
    assert tracker.in_flight() == 1  # the other engine's request is untouched


def test_zombies_are_swept_at_their_deadline_and_eviction_bounds_in_flight():
    tracker, sink = _tracker(request_timeout_s=10.0, max_in_flight=2)
    states = {f"r{i}": _state(f"r{i}") for i in range(3)}
    proc = _processor(states)
    for rid in states:
        tracker.on_add(proc, _request(rid), None, None)
    assert tracker.in_flight() == 2  # the oldest was evicted to make room
    assert [(e.key, r, err) for e, _, r, err in sink.submitted] == [("r0", sc.FINISH_TIMEOUT, sc.FINISH_TIMEOUT)]
    import time
    assert tracker.sweep(time.monotonic() + 5) == 0
    assert tracker.sweep(time.monotonic() + 11) == 2 and tracker.in_flight() == 0
    tracker.close()


def test_backpressure_writes_inline_and_flush_queues_a_marker_under_the_lock():
    sink = RecordingSink(push_back=True)
    tracker, _ = _tracker(sink)
    state = _state("r1")
    tracker.on_add(_processor({"r1": state}), _request("r1"), None, None)
    tracker.finish("r1", "stop", T0 + 1)
    assert sink.submitted == [] and len(sink.written) == 1  # the finishing thread wrote it itself
    assert tracker.flush(1.0) and sink.markers == 1
    tracker.close()
    assert sink.closed


def test_serving_labels_name_the_operation_and_model():
    tracker, sink = _tracker()
    state = _state("chatcmpl-1")
    tracker.label("chatcmpl-1", RequestInfo(sc.OP_CHAT, True, "client-name", "chatcmpl-1"))
    tracker.on_add(_processor({"chatcmpl-1": state}), _request("chatcmpl-1"), None, None)
    tracker.finish("chatcmpl-1", "stop", T0 + 1)
    ((entry, *_),) = sink.submitted
    assert (entry.operation, entry.model, entry.capture.info.stream) == (sc.OP_CHAT, "client-name", True)


# ---- facts ----------------------------------------------------------------------------------------------------------
def _capture(**kw):
    base = dict(sampling_params=_request("x").sampling_params, request_id="x", parent_request_id=None, parent_n=None,
                lora_name="adapter", prompt=None, async_engine=True,
                info=RequestInfo(sc.OP_CHAT, True, "m", "chatcmpl-9"), context=None, headers=None,
                kind=SpanKind.SERVER, arrival=T0)
    base.update(kw)
    return Capture(**base)


def test_span_plan_has_the_add_time_attributes():
    plan = build_plan(_capture(), sc.OP_CHAT, "m")
    assert plan == SpanPlan("chat m", to_ns(T0), {
        sc.OPERATION_NAME: "chat", sc.PROVIDER_NAME: sc.PROVIDER_VLLM, sc.REQUEST_MODEL: "m",
        sc.VLLM_REQUEST_ID: "x", sc.VLLM_ENGINE: "async_llm", sc.RESPONSE_ID: "chatcmpl-9", sc.REQUEST_STREAM: True,
        sc.REQUEST_MAX_TOKENS: 4, sc.REQUEST_TEMPERATURE: 0.5, sc.REQUEST_TOP_P: 0.9, sc.REQUEST_TOP_K: -1,
        sc.REQUEST_CHOICE_COUNT: 1, sc.REQUEST_SEED: 7, sc.VLLM_LORA_NAME: "adapter"}, SpanKind.SERVER)


def test_parent_is_the_captured_context_else_the_trace_headers_else_none():
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    from_headers = trace.get_current_span(parent_of(_capture(headers=headers))).get_span_context()
    assert (from_headers.trace_id, from_headers.is_remote) == (0x0af7651916cd43dd8448eb211c80319c, True)
    ctx = TraceContextTextMapPropagator().extract({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    assert parent_of(_capture(context=ctx, headers=headers)) is ctx
    assert parent_of(_capture()) is None


def test_summary_latencies_are_vllms_definitions():
    entry = SimpleNamespace(states=[_state("r", prompt=10, cached=4, generated=4)], reasons=["length"], arrival=T0,
                            operation="chat", model="m", prefill_stats=None)
    s = summarize(entry, T0 + 3, "length", None)
    assert (s.ttft, s.queue, s.prefill, s.decode, s.inference) == (0.5, 0.25, 0.5, 1.5, 2.0)
    assert s.tpot == 0.5  # decode / (4 - 1)
    assert (s.e2e, s.prompt_tokens, s.cached_tokens, s.prompt_computed, s.prompt_local_cache) == (3.0, 10, 4, 6, 4)
    assert T0 <= s.t_scheduled <= s.t_first_token <= s.end == T0 + 3
    timeout = summarize(entry, T0 - 5, sc.FINISH_TIMEOUT, sc.FINISH_TIMEOUT)
    assert (timeout.reason, timeout.reasons, timeout.end, timeout.e2e) == ("timeout", ["timeout"], T0, 0.0)


def test_preemptions_absent_where_vllm_stats_have_no_count():
    """vLLM < 0.30 (compat.py): RequestStateStats has no num_preemptions: the fact is absent, never 0."""
    states = [_state("r"), _state("r2")]
    entry = SimpleNamespace(states=states, reasons=["stop"], arrival=T0, operation="chat", model="m",
                            prefill_stats=None)
    assert summarize(entry, T0 + 3, "stop", None).preemptions == 2
    del states[1].stats.num_preemptions
    s = summarize(entry, T0 + 3, "stop", None)
    assert s.preemptions is None
    n = new_sdk()
    assert emit(n.tracer, Settings(), RequestInstruments(n.meter), build_plan(_capture(), sc.OP_CHAT, "m"), None, s)
    (root,) = [sp for sp in n.exporter.get_finished_spans() if sp.name == "chat m"]
    assert sc.VLLM_NUM_PREEMPTIONS not in root.attributes and root.attributes[sc.USAGE_OUTPUT_TOKENS] == 8


def test_summary_reason_is_the_worst_sibling_reason():
    for reasons, worst in ((["stop", "length"], "length"), (["length", "abort"], "abort"),
                           (["abort", "error"], "error"), (["stop", "stop"], "stop")):
        entry = SimpleNamespace(states=[_state("r")], reasons=reasons, arrival=T0, operation="chat", model="m",
                                prefill_stats=None)
        assert summarize(entry, T0 + 1, reasons[-1], None).reason == worst


# ---- the one writer -------------------------------------------------------------------------------------------------
def _summary(**kw) -> RequestSummary:
    base = dict(operation="chat", model="m", reason="length", reasons=["length"], error_type=None, arrival=T0,
                end=T0 + 3, e2e=3.0, prompt_tokens=10, output_tokens=4, cached_tokens=4, preemptions=1, ttft=0.5,
                tpot=0.5, queue=0.25, prefill=0.5, decode=1.5, inference=2.0, t_scheduled=T0 + 0.25,
                t_first_token=T0 + 0.75, prefill_done=True, prompt_computed=6, prompt_local_cache=4,
                prompt_external_cache=0, response_id="chatcmpl-9")
    base.update(kw)
    return RequestSummary(**base)


def test_emit_writes_the_span_its_phase_children_and_the_metrics():
    n = new_sdk()
    plan = build_plan(_capture(), sc.OP_CHAT, "m")
    assert emit(n.tracer, Settings(), RequestInstruments(n.meter), plan, None, _summary())
    spans = {s.name: s for s in n.exporter.get_finished_spans()}
    root = spans["chat m"]
    assert (root.start_time, root.end_time, root.kind) == (to_ns(T0), to_ns(T0 + 3), SpanKind.SERVER)
    assert [(spans[k].start_time, spans[k].end_time) for k in (sc.SPAN_QUEUE, sc.SPAN_PREFILL, sc.SPAN_DECODE)] == [
        (to_ns(T0), to_ns(T0 + 0.25)), (to_ns(T0 + 0.25), to_ns(T0 + 0.75)), (to_ns(T0 + 0.75), to_ns(T0 + 3))]
    assert all(spans[k].parent.span_id == root.context.span_id for k in (sc.SPAN_QUEUE, sc.SPAN_PREFILL))
    (event,) = root.events
    assert (event.name, event.timestamp) == (sc.EVENT_FIRST_TOKEN, to_ns(T0 + 0.5))
    assert root.attributes[sc.VLLM_TOKENS_PER_SECOND] == 4 / 3 and root.status.status_code == StatusCode.UNSET
    points = points_of(n.reader)
    attrs = frozenset({sc.OPERATION_NAME: "chat", sc.PROVIDER_NAME: sc.PROVIDER_VLLM, sc.REQUEST_MODEL: "m",
                       sc.RESPONSE_MODEL: "m"}.items())
    assert points[(sc.METRIC_TTFT, attrs)][:2] == (1, 0.5)
    assert points[(sc.METRIC_REQUESTS, attrs | {(sc.VLLM_FINISH_REASON, "length")})] == 1


def test_emit_without_a_plan_records_metrics_only_and_a_failure_is_error_status():
    n = new_sdk()
    inst = RequestInstruments(n.meter)
    assert emit(n.tracer, Settings(phase_spans=False), inst, None, None, _summary())
    assert n.exporter.get_finished_spans() == ()
    plan = build_plan(_capture(), sc.OP_CHAT, "m")
    assert emit(n.tracer, Settings(phase_spans=False), inst, plan, None,
                _summary(reason="error", error_type="EngineDeadError"))
    (span,) = n.exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR and span.attributes[sc.ERROR_TYPE] == "EngineDeadError"


def test_emit_never_raises_and_ends_a_started_span(monkeypatch):
    from opentelemetry.instrumentation.vllm.request import emit as emit_module

    n = new_sdk()
    monkeypatch.setattr(emit_module, "record_metrics", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    assert not emit(n.tracer, Settings(), RequestInstruments(n.meter), build_plan(_capture(), "chat", "m"), None,
                    _summary())
    assert len(n.exporter.get_finished_spans()) == 4  # the span and its children ended anyway


# ---- wire -----------------------------------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(trace_id=st.integers(1, 2**128 - 1), span_id=st.integers(1, 2**64 - 1), sampled=st.booleans(),
       remote=st.booleans(), state=st.sampled_from(["", "vendor=a", "a=1,b=2"]), kind=st.sampled_from(list(SpanKind)))
def test_a_request_record_round_trips_through_marshal(trace_id, span_id, sampled, remote, state, kind):
    """What the server reads (wire.request_record) becomes, across marshal, exactly the plan, parent and summary
    in-process writing derives from the same objects (build_plan, parent_of, summarize)."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    ctx = trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(int(sampled)),
        trace_state=TraceState.from_header([state]) if state else None)))
    capture = _capture(context=ctx, kind=kind)
    entry = SimpleNamespace(states=[_state("r", prompt=10, cached=4)], reasons=["length"], arrival=T0,
                            operation="chat", model="m", prefill_stats=None, capture=capture)
    record = marshal.loads(wire.dumps(wire.request_record(entry, T0 + 3, "length", None)))
    parent, plan, summary = wire.read_request(record)
    got = trace.get_current_span(parent).get_span_context()
    assert (got.trace_id, got.span_id, got.is_remote, int(got.trace_flags), got.trace_state.to_header()) == (
        trace_id, span_id, remote, int(sampled), state)
    assert plan == build_plan(capture, "chat", "m") and plan.kind == kind
    assert summary == summarize(entry, T0 + 3, "length", None)


def test_trace_headers_cross_the_wire_and_are_extracted_where_the_span_is_written():
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    entry = SimpleNamespace(states=[_state("r")], reasons=["stop"], arrival=T0, operation="chat", model="m",
                            prefill_stats=None, capture=_capture(headers=headers))
    record = marshal.loads(wire.dumps(wire.request_record(entry, T0 + 1, "stop", None)))
    assert record[:2] == (None, headers)  # the server does not parse them
    parent, _, _ = wire.read_request(record)
    got = trace.get_current_span(parent).get_span_context()
    assert (f"{got.trace_id:032x}", f"{got.span_id:016x}", got.is_remote) == (
        "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", True)


def test_the_wire_carries_plain_tuples_only():
    with pytest.raises(ValueError):
        wire.dumps((wire.REQUESTS, [SpanPlan("x", 1, {})]))  # marshal refuses tuple subclasses
    assert wire.loads(wire.dumps((wire.FLUSH, 3))) == (wire.FLUSH, 3)
    entry = SimpleNamespace(states=[_state("r")], reasons=["stop"], arrival=T0, operation="chat", model="m",
                            prefill_stats=None, capture=None)  # vLLM's native tracing on: metrics only
    record = wire.request_record(entry, T0 + 1, "stop", None)
    assert record[:3] == (None, None, None) and wire.read_request(record)[:2] == (None, None)
    with pytest.raises(ValueError):
        wire.read_request((None, None, None, (1, 2)))


def test_tracker_thread_safety_under_concurrent_adds_and_finishes():
    tracker, sink = _tracker()
    states = {f"r{i}": _state(f"r{i}") for i in range(400)}
    proc = _processor(states)

    def worker(ids):
        for rid in ids:
            tracker.on_add(proc, _request(rid), None, None)
            tracker.finish(rid, "stop", T0 + 1)

    threads = [threading.Thread(target=worker, args=(list(states)[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tracker.in_flight() == 0 and sorted(e.key for e, *_ in sink.submitted) == sorted(states)


def test_a_released_request_without_a_finish_is_swept_as_an_error_at_its_release():
    """vLLM 0.33's error output (compat.REQUEST_ERRORS): released by _finish_request, never finished."""
    from opentelemetry.instrumentation.vllm.request.tracker import ERROR_REQUEST, RELEASE_GRACE_S

    tracker, sink = _tracker()
    proc = _processor({"bad": _state("bad"), "good": _state("good")})
    tracker.on_add(proc, _request("bad"), None, None)
    tracker.on_add(proc, _request("good"), None, None)
    tracker.released("good", T0 + 1)
    tracker.finish("good", "stop", T0 + 1)  # the normal path: the finish follows
    tracker.released("bad", T0 + 2)
    tracker.released("unknown", T0 + 2)  # not ours: ignored
    import time

    now = time.monotonic()
    assert tracker.sweep(now) == 0 and [i[2] for i in sink.submitted] == ["stop"]  # within the grace: nothing
    tracker.sweep(now + RELEASE_GRACE_S + 0.01)
    ((_, end, reason, error_type),) = sink.submitted[1:]
    assert (end, reason, error_type) == (T0 + 2, sc.FINISH_ERROR, ERROR_REQUEST) and tracker.in_flight() == 0
    tracker.sweep(now + 10)
    assert len(sink.submitted) == 2  # once


def test_w3c_headers_are_read_from_the_http_request_where_vllm_does_not_pass_them():
    """vLLM < 0.32 hands trace headers to the engine only with its native tracing on: the serving labeler reads
    them itself (only ``traceparent``/``tracestate``; nothing without a ``traceparent``)."""
    from opentelemetry.instrumentation.vllm.hooks.serving import _w3c_headers

    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert _w3c_headers(SimpleNamespace(headers={"traceparent": tp, "tracestate": "a=1", "cookie": "x"})) == {
        "traceparent": tp, "tracestate": "a=1"}
    assert _w3c_headers(SimpleNamespace(headers={"traceparent": tp})) == {"traceparent": tp}
    assert _w3c_headers(SimpleNamespace(headers={"tracestate": "a=1"})) is None
    assert _w3c_headers(SimpleNamespace(headers={})) is None and _w3c_headers(None) is None
