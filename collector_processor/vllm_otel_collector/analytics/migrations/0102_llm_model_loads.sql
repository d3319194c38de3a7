-- Analytics (issue 5): one row per engine start (model-load trace), assembled by a periodic job
-- (vllm_otel_collector/analytics/loads.py) from all spans of the trace once its root ("Overall Loading" or
-- "vllm.model_load") has been stored for a while: attributes are spread over spans written by several processes.
-- ReplacingMergeTree on TraceId: re-assembly (e.g. by several collector replicas) keeps the newest row.
-- Durations in seconds, sizes in bytes; NULL when no span carried the value.
CREATE TABLE IF NOT EXISTS ${db}.llm_model_loads ${on_cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Model LowCardinality(String) CODEC(ZSTD(1)),
    ModelPath String CODEC(ZSTD(1)),
    Dtype LowCardinality(String) CODEC(ZSTD(1)),
    Quantization LowCardinality(String) CODEC(ZSTD(1)),
    Device LowCardinality(String) CODEC(ZSTD(1)),
    TensorParallelSize UInt16 CODEC(ZSTD(1)),
    PipelineParallelSize UInt16 CODEC(ZSTD(1)),
    LoadSeconds Nullable(Float32) CODEC(ZSTD(1)),
    WeightsSeconds Nullable(Float32) CODEC(ZSTD(1)),
    DownloadSeconds Nullable(Float32) CODEC(ZSTD(1)),
    CompileSeconds Nullable(Float32) CODEC(ZSTD(1)),
    GraphCaptureSeconds Nullable(Float32) CODEC(ZSTD(1)),
    WarmupSeconds Nullable(Float32) CODEC(ZSTD(1)),
    KVCacheSeconds Nullable(Float32) CODEC(ZSTD(1)),
    ColdStartSeconds Nullable(Float32) CODEC(ZSTD(1)),
    WeightsBytes Nullable(UInt64) CODEC(ZSTD(1)),
    CompileCacheHit Nullable(UInt8) CODEC(ZSTD(1)),
    KVCacheBlocks Nullable(UInt64) CODEC(ZSTD(1)),
    KVCacheBytes Nullable(UInt64) CODEC(ZSTD(1)),
    MemoryBeforeBytes Nullable(UInt64) CODEC(ZSTD(1)),
    MemoryAfterBytes Nullable(UInt64) CODEC(ZSTD(1)),
    MemoryPeakBytes Nullable(UInt64) CODEC(ZSTD(1)),
    LoadLevel Enum8('NONE' = 0, 'EXCELLENT' = 1, 'GOOD' = 2, 'SLOW' = 3, 'BOTTLENECK' = 4) CODEC(ZSTD(1)),
    SpanCount UInt32 CODEC(ZSTD(1)),
    AssembledAt DateTime64(3) CODEC(ZSTD(1))
) ENGINE = ${engine_prefix}ReplacingMergeTree(AssembledAt)
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TraceId)
${ttl_Timestamp}
SETTINGS index_granularity = 8192;
