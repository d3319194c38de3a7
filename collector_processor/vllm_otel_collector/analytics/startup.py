"""Engine starts as they happen: the model-load spans stored so far, folded phase by phase.

A span is exported when it ends, so while vLLM starts, the collector already holds the finished steps of the
engine-start trace ("Load weights", "Allocate KV cache", "Warmup (CPU)", "Prepare model", …) and not yet its root
("Overall Loading"/``vllm.model_load``, which ends when the engine is ready). :func:`engine_starts` reads those
spans from ``llm_startup_spans`` (migration 0132: the same for every pipeline and attribute mode) and folds each trace into the phases below; ``/api/v1/startup`` (:func:`startup_route`)
serves the same for ``vllm-otel top``; ``vllm-otel demo`` calls it on its own store. ``llm_model_loads``
(:mod:`.loads`) is the final row ClickHouse assembles once the root has settled.

Phases, in engine order (source spans; seconds from attributes, else span Durations):

- ``weights``: "Load weights" — ``vllm.load.weights_seconds`` (or Duration), ``vllm.load.weights_bytes``;
- ``kv_cache``: "Allocate KV cache" Duration; blocks/bytes (``vllm.kv_cache.*``) from whichever span has them;
- ``compile``: ``vllm.compile.seconds``, ``vllm.compile.cache_hit`` and, when vLLM fell back from a cache,
  ``vllm.compile.cache_path`` / ``vllm.compile.cache_fallback_reason`` ("Warmup (CPU)" on CPU, "Prepare model"
  otherwise); done without a value when "Prepare model" ended with no compile attribute (eager mode);
- ``warmup``: "Warmup (CPU)" Duration, else ``vllm.warmup.seconds`` on "Prepare model";
- ``ready``: the root — ``vllm.load.total_seconds`` (or Duration), ``vllm.cold_start_seconds``.

Each phase's ``state`` is ``done``, ``running`` (the first phase not done while the root is missing), ``pending``
(later ones), or ``missing`` (the start is ready and no span reported the phase). Times are unix seconds; durations seconds; sizes bytes.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.vllm import semconv as sc

from vllm_otel_collector.analytics.api import MAX_WINDOW_S, number_param
from vllm_otel_collector.analytics.loads import (CPU_WARMUP_SPAN, GPU_WARMUP_SPAN, NATIVE_KV_SPAN,
                                                 NATIVE_WEIGHTS_SPAN, PREPARE_SPAN)

PHASES = ("weights", "kv_cache", "compile", "warmup", "ready")
#: Default look-back of the route and of ``top`` (seconds).
DEFAULT_WINDOW_S = 3600.0


def _f(v: str | None) -> float | None:
    """Seconds from an attribute string: None when missing, unparsable, NaN or negative."""
    try:
        x = float(v) if v not in (None, "") else None
    except ValueError:
        return None
    return x if x is None or (x == x and x >= 0) else None


def _u(v: str | None) -> int | None:
    x = _f(v)
    return None if x is None or x == float("inf") else int(x)


def _b(v: str | None) -> int | None:
    if v in (None, ""):
        return None
    return 1 if v.strip().lower() in ("true", "1", "yes") else 0 if v.strip().lower() in ("false", "0", "no") else None


def _attr(spans: list[dict], key: str, names: tuple[str, ...] | None = None) -> str | None:
    """The first non-empty value of ``key`` among ``spans`` (oldest first), optionally only spans named ``names``."""
    for s in spans:
        if (names is None or s["name"] in names) and s["attrs"].get(key, "") != "":
            return s["attrs"][key]
    return None


def fold_start(spans: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold one engine-start trace's stored spans (dicts: name, start (unix s), seconds, service, attrs) into
    ``{trace_id?, service, model, started, updated, ready, load_seconds, cold_start_seconds, weights_bytes,
    compile_cache_hit, phases: [{phase, state, seconds, ...}]}``. Pure; ``spans`` may be any subset of the trace."""
    spans = sorted(spans, key=lambda s: s["start"])
    by_name: dict[str, dict] = {}
    for s in spans:
        by_name.setdefault(s["name"], s)
    root = next((by_name[n] for n in sc.MODEL_LOAD_ROOT_NAMES if n in by_name), None)
    weights = by_name.get(NATIVE_WEIGHTS_SPAN)
    kv = by_name.get(NATIVE_KV_SPAN)
    prepare = by_name.get(PREPARE_SPAN)
    warm = by_name.get(CPU_WARMUP_SPAN) or by_name.get(GPU_WARMUP_SPAN)
    compile_s = _f(_attr(spans, sc.LOAD_COMPILE_SECONDS))
    hit = _b(_attr(spans, sc.LOAD_COMPILE_CACHE_HIT))
    fallback = _attr(spans, sc.LOAD_COMPILE_CACHE_FALLBACK_REASON)  # vLLM tried a cache and compiled again
    kv_blocks, kv_bytes = _u(_attr(spans, sc.LOAD_KV_BLOCKS)), _u(_attr(spans, sc.LOAD_KV_BYTES))
    phases = {
        "weights": ({"seconds": _f(weights["attrs"].get(sc.LOAD_WEIGHTS_SECONDS)) or weights["seconds"],
                     "bytes": _u(weights["attrs"].get(sc.LOAD_WEIGHTS_BYTES))} if weights else None),
        "kv_cache": ({"seconds": kv["seconds"] if kv else None, "blocks": kv_blocks, "bytes": kv_bytes}
                     if kv or kv_blocks is not None else None),
        "compile": ({"seconds": compile_s, "cache_hit": None if hit is None else bool(hit),
                     "cache_fallback_reason": fallback, "cache_path": _attr(spans, sc.LOAD_COMPILE_CACHE_PATH)}
                    if compile_s is not None or hit is not None or fallback or prepare or root else None),
        "warmup": ({"seconds": warm["seconds"] if warm else _f(prepare["attrs"].get(sc.LOAD_WARMUP_SECONDS))}
                   if warm or prepare else None),
        "ready": ({"seconds": _f(root["attrs"].get(sc.LOAD_TOTAL_SECONDS)) or root["seconds"],
                   "cold_start_seconds": _f(root["attrs"].get(sc.LOAD_COLD_START_SECONDS))} if root else None),
    }
    out, running = [], root is None
    for name in PHASES:
        if phases[name] is not None:
            out.append({"phase": name, "state": "done", **phases[name]})
        else:
            state = "missing" if root is not None else "running" if running else "pending"
            out.append({"phase": name, "state": state, "seconds": None})
            running = False
    model = _attr(spans, sc.LOAD_MODEL_NAME) or (_attr(spans, sc.LOAD_MODEL_PATH) or "").rstrip("/").split("/")[-1]
    return {
        "service": (root or spans[0])["service"], "model": model, "started": spans[0]["start"],
        "updated": max(s["start"] + s["seconds"] for s in spans), "ready": root is not None,
        "load_seconds": phases["ready"]["seconds"] if root else None,
        "cold_start_seconds": phases["ready"]["cold_start_seconds"] if root else None,
        "weights_bytes": phases["weights"]["bytes"] if weights else None,
        "compile_cache_hit": None if hit is None else bool(hit), "phases": out,
    }


def engine_starts(store, since: float, limit: int = 10) -> list[dict[str, Any]]:
    """Engine starts whose first stored startup span began at or after ``since`` (unix s), newest first, at most
    ``limit``; each as :func:`fold_start` gives it plus ``trace_id``."""
    rows = store.query(
        "SELECT TraceId, SpanName, toUnixTimestamp64Nano(Timestamp) / 1e9, Duration / 1e9, ServiceName, "
        "Attributes FROM llm_startup_spans FINAL WHERE Timestamp >= toDateTime64({since:Float64}, 9) "
        "ORDER BY Timestamp", parameters={"since": float(since)}).result_rows
    traces: dict[str, list[dict]] = {}
    for tid, name, start, seconds, service, attrs in rows:
        traces.setdefault(tid, []).append({"name": name, "start": float(start), "seconds": float(seconds),
                                           "service": service, "attrs": dict(attrs)})
    starts = [{"trace_id": tid, **fold_start(spans)} for tid, spans in traces.items()]
    return sorted(starts, key=lambda s: s["started"], reverse=True)[:limit]


def startup_route(store, query: dict[str, str]) -> tuple[int, dict]:
    """Read API handler for ``/api/v1/startup?window=3600&since=&limit=10``: :func:`engine_starts` since ``since``
    (unix s; default now − ``window`` s, 1 s … 400 d), at most ``limit`` (1…1000). Body ``{"starts": [...]}``.
    A parameter that is not a finite number in range raises ``ValueError`` (HTTP 400, one line)."""
    import time

    window = number_param(query, "window", DEFAULT_WINDOW_S, 1, MAX_WINDOW_S)
    since = number_param(query, "since", time.time() - window, 0, 1e12)
    limit = int(number_param(query, "limit", 10, 1, 1000))
    return 200, {"starts": engine_starts(store, since, limit)}
