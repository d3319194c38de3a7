"""Spans → llm_requests / span_levels rows, derived by the materialized views on the traces table (migration 0131):
exact values, levels, vLLM native spans, non-request spans skipped, thresholds followed without re-migrating, the
glob → RE2 translation equal to fnmatch."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given, settings, strategies as st

from opentelemetry.instrumentation.vllm import semconv as sc
from vllm_otel_collector.analytics import sqlnames
from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.levels import GLOB_SLOTS, Thresholds, compile_lookup, glob_kind, glob_regex, level
from vllm_otel_collector.analytics.sync import stored_thresholds, sync, sync_thresholds
from vllm_otel_collector.errors import UserError

from .synth import request, span, store_spans

THR = Thresholds(AnalyticsConfig().levels)


def rows(store, table="llm_requests", order="SpanId"):
    res = store.query(f"SELECT * FROM {table} ORDER BY {order}")
    return [dict(zip(res.column_names, r)) for r in res.result_rows]


@pytest.mark.parametrize("value,expected", [
    (0.0, "EXCELLENT"), (0.99, "EXCELLENT"), (1.0, "GOOD"), (2.0, "GOOD"), (2.01, "SLOW"), (3.0, "SLOW"),
    (3.01, "BOTTLENECK"), (None, None)])
def test_level_bands_against_ttft_default_threshold_2s(value, expected):
    assert THR.level("chat m1", "ttft", value) == expected
    assert level(value, 2.0) == expected


def test_request_span_becomes_exact_row(store):
    store_spans(store, [
        request(1, 1000.0, ttft=0.5, e2e=2.5, queue=1.6, prefill=0.4, decode=2.0, inp=12, out=5, cached=8,
                lora="sql-lora", preemptions=2),
        span(2, "queue", 1000_000_000_000, 0.1),  # child span without request attributes: skipped
    ])
    got = rows(store)
    assert len(got) == 1
    row = got[0]
    assert row.pop("Timestamp").timestamp() == 1000.0
    assert row == {
        "TraceId": f"{1:032x}", "SpanId": f"{1:016x}", "ServiceName": "vllm",
        "Model": "m1", "Operation": "chat", "Status": "ok", "FinishReason": "stop", "ErrorType": "",
        "TTFT": 0.5, "TPOT": 0.5, "E2E": 2.5, "Queue": pytest.approx(1.6), "Prefill": pytest.approx(0.4),
        "Decode": 2.0, "InputTokens": 12, "OutputTokens": 5, "CachedTokens": 8, "TokensPerSecond": 2.0,
        "Preemptions": 2, "LoraName": "sql-lora", "TTFTLevel": "EXCELLENT", "TPOTLevel": "BOTTLENECK",
        "E2ELevel": "EXCELLENT", "QueueLevel": "BOTTLENECK", "RequestId": "", "RunningAtArrival": None,
        "WaitingAtArrival": None, "KVCacheUsageAtArrival": None, "PrefixHitShare": pytest.approx(8 / 12),
        "SLOTTFT": 2.0, "SLOTPOT": pytest.approx(0.1), "BaselineQueue": None, "BaselinePrefill": None,
        "BaselineTPOT": None, "Good": 0, "Cause": "preempted",  # TPOT 0.5 s missed the 0.1 s SLO; preempted twice
    }


@pytest.mark.parametrize("finish,code,status", [
    ("stop", "Unset", "ok"), ("length", "Ok", "ok"), ("abort", "Unset", "abort"), ("timeout", "Error", "timeout"),
    ("error", "Error", "error"), ("stop", "Error", "error"), ("stop", "STATUS_CODE_ERROR", "error"),
    ("stop", "STATUS_CODE_OK", "ok")])
def test_status_from_finish_reason_and_status_code(store, finish, code, status):
    store_spans(store, [request(1, 1.0, finish=finish, status=code)])
    assert [(r["Status"], r["FinishReason"]) for r in rows(store)] == [(status, finish)]


@pytest.mark.parametrize("raw,finish", [('["length"]', "length"), ("['abort']", "abort"),
                                        ('["stop","length"]', "stop"), ("[]", "")])
def test_finish_reason_from_the_genai_array_in_both_exporter_spellings(store, raw, finish):
    store_spans(store, [span(1, "chat m", 10**9, 1.0, {sc.LATENCY_E2E: 1.0, sc.RESPONSE_FINISH_REASONS: raw})])
    assert [(r["FinishReason"], r["Status"]) for r in rows(store)] == [(finish, "abort" if finish == "abort" else "ok")]


def test_native_vllm_llm_request_span(store):
    attrs = {sc.NATIVE_LATENCY_TTFT: 0.25, sc.NATIVE_LATENCY_E2E: 1.25, sc.NATIVE_LATENCY_QUEUE: 0.01,
             sc.NATIVE_LATENCY_PREFILL: 0.24, sc.NATIVE_LATENCY_DECODE: 1.0, sc.NATIVE_USAGE_PROMPT_TOKENS: 7,
             sc.NATIVE_USAGE_COMPLETION_TOKENS: 5, sc.NATIVE_REQUEST_ID: "cmpl-1"}
    store_spans(store, [span(3, "llm_request", 5_000_000_000, 1.25, attrs)])
    (row,) = rows(store)
    assert row["Operation"] == "llm_request" and row["Model"] == ""
    assert row["InputTokens"] == 7 and row["OutputTokens"] == 5
    assert row["TPOT"] == 0.25  # decode 1.0 s / (5 - 1)
    assert row["TokensPerSecond"] == 4.0  # 5 tokens / 1.25 s
    assert row["Status"] == "ok" and row["FinishReason"] == ""
    assert row["Queue"] == pytest.approx(0.01) and row["TTFT"] == 0.25


def test_our_latency_name_wins_and_the_native_one_fills_in_only_when_ours_is_absent(store):
    store_spans(store, [
        span(1, "chat m", 10**9, 1, {sc.LATENCY_E2E: 2.0, sc.NATIVE_LATENCY_E2E: 9.0, sc.NATIVE_LATENCY_TTFT: 0.5}),
        span(2, "chat m", 10**9, 1, {sc.LATENCY_E2E: "garbage", sc.NATIVE_LATENCY_E2E: 9.0}),  # ours present: NULL
    ])
    assert [(r["E2E"], r["TTFT"]) for r in rows(store)] == [(2.0, 0.5), (None, None)]


def test_single_token_has_no_tpot_and_bad_values_are_missing(store):
    store_spans(store, [request(1, 1.0, out=1, ttft="nan", queue=-0.5)])
    (row,) = rows(store)
    assert row["TPOT"] is None and row["TPOTLevel"] == "NONE"
    assert row["TTFT"] is None and row["Queue"] is None and row["QueueLevel"] == "NONE"


def test_ttft_above_e2e_is_flagged_invalid(store):
    store_spans(store, [request(1, 1.0, ttft=3.0, e2e=2.0)])
    (row,) = rows(store)
    assert (row["TTFT"], row["TTFTLevel"], row["E2E"]) == (None, "INVALID", 2.0)


def test_span_levels_for_any_instrumentation(store):
    store_spans(store, [span(1, "stt_processing", 10, 0.2), span(2, "tts_synthesis", 20, 0.9),
                        span(3, "llm_response", 30, 1.2), span(4, "http.request", 40, 9.0)])
    got = rows(store, "span_levels")
    assert [r["SpanName"] for r in got] == ["stt_processing", "tts_synthesis", "llm_response"]
    assert [r["Level"] for r in got] == ["EXCELLENT", "BOTTLENECK", "SLOW"]
    assert [r["Threshold"] for r in got] == [0.5, 0.5, 1.0]
    assert [r["Value"] for r in got] == pytest.approx([0.2, 0.9, 1.2])
    assert {r["Metric"] for r in got} == {"duration"}


def test_levels_follow_a_threshold_change_without_remigrating(store):
    """New thresholds apply to spans inserted after the sync; rows already stored keep their level."""
    store_spans(store, [request(1, 1.0, ttft=1.5), span(2, "voice.asr", 10, 1.2)])
    cfg = AnalyticsConfig.load({"levels": [{"span": "voice.*", "metric": "duration", "threshold_seconds": 1.0},
                                           {"span": "chat *", "metric": "ttft", "threshold_seconds": 1.0}]})
    assert sync(store, cfg) is True
    assert sync(store, cfg) is False  # unchanged: nothing written
    assert stored_thresholds(store) == [("voice.*", "duration", 1.0), ("chat *", "ttft", 1.0)]
    store_spans(store, [request(3, 2.0, ttft=1.5), span(4, "voice.asr", 20, 1.2), span(5, "stt_processing", 30, 9)])
    assert [(r["SpanId"][-1], r["TTFTLevel"]) for r in rows(store)] == [("1", "GOOD"), ("3", "SLOW")]
    assert [(r["SpanName"], r["Level"]) for r in rows(store, "span_levels")] == [("voice.asr", "SLOW")]


def test_the_first_matching_entry_in_config_order_wins(store):
    sync_thresholds(store, [("chat m1", "ttft", 10.0), ("chat *", "ttft", 1.0), ("*", "ttft", 0.1)])
    store_spans(store, [request(1, 1.0, ttft=1.5, model="m1"), request(2, 1.0, ttft=1.5, model="m2"),
                        request(3, 1.0, ttft=1.5, model="m3", op="text_completion")])
    assert [r["TTFTLevel"] for r in rows(store)] == ["EXCELLENT", "SLOW", "BOTTLENECK"]


def test_no_threshold_means_no_level(store):
    sync_thresholds(store, [])
    store_spans(store, [request(1, 1.0), span(2, "stt_processing", 1, 1.0)])
    assert [(r["TTFTLevel"], r["E2ELevel"]) for r in rows(store)] == [("NONE", "NONE")]
    assert rows(store, "span_levels") == []


_GLOB_CHARS = st.sampled_from(list("ab.-!^]\\[*?") + ["[!", "[a-b]", "[]", "x\n"])


@settings(max_examples=150, deadline=None)
@given(glob=st.lists(_GLOB_CHARS, max_size=6).map("".join),
       names=st.lists(st.text(alphabet="ab.-!^]\\[*?\n", max_size=6), min_size=1, max_size=8))
def test_glob_regex_matches_exactly_what_fnmatch_matches(shared_store, glob, names):
    """ClickHouse ``match`` with :func:`glob_regex` agrees with ``fnmatch.fnmatchcase`` (the Python thresholds)."""
    got = shared_store.query("SELECT arrayMap(n -> match(n, {p:String}), {names:Array(String)})",
                             parameters={"p": glob_regex(glob), "names": names}).result_rows[0][0]
    assert [bool(x) for x in got] == [fnmatch.fnmatchcase(n, glob) for n in names]


def test_levels_are_monotonic_in_value():
    order = ["EXCELLENT", "GOOD", "SLOW", "BOTTLENECK"]

    @given(st.floats(0, 1e3), st.floats(0, 1e3), st.floats(1e-3, 1e2))
    def check(a, b, thr):
        lo, hi = sorted((a, b))
        assert order.index(level(lo, thr)) <= order.index(level(hi, thr))

    check()


_NAMES = st.text(alphabet="ab.*?[]!", max_size=4)
_ENTRY = st.tuples(st.one_of(_NAMES, st.just("*")), st.sampled_from(["duration", "ttft"]),
                   st.floats(0.001, 100, allow_nan=False))


def _within_slots(entries) -> bool:
    try:
        for m in ("duration", "ttft"):
            compile_lookup(entries, m)
    except ValueError:
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(entries=st.lists(_ENTRY, max_size=8).filter(_within_slots),
       names=st.lists(st.text(alphabet="ab.*?[]!", max_size=4), min_size=1, max_size=10))
def test_the_views_lookup_gives_every_span_name_the_first_matching_entrys_threshold(module_store, entries, names):
    """The compiled per-metric lookup (``llm_level_lookup``), evaluated by the views' own SQL, equals the first
    matching entry in config order (``fnmatch``) for any entries and any span name — exact names, globs, ``*``."""
    sync_thresholds(module_store, entries)
    names = names + [e[0] for e in entries]  # the configured names themselves, as span names
    expr = {m: sqlnames.resolve(f"LOOKUP_{m.upper()}") for m in ("duration", "ttft")}
    with_request = sqlnames.resolve("WITH_REQUEST_THRESHOLDS").replace("${db}", f"`{module_store.database}`")
    with_duration = sqlnames.resolve("WITH_DURATION_THRESHOLDS").replace("${db}", f"`{module_store.database}`")
    got = {m: module_store.query(f"WITH {w} SELECT {expr[m]} FROM (SELECT arrayJoin({{n:Array(String)}}) AS SpanName)",
                                parameters={"n": names}).result_rows
           for m, w in (("ttft", with_request), ("duration", with_duration))}
    thr = Thresholds.of(entries)
    for m in ("duration", "ttft"):
        assert [r[0] for r in got[m]] == [thr.get(n, m) or 0.0 for n in names]


def test_more_wildcard_globs_than_the_views_match_are_refused():
    entries = [(f"g{i}*", "ttft", 1.0) for i in range(GLOB_SLOTS + 1)]
    with pytest.raises(ValueError, match="at most 4 wildcard"):
        compile_lookup(entries, "ttft")
    # after a '*' entry the later globs are unreachable: not counted
    assert compile_lookup([("*", "ttft", 2.0)] + entries, "ttft")[4] == 2.0
    assert [glob_kind(g) for g in ("*", "chat m", "chat *", "a?", "[ab]")] == ["all", "exact", "glob", "glob", "glob"]
    with pytest.raises(UserError, match="at levels: .*at most 4 wildcard"):
        AnalyticsConfig.load({"levels": [{"span": s, "metric": "ttft", "threshold_seconds": 1.0} for s, _, _ in entries]})
