-- Analytics (issue 5): one row per LLM request span (ours or vLLM's native llm_request), written by the analytics
-- processor (vllm_otel_collector/analytics/derive.py). Latencies in seconds (NULL when the span did not carry them);
-- *Level = performance level of that latency against its configured threshold (NONE when no threshold/value).
-- Compact types: Float32 latencies, UInt32 token counts, Enum8 status/levels, LowCardinality labels.
CREATE TABLE IF NOT EXISTS ${db}.llm_requests ${on_cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Model LowCardinality(String) CODEC(ZSTD(1)),
    Operation LowCardinality(String) CODEC(ZSTD(1)),
    Status Enum8('ok' = 0, 'error' = 1, 'abort' = 2, 'timeout' = 3) CODEC(ZSTD(1)),
    FinishReason LowCardinality(String) CODEC(ZSTD(1)),
    ErrorType LowCardinality(String) CODEC(ZSTD(1)),
    TTFT Nullable(Float32) CODEC(ZSTD(1)),
    TPOT Nullable(Float32) CODEC(ZSTD(1)),
    E2E Nullable(Float32) CODEC(ZSTD(1)),
    Queue Nullable(Float32) CODEC(ZSTD(1)),
    Prefill Nullable(Float32) CODEC(ZSTD(1)),
    Decode Nullable(Float32) CODEC(ZSTD(1)),
    InputTokens UInt32 CODEC(T64, ZSTD(1)),
    OutputTokens UInt32 CODEC(T64, ZSTD(1)),
    CachedTokens UInt32 CODEC(T64, ZSTD(1)),
    TokensPerSecond Nullable(Float32) CODEC(ZSTD(1)),
    Preemptions UInt16 CODEC(T64, ZSTD(1)),
    LoraName LowCardinality(String) CODEC(ZSTD(1)),
    TTFTLevel Enum8('NONE' = 0, 'EXCELLENT' = 1, 'GOOD' = 2, 'SLOW' = 3, 'BOTTLENECK' = 4) CODEC(ZSTD(1)),
    TPOTLevel Enum8('NONE' = 0, 'EXCELLENT' = 1, 'GOOD' = 2, 'SLOW' = 3, 'BOTTLENECK' = 4) CODEC(ZSTD(1)),
    E2ELevel Enum8('NONE' = 0, 'EXCELLENT' = 1, 'GOOD' = 2, 'SLOW' = 3, 'BOTTLENECK' = 4) CODEC(ZSTD(1)),
    QueueLevel Enum8('NONE' = 0, 'EXCELLENT' = 1, 'GOOD' = 2, 'SLOW' = 3, 'BOTTLENECK' = 4) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = ${engine_prefix}MergeTree()
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, Model, Operation, Timestamp)
${ttl_Timestamp}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

-- Performance levels of spans from ANY instrumentation (e.g. a voice pipeline's stt_processing / llm_response /
-- tts_synthesis): one row per span whose name has a `duration` threshold in the analytics config.
-- Value/Threshold in seconds.
CREATE TABLE IF NOT EXISTS ${db}.span_levels ${on_cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    Metric LowCardinality(String) CODEC(ZSTD(1)),
    Value Float32 CODEC(ZSTD(1)),
    Threshold Float32 CODEC(ZSTD(1)),
    Level Enum8('NONE' = 0, 'EXCELLENT' = 1, 'GOOD' = 2, 'SLOW' = 3, 'BOTTLENECK' = 4) CODEC(ZSTD(1))
) ENGINE = ${engine_prefix}MergeTree()
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, Timestamp)
${ttl_Timestamp}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;
