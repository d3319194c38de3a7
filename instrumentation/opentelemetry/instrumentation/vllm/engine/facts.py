"""One engine step's stats -> metric records, in two pure halves (no SDK, no state):

- :func:`step_facts` reads vLLM's ``SchedulerStats`` / ``IterationStats`` / ``MultiModalCacheStats`` into plain values
  (tuples of numbers, strings, lists, None) — run by the API server's drain thread, cheap, and what crosses the pipe
  to the telemetry child (``marshal`` refuses tuple subclasses, so the wire carries plain tuples);
- :func:`step_records` expands them into ``(metric, extra attribute pairs, value)`` records with exactly the semantics
  of ``PrometheusStatLogger.record`` (``vllm/v1/metrics/loggers.py``, vLLM 0.32) — run where the SDK runs (the
  telemetry child, or the server's drain thread in-process).

The field order of each plain tuple is defined once, by the named tuples :class:`SchedulerFacts`,
:class:`IterationFacts` and :class:`FinishedFacts`: :func:`step_facts` builds plain tuples in that order (building the
named tuple per step would cost ~1 µs each on the server), :func:`step_records` reads them by name (``_make``).

Record values follow ``PrometheusStatLogger.record``: counters are increments, gauges the current value, histograms
one observation or a list of observations (per-token and per-finished-request values). ``extra`` is a tuple of
``(attribute, value)`` pairs beyond the engine attributes; for the replaced gauge families a record ``(name, None,
0)`` first clears the family.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.engine.table import EngineInfo, Record

_KV_FETCH_STAGES = ("waiting_to_start", "in_progress", "completed_waiting")


class SchedulerFacts(NamedTuple):
    """A step's ``SchedulerStats`` (the order of the plain tuple :func:`step_facts` builds)."""

    running: int
    waiting: int
    skipped_waiting: int
    kv_fetch_by_stage: tuple | None  #: per :data:`_KV_FETCH_STAGES`; None unless a KV consumer
    kv_cache_usage: float
    prefix_queries: int
    prefix_hits: int
    external_cache: tuple | None  #: (queries, hits, ((tier, hits), ...)) with a KV connector
    spec_decode: tuple | None  #: (drafts, draft tokens, accepted tokens, [accepted per position])
    perf: tuple | None  #: (flops, read bytes, write bytes) per GPU
    kv_evictions: tuple | None  #: ((lifetime s, idle s, [reuse gaps s]), ...) with kv-cache metrics on
    lora: tuple | None  #: (((adapter, running), ...), ((adapter, waiting), ...)) with LoRA on


class IterationFacts(NamedTuple):
    """A step's ``IterationStats`` (the order of the plain tuple :func:`step_facts` builds)."""

    corrupted: int | None  #: with VLLM_COMPUTE_NANS_IN_LOGITS
    watermark: tuple | None  #: (watermarked, skipped, not watermarked) with a watermark config
    preempted: int
    prompt_total: int
    prompt_computed: int
    prompt_local_hit: int
    prompt_external: int
    prompt_cached: int
    generated: int
    max_generation_tokens: list
    n_params: list
    inter_token_latencies: list
    finished: list | None  #: [FinishedFacts as plain tuples]


class FinishedFacts(NamedTuple):
    """One ``FinishedRequestStats`` (the order of the plain tuple :func:`step_facts` builds)."""

    finish_reason: str
    queued_time: float
    prefill_time: float
    inference_time: float
    decode_time: float
    num_preemptions: int | None  #: None on a vLLM whose FinishedRequestStats has none (vllm < 0.30)
    num_prompt_tokens: int
    num_cached_tokens: int
    num_generation_tokens: int
    max_tokens_param: int | None


#: ``(SchedulerFacts | None, (mm queries, mm hits) | None, IterationFacts | None)`` as plain tuples.
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
        sched = (  # SchedulerFacts order
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
        it = (  # IterationFacts order
            i.num_corrupted_reqs if info.compute_nans else None,
            (i.num_watermarked_reqs, i.num_watermark_skipped_reqs, i.num_not_watermarked_reqs)
            if info.watermark else None,
            i.num_preempted_reqs, pts.total, pts.computed, pts.local_cache_hit, pts.external_kv_transfer,
            pts.cached_tokens, i.num_generation_tokens, i.max_num_generation_tokens_iter, i.n_params_iter,
            i.inter_token_latencies_iter,
            [(str(fr.finish_reason), fr.queued_time, fr.prefill_time, fr.inference_time, fr.decode_time,  # FinishedFacts
              getattr(fr, "num_preemptions", None), fr.num_prompt_tokens, fr.num_cached_tokens, fr.num_generation_tokens,
              fr.max_tokens_param) for fr in frs] if frs else None,
        )
    return sched, mm, it


def step_records(facts: StepFacts) -> list[Record]:
    """:func:`step_facts` -> the step's records (see the module doc)."""
    out: list[Record] = []
    add = out.append
    sched_t, mm, it_t = facts
    if sched_t is not None:
        s = SchedulerFacts._make(sched_t)
        add((sc.METRIC_RUNNING, (), s.running))
        add((sc.METRIC_WAITING, (), s.waiting + s.skipped_waiting))
        add((sc.METRIC_WAITING_BY_REASON, ((sc.VLLM_WAITING_REASON, "capacity"),), s.waiting))
        add((sc.METRIC_WAITING_BY_REASON, ((sc.VLLM_WAITING_REASON, "deferred"),), s.skipped_waiting))
        if s.kv_fetch_by_stage is not None:
            for stage, n in zip(_KV_FETCH_STAGES, s.kv_fetch_by_stage):
                add((sc.METRIC_KV_FETCH_BY_STAGE, ((sc.VLLM_KV_FETCH_STAGE, stage),), n))
        add((sc.METRIC_KV_CACHE_USAGE, (), s.kv_cache_usage))
        add((sc.METRIC_PREFIX_CACHE_QUERIES, (), s.prefix_queries))
        add((sc.METRIC_PREFIX_CACHE_HITS, (), s.prefix_hits))
        add((sc.METRIC_PROMPT_TOKENS_CACHED_BY_SOURCE, ((sc.VLLM_CACHE_SOURCE, "device"),), s.prefix_hits))
        if s.external_cache is not None:
            queries, hits, by_tier = s.external_cache
            add((sc.METRIC_EXTERNAL_PREFIX_CACHE_QUERIES, (), queries))
            add((sc.METRIC_EXTERNAL_PREFIX_CACHE_HITS, (), hits))
            for tier, n in by_tier:
                add((sc.METRIC_PROMPT_TOKENS_CACHED_BY_SOURCE, ((sc.VLLM_CACHE_SOURCE, tier),), n))
        if s.spec_decode is not None:
            drafts, draft_tokens, accepted, per_pos = s.spec_decode
            add((sc.METRIC_SPEC_DRAFTS, (), drafts))
            add((sc.METRIC_SPEC_DRAFT_TOKENS, (), draft_tokens))
            add((sc.METRIC_SPEC_ACCEPTED_TOKENS, (), accepted))
            for pos, n in enumerate(per_pos):
                add((sc.METRIC_SPEC_ACCEPTED_PER_POS, ((sc.VLLM_SPEC_POSITION, pos),), n))
        if s.perf is not None:
            flops, read_bytes, write_bytes = s.perf
            add((sc.METRIC_PERF_FLOPS, (), flops))
            add((sc.METRIC_PERF_READ_BYTES, (), read_bytes))
            add((sc.METRIC_PERF_WRITE_BYTES, (), write_bytes))
        if s.kv_evictions:
            for lifetime, idle, gaps in s.kv_evictions:
                add((sc.METRIC_KV_BLOCK_LIFETIME, (), lifetime))
                add((sc.METRIC_KV_BLOCK_IDLE_BEFORE_EVICT, (), idle))
                for gap in gaps:
                    add((sc.METRIC_KV_BLOCK_REUSE_GAP, (), gap))
        if s.lora is not None:
            running, waiting = s.lora
            add((sc.METRIC_LORA_RUNNING, None, 0))
            add((sc.METRIC_LORA_WAITING, None, 0))
            for name, n in running:
                add((sc.METRIC_LORA_RUNNING, ((sc.VLLM_LORA_NAME, name),), n))
            for name, n in waiting:
                add((sc.METRIC_LORA_WAITING, ((sc.VLLM_LORA_NAME, name),), n))
    if mm is not None:
        add((sc.METRIC_MM_CACHE_QUERIES, (), mm[0]))
        add((sc.METRIC_MM_CACHE_HITS, (), mm[1]))
    if it_t is None:
        return out
    i = IterationFacts._make(it_t)
    if i.corrupted is not None:
        add((sc.METRIC_CORRUPTED_REQUESTS, (), i.corrupted))
    if i.watermark is not None:
        add((sc.METRIC_WATERMARK_REQUESTS, ((sc.VLLM_WATERMARK_STATUS, "watermarked"),), i.watermark[0]))
        add((sc.METRIC_WATERMARK_REQUESTS, ((sc.VLLM_WATERMARK_STATUS, "skipped"),), i.watermark[1]))
        add((sc.METRIC_WATERMARK_REQUESTS, ((sc.VLLM_WATERMARK_STATUS, "not_watermarked"),), i.watermark[2]))
    add((sc.METRIC_PREEMPTIONS, (), i.preempted))
    add((sc.METRIC_PROMPT_TOKENS, (), i.prompt_total))
    add((sc.METRIC_PROMPT_TOKENS_BY_SOURCE, ((sc.VLLM_PROMPT_SOURCE, "local_compute"),), i.prompt_computed))
    add((sc.METRIC_PROMPT_TOKENS_BY_SOURCE, ((sc.VLLM_PROMPT_SOURCE, "local_cache_hit"),), i.prompt_local_hit))
    add((sc.METRIC_PROMPT_TOKENS_BY_SOURCE, ((sc.VLLM_PROMPT_SOURCE, "external_kv_transfer"),), i.prompt_external))
    add((sc.METRIC_PROMPT_TOKENS_CACHED, (), i.prompt_cached))
    add((sc.METRIC_GENERATION_TOKENS, (), i.generated))
    add((sc.METRIC_ITERATION_TOKENS, (), i.prompt_computed + i.generated))
    # Histogram observations travel as one record per metric with a list of values (one Python list op per step
    # instead of a tuple per generated token / finished request); the aggregator records each value.
    if i.max_generation_tokens:
        add((sc.METRIC_REQ_MAX_GENERATION_TOKENS, (), list(i.max_generation_tokens)))
    if i.n_params:
        add((sc.METRIC_REQ_PARAMS_N, (), list(i.n_params)))
    if i.inter_token_latencies:
        add((sc.METRIC_INTER_TOKEN_LATENCY, (), list(i.inter_token_latencies)))
    if i.finished:
        finished = [FinishedFacts._make(fr) for fr in i.finished]
        by_reason: dict[str, int] = {}
        for fr in finished:
            by_reason[fr.finish_reason] = by_reason.get(fr.finish_reason, 0) + 1
        for reason, n in by_reason.items():
            add((sc.METRIC_REQUEST_SUCCESS, ((sc.VLLM_FINISH_REASON, reason),), n))
        add((sc.METRIC_REQ_QUEUE_TIME, (), [fr.queued_time for fr in finished]))
        add((sc.METRIC_REQ_PREFILL_TIME, (), [fr.prefill_time for fr in finished]))
        add((sc.METRIC_REQ_INFERENCE_TIME, (), [fr.inference_time for fr in finished]))
        add((sc.METRIC_REQ_DECODE_TIME, (), [fr.decode_time for fr in finished]))
        preempted = [fr.num_preemptions for fr in finished if fr.num_preemptions is not None]
        if preempted:  # vLLM's own histogram exists only where its stats carry the count
            add((sc.METRIC_REQ_PREEMPTIONS, (), preempted))
        add((sc.METRIC_REQ_PREFILL_KV_COMPUTED, (),
             [fr.num_prompt_tokens - max(fr.num_cached_tokens, 0) for fr in finished]))
        add((sc.METRIC_REQ_PROMPT_TOKENS, (), [fr.num_prompt_tokens for fr in finished]))
        add((sc.METRIC_REQ_GENERATION_TOKENS, (), [fr.num_generation_tokens for fr in finished]))
        max_tokens = [fr.max_tokens_param for fr in finished if fr.max_tokens_param]
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
