"""Model loads: assemble one ``llm_model_loads`` row per engine-start trace.

A load trace's attributes are spread over many spans, written by several processes (API server, EngineCore,
workers) and possibly exported in different batches, so no single ingest batch holds them all. A periodic job
(:func:`assemble_pending`) therefore waits until a root span (``Overall Loading`` — vLLM ≥ 0.32's own — or our
``vllm.model_load``) ended at least ``settle`` seconds ago, reads every span of that trace from ``otel_traces`` and
folds them with the pure :func:`assemble_load`. ``llm_model_loads`` is a ReplacingMergeTree on TraceId, so a late
re-assembly (or another replica doing the same) replaces the row instead of duplicating it.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from opentelemetry.instrumentation.vllm import semconv as sc

from vllm_otel_collector.analytics.levels import Thresholds, level

LOAD_COLUMNS = (
    "Timestamp", "TraceId", "ServiceName", "Model", "ModelPath", "Dtype", "Quantization", "Device",
    "TensorParallelSize", "PipelineParallelSize", "LoadSeconds", "WeightsSeconds", "DownloadSeconds",
    "CompileSeconds", "GraphCaptureSeconds", "WarmupSeconds", "KVCacheSeconds", "ColdStartSeconds", "WeightsBytes",
    "CompileCacheHit", "KVCacheBlocks", "KVCacheBytes", "MemoryBeforeBytes", "MemoryAfterBytes", "MemoryPeakBytes",
    "LoadLevel", "SpanCount", "AssembledAt",
)
#: vLLM's native startup span names whose Duration stands in for a missing attribute.
NATIVE_WEIGHTS_SPAN = "Load weights"
NATIVE_KV_SPAN = "Allocate KV cache"


def _f(v: str | None) -> float | None:
    try:
        x = float(v) if v not in (None, "") else None
    except ValueError:
        return None
    return x if x is None or (x == x and x >= 0) else None


def _u(v: str | None) -> int | None:
    x = _f(v)
    return None if x is None else int(x)


def _b(v: str | None) -> int | None:
    if v in (None, ""):
        return None
    return 1 if v.strip().lower() in ("true", "1", "yes") else 0 if v.strip().lower() in ("false", "0", "no") else None


def assemble_load(spans: list[dict[str, Any]], thresholds: Thresholds) -> dict[str, Any]:
    """Fold the spans of one load trace into an ``llm_model_loads`` row (dict of column → value).

    ``spans``: dicts with SpanName, Timestamp (as stored), Duration (ns), ServiceName, SpanAttributes (str → str).
    The root is the earliest span named in ``semconv.MODEL_LOAD_ROOT_NAMES`` (``ValueError`` if none). Each
    attribute takes the root's value, else the earliest span's that has it. Missing durations fall back to span
    Durations: LoadSeconds ← root, WeightsSeconds ← "Load weights", KVCacheSeconds ← "Allocate KV cache" (seconds).
    """
    ordered = sorted(spans, key=lambda s: s["Timestamp"])
    roots = [s for s in ordered if s["SpanName"] in sc.MODEL_LOAD_ROOT_NAMES]
    if not roots:
        raise ValueError("no model-load root span in trace")
    root = roots[0]
    attrs: dict[str, str] = {}
    for s in [root] + ordered:
        for k, v in s["SpanAttributes"].items():
            if v != "" and k not in attrs:
                attrs[k] = v
    durations: dict[str, float] = {}
    for s in ordered:
        durations.setdefault(s["SpanName"], s["Duration"] / 1e9)
    load_s = _f(attrs.get(sc.LOAD_TOTAL_SECONDS))
    if load_s is None:
        load_s = root["Duration"] / 1e9
    path = attrs.get(sc.LOAD_MODEL_PATH, "")
    weights_s = _f(attrs.get(sc.LOAD_WEIGHTS_SECONDS))
    return {
        "Timestamp": root["Timestamp"], "ServiceName": root["ServiceName"],
        "Model": attrs.get(sc.LOAD_MODEL_NAME) or os.path.basename(path.rstrip("/")),
        "ModelPath": path, "Dtype": attrs.get(sc.LOAD_DTYPE, ""), "Quantization": attrs.get(sc.LOAD_QUANTIZATION, ""),
        "Device": attrs.get(sc.LOAD_DEVICE, ""),
        "TensorParallelSize": _u(attrs.get(sc.LOAD_TP_SIZE)) or 1,
        "PipelineParallelSize": _u(attrs.get(sc.LOAD_PP_SIZE)) or 1,
        "LoadSeconds": load_s,
        "WeightsSeconds": weights_s if weights_s is not None else durations.get(NATIVE_WEIGHTS_SPAN),
        "DownloadSeconds": _f(attrs.get(sc.LOAD_DOWNLOAD_SECONDS)),
        "CompileSeconds": _f(attrs.get(sc.LOAD_COMPILE_SECONDS)),
        "GraphCaptureSeconds": _f(attrs.get(sc.LOAD_CUDA_GRAPH_SECONDS)),
        "WarmupSeconds": _f(attrs.get(sc.LOAD_WARMUP_SECONDS)),
        "KVCacheSeconds": durations.get(NATIVE_KV_SPAN),
        "ColdStartSeconds": _f(attrs.get(sc.LOAD_COLD_START_SECONDS)),
        "WeightsBytes": _u(attrs.get(sc.LOAD_WEIGHTS_BYTES)),
        "CompileCacheHit": _b(attrs.get(sc.LOAD_COMPILE_CACHE_HIT)),
        "KVCacheBlocks": _u(attrs.get(sc.LOAD_KV_BLOCKS)), "KVCacheBytes": _u(attrs.get(sc.LOAD_KV_BYTES)),
        "MemoryBeforeBytes": _u(attrs.get(sc.LOAD_MEMORY_BEFORE)),
        "MemoryAfterBytes": _u(attrs.get(sc.LOAD_MEMORY_AFTER)),
        "MemoryPeakBytes": _u(attrs.get(sc.LOAD_MEMORY_PEAK)),
        "LoadLevel": level(load_s, thresholds.get(root["SpanName"], "load")) or "NONE",
        "SpanCount": len(spans),
    }


def assemble_pending(store, now: float, thresholds: Thresholds, settle_seconds: float = 30.0,
                     lookback_seconds: float = 86400.0) -> int:
    """Assemble rows for load traces whose root ended ≥ ``settle_seconds`` before ``now`` (unix seconds), started
    within ``lookback_seconds``, and have no row yet. Returns the number of rows inserted."""
    since = now - lookback_seconds
    pending = store.query(
        "SELECT DISTINCT TraceId FROM otel_traces WHERE SpanName IN {roots:Array(String)} "
        "AND Timestamp >= toDateTime64({since:Float64}, 9) "
        "AND toUnixTimestamp64Nano(Timestamp) + Duration <= {cutoff:Int64} "
        "AND TraceId NOT IN (SELECT TraceId FROM llm_model_loads WHERE Timestamp >= toDateTime64({since:Float64}, 9))"
        " ORDER BY TraceId LIMIT 1000",
        parameters={"roots": list(sc.MODEL_LOAD_ROOT_NAMES), "since": since,
                    "cutoff": int((now - settle_seconds) * 1e9)},
    ).result_rows
    ids = [r[0] for r in pending]
    if not ids:
        return 0
    res = store.query(
        "SELECT TraceId, SpanName, toUnixTimestamp64Nano(Timestamp), Duration, ServiceName, SpanAttributes "
        "FROM otel_traces WHERE TraceId IN {ids:Array(String)} "
        "AND Timestamp >= toDateTime64({since:Float64}, 9) - INTERVAL 1 HOUR",
        parameters={"ids": ids, "since": since},
    ).result_rows
    by_trace: dict[str, list[dict]] = {}
    for tid, name, ts, dur, svc, attrs in res:
        by_trace.setdefault(tid, []).append({"SpanName": name, "Timestamp": ts, "Duration": dur, "ServiceName": svc,
                                             "SpanAttributes": dict(attrs)})
    cols: dict[str, list] = {c: [] for c in LOAD_COLUMNS}
    assembled = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    for tid in ids:
        row = assemble_load(by_trace[tid], thresholds)
        row["TraceId"] = tid
        row["AssembledAt"] = assembled
        for c in LOAD_COLUMNS:
            cols[c].append(row[c])
    return store.insert("llm_model_loads", cols)
