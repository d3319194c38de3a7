"""Causes and goodput (migration 0134): the materialized view's Cause/Good equal the Python reference
(analytics/causes.py) for any facts, the baselines are the medians they claim to be, per-model SLOs are looked up by
model, and the engine state at arrival crosses the attribute → column boundary without an insert error."""

from __future__ import annotations

import math
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from opentelemetry.instrumentation.vllm import semconv as sc
from vllm_otel_collector.analytics import causes as C
from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.sync import sync

from .synth import refresh_baselines, request, store_spans


def rows(store, where="1"):
    res = store.query(f"SELECT * FROM llm_requests WHERE {where} ORDER BY SpanId")
    return [dict(zip(res.column_names, r)) for r in res.result_rows]


def f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def test_per_model_slos_and_the_level_fallback(store):
    """m1 has its own SLOs; m2 falls back to the level thresholds (TTFT 2 s, TPOT 0.1 s)."""
    sync(store, AnalyticsConfig(slos=[{"model": "m1", "ttft_seconds": 0.25, "tpot_seconds": 0.5}]))
    store_spans(store, [
        request(1, 1000.0, model="m1", ttft=0.25, e2e=4.25, queue=0.05, prefill=0.2, decode=4.0, out=9),   # good
        request(2, 1000.0, model="m1", ttft=0.375, e2e=2.375, queue=0.3, prefill=0.075, decode=2.0, out=9),  # ttft
        request(3, 1000.0, model="m2", ttft=0.375, e2e=1.375, queue=0.3, prefill=0.075, decode=0.75, out=9),  # ok
        request(4, 1000.0, model="m2", ttft=0.25, e2e=4.25, queue=0.05, prefill=0.2, decode=4.0, out=9),  # tpot 0.5
        request(5, 1000.0, model="m1", ttft=3.0, e2e=3.0, queue=0.5, prefill=2.5, decode=0.0, out=1),  # prefill
        request(6, 1000.0, model="m1", ttft=0.1, e2e=0.5, out=3, finish="abort"),
        request(7, 1000.0, model="m1", ttft=0.1, e2e=0.5, out=3, finish="error"),
    ])
    got = {int(r["SpanId"], 16): (r["SLOTTFT"], r["SLOTPOT"], r["Good"], r["Cause"]) for r in rows(store)}
    assert got == {1: (0.25, 0.5, 1, "ok"), 2: (0.25, 0.5, 0, "queued"), 3: (2.0, f32(0.1), 1, "ok"),
                   4: (2.0, f32(0.1), 0, "decode"), 5: (0.25, 0.5, 0, "prefill"), 6: (0.25, 0.5, 0, "aborted"),
                   7: (0.25, 0.5, 0, "error")}


def test_baselines_are_the_medians_of_the_last_hour_per_model_and_prompt_bucket(store):
    now = time.time()
    spans = [request(i + 1, now - 600 + i, model="m1", inp=100, queue=0.01 * i, prefill=0.02 * i, decode=0.9,
                     out=10, ttft=0.5, e2e=1.5) for i in range(25)]  # bucket 7 (64 < 100 <= 128)
    spans += [request(100 + i, now - 600 + i, model="m1", inp=300, queue=0.5, prefill=0.5, out=4, decode=0.3,
                      ttft=1.0, e2e=1.5) for i in range(5)]  # bucket 9: too few for its own row
    spans += [request(200 + i, now - 600 + i, model="m1", inp=100, finish="error") for i in range(30)]  # not ok
    spans += [request(300 + i, now - 7200, model="m1", inp=100, queue=9.0) for i in range(30)]  # too old
    store_spans(store, spans)
    refresh_baselines(store)
    got = {b: (n, q, p, t) for b, n, q, p, t in store.query(
        "SELECT PromptBucket, Requests, Queue, Prefill, TPOT FROM llm_baselines FINAL WHERE Model = 'm1'").result_rows}
    assert set(got) == {7, 255}
    # quantileExact(0.5): the element at index floor(n / 2) of the sorted values
    assert got[7] == (25, f32(0.12), f32(0.24), f32(0.1))
    qs = sorted([0.01 * i for i in range(25)] + [0.5] * 5)
    assert got[255][:2] == (30, f32(qs[15]))
    # a later request of bucket 9 falls back to the model-wide row; of bucket 7 it gets its own
    store_spans(store, [request(900, now, model="m1", inp=300, out=10, decode=0.9, ttft=0.5, e2e=1.5),
                        request(901, now, model="m1", inp=90, out=10, decode=0.9, ttft=0.5, e2e=1.5)])
    late = {int(r["SpanId"], 16): (r["BaselineQueue"], r["BaselinePrefill"]) for r in rows(store, "SpanId >= '0000000000000384'")}
    assert late == {900: (got[255][1], got[255][2]), 901: (got[7][1], got[7][2])}


_f = st.one_of(st.none(), st.floats(0, 30, width=32))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(facts=st.lists(st.tuples(
    st.sampled_from(["stop", "stop", "stop", "length", "abort", "error", "timeout"]),
    _f, _f, _f, _f, st.integers(0, 300), st.integers(0, 3), st.floats(0, 10, width=32)), min_size=1, max_size=12),
    slo=st.tuples(st.sampled_from([None, 0.25, 1.0]), st.sampled_from([None, 0.03125, 0.5])),
    base=st.one_of(st.none(), st.tuples(st.floats(0, 2, width=32), st.floats(0, 2, width=32),
                                         st.floats(0, 0.5, width=32))))
def test_the_views_cause_and_goodput_equal_the_reference(module_store, facts, slo, base):
    """Any facts, SLOs and baseline: the stored Cause and Good are what analytics/causes.py says."""
    store = module_store
    store.command("SYSTEM STOP VIEW llm_baselines_mv")
    store.command("TRUNCATE TABLE llm_requests")
    store.command("TRUNCATE TABLE llm_baselines")
    config = AnalyticsConfig(slos=[{"model": "m1", "ttft_seconds": slo[0], "tpot_seconds": slo[1]}])
    sync(store, config)
    if base is not None:
        store.insert("llm_baselines", {"Model": ["m1"], "PromptBucket": [255], "Requests": [50], "Queue": [base[0]],
                                       "Prefill": [base[1]], "TPOT": [base[2]], "Until": [int(time.time())]})
    spans = []
    for i, (finish, ttft, queue, prefill, decode, out, pre, e2e_extra) in enumerate(facts):
        e2e = None if ttft is None else f32(ttft + e2e_extra)  # TTFT <= E2E, else TTFT is stored NULL (INVALID)
        sp = request(i + 1, 1000.0, ttft=ttft or 0.0, e2e=e2e or 0.0, queue=queue or 0.0, prefill=prefill or 0.0,
                     decode=decode or 0.0, out=out, finish=finish, preemptions=pre)
        for key, value in ((sc.LATENCY_TTFT, ttft), (sc.LATENCY_E2E, e2e), (sc.LATENCY_QUEUE, queue),
                           (sc.LATENCY_PREFILL, prefill), (sc.LATENCY_DECODE, decode)):
            if value is None:
                sp["SpanAttributes"][key] = "not a number"  # stored NULL
        spans.append(sp)
    store_spans(store, spans)
    got = rows(store)
    assert len(got) == len(facts)
    slo_ttft = slo[0] if slo[0] is not None else 2.0  # the level thresholds (defaults) stand in
    slo_tpot = slo[1] if slo[1] is not None else 0.1
    for r in got:
        f = C.facts_of_row({**r, "SLOTTFT": slo_ttft, "SLOTPOT": slo_tpot})
        assert (r["Cause"], r["Good"]) == (C.cause(f), int(C.good(f))), r
        assert f.has_baseline == (base is not None)


@pytest.mark.parametrize("running,waiting,kv,want", [
    ("0", "0", "0", (0, 0, 0.0)),
    ("4294967295", "4294967296", "1", (4294967295, 4294967295, 1.0)),  # max, max + 1 clamped
    ("1e300", "inf", "1.0001", (4294967295, 4294967295, None)),  # a usage above 1 is not a usage
    ("nan", "-1", "-0.5", (None, None, None)),
    ("-inf", "", "nan", (None, None, None)),
    ("x" * 100_000, "3.7", "inf", (None, 3, None)),
])
def test_engine_state_at_arrival_crosses_the_boundary_exactly(store, running, waiting, kv, want):
    s = request(1, 1000.0)
    s["SpanAttributes"].update({sc.VLLM_ARRIVAL_RUNNING: running, sc.VLLM_ARRIVAL_WAITING: waiting,
                                sc.VLLM_ARRIVAL_KV_CACHE_USAGE: kv, sc.VLLM_REQUEST_ID: "cmpl-1"})
    store_spans(store, [s])
    (r,) = rows(store)
    assert (r["RunningAtArrival"], r["WaitingAtArrival"], r["KVCacheUsageAtArrival"]) == want
    assert r["RequestId"] == "cmpl-1"


def test_a_request_without_arrival_state_or_cache_attribute_has_nulls_not_zeros(store):
    s = request(1, 1000.0, inp=0)
    del s["SpanAttributes"][sc.USAGE_CACHE_READ_INPUT_TOKENS]
    store_spans(store, [s, request(2, 1000.0, inp=8, cached=8)])
    a, b = rows(store)
    assert (a["RunningAtArrival"], a["KVCacheUsageAtArrival"], a["PrefixHitShare"]) == (None, None, None)
    assert b["PrefixHitShare"] == 1.0 and math.isfinite(b["PrefixHitShare"])
