"""vLLM's Prometheus metrics (``vllm/v1/metrics/loggers.py``, vLLM 0.32) and their OTel names: the tests' own
statement of the mapping (the product's is ``engine_metrics.METRICS`` + docs/instrumentation.md)."""

from __future__ import annotations

from opentelemetry.instrumentation.vllm import semconv as sc

#: OTel name -> (Prometheus name, Prometheus label of our extra attribute, our attribute). Kind from em.METRICS.
MIRRORED = {
    sc.METRIC_RUNNING: ("vllm:num_requests_running", None, None),
    sc.METRIC_WAITING: ("vllm:num_requests_waiting", None, None),
    sc.METRIC_WAITING_BY_REASON: ("vllm:num_requests_waiting_by_reason", "reason", sc.VLLM_WAITING_REASON),
    sc.METRIC_KV_FETCH_BY_STAGE: ("vllm:num_requests_kv_fetch_by_stage", "stage", sc.VLLM_KV_FETCH_STAGE),
    sc.METRIC_SLEEP_STATE: ("vllm:engine_sleep_state", "sleep_state", sc.VLLM_SLEEP_STATE),
    sc.METRIC_KV_CACHE_USAGE: ("vllm:kv_cache_usage_perc", None, None),
    sc.METRIC_PREFIX_CACHE_QUERIES: ("vllm:prefix_cache_queries", None, None),
    sc.METRIC_PREFIX_CACHE_HITS: ("vllm:prefix_cache_hits", None, None),
    sc.METRIC_EXTERNAL_PREFIX_CACHE_QUERIES: ("vllm:external_prefix_cache_queries", None, None),
    sc.METRIC_EXTERNAL_PREFIX_CACHE_HITS: ("vllm:external_prefix_cache_hits", None, None),
    sc.METRIC_MM_CACHE_QUERIES: ("vllm:mm_cache_queries", None, None),
    sc.METRIC_MM_CACHE_HITS: ("vllm:mm_cache_hits", None, None),
    sc.METRIC_PREEMPTIONS: ("vllm:num_preemptions", None, None),
    sc.METRIC_PROMPT_TOKENS: ("vllm:prompt_tokens", None, None),
    sc.METRIC_PROMPT_TOKENS_BY_SOURCE: ("vllm:prompt_tokens_by_source", "source", sc.VLLM_PROMPT_SOURCE),
    sc.METRIC_PROMPT_TOKENS_CACHED: ("vllm:prompt_tokens_cached", None, None),
    sc.METRIC_PROMPT_TOKENS_CACHED_BY_SOURCE: ("vllm:prompt_tokens_cached_by_source", "source", sc.VLLM_CACHE_SOURCE),
    sc.METRIC_GENERATION_TOKENS: ("vllm:generation_tokens", None, None),
    sc.METRIC_REQUEST_SUCCESS: ("vllm:request_success", "finished_reason", sc.VLLM_FINISH_REASON),
    sc.METRIC_ADMISSION_REJECTIONS: ("vllm:admission_rejections", "reason", sc.VLLM_ADMISSION_REASON),
    sc.METRIC_CORRUPTED_REQUESTS: ("vllm:corrupted_requests", None, None),
    sc.METRIC_WATERMARK_REQUESTS: ("vllm:watermark_requests", "status", sc.VLLM_WATERMARK_STATUS),
    sc.METRIC_SPEC_DRAFTS: ("vllm:spec_decode_num_drafts", None, None),
    sc.METRIC_SPEC_DRAFT_TOKENS: ("vllm:spec_decode_num_draft_tokens", None, None),
    sc.METRIC_SPEC_ACCEPTED_TOKENS: ("vllm:spec_decode_num_accepted_tokens", None, None),
    sc.METRIC_SPEC_ACCEPTED_PER_POS: ("vllm:spec_decode_num_accepted_tokens_per_pos", "position",
                                      sc.VLLM_SPEC_POSITION),
    sc.METRIC_PERF_FLOPS: ("vllm:estimated_flops_per_gpu", None, None),
    sc.METRIC_PERF_READ_BYTES: ("vllm:estimated_read_bytes_per_gpu", None, None),
    sc.METRIC_PERF_WRITE_BYTES: ("vllm:estimated_write_bytes_per_gpu", None, None),
    sc.METRIC_REQ_PROMPT_TOKENS: ("vllm:request_prompt_tokens", None, None),
    sc.METRIC_REQ_GENERATION_TOKENS: ("vllm:request_generation_tokens", None, None),
    sc.METRIC_ITERATION_TOKENS: ("vllm:iteration_tokens_total", None, None),
    sc.METRIC_REQ_MAX_GENERATION_TOKENS: ("vllm:request_max_num_generation_tokens", None, None),
    sc.METRIC_REQ_PARAMS_N: ("vllm:request_params_n", None, None),
    sc.METRIC_REQ_PARAMS_MAX_TOKENS: ("vllm:request_params_max_tokens", None, None),
    sc.METRIC_INTER_TOKEN_LATENCY: ("vllm:inter_token_latency_seconds", None, None),
    sc.METRIC_REQ_QUEUE_TIME: ("vllm:request_queue_time_seconds", None, None),
    sc.METRIC_REQ_INFERENCE_TIME: ("vllm:request_inference_time_seconds", None, None),
    sc.METRIC_REQ_PREFILL_TIME: ("vllm:request_prefill_time_seconds", None, None),
    sc.METRIC_REQ_DECODE_TIME: ("vllm:request_decode_time_seconds", None, None),
    sc.METRIC_REQ_PREEMPTIONS: ("vllm:request_num_preemptions", None, None),
    sc.METRIC_REQ_PREFILL_KV_COMPUTED: ("vllm:request_prefill_kv_computed_tokens", None, None),
    sc.METRIC_KV_BLOCK_LIFETIME: ("vllm:kv_block_lifetime_seconds", None, None),
    sc.METRIC_KV_BLOCK_IDLE_BEFORE_EVICT: ("vllm:kv_block_idle_before_evict_seconds", None, None),
    sc.METRIC_KV_BLOCK_REUSE_GAP: ("vllm:kv_block_reuse_gap_seconds", None, None),
}
#: vLLM histograms whose OTel form is a GenAI semconv metric recorded per client request (see docs).
TO_SEMCONV = {"vllm:time_to_first_token_seconds": sc.METRIC_TTFT, "vllm:e2e_request_latency_seconds":
              sc.METRIC_REQUEST_DURATION, "vllm:request_time_per_output_token_seconds": sc.METRIC_TPOT}
#: Mirrored with another shape (gauges per adapter instead of one info series whose value is a timestamp).
RESHAPED = {"vllm:lora_requests_info": (sc.METRIC_LORA_RUNNING, sc.METRIC_LORA_WAITING, sc.METRIC_LORA_MAX),
            "vllm:cache_config_info": (sc.METRIC_CACHE_CONFIG_INFO,)}
