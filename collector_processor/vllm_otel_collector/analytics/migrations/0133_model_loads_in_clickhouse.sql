-- Analytics inside ClickHouse (issue 20): one llm_model_loads row per engine start, assembled by ClickHouse itself
-- from llm_startup_spans (0132), so a pipeline without any vllm-otel process gets the rows too.
--
-- llm_model_loads_live: the fold of every stored start (a plain view, computed at read time; tiny input). Rules
-- (docs/analytics.md, "Model loads"): the root is the earliest span named in MODEL_LOAD_ROOT_NAMES; each attribute
-- takes the root's value, else the earliest span's that has it; LoadSeconds falls back to the root's Duration,
-- WeightsSeconds to "Load weights", KVCacheSeconds is "Allocate KV cache"; seconds that are unparsable, NaN, ±Inf,
-- negative or above the Float32 range are NULL; byte/block counts are clamped to UInt64, TP/PP sizes to [1, 65535];
-- LoadLevel compares LoadSeconds with the `load` threshold of the root's name (llm_level_lookup, read now).
-- RootEndNs (root start + Duration, ns) is not a column of llm_model_loads: the refresh below filters on it.
CREATE VIEW IF NOT EXISTS ${db}.llm_model_loads_live ${on_cluster} AS
WITH ${sql:WITH_LOAD_THRESHOLDS}
SELECT
    root_ts AS Timestamp, TraceId, root_service AS ServiceName,
    if(model_name != '', model_name, arrayElement(splitByChar('/', trim(TRAILING '/' FROM model_path)), -1)) AS Model,
    model_path AS ModelPath, dtype AS Dtype, quantization AS Quantization, device AS Device,
    toUInt16(if(tp_raw >= 1 AND tp_raw < 65536, tp_raw, if(tp_raw >= 65536, 65535, 1))) AS TensorParallelSize,
    toUInt16(if(pp_raw >= 1 AND pp_raw < 65536, pp_raw, if(pp_raw >= 65536, 65535, 1))) AS PipelineParallelSize,
    if(isNotNull(total_s), total_s, root_duration / 1e9) AS LoadSeconds,
    if(isNotNull(weights_s), weights_s, if(has_weights_span, weights_duration / 1e9, NULL)) AS WeightsSeconds,
    download_s AS DownloadSeconds, compile_s AS CompileSeconds, graph_s AS GraphCaptureSeconds,
    warmup_s AS WarmupSeconds,
    if(has_kv_span, kv_duration / 1e9, NULL) AS KVCacheSeconds,
    cold_s AS ColdStartSeconds,
    if(isNull(weights_b), NULL, toUInt64(least(weights_b, 18446744073709549568.))) AS WeightsBytes,
    multiIf(lower(trim(cache_hit)) IN ('true', '1', 'yes'), 1, lower(trim(cache_hit)) IN ('false', '0', 'no'), 0,
            NULL) AS CompileCacheHit,
    if(isNull(kv_blocks), NULL, toUInt64(least(kv_blocks, 18446744073709549568.))) AS KVCacheBlocks,
    if(isNull(kv_bytes), NULL, toUInt64(least(kv_bytes, 18446744073709549568.))) AS KVCacheBytes,
    if(isNull(mem_before), NULL, toUInt64(least(mem_before, 18446744073709549568.))) AS MemoryBeforeBytes,
    if(isNull(mem_after), NULL, toUInt64(least(mem_after, 18446744073709549568.))) AS MemoryAfterBytes,
    if(isNull(mem_peak), NULL, toUInt64(least(mem_peak, 18446744073709549568.))) AS MemoryPeakBytes,
    ${sql:LOOKUP_LOAD} AS load_threshold,
    ${level:LoadSeconds:load_threshold} AS LoadLevel,
    toUInt32(span_count) AS SpanCount,
    root_end_ns AS RootEndNs
FROM (
    SELECT
        TraceId, root_ts, root_service, root_name, root_duration, root_end_ns, span_count,
        has_weights_span, weights_duration, has_kv_span, kv_duration,
        model_name, model_path, dtype, quantization, device,
        toFloat64OrNull(tp) AS tp_raw_f, if(tp_raw_f >= 0 AND tp_raw_f <= 3.4028234663852886e38, tp_raw_f, NULL) AS tp_raw,
        toFloat64OrNull(pp) AS pp_raw_f, if(pp_raw_f >= 0 AND pp_raw_f <= 3.4028234663852886e38, pp_raw_f, NULL) AS pp_raw,
        toFloat64OrNull(total) AS total_f, if(total_f >= 0 AND total_f <= 3.4028234663852886e38, total_f, NULL) AS total_s,
        toFloat64OrNull(weights) AS weights_f, if(weights_f >= 0 AND weights_f <= 3.4028234663852886e38, weights_f, NULL) AS weights_s,
        toFloat64OrNull(download) AS download_f, if(download_f >= 0 AND download_f <= 3.4028234663852886e38, download_f, NULL) AS download_s,
        toFloat64OrNull(compile) AS compile_f, if(compile_f >= 0 AND compile_f <= 3.4028234663852886e38, compile_f, NULL) AS compile_s,
        toFloat64OrNull(graph) AS graph_f, if(graph_f >= 0 AND graph_f <= 3.4028234663852886e38, graph_f, NULL) AS graph_s,
        toFloat64OrNull(warmup) AS warmup_f, if(warmup_f >= 0 AND warmup_f <= 3.4028234663852886e38, warmup_f, NULL) AS warmup_s,
        toFloat64OrNull(cold) AS cold_f, if(cold_f >= 0 AND cold_f <= 3.4028234663852886e38, cold_f, NULL) AS cold_s,
        cache_hit,
        toFloat64OrNull(weights_bytes) AS weights_b_f, if(weights_b_f >= 0 AND weights_b_f <= 3.4028234663852886e38, weights_b_f, NULL) AS weights_b,
        toFloat64OrNull(blocks) AS kv_blocks_f, if(kv_blocks_f >= 0 AND kv_blocks_f <= 3.4028234663852886e38, kv_blocks_f, NULL) AS kv_blocks,
        toFloat64OrNull(kvb) AS kv_bytes_f, if(kv_bytes_f >= 0 AND kv_bytes_f <= 3.4028234663852886e38, kv_bytes_f, NULL) AS kv_bytes,
        toFloat64OrNull(mb) AS mem_before_f, if(mem_before_f >= 0 AND mem_before_f <= 3.4028234663852886e38, mem_before_f, NULL) AS mem_before,
        toFloat64OrNull(ma) AS mem_after_f, if(mem_after_f >= 0 AND mem_after_f <= 3.4028234663852886e38, mem_after_f, NULL) AS mem_after,
        toFloat64OrNull(mp) AS mem_peak_f, if(mem_peak_f >= 0 AND mem_peak_f <= 3.4028234663852886e38, mem_peak_f, NULL) AS mem_peak
    FROM (
        SELECT
            TraceId,
            countIf(is_root) AS roots,
            argMinIf(Timestamp, Timestamp, is_root) AS root_ts,
            argMinIf(ServiceName, Timestamp, is_root) AS root_service,
            argMinIf(SpanName, Timestamp, is_root) AS root_name,
            argMinIf(Duration, Timestamp, is_root) AS root_duration,
            toUnixTimestamp64Nano(root_ts) + toInt64(least(root_duration, 9223372036854775807)) AS root_end_ns,
            count() AS span_count,
            countIf(SpanName = 'Load weights') > 0 AS has_weights_span,
            argMinIf(Duration, Timestamp, SpanName = 'Load weights') AS weights_duration,
            countIf(SpanName = 'Allocate KV cache') > 0 AS has_kv_span,
            argMinIf(Duration, Timestamp, SpanName = 'Allocate KV cache') AS kv_duration,
            argMinIf(Attributes[${str:LOAD_MODEL_NAME}], ord, Attributes[${str:LOAD_MODEL_NAME}] != '') AS model_name,
            argMinIf(Attributes[${str:LOAD_MODEL_PATH}], ord, Attributes[${str:LOAD_MODEL_PATH}] != '') AS model_path,
            argMinIf(Attributes[${str:LOAD_DTYPE}], ord, Attributes[${str:LOAD_DTYPE}] != '') AS dtype,
            argMinIf(Attributes[${str:LOAD_QUANTIZATION}], ord, Attributes[${str:LOAD_QUANTIZATION}] != '') AS quantization,
            argMinIf(Attributes[${str:LOAD_DEVICE}], ord, Attributes[${str:LOAD_DEVICE}] != '') AS device,
            argMinIf(Attributes[${str:LOAD_TP_SIZE}], ord, Attributes[${str:LOAD_TP_SIZE}] != '') AS tp,
            argMinIf(Attributes[${str:LOAD_PP_SIZE}], ord, Attributes[${str:LOAD_PP_SIZE}] != '') AS pp,
            argMinIf(Attributes[${str:LOAD_TOTAL_SECONDS}], ord, Attributes[${str:LOAD_TOTAL_SECONDS}] != '') AS total,
            argMinIf(Attributes[${str:LOAD_WEIGHTS_SECONDS}], ord, Attributes[${str:LOAD_WEIGHTS_SECONDS}] != '') AS weights,
            argMinIf(Attributes[${str:LOAD_DOWNLOAD_SECONDS}], ord, Attributes[${str:LOAD_DOWNLOAD_SECONDS}] != '') AS download,
            argMinIf(Attributes[${str:LOAD_COMPILE_SECONDS}], ord, Attributes[${str:LOAD_COMPILE_SECONDS}] != '') AS compile,
            argMinIf(Attributes[${str:LOAD_CUDA_GRAPH_SECONDS}], ord, Attributes[${str:LOAD_CUDA_GRAPH_SECONDS}] != '') AS graph,
            argMinIf(Attributes[${str:LOAD_WARMUP_SECONDS}], ord, Attributes[${str:LOAD_WARMUP_SECONDS}] != '') AS warmup,
            argMinIf(Attributes[${str:LOAD_COLD_START_SECONDS}], ord, Attributes[${str:LOAD_COLD_START_SECONDS}] != '') AS cold,
            argMinIf(Attributes[${str:LOAD_COMPILE_CACHE_HIT}], ord, Attributes[${str:LOAD_COMPILE_CACHE_HIT}] != '') AS cache_hit,
            argMinIf(Attributes[${str:LOAD_WEIGHTS_BYTES}], ord, Attributes[${str:LOAD_WEIGHTS_BYTES}] != '') AS weights_bytes,
            argMinIf(Attributes[${str:LOAD_KV_BLOCKS}], ord, Attributes[${str:LOAD_KV_BLOCKS}] != '') AS blocks,
            argMinIf(Attributes[${str:LOAD_KV_BYTES}], ord, Attributes[${str:LOAD_KV_BYTES}] != '') AS kvb,
            argMinIf(Attributes[${str:LOAD_MEMORY_BEFORE}], ord, Attributes[${str:LOAD_MEMORY_BEFORE}] != '') AS mb,
            argMinIf(Attributes[${str:LOAD_MEMORY_AFTER}], ord, Attributes[${str:LOAD_MEMORY_AFTER}] != '') AS ma,
            argMinIf(Attributes[${str:LOAD_MEMORY_PEAK}], ord, Attributes[${str:LOAD_MEMORY_PEAK}] != '') AS mp
        FROM (
            SELECT *, SpanName IN ${list:MODEL_LOAD_ROOT_NAMES} AS is_root, (NOT is_root, Timestamp) AS ord
            FROM ${db}.llm_startup_spans FINAL
        )
        GROUP BY TraceId
        HAVING roots > 0
    )
);

-- llm_model_loads_pending(cutoff_ns, since_ns): starts whose root ended at or before cutoff_ns, began at or after
-- since_ns (unix ns) and have no row yet — what an assembly inserts (also called by analytics/loads.py: assemble).
CREATE VIEW IF NOT EXISTS ${db}.llm_model_loads_pending ${on_cluster} AS
SELECT * EXCEPT (RootEndNs, load_threshold), now64(3) AS AssembledAt
FROM ${db}.llm_model_loads_live
WHERE RootEndNs <= {cutoff_ns:Int64} AND toUnixTimestamp64Nano(Timestamp) >= {since_ns:Int64}
  AND TraceId NOT IN (SELECT TraceId FROM ${db}.llm_model_loads
                      WHERE toUnixTimestamp64Nano(Timestamp) >= {since_ns:Int64} - 3600000000000);

-- Every 30 s ClickHouse assembles the starts whose root ended at least `model_load_settle_seconds` ago (late spans of
-- other processes have arrived) within the last `model_load_lookback_seconds` (analytics config, synced into
-- vllm_otel_settings; defaults 30 s and 1 day). APPEND into a ReplacingMergeTree on TraceId: a duplicate assembly
-- (a refresh right after a server restart, every replica of a shard refreshing on its own) collapses; readers use
-- FINAL.
CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.llm_model_loads_mv ${on_cluster}
REFRESH EVERY 30 SECOND APPEND TO ${db}.llm_model_loads AS
SELECT * FROM ${db}.llm_model_loads_pending(
    cutoff_ns = toUnixTimestamp64Nano(now64(9)) - toInt64(1e9 * ${sql:SETTLE_SECONDS}),
    since_ns = toUnixTimestamp64Nano(now64(9)) - toInt64(1e9 * ${sql:LOOKBACK_SECONDS}));
