"""vLLM's engine stats -> metric records: the pure half of :mod:`.engine_metrics` (no SDK, no state).

:data:`METRICS` names every instrument of vLLM's engine metric set (kind, unit, description, vLLM bucket family);
:func:`convert` turns one engine step's stats objects into ``(metric, extra attributes, value)`` records with exactly
the semantics of ``PrometheusStatLogger.record`` (``vllm/v1/metrics/loggers.py``, vLLM 0.32). It is two halves:
:func:`step_facts` reads the stats objects into plain values (run by the API server, cheap) and :func:`step_records`
expands them into records (run where the SDK runs: the telemetry child, or this process's drain thread).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from opentelemetry.instrumentation.vllm import semconv as sc

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
_KV_FETCH_STAGES = ("waiting_to_start", "in_progress", "completed_waiting")


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
        name = getattr(mc, "served_model_name", None) or getattr(mc, "model", "") or ""
        if isinstance(name, (list, tuple)):
            name = name[0] if name else ""
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
        return cls(model=str(name), engine_indexes=tuple(engine_indexes or (0,)),
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


def convert(info: EngineInfo, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any) -> list[Record]:
    """One engine step's stats -> ``[(metric name, extra attribute pairs, value), ...]`` (pure; no SDK):
    ``step_records(step_facts(...))``.

    The meaning of each value follows ``PrometheusStatLogger.record``: counters are increments, gauges the current
    value, histograms one observation each, or a list of observations (per-token and per-finished-request values).
    ``extra`` is a tuple of ``(attribute, value)`` pairs beyond the engine attributes; for the replaced gauge families
    a record ``(name, None, 0)`` first clears the family.
    """
    return step_records(step_facts(info, scheduler_stats, iteration_stats, mm_cache_stats))


#: One engine step as plain values (numbers, strings, lists, tuples, None), ``(scheduler, mm_cache, iteration)``:
#: what the API server reads from vLLM's stats objects and hands to the telemetry child, which expands it with
#: :func:`step_records`. Reading is ~4x cheaper than building the records (#13: the API server pays only this).
StepFacts = tuple


def step_facts(info: EngineInfo, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any) -> StepFacts:
    """The values :func:`step_records` needs from one step's stats objects; an optional part is None when vLLM would
    not export its metrics (``info`` decides, as ``PrometheusStatLogger.__init__`` does) or the stats are absent.
    Lists of observations are vLLM's own (it builds new stats objects per step and never changes them afterwards)."""
    sched = it = mm = None
    s = scheduler_stats
    if s is not None:
        pcs = s.prefix_cache_stats
        ext = s.connector_prefix_cache_stats
        sds = s.spec_decoding_stats
        perf = getattr(s, "perf_stats", None)
        fetch = None
        if info.kv_consumer:
            by_stage = getattr(s, "num_kv_fetch_reqs_by_stage", None) or {}
            fetch = tuple(by_stage.get(stage, 0) for stage in _KV_FETCH_STAGES)
        sched = (
            s.num_running_reqs, s.num_waiting_reqs, s.num_skipped_waiting_reqs, fetch, s.kv_cache_usage,
            pcs.queries, pcs.hits,
            None if ext is None else (ext.queries, ext.hits, tuple(
                (getattr(tier, "value", str(tier)), n) for tier, n in (getattr(ext, "hits_by_source", None) or {}).items())),
            None if sds is None or not info.num_spec_tokens else (
                sds.num_drafts, sds.num_draft_tokens, sds.num_accepted_tokens,
                list(sds.num_accepted_tokens_per_pos[:info.num_spec_tokens])),
            None if perf is None or not (perf.num_flops_per_gpu or perf.num_read_bytes_per_gpu
                                         or perf.num_write_bytes_per_gpu) else (
                perf.num_flops_per_gpu, perf.num_read_bytes_per_gpu, perf.num_write_bytes_per_gpu),
            None if not info.kv_cache_metrics else tuple(
                (ev.lifetime_seconds, ev.idle_seconds, list(ev.reuse_gaps_seconds))
                for ev in getattr(s, "kv_cache_eviction_events", None) or ()),
            None if info.max_loras is None else (tuple(s.running_lora_adapters.items()),
                                                  tuple(s.waiting_lora_adapters.items())),
        )
    if mm_cache_stats is not None:
        mm = (mm_cache_stats.queries, mm_cache_stats.hits)
    i = iteration_stats
    if i is not None:
        pts = i.prompt_token_stats
        frs = i.finished_requests
        it = (
            i.num_corrupted_reqs if info.compute_nans else None,
            (i.num_watermarked_reqs, i.num_watermark_skipped_reqs, i.num_not_watermarked_reqs)
            if info.watermark else None,
            i.num_preempted_reqs, pts.total, pts.computed, pts.local_cache_hit, pts.external_kv_transfer,
            pts.cached_tokens, i.num_generation_tokens, i.max_num_generation_tokens_iter, i.n_params_iter,
            i.inter_token_latencies_iter,
            [(str(fr.finish_reason), fr.queued_time, fr.prefill_time, fr.inference_time, fr.decode_time,
              fr.num_preemptions, fr.num_prompt_tokens, fr.num_cached_tokens, fr.num_generation_tokens,
              fr.max_tokens_param) for fr in frs] if frs else None,
        )
    return sched, mm, it


def step_records(facts: StepFacts) -> list[Record]:
    """:func:`step_facts` -> the step's records (see :func:`convert`)."""
    out: list[Record] = []
    add = out.append
    sched, mm, it = facts
    if sched is not None:
        running, waiting, skipped, fetch, usage, queries, hits, ext, spec, perf, kv_events, lora = sched
        add((sc.METRIC_RUNNING, (), running))
        add((sc.METRIC_WAITING, (), waiting + skipped))
        add((sc.METRIC_WAITING_BY_REASON, ((sc.VLLM_WAITING_REASON, "capacity"),), waiting))
        add((sc.METRIC_WAITING_BY_REASON, ((sc.VLLM_WAITING_REASON, "deferred"),), skipped))
        if fetch is not None:
            for stage, n in zip(_KV_FETCH_STAGES, fetch):
                add((sc.METRIC_KV_FETCH_BY_STAGE, ((sc.VLLM_KV_FETCH_STAGE, stage),), n))
        add((sc.METRIC_KV_CACHE_USAGE, (), usage))
        add((sc.METRIC_PREFIX_CACHE_QUERIES, (), queries))
        add((sc.METRIC_PREFIX_CACHE_HITS, (), hits))
        add((sc.METRIC_PROMPT_TOKENS_CACHED_BY_SOURCE, ((sc.VLLM_CACHE_SOURCE, "device"),), hits))
        if ext is not None:
            add((sc.METRIC_EXTERNAL_PREFIX_CACHE_QUERIES, (), ext[0]))
            add((sc.METRIC_EXTERNAL_PREFIX_CACHE_HITS, (), ext[1]))
            for tier, n in ext[2]:
                add((sc.METRIC_PROMPT_TOKENS_CACHED_BY_SOURCE, ((sc.VLLM_CACHE_SOURCE, tier),), n))
        if spec is not None:
            add((sc.METRIC_SPEC_DRAFTS, (), spec[0]))
            add((sc.METRIC_SPEC_DRAFT_TOKENS, (), spec[1]))
            add((sc.METRIC_SPEC_ACCEPTED_TOKENS, (), spec[2]))
            for pos, n in enumerate(spec[3]):
                add((sc.METRIC_SPEC_ACCEPTED_PER_POS, ((sc.VLLM_SPEC_POSITION, pos),), n))
        if perf is not None:
            add((sc.METRIC_PERF_FLOPS, (), perf[0]))
            add((sc.METRIC_PERF_READ_BYTES, (), perf[1]))
            add((sc.METRIC_PERF_WRITE_BYTES, (), perf[2]))
        if kv_events:
            for lifetime, idle, gaps in kv_events:
                add((sc.METRIC_KV_BLOCK_LIFETIME, (), lifetime))
                add((sc.METRIC_KV_BLOCK_IDLE_BEFORE_EVICT, (), idle))
                for gap in gaps:
                    add((sc.METRIC_KV_BLOCK_REUSE_GAP, (), gap))
        if lora is not None:
            add((sc.METRIC_LORA_RUNNING, None, 0))
            add((sc.METRIC_LORA_WAITING, None, 0))
            for name, n in lora[0]:
                add((sc.METRIC_LORA_RUNNING, ((sc.VLLM_LORA_NAME, name),), n))
            for name, n in lora[1]:
                add((sc.METRIC_LORA_WAITING, ((sc.VLLM_LORA_NAME, name),), n))
    if mm is not None:
        add((sc.METRIC_MM_CACHE_QUERIES, (), mm[0]))
        add((sc.METRIC_MM_CACHE_HITS, (), mm[1]))
    if it is None:
        return out
    (corrupted, watermark, preempted, prompt_total, computed, local_hit, external, cached, generated, max_gen,
     n_params, itl, finished) = it
    if corrupted is not None:
        add((sc.METRIC_CORRUPTED_REQUESTS, (), corrupted))
    if watermark is not None:
        add((sc.METRIC_WATERMARK_REQUESTS, ((sc.VLLM_WATERMARK_STATUS, "watermarked"),), watermark[0]))
        add((sc.METRIC_WATERMARK_REQUESTS, ((sc.VLLM_WATERMARK_STATUS, "skipped"),), watermark[1]))
        add((sc.METRIC_WATERMARK_REQUESTS, ((sc.VLLM_WATERMARK_STATUS, "not_watermarked"),), watermark[2]))
    add((sc.METRIC_PREEMPTIONS, (), preempted))
    add((sc.METRIC_PROMPT_TOKENS, (), prompt_total))
    add((sc.METRIC_PROMPT_TOKENS_BY_SOURCE, ((sc.VLLM_PROMPT_SOURCE, "local_compute"),), computed))
    add((sc.METRIC_PROMPT_TOKENS_BY_SOURCE, ((sc.VLLM_PROMPT_SOURCE, "local_cache_hit"),), local_hit))
    add((sc.METRIC_PROMPT_TOKENS_BY_SOURCE, ((sc.VLLM_PROMPT_SOURCE, "external_kv_transfer"),), external))
    add((sc.METRIC_PROMPT_TOKENS_CACHED, (), cached))
    add((sc.METRIC_GENERATION_TOKENS, (), generated))
    add((sc.METRIC_ITERATION_TOKENS, (), computed + generated))
    # Histogram observations travel as one record per metric with a list of values (one Python list op per step
    # instead of a tuple per generated token / finished request); the aggregator records each value.
    if max_gen:
        add((sc.METRIC_REQ_MAX_GENERATION_TOKENS, (), list(max_gen)))
    if n_params:
        add((sc.METRIC_REQ_PARAMS_N, (), list(n_params)))
    if itl:
        add((sc.METRIC_INTER_TOKEN_LATENCY, (), list(itl)))
    if finished:
        by_reason: dict[str, int] = {}
        for fr in finished:
            by_reason[fr[0]] = by_reason.get(fr[0], 0) + 1
        for reason, n in by_reason.items():
            add((sc.METRIC_REQUEST_SUCCESS, ((sc.VLLM_FINISH_REASON, reason),), n))
        add((sc.METRIC_REQ_QUEUE_TIME, (), [fr[1] for fr in finished]))
        add((sc.METRIC_REQ_PREFILL_TIME, (), [fr[2] for fr in finished]))
        add((sc.METRIC_REQ_INFERENCE_TIME, (), [fr[3] for fr in finished]))
        add((sc.METRIC_REQ_DECODE_TIME, (), [fr[4] for fr in finished]))
        add((sc.METRIC_REQ_PREEMPTIONS, (), [fr[5] for fr in finished]))
        add((sc.METRIC_REQ_PREFILL_KV_COMPUTED, (), [fr[6] - max(fr[7], 0) for fr in finished]))
        add((sc.METRIC_REQ_PROMPT_TOKENS, (), [fr[6] for fr in finished]))
        add((sc.METRIC_REQ_GENERATION_TOKENS, (), [fr[8] for fr in finished]))
        max_tokens = [fr[9] for fr in finished if fr[9]]
        if max_tokens:
            add((sc.METRIC_REQ_PARAMS_MAX_TOKENS, (), max_tokens))
    return out


def sleep_records(sleep: int, level: int) -> list[Record]:
    """``record_sleep_state(sleep, level)`` -> the three sleep-state gauge values (vLLM's encoding)."""
    awake, offloaded, discard = 1, 0, 0
    if sleep == 1:
        awake = 0
        offloaded = 1 if level == 1 else 0
        discard = 1 if level == 2 else 0
    return [(sc.METRIC_SLEEP_STATE, ((sc.VLLM_SLEEP_STATE, "awake"),), awake),
            (sc.METRIC_SLEEP_STATE, ((sc.VLLM_SLEEP_STATE, "weights_offloaded"),), offloaded),
            (sc.METRIC_SLEEP_STATE, ((sc.VLLM_SLEEP_STATE, "discard_all"),), discard)]


def initial_records(info: EngineInfo) -> list[Record]:
    """What a new stat logger reports before any step (vLLM sets these at construction): awake, config info,
    max LoRA adapters."""
    out = sleep_records(0, 0)
    if info.cache_config_info:
        out.append((sc.METRIC_CACHE_CONFIG_INFO,
                    tuple((sc.VLLM_CACHE_CONFIG_PREFIX + k, v) for k, v in sorted(info.cache_config_info.items())),
                    1))
    if info.max_loras is not None:
        out.append((sc.METRIC_LORA_MAX, (), info.max_loras))
    return out
