"""The engine rooms without vLLM: a step's facts in their named order (the plain tuples on the wire), the records they
expand to, and the aggregator's queue — sink to the child or apply here, bad values counted, drops counted — with
the SDK's in-memory reader. (The parity with vLLM's own Prometheus logger is test_engine_metrics.py.)"""

from __future__ import annotations

import marshal
from types import SimpleNamespace

from conftest import new_sdk, points_of  # noqa: E402  (tests/instrumentation is on sys.path)
from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.engine.aggregator import ADMISSION, STEP, EngineAggregator
from opentelemetry.instrumentation.vllm.engine.facts import (FinishedFacts, IterationFacts, SchedulerFacts,
                                                             step_facts, step_records)
from opentelemetry.instrumentation.vllm.engine.table import EngineInfo


def _sched(**kw):
    base = dict(num_running_reqs=3, num_waiting_reqs=2, num_skipped_waiting_reqs=1, kv_cache_usage=0.25,
                prefix_cache_stats=SimpleNamespace(queries=64, hits=16), connector_prefix_cache_stats=None,
                spec_decoding_stats=None, perf_stats=None, running_lora_adapters={"a": 1},
                waiting_lora_adapters={})
    base.update(kw)
    return SimpleNamespace(**base)


def _iteration(**kw):
    pts = SimpleNamespace(total=10, computed=6, local_cache_hit=4, external_kv_transfer=0, cached_tokens=4)
    fr = SimpleNamespace(finish_reason="stop", queued_time=0.1, prefill_time=0.2, inference_time=0.3,
                         decode_time=0.1, num_preemptions=0, num_prompt_tokens=10, num_cached_tokens=4,
                         num_generation_tokens=5, max_tokens_param=8)
    base = dict(num_corrupted_reqs=0, num_watermarked_reqs=0, num_watermark_skipped_reqs=0, num_not_watermarked_reqs=0,
                num_preempted_reqs=1, prompt_token_stats=pts, num_generation_tokens=5,
                max_num_generation_tokens_iter=[5], n_params_iter=[1], inter_token_latencies_iter=[0.01, 0.02],
                finished_requests=[fr])
    base.update(kw)
    return SimpleNamespace(**base)


def test_step_facts_are_plain_tuples_in_their_named_order():
    info = EngineInfo(model="m", max_loras=2)
    sched, mm, it = step_facts(info, _sched(), _iteration(), SimpleNamespace(queries=3, hits=1))
    assert type(sched) is tuple and type(it) is tuple and type(it[-1][0]) is tuple  # marshal-able as they are
    marshal.dumps((sched, mm, it), 4)
    s, i, f = SchedulerFacts._make(sched), IterationFacts._make(it), FinishedFacts._make(it[-1][0])
    assert (s.running, s.waiting, s.skipped_waiting, s.kv_cache_usage, s.prefix_queries, s.prefix_hits) == (
        3, 2, 1, 0.25, 64, 16)
    assert s.lora == ((("a", 1),), ()) and s.spec_decode is None and s.kv_fetch_by_stage is None
    assert (i.preempted, i.prompt_total, i.prompt_computed, i.prompt_local_hit, i.generated) == (1, 10, 6, 4, 5)
    assert i.corrupted is None and i.watermark is None  # not exported without their config, as in vLLM
    assert (f.finish_reason, f.queued_time, f.num_prompt_tokens, f.max_tokens_param) == ("stop", 0.1, 10, 8)


def test_no_preemption_histogram_where_vllm_stats_have_no_count():
    """vLLM < 0.30 (compat.py): FinishedRequestStats has no num_preemptions, and vLLM exports no such histogram."""
    it = _iteration()
    assert [v for n, _, v in step_records(step_facts(EngineInfo(model="m"), None, it, None))
            if n == sc.METRIC_REQ_PREEMPTIONS] == [[0]]
    del it.finished_requests[0].num_preemptions
    records = step_records(step_facts(EngineInfo(model="m"), None, it, None))
    assert sc.METRIC_REQ_PREEMPTIONS not in {n for n, _, _ in records}
    assert sc.METRIC_REQ_QUEUE_TIME in {n for n, _, _ in records}  # the rest of the request histograms stay


def test_step_records_name_each_value():
    records = step_records(step_facts(EngineInfo(model="m", max_loras=2), _sched(), _iteration(), None))
    got = {(n, e): v for n, e, v in records}
    assert got[(sc.METRIC_RUNNING, ())] == 3 and got[(sc.METRIC_WAITING, ())] == 3
    assert got[(sc.METRIC_ITERATION_TOKENS, ())] == 6 + 5
    assert got[(sc.METRIC_REQUEST_SUCCESS, ((sc.VLLM_FINISH_REASON, "stop"),))] == 1
    assert got[(sc.METRIC_REQ_PREFILL_KV_COMPUTED, ())] == [10 - 4]
    assert got[(sc.METRIC_LORA_RUNNING, ((sc.VLLM_LORA_NAME, "a"),))] == 1
    assert got[(sc.METRIC_INTER_TOKEN_LATENCY, ())] == [0.01, 0.02]


def test_the_aggregator_sends_to_the_sink_or_applies_here_in_queue_order():
    n = new_sdk()
    info = EngineInfo(model="m", engine_indexes=(0,))
    sent: list = []
    agg = EngineAggregator(start_thread=False)
    agg.bind(n.meter)
    agg.sink = lambda batch, dropped: sent.append((batch, dropped)) or True
    agg.put((STEP, info, 0, _sched(), _iteration(), None))
    agg.put((ADMISSION, info, None, "max_num_queued_reqs"))
    assert agg.drain() == 2
    ((batch, dropped),) = sent
    assert [(engines, is_step) for _, engines, is_step, _ in batch] == [((0,), True), ((None,), False)]
    assert dropped == 0 and points_of(n.reader) == {}  # all went to the child
    agg.sink = lambda batch, dropped: False  # child down: applied here
    agg.put((STEP, info, 0, _sched(), _iteration(), None))
    points = points_of(n.reader)  # a collection drains first
    assert points[(sc.METRIC_GENERATION_TOKENS, frozenset({sc.REQUEST_MODEL: "m", sc.VLLM_ENGINE_INDEX: 0}.items()))] \
        == 5


def test_a_full_queue_drops_and_counts_and_bad_values_are_rejected_not_recorded():
    n = new_sdk()
    info = EngineInfo(model="m")
    agg = EngineAggregator(start_thread=False)
    agg.bind(n.meter)
    agg.queue.max_queued = 2
    for _ in range(5):
        agg.put((STEP, info, 0, None, _iteration(num_generation_tokens=float("nan")), None))
    points = points_of(n.reader)
    assert points[(sc.METRIC_ENGINE_STATS_DROPPED, frozenset())] == 3
    rejected = {dict(k[1])[sc.VLLM_OTEL_METRIC]: v for k, v in points.items()
                if k[0] == sc.METRIC_ENGINE_VALUES_REJECTED}
    assert rejected == {sc.METRIC_GENERATION_TOKENS: 2, sc.METRIC_ITERATION_TOKENS: 2}
    assert not any(k[0] == sc.METRIC_GENERATION_TOKENS for k in points)
