"""Offline ``vllm.LLM`` (LLMEngine) under the instrumentation: real CPU engine, in-memory exporters."""

from __future__ import annotations

import os

import time

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from conftest import PATCHED, current_attributes, metric_sum, reinstrumented  # noqa: E402  (tests/instrumentation)
from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm import state

pytestmark = pytest.mark.engine


def _by_request_id(server_spans):
    return {s.attributes[sc.VLLM_REQUEST_ID]: s for s in server_spans}


def _children(all_spans, parent):
    kids = [s for s in all_spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
    return {s.name: s for s in kids}


def test_one_span_per_request_with_exact_values(offline_llm, spans, otel):
    import vllm

    model = offline_llm.llm_engine.model_config.served_model_name
    before_requests = metric_sum(otel.reader, sc.METRIC_REQUESTS)
    params = [vllm.SamplingParams(max_tokens=12, temperature=0.7, top_p=0.9, top_k=20, seed=7, ignore_eos=True),
              vllm.SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True)]
    outs = offline_llm.generate(["The quick brown fox", "Prefill processes the prompt"], params)
    chat = offline_llm.chat([{"role": "user", "content": "What is a span?"}],
                            vllm.SamplingParams(max_tokens=8, ignore_eos=True))
    server = spans.server()
    assert len(server) == 3
    by_id = _by_request_id(server)
    for out, p in zip(outs + chat, params + [None]):
        span = by_id[out.request_id]
        a = span.attributes
        assert span.kind == SpanKind.SERVER and span.parent is None
        assert a[sc.USAGE_INPUT_TOKENS] == len(out.prompt_token_ids)
        assert a[sc.USAGE_OUTPUT_TOKENS] == len(out.outputs[0].token_ids)
        assert a[sc.RESPONSE_FINISH_REASONS] == (out.outputs[0].finish_reason,) == ("length",)
        assert a[sc.VLLM_FINISH_REASON] == "length"
        assert a[sc.PROVIDER_NAME] == "vllm" and a[sc.REQUEST_MODEL] == a[sc.RESPONSE_MODEL] == model
        assert a[sc.RESPONSE_ID] == out.request_id and a[sc.REQUEST_STREAM] is False
        assert a[sc.VLLM_ENGINE] == "llm_engine"
        # Start = vLLM's arrival time; e2e attribute = span duration.
        assert span.start_time == int(out.metrics.arrival_time * 1e9)
        e2e = a[sc.LATENCY_E2E]
        assert abs((span.end_time - span.start_time) / 1e9 - e2e) < 1e-6
        ttft = a[sc.LATENCY_TTFT]
        assert 0 < ttft <= e2e
        assert ttft == pytest.approx(out.metrics.first_token_latency)
        n_out = a[sc.USAGE_OUTPUT_TOKENS]
        assert a[sc.LATENCY_TPOT] == pytest.approx(a[sc.LATENCY_DECODE] / (n_out - 1))
        assert a[sc.VLLM_TOKENS_PER_SECOND] == pytest.approx(n_out / e2e)
        # Engine intervals (vLLM's definitions) fit inside the frontend's e2e.
        engine_sum = a[sc.LATENCY_QUEUE] + a[sc.LATENCY_PREFILL] + a[sc.LATENCY_DECODE]
        assert 0 < engine_sum <= e2e + 1e-3
        (event,) = span.events
        assert event.name == sc.EVENT_FIRST_TOKEN and span.start_time <= event.timestamp <= span.end_time
        assert event.timestamp == int((out.metrics.arrival_time + ttft) * 1e9)
        kids = _children(spans.all(), span)
        assert set(kids) == {sc.SPAN_QUEUE, sc.SPAN_PREFILL, sc.SPAN_DECODE}
        tiled = sum((k.end_time - k.start_time) for k in kids.values()) / 1e9
        assert abs(tiled - e2e) < 0.005
        assert kids[sc.SPAN_QUEUE].start_time == span.start_time and kids[sc.SPAN_DECODE].end_time == span.end_time
        assert kids[sc.SPAN_PREFILL].start_time == kids[sc.SPAN_QUEUE].end_time
        if p is not None:
            assert span.name == f"text_completion {model}" and a[sc.OPERATION_NAME] == "text_completion"
            assert a[sc.REQUEST_MAX_TOKENS] == p.max_tokens
            assert a[sc.REQUEST_TEMPERATURE] == pytest.approx(p.temperature)
            assert a[sc.REQUEST_TOP_P] == pytest.approx(p.top_p) and a[sc.REQUEST_TOP_K] == p.top_k
            assert a.get(sc.REQUEST_SEED) == p.seed and a[sc.REQUEST_CHOICE_COUNT] == 1
        else:
            assert span.name == f"chat {model}" and a[sc.OPERATION_NAME] == "chat"
    assert state.tracker().in_flight() == 0
    assert metric_sum(otel.reader, sc.METRIC_REQUESTS) - before_requests == 3
    assert sc.INPUT_MESSAGES not in by_id[outs[0].request_id].attributes  # content capture off by default


def test_parallel_sampling_is_one_span(offline_llm, spans):
    import vllm

    (out,) = offline_llm.generate(["OpenTelemetry traces"], vllm.SamplingParams(n=3, max_tokens=6, ignore_eos=True,
                                                                               temperature=1.0, seed=3))
    (span,) = spans.server()
    assert span.attributes[sc.REQUEST_CHOICE_COUNT] == 3
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == sum(len(c.token_ids) for c in out.outputs) == 18
    assert span.attributes[sc.RESPONSE_FINISH_REASONS] == ("length",) * 3
    assert span.attributes[sc.RESPONSE_ID] == out.request_id
    assert state.tracker().in_flight() == 0


def test_prefix_cache_hits_are_cached_input_tokens(offline_llm, spans):
    import vllm

    prompt = " ".join(["ClickHouse stores columns compressed and answers analytical queries quickly."] * 16)  # > one 128-token block
    sp = vllm.SamplingParams(max_tokens=2, ignore_eos=True)
    first = offline_llm.generate([prompt], sp)[0]
    second = offline_llm.generate([prompt], sp)[0]
    by_id = _by_request_id(spans.server())
    assert by_id[first.request_id].attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == first.num_cached_tokens
    cached = by_id[second.request_id].attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS]
    assert cached == second.num_cached_tokens > 0


def _drain(engine, timeout=30.0):
    deadline = time.monotonic() + timeout
    while engine.has_unfinished_requests() and time.monotonic() < deadline:
        engine.step()


def test_engine_state_at_arrival(offline_llm, spans, otel):
    """Offline ``LLM`` with vLLM's stats off: our stat logger is the engine's only logger and its latest
    ``SchedulerStats`` is the state a request arrives to. Prompts of one call are added before its first step: they
    all see the state of the previous call's last step (its last request done: nothing running or waiting, the
    KV cache usage a fraction)."""
    import vllm

    sp = vllm.SamplingParams(max_tokens=3, ignore_eos=True)
    offline_llm.generate(["before"], sp)  # vLLM has delivered scheduler stats by now
    otel.exporter.clear()
    offline_llm.generate(["one", "two", "three"], sp)
    states = {(s.attributes[sc.VLLM_ARRIVAL_RUNNING], s.attributes[sc.VLLM_ARRIVAL_WAITING],
               s.attributes[sc.VLLM_ARRIVAL_KV_CACHE_USAGE]) for s in spans.server()}
    (state,) = states
    assert state[:2] == (0, 0) and 0.0 <= state[2] <= 1.0, state


def test_abort_is_marked(offline_llm, spans, otel):
    import vllm

    engine = offline_llm.llm_engine
    before = metric_sum(otel.reader, sc.METRIC_REQUESTS, **{sc.VLLM_FINISH_REASON: "abort"})
    engine.add_request("abort-me", "Decode generates one token at a time.",
                       vllm.SamplingParams(max_tokens=200, ignore_eos=True))
    for _ in range(3):
        engine.step()
    engine.abort_request(["abort-me"])
    _drain(engine)
    (span,) = spans.server()
    assert span.attributes[sc.VLLM_FINISH_REASON] == "abort"
    assert span.attributes[sc.RESPONSE_FINISH_REASONS] == ("abort",)
    assert span.status.status_code == StatusCode.UNSET
    assert 0 < span.attributes[sc.USAGE_OUTPUT_TOKENS] < 200
    assert metric_sum(otel.reader, sc.METRIC_REQUESTS, **{sc.VLLM_FINISH_REASON: "abort"}) - before == 1
    assert state.tracker().in_flight() == 0


def test_zombie_timeout(offline_llm, spans, otel):
    import vllm

    engine = offline_llm.llm_engine
    before = metric_sum(otel.reader, sc.METRIC_ZOMBIES)
    with reinstrumented(otel, request_timeout_s=0.3):
        engine.add_request("zombie", "Time to first token", vllm.SamplingParams(max_tokens=4, ignore_eos=True))
        assert state.tracker().in_flight() == 1
        time.sleep(1.0)  # nobody steps the engine: the request never completes
        assert state.tracker().in_flight() == 0
        (span,) = spans.server()
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes[sc.ERROR_TYPE] == "timeout" and span.attributes[sc.VLLM_FINISH_REASON] == "timeout"
        assert metric_sum(otel.reader, sc.METRIC_ZOMBIES) - before == 1
        _drain(engine)  # the late completion does not produce a second span
        assert len(spans.server()) == 1


def test_engine_error_marks_status(offline_llm, spans):
    """Injected fault: vLLM's own ``propagate_error`` (the engine-death path of AsyncLLM) on a live request."""
    import vllm
    from vllm.v1.engine.exceptions import EngineDeadError
    from vllm.v1.engine.output_processor import RequestOutputCollector

    engine = offline_llm.llm_engine
    internal_id = engine.add_request("doomed", "Prefill", vllm.SamplingParams(max_tokens=4, ignore_eos=True))
    rs = engine.output_processor.request_states[internal_id]
    rs.queue = RequestOutputCollector(rs.output_kind, "doomed")  # AsyncLLM states have a queue
    engine.output_processor.propagate_error(EngineDeadError())
    rs.queue = None
    engine.abort_request(["doomed"])
    _drain(engine)
    (span,) = spans.server()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "EngineDeadError"
    assert span.attributes[sc.VLLM_FINISH_REASON] == "error"
    assert state.tracker().in_flight() == 0


def test_hook_failure_does_not_break_inference(offline_llm, spans, otel, monkeypatch):
    import vllm
    from opentelemetry.instrumentation.vllm.request import tracker

    def boom(*args, **kwargs):
        raise RuntimeError("injected")

    before = metric_sum(otel.reader, sc.METRIC_HOOK_ERRORS, hook="request.add")
    monkeypatch.setattr(tracker, "Capture", boom)
    outs = offline_llm.generate(["a", "b"], vllm.SamplingParams(max_tokens=4, ignore_eos=True))
    assert [len(o.outputs[0].token_ids) for o in outs] == [4, 4]
    assert spans.server() == []
    assert metric_sum(otel.reader, sc.METRIC_HOOK_ERRORS, hook="request.add") - before == 2
    assert state.tracker().in_flight() == 0


def test_phase_spans_can_be_turned_off(offline_llm, spans, otel, monkeypatch):
    """OTEL_INSTRUMENTATION_VLLM_PHASE_SPANS=false: one span per request, phase durations still attributes."""
    import vllm

    monkeypatch.setenv("OTEL_INSTRUMENTATION_VLLM_PHASE_SPANS", "false")
    with reinstrumented(otel):
        offline_llm.generate(["The lazy dog"], vllm.SamplingParams(max_tokens=3, ignore_eos=True))
    all_spans = spans.all()
    (span,) = spans.server()
    assert [s.name for s in all_spans] == [span.name]
    assert span.attributes[sc.LATENCY_PREFILL] > 0 and span.attributes[sc.LATENCY_DECODE] > 0


def test_content_capture_opt_in(offline_llm, spans, otel):
    import vllm

    with reinstrumented(otel, capture_content=True):
        (out,) = offline_llm.generate(["The lazy dog"], vllm.SamplingParams(max_tokens=3, ignore_eos=True))
    (span,) = spans.server()
    assert "The lazy dog" in span.attributes[sc.INPUT_MESSAGES]
    assert out.outputs[0].text in span.attributes[sc.OUTPUT_MESSAGES]


def test_native_tracing_on_means_no_second_span(offline_llm, spans, otel):
    import vllm

    op = offline_llm.llm_engine.output_processor
    before = metric_sum(otel.reader, sc.METRIC_REQUESTS)
    op.tracing_enabled = True  # what --otlp-traces-endpoint sets; vLLM's llm_request span is then the request span
    try:
        offline_llm.generate(["x"], vllm.SamplingParams(max_tokens=2, ignore_eos=True))
    finally:
        op.tracing_enabled = False
    assert spans.server() == []
    assert metric_sum(otel.reader, sc.METRIC_REQUESTS) - before == 1  # metrics still recorded


def test_uninstrument_restores_every_original(offline_llm, spans, otel):
    import vllm
    import wrapt

    patched = current_attributes()
    changed = [k for k in patched if patched[k] is not otel.originals[k]]
    assert len(changed) == len(PATCHED)  # everything is patched while instrumented
    otel.inst.uninstrument()
    try:
        restored = current_attributes()
        assert all(restored[k] is otel.originals[k] for k in restored)
        assert not any(isinstance(v, (wrapt.ObjectProxy, wrapt.FunctionWrapper)) for v in restored.values())
        offline_llm.generate(["y"], vllm.SamplingParams(max_tokens=2))
        assert spans.server() == []
    finally:
        otel.inst.instrument(tracer_provider=otel.tp, meter_provider=otel.mp)
    assert isinstance(current_attributes()[("OutputProcessor", "add_request")], wrapt.FunctionWrapper)


def test_metrics_and_engine_gauges(offline_llm, spans, otel):
    import vllm

    from conftest import metric_points

    before_ttft = metric_sum(otel.reader, sc.METRIC_TTFT, **{sc.OPERATION_NAME: "text_completion"})
    before_in = sum(p.sum for p in metric_points(otel.reader, sc.METRIC_TOKEN_USAGE)
                    if p.attributes[sc.TOKEN_TYPE] == "input")
    before_out = sum(p.sum for p in metric_points(otel.reader, sc.METRIC_TOKEN_USAGE)
                     if p.attributes[sc.TOKEN_TYPE] == "output")
    outs = offline_llm.generate(["one", "two two", "three three three"], vllm.SamplingParams(max_tokens=5,
                                                                                            ignore_eos=True))
    assert metric_sum(otel.reader, sc.METRIC_TTFT, **{sc.OPERATION_NAME: "text_completion"}) - before_ttft == 3
    after_in = sum(p.sum for p in metric_points(otel.reader, sc.METRIC_TOKEN_USAGE)
                   if p.attributes[sc.TOKEN_TYPE] == "input")
    after_out = sum(p.sum for p in metric_points(otel.reader, sc.METRIC_TOKEN_USAGE)
                    if p.attributes[sc.TOKEN_TYPE] == "output")
    assert after_in - before_in == sum(len(o.prompt_token_ids) for o in outs)
    assert after_out - before_out == 15
    (ttft_point,) = [p for p in metric_points(otel.reader, sc.METRIC_TTFT)
                     if p.attributes[sc.OPERATION_NAME] == "text_completion"]
    assert list(ttft_point.explicit_bounds)[:3] == [0.001, 0.005, 0.01]  # semconv advisory buckets
    # Engine gauges from the stat logger (offline fallback): vLLM's scheduler stats of the last step.
    # This engine's points (other tests of the session feed the same provider with other engines' stats).
    served = offline_llm.llm_engine.model_config.served_model_name
    model = served[0] if isinstance(served, (list, tuple)) else served

    def engine_points(name: str) -> list:
        return [p for p in metric_points(otel.reader, name) if p.attributes.get(sc.REQUEST_MODEL) == model]

    (kv,) = engine_points(sc.METRIC_KV_CACHE_USAGE)
    assert 0.0 <= kv.value <= 1.0  # the last step's ratio (0 once its blocks are freed)
    (running,) = engine_points(sc.METRIC_RUNNING)
    (waiting,) = engine_points(sc.METRIC_WAITING)
    assert 0 <= running.value + waiting.value <= 3
    # A prompt of several KV blocks sent twice: the second is a prefix-cache hit (this test's own hits, whatever ran
    # before it in the session).
    hits_before = metric_sum(otel.reader, sc.METRIC_PREFIX_CACHE_HITS, **{sc.REQUEST_MODEL: model})
    ids = offline_llm.get_tokenizer().encode(" ".join(f"w{i}" for i in range(96)))[:200]  # < max_model_len 256
    offline_llm.generate([{"prompt_token_ids": ids}], vllm.SamplingParams(max_tokens=1))
    offline_llm.generate([{"prompt_token_ids": ids}], vllm.SamplingParams(max_tokens=1))
    hits = metric_sum(otel.reader, sc.METRIC_PREFIX_CACHE_HITS, **{sc.REQUEST_MODEL: model})
    assert metric_sum(otel.reader, sc.METRIC_PREFIX_CACHE_QUERIES, **{sc.REQUEST_MODEL: model}) >= hits > hits_before
    # the process tree, observed once from the frontend: this process and vLLM's EngineCore below it (roles.py)
    rss = {p.attributes[sc.PROCESS_PID]: p for p in metric_points(otel.reader, sc.METRIC_PROCESS_RSS)}
    assert rss[os.getpid()].value > 50 * 2**20
    (engine,) = [p for p in rss.values() if p.attributes.get(sc.PROCESS_COMMAND) == "VLLM::EngineCore"]
    assert engine.value > 50 * 2**20


def test_general_plugin_never_patches_twice(offline_llm, otel):
    from opentelemetry.instrumentation.vllm import plugin

    patched = current_attributes()
    plugin.register()  # global provider is the API default here: nothing to do
    plugin.register()
    assert current_attributes() == patched
    otel.inst.uninstrument()
    try:
        plugin.register()  # no SDK tracer provider installed globally -> stays uninstrumented
        assert all(current_attributes()[k] is otel.originals[k] for k in otel.originals)
    finally:
        otel.inst.instrument(tracer_provider=otel.tp, meter_provider=otel.mp)
