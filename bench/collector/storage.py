"""Storage benchmark: compressed bytes per request in ``llm_requests`` and per span in ``otel_traces``, against the
stock collector-contrib layout on the same data.

Data: :mod:`bench.collector.synth` requests (1M; 100k in smoke mode) in ``llm_requests``, and the same requests as the spans our
instrumentation emits (SERVER request span with ~21 attributes and a ``vllm.first_token`` event, plus
``queue``/``prefill``/``decode`` children) in ``otel_traces``. ``OPTIMIZE … FINAL`` then sizes from
``system.parts`` (active parts: ``data_compressed_bytes``, ``data_uncompressed_bytes``) and ``system.columns``
(per-column compressed bytes). The stock collector-contrib exporter stores only ``otel_traces`` (our ``otel_traces``
keeps its exact columns, types and codecs), so "stock" = the request's four spans there; ours adds one
``llm_requests`` row per request (+ rollups). Target (issue 7): ≤ 100 B per request in ``llm_requests``.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import new_result

_METHOD = __doc__.split("\n\n", 1)[1].replace("\n", " ").strip()
_TABLES = ("llm_requests", "llm_requests_1m", "llm_requests_1h", "otel_traces", "otel_traces_trace_id_ts")


def table_sizes(store, database: str, tables=_TABLES) -> dict[str, dict]:
    """``{table: {"rows", "compressed_bytes", "uncompressed_bytes"}}`` over active parts (system.parts)."""
    rows = store.query(
        "SELECT table, sum(rows), sum(data_compressed_bytes), sum(data_uncompressed_bytes) FROM system.parts "
        "WHERE database = {db:String} AND active GROUP BY table", parameters={"db": database}).result_rows
    found = {t: {"rows": int(r), "compressed_bytes": int(c), "uncompressed_bytes": int(u)} for t, r, c, u in rows}
    return {t: found.get(t, {"rows": 0, "compressed_bytes": 0, "uncompressed_bytes": 0}) for t in tables}


def column_sizes(store, database: str, table: str) -> dict[str, int]:
    """``{column: compressed bytes}`` of ``table`` (system.columns), largest first."""
    rows = store.query(
        "SELECT name, data_compressed_bytes FROM system.columns WHERE database = {db:String} AND table = {t:String} "
        "ORDER BY data_compressed_bytes DESC", parameters={"db": database, "t": table}).result_rows
    return {n: int(b) for n, b in rows}


def run(smoke: bool, workdir: Path) -> dict:
    from vllm_otel_collector.store import Store, migrate

    from bench.collector.synth import fill_llm_requests, otel_traces_from_llm_requests_sql

    n = 100_000 if smoke else 1_000_000
    db = "bench_storage"
    result = new_result("storage", smoke, _METHOD)
    store = Store(f"chdb://{workdir}/chdb", database=db)
    migrate(store)
    end = float(int(time.time()) // 3600 * 3600)
    fill_llm_requests(store, n, end=end, days=1.0)
    store.command(otel_traces_from_llm_requests_sql())
    for t in _TABLES:
        store.command(f"OPTIMIZE TABLE {t} FINAL")
    sizes = table_sizes(store, db)
    spans = sizes["otel_traces"]["rows"]
    req_rows = sizes["llm_requests"]["rows"]
    per_request = sizes["llm_requests"]["compressed_bytes"] / req_rows
    per_span = sizes["otel_traces"]["compressed_bytes"] / spans
    stock_per_request = sizes["otel_traces"]["compressed_bytes"] / n
    request_span = store.query(
        "SELECT count(), avg(length(SpanAttributes)) FROM otel_traces WHERE SpanKind = 'Server'").result_rows[0]
    rollup_bytes = sizes["llm_requests_1m"]["compressed_bytes"] + sizes["llm_requests_1h"]["compressed_bytes"]
    result["samples"] = {"tables": sizes, "columns": {t: column_sizes(store, db, t)
                                                      for t in ("llm_requests", "otel_traces")}}
    result["summary"] = {
        "requests": n,
        "spans": spans,
        "spans_per_request": spans / n,
        "request_span_attributes": request_span[1],
        "llm_requests_bytes_per_request": per_request,
        "llm_requests_uncompressed_bytes_per_request": sizes["llm_requests"]["uncompressed_bytes"] / req_rows,
        "otel_traces_bytes_per_span": per_span,
        "otel_traces_uncompressed_bytes_per_span": sizes["otel_traces"]["uncompressed_bytes"] / spans,
        "stock_contrib_bytes_per_request": stock_per_request,
        "ours_analytics_bytes_per_request": (sizes["llm_requests"]["compressed_bytes"] + rollup_bytes) / n,
        "ratio_stock_over_llm_requests": stock_per_request / per_request,
    }
    result["targets"] = {"llm_requests_le_100B_per_request": {"target": 100.0, "measured": per_request,
                                                              "met": per_request <= 100.0}}
    store.close()
    return result
