"""The wire format between the API server and its telemetry child, spelled once and imported by both ends.

Every message is one ``marshal``-ed tuple (format :data:`MARSHAL_VERSION`; ``marshal`` refuses tuple subclasses, so
everything on the wire is a plain tuple, list, dict, str, number, bool or None) whose first element is its kind:

- ``(REQUESTS, [record, ...])`` — finished requests, each :func:`request_record`: ``(parent, headers, capture,
  raw)`` where ``parent`` = ``(trace_id, span_id, trace_flags, is_remote, tracestate)`` or None, ``headers`` the
  W3C trace headers or None, ``capture`` = :func:`..request.facts.raw_capture` or None (vLLM's native tracing on:
  metrics only), ``raw`` = :func:`..request.facts.raw_summary`: values read from vLLM's per-request objects; the
  summary, the attributes and the span plan are built by :func:`read_request` on the writing side.
- ``(ENGINE_INFO, key, (model, buckets))`` — an engine's model name and vLLM bucket boundaries, before its records.
- ``(ENGINE, [(key, engines, is_step, payload), ...], dropped)`` — drained engine items: a step's
  :func:`..engine.facts.step_facts` (``is_step``) or records; ``dropped`` steps the server's queue could not hold.
- ``(ENGINE_SNAPSHOT, model, start_ns, families)`` — vLLM's Prometheus registry now
  (:func:`..engine.registry.snapshot`); the child exports the latest one at each collection.
- ``(FLUSH, n)`` — the child drains, force-flushes both providers and answers ``(FLUSHED, n)``.
- ``(CLOSE, seconds)`` — the server is exiting: at EOF the child shuts its providers down within ``seconds`` (else
  within its own ``OTEL_INSTRUMENTATION_VLLM_SHUTDOWN_TIMEOUT``) and exits.
"""

from __future__ import annotations

import marshal
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from opentelemetry.instrumentation.vllm.request.facts import (RequestSummary, SpanPlan, context_from_headers,
                                                              plan_from_raw, raw_capture, raw_summary,
                                                              summary_from_raw)
from opentelemetry.instrumentation.vllm.safety import timed

#: Message kinds (first element of every message).
REQUESTS, ENGINE, ENGINE_INFO, ENGINE_SNAPSHOT, FLUSH, FLUSHED, CLOSE = "R", "E", "I", "S", "F", "f", "C"
#: marshal format version (4: shared references for interned strings, i.e. repeated attribute keys are cheap).
MARSHAL_VERSION = 4


def dumps(message: tuple) -> bytes:
    """One message's bytes; raises ``ValueError`` for a value marshal cannot carry."""
    return marshal.dumps(message, MARSHAL_VERSION)


def loads(data: bytes) -> tuple:
    """One message from its bytes; raises ``EOFError``/``ValueError``/``TypeError`` for torn or foreign bytes."""
    return marshal.loads(data)


def parent_tuple(context: Any) -> tuple | None:
    """A parent Context as ``(trace_id, span_id, flags, is_remote, tracestate)``; None without a valid span."""
    if context is None:
        return None
    sc = trace.get_current_span(context).get_span_context()
    if not sc.is_valid:
        return None
    return (sc.trace_id, sc.span_id, int(sc.trace_flags), sc.is_remote, sc.trace_state.to_header())


def parent_context(parent: tuple | None) -> Any:
    """Inverse of :func:`parent_tuple`: a Context holding a non-recording span of that span context, or None."""
    if parent is None:
        return None
    trace_id, span_id, flags, is_remote, tracestate = parent
    ctx = SpanContext(trace_id, span_id, is_remote=is_remote, trace_flags=TraceFlags(flags),
                      trace_state=TraceState.from_header([tracestate]) if tracestate else None)
    return trace.set_span_in_context(NonRecordingSpan(ctx))


@timed("writer.record")
def request_record(entry: Any, end_wall: float, reason: str, error_type: str | None,
                   capture_content: bool = False) -> tuple:
    """One finished tracker entry as a record: ``(parent, headers, capture, raw)`` — the parent span context as
    :func:`parent_tuple` (a local parent captured at add) or None, else the W3C trace headers (a dict; extracted where
    the span is written) or None, :func:`..request.facts.raw_capture` or None (vLLM's native tracing on: metrics
    only), :func:`..request.facts.raw_summary`. Values read from vLLM's objects, nothing derived."""
    raw = raw_summary(entry, end_wall, reason, error_type, capture_content)
    c = entry.capture
    if c is None:
        return (None, None, None, raw)
    if c.context is not None:
        return (parent_tuple(c.context), None, raw_capture(c), raw)
    return (None, dict(c.headers) if c.headers else None, raw_capture(c), raw)


def read_request(record: tuple) -> tuple[Any, SpanPlan | None, RequestSummary]:
    """Inverse of :func:`request_record`: ``(parent Context or None, plan or None, summary)`` — where the telemetry is
    written (the child, or the server's writer). Raises ``TypeError`` or ``ValueError`` on a record of the wrong
    shape."""
    parent, headers, capture, raw = record
    summary = summary_from_raw(raw)
    plan = None if capture is None else plan_from_raw(capture, summary.operation, summary.model)
    if parent is not None:
        return parent_context(parent), plan, summary
    return (context_from_headers(headers) if headers else None), plan, summary
