-- Analytics inside ClickHouse (issue 20): llm_requests and span_levels are derived from the traces table by
-- materialized views, so any pipeline that writes the contrib exporter's traces table — the OpenTelemetry Collector's
-- clickhouseexporter (Map or JSON attributes), our collector, or both — gets the same rows. One derivation: our
-- collector has no Python copy of it any more.
--
-- An exception in a materialized view fails the INSERT that fired it (the exporter then retries the whole batch and
-- may duplicate spans), so every expression here is total: numbers are parsed with toFloat64OrNull, compared before
-- they are converted, and clamped before any integer conversion (toUInt32 of NaN/Inf throws, and multiIf/if
-- evaluate every branch on every row).
--
-- Rules (docs/analytics.md, "Derivations"; the attribute names are semconv constants resolved at migration time):
-- * a request span carries vllm.finish_reason, vllm.latency.e2e or vLLM's native gen_ai.latency.e2e;
-- * a latency is our vllm.latency.* value, else — only when ours is absent — vLLM's native gen_ai.latency.*;
--   unparsable, NaN, ±Inf, negative or above the Float32 range → NULL (seconds);
-- * tokens: gen_ai.usage.*, else (when empty) vLLM's native prompt/completion tokens; clamped to [0, 2^32 - 1]
--   (preemptions [0, 65535]); NaN or unparsable → 0;
-- * TPOT: the attribute, else decode / (output tokens - 1) with at least 2 output tokens; tokens/s: the attribute,
--   else output tokens / e2e when e2e >= 1 µs; both NULL when out of range;
-- * a TTFT above its request's E2E is NULL with TTFTLevel INVALID;
-- * status: abort/timeout/error from the finish reason (vllm.finish_reason, else the first of
--   gen_ai.response.finish_reasons), else error when StatusCode is Error (every exporter spelling), else ok;
-- * levels: value / threshold (analytics/levels.py bands) against the newest set, compiled per metric into
--   llm_level_lookup (levels.compile_lookup: exact span names by transform(), at most 4 wildcard globs before the
--   first '*' by match(), then the '*' default) — a constant of the insert block. ClickHouse analyzes this query for
--   every inserted block, so it is kept to plain functions (no lambdas over the entries): docs/BENCHMARKS.md §6.
CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.llm_requests_mv ${on_cluster} TO ${db}.llm_requests AS
WITH ${sql:WITH_REQUEST_THRESHOLDS}
SELECT
    Timestamp, TraceId, SpanId, ServiceName, Model, Operation, Status, FinishReason, ErrorType,
    TTFT, TPOT, E2E, Queue, Prefill, Decode, InputTokens, OutputTokens, CachedTokens, TokensPerSecond, Preemptions,
    LoraName, TTFTLevel, TPOTLevel, E2ELevel, QueueLevel
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
        ${level:queue:queue_threshold} AS QueueLevel
    FROM (
        SELECT
            Timestamp, TraceId, SpanId, ServiceName, SpanName, StatusCode,
            ${attr:RESPONSE_MODEL} AS model_response,
            ${attr:REQUEST_MODEL} AS model_request,
            ${attr:OPERATION_NAME} AS operation,
            ${attr:ERROR_TYPE} AS error_type,
            ${attr:VLLM_LORA_NAME} AS lora,
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

-- span_levels: one row per span of any instrumentation whose name has a `duration` threshold (Value and Threshold
-- in seconds; Duration is nanoseconds, Int64 in older exporter tables).
CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.span_levels_mv ${on_cluster} TO ${db}.span_levels AS
WITH ${sql:WITH_DURATION_THRESHOLDS}
SELECT Timestamp, TraceId, SpanId, ServiceName, SpanName, Metric, Value, Threshold, Level
FROM (
    SELECT
        Timestamp, TraceId, SpanId, ServiceName, SpanName, 'duration' AS Metric,
        ${sql:LOOKUP_DURATION} AS threshold,
        toFloat64(Duration) / 1e9 AS value,
        value AS Value,
        threshold AS Threshold,
        ${level:value:threshold} AS Level
    FROM ${traces}
)
WHERE threshold > 0;
