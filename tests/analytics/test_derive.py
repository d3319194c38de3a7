"""Span columns → llm_requests / span_levels rows: exact values, levels, native spans, non-request spans skipped."""

from __future__ import annotations

import pytest

from opentelemetry.instrumentation.vllm import semconv as sc
from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.derive import AnalyticsProcessor, requests_from_spans, span_levels_from_spans
from vllm_otel_collector.analytics.levels import Thresholds, level

from .synth import columns, request, span

THR = Thresholds(AnalyticsConfig().levels)


@pytest.mark.parametrize("value,expected", [
    (0.0, "EXCELLENT"), (0.99, "EXCELLENT"), (1.0, "GOOD"), (2.0, "GOOD"), (2.01, "SLOW"), (3.0, "SLOW"),
    (3.01, "BOTTLENECK"), (None, None)])
def test_level_bands_against_ttft_default_threshold_2s(value, expected):
    assert THR.level("chat m1", "ttft", value) == expected
    assert level(value, 2.0) == expected


def test_request_span_becomes_exact_row():
    batch = columns([
        request(1, 1000.0, ttft=0.5, e2e=2.5, queue=1.6, prefill=0.4, decode=2.0, inp=12, out=5, cached=8,
                lora="sql-lora", preemptions=2),
        span(2, "queue", 1000_000_000_000, 0.1),  # child span without request attributes: skipped
    ])
    rows = requests_from_spans(batch, THR)
    assert {k: v[0] for k, v in rows.items()} == {
        "Timestamp": 1000_000_000_000, "TraceId": f"{1:032x}", "SpanId": f"{1:016x}", "ServiceName": "vllm",
        "Model": "m1", "Operation": "chat", "Status": "ok", "FinishReason": "stop", "ErrorType": "",
        "TTFT": 0.5, "TPOT": 0.5, "E2E": 2.5, "Queue": 1.6, "Prefill": 0.4, "Decode": 2.0,
        "InputTokens": 12, "OutputTokens": 5, "CachedTokens": 8, "TokensPerSecond": 2.0, "Preemptions": 2,
        "LoraName": "sql-lora", "TTFTLevel": "EXCELLENT", "TPOTLevel": "BOTTLENECK", "E2ELevel": "EXCELLENT",
        "QueueLevel": "BOTTLENECK",
    }
    assert all(len(v) == 1 for v in rows.values())


@pytest.mark.parametrize("finish,code,status", [
    ("stop", "Unset", "ok"), ("length", "Ok", "ok"), ("abort", "Unset", "abort"), ("timeout", "Error", "timeout"),
    ("error", "Error", "error"), ("stop", "Error", "error")])
def test_status_from_finish_reason_and_status_code(finish, code, status):
    rows = requests_from_spans(columns([request(1, 1.0, finish=finish, status=code)]), THR)
    assert rows["Status"] == [status]
    assert rows["FinishReason"] == [finish]


def test_native_vllm_llm_request_span():
    attrs = {sc.LATENCY_TTFT: 0.25, sc.LATENCY_E2E: 1.25, sc.LATENCY_QUEUE: 0.01, sc.LATENCY_PREFILL: 0.24,
             sc.LATENCY_DECODE: 1.0, sc.NATIVE_USAGE_PROMPT_TOKENS: 7, sc.NATIVE_USAGE_COMPLETION_TOKENS: 5,
             sc.NATIVE_REQUEST_ID: "cmpl-1"}
    rows = requests_from_spans(columns([span(3, "llm_request", 5_000_000_000, 1.25, attrs)]), THR)
    assert rows["Operation"] == ["llm_request"] and rows["Model"] == [""]
    assert rows["InputTokens"] == [7] and rows["OutputTokens"] == [5]
    assert rows["TPOT"] == [0.25]  # decode 1.0 s / (5 - 1)
    assert rows["TokensPerSecond"] == [4.0]  # 5 tokens / 1.25 s
    assert rows["Status"] == ["ok"] and rows["FinishReason"] == [""]


def test_single_token_has_no_tpot_and_bad_values_are_missing():
    rows = requests_from_spans(columns([request(1, 1.0, out=1, ttft="nan", queue=-0.5)]), THR)
    assert rows["TPOT"] == [None] and rows["TPOTLevel"] == ["NONE"]
    assert rows["TTFT"] == [None] and rows["Queue"] == [None] and rows["QueueLevel"] == ["NONE"]


def test_span_levels_for_any_instrumentation():
    batch = columns([span(1, "stt_processing", 10, 0.2), span(2, "tts_synthesis", 20, 0.9),
                     span(3, "llm_response", 30, 1.2), span(4, "http.request", 40, 9.0)])
    rows = span_levels_from_spans(batch, THR)
    assert rows["SpanName"] == ["stt_processing", "tts_synthesis", "llm_response"]
    assert rows["Level"] == ["EXCELLENT", "BOTTLENECK", "SLOW"]
    assert rows["Threshold"] == [0.5, 0.5, 1.0]
    assert rows["Value"] == [0.2, 0.9, 1.2]


def test_custom_level_pattern_overrides_defaults():
    cfg = AnalyticsConfig.load({"levels": [{"span": "voice.*", "metric": "duration", "threshold_seconds": 1.0}]})
    rows = span_levels_from_spans(columns([span(1, "voice.asr", 1, 1.2), span(2, "stt_processing", 2, 9)]),
                                  Thresholds(cfg.levels))
    assert rows["SpanName"] == ["voice.asr"] and rows["Level"] == ["SLOW"]


def test_processor_rows_insert_into_clickhouse(store):
    proc = AnalyticsProcessor(THR)
    batch = columns([request(i, 1_700_000_000 + i, ttft=0.1 * i) for i in range(1, 4)]
                    + [span(9, "stt_processing", 1_700_000_000_000_000_000, 0.3)])
    inserts = proc.process(batch)
    assert [t for t, _ in inserts] == ["llm_requests", "span_levels"]
    for table, cols in inserts:
        store.insert(table, cols)
    got = store.query("SELECT SpanId, round(toFloat64(TTFT), 3), TTFTLevel, Status FROM llm_requests ORDER BY SpanId")
    assert got.result_rows == [(f"{i:016x}", round(0.1 * i, 3), "EXCELLENT", "ok") for i in range(1, 4)]
    assert store.query("SELECT Level FROM span_levels").result_rows == [("GOOD",)]
    assert proc.process(columns([span(1, "other", 1, 1.0)])) == []


def test_levels_are_monotonic_in_value():
    from hypothesis import given, strategies as st

    order = ["EXCELLENT", "GOOD", "SLOW", "BOTTLENECK"]

    @given(st.floats(0, 1e3), st.floats(0, 1e3), st.floats(1e-3, 1e2))
    def check(a, b, thr):
        lo, hi = sorted((a, b))
        assert order.index(level(lo, thr)) <= order.index(level(hi, thr))

    check()
