"""The registry source without vLLM: a real ``prometheus_client`` registry with vLLM's family shapes → snapshot (plain
tuples) → translate → the SDK reader seam (real SDK providers, in-memory and delta readers). Exact values: counters =
the registry's totals, histogram bucket counts = the differenced ``le`` counts with vLLM's bounds, start times =
``_created``; boundary values (0, huge, NaN, ±Inf) pass through unchanged; Prometheus multiprocess mode read as
vLLM reads it."""

from __future__ import annotations

import marshal
import math
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings, strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from conftest import new_sdk, points_of  # noqa: E402  (tests/instrumentation is on sys.path)
from opentelemetry.instrumentation.vllm import semconv as sc
from opentelemetry.instrumentation.vllm.engine.bridge import ReaderBridge
from opentelemetry.instrumentation.vllm.engine.registry import snapshot, translate
from opentelemetry.instrumentation.vllm.engine.table import PROMETHEUS
from opentelemetry.sdk.metrics import Counter as SdkCounter, Histogram as SdkHistogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from prom_map import MIRRORED  # noqa: E402

LABELS = ["model_name", "engine"]
BOUNDS = [0.3, 0.5, 0.8, 1.0, 2.5]


def _registry():
    reg = CollectorRegistry()
    prompt = Counter("vllm:prompt_tokens", "d", LABELS, registry=reg)
    success = Counter("vllm:request_success", "d", LABELS + ["finished_reason"], registry=reg)
    running = Gauge("vllm:num_requests_running", "d", LABELS, registry=reg)
    queue = Histogram("vllm:request_queue_time_seconds", "d", LABELS, buckets=BOUNDS, registry=reg)
    info = Gauge("vllm:cache_config_info", "d", ["block_size", "engine"], registry=reg)
    ttft = Histogram("vllm:time_to_first_token_seconds", "d", LABELS, registry=reg)  # not mirrored (semconv)
    other = Counter("process_foo", "d", registry=reg)  # not vLLM's
    return reg, prompt, success, running, queue, info, ttft, other


def _by_name(points):
    return {name: (kind, pts) for name, kind, pts in points}


def test_the_product_mapping_is_the_tests_statement_of_vllms_families():
    """engine/table.PROMETHEUS and the tests' own prom_map.MIRRORED name the same families the same way."""
    ours = {otel: (prom, label, attr) for prom, (otel, label, attr) in PROMETHEUS.items()}
    theirs = {otel: (prom.removesuffix("_total") if not prom.endswith("iteration_tokens_total") else prom, label,
                     attr) for otel, (prom, label, attr) in MIRRORED.items()}
    theirs = {k: v for k, v in theirs.items()
              if k not in (sc.METRIC_LORA_RUNNING, sc.METRIC_LORA_WAITING, sc.METRIC_LORA_MAX)}
    assert ours == theirs


def test_snapshot_keeps_mirrored_vllm_families_as_plain_tuples():
    """Families with series (a labelled family without any has no point to give) of ours, nothing else."""
    reg, prompt, success, running, queue, info, ttft, other = _registry()
    prompt.labels("m", "0").inc(7)
    success.labels("m", "0", "stop")
    running.labels("m", "0")
    queue.labels("m", "0")
    info.labels("16", "0").set(1)
    other.inc()
    ttft.labels("m", "0").observe(0.1)
    snap = snapshot(reg)
    assert {f[0] for f in snap} == {"vllm:prompt_tokens", "vllm:request_success", "vllm:num_requests_running",
                                    "vllm:request_queue_time_seconds", "vllm:cache_config_info"}
    assert marshal.loads(marshal.dumps(snap, 4)) == snap  # wire-safe


@pytest.fixture(params=["created", "no_created"])
def created(request):
    """Series with and without ``_created`` samples (prometheus_client's switch is process-wide; our collector turns
    them off where it is imported)."""
    import prometheus_client.metrics as pm

    saved = pm._use_created
    (pm.enable_created_metrics if request.param == "created" else pm.disable_created_metrics)()
    yield request.param == "created"
    pm._use_created = saved


def test_translate_counters_gauges_histograms_exactly(created):
    reg, prompt, success, running, queue, info, *_ = _registry()
    prompt.labels("m", "0").inc(7)
    prompt.labels("m", "1").inc(2)
    success.labels("m", "0", "stop").inc(3)
    running.labels("m", "0").set(4)
    for v in (0.1, 0.4, 0.4, 0.9, 3.0, 100.0):
        queue.labels("m", "0").observe(v)
    info.labels("16", "0").set(1)
    out = _by_name(translate(snapshot(reg), "fallback-model", 123))
    kind, pts = out[sc.METRIC_PROMPT_TOKENS]
    assert kind == "counter"
    values = {(a[sc.REQUEST_MODEL], a[sc.VLLM_ENGINE_INDEX]): v for a, _, v in pts}
    assert values == {("m", 0): 7.0, ("m", 1): 2.0}
    if created:  # the series' own start, from _created
        assert all(start > 1_600_000_000 * 10**9 for _, start, _ in pts)
    else:  # no _created: the bridge's start
        assert all(start == 123 for _, start, _ in pts)
    (attrs, _, v), = out[sc.METRIC_REQUEST_SUCCESS][1]
    assert attrs == {sc.REQUEST_MODEL: "m", sc.VLLM_ENGINE_INDEX: 0, sc.VLLM_FINISH_REASON: "stop"} and v == 3
    assert out[sc.METRIC_RUNNING][1] == [({sc.REQUEST_MODEL: "m", sc.VLLM_ENGINE_INDEX: 0}, 123, 4.0)]
    (attrs, _, count, total, bounds, counts), = out[sc.METRIC_REQ_QUEUE_TIME][1]
    assert (count, bounds, counts) == (6, BOUNDS, [1, 2, 0, 1, 0, 2])
    assert math.isclose(total, 104.8)
    (attrs, start, v), = out[sc.METRIC_CACHE_CONFIG_INFO][1]
    assert attrs == {sc.REQUEST_MODEL: "fallback-model", sc.VLLM_ENGINE_INDEX: 0,
                     sc.VLLM_CACHE_CONFIG_PREFIX + "block_size": "16"} and (start, v) == (123, 1.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.0), st.just(1e308),
                          st.just(-1e308), st.just(-0.0)), max_size=30))
def test_histogram_bucket_counts_are_the_registry_s_for_any_values(values):
    """Whatever vLLM observed (0, huge, negative, NaN, ±Inf): count = observations, per-bucket counts sum to it and
    equal Prometheus' own bucketing (le: value <= bound), sum as Prometheus has it."""
    reg = CollectorRegistry()
    h = Histogram("vllm:inter_token_latency_seconds", "d", LABELS, buckets=BOUNDS, registry=reg)
    for v in values:
        h.labels("m", "0").observe(v)
    if not values:
        h.labels("m", "0")
    (_, kind, [(attrs, _, count, total, bounds, counts)]), = translate(snapshot(reg), "m", 0)
    expect = [0] * (len(BOUNDS) + 1)
    for v in values:
        # prometheus_client: the first bucket whose bound is >= v (+Inf last); NaN falls in none and is not counted
        i = next((i for i, b in enumerate(BOUNDS + [math.inf]) if v <= b), None)
        if i is not None:
            expect[i] += 1
    assert kind == "histogram" and bounds == BOUNDS and counts == expect and count == sum(expect)
    prom_sum = reg.get_sample_value("vllm:inter_token_latency_seconds_sum", {"model_name": "m", "engine": "0"})
    assert total == prom_sum or (math.isnan(total) and math.isnan(prom_sum))


def test_counter_and_gauge_boundary_values_pass_through():
    reg = CollectorRegistry()
    c = Counter("vllm:generation_tokens", "d", LABELS, registry=reg)
    g = Gauge("vllm:kv_cache_usage_perc", "d", LABELS, registry=reg)
    c.labels("m", "0").inc(1e308)
    c.labels("m", "1")  # 0
    g.labels("m", "0").set(float("nan"))
    g.labels("m", "1").set(float("-inf"))
    out = _by_name(translate(snapshot(reg), "m", 0))
    assert sorted(v for _, _, v in out[sc.METRIC_GENERATION_TOKENS][1]) == [0.0, 1e308]
    gauges = {a[sc.VLLM_ENGINE_INDEX]: v for a, _, v in out[sc.METRIC_KV_CACHE_USAGE][1]}
    assert math.isnan(gauges[0]) and gauges[1] == float("-inf")


def test_malformed_or_retyped_families_are_skipped_not_raised():
    families = [("vllm:prompt_tokens", "gauge", [("vllm:prompt_tokens", (("engine", "0"),), 1.0)]),  # retyped
                ("vllm:num_requests_running", "gauge", [("vllm:num_requests_running", (("engine", "x"),), 1.0)]),
                ("vllm:request_queue_time_seconds", "histogram", [("vllm:request_queue_time_seconds_bucket",
                                                                   (("le", "1.0"),), 1.0)]),  # no +Inf bucket
                ("vllm:generation_tokens", "counter", [("vllm:generation_tokens_total", (), 5.0)])]
    out = _by_name(translate(families, "m", 9))
    assert set(out) == {sc.METRIC_GENERATION_TOKENS, sc.METRIC_REQ_QUEUE_TIME}
    assert out[sc.METRIC_GENERATION_TOKENS][1] == [({sc.REQUEST_MODEL: "m"}, 9, 5.0)]
    assert out[sc.METRIC_REQ_QUEUE_TIME][1] == []


def _bridged(reader):
    reg, prompt, success, running, queue, *_ = _registry()
    mp = MeterProvider(metric_readers=[reader])
    mp.get_meter("opentelemetry.instrumentation.vllm").create_counter("vllm.requests").add(1)  # the SDK's own
    bridge = ReaderBridge("opentelemetry.instrumentation.vllm", lambda: translate(snapshot(reg), "m", 5))
    assert bridge.install(mp) and bridge.installed == 1
    assert bridge.install(mp) and bridge.installed == 1  # idempotent
    return mp, prompt, queue


def test_bridge_adds_points_to_every_collection_beside_the_sdks_own():
    reader = InMemoryMetricReader()
    mp, prompt, queue = _bridged(reader)
    prompt.labels("m", "0").inc(3)
    queue.labels("m", "0").observe(0.4)
    data = reader.get_metrics_data()
    scopes = data.resource_metrics[0].scope_metrics
    assert [s.scope.name for s in scopes] == ["opentelemetry.instrumentation.vllm"]  # one scope, merged
    pts = points_of(reader)
    assert pts[("vllm.requests", frozenset())] == 1
    assert pts[(sc.METRIC_PROMPT_TOKENS, frozenset({(sc.REQUEST_MODEL, "m"), (sc.VLLM_ENGINE_INDEX, 0)}))] == 3
    assert pts[(sc.METRIC_REQ_QUEUE_TIME, frozenset({(sc.REQUEST_MODEL, "m"), (sc.VLLM_ENGINE_INDEX, 0)}))] == \
        (1, 0.4, (0, 1, 0, 0, 0, 0))
    prompt.labels("m", "0").inc(2)
    assert points_of(reader)[(sc.METRIC_PROMPT_TOKENS, frozenset({(sc.REQUEST_MODEL, "m"),
                                                                 (sc.VLLM_ENGINE_INDEX, 0)}))] == 5  # cumulative
    mp.shutdown()


def test_bridge_gives_delta_readers_differences():
    reader = InMemoryMetricReader(preferred_temporality={SdkCounter: AggregationTemporality.DELTA,
                                                         SdkHistogram: AggregationTemporality.DELTA})
    mp, prompt, queue = _bridged(reader)
    key = (sc.METRIC_PROMPT_TOKENS, frozenset({(sc.REQUEST_MODEL, "m"), (sc.VLLM_ENGINE_INDEX, 0)}))
    hkey = (sc.METRIC_REQ_QUEUE_TIME, frozenset({(sc.REQUEST_MODEL, "m"), (sc.VLLM_ENGINE_INDEX, 0)}))
    prompt.labels("m", "0").inc(3)
    queue.labels("m", "0").observe(0.4)
    first = points_of(reader)
    prompt.labels("m", "0").inc(4)
    queue.labels("m", "0").observe(2.0)
    queue.labels("m", "0").observe(9.0)
    second = points_of(reader)
    assert (first[key], second[key]) == (3, 4)
    assert first[hkey] == (1, 0.4, (0, 1, 0, 0, 0, 0)) and second[hkey] == (2, 11.0, (0, 0, 0, 0, 1, 1))
    mp.shutdown()


def test_bridge_refuses_a_provider_without_the_seam_and_survives_a_failing_source():
    assert not ReaderBridge("s", lambda: []).install(object())
    sdk = new_sdk()

    def boom():
        raise RuntimeError("registry unreadable")

    ReaderBridge("s", boom).install(sdk.mp)
    sdk.meter.create_counter("c").add(2)
    assert points_of(sdk.reader) == {("c", frozenset()): 2}  # the SDK's own collection is untouched


def test_multiprocess_mode_is_read_as_vllm_reads_it(tmp_path):
    """Two processes write vLLM-shaped metrics into PROMETHEUS_MULTIPROC_DIR; the registry vLLM's /metrics serves
    (``get_prometheus_registry``: a MultiProcessCollector) translates to the sum of both."""
    writer = textwrap.dedent("""
        import sys
        from prometheus_client import Counter, Histogram
        c = Counter("vllm:prompt_tokens", "d", ["model_name", "engine"])
        h = Histogram("vllm:request_queue_time_seconds", "d", ["model_name", "engine"], buckets=[0.5, 1.0])
        c.labels("m", "0").inc(float(sys.argv[1]))
        h.labels("m", "0").observe(float(sys.argv[2]))
    """)
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    for args in (("5", "0.2"), ("7", "0.7")):
        subprocess.run([sys.executable, "-c", writer, *args], env=env, check=True, timeout=120)
    reader = textwrap.dedent("""
        import marshal, sys
        from opentelemetry.instrumentation.vllm.engine.registry import snapshot, translate, vllm_registry
        sys.stdout.buffer.write(marshal.dumps(translate(snapshot(vllm_registry()), "m", 0)))
    """)
    out = subprocess.run([sys.executable, "-c", reader], env=env, check=True, timeout=300, capture_output=True)
    got = _by_name(marshal.loads(out.stdout))
    assert [v for _, _, v in got[sc.METRIC_PROMPT_TOKENS][1]] == [12.0]
    (_, _, count, total, bounds, counts), = got[sc.METRIC_REQ_QUEUE_TIME][1]
    assert (count, bounds, counts) == (2, [0.5, 1.0], [1, 1, 0]) and math.isclose(total, 0.9)


def test_attribute_types_are_the_stat_logger_sources():
    """Prometheus labels are strings; where the stat-logger source has integers (engine index, spec-decode position)
    the registry source does too: one series whichever source exported it."""
    reg = CollectorRegistry()
    c = Counter("vllm:spec_decode_num_accepted_tokens_per_pos", "d", LABELS + ["position"], registry=reg)
    c.labels("m", "1", "2").inc(5)
    (attrs, _, v), = _by_name(translate(snapshot(reg), "m", 0))[sc.METRIC_SPEC_ACCEPTED_PER_POS][1]
    assert attrs == {sc.REQUEST_MODEL: "m", sc.VLLM_ENGINE_INDEX: 1, sc.VLLM_SPEC_POSITION: 2} and v == 5


def test_an_engines_collectors_outlive_a_later_logger_unregistering_them():
    """A second PrometheusStatLogger in the process (a second LLM) unregisters the first one's vllm: collectors from
    the global registry; the first engine still updates them, and its captured collectors still read them."""
    from opentelemetry.instrumentation.vllm.engine.registry import EngineCollectors

    reg = CollectorRegistry()
    c = Counter("vllm:prompt_tokens", "d", LABELS, registry=reg)
    Counter("process_other", "d", registry=reg)
    captured = EngineCollectors.capture(reg)
    assert captured is not None and len(captured.collectors) == 1
    reg.unregister(c)  # what vllm.v1.metrics.prometheus.unregister_vllm_metrics does
    c.labels("m", "0").inc(4)
    assert _by_name(translate(snapshot(captured), "m", 0))[sc.METRIC_PROMPT_TOKENS][1][0][2] == 4.0
    assert sc.METRIC_PROMPT_TOKENS not in _by_name(translate(snapshot(reg), "m", 0))
    assert EngineCollectors.capture(object()) is None  # a registry that does not say what it holds
