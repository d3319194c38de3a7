"""What every OTLP conversion shares: the :class:`Batch` protocol the pipeline writes, :class:`Limits`, the
:class:`MalformedRequest` error and the two insert payloads (:data:`Columns`, :class:`NativeBlock`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field

#: ClickHouse columns of one insert: column name → list, one value per row (all lists of equal length).
Columns = dict[str, list]


class MalformedRequest(ValueError):
    """The body is not an OTLP export request at all (→ the consumer's ``PermanentError``: gRPC INVALID_ARGUMENT /
    HTTP 400)."""


class Limits(BaseModel):
    """Per-item size limits (the config's ``limits:`` section). Values beyond them are truncated, not rejected:
    an attribute value longer than ``max_value_chars`` characters keeps its first ``max_value_chars``; a map with
    more than ``max_attributes`` entries keeps the first ``max_attributes`` in wire order; more than
    ``max_events``/``max_links`` per span keeps the first ones. Raises ``pydantic.ValidationError`` for a value ≤ 0."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_value_chars: int = Field(16384, gt=0)
    max_attributes: int = Field(256, gt=0)
    max_events: int = Field(1024, gt=0)
    max_links: int = Field(256, gt=0)


@dataclass
class NativeBlock:
    """A ClickHouse Native-format block (bytes, as the C hot path writes it) of ``rows`` rows."""

    block: bytes
    rows: int

    @staticmethod
    def concat(blocks: Sequence["NativeBlock"]) -> "NativeBlock":
        """One block of all rows (Native blocks concatenate byte-wise)."""
        return NativeBlock(b"".join(b.block for b in blocks), sum(b.rows for b in blocks))


#: What one insert carries: plain columns, or a Native block.
Payload = Union[Columns, NativeBlock]


def concat_columns(batches: list[Columns]) -> Columns:
    """Concatenate several column dicts with the same keys (in order)."""
    if len(batches) == 1:
        return batches[0]
    out = {k: [] for k in batches[0]}
    for b in batches:
        for k, v in b.items():
            out[k].extend(v)
    return out


def concat_payloads(payloads: Sequence[Payload]) -> Payload:
    """Payloads of one table (all of one kind) → one payload."""
    if isinstance(payloads[0], NativeBlock):
        return NativeBlock.concat(payloads)
    return concat_columns(list(payloads))


class Batch(Protocol):
    """One converted request, as the pipeline spools and writes it (traces: :class:`~.traces.TraceBatch`,
    :class:`~.native.NativeTraceBatch`; metrics: :class:`~.metrics.MetricBatch`).

    Attributes:
        clean_body: the request's protobuf bytes without the rejected items (what is spooled and forwarded).
        rejected: items refused by validation (OTLP ``partial_success``).
        rows: rows this request adds to its raw tables (queue and batch accounting).
    """

    clean_body: bytes
    rejected: int

    @property
    def rows(self) -> int: ...

    def message(self) -> str:
        """``partial_success.error_message`` ("" when everything was accepted unchanged)."""
        ...

    def inserts(self) -> list[tuple[str, Payload]]:
        """The raw-table inserts of this request: ``[(table, payload), ...]``, no empty payload."""
        ...

    def span_columns(self, interests) -> Columns | None:
        """``otel_traces`` columns for the processors — at least the spans any of ``interests``
        (:class:`~vllm_otel_collector.plugins.SpanInterest` list; None = every span) wants; None for a batch without
        spans."""
        ...
