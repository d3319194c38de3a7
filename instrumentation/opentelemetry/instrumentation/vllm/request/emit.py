"""The one writer of a finished request's telemetry with the OpenTelemetry SDK: :func:`emit` turns a
:class:`.facts.RequestSummary` (and its :class:`.facts.SpanPlan`) into the request span and the request metrics. The
same function runs in the API server (in-process writing: :mod:`..handoff.sink`'s thread, or inline under
backpressure) and in the telemetry child (:mod:`..handoff.child`), so both give identical telemetry.

Span: ``chat {model}`` / ``text_completion {model}``, started at vLLM's arrival time; kind SERVER when it is the first
span of the request in this process (no parent, or a remote parent from ``traceparent``), INTERNAL under a local parent
(e.g. FastAPI's SERVER span: one SERVER span per incoming request). Metrics: every finished request is recorded once
in ``gen_ai.server.request.duration`` (always), time-to-first-token (when a first token came), time-per-output-token
(when ≥ 2 tokens were generated); ``error.type`` only on failures. Histogram records carry the request span's context,
so the SDK's ``trace_based`` exemplar filter attaches the request's trace id to them.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.request.facts import RequestSummary, SpanPlan, to_ns
from opentelemetry.instrumentation.vllm.request.instruments import RequestInstruments
from opentelemetry.instrumentation.vllm.safety import report_hook_error, timed
from opentelemetry.instrumentation.vllm.settings import Settings


def emit(tracer: trace.Tracer, settings: Settings, inst: RequestInstruments, plan: SpanPlan | None, parent: Any,
         summary: RequestSummary, hook: str = "request.finalize") -> bool:
    """Write one finished request: its span (when ``plan`` is given: vLLM's native tracing off) under ``parent`` (a
    Context or None), then its metrics, the span being the histograms' exemplar context. Never raises: a failure is
    reported under ``hook`` and a started span is ended. Returns True when written."""
    span = None
    try:
        if plan is not None:
            span = start_span(tracer, plan, parent)
            write_span(tracer, settings, span, plan, summary)
        record_metrics(inst, summary, span)
        return True
    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the writer
        report_hook_error(hook, exc)
        if span is not None and span.is_recording():
            span.end()
        return False


def span_attributes(s: RequestSummary, capture_content: bool) -> dict[str, Any]:
    """The request span's end-of-request attributes (the add-time ones are in the span plan)."""
    a: dict[str, Any] = {
        sc.RESPONSE_MODEL: s.model,
        sc.RESPONSE_FINISH_REASONS: s.reasons,
        sc.VLLM_FINISH_REASON: s.reason,
        sc.USAGE_INPUT_TOKENS: s.prompt_tokens,
        sc.USAGE_OUTPUT_TOKENS: s.output_tokens,
        sc.USAGE_CACHE_READ_INPUT_TOKENS: s.cached_tokens,
        sc.VLLM_PREFILL_COMPLETED: s.prefill_done,
        sc.LATENCY_E2E: s.e2e,
    }
    if s.e2e > 0:
        a[sc.VLLM_TOKENS_PER_SECOND] = s.output_tokens / s.e2e
    for key, value in ((sc.LATENCY_TTFT, s.ttft), (sc.LATENCY_QUEUE, s.queue), (sc.LATENCY_PREFILL, s.prefill),
                       (sc.LATENCY_DECODE, s.decode), (sc.LATENCY_INFERENCE, s.inference), (sc.LATENCY_TPOT, s.tpot),
                       (sc.VLLM_PROMPT_TOKENS_COMPUTED, s.prompt_computed),
                       (sc.VLLM_PROMPT_TOKENS_LOCAL_CACHE, s.prompt_local_cache),
                       (sc.VLLM_PROMPT_TOKENS_EXTERNAL_CACHE, s.prompt_external_cache),
                       (sc.VLLM_SPEC_DRAFT_TOKENS, s.spec_draft_tokens),
                       (sc.VLLM_SPEC_ACCEPTED_TOKENS, s.spec_accepted_tokens),
                       (sc.VLLM_NUM_PREEMPTIONS, s.preemptions)):
        if value is not None:
            a[key] = value
    if capture_content and s.output_texts:
        a[sc.OUTPUT_MESSAGES] = json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": t}], "finish_reason": r}
             for t, r in zip(s.output_texts, s.reasons)], ensure_ascii=False)
    if s.error_type is not None:
        a[sc.ERROR_TYPE] = s.error_type
    return a


@timed("writer.span_start")
def start_span(tracer: trace.Tracer, plan: SpanPlan, parent: Any) -> Any:
    """Start the request span of ``plan`` at its start time (epoch ns) under ``parent`` (a Context or None)."""
    return tracer.start_span(plan.name, context=parent, kind=plan.kind, start_time=plan.start_ns,
                             attributes=plan.attrs)


@timed("writer.span")
def write_span(tracer: trace.Tracer, settings: Settings, span: Any, plan: SpanPlan, s: RequestSummary) -> None:
    """Set the summary's attributes on the started ``span``, add the first-token event and the queue/prefill/decode
    children (when enabled and the engine timestamps exist), set ERROR status for failures, end it at ``s.end``."""
    attrs = span_attributes(s, settings.capture_content)
    if sc.RESPONSE_ID not in plan.attrs and s.response_id is not None:
        attrs[sc.RESPONSE_ID] = s.response_id
    span.set_attributes(attrs)
    if s.ttft is not None:
        span.add_event(sc.EVENT_FIRST_TOKEN, {sc.LATENCY_TTFT: s.ttft}, timestamp=to_ns(min(s.arrival + s.ttft, s.end)))
    if settings.phase_spans and s.t_scheduled is not None and s.t_first_token is not None:
        ctx = trace.set_span_in_context(span)
        for name, t0, t1 in ((sc.SPAN_QUEUE, s.arrival, s.t_scheduled), (sc.SPAN_PREFILL, s.t_scheduled,
                                                                          s.t_first_token),
                             (sc.SPAN_DECODE, s.t_first_token, s.end)):
            tracer.start_span(name, context=ctx, kind=SpanKind.INTERNAL, start_time=to_ns(t0)).end(end_time=to_ns(t1))
    if s.error_type is not None:
        span.set_status(Status(StatusCode.ERROR, f"{s.reason}: {s.error_type}"))
    span.end(end_time=to_ns(s.end))


@timed("writer.metrics")
def record_metrics(inst: RequestInstruments, s: RequestSummary, span: Any = None) -> None:
    """Record one finished request: duration always, TTFT when a first token came, TPOT when ≥ 2 generated tokens,
    token usage (input, output), the requests counter by ``vllm.finish_reason``, zombies for timeouts. ``span`` (the
    request span, or None) is the context of the histogram records: exemplars then reference its trace."""
    attrs: dict[str, Any] = {sc.OPERATION_NAME: s.operation, sc.PROVIDER_NAME: sc.PROVIDER_VLLM,
                             sc.REQUEST_MODEL: s.model, sc.RESPONSE_MODEL: s.model}
    if s.error_type is not None:
        attrs[sc.ERROR_TYPE] = s.error_type
    ctx = trace.set_span_in_context(span, otel_context.Context()) if span is not None else None
    inst.duration.record(s.e2e, attrs, context=ctx)
    if s.ttft is not None:
        inst.ttft.record(s.ttft, attrs, context=ctx)
    if s.tpot is not None:
        inst.tpot.record(s.tpot, attrs, context=ctx)
    inst.token_usage.record(s.prompt_tokens, {**attrs, sc.TOKEN_TYPE: "input"}, context=ctx)
    inst.token_usage.record(s.output_tokens, {**attrs, sc.TOKEN_TYPE: "output"}, context=ctx)
    inst.requests.add(1, {**attrs, sc.VLLM_FINISH_REASON: s.reason})
    if s.reason == sc.FINISH_TIMEOUT:
        inst.zombies.add(1, {sc.REQUEST_MODEL: s.model})
