"""Window statistics: pure definitions, the same over raw llm_requests in chDB, and rollups = raw."""

from __future__ import annotations

import random

import pytest

from vllm_otel_collector.analytics.histogram import RELATIVE_ERROR
from vllm_otel_collector.analytics.stats import (CAUSES, _percentile, current_stats, history, rollup_window, summarize, usage,
                                                 usage_query, window_stats)

from .synth import refresh_baselines, request, store_spans

T0 = 1_800_000_000  # a minute boundary (divisible by 3600)


def synthetic_stream(n: int = 600, seed: int = 7) -> list[dict]:
    """``n`` requests over 10 minutes, two models, one LoRA, mixed statuses; fixed seed → same stream every run."""
    rnd = random.Random(seed)
    spans = []
    for i in range(n):
        ttft = round(rnd.lognormvariate(-1.0, 0.8), 4)
        decode = round(rnd.uniform(0.1, 3.0), 4)
        queue = round(rnd.expovariate(5.0), 4)
        finish = rnd.choices(["stop", "length", "abort", "timeout", "error"], [70, 15, 5, 4, 6])[0]
        spans.append(request(
            i + 1, T0 + i * (600 / n), ttft=ttft, queue=queue, prefill=round(ttft - queue if ttft > queue else 0, 4),
            decode=decode, e2e=round(ttft + decode, 4), inp=rnd.randint(5, 500), out=rnd.randint(1, 200),
            finish=finish, model=rnd.choice(["m1", "m2"]), cached=rnd.choice([0, 0, 16, 32]),
            lora=rnd.choice([None, None, "sql-lora"])))
    return spans


def load(store, spans):
    store_spans(store, spans)  # the materialized views derive llm_requests and the rollups


def raw_rows(store, where: str = "1", params=None) -> list[dict]:
    res = store.query(f"SELECT * FROM llm_requests WHERE {where} ORDER BY Timestamp", parameters=params or {})
    return [dict(zip(res.column_names, r)) for r in res.result_rows]


def test_summarize_exact():
    s = summarize([4.0, None, 1.0, 3.0, 2.0])
    assert s == {"count": 4, "avg": 2.5, "min": 1.0, "max": 4.0, "median": 2.5, "stddev": pytest.approx(1.2909944),
                 "p95": pytest.approx(3.85), "p99": pytest.approx(3.97)}
    assert summarize([]) ["avg"] is None and summarize([5.0])["stddev"] == 0.0


def test_window_stats_rates_and_sla():
    rows = [{"Status": s, "CachedTokens": c, "E2E": e, "InputTokens": 1, "OutputTokens": 2, "TTFT": 0.1,
             "TPOT": None, "Queue": 0.0, "Model": "m", "LoraName": lo, "Good": int(s == "ok" and e < 2),
             "Cause": cause}
            for s, c, e, lo, cause in [("ok", 0, 1.0, "", "ok"), ("ok", 8, 3.0, "a", "queued"),
                                       ("error", 0, None, "a", "error"), ("timeout", 0, 9.0, "", "error"),
                                       ("abort", 4, 0.5, "", "aborted")]]
    st = window_stats(rows, sla_seconds=2.0, window_seconds=10.0)
    assert st["goodput"] == {"good": 1, "ratio": 0.2, "per_second": 0.1, "throughput": 0.5}
    assert st["causes"] == {"ok": 1, "queued": 1, "prefill": 0, "decode": 0, "preempted": 0, "aborted": 1,
                            "error": 2}
    assert (st["requests"], st["success_rate"], st["error_rate"], st["timeout_rate"], st["abort_rate"],
            st["cache_hit_rate"]) == (5, 0.4, 0.2, 0.2, 0.2, 0.4)
    assert st["sla"] == {"seconds": 2.0, "target": 0.95, "compliance": 0.4, "met": False}
    assert st["latency"]["tpot"]["count"] == 0 and st["tokens"] == {"input": 5, "output": 10, "cached": 12}
    assert usage(rows) == [{"model": "m", "lora": "", "requests": 3, "input_tokens": 3, "output_tokens": 6},
                           {"model": "m", "lora": "a", "requests": 2, "input_tokens": 2, "output_tokens": 4}]


def test_current_stats_in_clickhouse_equals_pure_definition(store):
    load(store, synthetic_stream())
    since, until = T0 + 60, T0 + 360
    got = current_stats(store, since, until, sla_seconds=2.0)
    assert [(g["service"], g["model"], g["operation"]) for g in got] == [("vllm", "m1", "chat"), ("vllm", "m2", "chat")]
    for g in got:
        rows = raw_rows(store, "Model = {m:String} AND Timestamp >= toDateTime64({s:Float64}, 9) AND "
                               "Timestamp < toDateTime64({u:Float64}, 9)", {"m": g["model"], "s": since, "u": until})
        want = window_stats(rows, sla_seconds=2.0, window_seconds=until - since)
        assert g["requests"] == want["requests"] > 100
        assert 0 < want["goodput"]["good"] < want["requests"] and want["causes"]["ok"] < want["requests"]
        for key in ("success_rate", "error_rate", "abort_rate", "timeout_rate", "cache_hit_rate", "sla", "tokens",
                    "goodput", "causes"):
            assert g[key] == want[key], key
        for metric, summary in want["latency"].items():
            assert g["latency"][metric] == pytest.approx(summary, rel=1e-6), metric
    assert usage_query(store, since, until) == usage(raw_rows(
        store, "Timestamp >= toDateTime64({s:Float64}, 9) AND Timestamp < toDateTime64({u:Float64}, 9)",
        {"s": since, "u": until}))


@pytest.mark.parametrize("table", ["llm_requests_1m", "llm_requests_5m", "llm_requests_1h"])
def test_rollups_equal_raw(store, table):
    spans = synthetic_stream()
    # three inserts → several parts per bucket, so the merge path is exercised
    for i, part in enumerate((spans[:200], spans[200:450], spans[450:])):
        load(store, part)
        if i == 0:  # later rows get baselines (T0 is in the future: inside the refresh's last-hour window)
            refresh_baselines(store)
    assert store.query("SELECT count() FROM llm_requests WHERE BaselineTPOT IS NOT NULL").result_rows[0][0] == 400
    since, until = T0, T0 + 3600
    roll = rollup_window(store, since, until, table=table)
    rows = raw_rows(store)
    for (svc, model), m in roll.items():
        mine = [r for r in rows if r["Model"] == model]
        status = [r["Status"] for r in mine]
        assert (m["requests"], m["ok"], m["errors"], m["aborts"], m["timeouts"]) == (
            len(mine), status.count("ok"), status.count("error"), status.count("abort"), status.count("timeout"))
        assert m["input_tokens"] == sum(r["InputTokens"] for r in mine)
        assert m["output_tokens"] == sum(r["OutputTokens"] for r in mine)
        assert m["cached_tokens"] == sum(r["CachedTokens"] for r in mine)
        assert m["cache_hits"] == sum(1 for r in mine if r["CachedTokens"] > 0)
        assert m["ttft_over"] == sum(1 for r in mine if r["TTFTLevel"] in ("SLOW", "BOTTLENECK"))
        assert m["good"] == sum(r["Good"] for r in mine) > 0  # goodput: rollup = raw
        assert m["causes"] == {c: sum(1 for r in mine if r["Cause"] == c) for c in CAUSES}
        assert len({r["Cause"] for r in mine}) >= 4
        for lat in ("TTFT", "TPOT", "E2E", "Queue"):
            vals = sorted(r[lat] for r in mine if r[lat] is not None)
            key = lat.lower()
            assert m[f"{key}_count"] == len(vals)
            assert m[f"{key}_avg"] == pytest.approx(sum(vals) / len(vals), rel=1e-6)
            assert m[f"{key}_max"] == pytest.approx(max(vals))
            for q in (0.5, 0.9, 0.95, 0.99):
                est = m[f"{key}_p{int(q * 100)}"]
                exact = _percentile(vals, q)  # the raw definition (quantileExactInclusive)
                assert abs(est - exact) <= RELATIVE_ERROR * exact * (1 + 1e-9), (lat, q, est, exact)
    assert sum(m["requests"] for m in roll.values()) == 600


def test_history_per_minute_counts_exact(store):
    load(store, synthetic_stream())
    points = history(store, T0, T0 + 600, step_seconds=60)
    assert sorted({p["bucket"] for p in points}) == [T0 + 60 * k for k in range(10)]
    rows = raw_rows(store)
    for p in points:
        n = sum(1 for r in rows if r["Model"] == p["model"]
                and T0 + 0 <= r["Timestamp"].timestamp() - p["bucket"] + T0 < T0 + 60)
        assert p["requests"] == n
        mine = [r for r in rows if r["Model"] == p["model"] and p["bucket"] <= r["Timestamp"].timestamp() < p["bucket"] + 60]
        assert p["good"] == sum(r["Good"] for r in mine)
        assert p["causes"] == {c: sum(1 for r in mine if r["Cause"] == c) for c in CAUSES}
        assert p["goodput_per_second"] == pytest.approx(p["good"] / 60)
    assert sum(p["requests"] for p in points) == 600


@pytest.mark.parametrize("step, width", [(300, 300), (600, 300), (3600, 3600), (120, 60)])
def test_history_step_picks_the_rollup_and_counts_stay_exact(store, step, width):
    from vllm_otel_collector.analytics.stats import history_step

    assert history_step(step) == width
    load(store, synthetic_stream())
    points = history(store, T0, T0 + 3600, step_seconds=step)
    rows = raw_rows(store)
    assert {p["bucket"] % width for p in points} == {T0 % width}
    for p in points:
        mine = [r for r in rows
                if r["Model"] == p["model"] and p["bucket"] <= r["Timestamp"].timestamp() < p["bucket"] + width]
        assert p["requests"] == len(mine) and p["good"] == sum(r["Good"] for r in mine)
        assert p["goodput_per_second"] == pytest.approx(p["good"] / width)
    assert sum(p["requests"] for p in points) == 600


def test_summarize_matches_numpy_linear_percentiles():
    np = pytest.importorskip("numpy")
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=60))
    def check(values):
        s = summarize(values)
        arr = np.array(values)
        assert s["median"] == pytest.approx(np.percentile(arr, 50), abs=1e-9)
        assert s["p95"] == pytest.approx(np.percentile(arr, 95), abs=1e-9)
        assert s["p99"] == pytest.approx(np.percentile(arr, 99), abs=1e-9)
        assert s["stddev"] == pytest.approx(np.std(arr, ddof=1) if len(values) > 1 else 0.0, abs=1e-6)

    check()
