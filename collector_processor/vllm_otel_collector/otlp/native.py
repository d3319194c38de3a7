"""The trace hot path: one OTLP request → one ClickHouse Native block, in C (``_otlp_native.c``).

:func:`convert_traces_fast` hands the request bytes to the C extension, which validates every span and writes the
``otel_traces`` columns straight into a Native-format block (no Python object per span or attribute). It covers the
common case — every span valid, nothing to truncate — and declines (``None``) everything else: rejections,
truncation, duplicate attribute keys, kvlist or nested-array values, odd framing. Declined requests take the
pure-Python converter (:mod:`vllm_otel_collector.otlp.traces`), which stays the one reference for every rule: both paths
give identical rows (tests/collector/test_native.py checks that on generated requests).

Processors (analytics) still work on Python columns, but only for the spans they ask for: a processor's
``interest`` (:class:`SpanInterest`) names attribute keys and span names; the C pass records which rows match, and
:meth:`NativeTraceBatch.columns_of` converts just those rows with the reference converter.

Without the compiled extension (no C compiler at install time) :data:`AVAILABLE` is False and every request takes
the Python path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from vllm_otel_collector.otlp.base import Columns, Limits, NativeBlock, Payload
from vllm_otel_collector.otlp.traces import TRACE_COLUMNS, convert_traces, parse_traces
from vllm_otel_collector.otlp.validation import native_ranges
from vllm_otel_collector.plugins import SpanInterest

try:
    from vllm_otel_collector.otlp import _otlp_native
except ImportError:  # built without a C compiler: the Python path serves every request
    _otlp_native = None

AVAILABLE = _otlp_native is not None
if AVAILABLE:  # the same ranges as the Python converter: the validation table
    _otlp_native.configure(native_ranges()["time_ns_max"])

__all__ = ["AVAILABLE", "NativeTraceBatch", "SpanInterest", "convert_traces_fast"]


@dataclass
class NativeTraceBatch:
    """One request converted by the C extension: a Native block of ``rows`` accepted spans (nothing rejected or
    truncated), plus which rows matched the processors' interests."""

    block: bytes
    n_rows: int
    clean_body: bytes
    keyed_rows: list[int]
    names: list[str]  # distinct span names; names[0] == ""
    name_index: bytes  # one little-endian uint32 per row: the row's position in ``names``
    limits: Limits
    rejected: int = 0
    truncated: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.n_rows

    def message(self) -> str:
        """Always "" (a request with anything to report takes the Python path)."""
        return ""

    def inserts(self) -> list[tuple[str, Payload]]:
        """``[("otel_traces", NativeBlock)]``: the block is inserted as is."""
        return [("otel_traces", NativeBlock(self.block, self.n_rows))] if self.n_rows else []

    def span_columns(self, interests) -> Columns:
        """Columns of the rows ``interests`` need (see :meth:`rows_for`), converted by the reference converter."""
        return self.columns_of(self.rows_for(interests))

    @property
    def span_names(self) -> dict[str, list[int]]:
        """Span name → its rows (wire order)."""
        idx = np.frombuffer(self.name_index, dtype="<u4")
        by_name = {name: np.flatnonzero(idx == i).tolist() for i, name in enumerate(self.names)}
        return {name: rows for name, rows in by_name.items() if rows}

    def rows_for(self, interests: list[SpanInterest] | None) -> list[int]:
        """Row indices (wire order) the given interests need; ``None`` means every row. Per-row work only when a
        span name matches (numpy over the name index)."""
        if interests is None:
            return list(range(self.n_rows))
        wanted = [i for i, name in enumerate(self.names) if any(x.span_name(name) for x in interests)]
        if not wanted:
            return list(self.keyed_rows)
        by_name = np.flatnonzero(np.isin(np.frombuffer(self.name_index, dtype="<u4"), wanted)).tolist()
        return sorted(set(self.keyed_rows).union(by_name))

    def columns_of(self, rows: Iterable[int]) -> Columns:
        """``otel_traces`` columns of the given rows, converted by the reference converter (same values as the
        block holds for them). No rows: empty columns without touching the request (the common batch)."""
        wanted = set(rows)
        if not wanted:
            return {name: [] for name in TRACE_COLUMNS}
        request, _, _ = parse_traces(self.clean_body)
        return convert_traces(request, self.limits, body=self.clean_body, only=wanted).columns


def convert_traces_fast(body: bytes, limits: Limits = Limits(),
                        interest_keys: tuple[bytes, ...] = ()) -> NativeTraceBatch | None:
    """Convert one ``ExportTraceServiceRequest`` in C; ``None`` when the request needs the Python path (see the
    module docstring) or the extension is not built. ``interest_keys`` are UTF-8 attribute keys whose spans are
    listed in :attr:`NativeTraceBatch.keyed_rows`. Raises ``MemoryError`` only."""
    if _otlp_native is None:
        return None
    out = _otlp_native.convert(body, limits.max_value_chars, limits.max_attributes, limits.max_events,
                               limits.max_links, interest_keys)
    if out is None:
        return None
    block, rows, keyed, names, name_index = out
    return NativeTraceBatch(block=block, n_rows=rows, clean_body=body, keyed_rows=keyed,
                            names=[n.decode() for n in names], name_index=name_index, limits=limits)
