-- Issue 24: a 5-minute rollup level between llm_requests_1m and llm_requests_1h, so that the dashboard's 24 h panels
-- (Grafana's $__interval_s is 300 s at 24 h for maxDataPoints 200) merge ~5x fewer histogram entries than from the
-- minute rollup (docs/BENCHMARKS.md, section 3). Same columns as llm_requests_1m after 0101, 0105 and 0134 (counts,
-- sums, Over/Max, the <M>Hist sumMap histograms, Good and the Cause* counts), Bucket = toStartOfFiveMinutes; the
-- materialized view is 0134's minute view with only the bucket function changed: change the three together.
-- Steps (each idempotent): the table; the backfill of the buckets whose raw rows still exist (a (bucket, key) that
-- is already in llm_requests_5m is skipped, so a re-run after an interruption adds nothing -- as 0105; buckets older
-- than the raw retention stay empty); the view. Run while no rows are inserted (the collector migrates before it
-- starts its receivers): rows inserted between the backfill and the view would be missing from llm_requests_5m.
CREATE TABLE IF NOT EXISTS ${db}.llm_requests_5m ${on_cluster} (
    Bucket DateTime CODEC(Delta(4), ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Model LowCardinality(String) CODEC(ZSTD(1)),
    Operation LowCardinality(String) CODEC(ZSTD(1)),
    Requests SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    Ok SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    Errors SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    Aborts SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    Timeouts SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    InputTokens SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    OutputTokens SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    CachedTokens SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    CacheHits SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    TTFTCount SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    TTFTSum SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    TPOTCount SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    TPOTSum SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    E2ECount SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    E2ESum SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    QueueCount SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    QueueSum SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    PrefillCount SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    PrefillSum SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    DecodeCount SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    DecodeSum SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    TokensPerSecondCount SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    TokensPerSecondSum SimpleAggregateFunction(sum, Float64) CODEC(ZSTD(1)),
    TTFTOver SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    TTFTMax SimpleAggregateFunction(max, Float32) CODEC(ZSTD(1)),
    TPOTOver SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    TPOTMax SimpleAggregateFunction(max, Float32) CODEC(ZSTD(1)),
    E2EOver SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    E2EMax SimpleAggregateFunction(max, Float32) CODEC(ZSTD(1)),
    QueueOver SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    QueueMax SimpleAggregateFunction(max, Float32) CODEC(ZSTD(1)),
    TTFTHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    TPOTHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    E2EHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    QueueHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    PrefillHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    DecodeHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    TokensPerSecondHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    Good SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    CauseQueued SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    CausePrefill SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    CauseDecode SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    CausePreempted SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1))
) ENGINE = ${engine_prefix}AggregatingMergeTree()
PARTITION BY toDate(Bucket)
ORDER BY (ServiceName, Model, Operation, Bucket)
${ttl_Bucket}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

INSERT INTO ${db}.llm_requests_5m (Bucket, ServiceName, Model, Operation, Requests, Ok, Errors, Aborts, Timeouts, InputTokens, OutputTokens, CachedTokens, CacheHits, TTFTCount, TTFTSum, TPOTCount, TPOTSum, E2ECount, E2ESum, QueueCount, QueueSum, PrefillCount, PrefillSum, DecodeCount, DecodeSum, TokensPerSecondCount, TokensPerSecondSum, TTFTOver, TTFTMax, TPOTOver, TPOTMax, E2EOver, E2EMax, QueueOver, QueueMax, Good, CauseQueued, CausePrefill, CauseDecode, CausePreempted, TTFTHist, TPOTHist, E2EHist, QueueHist, PrefillHist, DecodeHist, TokensPerSecondHist)
SELECT
    toStartOfFiveMinutes(toDateTime(Timestamp)) AS Bucket,
    ServiceName,
    Model,
    Operation,
    ${sql:ROLLUP_AGGREGATES}
FROM ${db}.llm_requests AS r
WHERE (toStartOfFiveMinutes(toDateTime(Timestamp)), ServiceName, Model, Operation) NOT IN (
    SELECT Bucket, ServiceName, Model, Operation FROM ${db}.llm_requests_5m)
GROUP BY Bucket, ServiceName, Model, Operation;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.llm_requests_5m_mv ${on_cluster}
TO ${db}.llm_requests_5m
AS SELECT
    toStartOfFiveMinutes(toDateTime(Timestamp)) AS Bucket,
    ServiceName,
    Model,
    Operation,
    ${sql:ROLLUP_AGGREGATES}
FROM ${db}.llm_requests AS r
GROUP BY Bucket, ServiceName, Model, Operation;
