"""Facts about one request, no OpenTelemetry SDK here: what the serving layer labels (:class:`RequestInfo`), what
the tracker captures at add (:class:`Capture`), the request span to create (:class:`SpanPlan`, :func:`build_plan`) and
the finished request's telemetry facts (:class:`RequestSummary`, :func:`summarize`), computed once from vLLM's own
per-request state and read by the one writer (:mod:`.emit`), here or in the telemetry child. This is the split vLLM
makes between ``FinishedRequestStats`` (facts) and its stat loggers (sinks).

Two steps, so that the API server pays only for reading: :func:`raw_summary` / :func:`raw_capture` (the server's
writer thread) read vLLM's objects into plain tuples; :func:`summary_from_raw` / :func:`plan_from_raw` (where the
telemetry is written: the telemetry child, or the server's writer in-process) derive everything from them.

Latency definitions are vLLM's (``vllm/v1/metrics/stats.py`` ``update_from_finished_request``): queue = scheduled -
queued, prefill = first token - scheduled, decode = last token - first token, inference = last token - scheduled,
TPOT = decode / (generated tokens - 1). All durations are seconds (float); ``arrival``/``end``/``t_*`` are epoch
seconds (wall clock); span times are epoch nanoseconds (:func:`to_ns`).
"""

from __future__ import annotations

import json
import math
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
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
    #: ``(running, waiting, kv usage)`` as vLLM last delivered them to this process for the request's engine (raw:
    #: gauge floats or ``SchedulerStats`` values; :mod:`..engine.arrival`), or None: no stats delivered yet
    engine_state: tuple | None = None


def build_plan(c: Capture, operation: str, model: str) -> SpanPlan:
    """The request span's plan (name, parent, start, add-time attributes) from what ``on_add`` captured."""
    return plan_from_raw(raw_capture(c), operation, model)


#: :func:`raw_capture`'s fields, in order (plain values: the wire carries them to the telemetry child).
RAW_CAPTURE = ("max_tokens", "temperature", "top_p", "top_k", "n", "seed", "request_id", "lora_name", "prompt",
               "async_engine", "response_id", "stream", "kind", "arrival", "engine_state")


def raw_capture(c: Capture) -> tuple:
    """The values of a :class:`Capture` the span plan needs, read from vLLM's objects, as a plain tuple
    (:data:`RAW_CAPTURE`); nothing derived (that is :func:`plan_from_raw`'s, in the telemetry child)."""
    sp, info = c.sampling_params, c.info
    if sp is None:
        params: tuple = (None, None, None, None, None, None)
    else:
        params = (sp.max_tokens, sp.temperature, sp.top_p, sp.top_k, c.parent_n if c.parent_n is not None else sp.n,
                  sp.seed)
    return (*params, c.parent_request_id if c.parent_request_id is not None else c.request_id, c.lora_name,
            c.prompt or None, c.async_engine, info.response_id if info is not None else None,
            (info.stream if info is not None else False),  # offline LLM (no info): whole outputs
            c.kind.value, c.arrival, c.engine_state)


def plan_from_raw(raw: tuple, operation: str, model: str) -> SpanPlan:
    """The span plan of a :func:`raw_capture` tuple; raises ``ValueError``/``TypeError`` on a malformed one."""
    (max_tokens, temperature, top_p, top_k, n, seed, request_id, lora_name, prompt, async_engine, response_id,
     stream, kind, arrival, engine_state) = raw
    attrs: dict[str, Any] = {
        sc.OPERATION_NAME: operation,
        sc.PROVIDER_NAME: sc.PROVIDER_VLLM,
        sc.REQUEST_MODEL: model,
        sc.VLLM_REQUEST_ID: request_id,
        sc.VLLM_ENGINE: "async_llm" if async_engine else "llm_engine",
    }
    if response_id:
        attrs[sc.RESPONSE_ID] = response_id
    if stream is not None:
        attrs[sc.REQUEST_STREAM] = bool(stream)
    if temperature is not None:  # sampling params present
        if max_tokens is not None:
            attrs[sc.REQUEST_MAX_TOKENS] = int(max_tokens)
        attrs[sc.REQUEST_TEMPERATURE] = float(temperature)
        attrs[sc.REQUEST_TOP_P] = float(top_p)
        attrs[sc.REQUEST_TOP_K] = int(top_k)
        attrs[sc.REQUEST_CHOICE_COUNT] = int(n)
        if seed is not None:
            attrs[sc.REQUEST_SEED] = int(seed)
    if lora_name is not None:
        attrs[sc.VLLM_LORA_NAME] = lora_name
    if engine_state is not None:
        attrs.update(arrival_attrs(engine_state))
    if prompt:
        attrs[sc.INPUT_MESSAGES] = json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": prompt}]}], ensure_ascii=False)
    return SpanPlan(f"{operation} {model}".strip(), to_ns(arrival), attrs, SpanKind(kind))


def arrival_attrs(engine_state: Any) -> dict[str, Any]:
    """The ``vllm.request.arrival.*`` attributes of a raw ``(running, waiting, kv usage)`` (:mod:`..engine.arrival`):
    counts as ints when they are whole, finite, in ``[0, 2**63)``; the KV-cache usage as a float when finite in
    ``[0, 1]``; anything else (NaN, ±Inf, negative, not a number) is absent, never guessed. Raises ``ValueError`` on a
    tuple of the wrong length."""
    running, waiting, kv = engine_state
    out: dict[str, Any] = {}
    for key, value in ((sc.VLLM_ARRIVAL_RUNNING, running), (sc.VLLM_ARRIVAL_WAITING, waiting)):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
                and 0 <= value < 2**63 and value == int(value):
            out[key] = int(value)
    if isinstance(kv, (int, float)) and not isinstance(kv, bool) and math.isfinite(kv) and 0.0 <= kv <= 1.0:
        out[sc.VLLM_ARRIVAL_KV_CACHE_USAGE] = float(kv)
    return out


def context_from_headers(headers: Any) -> Any:
    """The Context W3C trace headers carry (``traceparent``/``tracestate``), or an empty one."""
    return _PROPAGATOR.extract(headers)


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
    preemptions: int | None  #: None on a vLLM whose stats carry no per-request count (vllm < 0.30)
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



def summarize(entry: Any, end_wall: float, reason: str, error_type: str | None,
              capture_content: bool = False) -> RequestSummary:
    """Facts of a finished entry (see :mod:`.tracker`): ``states`` (vLLM ``RequestState``, siblings of an ``n>1``
    request), ``reasons`` collected per sibling, ``arrival`` epoch seconds. ``end_wall`` epoch seconds; ``reason`` one
    of ``semconv.FINISH_*``; ``error_type`` for failures (engine error, timeout)."""
    return summary_from_raw(raw_summary(entry, end_wall, reason, error_type, capture_content))


@timed("writer.raw")
def raw_summary(entry: Any, end_wall: float, reason: str, error_type: str | None,
                capture_content: bool = False) -> tuple:
    """What :func:`summary_from_raw` needs of a finished entry, read from vLLM's per-request objects as a plain tuple
    (the API server's share: reads only; the arithmetic and the :class:`RequestSummary` are built where the telemetry
    is written, in the telemetry child by default). Per state: ``(stats, output tokens, spec, output text)`` with
    ``stats`` = ``(first_token_latency, queued_ts, scheduled_ts, first_token_ts, last_token_ts,
    num_generation_tokens, num_preemptions | None)`` or None, ``spec`` = ``(num_draft_tokens, accepted histogram)`` or
    None."""
    states = entry.states
    first = states[0]
    ps = entry.prefill_stats
    per_state = []
    for st in states:
        stats = st.stats
        spec = getattr(st, "spec_decode_metrics", None)
        per_state.append((
            None if stats is None else (stats.first_token_latency, stats.queued_ts, stats.scheduled_ts,
                                        stats.first_token_ts, stats.last_token_ts, stats.num_generation_tokens,
                                        getattr(stats, "num_preemptions", None)),
            _num_output_tokens(st),
            None if spec is None else (int(spec.num_draft_tokens), list(spec.histogram)),
            getattr(st.detokenizer, "output_text", "") if capture_content and st.detokenizer is not None else None))
    return (entry.operation, entry.model, list(entry.reasons), reason, error_type, entry.arrival, end_wall,
            monotonic_to_wall_offset(), first.prompt_len, first.num_cached_tokens,
            first.parent_req.external_req_id if first.parent_req is not None else first.external_req_id,
            not getattr(first, "is_prefilling", True),
            None if ps is None else ps.num_external_cached_tokens,
            getattr(first, "remote_prefill_cached_tokens", None), per_state)


def summary_from_raw(raw: tuple) -> RequestSummary:
    """The :class:`RequestSummary` of a :func:`raw_summary` tuple (pure; the telemetry child runs it). Raises
    ``ValueError``/``TypeError`` on a malformed tuple."""
    (operation, model, reasons, reason, error_type, arrival, end_wall, off, prompt_len, num_cached, response_id,
     left_prefill, ps_external, remote_cached, per_state) = raw
    reasons = list(reasons) or [reason]
    vllm_reason = reason if reason in _ERROR_REASONS else _worst(reasons)
    if reason == sc.FINISH_TIMEOUT:
        reasons = [sc.FINISH_TIMEOUT]
    end = max(end_wall, arrival)
    prompt = int(prompt_len or 0)
    cached = int(num_cached or 0)
    preempt = [p[0][6] for p in per_state if p[0] is not None]
    s = RequestSummary(
        operation=operation, model=model, reason=vllm_reason, reasons=reasons, error_type=error_type,
        arrival=arrival, end=end, e2e=end - arrival, prompt_tokens=prompt,
        output_tokens=sum(int(p[1]) for p in per_state), cached_tokens=cached,
        preemptions=None if not preempt or any(x is None for x in preempt) else sum(preempt),
        response_id=response_id)
    stats = per_state[0][0]
    if stats is not None and stats[0] > 0:
        ftl, q, sch, f, last, generated, _ = stats
        s.ttft = float(ftl)
        if q and sch and f and last:
            s.queue, s.prefill, s.decode, s.inference = sch - q, f - sch, last - f, last - sch
            if generated > 1:
                s.tpot = s.decode / (generated - 1)
            # Phase spans tile the request: queue from arrival (frontend) to scheduled, prefill to the engine's first
            # token, decode to the end of the request as the frontend saw it (only from finite timestamps).
            if math.isfinite(sch + off) and math.isfinite(f + off):
                s.t_scheduled = min(max(sch + off, arrival), end)
                s.t_first_token = min(max(f + off, s.t_scheduled), end)
    s.prefill_done = bool(left_prefill) or ps_external is not None
    if s.prefill_done:
        external = int(ps_external) if ps_external is not None else int(remote_cached or 0)
        external = min(external, cached)
        s.prompt_external_cache = external
        s.prompt_local_cache = cached - external
        s.prompt_computed = max(prompt - cached, 0)
    spec = [p[2] for p in per_state if p[2] is not None]
    if spec:
        s.spec_draft_tokens = sum(int(d) for d, _ in spec)
        s.spec_accepted_tokens = sum(j * c for _, hist in spec for j, c in enumerate(hist))
    texts = [p[3] for p in per_state if p[3] is not None]
    if texts:
        s.output_texts = texts
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
