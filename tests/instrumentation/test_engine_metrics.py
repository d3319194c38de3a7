"""vLLM's engine metric set over OTLP (:mod:`opentelemetry.instrumentation.vllm.engine`), without an engine.

The same vLLM stats objects (vLLM's own dataclasses, every branch: prefix/external/multi-modal cache, spec decode,
LoRA, KV residency, perf, finished requests of every finish reason, two data-parallel engines) are fed to vLLM's real
``PrometheusStatLogger`` and to our stat logger; every mirrored counter, gauge and histogram (sum, count, buckets) must
be equal, and every ``vllm:*`` metric vLLM registers must be mirrored or mapped. The served parity test
(``test_metrics_parity_served.py``) does the same over OTLP against a live server's ``/metrics``.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.engine import aggregator as em
from opentelemetry.instrumentation.vllm.engine.facts import step_facts, step_records
from opentelemetry.instrumentation.vllm.engine.table import COUNTER, HISTOGRAM, METRICS, EngineInfo
from prom_map import MIRRORED, RESHAPED, TO_SEMCONV  # noqa: E402  (tests/instrumentation is on sys.path)

pytestmark = pytest.mark.engine

MODEL = "tiny"


def _agg(items=()) -> em.EngineAggregator:
    """A fresh aggregator without a drain thread (collections and drain() handle its queue), ``items`` queued."""
    agg = em.EngineAggregator(start_thread=False)
    for item in items:
        agg.put(item)
    return agg


def _convert(info, sched, it, mm):
    return step_records(step_facts(info, sched, it, mm))


@pytest.fixture(scope="module")
def vllm_config(tiny_model_dir):
    """A real VllmConfig with ngram speculative decoding (k=3), LoRA (max 2) and KV residency metrics."""
    from vllm.engine.arg_utils import EngineArgs

    return EngineArgs(model=str(tiny_model_dir), served_model_name=MODEL, dtype="float32", max_model_len=256,
                      enforce_eager=True, enable_lora=True, max_loras=2, max_lora_rank=8, kv_cache_metrics=True,
                      speculative_config={"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3,
                                          "prompt_lookup_min": 1}).create_engine_config()


def _steps():
    """(engine_idx, SchedulerStats, IterationStats, MultiModalCacheStats) for a few steps on engines 0 and 1."""
    from vllm.v1.engine import FinishReason
    from vllm.v1.metrics.cache_hit_source import CacheHitSource
    from vllm.v1.metrics.stats import (FinishedRequestStats, IterationStats, KVCacheEvictionEvent,
                                       MultiModalCacheStats, PrefixCacheStats, SchedulerStats)
    from vllm.v1.metrics.perf import PerfStats
    from vllm.v1.spec_decode.metrics import SpecDecodingStats

    out = []
    for step in range(6):
        engine = step % 2
        spec = SpecDecodingStats.new(3)
        for drafted, accepted in ((3, step % 4), (2, 1)):
            spec.observe_draft(drafted, accepted)
        sched = SchedulerStats(
            num_running_reqs=3 + step, num_waiting_reqs=step, num_skipped_waiting_reqs=step % 3,
            kv_cache_usage=0.125 * step, prefix_cache_stats=PrefixCacheStats(requests=2, queries=64 * step,
                                                                             hits=16 * step),
            connector_prefix_cache_stats=PrefixCacheStats(
                requests=1, queries=32, hits=8 + step,
                hits_by_source={CacheHitSource.HOST: 5, CacheHitSource.DISK: 3 + step}),
            spec_decoding_stats=spec,
            kv_cache_eviction_events=[KVCacheEvictionEvent(lifetime_seconds=1.5 * step, idle_seconds=0.25,
                                                           reuse_gaps_seconds=(0.01, 0.5 * step))],
            running_lora_adapters={"ad-a": step, "ad-b": 1} if step < 4 else {},
            waiting_lora_adapters={"ad-a": 1} if step % 2 else {},
            perf_stats=PerfStats(num_flops_per_gpu=10**12 * step, num_read_bytes_per_gpu=2**30,
                                 num_write_bytes_per_gpu=7 * step))
        it = IterationStats()
        it.num_generation_tokens = 5 + step
        it.num_preempted_reqs = step % 2
        pts = it.prompt_token_stats
        pts.computed, pts.local_cache_hit, pts.external_kv_transfer = 40 + step, 16, 8
        pts.cached_tokens, pts.total = 24, 64 + step
        it.max_num_generation_tokens_iter = [7, step]
        it.n_params_iter = [1, 2] if step % 2 else [1]
        it.time_to_first_tokens_iter = [0.05 * (step + 1)]
        it.inter_token_latencies_iter = [0.01 * k + 0.001 * step for k in range(1, 6)]
        for k, reason in enumerate(FinishReason):
            it.finished_requests.append(FinishedRequestStats(
                finish_reason=reason, e2e_latency=1.0 + k, num_prompt_tokens=30 + k + step, num_preemptions=k % 3,
                num_generation_tokens=k * 4 + step, max_tokens_param=None if k == 1 else 16 * (k + 1),
                queued_time=0.1 * k, prefill_time=0.02 * (k + 1), inference_time=0.9 + k, decode_time=0.8 * k,
                mean_time_per_output_token=0.05, num_cached_tokens=-1 if k == 2 else 8))
        mm = MultiModalCacheStats(requests=1, queries=3 + step, hits=step)
        out.append((engine, sched, it, mm))
    return out


def _items(info) -> list[tuple]:
    """What the stat logger queues for ``_steps()`` plus init, admission rejections and a sleep-state change."""
    items = [(em.INIT, info, None)]
    items += [(em.STEP, info, engine, sched, it, mm) for engine, sched, it, mm in _steps()]
    items += [(em.ADMISSION, info, None, r) for r in ("max_num_queued_reqs", "max_num_queued_reqs",
                                                       "max_num_queued_tokens")]
    return items + [(em.SLEEP, info, None, 1, 2)]


def _points_by_name(reader) -> dict[str, list]:
    """Engine-metric points as comparable tuples (no timestamps): name -> sorted [(attributes, value...)]."""
    out: dict[str, list] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name not in METRICS:
                    continue
                for p in m.data.data_points:
                    attrs = tuple(sorted(p.attributes.items()))
                    v = (p.count, p.sum, tuple(p.bucket_counts), tuple(p.explicit_bounds)) \
                        if hasattr(p, "bucket_counts") else (p.value,)
                    out.setdefault(m.name, []).append((attrs, v))
    return {k: sorted(v, key=repr) for k, v in out.items()}


def test_step_facts_sent_to_the_child_give_the_in_process_points(vllm_config):
    """With a telemetry child the API server sends only step facts (marshalled); the child expands them. Every
    branch of ``_steps()`` (both engines, LoRA, spec decode, KV residency, perf, external cache, every finish reason)
    must give exactly the points the in-process path gives, and the facts must be marshal-able as they are."""
    import marshal
    import os

    from opentelemetry.sdk.trace import TracerProvider

    from opentelemetry.instrumentation.vllm.handoff import child as child_process
    from opentelemetry.instrumentation.vllm.handoff import wire

    info = EngineInfo.from_vllm_config(vllm_config, [0, 1])
    here_reader = InMemoryMetricReader()
    here = _agg(_items(info))
    here.bind(MeterProvider(metric_readers=[here_reader]).get_meter("test"))
    here.drain()
    expected = _points_by_name(here_reader)

    messages = []

    def sink(batch, dropped):
        messages.append(marshal.dumps((wire.ENGINE, [(7, e, is_step, p) for _, e, is_step, p in batch],
                                       dropped), 4))
        return True

    server = _agg(_items(info))
    server.sink = sink
    assert server.drain() == len(_items(info)) and len(messages) == 1
    child_reader = InMemoryMetricReader()
    child = child_process.Child(TracerProvider(), MeterProvider(metric_readers=[child_reader]), os.getpid())
    child.engine_info(7, (info.model, info.buckets))
    msg = marshal.loads(messages[0])
    child.engine_steps(msg[1], msg[2])
    got = _points_by_name(child_reader)
    assert got == expected
    assert len(expected) > 40  # the mirrored set, not a handful


def _feed(vllm_config):
    """Feed ``_steps()`` to vLLM's PrometheusStatLogger and to a fresh aggregator (own queue and meter).
    Returns (our metrics by name: list of points, prometheus registry)."""
    import prometheus_client
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    prom = PrometheusStatLogger(vllm_config, [0, 1])
    agg = _agg()
    reader = InMemoryMetricReader()
    agg.bind(MeterProvider(metric_readers=[reader]).get_meter("test"))
    info = EngineInfo.from_vllm_config(vllm_config, [0, 1])
    for item in _items(info):
        agg.put(item)
    for item in _items(info):  # the same calls vLLM makes to its own logger
        if item[0] == em.STEP:
            prom.record(*item[3:], engine_idx=item[2])
        elif item[0] == em.ADMISSION:
            prom.record_admission_rejection(item[3])
        elif item[0] == em.SLEEP:
            prom.record_sleep_state(*item[3:])
    data = reader.get_metrics_data()
    ours: dict[str, list] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                ours.setdefault(m.name, []).extend(m.data.data_points)
    assert agg.queue.queued() == 0
    return ours, prometheus_client.REGISTRY


def _prom_samples(registry, name: str) -> list:
    return [s for fam in registry.collect() for s in fam.samples if s.name.startswith(name)]


def test_every_mirrored_metric_equals_vllm_prometheus(vllm_config):
    ours, registry = _feed(vllm_config)
    checked = 0
    for otel_name, (prom_name, label, attr) in MIRRORED.items():
        kind = METRICS[otel_name][0]
        samples = _prom_samples(registry, prom_name)
        if kind == HISTOGRAM:
            for engine in (0, 1):
                labels = {"model_name": MODEL, "engine": str(engine)}
                count = registry.get_sample_value(prom_name + "_count", labels)
                total = registry.get_sample_value(prom_name + "_sum", labels)
                points = [p for p in ours.get(otel_name, []) if p.attributes[sc.VLLM_ENGINE_INDEX] == engine]
                if not count:
                    assert points == [] or points[0].count == 0, otel_name
                    continue
                (point,) = points
                assert point.attributes == {sc.VLLM_ENGINE_INDEX: engine, sc.REQUEST_MODEL: MODEL}
                assert point.count == count, otel_name
                assert math.isclose(point.sum, total, rel_tol=1e-12, abs_tol=1e-12), (otel_name, point.sum, total)
                # same boundaries (vLLM's own families) -> the same per-bucket counts
                cum = [s.value for s in samples if s.name == prom_name + "_bucket"
                       and s.labels["engine"] == str(engine)]
                ours_cum = [sum(point.bucket_counts[:i + 1]) for i in range(len(point.bucket_counts))]
                assert ours_cum == cum, otel_name
                checked += 1
            continue
        suffix = "_total" if kind == COUNTER else ""
        prom_values = {}
        for s in samples:
            if s.name != prom_name + suffix:
                continue
            key = (s.labels.get("engine"), s.labels.get(label) if label else None)
            prom_values[key] = s.value
        our_values = {}
        for p in ours.get(otel_name, []):
            engine = p.attributes.get(sc.VLLM_ENGINE_INDEX)
            key = (None if engine is None else str(engine), str(p.attributes[attr]) if attr else None)
            our_values[key] = p.value
        # vLLM pre-creates zero-valued children; ours appear once a value was recorded. Zeros must agree.
        for key in set(prom_values) | set(our_values):
            assert our_values.get(key, 0) == prom_values.get(key, 0), (otel_name, key, our_values.get(key),
                                                                        prom_values.get(key))
        checked += 1
    assert checked > 60


def test_every_vllm_metric_is_mirrored_or_mapped(vllm_config):
    _, registry = _feed(vllm_config)
    prom_names = {fam.name for fam in registry.collect() if fam.name.startswith("vllm:")}
    ours = {v[0] for v in MIRRORED.values()} | set(TO_SEMCONV) | set(RESHAPED)
    assert prom_names - ours == set(), "vLLM exports metrics we do not mirror"
    assert set(MIRRORED) | {m for v in RESHAPED.values() for m in v} >= {
        n for n, v in METRICS.items() if not n.startswith("vllm_otel.")}


def test_lora_sleep_and_config_gauges(vllm_config):
    ours, _ = _feed(vllm_config)
    # last step per engine: engine 0 = step 4 (no running adapters, none waiting), engine 1 = step 5 (ad-a waiting)
    running = {(p.attributes[sc.VLLM_ENGINE_INDEX], p.attributes[sc.VLLM_LORA_NAME]): p.value
               for p in ours.get(sc.METRIC_LORA_RUNNING, [])}
    waiting = {(p.attributes[sc.VLLM_ENGINE_INDEX], p.attributes[sc.VLLM_LORA_NAME]): p.value
               for p in ours.get(sc.METRIC_LORA_WAITING, [])}
    assert running == {} and waiting == {(1, "ad-a"): 1}
    assert sorted((p.attributes[sc.VLLM_ENGINE_INDEX], p.value) for p in ours[sc.METRIC_LORA_MAX]) == [(0, 2), (1, 2)]
    sleep = {(p.attributes[sc.VLLM_ENGINE_INDEX], p.attributes[sc.VLLM_SLEEP_STATE]): p.value
             for p in ours[sc.METRIC_SLEEP_STATE]}
    assert sleep == {(e, s): v for e in (0, 1) for s, v in (("awake", 0), ("weights_offloaded", 0),
                                                            ("discard_all", 1))}
    (info0, info1) = sorted(ours[sc.METRIC_CACHE_CONFIG_INFO], key=lambda p: p.attributes[sc.VLLM_ENGINE_INDEX])
    assert info0.value == info1.value == 1
    assert info0.attributes[sc.VLLM_CACHE_CONFIG_PREFIX + "block_size"] == str(vllm_config.cache_config.block_size)


def test_queue_flush_and_drop(vllm_config, monkeypatch):
    """record() only enqueues (nothing is converted on the event loop); a collection drains the queue first (so
    force_flush includes every step); a full queue drops and counts; nothing while uninstrumented."""
    from opentelemetry.instrumentation.vllm import state
    from opentelemetry.instrumentation.vllm.engine.stat_logger import VLLMOtelStatLogger

    agg = _agg()  # the stat logger queues into this one (no drain thread: nothing drains behind the test's back)
    monkeypatch.setattr(VLLMOtelStatLogger, "aggregator", agg)
    queue = agg.queue
    reader = InMemoryMetricReader()
    agg.bind(MeterProvider(metric_readers=[reader]).get_meter("queue-test"))

    def dropped() -> float:  # a collection drains the queue first
        data = reader.get_metrics_data()
        return sum(p.value for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                   if m.name == sc.METRIC_ENGINE_STATS_DROPPED for p in m.data.data_points)

    engine, sched, it, mm = _steps()[0]
    monkeypatch.setattr(state, "_instruments", None)
    before = queue.queued()
    logger = VLLMOtelStatLogger(vllm_config, [0])
    assert queue.queued() == before + 1  # the INIT item (sleep state, config info) is queued at construction
    agg.drain()
    logger.record(sched, it, mm, engine_idx=0)
    assert queue.queued() == 0  # inactive: nothing queued
    monkeypatch.setattr(state, "_instruments", object())
    logger.record(sched, it, mm, engine_idx=0)
    assert queue.queued() == 1
    item = queue._q[0]
    assert item[3] is sched and item[4] is it and item[5] is mm  # references only, no conversion
    monkeypatch.setattr(queue, "max_queued", 1)
    before_drops = dropped()
    assert queue.queued() == 0  # the collection drained the queued step
    logger.record(sched, it, mm, engine_idx=0)
    logger.record(sched, it, mm, engine_idx=0)
    logger.record(sched, it, mm, engine_idx=0)
    assert queue.queued() == 1
    assert dropped() - before_drops == 2


def test_force_flush_includes_queued_steps(vllm_config):
    agg = _agg()
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    agg.bind(mp.get_meter("flush"))
    info = EngineInfo.from_vllm_config(vllm_config, [0])
    steps = _steps()
    for _, sched, it, mm in steps:
        agg.put((em.STEP, info, 0, sched, it, mm))
    mp.force_flush()  # an InMemoryMetricReader collects on get_metrics_data; force_flush must not lose anything
    data = reader.get_metrics_data()
    points = {m.name: m.data.data_points for rm in data.resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics}
    (gen,) = points[sc.METRIC_GENERATION_TOKENS]
    assert gen.value == sum(it.num_generation_tokens for _, _, it, _ in steps)
    (itl,) = points[sc.METRIC_INTER_TOKEN_LATENCY]
    assert itl.count == sum(len(it.inter_token_latencies_iter) for _, _, it, _ in steps) == 30
    success = {p.attributes[sc.VLLM_FINISH_REASON]: p.value for p in points[sc.METRIC_REQUEST_SUCCESS]}
    assert success == {"stop": 6, "length": 6, "abort": 6, "error": 6, "repetition": 6}
    (maxtok,) = points[sc.METRIC_REQ_PARAMS_MAX_TOKENS]
    assert maxtok.count == 6 * 4  # max_tokens None is not observed (as in vLLM)
    (kv_computed,) = points[sc.METRIC_REQ_PREFILL_KV_COMPUTED]
    assert kv_computed.sum == sum(fr.num_prompt_tokens - max(fr.num_cached_tokens, 0)
                                  for _, _, it, _ in steps for fr in it.finished_requests)
    mp.shutdown()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), -1, -1e-9])
def test_bad_values_are_counted_not_recorded(bad):
    from vllm.v1.metrics.stats import FinishedRequestStats, IterationStats
    from vllm.v1.engine import FinishReason

    agg = _agg()
    reader = InMemoryMetricReader()
    agg.bind(MeterProvider(metric_readers=[reader]).get_meter("bad"))
    info = EngineInfo(model=MODEL)
    it = IterationStats()
    it.inter_token_latencies_iter = [bad, 0.0, 0.5]
    it.num_generation_tokens = bad if bad != -1e-9 else -3  # a counter increment that is not a count
    it.finished_requests.append(FinishedRequestStats(finish_reason=FinishReason.STOP, queued_time=bad))
    agg.put((em.STEP, info, 0, None, it, None))
    data = reader.get_metrics_data()
    points = {m.name: m.data.data_points for rm in data.resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics}
    (itl,) = points[sc.METRIC_INTER_TOKEN_LATENCY]
    assert (itl.count, itl.sum) == (2, 0.5)
    assert sc.METRIC_REQ_QUEUE_TIME not in points or points[sc.METRIC_REQ_QUEUE_TIME][0].count == 0
    assert sc.METRIC_GENERATION_TOKENS not in points
    rejected = {p.attributes[sc.VLLM_OTEL_METRIC]: p.value for p in points[sc.METRIC_ENGINE_VALUES_REJECTED]}
    # iteration tokens = computed prompt tokens + generation tokens: bad too
    assert rejected == {sc.METRIC_INTER_TOKEN_LATENCY: 1, sc.METRIC_GENERATION_TOKENS: 1, sc.METRIC_REQ_QUEUE_TIME: 1,
                        sc.METRIC_ITERATION_TOKENS: 1}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2**62), st.integers(0, 2**40),
                          st.lists(st.floats(0, 1e6, allow_nan=False), max_size=5)), max_size=12))
def test_counter_totals_and_histogram_counts_are_exact(steps):
    """Any sequence of steps: counters equal the exact integer sums per engine (no float rounding even near 2**62),
    histogram counts equal the number of observations."""
    from vllm.v1.metrics.stats import IterationStats

    agg = _agg()
    reader = InMemoryMetricReader()
    agg.bind(MeterProvider(metric_readers=[reader]).get_meter("hyp"))
    info = EngineInfo(model=MODEL, engine_indexes=(0, 1))
    for engine, gen, preempt, itls in steps:
        it = IterationStats()
        it.num_generation_tokens, it.num_preempted_reqs, it.inter_token_latencies_iter = gen, preempt, itls
        agg.put((em.STEP, info, engine, None, it, None))
    data = reader.get_metrics_data()
    points = {} if data is None else {m.name: m.data.data_points for rm in data.resource_metrics
                                      for sm in rm.scope_metrics for m in sm.metrics}
    for engine in (0, 1):
        mine = [s for s in steps if s[0] == engine]
        gen = [p.value for p in points.get(sc.METRIC_GENERATION_TOKENS, [])
               if p.attributes[sc.VLLM_ENGINE_INDEX] == engine]
        assert gen == ([sum(s[1] for s in mine)] if mine else [])
        pre = [p.value for p in points.get(sc.METRIC_PREEMPTIONS, []) if p.attributes[sc.VLLM_ENGINE_INDEX] == engine]
        assert pre == ([sum(s[2] for s in mine)] if mine else [])
        itl = [p.count for p in points.get(sc.METRIC_INTER_TOKEN_LATENCY, [])
               if p.attributes[sc.VLLM_ENGINE_INDEX] == engine]
        n = sum(len(s[3]) for s in mine)
        assert itl == ([n] if n else [])
        # iteration tokens: one observation per step with an IterationStats
        its = [p.count for p in points.get(sc.METRIC_ITERATION_TOKENS, [])
               if p.attributes[sc.VLLM_ENGINE_INDEX] == engine]
        assert its == ([len(mine)] if mine else [])


def test_optional_metrics_follow_the_config():
    """Corrupted (VLLM_COMPUTE_NANS_IN_LOGITS), watermark, KV fetch stages and spec decode exist only when vLLM would
    export them; exact values when they do."""
    from vllm.v1.metrics.stats import IterationStats, SchedulerStats
    from vllm.v1.spec_decode.metrics import SpecDecodingStats

    it = IterationStats()
    it.num_corrupted_reqs, it.num_watermarked_reqs, it.num_watermark_skipped_reqs, it.num_not_watermarked_reqs = (
        2, 3, 4, 5)
    spec = SpecDecodingStats.new(2)
    spec.observe_draft(2, 2)
    sched = SchedulerStats(num_kv_fetch_reqs_by_stage={"in_progress": 4}, spec_decoding_stats=spec)
    off = {r[0] for r in _convert(EngineInfo(model=MODEL), sched, it, None)}
    assert not off & {sc.METRIC_CORRUPTED_REQUESTS, sc.METRIC_WATERMARK_REQUESTS, sc.METRIC_KV_FETCH_BY_STAGE,
                      sc.METRIC_SPEC_DRAFTS, sc.METRIC_LORA_RUNNING, sc.METRIC_KV_BLOCK_LIFETIME}
    on = _convert(EngineInfo(model=MODEL, compute_nans=True, watermark=True, kv_consumer=True,
                                  num_spec_tokens=2), sched, it, None)
    got = {(n, e): v for n, e, v in on if n in (sc.METRIC_CORRUPTED_REQUESTS, sc.METRIC_WATERMARK_REQUESTS,
                                              sc.METRIC_KV_FETCH_BY_STAGE, sc.METRIC_SPEC_ACCEPTED_PER_POS,
                                              sc.METRIC_SPEC_DRAFTS)}
    assert got == {
        (sc.METRIC_CORRUPTED_REQUESTS, ()): 2,
        (sc.METRIC_WATERMARK_REQUESTS, ((sc.VLLM_WATERMARK_STATUS, "watermarked"),)): 3,
        (sc.METRIC_WATERMARK_REQUESTS, ((sc.VLLM_WATERMARK_STATUS, "skipped"),)): 4,
        (sc.METRIC_WATERMARK_REQUESTS, ((sc.VLLM_WATERMARK_STATUS, "not_watermarked"),)): 5,
        (sc.METRIC_KV_FETCH_BY_STAGE, ((sc.VLLM_KV_FETCH_STAGE, "waiting_to_start"),)): 0,
        (sc.METRIC_KV_FETCH_BY_STAGE, ((sc.VLLM_KV_FETCH_STAGE, "in_progress"),)): 4,
        (sc.METRIC_KV_FETCH_BY_STAGE, ((sc.VLLM_KV_FETCH_STAGE, "completed_waiting"),)): 0,
        (sc.METRIC_SPEC_DRAFTS, ()): 1,
        (sc.METRIC_SPEC_ACCEPTED_PER_POS, ((sc.VLLM_SPEC_POSITION, 0),)): 1,
        (sc.METRIC_SPEC_ACCEPTED_PER_POS, ((sc.VLLM_SPEC_POSITION, 1),)): 1,
    }


def test_docs_table_lists_every_metric():
    """docs/instrumentation.md names every metric we emit (the tables are the user's reference)."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "instrumentation.md").read_text()
    emitted = {getattr(sc, k) for k in dir(sc) if k.startswith("METRIC_")}
    assert {n for n in emitted if f"`{n}`" not in doc} == set()
    assert set(METRICS) <= emitted
    for prom_name in {v[0] for v in MIRRORED.values()} | set(TO_SEMCONV) | set(RESHAPED):
        assert f"`{prom_name}`" in doc, prom_name
