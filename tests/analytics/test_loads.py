"""Model-load rows assembled from a load trace whose attributes are spread over spans of several processes."""

from __future__ import annotations

from opentelemetry.instrumentation.vllm import semconv as sc
from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.levels import Thresholds
from vllm_otel_collector.analytics.loads import assemble_pending

from .synth import columns, span

T0 = 1_800_000_000
THR = Thresholds(AnalyticsConfig().levels)
TRACE = "ab" * 16


def write(store, spans):
    cols = columns(spans)
    store.insert("otel_traces", {k: cols[k] for k in ("Timestamp", "TraceId", "SpanId", "ParentSpanId", "SpanName",
                                                     "ServiceName", "SpanAttributes", "Duration", "StatusCode")})


def test_load_row_from_spans_of_two_processes(store):
    ns = lambda s: int((T0 + s) * 1e9)  # noqa: E731
    # API-server process: the root, with model identity and cold start
    write(store, [span(1, "Overall Loading", ns(0), 150.0, {
        sc.LOAD_MODEL_NAME: "SmolLM2-135M", sc.LOAD_MODEL_PATH: "/models/smol", sc.LOAD_DTYPE: "bfloat16",
        sc.LOAD_COLD_START_SECONDS: 160.5}, trace=TRACE)])
    assert assemble_pending(store, T0 + 100, THR) == 0  # root has not ended yet
    # EngineCore / worker process, a later batch: weights, KV cache, compile
    write(store, [
        span(2, "Load weights", ns(5), 12.0, {sc.LOAD_WEIGHTS_BYTES: 270_000_000}, trace=TRACE, parent=f"{1:016x}",
             service="vllm-engine"),
        span(3, "Allocate KV cache", ns(20), 3.0, {sc.LOAD_KV_BLOCKS: 4096, sc.LOAD_KV_BYTES: 2**30,
                                                  sc.LOAD_MEMORY_PEAK: 3 * 2**30}, trace=TRACE, service="vllm-engine"),
        span(4, "compile", ns(30), 40.0, {sc.LOAD_COMPILE_SECONDS: 40.0, sc.LOAD_COMPILE_CACHE_HIT: "false"},
             trace=TRACE, service="vllm-engine"),
        span(5, "chat m", ns(10), 1.0, {}, trace="cd" * 16),  # another trace: ignored
    ])
    assert assemble_pending(store, T0 + 170, THR) == 0  # ended at +150, settle 30 s: not yet
    assert assemble_pending(store, T0 + 181, THR) == 1
    assert assemble_pending(store, T0 + 200, THR) == 0  # already assembled
    res = store.query("SELECT * EXCEPT (Timestamp, AssembledAt) FROM llm_model_loads FINAL")
    row = dict(zip(res.column_names, res.result_rows[0]))
    assert row == {
        "TraceId": TRACE, "ServiceName": "vllm", "Model": "SmolLM2-135M", "ModelPath": "/models/smol",
        "Dtype": "bfloat16", "Quantization": "", "Device": "", "TensorParallelSize": 1, "PipelineParallelSize": 1,
        "LoadSeconds": 150.0, "WeightsSeconds": 12.0, "DownloadSeconds": None, "CompileSeconds": 40.0,
        "GraphCaptureSeconds": None, "WarmupSeconds": None, "KVCacheSeconds": 3.0, "ColdStartSeconds": 160.5,
        "WeightsBytes": 270_000_000, "CompileCacheHit": 0, "KVCacheBlocks": 4096, "KVCacheBytes": 2**30,
        "MemoryBeforeBytes": None, "MemoryAfterBytes": None, "MemoryPeakBytes": 3 * 2**30, "LoadLevel": "SLOW",
        "SpanCount": 4,
    }


def test_native_only_trace_uses_span_durations(store):
    write(store, [span(1, "vllm.model_load", int(T0 * 1e9), 20.0, {"code.function": "x"}, trace=TRACE),
                  span(2, "Load weights", int(T0 * 1e9) + 1, 4.5, {}, trace=TRACE)])
    assert assemble_pending(store, T0 + 60, THR) == 1
    got = store.query("SELECT Model, LoadSeconds, WeightsSeconds, LoadLevel, CompileCacheHit FROM llm_model_loads")
    assert got.result_rows == [("", 20.0, 4.5, "EXCELLENT", None)]
