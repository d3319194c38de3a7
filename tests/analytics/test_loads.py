"""Model-load rows assembled by ClickHouse (migrations 0132/0133) from a load trace whose attributes are spread over
spans of several processes and batches."""

from __future__ import annotations

import time

from opentelemetry.instrumentation.vllm import semconv as sc
from vllm_otel_collector.analytics.loads import assemble

from .synth import span, store_spans

T0 = 1_800_000_000
TRACE = "ab" * 16


def ns(s: float) -> int:
    return int((T0 + s) * 1e9)


def load_row(store) -> dict:
    res = store.query("SELECT * EXCEPT (Timestamp, AssembledAt) FROM llm_model_loads FINAL")
    assert len(res.result_rows) == 1
    return dict(zip(res.column_names, res.result_rows[0]))


def test_load_row_from_spans_of_two_processes(store):
    # API-server process: the root, with model identity and cold start
    store_spans(store, [span(1, "Overall Loading", ns(0), 150.0, {
        sc.LOAD_MODEL_NAME: "SmolLM2-135M", sc.LOAD_MODEL_PATH: "/models/smol", sc.LOAD_DTYPE: "bfloat16",
        sc.LOAD_COLD_START_SECONDS: 160.5, "code.function": "x"}, trace=TRACE)])
    assert assemble(store, T0 + 100) == 0  # root has not ended yet
    # EngineCore / worker process, a later batch: weights, KV cache, compile
    store_spans(store, [
        span(2, "Load weights", ns(5), 12.0, {sc.LOAD_WEIGHTS_BYTES: 270_000_000}, trace=TRACE, parent=f"{1:016x}",
             service="vllm-engine"),
        span(3, "Allocate KV cache", ns(20), 3.0, {sc.LOAD_KV_BLOCKS: 4096, sc.LOAD_KV_BYTES: 2**30,
                                                  sc.LOAD_MEMORY_PEAK: 3 * 2**30}, trace=TRACE, service="vllm-engine"),
        span(4, "Warmup (CPU)", ns(30), 40.0, {sc.LOAD_COMPILE_SECONDS: 40.0, sc.LOAD_COMPILE_CACHE_HIT: "false"},
             trace=TRACE, service="vllm-engine"),
        span(5, "chat m", ns(10), 1.0, {}, trace="cd" * 16),  # another trace: ignored
    ])
    assert assemble(store, T0 + 170) == 0  # ended at +150, settle 30 s: not yet
    assert assemble(store, T0 + 181) == 1
    assert assemble(store, T0 + 200) == 0  # already assembled
    assert load_row(store) == {
        "TraceId": TRACE, "ServiceName": "vllm", "Model": "SmolLM2-135M", "ModelPath": "/models/smol",
        "Dtype": "bfloat16", "Quantization": "", "Device": "", "TensorParallelSize": 1, "PipelineParallelSize": 1,
        "LoadSeconds": 150.0, "WeightsSeconds": 12.0, "DownloadSeconds": None, "CompileSeconds": 40.0,
        "GraphCaptureSeconds": None, "WarmupSeconds": None, "KVCacheSeconds": 3.0, "ColdStartSeconds": 160.5,
        "WeightsBytes": 270_000_000, "CompileCacheHit": 0, "KVCacheBlocks": 4096, "KVCacheBytes": 2**30,
        "MemoryBeforeBytes": None, "MemoryAfterBytes": None, "MemoryPeakBytes": 3 * 2**30, "LoadLevel": "SLOW",
        "SpanCount": 4,
    }
    # only the model-load attributes are kept, empty values left out
    attrs = store.query("SELECT Attributes FROM llm_startup_spans FINAL WHERE SpanId = {s:String}",
                        parameters={"s": f"{1:016x}"}).result_rows[0][0]
    assert "code.function" not in attrs and attrs[sc.LOAD_MODEL_PATH] == "/models/smol"


def test_native_only_trace_uses_span_durations(store):
    store_spans(store, [span(1, "vllm.model_load", int(T0 * 1e9), 20.0, {"code.function": "x"}, trace=TRACE),
                        span(2, "Load weights", int(T0 * 1e9) + 1, 4.5, {}, trace=TRACE)])
    assert assemble(store, T0 + 60) == 1
    got = store.query("SELECT Model, LoadSeconds, WeightsSeconds, LoadLevel, CompileCacheHit FROM llm_model_loads")
    assert got.result_rows == [("", 20.0, 4.5, "EXCELLENT", None)]


def test_the_root_value_wins_then_the_earliest_span_and_bad_numbers_are_null(store):
    third = span(3, "Load model", ns(2), 1.0, {sc.LOAD_MODEL_PATH: "/m/later", sc.LOAD_COMPILE_CACHE_HIT: "YES "},
                 trace=TRACE)
    store_spans(store, [
        span(1, "Overall Loading", ns(0), 10.0, {sc.LOAD_DTYPE: "float16", sc.LOAD_TP_SIZE: "1e9",
                                                 sc.LOAD_TOTAL_SECONDS: "nan"}, trace=TRACE),
        span(2, "Load model", ns(1), 1.0, {sc.LOAD_DTYPE: "float32", sc.LOAD_MODEL_PATH: "/m/x/",
                                           sc.LOAD_WEIGHTS_BYTES: "-5", sc.LOAD_MEMORY_PEAK: "2e40"}, trace=TRACE),
        third,
    ])
    store_spans(store, [third])  # the same span stored twice (an exporter retry) counts once
    assert assemble(store, T0 + 100) == 1
    row = load_row(store)
    assert (row["Dtype"], row["ModelPath"], row["Model"]) == ("float16", "/m/x/", "x")
    assert row["TensorParallelSize"] == 65535  # clamped, not an insert error
    assert row["LoadSeconds"] == 10.0  # NaN attribute: the root's Duration
    assert row["WeightsBytes"] is None and row["MemoryPeakBytes"] is None  # negative / beyond Float32: NULL
    assert row["CompileCacheHit"] == 1 and row["SpanCount"] == 3


def test_clickhouse_assembles_loads_by_itself(store):
    """The refreshable view appends the row with no vllm-otel process involved (forced here instead of waited
    for); a second refresh adds nothing."""
    now = time.time()
    start = int((now - 120) * 1e9)
    store_spans(store, [span(1, "Overall Loading", start, 60.0, {sc.LOAD_MODEL_NAME: "m"}, trace=TRACE),
                        span(2, "Load weights", start + 10**9, 5.0, {}, trace=TRACE),
                        span(3, "Overall Loading", int((now - 5) * 1e9), 1.0, {}, trace="ef" * 16)])  # not settled
    for _ in range(2):
        store.command("SYSTEM REFRESH VIEW llm_model_loads_mv")
        store.command("SYSTEM WAIT VIEW llm_model_loads_mv")
    assert store.query("SELECT TraceId, Model, WeightsSeconds FROM llm_model_loads").result_rows == [(TRACE, "m", 5.0)]
