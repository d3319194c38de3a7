"""vLLM's engine metric set as OpenTelemetry instruments: :data:`METRICS` names every instrument (kind, unit,
description, vLLM bucket family), :class:`EngineInfo` what one stat logger knows of its engines (which optional
metrics exist, bucket boundaries), :func:`served_model_name` the model name every signal carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from opentelemetry.instrumentation.vllm import semconv as sc


def served_model_name(model_config: Any) -> str:
    """The name clients use for the model (vLLM's ``served_model_name``, its first when several), else the model
    path; ``""`` when ``model_config`` has neither. The one reading of it for spans, metrics and model-load spans."""
    name = getattr(model_config, "served_model_name", None) or getattr(model_config, "model", "") or ""
    if isinstance(name, (list, tuple)):
        name = name[0] if name else ""
    return str(name)


GAUGE, COUNTER, HISTOGRAM = "gauge", "counter", "histogram"
_TOKEN, _SECONDS, _REQUEST = "{token}", "s", "{request}"

#: name -> (kind, unit, description, vLLM bucket family for histograms)
METRICS: dict[str, tuple[str, str, str, str | None]] = {
    sc.METRIC_RUNNING: (GAUGE, _REQUEST, "Requests in model execution batches", None),
    sc.METRIC_WAITING: (GAUGE, _REQUEST, "Requests waiting to be processed (capacity + deferred)", None),
    sc.METRIC_WAITING_BY_REASON: (GAUGE, _REQUEST, "Waiting requests by vllm.waiting.reason", None),
    sc.METRIC_KV_FETCH_BY_STAGE: (GAUGE, _REQUEST, "Waiting requests by async KV load stage", None),
    sc.METRIC_SLEEP_STATE: (GAUGE, "1", "Engine sleep state (1 = in that state) by vllm.sleep_state", None),
    sc.METRIC_KV_CACHE_USAGE: (GAUGE, "1", "KV-cache usage ratio (1 = full)", None),
    sc.METRIC_LORA_RUNNING: (GAUGE, _REQUEST, "Running requests per LoRA adapter (vllm.lora.name)", None),
    sc.METRIC_LORA_WAITING: (GAUGE, _REQUEST, "Waiting requests per LoRA adapter (vllm.lora.name)", None),
    sc.METRIC_LORA_MAX: (GAUGE, "{adapter}", "Maximum LoRA adapters in a batch (max_loras)", None),
    sc.METRIC_CACHE_CONFIG_INFO: (GAUGE, "1", "vLLM CacheConfig as attributes (value 1)", None),
    sc.METRIC_PREFIX_CACHE_QUERIES: (COUNTER, _TOKEN, "Prefix cache queried tokens", None),
    sc.METRIC_PREFIX_CACHE_HITS: (COUNTER, _TOKEN, "Prefix cache hit tokens", None),
    sc.METRIC_EXTERNAL_PREFIX_CACHE_QUERIES: (COUNTER, _TOKEN, "KV-connector prefix cache queried tokens", None),
    sc.METRIC_EXTERNAL_PREFIX_CACHE_HITS: (COUNTER, _TOKEN, "KV-connector prefix cache hit tokens", None),
    sc.METRIC_MM_CACHE_QUERIES: (COUNTER, "{item}", "Multi-modal cache queried items", None),
    sc.METRIC_MM_CACHE_HITS: (COUNTER, "{item}", "Multi-modal cache hit items", None),
    sc.METRIC_PREEMPTIONS: (COUNTER, "{preemption}", "Preemptions by the scheduler", None),
    sc.METRIC_PROMPT_TOKENS: (COUNTER, _TOKEN, "Prefill tokens processed", None),
    sc.METRIC_PROMPT_TOKENS_BY_SOURCE: (COUNTER, _TOKEN, "Prompt tokens by vllm.prompt_tokens.source", None),
    sc.METRIC_PROMPT_TOKENS_CACHED: (COUNTER, _TOKEN, "Cached prompt tokens (local + external)", None),
    sc.METRIC_PROMPT_TOKENS_CACHED_BY_SOURCE: (COUNTER, _TOKEN, "Prefix-cache hit tokens by vllm.cache.source", None),
    sc.METRIC_GENERATION_TOKENS: (COUNTER, _TOKEN, "Generation tokens processed", None),
    sc.METRIC_REQUEST_SUCCESS: (COUNTER, _REQUEST, "Finished sequences by vllm.finish_reason (vLLM's count)", None),
    sc.METRIC_ADMISSION_REJECTIONS: (COUNTER, _REQUEST, "Admissions rejected by a queue limit", None),
    sc.METRIC_CORRUPTED_REQUESTS: (COUNTER, _REQUEST, "Requests with NaNs in logits", None),
    sc.METRIC_WATERMARK_REQUESTS: (COUNTER, _REQUEST, "Finished requests by vllm.watermark.status", None),
    sc.METRIC_SPEC_DRAFTS: (COUNTER, "{draft}", "Speculative decoding drafts", None),
    sc.METRIC_SPEC_DRAFT_TOKENS: (COUNTER, _TOKEN, "Speculative decoding draft tokens", None),
    sc.METRIC_SPEC_ACCEPTED_TOKENS: (COUNTER, _TOKEN, "Speculative decoding accepted tokens", None),
    sc.METRIC_SPEC_ACCEPTED_PER_POS: (COUNTER, _TOKEN, "Accepted tokens by vllm.spec_decode.position", None),
    sc.METRIC_PERF_FLOPS: (COUNTER, "{flop}", "Estimated floating point operations per GPU", None),
    sc.METRIC_PERF_READ_BYTES: (COUNTER, "By", "Estimated bytes read from memory per GPU", None),
    sc.METRIC_PERF_WRITE_BYTES: (COUNTER, "By", "Estimated bytes written to memory per GPU", None),
    sc.METRIC_ENGINE_STATS_DROPPED: (COUNTER, "{step}", "Engine steps whose stats were dropped (queue full)", None),
    sc.METRIC_ENGINE_VALUES_REJECTED: (COUNTER, "{value}", "Stats values not recorded: negative, NaN or infinite "
                                       "(by vllm_otel.metric)", None),
    sc.METRIC_REQ_PROMPT_TOKENS: (HISTOGRAM, _TOKEN, "Prompt tokens per finished sequence", "request_tokens"),
    sc.METRIC_REQ_GENERATION_TOKENS: (HISTOGRAM, _TOKEN, "Generation tokens per finished sequence",
                                      "request_tokens"),
    sc.METRIC_ITERATION_TOKENS: (HISTOGRAM, _TOKEN, "Tokens per engine step (computed prompt + generated)",
                                 "iteration_tokens"),
    sc.METRIC_REQ_MAX_GENERATION_TOKENS: (HISTOGRAM, _TOKEN, "Max generation tokens over a request's sequences",
                                          "request_tokens"),
    sc.METRIC_REQ_PARAMS_N: (HISTOGRAM, "{sequence}", "The n request parameter", "request_params_n"),
    sc.METRIC_REQ_PARAMS_MAX_TOKENS: (HISTOGRAM, _TOKEN, "The max_tokens request parameter", "request_tokens"),
    sc.METRIC_INTER_TOKEN_LATENCY: (HISTOGRAM, _SECONDS, "Inter-token latency", "inter_token_latency"),
    sc.METRIC_REQ_QUEUE_TIME: (HISTOGRAM, _SECONDS, "Time in WAITING per sequence", "request_latency"),
    sc.METRIC_REQ_INFERENCE_TIME: (HISTOGRAM, _SECONDS, "Time in RUNNING per sequence", "request_latency"),
    sc.METRIC_REQ_PREFILL_TIME: (HISTOGRAM, _SECONDS, "Time in PREFILL per sequence", "request_latency"),
    sc.METRIC_REQ_DECODE_TIME: (HISTOGRAM, _SECONDS, "Time in DECODE per sequence", "request_latency"),
    sc.METRIC_REQ_PREEMPTIONS: (HISTOGRAM, "{preemption}", "Preemptions per finished sequence",
                                "request_num_preemptions"),
    sc.METRIC_REQ_PREFILL_KV_COMPUTED: (HISTOGRAM, _TOKEN, "New KV tokens computed in prefill (excl. cached)",
                                        "request_tokens"),
    sc.METRIC_KV_BLOCK_LIFETIME: (HISTOGRAM, _SECONDS, "KV block lifetime, allocation to eviction (sampled)",
                                  "kv_cache_residency"),
    sc.METRIC_KV_BLOCK_IDLE_BEFORE_EVICT: (HISTOGRAM, _SECONDS, "KV block idle time before eviction (sampled)",
                                           "kv_cache_residency"),
    sc.METRIC_KV_BLOCK_REUSE_GAP: (HISTOGRAM, _SECONDS, "Gaps between KV block accesses (sampled)",
                                   "kv_cache_residency"),
}


#: vLLM's Prometheus family (``vllm/v1/metrics/loggers.py``, names without the ``_total`` suffix) -> (our metric,
#: the Prometheus label of the metric's own attribute, that attribute). ``model_name`` → ``gen_ai.request.model`` and
#: ``engine`` → ``vllm.engine.index`` on every series. Read by :mod:`.registry` (the engine metric set from vLLM's
#: registry). Not here: vLLM's TTFT / e2e / TPOT histograms (their OTel form is ``gen_ai.server.*``), and
#: ``vllm:lora_requests_info`` (adapter names without counts: with LoRA on, the stat-logger source is used) and
#: ``vllm:cache_config_info`` (reshaped: its labels become ``vllm.cache_config.*`` attributes).
PROMETHEUS: dict[str, tuple[str, str | None, str | None]] = {
    "vllm:num_requests_running": (sc.METRIC_RUNNING, None, None),
    "vllm:num_requests_waiting": (sc.METRIC_WAITING, None, None),
    "vllm:num_requests_waiting_by_reason": (sc.METRIC_WAITING_BY_REASON, "reason", sc.VLLM_WAITING_REASON),
    "vllm:num_requests_kv_fetch_by_stage": (sc.METRIC_KV_FETCH_BY_STAGE, "stage", sc.VLLM_KV_FETCH_STAGE),
    "vllm:engine_sleep_state": (sc.METRIC_SLEEP_STATE, "sleep_state", sc.VLLM_SLEEP_STATE),
    "vllm:kv_cache_usage_perc": (sc.METRIC_KV_CACHE_USAGE, None, None),
    "vllm:prefix_cache_queries": (sc.METRIC_PREFIX_CACHE_QUERIES, None, None),
    "vllm:prefix_cache_hits": (sc.METRIC_PREFIX_CACHE_HITS, None, None),
    "vllm:external_prefix_cache_queries": (sc.METRIC_EXTERNAL_PREFIX_CACHE_QUERIES, None, None),
    "vllm:external_prefix_cache_hits": (sc.METRIC_EXTERNAL_PREFIX_CACHE_HITS, None, None),
    "vllm:mm_cache_queries": (sc.METRIC_MM_CACHE_QUERIES, None, None),
    "vllm:mm_cache_hits": (sc.METRIC_MM_CACHE_HITS, None, None),
    "vllm:num_preemptions": (sc.METRIC_PREEMPTIONS, None, None),
    "vllm:prompt_tokens": (sc.METRIC_PROMPT_TOKENS, None, None),
    "vllm:prompt_tokens_by_source": (sc.METRIC_PROMPT_TOKENS_BY_SOURCE, "source", sc.VLLM_PROMPT_SOURCE),
    "vllm:prompt_tokens_cached": (sc.METRIC_PROMPT_TOKENS_CACHED, None, None),
    "vllm:prompt_tokens_cached_by_source": (sc.METRIC_PROMPT_TOKENS_CACHED_BY_SOURCE, "source", sc.VLLM_CACHE_SOURCE),
    "vllm:generation_tokens": (sc.METRIC_GENERATION_TOKENS, None, None),
    "vllm:request_success": (sc.METRIC_REQUEST_SUCCESS, "finished_reason", sc.VLLM_FINISH_REASON),
    "vllm:admission_rejections": (sc.METRIC_ADMISSION_REJECTIONS, "reason", sc.VLLM_ADMISSION_REASON),
    "vllm:corrupted_requests": (sc.METRIC_CORRUPTED_REQUESTS, None, None),
    "vllm:watermark_requests": (sc.METRIC_WATERMARK_REQUESTS, "status", sc.VLLM_WATERMARK_STATUS),
    "vllm:spec_decode_num_drafts": (sc.METRIC_SPEC_DRAFTS, None, None),
    "vllm:spec_decode_num_draft_tokens": (sc.METRIC_SPEC_DRAFT_TOKENS, None, None),
    "vllm:spec_decode_num_accepted_tokens": (sc.METRIC_SPEC_ACCEPTED_TOKENS, None, None),
    "vllm:spec_decode_num_accepted_tokens_per_pos": (sc.METRIC_SPEC_ACCEPTED_PER_POS, "position",
                                                     sc.VLLM_SPEC_POSITION),
    "vllm:estimated_flops_per_gpu": (sc.METRIC_PERF_FLOPS, None, None),
    "vllm:estimated_read_bytes_per_gpu": (sc.METRIC_PERF_READ_BYTES, None, None),
    "vllm:estimated_write_bytes_per_gpu": (sc.METRIC_PERF_WRITE_BYTES, None, None),
    "vllm:request_prompt_tokens": (sc.METRIC_REQ_PROMPT_TOKENS, None, None),
    "vllm:request_generation_tokens": (sc.METRIC_REQ_GENERATION_TOKENS, None, None),
    "vllm:iteration_tokens_total": (sc.METRIC_ITERATION_TOKENS, None, None),
    "vllm:request_max_num_generation_tokens": (sc.METRIC_REQ_MAX_GENERATION_TOKENS, None, None),
    "vllm:request_params_n": (sc.METRIC_REQ_PARAMS_N, None, None),
    "vllm:request_params_max_tokens": (sc.METRIC_REQ_PARAMS_MAX_TOKENS, None, None),
    "vllm:inter_token_latency_seconds": (sc.METRIC_INTER_TOKEN_LATENCY, None, None),
    "vllm:request_queue_time_seconds": (sc.METRIC_REQ_QUEUE_TIME, None, None),
    "vllm:request_inference_time_seconds": (sc.METRIC_REQ_INFERENCE_TIME, None, None),
    "vllm:request_prefill_time_seconds": (sc.METRIC_REQ_PREFILL_TIME, None, None),
    "vllm:request_decode_time_seconds": (sc.METRIC_REQ_DECODE_TIME, None, None),
    "vllm:request_num_preemptions": (sc.METRIC_REQ_PREEMPTIONS, None, None),
    "vllm:request_prefill_kv_computed_tokens": (sc.METRIC_REQ_PREFILL_KV_COMPUTED, None, None),
    "vllm:kv_block_lifetime_seconds": (sc.METRIC_KV_BLOCK_LIFETIME, None, None),
    "vllm:kv_block_idle_before_evict_seconds": (sc.METRIC_KV_BLOCK_IDLE_BEFORE_EVICT, None, None),
    "vllm:kv_block_reuse_gap_seconds": (sc.METRIC_KV_BLOCK_REUSE_GAP, None, None),
}
#: The reshaped info family: its labels (but ``engine``) become ``vllm.cache_config.<label>`` attributes.
PROMETHEUS_CACHE_CONFIG = "vllm:cache_config_info"


@dataclass
class EngineInfo:
    """What one stat logger (one ``StatLoggerManager``) knows about its engines, from ``VllmConfig``; decides which
    optional metrics exist, as ``PrometheusStatLogger.__init__`` does. ``buckets``: family -> boundaries."""

    model: str
    engine_indexes: tuple[int, ...] = (0,)
    num_spec_tokens: int = 0  # 0: speculative decoding off
    kv_consumer: bool = False
    kv_cache_metrics: bool = False
    compute_nans: bool = False
    watermark: bool = False
    max_loras: int | None = None  # None: LoRA off
    cache_config_info: dict[str, str] = field(default_factory=dict)
    buckets: dict[str, list[float]] = field(default_factory=dict)
    bridged: bool = False  # the engine's metrics come from vLLM's registry (.source): the aggregator skips it

    @classmethod
    def from_vllm_config(cls, vllm_config: Any, engine_indexes: Iterable[int] | None) -> "EngineInfo":
        mc = getattr(vllm_config, "model_config", None)
        name = served_model_name(mc)
        spec = getattr(vllm_config, "speculative_config", None)
        kvt = getattr(vllm_config, "kv_transfer_config", None)
        obs = getattr(vllm_config, "observability_config", None)
        lora = getattr(vllm_config, "lora_config", None)
        cache = getattr(vllm_config, "cache_config", None)
        is_diffusion = bool(getattr(mc, "is_diffusion", False))
        try:
            import vllm.envs as envs

            nans = bool(envs.VLLM_COMPUTE_NANS_IN_LOGITS)
        except Exception:  # noqa: BLE001 - older vLLM
            nans = False
        try:
            info = {k: str(v) for k, v in cache.metrics_info().items()} if cache is not None else {}
        except Exception:  # noqa: BLE001
            info = {}
        return cls(model=name, engine_indexes=tuple(engine_indexes or (0,)),
                   num_spec_tokens=0 if spec is None or is_diffusion else int(spec.num_speculative_tokens or 0),
                   kv_consumer=bool(kvt is not None and getattr(kvt, "is_kv_consumer", False)),
                   kv_cache_metrics=bool(getattr(obs, "kv_cache_metrics", False)),
                   compute_nans=nans, watermark=getattr(vllm_config, "watermark_config", None) is not None,
                   max_loras=None if lora is None else int(lora.max_loras), cache_config_info=info,
                   buckets=_vllm_buckets(vllm_config))


def _vllm_buckets(vllm_config: Any) -> dict[str, list[float]]:
    """vLLM's bucket boundaries per family (its defaults, ``--custom-histogram-buckets`` applied); {} if unknown."""
    try:
        from vllm.v1.metrics.buckets import histogram_buckets

        overrides = getattr(vllm_config.observability_config, "custom_histogram_buckets", None)
        max_len = vllm_config.model_config.max_model_len
        families = {f for _, _, _, f in METRICS.values() if f}
        return {f: [float(b) for b in histogram_buckets(f, max_model_len=max_len, overrides=overrides)]
                for f in families}
    except Exception:  # noqa: BLE001 - older vLLM without the buckets module: SDK default buckets
        return {}


#: ``(metric name, extra attribute pairs, value)``; for histograms ``value`` may be a list of observations.
Record = tuple[str, tuple, Any]
