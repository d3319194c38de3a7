"""Read the demo's request spans back from ClickHouse (never from memory) and summarize them.

Rows come from ``otel_traces`` — the server-side request spans the instrumentation emitted and the collector stored —
joined to the client's measurements by trace id (every workload request sent its own ``traceparent``).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass

from opentelemetry.instrumentation.vllm import semconv as sc

_REQUEST_SPANS_SQL = f"""
SELECT
    TraceId,
    SpanAttributes['{sc.LATENCY_TTFT}'] AS ttft,
    SpanAttributes['{sc.LATENCY_TPOT}'] AS tpot,
    SpanAttributes['{sc.LATENCY_E2E}'] AS e2e,
    SpanAttributes['{sc.USAGE_INPUT_TOKENS}'] AS input_tokens,
    SpanAttributes['{sc.USAGE_OUTPUT_TOKENS}'] AS output_tokens,
    SpanAttributes['{sc.VLLM_TOKENS_PER_SECOND}'] AS tokens_per_s,
    SpanAttributes['{sc.VLLM_FINISH_REASON}'] AS finish_reason,
    StatusCode,
    Timestamp,
    Duration
FROM otel_traces
WHERE TraceId IN {{trace_ids:Array(String)}}
  AND SpanAttributes['{sc.PROVIDER_NAME}'] = '{sc.PROVIDER_VLLM}'
  AND SpanAttributes['{sc.OPERATION_NAME}'] != ''
ORDER BY Timestamp
"""


@dataclass
class RequestRow:
    """One request span as stored in ClickHouse; latencies in seconds, ``None`` when the span lacks the value."""

    trace_id: str
    ttft_s: float | None
    tpot_s: float | None
    e2e_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    tokens_per_s: float | None
    status: str  # "ok" | "error" | "abort" | "timeout"
    client_ttft_s: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _num(text: str, kind=float):
    if text is None or text == "":
        return None
    try:
        value = kind(float(text)) if kind is int else kind(text)
    except ValueError:
        return None
    return None if isinstance(value, float) and math.isnan(value) else value


def _status(status_code: str, finish_reason: str) -> str:
    if finish_reason in (sc.FINISH_ABORT, sc.FINISH_TIMEOUT):
        return finish_reason
    return "error" if status_code == "Error" else "ok"


def fetch_request_rows(store, trace_ids: list[str]) -> list[RequestRow]:
    """Request spans of ``trace_ids`` from ``otel_traces`` (one row per span, oldest first)."""
    if not trace_ids:
        return []
    result = store.query(_REQUEST_SPANS_SQL, parameters={"trace_ids": list(trace_ids)})
    rows = []
    for tid, ttft, tpot, e2e, n_in, n_out, tps, finish, status_code, _ts, _dur in result.result_rows:
        rows.append(RequestRow(
            trace_id=tid, ttft_s=_num(ttft), tpot_s=_num(tpot), e2e_s=_num(e2e),
            input_tokens=_num(n_in, int), output_tokens=_num(n_out, int), tokens_per_s=_num(tps),
            status=_status(status_code, finish),
        ))
    return rows


def wait_for_rows(store, trace_ids: list[str], timeout_s: float = 30.0, on_tick=None) -> list[RequestRow]:
    """Poll until every trace id has its request span stored or ``timeout_s`` seconds pass; return what is there."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = fetch_request_rows(store, trace_ids)
        if len({r.trace_id for r in rows}) >= len(set(trace_ids)) or time.monotonic() > deadline:
            return rows
        if on_tick is not None:
            on_tick(len(rows))
        time.sleep(0.5)


def _percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile ``q`` in [0, 100] (numpy's default 'linear' method); None for no values."""
    if not values:
        return None
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(rows: list[RequestRow], expected: int, wall_s: float) -> dict:
    """Summary of stored rows: count, status counts, p50/p95 TTFT and e2e (s), throughput (output tokens / s, over
    the workload's wall time ``wall_s``), and how many of the ``expected`` requests have no stored span."""
    ttft = [r.ttft_s for r in rows if r.ttft_s is not None]
    e2e = [r.e2e_s for r in rows if r.e2e_s is not None]
    out_tokens = sum(r.output_tokens or 0 for r in rows)
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    return {
        "count": len(rows),
        "expected": expected,
        "missing_spans": max(0, expected - len({r.trace_id for r in rows})),
        "by_status": by_status,
        "ttft_p50_s": _percentile(ttft, 50),
        "ttft_p95_s": _percentile(ttft, 95),
        "e2e_p50_s": _percentile(e2e, 50),
        "e2e_p95_s": _percentile(e2e, 95),
        "mean_tpot_s": statistics.fmean([r.tpot_s for r in rows if r.tpot_s is not None]) if rows and any(
            r.tpot_s is not None for r in rows) else None,
        "output_tokens": out_tokens,
        "throughput_tokens_per_s": out_tokens / wall_s if wall_s > 0 else None,
        "workload_wall_s": wall_s,
    }


def model_load(store) -> dict | None:
    """Assemble the model-load row(s) now (no settle delay: the demo knows loading is over) and return the newest
    ``llm_model_loads`` row as a dict (seconds, bytes; ``None`` values where no span carried them), or ``None``."""
    from vllm_otel_collector.analytics.loads import assemble

    assemble(store, time.time(), settle_seconds=0.0)
    result = store.query(
        "SELECT TraceId, Model, LoadSeconds, ColdStartSeconds, WeightsBytes, WeightsSeconds, CompileSeconds, CompileCacheHit, "
        "KVCacheBlocks, KVCacheBytes, MemoryPeakBytes, LoadLevel, SpanCount "
        "FROM llm_model_loads FINAL ORDER BY Timestamp DESC LIMIT 1")
    if not result.result_rows:
        return None
    return dict(zip(result.column_names, result.result_rows[0]))
