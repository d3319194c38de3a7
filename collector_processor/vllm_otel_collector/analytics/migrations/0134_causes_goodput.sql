-- Answers, not just numbers (issue 24): why each request was slow, and goodput against per-model SLOs, derived by the
-- same materialized views as the rest of llm_requests (so the stock pipeline gets them too). Rules and sources:
-- docs/analytics.md, "Causes and goodput".
--
-- New llm_requests columns:
-- * RequestId: vllm.request.id, else vLLM's native gen_ai.request.id (`vllm-otel explain REQUEST_ID`);
-- * RunningAtArrival / WaitingAtArrival / KVCacheUsageAtArrival: the engine's scheduler state when the request
--   arrived (vllm.request.arrival.*); NULL when absent, unparsable, NaN or negative; counts clamped to UInt32, a KV
--   usage outside [0, 1] is NULL;
-- * PrefixHitShare: cached prompt tokens / prompt tokens (NULL without a cache-read attribute or prompt tokens);
-- * SLOTTFT / SLOTPOT (seconds, 0 = none): the model's SLO from analytics.slos (looked up by Model, config order,
--   first glob match), else the TTFT / TPOT level threshold of the span (what the latency burn rate counts against);
-- * Good: 1 when Status is ok, TTFT <= SLOTTFT (a request without a TTFT cannot show it met a TTFT SLO) and TPOT <=
--   SLOTPOT (a request with < 2 output tokens has no TPOT and meets it) -- goodput, DistServe (OSDI 2024);
-- * BaselineQueue / BaselinePrefill / BaselineTPOT: the medians (seconds) of the model's ok requests of the same
--   prompt-length bucket (2^(b-1) < prompt tokens <= 2^b) over the baseline window, from llm_baselines (refreshed
--   every minute below); the model-wide row (bucket 255) when the bucket has too few requests; NULL when neither
--   (or when that median has no value);
-- * Cause: error (error/timeout), aborted, else ok unless the request was slow: it missed its TTFT or TPOT SLO, or its
--   E2E exceeded factor x (baseline queue + prefill + TPOT x (output tokens - 1)) + slack (settings
--   analytics.cause_slow_factor, default 2, and analytics.cause_min_excess_seconds, default 0.05). A slow request is
--   preempted when vLLM preempted it; else, when it missed only the TTFT SLO, queued if its queue time >= its
--   prefill time, else prefill; when it missed only the TPOT SLO, decode; else the phase with the largest excess
--   over its baseline (queue, prefill, decode = TPOT x (output tokens - 1)).
-- Rows stored before this migration keep the new columns' defaults (Good 0, Cause ok): not backfilled.
--
-- The rollups get Good and the slow causes (CauseQueued, CausePrefill, CauseDecode, CausePreempted); aborted = Aborts,
-- error = Errors + Timeouts, ok = the rest. Every expression is total, as in 0131 (a view that throws fails the
-- exporter's INSERT). Run while no rows are inserted (the views are re-created).
ALTER TABLE ${db}.llm_requests ${on_cluster}
    ADD COLUMN IF NOT EXISTS RequestId String CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS RunningAtArrival Nullable(UInt32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS WaitingAtArrival Nullable(UInt32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS KVCacheUsageAtArrival Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS PrefixHitShare Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS SLOTTFT Float32 CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS SLOTPOT Float32 CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS BaselineQueue Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS BaselinePrefill Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS BaselineTPOT Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS Good UInt8 CODEC(T64, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS Cause Enum8('ok' = 0, 'queued' = 1, 'prefill' = 2, 'decode' = 3, 'preempted' = 4,
                                         'aborted' = 5, 'error' = 6) CODEC(ZSTD(1));

ALTER TABLE ${db}.llm_requests ${on_cluster}
    ADD INDEX IF NOT EXISTS idx_request_id RequestId TYPE bloom_filter(0.001) GRANULARITY 1;

-- llm_baselines: per (model, prompt-length bucket; 255 = all prompts) the medians (seconds, -1 = no value) of the ok
-- requests of the last analytics.baseline_seconds (default 3600), where at least analytics.baseline_min_requests
-- (default 20) requests exist (quantileExact: deterministic; input = the window's rows, read once a minute). Each
-- refresh appends the current set with Until = its time; ReplacingMergeTree(Until) keeps the newest row per key and
-- the request view reads FINAL rows no older than 5 minutes (a key no refresh has written for 5 minutes, a model
-- without ok traffic in the window, has no baseline). Appends, not a table swap: on a cluster every replica's
-- refresh writes through replication, and duplicates collapse; each shard derives with its own rows' baselines.
CREATE TABLE IF NOT EXISTS ${db}.llm_baselines ${on_cluster} (
    Model LowCardinality(String),
    PromptBucket UInt8,
    Requests UInt64,
    Queue Float32,
    Prefill Float32,
    TPOT Float32,
    Until DateTime
) ENGINE = ${engine_prefix}ReplacingMergeTree(Until)
ORDER BY (Model, PromptBucket)
${ttl_Until};

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.llm_baselines_mv ${on_cluster}
REFRESH EVERY 1 MINUTE APPEND TO ${db}.llm_baselines AS
${sql:BASELINES_SELECT};

DROP VIEW IF EXISTS ${db}.llm_requests_mv ${on_cluster};
DROP VIEW IF EXISTS ${db}.llm_requests_1m_mv ${on_cluster};
DROP VIEW IF EXISTS ${db}.llm_requests_1h_mv ${on_cluster};

ALTER TABLE ${db}.llm_requests_1m ${on_cluster}
    ADD COLUMN IF NOT EXISTS Good SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS CauseQueued SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS CausePrefill SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS CauseDecode SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS CausePreempted SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1));

ALTER TABLE ${db}.llm_requests_1h ${on_cluster}
    ADD COLUMN IF NOT EXISTS Good SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS CauseQueued SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS CausePrefill SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS CauseDecode SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS CausePreempted SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1));

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.llm_requests_1m_mv ${on_cluster}
TO ${db}.llm_requests_1m
AS SELECT
    toStartOfMinute(toDateTime(Timestamp)) AS Bucket,
    ServiceName,
    Model,
    Operation,
    ${sql:ROLLUP_AGGREGATES}
FROM ${db}.llm_requests AS r
GROUP BY Bucket, ServiceName, Model, Operation;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.llm_requests_1h_mv ${on_cluster}
TO ${db}.llm_requests_1h
AS SELECT
    toStartOfHour(toDateTime(Timestamp)) AS Bucket,
    ServiceName,
    Model,
    Operation,
    ${sql:ROLLUP_AGGREGATES}
FROM ${db}.llm_requests AS r
GROUP BY Bucket, ServiceName, Model, Operation;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.llm_requests_mv ${on_cluster} TO ${db}.llm_requests AS
WITH ${sql:WITH_REQUEST_SLO_THRESHOLDS}, ${sql:WITH_BASELINES}, ${sql:WITH_CAUSE_SETTINGS}
SELECT
    Timestamp, TraceId, SpanId, ServiceName, Model, Operation, Status, FinishReason, ErrorType,
    TTFT, TPOT, E2E, Queue, Prefill, Decode, InputTokens, OutputTokens, CachedTokens, TokensPerSecond, Preemptions,
    LoraName, TTFTLevel, TPOTLevel, E2ELevel, QueueLevel, RequestId,
    RunningAtArrival, WaitingAtArrival, KVCacheUsageAtArrival, PrefixHitShare,
    SLOTTFT, SLOTPOT, BaselineQueue, BaselinePrefill, BaselineTPOT, Good, Cause
FROM (
    SELECT
        Timestamp, TraceId, SpanId, ServiceName,
        if(model_response != '', model_response, model_request) AS Model,
        if(operation != '', operation, SpanName) AS Operation,
        multiIf(finish IN (${str:FINISH_ABORT}, ${str:FINISH_TIMEOUT}, ${str:FINISH_ERROR}), finish,
                StatusCode IN ('Error', 'ERROR', 'STATUS_CODE_ERROR', 'error', '2'), 'error', 'ok') AS Status,
        finish AS FinishReason,
        error_type AS ErrorType,
        ifNull(ttft > e2e, 0) AS ttft_invalid,
        if(ttft_invalid, NULL, ttft) AS TTFT,
        tpot AS TPOT, e2e AS E2E, queue AS Queue, prefill AS Prefill, decode AS Decode,
        ifNull(input_n, 0) AS InputTokens, ifNull(output_n, 0) AS OutputTokens, ifNull(cached_n, 0) AS CachedTokens,
        tps AS TokensPerSecond, ifNull(preempt_n, 0) AS Preemptions, lora AS LoraName,
        ${sql:LOOKUP_TTFT} AS ttft_threshold,
        ${sql:LOOKUP_TPOT} AS tpot_threshold,
        ${sql:LOOKUP_E2E} AS e2e_threshold,
        ${sql:LOOKUP_QUEUE} AS queue_threshold,
        if(ttft_invalid, 'INVALID', ${level:ttft:ttft_threshold}) AS TTFTLevel,
        ${level:tpot:tpot_threshold} AS TPOTLevel,
        ${level:e2e:e2e_threshold} AS E2ELevel,
        ${level:queue:queue_threshold} AS QueueLevel,
        request_id AS RequestId,
        running_n AS RunningAtArrival, waiting_n AS WaitingAtArrival, kv_usage AS KVCacheUsageAtArrival,
        if(isNotNull(cached_n) AND InputTokens > 0, least(toFloat64(cached_n) / InputTokens, 1.), NULL) AS PrefixHitShare,
        ${sql:LOOKUP_SLO_TTFT} AS slo_ttft_model,
        ${sql:LOOKUP_SLO_TPOT} AS slo_tpot_model,
        if(slo_ttft_model > 0, slo_ttft_model, ttft_threshold) AS SLOTTFT,
        if(slo_tpot_model > 0, slo_tpot_model, tpot_threshold) AS SLOTPOT,
        toUInt8(if(InputTokens <= 1, 0, ceil(log2(toFloat64(InputTokens))))) AS prompt_bucket,
        indexOf(bl.1, tuple(Model, prompt_bucket)) AS bl_exact,
        if(bl_exact > 0, bl_exact, indexOf(bl.1, tuple(Model, toUInt8(255)))) AS bl_i,
        if(bl_i > 0 AND bl.2[bl_i] >= 0, bl.2[bl_i], NULL) AS BaselineQueue,
        if(bl_i > 0 AND bl.3[bl_i] >= 0, bl.3[bl_i], NULL) AS BaselinePrefill,
        if(bl_i > 0 AND bl.4[bl_i] >= 0, bl.4[bl_i], NULL) AS BaselineTPOT,
        isNotNull(BaselineQueue) OR isNotNull(BaselinePrefill) OR isNotNull(BaselineTPOT) AS has_baseline,
        ifNull(toFloat64(Queue), 0) AS q_s, ifNull(toFloat64(Prefill), 0) AS p_s, ifNull(toFloat64(Decode), 0) AS d_s,
        greatest(toFloat64(OutputTokens) - 1, 0) AS steps,
        ifNull(toFloat64(BaselineQueue), 0) + ifNull(toFloat64(BaselinePrefill), 0)
            + ifNull(toFloat64(BaselineTPOT), 0) * steps AS expected_e2e,
        SLOTTFT > 0 AND ifNull(TTFT > SLOTTFT, 0) AS ttft_missed,
        SLOTPOT > 0 AND ifNull(TPOT > SLOTPOT, 0) AS tpot_missed,
        has_baseline AND ifNull(toFloat64(E2E), 0) > cs.1 * expected_e2e + cs.2 AS baseline_slow,
        q_s - ifNull(toFloat64(BaselineQueue), 0) AS excess_queue,
        p_s - ifNull(toFloat64(BaselinePrefill), 0) AS excess_prefill,
        d_s - ifNull(toFloat64(BaselineTPOT), 0) * steps AS excess_decode,
        toUInt8(Status = 'ok' AND (SLOTTFT <= 0 OR ifNull(TTFT <= SLOTTFT, 0))
                AND (SLOTPOT <= 0 OR isNull(TPOT) OR TPOT <= SLOTPOT)) AS Good,
        multiIf(Status IN ('error', 'timeout'), 'error',
                Status = 'abort', 'aborted',
                NOT (ttft_missed OR tpot_missed OR baseline_slow), 'ok',
                Preemptions > 0, 'preempted',
                ttft_missed AND NOT tpot_missed, if(q_s >= p_s, 'queued', 'prefill'),
                tpot_missed AND NOT ttft_missed, 'decode',
                excess_queue >= excess_prefill AND excess_queue >= excess_decode, 'queued',
                excess_prefill >= excess_decode, 'prefill', 'decode') AS Cause
    FROM (
        SELECT
            Timestamp, TraceId, SpanId, ServiceName, SpanName, StatusCode,
            ${attr:RESPONSE_MODEL} AS model_response,
            ${attr:REQUEST_MODEL} AS model_request,
            ${attr:OPERATION_NAME} AS operation,
            ${attr:ERROR_TYPE} AS error_type,
            ${attr:VLLM_LORA_NAME} AS lora,
            if(${has:VLLM_REQUEST_ID}, ${attr:VLLM_REQUEST_ID}, ${attr:NATIVE_REQUEST_ID}) AS request_id,
            toFloat64OrNull(${attr:VLLM_ARRIVAL_RUNNING}) AS running_raw,
            toFloat64OrNull(${attr:VLLM_ARRIVAL_WAITING}) AS waiting_raw,
            toFloat64OrNull(${attr:VLLM_ARRIVAL_KV_CACHE_USAGE}) AS kv_raw,
            if(isNull(running_raw) OR isNaN(running_raw) OR running_raw < 0, NULL,
               toUInt32(if(running_raw >= 4294967295, 4294967295, if(running_raw > 0, running_raw, 0)))) AS running_n,
            if(isNull(waiting_raw) OR isNaN(waiting_raw) OR waiting_raw < 0, NULL,
               toUInt32(if(waiting_raw >= 4294967295, 4294967295, if(waiting_raw > 0, waiting_raw, 0)))) AS waiting_n,
            if(kv_raw >= 0 AND kv_raw <= 1, kv_raw, NULL) AS kv_usage,
            ${attr:VLLM_FINISH_REASON} AS finish_own,
            ${attr:RESPONSE_FINISH_REASONS} AS finish_list,
            if(finish_own != '', finish_own,
               trim(BOTH ' \'"' FROM splitByChar(',', trim(BOTH '[]() ' FROM finish_list))[1])) AS finish,
            toFloat64OrNull(if(${has:LATENCY_TTFT}, ${attr:LATENCY_TTFT}, ${attr:NATIVE_LATENCY_TTFT})) AS ttft_raw,
            toFloat64OrNull(if(${has:LATENCY_E2E}, ${attr:LATENCY_E2E}, ${attr:NATIVE_LATENCY_E2E})) AS e2e_raw,
            toFloat64OrNull(if(${has:LATENCY_QUEUE}, ${attr:LATENCY_QUEUE}, ${attr:NATIVE_LATENCY_QUEUE})) AS queue_raw,
            toFloat64OrNull(if(${has:LATENCY_PREFILL}, ${attr:LATENCY_PREFILL}, ${attr:NATIVE_LATENCY_PREFILL})) AS prefill_raw,
            toFloat64OrNull(if(${has:LATENCY_DECODE}, ${attr:LATENCY_DECODE}, ${attr:NATIVE_LATENCY_DECODE})) AS decode_raw,
            toFloat64OrNull(${attr:LATENCY_TPOT}) AS tpot_attr_raw,
            toFloat64OrNull(${attr:VLLM_TOKENS_PER_SECOND}) AS tps_attr_raw,
            if(ttft_raw >= 0 AND ttft_raw <= 3.4028234663852886e38, ttft_raw, NULL) AS ttft,
            if(e2e_raw >= 0 AND e2e_raw <= 3.4028234663852886e38, e2e_raw, NULL) AS e2e,
            if(queue_raw >= 0 AND queue_raw <= 3.4028234663852886e38, queue_raw, NULL) AS queue,
            if(prefill_raw >= 0 AND prefill_raw <= 3.4028234663852886e38, prefill_raw, NULL) AS prefill,
            if(decode_raw >= 0 AND decode_raw <= 3.4028234663852886e38, decode_raw, NULL) AS decode,
            if(tpot_attr_raw >= 0 AND tpot_attr_raw <= 3.4028234663852886e38, tpot_attr_raw, NULL) AS tpot_attr,
            if(tps_attr_raw >= 0 AND tps_attr_raw <= 3.4028234663852886e38, tps_attr_raw, NULL) AS tps_attr,
            toFloat64OrNull(if(${attr:USAGE_INPUT_TOKENS} = '', ${attr:NATIVE_USAGE_PROMPT_TOKENS},
                               ${attr:USAGE_INPUT_TOKENS})) AS input_raw,
            toFloat64OrNull(if(${attr:USAGE_OUTPUT_TOKENS} = '', ${attr:NATIVE_USAGE_COMPLETION_TOKENS},
                               ${attr:USAGE_OUTPUT_TOKENS})) AS output_raw,
            toFloat64OrNull(${attr:USAGE_CACHE_READ_INPUT_TOKENS}) AS cached_raw,
            toFloat64OrNull(${attr:VLLM_NUM_PREEMPTIONS}) AS preempt_raw,
            if(isNull(input_raw) OR isNaN(input_raw), NULL,
               toUInt32(if(input_raw >= 4294967295, 4294967295, if(input_raw > 0, input_raw, 0)))) AS input_n,
            if(isNull(output_raw) OR isNaN(output_raw), NULL,
               toUInt32(if(output_raw >= 4294967295, 4294967295, if(output_raw > 0, output_raw, 0)))) AS output_n,
            if(isNull(cached_raw) OR isNaN(cached_raw), NULL,
               toUInt32(if(cached_raw >= 4294967295, 4294967295, if(cached_raw > 0, cached_raw, 0)))) AS cached_n,
            if(isNull(preempt_raw) OR isNaN(preempt_raw), NULL,
               toUInt16(if(preempt_raw >= 65535, 65535, if(preempt_raw > 0, preempt_raw, 0)))) AS preempt_n,
            decode / (toFloat64(output_n) - 1) AS tpot_calc,
            if(isNotNull(tpot_attr), tpot_attr,
               if(output_n >= 2 AND tpot_calc >= 0 AND tpot_calc <= 3.4028234663852886e38, tpot_calc, NULL)) AS tpot,
            toFloat64(output_n) / e2e AS tps_calc,
            if(isNotNull(tps_attr), tps_attr,
               if(e2e >= 1e-6 AND tps_calc >= 0 AND tps_calc <= 3.4028234663852886e38, tps_calc, NULL)) AS tps
        FROM ${traces}
        WHERE ${has:VLLM_FINISH_REASON} OR ${has:LATENCY_E2E} OR ${has:NATIVE_LATENCY_E2E}
    )
);

-- The startup spans keep the compile-cache fallback attributes too (LOAD_ATTRIBUTES grew): same view, new list.
DROP VIEW IF EXISTS ${db}.llm_startup_spans_mv ${on_cluster};

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.llm_startup_spans_mv ${on_cluster} TO ${db}.llm_startup_spans AS
SELECT Timestamp, TraceId, SpanId, ServiceName, SpanName, toUInt64(greatest(Duration, 0)) AS Duration,
       ${attrmap:LOAD_ATTRIBUTES} AS Attributes
FROM ${traces}
WHERE SpanName IN ${list:STARTUP_SPANS};
