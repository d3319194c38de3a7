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
