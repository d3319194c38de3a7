-- Analytics inside ClickHouse (issue 20): the spans of engine starts (model-load traces), copied at insert time from
-- the traces table into one small table of one shape, whatever the exporter's attribute mode: the startup span names
-- vLLM and our instrumentation emit (analytics/loads.py: STARTUP_SPANS) with only the model-load attributes
-- (LOAD_ATTRIBUTES) as a Map, empty values left out. llm_model_loads (0133) and the live engine-start view
-- (analytics/startup.py, /api/v1/startup, `vllm-otel top`) read it. Duration is nanoseconds.
-- ReplacingMergeTree on (TraceId, SpanId): a span stored twice (an exporter retry, the backfill below racing the view)
-- counts once for readers that use FINAL. A trace's spans come from several processes and batches; sharded by
-- cityHash64(TraceId) they all land on one shard.
CREATE TABLE IF NOT EXISTS ${db}.llm_startup_spans ${on_cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1))
) ENGINE = ${engine_prefix}ReplacingMergeTree()
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TraceId, SpanId)
${ttl_Timestamp}
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.llm_startup_spans_mv ${on_cluster} TO ${db}.llm_startup_spans AS
SELECT Timestamp, TraceId, SpanId, ServiceName, SpanName, toUInt64(greatest(Duration, 0)) AS Duration,
       ${attrmap:LOAD_ATTRIBUTES} AS Attributes
FROM ${traces}
WHERE SpanName IN ${list:STARTUP_SPANS};

-- Engine starts stored before this migration (the view only sees new inserts); idempotent (ReplacingMergeTree).
INSERT INTO ${db}.llm_startup_spans
SELECT Timestamp, TraceId, SpanId, ServiceName, SpanName, toUInt64(greatest(Duration, 0)) AS Duration,
       ${attrmap:LOAD_ATTRIBUTES} AS Attributes
FROM ${traces}
WHERE SpanName IN ${list:STARTUP_SPANS};
