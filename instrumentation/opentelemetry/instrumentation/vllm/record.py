"""Writing one finished request: the SERVER span with its attributes, event and phase children, and the metrics.

Runs on the tracker's writer thread (see :mod:`.requests`). Latency definitions are vLLM's (``vllm/v1/metrics/stats.py``
``update_from_finished_request``): queue = scheduled - queued, prefill = first token - scheduled, decode = last token -
first token, TPOT = decode / (output tokens - 1); all seconds.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.instruments import Instruments
from opentelemetry.instrumentation.vllm.utils import Settings, monotonic_to_wall_offset, to_ns

_PROPAGATOR = TraceContextTextMapPropagator()
_ERROR_REASONS = (sc.FINISH_ERROR, sc.FINISH_TIMEOUT)


def write_request(tracer: trace.Tracer, inst: Instruments, settings: Settings, entry: Any, end_wall: float,
                  reason: str, error_type: str | None) -> None:
    """Create and end the request span (attributes, first-token event, queue/prefill/decode children) and record
    the request metrics. ``entry`` is a finished in-flight entry; ``end_wall`` epoch seconds; ``reason`` one of
    ``semconv.FINISH_*``; ``error_type`` sets status ERROR when given."""
    states = entry.states
    plan = entry.span
    span = None
    if plan is not None:
        parent = plan.context
        if parent is None and plan.headers:
            parent = _PROPAGATOR.extract(plan.headers)
        span = tracer.start_span(plan.name, context=parent, kind=SpanKind.SERVER, start_time=plan.start_ns,
                                       attributes=plan.attrs)
        entry.span = span  # so a failure below still ends it
    first = states[0]
    stats = first.stats
    prompt_tokens = int(first.prompt_len or 0)
    output_tokens = sum(_num_output_tokens(s) for s in states)
    cached = int(first.num_cached_tokens or 0)
    preemptions = sum(s.stats.num_preemptions for s in states if s.stats is not None)
    reasons = entry.reasons or [reason]
    vllm_reason = reason if reason in _ERROR_REASONS else _worst(reasons)
    if reason == sc.FINISH_TIMEOUT:
        reasons = [sc.FINISH_TIMEOUT]
    arrival = entry.arrival
    end_wall = max(end_wall, arrival)
    e2e = end_wall - arrival

    attrs: dict[str, Any] = {
        sc.RESPONSE_MODEL: entry.model,
        sc.RESPONSE_FINISH_REASONS: reasons,
        sc.VLLM_FINISH_REASON: vllm_reason,
        sc.USAGE_INPUT_TOKENS: prompt_tokens,
        sc.USAGE_OUTPUT_TOKENS: output_tokens,
        sc.USAGE_CACHE_READ_INPUT_TOKENS: cached,
        sc.VLLM_NUM_PREEMPTIONS: preemptions,
        sc.LATENCY_E2E: e2e,
    }
    if plan is not None and sc.RESPONSE_ID not in plan.attrs:
        attrs[sc.RESPONSE_ID] = (first.parent_req.external_req_id if first.parent_req is not None
                                 else first.external_req_id)
    if e2e > 0:
        attrs[sc.VLLM_TOKENS_PER_SECOND] = output_tokens / e2e
    ttft = tpot = None
    phases: list[tuple[str, float, float]] = []
    if stats is not None and stats.first_token_latency > 0:
        ttft = float(stats.first_token_latency)
        attrs[sc.LATENCY_TTFT] = ttft
        off = monotonic_to_wall_offset()
        q, s, f, last = stats.queued_ts, stats.scheduled_ts, stats.first_token_ts, stats.last_token_ts
        if q and s and f and last:
            decode = last - f
            attrs[sc.LATENCY_QUEUE] = s - q
            attrs[sc.LATENCY_PREFILL] = f - s
            attrs[sc.LATENCY_DECODE] = decode
            attrs[sc.LATENCY_INFERENCE] = last - s
            gen = stats.num_generation_tokens
            if gen > 1:
                tpot = decode / (gen - 1)
                attrs[sc.LATENCY_TPOT] = tpot
            # Child spans tile the request: queue from arrival (frontend) to scheduled, prefill to the engine's
            # first token, decode to the end of the request as the frontend saw it.
            t_sched = min(max(s + off, arrival), end_wall)
            t_first = min(max(f + off, t_sched), end_wall)
            phases = [(sc.SPAN_QUEUE, arrival, t_sched), (sc.SPAN_PREFILL, t_sched, t_first),
                      (sc.SPAN_DECODE, t_first, end_wall)]

    if span is not None:
        if settings.capture_content:
            texts = [getattr(s.detokenizer, "output_text", "") for s in states if s.detokenizer is not None]
            attrs[sc.OUTPUT_MESSAGES] = json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": t}], "finish_reason": r}
                 for t, r in zip(texts, reasons)], ensure_ascii=False)
        if error_type is not None:
            attrs[sc.ERROR_TYPE] = error_type
        span.set_attributes(attrs)
        if ttft is not None:
            span.add_event(sc.EVENT_FIRST_TOKEN, {sc.LATENCY_TTFT: ttft},
                           timestamp=to_ns(min(arrival + ttft, end_wall)))
        if phases and settings.phase_spans:
            ctx = trace.set_span_in_context(span)
            for name, t0, t1 in phases:
                tracer.start_span(name, context=ctx, kind=SpanKind.INTERNAL,
                                        start_time=to_ns(t0)).end(end_time=to_ns(t1))
        if error_type is not None:
            span.set_status(Status(StatusCode.ERROR, f"{vllm_reason}: {error_type}"))
        span.end(end_time=to_ns(end_wall))

    metric_attrs: dict[str, Any] = {sc.OPERATION_NAME: entry.operation, sc.PROVIDER_NAME: sc.PROVIDER_VLLM,
                                    sc.REQUEST_MODEL: entry.model, sc.RESPONSE_MODEL: entry.model}
    if error_type is not None:
        metric_attrs[sc.ERROR_TYPE] = error_type
        inst.duration.record(e2e, metric_attrs)
    if ttft is not None:
        inst.ttft.record(ttft, metric_attrs)
    if tpot is not None:
        inst.tpot.record(tpot, metric_attrs)
    inst.token_usage.record(prompt_tokens, {**metric_attrs, sc.TOKEN_TYPE: "input"})
    inst.token_usage.record(output_tokens, {**metric_attrs, sc.TOKEN_TYPE: "output"})
    inst.requests.add(1, {**metric_attrs, sc.VLLM_FINISH_REASON: vllm_reason})
    if reason == sc.FINISH_TIMEOUT:
        inst.zombies.add(1, {sc.REQUEST_MODEL: entry.model})


def _num_output_tokens(state: Any) -> int:
    """Exact output tokens: the detokenizer's token ids (stop-string surplus already trimmed), else engine count."""
    if state.detokenizer is not None:
        return int(state.detokenizer.num_output_tokens())
    return int(state.stats.num_generation_tokens) if state.stats is not None else 0


def _worst(reasons: list[str]) -> str:
    for r in (sc.FINISH_ERROR, sc.FINISH_ABORT, sc.FINISH_LENGTH):
        if r in reasons:
            return r
    return reasons[0]
