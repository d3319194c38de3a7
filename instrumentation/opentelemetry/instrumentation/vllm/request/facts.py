"""Facts about one request, no OpenTelemetry SDK here: what the serving layer labels (:class:`RequestInfo`), what
the tracker captures at add (:class:`Capture`), the request span to create (:class:`SpanPlan`, :func:`build_plan`) and
the finished request's telemetry facts (:class:`RequestSummary`, :func:`summarize`), computed once from vLLM's own
per-request state and read by the one writer (:mod:`.emit`), here or in the telemetry child. This is the split vLLM
makes between ``FinishedRequestStats`` (facts) and its stat loggers (sinks).

Latency definitions are vLLM's (``vllm/v1/metrics/stats.py`` ``update_from_finished_request``): queue = scheduled -
queued, prefill = first token - scheduled, decode = last token - first token, inference = last token - scheduled,
TPOT = decode / (generated tokens - 1). All durations are seconds (float); ``arrival``/``end``/``t_*`` are epoch
seconds (wall clock); span times are epoch nanoseconds (:func:`to_ns`).
"""

from __future__ import annotations

import json
import operator
import time
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.safety import timed

_PROPAGATOR = TraceContextTextMapPropagator()


def to_ns(seconds: float) -> int:
    """Epoch seconds (float) -> epoch nanoseconds (int), the unit of OTel span timestamps."""
    return int(seconds * 1e9)


def monotonic_to_wall_offset() -> float:
    """Seconds to add to a ``time.monotonic()`` reading to get wall-clock (epoch) seconds.

    vLLM's engine core stamps QUEUED/SCHEDULED/first/last token with ``time.monotonic()`` in its own process;
    CLOCK_MONOTONIC is system-wide on Linux, so the frontend's offset converts them (same host only).
    """
    return time.time() - time.monotonic()


# ---- at add --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestInfo:
    """What the serving layer knows and the engine does not: the GenAI operation, ``stream`` and the model name the
    client asked for. Set in a context variable by the OpenAI serving / ``LLM.chat`` hooks."""

    operation: str
    stream: bool | None = None
    model: str | None = None
    #: The id the client sees (``chatcmpl-…`` / ``cmpl-…``); completions add ``-{prompt index}`` for the engine.
    response_id: str | None = None
    #: W3C trace headers of the HTTP request (AsyncLLM drops them before the engine unless native tracing is on).
    trace_headers: Any = None


REQUEST_INFO: ContextVar[RequestInfo | None] = ContextVar("vllm_otel_request_info", default=None)


class SpanPlan(NamedTuple):
    """The request span to create later (writer thread or telemetry child) with its true start time: name, start
    (epoch ns), add-time attributes and kind. Its parent travels beside it (:func:`parent_of`)."""

    name: str
    start_ns: int
    attrs: dict[str, Any]
    #: SERVER when the request span is the first span of the request in this process, INTERNAL under a local parent.
    kind: SpanKind = SpanKind.SERVER


class Capture(NamedTuple):
    """What ``on_add`` keeps for the request span (references and scalars only; attributes are built later)."""

    sampling_params: Any
    request_id: str  # external id the client knows (or internal)
    parent_request_id: str | None  # parallel sampling: the parent's external id
    parent_n: int | None
    lora_name: str | None
    prompt: str | None  # only with content capture on
    async_engine: bool
    info: "RequestInfo | None"
    context: Any
    headers: Any
    kind: SpanKind
    arrival: float


def build_plan(c: Capture, operation: str, model: str) -> SpanPlan:
    """The request span's plan (name, parent, start, add-time attributes) from what ``on_add`` captured."""
    sp, info = c.sampling_params, c.info
    attrs: dict[str, Any] = {
        sc.OPERATION_NAME: operation,
        sc.PROVIDER_NAME: sc.PROVIDER_VLLM,
        sc.REQUEST_MODEL: model,
        sc.VLLM_REQUEST_ID: c.parent_request_id if c.parent_request_id is not None else c.request_id,
        sc.VLLM_ENGINE: "async_llm" if c.async_engine else "llm_engine",
    }
    if info is not None and info.response_id:
        attrs[sc.RESPONSE_ID] = info.response_id
    if info is not None and info.stream is not None:
        attrs[sc.REQUEST_STREAM] = info.stream
    elif info is None:
        attrs[sc.REQUEST_STREAM] = False  # offline LLM returns whole outputs
    if sp is not None:
        if sp.max_tokens is not None:
            attrs[sc.REQUEST_MAX_TOKENS] = sp.max_tokens
        attrs[sc.REQUEST_TEMPERATURE] = float(sp.temperature)
        attrs[sc.REQUEST_TOP_P] = float(sp.top_p)
        attrs[sc.REQUEST_TOP_K] = int(sp.top_k)
        attrs[sc.REQUEST_CHOICE_COUNT] = int(c.parent_n if c.parent_n is not None else sp.n)
        if sp.seed is not None:
            attrs[sc.REQUEST_SEED] = int(sp.seed)
    if c.lora_name is not None:
        attrs[sc.VLLM_LORA_NAME] = c.lora_name
    if c.prompt:
        attrs[sc.INPUT_MESSAGES] = json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": c.prompt}]}], ensure_ascii=False)
    return SpanPlan(f"{operation} {model}".strip(), to_ns(c.arrival), attrs, c.kind)


def parent_of(c: Capture) -> Any:
    """The request span's parent Context: the one captured at add (a local parent), else the one the W3C trace
    headers carry, else None (a root span)."""
    if c.context is not None:
        return c.context
    if c.headers:
        return _PROPAGATOR.extract(c.headers)
    return None


# ---- at finish -----------------------------------------------------------------------------------------------------
_ERROR_REASONS = (sc.FINISH_ERROR, sc.FINISH_TIMEOUT)


@dataclass(slots=True)
class RequestSummary:
    """One request's telemetry facts. ``None`` means "did not happen / not known" (e.g. ``ttft`` of a request aborted
    before its first token, ``tpot`` with fewer than 2 generated tokens, ``spec_*`` without speculative decoding)."""

    operation: str
    model: str
    reason: str  #: vllm.finish_reason: worst of the siblings' reasons (error > abort > length > first), or timeout
    reasons: list[str]  #: per choice, gen_ai.response.finish_reasons
    error_type: str | None  #: set only for failures (engine error, timeout)
    arrival: float  #: epoch seconds (vLLM's arrival_time)
    end: float  #: epoch seconds, >= arrival
    e2e: float  #: seconds, end - arrival
    prompt_tokens: int
    output_tokens: int  #: all choices, exact (detokenizer token ids where present)
    cached_tokens: int  #: prompt tokens not computed (local prefix cache + external KV), vLLM's num_cached_tokens
    preemptions: int
    response_id: str | None = None
    ttft: float | None = None
    tpot: float | None = None
    queue: float | None = None
    prefill: float | None = None
    decode: float | None = None
    inference: float | None = None
    t_scheduled: float | None = None  #: epoch seconds, clamped into [arrival, end]
    t_first_token: float | None = None  #: epoch seconds, clamped into [t_scheduled, end]
    prefill_done: bool = False  #: the first state left prefill (a token or its prefill stats arrived)
    prompt_computed: int | None = None  #: prompt tokens prefilled locally; set once prefill is done
    prompt_local_cache: int | None = None  #: prompt tokens from the local prefix cache
    prompt_external_cache: int | None = None  #: prompt tokens from external KV transfer (KV connector / P-D)
    spec_draft_tokens: int | None = None  #: drafted tokens (all choices), when vLLM reports per-request spec stats
    spec_accepted_tokens: int | None = None
    output_texts: list[str] = field(default_factory=list)  #: only filled with content capture on

    def as_tuple(self) -> tuple:
        """The fields in declaration order (plain values: what :mod:`..handoff.wire` marshals to the child)."""
        return _FIELDS_GETTER(self)

    @classmethod
    def from_tuple(cls, values: tuple) -> "RequestSummary":
        """Inverse of :meth:`as_tuple`; raises ``TypeError`` on a tuple of the wrong length."""
        return cls(*values)


_FIELDS_GETTER = operator.attrgetter(*(f.name for f in fields(RequestSummary)))


@timed("writer.summary")
def summarize(entry: Any, end_wall: float, reason: str, error_type: str | None,
              capture_content: bool = False) -> RequestSummary:
    """Facts of a finished entry (see :mod:`.tracker`): ``states`` (vLLM ``RequestState``, siblings of an ``n>1``
    request), ``reasons`` collected per sibling, ``arrival`` epoch seconds. ``end_wall`` epoch seconds; ``reason`` one
    of ``semconv.FINISH_*``; ``error_type`` for failures (engine error, timeout)."""
    states = entry.states
    first = states[0]
    stats = first.stats
    reasons = list(entry.reasons) or [reason]
    vllm_reason = reason if reason in _ERROR_REASONS else _worst(reasons)
    if reason == sc.FINISH_TIMEOUT:
        reasons = [sc.FINISH_TIMEOUT]
    arrival = entry.arrival
    end = max(end_wall, arrival)
    prompt = int(first.prompt_len or 0)
    cached = int(first.num_cached_tokens or 0)
    s = RequestSummary(
        operation=entry.operation, model=entry.model, reason=vllm_reason, reasons=reasons, error_type=error_type,
        arrival=arrival, end=end, e2e=end - arrival, prompt_tokens=prompt,
        output_tokens=sum(_num_output_tokens(st) for st in states), cached_tokens=cached,
        preemptions=sum(st.stats.num_preemptions for st in states if st.stats is not None),
        response_id=(first.parent_req.external_req_id if first.parent_req is not None else first.external_req_id))
    if stats is not None and stats.first_token_latency > 0:
        s.ttft = float(stats.first_token_latency)
        q, sch, f, last = stats.queued_ts, stats.scheduled_ts, stats.first_token_ts, stats.last_token_ts
        if q and sch and f and last:
            s.queue, s.prefill, s.decode, s.inference = sch - q, f - sch, last - f, last - sch
            if stats.num_generation_tokens > 1:
                s.tpot = s.decode / (stats.num_generation_tokens - 1)
            # Phase spans tile the request: queue from arrival (frontend) to scheduled, prefill to the engine's first
            # token, decode to the end of the request as the frontend saw it.
            off = monotonic_to_wall_offset()
            s.t_scheduled = min(max(sch + off, arrival), end)
            s.t_first_token = min(max(f + off, s.t_scheduled), end)
    s.prefill_done = not getattr(first, "is_prefilling", True) or entry.prefill_stats is not None
    if s.prefill_done:
        ps = entry.prefill_stats
        external = int(ps.num_external_cached_tokens) if ps is not None else int(
            getattr(first, "remote_prefill_cached_tokens", None) or 0)
        external = min(external, cached)
        s.prompt_external_cache = external
        s.prompt_local_cache = cached - external
        s.prompt_computed = max(prompt - cached, 0)
    spec = [st.spec_decode_metrics for st in states if getattr(st, "spec_decode_metrics", None) is not None]
    if spec:
        s.spec_draft_tokens = sum(int(m.num_draft_tokens) for m in spec)
        s.spec_accepted_tokens = sum(j * c for m in spec for j, c in enumerate(m.histogram))
    if capture_content:
        s.output_texts = [getattr(st.detokenizer, "output_text", "") for st in states if st.detokenizer is not None]
    return s


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
