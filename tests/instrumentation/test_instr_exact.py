"""Exact request metrics, the flush contract, span kind, per-request facts and exemplars (issue #14 items 1, 2, 5, 6;
#15 item 3), on the real offline CPU engine with in-memory exporters."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from conftest import metric_points  # noqa: E402  (tests/instrumentation)
from opentelemetry.instrumentation.vllm.request import emit as vllm_emit
from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm import state

pytestmark = pytest.mark.engine
HISTOGRAMS = (sc.METRIC_REQUEST_DURATION, sc.METRIC_TTFT, sc.METRIC_TPOT)


def _hist(reader, name: str) -> dict[tuple, tuple[int, float]]:
    """{sorted attribute items: (count, sum)} of histogram ``name`` (cumulative)."""
    return {tuple(sorted(p.attributes.items())): (p.count, p.sum) for p in metric_points(reader, name)}


def _delta(after: dict, before: dict) -> dict[tuple, tuple[int, float]]:
    out = {}
    for k, (c, s) in after.items():
        c0, s0 = before.get(k, (0, 0.0))
        if c != c0:
            out[k] = (c - c0, s - s0)
    return out


def _by_error(delta: dict) -> dict[str | None, tuple[int, float]]:
    out: dict[str | None, tuple[int, float]] = {}
    for k, (c, s) in delta.items():
        err = dict(k).get(sc.ERROR_TYPE)
        c0, s0 = out.get(err, (0, 0.0))
        out[err] = (c0 + c, s0 + s)
    return out


def _counter(reader, name: str, key: str) -> dict[Any, float]:
    out: dict[Any, float] = {}
    for p in metric_points(reader, name):
        out[p.attributes.get(key)] = out.get(p.attributes.get(key), 0) + p.value
    return out


def _steps(engine, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while engine.has_unfinished_requests() and time.monotonic() < deadline:
        engine.step()


def _stop_token(llm, prompt: str) -> tuple[int, int]:
    """A greedy run's token at the first position k ≥ 1 whose token did not occur before: as a stop token it ends
    the same greedy request with exactly k + 1 tokens and finish reason ``stop``."""
    import vllm

    (out,) = llm.generate([prompt], vllm.SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True))
    ids = list(out.outputs[0].token_ids)
    for k in range(1, len(ids)):
        if ids[k] not in ids[:k]:
            return ids[k], k + 1
    pytest.skip(f"greedy output repeats one token: {ids}")


def test_every_finish_reason_recorded_once_per_histogram(offline_llm, spans, otel):
    """ok (length, stop), abort after tokens, abort before the first token, engine error: exact counts per histogram
    and per finish reason; sums equal the span attributes of the same requests; error.type only on failures."""
    import vllm
    from vllm.v1.engine.exceptions import EngineDeadError
    from vllm.v1.engine.output_processor import RequestOutputCollector

    engine = offline_llm.llm_engine
    stop_id, stop_len = _stop_token(offline_llm, "Spans and metrics")
    spans.all()
    otel.exporter.clear()
    before = {n: _hist(otel.reader, n) for n in HISTOGRAMS}
    before_reqs = _counter(otel.reader, sc.METRIC_REQUESTS, sc.VLLM_FINISH_REASON)

    outs = offline_llm.generate(["one", "two two", "three three three"],
                                vllm.SamplingParams(max_tokens=5, ignore_eos=True))
    (single,) = offline_llm.generate(["single"], vllm.SamplingParams(max_tokens=1, ignore_eos=True))
    (stopped,) = offline_llm.generate(["Spans and metrics"], vllm.SamplingParams(
        max_tokens=12, temperature=0.0, stop_token_ids=[stop_id]))
    assert stopped.outputs[0].finish_reason == "stop" and len(stopped.outputs[0].token_ids) == stop_len
    engine.add_request("abort-late", "Decode generates one token at a time.",
                       vllm.SamplingParams(max_tokens=200, ignore_eos=True))
    for _ in range(4):
        engine.step()
    engine.add_request("abort-early", "Never scheduled", vllm.SamplingParams(max_tokens=5, ignore_eos=True))
    engine.abort_request(["abort-late", "abort-early"])
    internal = engine.add_request("doomed", "Prefill", vllm.SamplingParams(max_tokens=4, ignore_eos=True))
    rs = engine.output_processor.request_states[internal]
    rs.queue = RequestOutputCollector(rs.output_kind, "doomed")  # AsyncLLM states have a queue
    engine.output_processor.propagate_error(EngineDeadError())
    rs.queue = None
    engine.abort_request(["doomed"])
    _steps(engine)

    server = spans.server()
    assert len(server) == 8 and state.tracker().in_flight() == 0
    by_id = {s.attributes[sc.VLLM_REQUEST_ID]: s for s in server}
    reasons = sorted(s.attributes[sc.VLLM_FINISH_REASON] for s in server)
    assert reasons == ["abort", "abort", "error", "length", "length", "length", "length", "stop"]
    early, late, doomed = by_id["abort-early"].attributes, by_id["abort-late"].attributes, by_id["doomed"].attributes
    assert sc.LATENCY_TTFT not in early and early[sc.USAGE_OUTPUT_TOKENS] == 0
    assert late[sc.USAGE_OUTPUT_TOKENS] >= 2 and sc.LATENCY_TPOT in late
    assert sc.LATENCY_TPOT not in by_id[single.request_id].attributes
    assert sc.LATENCY_TPOT in by_id[stopped.request_id].attributes
    assert doomed[sc.ERROR_TYPE] == "EngineDeadError"
    assert [sc.ERROR_TYPE in s.attributes for s in server].count(True) == 1  # only the failure

    after_reqs = _counter(otel.reader, sc.METRIC_REQUESTS, sc.VLLM_FINISH_REASON)
    assert {k: v - before_reqs.get(k, 0) for k, v in after_reqs.items() if v != before_reqs.get(k, 0)} == {
        "length": 4, "stop": 1, "abort": 2, "error": 1}
    attr_of = {sc.METRIC_REQUEST_DURATION: sc.LATENCY_E2E, sc.METRIC_TTFT: sc.LATENCY_TTFT,
               sc.METRIC_TPOT: sc.LATENCY_TPOT}
    for name in HISTOGRAMS:
        delta = _by_error(_delta(_hist(otel.reader, name), before[name]))
        values = [s.attributes[attr_of[name]] for s in server if attr_of[name] in s.attributes]
        ok = [s.attributes[attr_of[name]] for s in server
              if attr_of[name] in s.attributes and sc.ERROR_TYPE not in s.attributes]
        failed = [s.attributes[attr_of[name]] for s in server
                  if attr_of[name] in s.attributes and sc.ERROR_TYPE in s.attributes]
        assert sum(c for c, _ in delta.values()) == len(values), name
        assert delta.get(None, (0, 0.0))[0] == len(ok), name
        assert delta.get(None, (0, 0.0))[1] == pytest.approx(sum(ok), abs=1e-9), name
        assert delta.get("EngineDeadError", (0, 0.0))[0] == len(failed), name
        assert set(delta) <= {None, "EngineDeadError"}, name
    assert _by_error(_delta(_hist(otel.reader, sc.METRIC_REQUEST_DURATION),
                            before[sc.METRIC_REQUEST_DURATION]))[None][0] == 7  # duration: every request
    assert _by_error(_delta(_hist(otel.reader, sc.METRIC_TTFT), before[sc.METRIC_TTFT]))[None][0] == 6
    # TPOT: the three 5-token requests, the stopped one and the late abort (≥ 2 tokens each).
    assert _by_error(_delta(_hist(otel.reader, sc.METRIC_TPOT), before[sc.METRIC_TPOT]))[None][0] == 5
    assert all(len(o.outputs[0].token_ids) == 5 for o in outs)


def test_zombie_recorded_once_with_error_type(offline_llm, spans, otel):
    import vllm

    from conftest import reinstrumented

    engine = offline_llm.llm_engine
    before = _hist(otel.reader, sc.METRIC_REQUEST_DURATION)
    with reinstrumented(otel, request_timeout_s=0.3):
        engine.add_request("zombie-2", "Time to first token", vllm.SamplingParams(max_tokens=4, ignore_eos=True))
        deadline = time.monotonic() + 10
        while state.tracker().in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        (span,) = spans.server()
        _steps(engine)  # the late completion is not recorded again
        delta = _by_error(_delta(_hist(otel.reader, sc.METRIC_REQUEST_DURATION), before))
    assert delta == {"timeout": (1, pytest.approx(span.attributes[sc.LATENCY_E2E], abs=1e-9))}


# ---- flush contract ---------------------------------------------------------------------------------------------
def test_spans_ended_when_generate_returns(offline_llm, spans, otel, monkeypatch):
    """SimpleSpanProcessor: right after ``generate``/``chat`` return, their spans are in the exporter — even with a
    slow writer (no flush helper, no sleep)."""
    import vllm

    slow_write = vllm_emit.write_span

    def slow(*args, **kwargs):
        time.sleep(0.2)
        return slow_write(*args, **kwargs)

    monkeypatch.setattr(vllm_emit, "write_span", slow)
    outs = offline_llm.generate(["a b", "c d", "e f"], vllm.SamplingParams(max_tokens=3, ignore_eos=True))
    got = {s.attributes.get(sc.VLLM_REQUEST_ID) for s in otel.exporter.get_finished_spans()
           if s.kind == SpanKind.SERVER}
    assert got == {o.request_id for o in outs}
    chat = offline_llm.chat([{"role": "user", "content": "hi"}], vllm.SamplingParams(max_tokens=2, ignore_eos=True))
    got = {s.attributes.get(sc.VLLM_REQUEST_ID) for s in otel.exporter.get_finished_spans()
           if s.kind == SpanKind.SERVER}
    assert chat[0].request_id in got and len(got) == 4


class _MetricsKept:
    """A metric exporter that keeps every export (the SDK has no in-memory *exporter*, only a pull reader)."""

    def __new__(cls):
        from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

        class Kept(MetricExporter):
            def __init__(self):
                super().__init__()
                self.exports = []

            def export(self, metrics_data, timeout_millis=10_000, **kwargs):
                self.exports.append(metrics_data)
                return MetricExportResult.SUCCESS

            def force_flush(self, timeout_millis=10_000):
                return True

            def shutdown(self, timeout_millis=30_000, **kwargs):
                pass

        return Kept()


@contextmanager
def _own_providers(otel, monkeypatch) -> Iterator[Any]:
    """Instrument with a BatchSpanProcessor (60 s delay) and a periodic metric reader (never due) over in-memory
    exporters, and a slow writer: only a drained flush can show the requests."""
    from types import SimpleNamespace

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    slow_write = vllm_emit.write_span

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return slow_write(*args, **kwargs)

    monkeypatch.setattr(vllm_emit, "write_span", slow)
    spans_out, metrics_out = InMemorySpanExporter(), _MetricsKept()
    tp = TracerProvider(shutdown_on_exit=False)
    tp.add_span_processor(BatchSpanProcessor(spans_out, schedule_delay_millis=60_000))
    mp = MeterProvider(metric_readers=[PeriodicExportingMetricReader(metrics_out, export_interval_millis=10**8)],
                       shutdown_on_exit=False)
    otel.inst.uninstrument()
    otel.inst.instrument(tracer_provider=tp, meter_provider=mp)
    try:
        yield SimpleNamespace(tp=tp, mp=mp, spans=spans_out, metrics=metrics_out)
    finally:
        otel.inst.uninstrument()
        otel.inst.instrument(tracer_provider=otel.tp, meter_provider=otel.mp)
        tp.shutdown()
        mp.shutdown()


def _duration_count(metrics_out) -> int:
    total = 0
    for data in metrics_out.exports:
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == sc.METRIC_REQUEST_DURATION:
                        total = max(total, sum(p.count for p in m.data.data_points))  # cumulative
    return total


def _step_requests(engine, ids: list[str]) -> None:
    import vllm

    for rid in ids:
        engine.add_request(rid, f"flush {rid}", vllm.SamplingParams(max_tokens=3, ignore_eos=True))
    _steps(engine)  # the engine loop without LLM._run_engine: nothing drains on return


def test_force_flush_includes_every_finished_request(offline_llm, otel, monkeypatch):
    engine = offline_llm.llm_engine
    with _own_providers(otel, monkeypatch) as own:
        _step_requests(engine, ["ff-1", "ff-2"])
        assert own.tp.force_flush()
        got = [s.attributes[sc.VLLM_REQUEST_ID] for s in own.spans.get_finished_spans() if s.kind == SpanKind.SERVER]
        assert sorted(got) == ["ff-1", "ff-2"]
        assert own.mp.force_flush()
        assert _duration_count(own.metrics) == 2


def test_shutdown_loses_nothing(offline_llm, otel, monkeypatch):
    engine = offline_llm.llm_engine
    with _own_providers(otel, monkeypatch) as own:
        _step_requests(engine, ["sd-1", "sd-2", "sd-3"])
        own.tp.shutdown()
        own.mp.shutdown()
        got = [s.attributes[sc.VLLM_REQUEST_ID] for s in own.spans.get_finished_spans() if s.kind == SpanKind.SERVER]
        assert sorted(got) == ["sd-1", "sd-2", "sd-3"]
        assert _duration_count(own.metrics) == 3


# ---- span kind ----------------------------------------------------------------------------------------------------
def test_span_kind_internal_under_local_server_span(offline_llm, spans, otel):
    import vllm

    tracer = otel.tp.get_tracer("test")
    with tracer.start_as_current_span("POST /v1/completions", kind=SpanKind.SERVER) as outer:
        (out,) = offline_llm.generate(["under a server span"], vllm.SamplingParams(max_tokens=2, ignore_eos=True))
    (ours,) = [s for s in spans.all() if s.attributes.get(sc.VLLM_REQUEST_ID) == out.request_id]
    assert ours.kind == SpanKind.INTERNAL
    assert ours.parent.span_id == outer.get_span_context().span_id and not ours.parent.is_remote
    assert [s.name for s in spans.server()] == ["POST /v1/completions"]  # one SERVER span for the request


def test_span_kind_server_under_remote_parent(offline_llm, spans):
    import vllm

    remote = SpanContext(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
    try:
        (out,) = offline_llm.generate(["remote parent"], vllm.SamplingParams(max_tokens=2, ignore_eos=True))
    finally:
        otel_context.detach(token)
    (ours,) = spans.server()
    assert ours.attributes[sc.VLLM_REQUEST_ID] == out.request_id
    assert ours.context.trace_id == remote.trace_id and ours.parent.span_id == remote.span_id
    assert ours.parent.is_remote


# ---- per-request facts --------------------------------------------------------------------------------------------
def test_prompt_tokens_by_source(offline_llm, spans):
    import vllm

    tokenizer = offline_llm.get_tokenizer()
    prompt = "Prefix caching reuses KV blocks of a shared prompt prefix across requests."
    while len(tokenizer.encode(prompt)) < 180:  # > one 128-token block, < max_model_len 256
        prompt += " Prefix caching reuses KV blocks."
    sp = vllm.SamplingParams(max_tokens=2, ignore_eos=True)
    first = offline_llm.generate([prompt + " first"], sp)[0]
    second = offline_llm.generate([prompt + " second"], sp)[0]
    by_id = {s.attributes[sc.VLLM_REQUEST_ID]: s.attributes for s in spans.server()}
    for out in (first, second):
        a = by_id[out.request_id]
        assert a[sc.VLLM_PREFILL_COMPLETED] is True
        assert a[sc.VLLM_PROMPT_TOKENS_LOCAL_CACHE] == out.num_cached_tokens == a[sc.USAGE_CACHE_READ_INPUT_TOKENS]
        assert a[sc.VLLM_PROMPT_TOKENS_EXTERNAL_CACHE] == 0  # no KV connector
        assert a[sc.VLLM_PROMPT_TOKENS_COMPUTED] == len(out.prompt_token_ids) - out.num_cached_tokens
        assert sc.VLLM_SPEC_DRAFT_TOKENS not in a  # no speculative decoding here
    assert by_id[second.request_id][sc.VLLM_PROMPT_TOKENS_LOCAL_CACHE] > 0


def test_abort_shows_how_far_it_got(offline_llm, spans):
    import vllm

    engine = offline_llm.llm_engine
    engine.add_request("far", "Decode generates one token at a time.",
                       vllm.SamplingParams(max_tokens=200, ignore_eos=True))
    for _ in range(3):
        engine.step()
    engine.add_request("near", "Still waiting", vllm.SamplingParams(max_tokens=5, ignore_eos=True))
    engine.abort_request(["far", "near"])
    _steps(engine)
    by_id = {s.attributes[sc.VLLM_REQUEST_ID]: s for s in spans.server()}
    far, near = by_id["far"].attributes, by_id["near"].attributes
    assert far[sc.VLLM_PREFILL_COMPLETED] is True and 0 < far[sc.USAGE_OUTPUT_TOKENS] < 200
    assert far[sc.VLLM_PROMPT_TOKENS_COMPUTED] + far[sc.VLLM_PROMPT_TOKENS_LOCAL_CACHE] == far[sc.USAGE_INPUT_TOKENS]
    assert near[sc.VLLM_PREFILL_COMPLETED] is False and near[sc.USAGE_OUTPUT_TOKENS] == 0
    assert sc.VLLM_PROMPT_TOKENS_COMPUTED not in near and sc.LATENCY_TTFT not in near
    assert by_id["near"].status.status_code == StatusCode.UNSET and sc.ERROR_TYPE not in near


# ---- exemplars ----------------------------------------------------------------------------------------------------
def test_histograms_carry_the_request_trace_as_exemplar(offline_llm, spans, otel):
    import vllm

    metric_points(otel.reader, sc.METRIC_REQUEST_DURATION)  # collect: exemplars so far are reported and dropped
    (out,) = offline_llm.generate(["exemplar"], vllm.SamplingParams(max_tokens=4, ignore_eos=True))
    (span,) = spans.server()
    data = otel.reader.get_metrics_data()  # one collection: each collection reports (and drops) the exemplars
    points = {m.name: m.data.data_points for rm in data.resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics}
    for name, attr in ((sc.METRIC_REQUEST_DURATION, sc.LATENCY_E2E), (sc.METRIC_TTFT, sc.LATENCY_TTFT),
                       (sc.METRIC_TPOT, sc.LATENCY_TPOT)):
        exemplars = [e for p in points[name] for e in p.exemplars if e.trace_id == span.context.trace_id]
        assert len(exemplars) == 1, name
        (ex,) = exemplars
        assert ex.span_id == span.context.span_id and ex.value == pytest.approx(span.attributes[attr], abs=1e-12)
    assert out.request_id == span.attributes[sc.VLLM_REQUEST_ID]
