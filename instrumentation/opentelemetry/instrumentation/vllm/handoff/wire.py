"""The wire format between the API server and its telemetry child, spelled once and imported by both ends.

Every message is one ``marshal``-ed tuple (format :data:`MARSHAL_VERSION`; ``marshal`` refuses tuple subclasses, so
everything on the wire is a plain tuple, list, dict, str, number, bool or None) whose first element is its kind:

- ``(REQUESTS, [record, ...])`` — finished requests, each :func:`request_record`: ``(parent, plan, summary)`` where
  ``parent`` = ``(trace_id, span_id, trace_flags, is_remote, tracestate)`` or None, ``plan`` = ``(name, start_ns,
  attrs, kind)`` or None (vLLM's native tracing on: metrics only), ``summary`` =
  :meth:`..request.facts.RequestSummary.as_tuple`.
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
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState

from opentelemetry.instrumentation.vllm.request.facts import RequestSummary, SpanPlan

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


def request_record(parent: Any, plan: SpanPlan | None, summary: RequestSummary) -> tuple:
    """One finished request on the wire (``parent``: a Context or None)."""
    return (parent_tuple(parent), None if plan is None else (plan.name, plan.start_ns, plan.attrs, plan.kind.value),
            summary.as_tuple())


def read_request(record: tuple) -> tuple[Any, SpanPlan | None, RequestSummary]:
    """Inverse of :func:`request_record`: ``(parent Context or None, plan or None, summary)``; raises ``TypeError``
    or ``ValueError`` on a record of the wrong shape."""
    parent, plan, fields = record
    summary = RequestSummary.from_tuple(fields)
    if plan is not None:
        name, start_ns, attrs, kind = plan
        plan = SpanPlan(name, start_ns, attrs, SpanKind(kind))
    return parent_context(parent), plan, summary
