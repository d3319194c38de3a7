"""``explain``: the stored cause in one sentence with its numbers, the baseline it was held to, and an engine start's
compile-cache fallback — read back from rows the views stored."""

from __future__ import annotations

import time

import pytest

from opentelemetry.instrumentation.vllm import semconv as sc
from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.explain import explain, route
from vllm_otel_collector.analytics.sync import sync

from .synth import span, request, store_spans


def _req(n, **kw):
    arrival = kw.pop("arrival", None)
    s = request(n, 1000.0 + n, **kw)
    s["SpanAttributes"][sc.VLLM_REQUEST_ID] = f"req-{n}"
    if arrival:
        s["SpanAttributes"].update({sc.VLLM_ARRIVAL_RUNNING: str(arrival[0]), sc.VLLM_ARRIVAL_WAITING: str(arrival[1]),
                                    sc.VLLM_ARRIVAL_KV_CACHE_USAGE: str(arrival[2])})
    return s


def test_each_cause_is_explained_with_the_numbers_behind_it(store):
    sync(store, AnalyticsConfig(slos=[{"model": "m1", "ttft_seconds": 0.5, "tpot_seconds": 0.05}]))
    store.command("SYSTEM STOP VIEW llm_baselines_mv")
    store.command("TRUNCATE TABLE llm_baselines")
    store.insert("llm_baselines", {"Model": ["m1"], "PromptBucket": [255], "Requests": [40], "Queue": [0.125],
                                   "Prefill": [0.25], "TPOT": [0.03125], "Until": [int(time.time())]})
    store_spans(store, [
        _req(1, ttft=1.5, e2e=2.0, queue=1.25, prefill=0.25, decode=0.25, out=9, arrival=(8, 5, 0.96875)),
        _req(2, ttft=2.5, e2e=3.0, queue=0.0, prefill=2.5, decode=0.25, inp=3000, out=9, cached=0),
        _req(3, ttft=0.25, e2e=1.25, queue=0.0, prefill=0.25, decode=1.0, out=9, arrival=(16, 0, 0.5)),
        _req(4, ttft=0.25, e2e=3.0, queue=0.125, prefill=0.125, decode=0.25, out=9, preemptions=2),
        _req(5, ttft=0.25, e2e=0.5, queue=0.0, prefill=0.25, decode=0.25, out=9),
    ])
    got = {n: explain(store, f"req-{n}") for n in range(1, 6)}
    assert {n: a["cause"] for n, a in got.items()} == {1: "queued", 2: "prefill", 3: "decode", 4: "preempted",
                                                       5: "ok"}
    assert got[1]["sentence"] == ("queued: it waited 1.25 s for the scheduler vs baseline 125 ms, 5 waiting and 8 "
                                  "running at arrival, KV cache 97% used (TTFT 1.5 s > SLO 500 ms; E2E 2 s > 2× its "
                                  "baseline 625 ms)")
    assert got[2]["sentence"].startswith("prefill: processing its 3000-token prompt (no prefix-cache hit) took 2.5 s "
                                         "vs baseline 250 ms for this prompt length")
    assert got[3]["sentence"] == ("decode: 9 tokens at TPOT 125 ms vs baseline 31.2 ms took 1 s, 16 requests running "
                                  "at arrival (TPOT 125 ms > SLO 50 ms)")
    assert got[4]["sentence"].startswith("preempted: vLLM preempted it 2 times")
    assert got[5]["sentence"] == ("ok: met its SLOs (TTFT 250 ms ≤ 500 ms, TPOT 31.2 ms ≤ 50 ms) and stayed within "
                                  "2× its baseline")
    b = got[1]["baseline"]
    assert (b["queue"], b["prefill"], b["tpot"], b["expected_e2e"]) == (0.125, 0.25, 0.03125, 0.625)
    assert got[1]["excess"] == {"queued": 1.125, "prefill": 0.0, "decode": 0.0}
    assert got[1]["slo"] == {"ttft": 0.5, "tpot": pytest.approx(0.05)}
    assert [(t["phase"], t["start"], t["seconds"]) for t in got[1]["timeline"]] == [
        ("queue", 0.0, 1.25), ("prefill", 1.25, 0.25), ("decode", 1.5, 0.25)]
    assert explain(store, f"{1:032X}")["request_id"] == "req-1"  # trace ids in either case


def test_an_engine_start_names_vllms_cache_fallback_reason(store):
    t = "ab" * 16
    reason = "'function' object has no attribute 'finalize_loading'"
    store_spans(store, [
        span(1, "Overall Loading", 10**12, 95.0, {sc.LOAD_MODEL_NAME: "SmolLM2", sc.LOAD_COMPILE_CACHE_HIT: "false",
                                                  sc.LOAD_COMPILE_SECONDS: "80.5"}, trace=t),
        span(2, "Load weights", 10**12 + 10**9, 2.0, {}, trace=t),
        span(3, "Warmup (CPU)", 10**12 + 5 * 10**9, 81.0,
             {sc.LOAD_COMPILE_CACHE_PATH: "/root/.cache/vllm/torch_compile_cache/abc/rank_0_0/model",
              sc.LOAD_COMPILE_CACHE_FALLBACK_REASON: reason}, trace=t),
    ])
    a = explain(store, t)
    assert a["kind"] == "model_load" and a["compile_cache"] == {
        "hit": "false", "path": "/root/.cache/vllm/torch_compile_cache/abc/rank_0_0/model", "fallback_reason": reason}
    assert a["sentence"] == ("engine start of SmolLM2 took 95 s; the compile cache at /root/.cache/vllm/"
                             f"torch_compile_cache/abc/rank_0_0/model failed to load ({reason}), so vLLM compiled "
                             "again; compiling took 80.5 s")
    assert [(p["span"], p["start"], p["seconds"]) for p in a["phases"]] == [
        ("Overall Loading", 0.0, 95.0), ("Load weights", 1.0, 2.0), ("Warmup (CPU)", 5.0, 81.0)]


@pytest.mark.parametrize("ident,status", [("nope", 404), ("cd" * 16, 404), ("", 400), ("x" * 257, 400)])
def test_unknown_or_impossible_ids(store, ident, status):
    try:
        code, body = route(store, {"id": ident})
    except ValueError as exc:  # the API server answers 400 with this line
        code, body = 400, {"error": str(exc)}
    assert code == status and "\n" not in body["error"]
