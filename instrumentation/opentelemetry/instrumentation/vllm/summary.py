"""Facts about one finished request, computed once from vLLM's own per-request state (no OpenTelemetry here).

:func:`summarize` turns a finished in-flight entry (its ``RequestState`` objects, vLLM's ``RequestStateStats``) into a
:class:`RequestSummary`; the sinks — the span writer and the metric recorder in :mod:`.record` — read only the
summary. This is the split vLLM makes between ``FinishedRequestStats`` (facts) and its stat loggers (sinks).

Latency definitions are vLLM's (``vllm/v1/metrics/stats.py`` ``update_from_finished_request``): queue = scheduled -
queued, prefill = first token - scheduled, decode = last token - first token, inference = last token - scheduled,
TPOT = decode / (generated tokens - 1). All durations are seconds (float); ``arrival``/``end``/``t_*`` are epoch
seconds (wall clock).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from typing import Any

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.utils import monotonic_to_wall_offset, timed

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

    @property
    def failed(self) -> bool:
        return self.error_type is not None

    def as_tuple(self) -> tuple:
        """The fields in declaration order (plain values: what :mod:`.export_process` marshals to the child)."""
        return _FIELDS_GETTER(self)

    @classmethod
    def from_tuple(cls, values: tuple) -> "RequestSummary":
        """Inverse of :meth:`as_tuple`; raises ``TypeError`` on a tuple of the wrong length."""
        return cls(*values)


_FIELDS_GETTER = operator.attrgetter(*(f.name for f in fields(RequestSummary)))


@timed("writer.summary")
def summarize(entry: Any, end_wall: float, reason: str, error_type: str | None,
              capture_content: bool = False) -> RequestSummary:
    """Facts of a finished entry (see :mod:`.requests`): ``states`` (vLLM ``RequestState``, siblings of an ``n>1``
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
