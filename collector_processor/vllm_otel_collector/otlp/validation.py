"""The validation table: for each signal, every numeric and id field that crosses into a ClickHouse column, the range
its column can hold, and what happens outside it (reject the span/point with a ``partial_success`` message, or clamp).

Both converters read these ranges — the Python reference converter (:mod:`.traces`, :mod:`.metrics`) through
:data:`TIME_NS_MAX` and the checks below, the C hot path (``_otlp_native.c``) through :func:`native_ranges`, handed
to it once at import (``_otlp_native.configure``) — so the two paths cannot disagree. The C path never rejects: a
request with any value outside the table takes the Python path, which rejects just that span.

Source of the ranges: the column types of ``store/migrations`` (``DateTime64(9)`` holds signed 64-bit nanoseconds
since the epoch: 0 … 2^63−1, up to 2262-04-11; clickhouse-connect cannot pack more and the insert would fail for the
whole batch), OTLP id sizes (trace id 16 bytes, span id 8 bytes, both non-zero; OTLP spec "Span" / "Exemplar").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TIME_NS_MAX = 2**63 - 1  # DateTime64(9): signed 64-bit nanoseconds

Action = Literal["reject", "clamp"]


@dataclass(frozen=True)
class Rule:
    """One row of the table: ``field`` (OTLP message.field), ``column`` it lands in, accepted ``low``..``high``
    (inclusive; for ids: byte lengths), ``action`` outside it."""

    field: str
    column: str
    low: int
    high: int
    action: Action
    note: str = ""


TRACES: tuple[Rule, ...] = (
    Rule("Span.start_time_unix_nano", "otel_traces.Timestamp", 0, TIME_NS_MAX, "reject"),
    Rule("Span.end_time_unix_nano", "otel_traces.Duration (end - start)", 0, TIME_NS_MAX, "reject",
         "and end >= start"),
    Rule("Span.Event.time_unix_nano", "otel_traces.Events.Timestamp", 0, TIME_NS_MAX, "reject"),
    Rule("Span.trace_id", "otel_traces.TraceId", 16, 16, "reject", "bytes; all-zero rejected"),
    Rule("Span.span_id", "otel_traces.SpanId", 8, 8, "reject", "bytes; all-zero rejected"),
    Rule("Span.parent_span_id", "otel_traces.ParentSpanId", 0, 8, "reject", "bytes: empty or 8"),
    Rule("Span.Link.trace_id / span_id", "otel_traces.Links.TraceId/SpanId", 0, 16, "reject",
         "bytes: empty or 16 / empty or 8"),
    Rule("Span.kind", "otel_traces.SpanKind", 0, 5, "reject", "OTLP SpanKind enum"),
    Rule("Span.Status.code", "otel_traces.StatusCode", 0, 2, "reject", "OTLP StatusCode enum"),
)

METRICS: tuple[Rule, ...] = (
    Rule("*DataPoint.time_unix_nano", "otel_metrics_*.TimeUnix", 1, TIME_NS_MAX, "reject", "0 = missing"),
    Rule("*DataPoint.start_time_unix_nano", "otel_metrics_*.StartTimeUnix", 0, TIME_NS_MAX, "reject"),
    Rule("Exemplar.time_unix_nano", "otel_metrics_*.Exemplars.TimeUnix", 0, TIME_NS_MAX, "reject"),
    Rule("Exemplar.trace_id", "otel_metrics_*.Exemplars.TraceId", 0, 16, "reject", "bytes: empty or 16"),
    Rule("Exemplar.span_id", "otel_metrics_*.Exemplars.SpanId", 0, 8, "reject", "bytes: empty or 8"),
    Rule("ExponentialHistogramDataPoint.scale", "otel_metrics_exponential_histogram.Scale", -10, 20, "reject",
         "OTel data model: the SDKs' range (MaxScale 20, MinScale -10); beyond it the bucket bounds overflow or "
         "collapse in Float64"),
)

TABLE: dict[str, tuple[Rule, ...]] = {"traces": TRACES, "metrics": METRICS}


def native_ranges() -> dict[str, int]:
    """The ranges the C hot path checks (it declines a request with anything outside them)."""
    return {"time_ns_max": TIME_NS_MAX}


def time_error(what: str, value: int) -> str | None:
    """``"<what> = <value> is outside 0..2^63-1 ns"`` when ``value`` is out of the ``DateTime64(9)`` range."""
    if 0 <= value <= TIME_NS_MAX:
        return None
    return f"{what} = {value} is outside 0..2^63-1 ns (DateTime64(9))"


SCALE_MIN, SCALE_MAX = -10, 20


def scale_error(scale: int) -> str | None:
    """``"scale = <s> is outside -10..20"`` for an exponential-histogram scale outside the table's range, or None."""
    if SCALE_MIN <= scale <= SCALE_MAX:
        return None
    return f"exponential histogram scale = {scale} is outside {SCALE_MIN}..{SCALE_MAX}"


def exemplar_error(ex) -> str | None:
    """Why an ``Exemplar`` cannot be stored (time out of range, bad id sizes), or None."""
    err = time_error("exemplar time_unix_nano", ex.time_unix_nano)
    if err:
        return err
    if len(ex.trace_id) not in (0, 16) or len(ex.span_id) not in (0, 8):
        return f"exemplar ids must be empty or 16/8 bytes (got {len(ex.trace_id)}/{len(ex.span_id)})"
    return None
