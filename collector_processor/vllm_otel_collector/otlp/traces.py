"""OTLP traces → ``otel_traces`` columns: the one place where a span becomes a row.

Input is the protobuf body of an ``ExportTraceServiceRequest`` (bytes); output is a :class:`TraceBatch` whose
``columns`` map each ``otel_traces`` column name to a list with one value per accepted span, ready for a columnar
insert. Row mapping (matches the collector-contrib clickhouseexporter):

* ``Timestamp`` = ``start_time_unix_nano`` (int, nanoseconds → DateTime64(9)); ``Duration`` = end − start (ns).
* ``TraceId``/``SpanId``/``ParentSpanId``/``Links.TraceId``/``Links.SpanId``: lowercase hex ("" when empty).
* ``SpanKind``: Unspecified/Internal/Server/Client/Producer/Consumer; ``StatusCode``: Unset/Ok/Error.
* ``ServiceName`` = resource attribute ``service.name``; attribute values stringified like pdata ``AsString``
  (:mod:`vllm_otel_collector.otlp.values`).

Validation (a bad span is rejected, the rest of the request is kept; counts go to OTLP ``partial_success``), per
the validation table (:mod:`.validation`): trace id not 16 bytes or all zero, span id not 8 bytes or all zero, parent
span id neither empty nor 8 bytes, end < start, a start/end/event time ≥ 2^63 ns, kind or status code outside the
OTLP enums, link ids neither empty nor 16/8 bytes, invalid UTF-8 in any string of the span.
Limits (:class:`~vllm_otel_collector.otlp.base.Limits`) truncate instead of rejecting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from vllm_otel_collector.otlp import wire
from vllm_otel_collector.otlp.base import Columns, Limits, MalformedRequest, Payload, concat_columns
from vllm_otel_collector.otlp.lean_proto import LeanExportTraceServiceRequest, span_attributes
from vllm_otel_collector.otlp.validation import TIME_NS_MAX, time_error
from vllm_otel_collector.otlp.values import attrs_map, other_str, value_str

__all__ = ["Limits", "MalformedRequest", "TRACE_COLUMNS", "TraceBatch", "concat_columns", "convert_traces",
           "parse_traces", "traces_from_bytes", "value_str"]

SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")
TRACE_COLUMNS = (
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind", "ServiceName",
    "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes", "Duration", "StatusCode", "StatusMessage",
    "Events.Timestamp", "Events.Name", "Events.Attributes",
    "Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes",
)


_ZERO16, _ZERO8 = b"\0" * 16, b"\0" * 8


class _BadEvent(ValueError):
    """An event value outside the validation table (:mod:`.validation`): the span is rejected."""


@dataclass
class TraceBatch:
    """Result of converting one request: columns of accepted spans, the clean request bytes, rejections."""

    columns: dict[str, list]
    clean_body: bytes
    rejected: int = 0
    truncated: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.columns["TraceId"])

    def message(self) -> str:
        """The ``partial_success.error_message`` text ("" when everything was accepted unchanged)."""
        parts = self.errors[:5] + ([f"... {len(self.errors) - 5} more"] if len(self.errors) > 5 else [])
        if self.truncated:
            parts.append(f"{self.truncated} span(s) had attributes/events/links truncated to the configured limits")
        return "; ".join(parts)

    def inserts(self) -> list[tuple[str, Payload]]:
        """``[("otel_traces", columns)]`` (empty when no span was accepted)."""
        return [("otel_traces", self.columns)] if self.rows else []

    def span_columns(self, interests=None) -> Columns:
        """Every accepted span's columns (already converted; ``interests`` need not narrow them)."""
        return self.columns


def _span_error(span) -> str | None:
    tid, sid, pid = span.trace_id, span.span_id, span.parent_span_id
    if len(tid) != 16 or tid == b"\0" * 16:
        return f"span {span.name!r}: trace_id must be 16 non-zero bytes (got {len(tid)})"
    if len(sid) != 8 or sid == b"\0" * 8:
        return f"span {span.name!r}: span_id must be 8 non-zero bytes (got {len(sid)})"
    if len(pid) not in (0, 8):
        return f"span {span.name!r}: parent_span_id must be empty or 8 bytes (got {len(pid)})"
    if span.end_time_unix_nano < span.start_time_unix_nano:
        return f"span {span.name!r}: end_time_unix_nano < start_time_unix_nano"
    for what in ("start_time_unix_nano", "end_time_unix_nano"):
        if err := time_error(what, getattr(span, what)):
            return f"span {span.name!r}: {err}"
    if not 0 <= span.kind < len(SPAN_KINDS):
        return f"span {span.name!r}: unknown span kind {span.kind}"
    if not 0 <= span.status.code < len(STATUS_CODES):
        return f"span {span.name!r}: unknown status code {span.status.code}"
    for link in span.links:
        if len(link.trace_id) not in (0, 16) or len(link.span_id) not in (0, 8):
            return f"span {span.name!r}: link ids must be 16/8 bytes"
    return None


def _lenient_parse(body: bytes) -> tuple[ExportTraceServiceRequest, int, list[str]]:
    """Parse a request whose strict parse failed, dropping only the spans that cannot be decoded (bad UTF-8)."""
    try:
        top = wire.fields(body)
    except wire.WireError as exc:
        raise MalformedRequest(f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    request = ExportTraceServiceRequest()
    rejected, errors = 0, []
    for number, wtype, rs_bytes in top:
        if number != 1 or wtype != 2:
            continue
        rs_out = request.resource_spans.add()
        try:
            rs_fields = wire.fields(rs_bytes)
        except wire.WireError as exc:
            raise MalformedRequest(f"malformed ResourceSpans: {exc}") from None
        for n2, w2, v2 in rs_fields:
            if n2 == 2 and w2 == 2:
                ss_out = rs_out.scope_spans.add()
                try:
                    ss_fields = wire.fields(v2)
                except wire.WireError as exc:
                    raise MalformedRequest(f"malformed ScopeSpans: {exc}") from None
                for n3, w3, v3 in ss_fields:
                    if n3 == 2 and w3 == 2:
                        span = trace_pb2.Span()
                        try:
                            span.ParseFromString(v3)
                        except DecodeError as exc:
                            rejected += 1
                            errors.append(f"undecodable span: {exc}"[:200])
                            continue
                        ss_out.spans.append(span)
                    else:
                        _merge_field(ss_out, n3, w3, v3)
            else:
                _merge_field(rs_out, n2, w2, v2)
    return request, rejected, errors


def _merge_field(msg, number: int, wtype: int, value) -> None:
    """Merge one non-span field (resource, scope, schema_url) into ``msg``; undecodable → MalformedRequest."""
    if wtype != 2:
        return
    try:
        msg.MergeFromString(wire.encode_field(number, value))
    except DecodeError as exc:
        raise MalformedRequest(f"undecodable resource/scope: {exc}") from None


def parse_traces(body: bytes):
    """Bytes → request: the lean, wire-compatible message (:mod:`vllm_otel_collector.lean_proto`), or — when a
    string field is not UTF-8 — the regular ``ExportTraceServiceRequest`` rebuilt span by span.

    Returns ``(request, spans_rejected_while_parsing, errors)``. Raises :class:`MalformedRequest`.
    """
    try:
        return LeanExportTraceServiceRequest.FromString(body), 0, []
    except DecodeError:
        return _lenient_parse(body)


def convert_traces(request, limits: Limits = Limits(),
                   body: bytes | None = None, pre_rejected: int = 0,
                   pre_errors: list[str] | None = None, only: set[int] | None = None) -> TraceBatch:
    """Validate and convert a parsed request (regular or lean ``ExportTraceServiceRequest``) to ``otel_traces``
    columns (see module docstring).

    ``body`` is the original wire bytes: reused as :attr:`TraceBatch.clean_body` when no span was rejected, otherwise
    the request is rebuilt from the accepted spans. ``only``: convert just these accepted spans (0-based, wire
    order) — used by :mod:`vllm_otel_collector.otlp.native` to give processors the rows they asked for.
    """
    rows: list[tuple] = []  # one tuple per accepted span in TRACE_COLUMNS order, transposed at the end (in C)
    add_row = rows.append
    rejected, truncated = pre_rejected, 0
    errors = list(pre_errors or ())
    dropped_any = pre_rejected > 0
    max_events, max_links = limits.max_events, limits.max_links
    max_attrs, cap = limits.max_attributes, limits.max_value_chars
    lean = isinstance(request, LeanExportTraceServiceRequest)
    accepted = -1
    for rs in request.resource_spans:
        res_attrs, res_trunc = attrs_map(rs.resource.attributes, limits)
        service = res_attrs.get("service.name", "")
        for ss in rs.scope_spans:
            scope_name, scope_version = ss.scope.name, ss.scope.version
            bad_indices = []
            for i, span in enumerate(ss.spans):
                tid, sid, pid = span.trace_id, span.span_id, span.parent_span_id
                start, end, kind = span.start_time_unix_nano, span.end_time_unix_nano, span.kind
                status = span.status
                code = status.code
                links = span.links
                if (len(tid) != 16 or len(sid) != 8 or end < start or end > TIME_NS_MAX or not 0 <= kind <= 5
                        or not 0 <= code <= 2 or (pid and len(pid) != 8) or tid == _ZERO16 or sid == _ZERO8
                        or links):
                    err = _span_error(span)
                    if err is not None:
                        rejected += 1
                        errors.append(err)
                        bad_indices.append(i)
                        continue
                if only is not None:
                    accepted += 1
                    if accepted not in only:
                        continue
                if lean:
                    raws = span.attributes
                    trunc = len(raws) > max_attrs
                    try:
                        attrs = span_attributes(raws[:max_attrs] if trunc else raws, other_str)
                    except DecodeError:
                        rejected += 1
                        errors.append(f"span {span.name!r}: undecodable attribute (invalid UTF-8?)")
                        bad_indices.append(i)
                        continue
                    if attrs and max(map(len, attrs.values())) > cap:
                        attrs = {k: v[:cap] for k, v in attrs.items()}
                        trunc = True
                else:
                    attrs, trunc = attrs_map(span.attributes, limits)
                events = span.events
                if events:
                    if len(events) > max_events:
                        events, trunc = events[:max_events], True
                    ets, enames, eattrs = [], [], []
                    try:
                        for ev in events:
                            if ev.time_unix_nano > TIME_NS_MAX:
                                raise _BadEvent(time_error("event time_unix_nano", ev.time_unix_nano))
                            ets.append(ev.time_unix_nano)
                            enames.append(ev.name)
                            if lean:
                                raws = ev.attributes
                                m = span_attributes(raws[:max_attrs], other_str)
                                t = len(raws) > max_attrs
                                if m and max(map(len, m.values())) > cap:
                                    m, t = {k: v[:cap] for k, v in m.items()}, True
                            else:
                                m, t = attrs_map(ev.attributes, limits)
                            eattrs.append(m)
                            trunc = trunc or t
                    except (DecodeError, _BadEvent) as exc:
                        rejected += 1
                        errors.append(f"span {span.name!r}: {exc}" if isinstance(exc, _BadEvent)
                                      else f"span {span.name!r}: undecodable event attribute (invalid UTF-8?)")
                        bad_indices.append(i)
                        continue
                else:
                    ets, enames, eattrs = [], [], []
                if links:
                    if len(links) > max_links:
                        links, trunc = links[:max_links], True
                    lt, ls, lst, la = [], [], [], []
                    for link in links:
                        lt.append(link.trace_id.hex())
                        ls.append(link.span_id.hex())
                        lst.append(link.trace_state)
                        m, t = attrs_map(link.attributes, limits)
                        la.append(m)
                        trunc = trunc or t
                else:
                    lt, ls, lst, la = [], [], [], []
                add_row((start, tid.hex(), sid.hex(), pid.hex(), span.trace_state, span.name, SPAN_KINDS[kind],
                         service, res_attrs, scope_name, scope_version, attrs, end - start, STATUS_CODES[code],
                         status.message, ets, enames, eattrs, lt, ls, lst, la))
                if trunc or res_trunc:
                    truncated += 1
            if bad_indices:
                dropped_any = True
                for i in reversed(bad_indices):
                    del ss.spans[i]
    if rows:
        cols = {name: list(values) for name, values in zip(TRACE_COLUMNS, zip(*rows))}
    else:
        cols = {name: [] for name in TRACE_COLUMNS}
    clean = body if (body is not None and not dropped_any) else request.SerializeToString()
    return TraceBatch(columns=cols, clean_body=clean, rejected=rejected, truncated=truncated, errors=errors)


def traces_from_bytes(body: bytes, limits: Limits = Limits()) -> TraceBatch:
    """Parse + validate + convert one protobuf ``ExportTraceServiceRequest``. Raises :class:`MalformedRequest`."""
    request, pre_rejected, pre_errors = parse_traces(body)
    return convert_traces(request, limits, body=body, pre_rejected=pre_rejected, pre_errors=pre_errors)
