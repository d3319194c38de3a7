-- Analytics (issue 5): one row per alert state change, written by the alert evaluator
-- (vllm_otel_collector/analytics/alerts.py). State of a fingerprint = State of its newest row.
-- Value/Threshold in the rule's unit (seconds, ratio, bytes, tokens/s, burn-rate factor); WindowSeconds = evaluation window.
CREATE TABLE IF NOT EXISTS ${db}.llm_alerts ${on_cluster} (
    Timestamp DateTime64(3) CODEC(Delta(8), ZSTD(1)),
    Fingerprint String CODEC(ZSTD(1)),
    RuleName LowCardinality(String) CODEC(ZSTD(1)),
    State Enum8('firing' = 1, 'resolved' = 2) CODEC(ZSTD(1)),
    Severity LowCardinality(String) CODEC(ZSTD(1)),
    Labels Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Value Float64 CODEC(ZSTD(1)),
    Threshold Float64 CODEC(ZSTD(1)),
    WindowSeconds UInt32 CODEC(ZSTD(1)),
    Message String CODEC(ZSTD(1)),
    Suggestion String CODEC(ZSTD(1)),
    StartsAt DateTime64(3) CODEC(ZSTD(1))
) ENGINE = ${engine_prefix}MergeTree()
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (Fingerprint, Timestamp)
${ttl_Timestamp}
SETTINGS index_granularity = 8192;
