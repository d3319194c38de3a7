"""Out-of-process export (``OTEL_INSTRUMENTATION_VLLM_EXPORT_PROCESS=true``, issue #13): the offline engine in this
process, spans built by the telemetry child and exported over OTLP/gRPC to an in-test receiver."""

from __future__ import annotations

import os
import signal

import pytest

from conftest import metric_sum  # noqa: E402  (tests/instrumentation)
from otlp_sink import OtlpSink  # noqa: E402
from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm import safety, state
from opentelemetry.instrumentation.vllm.handoff import link as handoff_link
from opentelemetry.instrumentation.vllm.handoff import wire

pytestmark = pytest.mark.engine
SERVER, INTERNAL = 2, 1  # OTLP span kinds


@pytest.fixture()
def child_mode(otel, monkeypatch):
    with OtlpSink() as receiver:
        for k, v in {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
                     "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                     "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_SERVICE_NAME": "vllm-child-test",
                     "OTEL_INSTRUMENTATION_VLLM_EXPORT_PROCESS": "true"}.items():
            monkeypatch.setenv(k, v)
        otel.inst.uninstrument()
        otel.inst.instrument()  # no provider objects: the SDK is configured from OTEL_* (in the child)
        errors = otel.mp.get_meter("test").create_counter(sc.METRIC_HOOK_ERRORS)
        safety.set_error_counter(errors)
        try:
            yield receiver
        finally:
            otel.inst.uninstrument()
            monkeypatch.delenv("OTEL_INSTRUMENTATION_VLLM_EXPORT_PROCESS")
            otel.inst.instrument(tracer_provider=otel.tp, meter_provider=otel.mp)


def test_child_builds_spans_flushed_when_generate_returns(offline_llm, child_mode, otel):
    import vllm

    outs = offline_llm.generate(["child one", "child two", "child three"],
                                vllm.SamplingParams(max_tokens=4, ignore_eos=True))
    spans = child_mode.spans()  # no wait: generate returned after the child's flush was confirmed
    server = {s.attributes[sc.VLLM_REQUEST_ID]: s for s in spans if s.kind == SERVER}
    assert set(server) == {o.request_id for o in outs}
    link = handoff_link.LINK.link
    assert link is not None and link.up and link.proc.pid != os.getpid()
    for out in outs:
        span = server[out.request_id]
        a = span.attributes
        assert span.resource["service.name"] == "vllm-child-test"
        assert a[sc.USAGE_INPUT_TOKENS] == len(out.prompt_token_ids) and a[sc.USAGE_OUTPUT_TOKENS] == 4
        assert span.start_ns == int(out.metrics.arrival_time * 1e9)
        assert a[sc.LATENCY_TTFT] == pytest.approx(out.metrics.first_token_latency)
        assert abs(span.duration_s - a[sc.LATENCY_E2E]) < 1e-6
        kids = sorted(s.name for s in spans if s.parent_span_id == span.span_id)
        assert kids == ["decode", "prefill", "queue"]
        assert [e[0] for e in span.events] == [sc.EVENT_FIRST_TOKEN]
    assert state.tracker().in_flight() == 0


def test_parent_context_and_sampling_honoured(offline_llm, child_mode):
    import vllm
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    def under(flags: int, prompt: str):
        remote = SpanContext(trace_id=0x1234 + flags, span_id=0x99, is_remote=True, trace_flags=TraceFlags(flags))
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
        try:
            return offline_llm.generate([prompt], vllm.SamplingParams(max_tokens=2, ignore_eos=True))[0]
        finally:
            otel_context.detach(token)

    sampled, dropped = under(1, "sampled parent"), under(0, "unsampled parent")
    server = {s.attributes[sc.VLLM_REQUEST_ID]: s for s in child_mode.spans() if s.kind == SERVER}
    span = server[sampled.request_id]
    assert (span.trace_id, span.parent_span_id) == (f"{0x1235:032x}", f"{0x99:016x}")
    assert dropped.request_id not in server  # ParentBased sampler: the unsampled parent's decision holds


def test_killed_child_never_fails_inference(offline_llm, child_mode, otel):
    import vllm

    offline_llm.generate(["warm the child"], vllm.SamplingParams(max_tokens=2, ignore_eos=True))
    link = handoff_link.LINK.link
    before = metric_sum(otel.reader, sc.METRIC_HOOK_ERRORS, hook="export_process")
    os.kill(link.proc.pid, signal.SIGKILL)
    link.proc.wait(10)
    outs = offline_llm.generate(["after the kill", "still fine"], vllm.SamplingParams(max_tokens=3, ignore_eos=True))
    assert [len(o.outputs[0].token_ids) for o in outs] == [3, 3]
    assert not link.up and state.tracker().in_flight() == 0
    assert metric_sum(otel.reader, sc.METRIC_HOOK_ERRORS, hook="export_process") - before == 1


def test_full_queue_drops_and_counts_instead_of_blocking(offline_llm, child_mode, otel, monkeypatch):
    """A telemetry child that cannot keep up (its pipe write blocked: injected) never makes vLLM's loop write
    telemetry: beyond the bound a finished request is dropped and counted; arrived + dropped = finished."""
    import threading

    import vllm

    offline_llm.generate(["warm the child"], vllm.SamplingParams(max_tokens=2, ignore_eos=True))
    link = handoff_link.LINK.link
    release = threading.Event()
    real_send = link.send

    def stuck_send(message, records):
        if message[0] == wire.REQUESTS:
            release.wait(30)
        return real_send(message, records)

    monkeypatch.setattr(link, "send", stuck_send)
    monkeypatch.setattr(state.tracker().sink.batcher, "max_queued", 2)
    before = metric_sum(otel.reader, sc.METRIC_HOOK_ERRORS, hook="export_queue")
    threading.Timer(3.0, release.set).start()  # the child "recovers" while generate's flush waits
    prompts = [f"queue full {i}" for i in range(12)]
    outs = offline_llm.generate(prompts, vllm.SamplingParams(max_tokens=3, ignore_eos=True))
    assert [len(o.outputs[0].token_ids) for o in outs] == [3] * 12  # inference untouched
    assert state.tracker().flush(30.0)
    dropped = metric_sum(otel.reader, sc.METRIC_HOOK_ERRORS, hook="export_queue") - before
    ids = {o.request_id for o in outs}
    arrived = {s.attributes[sc.VLLM_REQUEST_ID] for s in child_mode.spans() if s.kind == SERVER} & ids
    assert dropped >= 1 and len(arrived) + dropped == 12
