-- Issue 15: latency distributions as mergeable log-scale histograms instead of t-digest states.
-- Per latency M in TTFT, TPOT, E2E, Queue, Prefill, Decode, TokensPerSecond the rollups get
-- <M>Hist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)): OpenTelemetry exponential-histogram bucket index at
-- scale 5 (bucket i holds 2^(i/32) < v <= 2^((i+1)/32); -32768 = the zero bucket: v <= 0 or NaN; NULL not counted)
-- -> requests. Merge = sumMap (addition). Quantiles: vllm_otel_collector/analytics/histogram.py (relative error
-- <= 1.083 %). The t-digest <M>Quantiles columns are dropped.
-- Steps (each idempotent): drop the views; add the columns; drop the t-digest columns; backfill the histograms of the
-- buckets whose raw rows still exist (rows with only the histogram set: every other column adds 0 / max 0; a bucket
-- that already holds a histogram is skipped, so a re-run after an interruption adds nothing -- a deduplication token
-- was not enough: it names blocks by position, and an INSERT ... SELECT may split its output into blocks differently
-- on each run; buckets older than the raw retention keep their counts and sums but get no histogram); re-create the
-- views. Run while no rows are inserted (the collector migrates before it starts its receivers).
DROP VIEW IF EXISTS ${db}.llm_requests_1m_mv ${on_cluster};
DROP VIEW IF EXISTS ${db}.llm_requests_1h_mv ${on_cluster};

ALTER TABLE ${db}.llm_requests_1m ${on_cluster}
    ADD COLUMN IF NOT EXISTS TTFTHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS TPOTHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS E2EHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS QueueHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS PrefillHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS DecodeHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS TokensPerSecondHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1));

ALTER TABLE ${db}.llm_requests_1h ${on_cluster}
    ADD COLUMN IF NOT EXISTS TTFTHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS TPOTHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS E2EHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS QueueHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS PrefillHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS DecodeHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS TokensPerSecondHist SimpleAggregateFunction(sumMap, Map(Int16, UInt64)) CODEC(ZSTD(1));

ALTER TABLE ${db}.llm_requests_1m ${on_cluster}
    DROP COLUMN IF EXISTS TTFTQuantiles,
    DROP COLUMN IF EXISTS TPOTQuantiles,
    DROP COLUMN IF EXISTS E2EQuantiles,
    DROP COLUMN IF EXISTS QueueQuantiles,
    DROP COLUMN IF EXISTS TokensPerSecondQuantiles;

ALTER TABLE ${db}.llm_requests_1h ${on_cluster}
    DROP COLUMN IF EXISTS TTFTQuantiles,
    DROP COLUMN IF EXISTS TPOTQuantiles,
    DROP COLUMN IF EXISTS E2EQuantiles,
    DROP COLUMN IF EXISTS QueueQuantiles,
    DROP COLUMN IF EXISTS TokensPerSecondQuantiles;

INSERT INTO ${db}.llm_requests_1m (Bucket, ServiceName, Model, Operation, TTFTHist, TPOTHist, E2EHist, QueueHist, PrefillHist, DecodeHist, TokensPerSecondHist)
SELECT
    toStartOfMinute(toDateTime(Timestamp)) AS Bucket,
    ServiceName,
    Model,
    Operation,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TTFT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TTFT))) * 32) - 1, 32000), -32000), -32768)), TTFT IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TTFT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TTFT))) * 32) - 1, 32000), -32000), -32768)), TTFT IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TTFT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TTFT))) * 32) - 1, 32000), -32000), -32768)), TTFT IS NOT NULL))))), 'Map(Int16, UInt64)') AS TTFTHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TPOT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TPOT))) * 32) - 1, 32000), -32000), -32768)), TPOT IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TPOT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TPOT))) * 32) - 1, 32000), -32000), -32768)), TPOT IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TPOT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TPOT))) * 32) - 1, 32000), -32000), -32768)), TPOT IS NOT NULL))))), 'Map(Int16, UInt64)') AS TPOTHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(E2E)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(E2E))) * 32) - 1, 32000), -32000), -32768)), E2E IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(E2E)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(E2E))) * 32) - 1, 32000), -32000), -32768)), E2E IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(E2E)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(E2E))) * 32) - 1, 32000), -32000), -32768)), E2E IS NOT NULL))))), 'Map(Int16, UInt64)') AS E2EHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Queue)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Queue))) * 32) - 1, 32000), -32000), -32768)), Queue IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Queue)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Queue))) * 32) - 1, 32000), -32000), -32768)), Queue IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Queue)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Queue))) * 32) - 1, 32000), -32000), -32768)), Queue IS NOT NULL))))), 'Map(Int16, UInt64)') AS QueueHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Prefill)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Prefill))) * 32) - 1, 32000), -32000), -32768)), Prefill IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Prefill)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Prefill))) * 32) - 1, 32000), -32000), -32768)), Prefill IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Prefill)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Prefill))) * 32) - 1, 32000), -32000), -32768)), Prefill IS NOT NULL))))), 'Map(Int16, UInt64)') AS PrefillHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Decode)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Decode))) * 32) - 1, 32000), -32000), -32768)), Decode IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Decode)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Decode))) * 32) - 1, 32000), -32000), -32768)), Decode IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Decode)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Decode))) * 32) - 1, 32000), -32000), -32768)), Decode IS NOT NULL))))), 'Map(Int16, UInt64)') AS DecodeHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TokensPerSecond)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TokensPerSecond))) * 32) - 1, 32000), -32000), -32768)), TokensPerSecond IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TokensPerSecond)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TokensPerSecond))) * 32) - 1, 32000), -32000), -32768)), TokensPerSecond IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TokensPerSecond)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TokensPerSecond))) * 32) - 1, 32000), -32000), -32768)), TokensPerSecond IS NOT NULL))))), 'Map(Int16, UInt64)') AS TokensPerSecondHist
FROM ${db}.llm_requests
WHERE (toStartOfMinute(toDateTime(Timestamp)), ServiceName, Model, Operation) NOT IN (
    SELECT Bucket, ServiceName, Model, Operation FROM ${db}.llm_requests_1m
    WHERE notEmpty(TTFTHist) OR notEmpty(TPOTHist) OR notEmpty(E2EHist) OR notEmpty(QueueHist) OR notEmpty(PrefillHist) OR notEmpty(DecodeHist) OR notEmpty(TokensPerSecondHist))
GROUP BY Bucket, ServiceName, Model, Operation;

INSERT INTO ${db}.llm_requests_1h (Bucket, ServiceName, Model, Operation, TTFTHist, TPOTHist, E2EHist, QueueHist, PrefillHist, DecodeHist, TokensPerSecondHist)
SELECT
    toStartOfHour(toDateTime(Timestamp)) AS Bucket,
    ServiceName,
    Model,
    Operation,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TTFT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TTFT))) * 32) - 1, 32000), -32000), -32768)), TTFT IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TTFT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TTFT))) * 32) - 1, 32000), -32000), -32768)), TTFT IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TTFT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TTFT))) * 32) - 1, 32000), -32000), -32768)), TTFT IS NOT NULL))))), 'Map(Int16, UInt64)') AS TTFTHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TPOT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TPOT))) * 32) - 1, 32000), -32000), -32768)), TPOT IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TPOT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TPOT))) * 32) - 1, 32000), -32000), -32768)), TPOT IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TPOT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TPOT))) * 32) - 1, 32000), -32000), -32768)), TPOT IS NOT NULL))))), 'Map(Int16, UInt64)') AS TPOTHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(E2E)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(E2E))) * 32) - 1, 32000), -32000), -32768)), E2E IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(E2E)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(E2E))) * 32) - 1, 32000), -32000), -32768)), E2E IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(E2E)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(E2E))) * 32) - 1, 32000), -32000), -32768)), E2E IS NOT NULL))))), 'Map(Int16, UInt64)') AS E2EHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Queue)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Queue))) * 32) - 1, 32000), -32000), -32768)), Queue IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Queue)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Queue))) * 32) - 1, 32000), -32000), -32768)), Queue IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Queue)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Queue))) * 32) - 1, 32000), -32000), -32768)), Queue IS NOT NULL))))), 'Map(Int16, UInt64)') AS QueueHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Prefill)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Prefill))) * 32) - 1, 32000), -32000), -32768)), Prefill IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Prefill)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Prefill))) * 32) - 1, 32000), -32000), -32768)), Prefill IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Prefill)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Prefill))) * 32) - 1, 32000), -32000), -32768)), Prefill IS NOT NULL))))), 'Map(Int16, UInt64)') AS PrefillHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Decode)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Decode))) * 32) - 1, 32000), -32000), -32768)), Decode IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Decode)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Decode))) * 32) - 1, 32000), -32000), -32768)), Decode IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Decode)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Decode))) * 32) - 1, 32000), -32000), -32768)), Decode IS NOT NULL))))), 'Map(Int16, UInt64)') AS DecodeHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TokensPerSecond)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TokensPerSecond))) * 32) - 1, 32000), -32000), -32768)), TokensPerSecond IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TokensPerSecond)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TokensPerSecond))) * 32) - 1, 32000), -32000), -32768)), TokensPerSecond IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TokensPerSecond)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TokensPerSecond))) * 32) - 1, 32000), -32000), -32768)), TokensPerSecond IS NOT NULL))))), 'Map(Int16, UInt64)') AS TokensPerSecondHist
FROM ${db}.llm_requests
WHERE (toStartOfHour(toDateTime(Timestamp)), ServiceName, Model, Operation) NOT IN (
    SELECT Bucket, ServiceName, Model, Operation FROM ${db}.llm_requests_1h
    WHERE notEmpty(TTFTHist) OR notEmpty(TPOTHist) OR notEmpty(E2EHist) OR notEmpty(QueueHist) OR notEmpty(PrefillHist) OR notEmpty(DecodeHist) OR notEmpty(TokensPerSecondHist))
GROUP BY Bucket, ServiceName, Model, Operation;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.llm_requests_1m_mv ${on_cluster}
TO ${db}.llm_requests_1m
AS SELECT
    toStartOfMinute(toDateTime(Timestamp)) AS Bucket,
    ServiceName,
    Model,
    Operation,
    count() AS Requests,
    countIf(Status = 'ok') AS Ok,
    countIf(Status = 'error') AS Errors,
    countIf(Status = 'abort') AS Aborts,
    countIf(Status = 'timeout') AS Timeouts,
    sum(toUInt64(r.InputTokens)) AS InputTokens,
    sum(toUInt64(r.OutputTokens)) AS OutputTokens,
    sum(toUInt64(r.CachedTokens)) AS CachedTokens,
    countIf(r.CachedTokens > 0) AS CacheHits,
    count(TTFT) AS TTFTCount,
    sum(ifNull(toFloat64(TTFT), 0)) AS TTFTSum,
    count(TPOT) AS TPOTCount,
    sum(ifNull(toFloat64(TPOT), 0)) AS TPOTSum,
    count(E2E) AS E2ECount,
    sum(ifNull(toFloat64(E2E), 0)) AS E2ESum,
    count(Queue) AS QueueCount,
    sum(ifNull(toFloat64(Queue), 0)) AS QueueSum,
    count(Prefill) AS PrefillCount,
    sum(ifNull(toFloat64(Prefill), 0)) AS PrefillSum,
    count(Decode) AS DecodeCount,
    sum(ifNull(toFloat64(Decode), 0)) AS DecodeSum,
    count(TokensPerSecond) AS TokensPerSecondCount,
    sum(ifNull(toFloat64(TokensPerSecond), 0)) AS TokensPerSecondSum,
    countIf(TTFTLevel IN ('SLOW', 'BOTTLENECK')) AS TTFTOver,
    max(ifNull(TTFT, 0)) AS TTFTMax,
    countIf(TPOTLevel IN ('SLOW', 'BOTTLENECK')) AS TPOTOver,
    max(ifNull(TPOT, 0)) AS TPOTMax,
    countIf(E2ELevel IN ('SLOW', 'BOTTLENECK')) AS E2EOver,
    max(ifNull(E2E, 0)) AS E2EMax,
    countIf(QueueLevel IN ('SLOW', 'BOTTLENECK')) AS QueueOver,
    max(ifNull(Queue, 0)) AS QueueMax,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TTFT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TTFT))) * 32) - 1, 32000), -32000), -32768)), TTFT IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TTFT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TTFT))) * 32) - 1, 32000), -32000), -32768)), TTFT IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TTFT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TTFT))) * 32) - 1, 32000), -32000), -32768)), TTFT IS NOT NULL))))), 'Map(Int16, UInt64)') AS TTFTHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TPOT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TPOT))) * 32) - 1, 32000), -32000), -32768)), TPOT IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TPOT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TPOT))) * 32) - 1, 32000), -32000), -32768)), TPOT IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TPOT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TPOT))) * 32) - 1, 32000), -32000), -32768)), TPOT IS NOT NULL))))), 'Map(Int16, UInt64)') AS TPOTHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(E2E)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(E2E))) * 32) - 1, 32000), -32000), -32768)), E2E IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(E2E)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(E2E))) * 32) - 1, 32000), -32000), -32768)), E2E IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(E2E)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(E2E))) * 32) - 1, 32000), -32000), -32768)), E2E IS NOT NULL))))), 'Map(Int16, UInt64)') AS E2EHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Queue)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Queue))) * 32) - 1, 32000), -32000), -32768)), Queue IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Queue)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Queue))) * 32) - 1, 32000), -32000), -32768)), Queue IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Queue)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Queue))) * 32) - 1, 32000), -32000), -32768)), Queue IS NOT NULL))))), 'Map(Int16, UInt64)') AS QueueHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Prefill)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Prefill))) * 32) - 1, 32000), -32000), -32768)), Prefill IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Prefill)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Prefill))) * 32) - 1, 32000), -32000), -32768)), Prefill IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Prefill)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Prefill))) * 32) - 1, 32000), -32000), -32768)), Prefill IS NOT NULL))))), 'Map(Int16, UInt64)') AS PrefillHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Decode)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Decode))) * 32) - 1, 32000), -32000), -32768)), Decode IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Decode)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Decode))) * 32) - 1, 32000), -32000), -32768)), Decode IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Decode)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Decode))) * 32) - 1, 32000), -32000), -32768)), Decode IS NOT NULL))))), 'Map(Int16, UInt64)') AS DecodeHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TokensPerSecond)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TokensPerSecond))) * 32) - 1, 32000), -32000), -32768)), TokensPerSecond IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TokensPerSecond)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TokensPerSecond))) * 32) - 1, 32000), -32000), -32768)), TokensPerSecond IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TokensPerSecond)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TokensPerSecond))) * 32) - 1, 32000), -32000), -32768)), TokensPerSecond IS NOT NULL))))), 'Map(Int16, UInt64)') AS TokensPerSecondHist
FROM ${db}.llm_requests AS r
GROUP BY Bucket, ServiceName, Model, Operation;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.llm_requests_1h_mv ${on_cluster}
TO ${db}.llm_requests_1h
AS SELECT
    toStartOfHour(toDateTime(Timestamp)) AS Bucket,
    ServiceName,
    Model,
    Operation,
    count() AS Requests,
    countIf(Status = 'ok') AS Ok,
    countIf(Status = 'error') AS Errors,
    countIf(Status = 'abort') AS Aborts,
    countIf(Status = 'timeout') AS Timeouts,
    sum(toUInt64(r.InputTokens)) AS InputTokens,
    sum(toUInt64(r.OutputTokens)) AS OutputTokens,
    sum(toUInt64(r.CachedTokens)) AS CachedTokens,
    countIf(r.CachedTokens > 0) AS CacheHits,
    count(TTFT) AS TTFTCount,
    sum(ifNull(toFloat64(TTFT), 0)) AS TTFTSum,
    count(TPOT) AS TPOTCount,
    sum(ifNull(toFloat64(TPOT), 0)) AS TPOTSum,
    count(E2E) AS E2ECount,
    sum(ifNull(toFloat64(E2E), 0)) AS E2ESum,
    count(Queue) AS QueueCount,
    sum(ifNull(toFloat64(Queue), 0)) AS QueueSum,
    count(Prefill) AS PrefillCount,
    sum(ifNull(toFloat64(Prefill), 0)) AS PrefillSum,
    count(Decode) AS DecodeCount,
    sum(ifNull(toFloat64(Decode), 0)) AS DecodeSum,
    count(TokensPerSecond) AS TokensPerSecondCount,
    sum(ifNull(toFloat64(TokensPerSecond), 0)) AS TokensPerSecondSum,
    countIf(TTFTLevel IN ('SLOW', 'BOTTLENECK')) AS TTFTOver,
    max(ifNull(TTFT, 0)) AS TTFTMax,
    countIf(TPOTLevel IN ('SLOW', 'BOTTLENECK')) AS TPOTOver,
    max(ifNull(TPOT, 0)) AS TPOTMax,
    countIf(E2ELevel IN ('SLOW', 'BOTTLENECK')) AS E2EOver,
    max(ifNull(E2E, 0)) AS E2EMax,
    countIf(QueueLevel IN ('SLOW', 'BOTTLENECK')) AS QueueOver,
    max(ifNull(Queue, 0)) AS QueueMax,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TTFT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TTFT))) * 32) - 1, 32000), -32000), -32768)), TTFT IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TTFT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TTFT))) * 32) - 1, 32000), -32000), -32768)), TTFT IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TTFT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TTFT))) * 32) - 1, 32000), -32000), -32768)), TTFT IS NOT NULL))))), 'Map(Int16, UInt64)') AS TTFTHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TPOT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TPOT))) * 32) - 1, 32000), -32000), -32768)), TPOT IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TPOT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TPOT))) * 32) - 1, 32000), -32000), -32768)), TPOT IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TPOT)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TPOT))) * 32) - 1, 32000), -32000), -32768)), TPOT IS NOT NULL))))), 'Map(Int16, UInt64)') AS TPOTHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(E2E)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(E2E))) * 32) - 1, 32000), -32000), -32768)), E2E IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(E2E)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(E2E))) * 32) - 1, 32000), -32000), -32768)), E2E IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(E2E)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(E2E))) * 32) - 1, 32000), -32000), -32768)), E2E IS NOT NULL))))), 'Map(Int16, UInt64)') AS E2EHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Queue)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Queue))) * 32) - 1, 32000), -32000), -32768)), Queue IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Queue)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Queue))) * 32) - 1, 32000), -32000), -32768)), Queue IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Queue)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Queue))) * 32) - 1, 32000), -32000), -32768)), Queue IS NOT NULL))))), 'Map(Int16, UInt64)') AS QueueHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Prefill)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Prefill))) * 32) - 1, 32000), -32000), -32768)), Prefill IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Prefill)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Prefill))) * 32) - 1, 32000), -32000), -32768)), Prefill IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Prefill)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Prefill))) * 32) - 1, 32000), -32000), -32768)), Prefill IS NOT NULL))))), 'Map(Int16, UInt64)') AS PrefillHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Decode)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Decode))) * 32) - 1, 32000), -32000), -32768)), Decode IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Decode)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Decode))) * 32) - 1, 32000), -32000), -32768)), Decode IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(Decode)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(Decode))) * 32) - 1, 32000), -32000), -32768)), Decode IS NOT NULL))))), 'Map(Int16, UInt64)') AS DecodeHist,
    CAST(mapFromArrays(arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TokensPerSecond)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TokensPerSecond))) * 32) - 1, 32000), -32000), -32768)), TokensPerSecond IS NOT NULL))), arrayMap(d -> toUInt64(countEqual(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TokensPerSecond)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TokensPerSecond))) * 32) - 1, 32000), -32000), -32768)), TokensPerSecond IS NOT NULL)), d)), arrayDistinct(arraySort(groupArrayIf(toInt16(if(toFloat64(assumeNotNull(TokensPerSecond)) > 0, greatest(least(ceil(log2(toFloat64(assumeNotNull(TokensPerSecond))) * 32) - 1, 32000), -32000), -32768)), TokensPerSecond IS NOT NULL))))), 'Map(Int16, UInt64)') AS TokensPerSecondHist
FROM ${db}.llm_requests AS r
GROUP BY Bucket, ServiceName, Model, Operation;
