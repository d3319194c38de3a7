"""Model loads: one ``llm_model_loads`` row per engine start, assembled by ClickHouse.

A load trace's attributes are spread over many spans written by several processes (API server, EngineCore,
workers), possibly in different batches and through any pipeline. So the assembly lives in the database
(migrations ``0132``/``0133``):

- ``llm_startup_spans``: a materialized view copies the spans named in :data:`STARTUP_SPANS` from the traces table,
  with only the :data:`LOAD_ATTRIBUTES` (one Map shape whatever the exporter's attribute mode);
- ``llm_model_loads_live``: a view folding each trace into a row (the rules are in the migration and in
  docs/analytics.md);
- ``llm_model_loads_mv``: a refreshable materialized view that every 30 s appends the starts whose root
  (:data:`~opentelemetry.instrumentation.vllm.semconv.MODEL_LOAD_ROOT_NAMES`) ended ``model_load_settle_seconds``
  ago and have no row yet. ``llm_model_loads`` is a ReplacingMergeTree on TraceId: a duplicate assembly collapses.

:func:`assemble` runs the same assembly now (a test or the demo need not wait for the next refresh).
"""

from __future__ import annotations

from opentelemetry.instrumentation.vllm import semconv as sc

#: vLLM's native startup span names whose Duration stands in for a missing attribute.
NATIVE_WEIGHTS_SPAN = "Load weights"
NATIVE_KV_SPAN = "Allocate KV cache"
PREPARE_SPAN = "Prepare model"
LOAD_MODEL_SPAN = "Load model"
CPU_WARMUP_SPAN = "Warmup (CPU)"
GPU_WARMUP_SPAN = "Warmup (GPU)"
#: vLLM's other startup spans (``@instrument(span_name=...)`` in vLLM 0.32: engine, executor, workers, model
#: loaders, compilation, warm-ups): stored so that a start's first span and its span count are right.
OTHER_STARTUP_SPANS = (
    "EngineCoreProc init", "Executor init", "Worker init", "Loading (CPU)", "Loading (GPU)", "Initialize model",
    "Init device", "Capture model", "SyncMPClient init", "AsyncMPClient init", "Download weights - HF",
    "Compile graph", "Inductor compilation", "DeepGemm warmup", "CuTeDSL warmup", "MiniMax M3 MSA warmup",
    "API server setup",
)
#: Every span name copied into ``llm_startup_spans`` (migration 0132).
STARTUP_SPANS = (*sc.MODEL_LOAD_ROOT_NAMES, NATIVE_WEIGHTS_SPAN, NATIVE_KV_SPAN, PREPARE_SPAN, LOAD_MODEL_SPAN,
                 CPU_WARMUP_SPAN, GPU_WARMUP_SPAN, *OTHER_STARTUP_SPANS)
#: The span attributes kept in ``llm_startup_spans.Attributes`` (the model-load enrichment, semconv names).
LOAD_ATTRIBUTES = (
    sc.LOAD_MODEL_NAME, sc.LOAD_MODEL_PATH, sc.LOAD_DTYPE, sc.LOAD_QUANTIZATION, sc.LOAD_TP_SIZE, sc.LOAD_PP_SIZE,
    sc.LOAD_DEVICE, sc.LOAD_WEIGHTS_BYTES, sc.LOAD_WEIGHTS_SECONDS, sc.LOAD_DOWNLOAD_SECONDS, sc.LOAD_MEMORY_BEFORE,
    sc.LOAD_MEMORY_AFTER, sc.LOAD_MEMORY_PEAK, sc.LOAD_KV_BLOCKS, sc.LOAD_KV_BYTES, sc.LOAD_COMPILE_SECONDS,
    sc.LOAD_COMPILE_CACHE_HIT, sc.LOAD_CUDA_GRAPH_SECONDS, sc.LOAD_WARMUP_SECONDS, sc.LOAD_COLD_START_SECONDS,
    sc.LOAD_TOTAL_SECONDS, sc.LOAD_COMPILE_CACHE_PATH, sc.LOAD_COMPILE_CACHE_FALLBACK_REASON,
)


def assemble(store, now: float, settle_seconds: float = 30.0, lookback_seconds: float = 86400.0) -> int:
    """Insert the ``llm_model_loads`` rows ClickHouse's next refresh would: starts whose root ended at least
    ``settle_seconds`` before ``now`` (unix seconds), began within ``lookback_seconds``, and have no row yet.

    Returns the number of rows inserted. The fold is the database's (``llm_model_loads_pending``), not Python's.
    """
    params = {"cutoff": int((now - settle_seconds) * 1e9), "since": int((now - lookback_seconds) * 1e9)}
    pending = store.query("SELECT count() FROM llm_model_loads_pending(cutoff_ns = {cutoff:Int64}, "
                          "since_ns = {since:Int64})", parameters=params).result_rows[0][0]
    if pending:
        store.command("INSERT INTO llm_model_loads SELECT * FROM llm_model_loads_pending(cutoff_ns = {cutoff:Int64}, "
                      "since_ns = {since:Int64})", parameters=params)
    return int(pending)
