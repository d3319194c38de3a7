"""Derived rows under hostile values (#12 items 2-3), through a real collector (OTLP/HTTP) into real chDB; since
issue 20 the rows are derived by the materialized views of migration 0131, so these values cross them too.

On the old code one request span with ``gen_ai.usage.output_tokens`` ≥ 2^32, a token count of ±Inf or ``"inf"``
raised ``OverflowError`` in ``derive._int`` and dropped every ``llm_requests`` row of the batch, other clients'
included; TTFT/E2E = +Inf were stored and made the minute bucket's sums inf; TTFT > E2E was averaged in; tokens/s was
inf for e2e ≈ 0.
"""

from __future__ import annotations

import math

import httpx

from collector.helpers import make_request, make_span
from opentelemetry.instrumentation.vllm import semconv as sc

FLOAT32_MAX = 3.4028234663852886e38  # the latency columns: Nullable(Float32)
UINT32_MAX, UINT16_MAX = 2**32 - 1, 2**16 - 1  # token counts, preemptions

T0 = 1_700_000_000_000_000_000
INF = float("inf")


def request_span(name: str, **overrides):
    """A request span as our instrumentation writes it (seconds, token counts), with ``overrides`` by semconv key."""
    attrs = {sc.OPERATION_NAME: "chat", sc.REQUEST_MODEL: "m", sc.RESPONSE_MODEL: "m", sc.VLLM_FINISH_REASON: "stop",
             sc.LATENCY_TTFT: 0.25, sc.LATENCY_E2E: 1.0, sc.LATENCY_QUEUE: 0.05, sc.LATENCY_DECODE: 0.7,
             sc.USAGE_INPUT_TOKENS: 10, sc.USAGE_OUTPUT_TOKENS: 8, sc.VLLM_NUM_PREEMPTIONS: 0}
    attrs.update(overrides)
    attrs = {k: v for k, v in attrs.items() if v is not None}
    return make_span(name, start=T0, duration=1_000_000_000, **attrs)


# name → (attribute overrides, expected (TTFT, E2E, TPOT, TokensPerSecond, OutputTokens, Preemptions, TTFTLevel))
CAPPED = (0.25, 1.0, 0.7 / (UINT32_MAX - 1), float(UINT32_MAX), UINT32_MAX, 0, "EXCELLENT")  # tokens clamped
CASES = {
    "good": ({}, (0.25, 1.0, 0.1, 8.0, 8, 0, "EXCELLENT")),
    "tokens-2^32": ({sc.USAGE_OUTPUT_TOKENS: 2**32}, CAPPED),
    "tokens-int64-max": ({sc.USAGE_OUTPUT_TOKENS: 2**63 - 1}, CAPPED),
    # a non-finite double is stored as the contrib exporter stores it ("json: unsupported value: +Inf"): missing
    "tokens-inf": ({sc.USAGE_OUTPUT_TOKENS: INF}, (0.25, 1.0, None, None, 0, 0, "EXCELLENT")),
    "tokens-inf-string": ({sc.USAGE_OUTPUT_TOKENS: "inf"}, CAPPED),
    "tokens-huge-string": ({sc.USAGE_OUTPUT_TOKENS: "9" * 5000}, CAPPED),
    "tokens-nan": ({sc.USAGE_OUTPUT_TOKENS: float("nan")}, (0.25, 1.0, None, None, 0, 0, "EXCELLENT")),
    "tokens-negative": ({sc.USAGE_OUTPUT_TOKENS: -5}, (0.25, 1.0, None, 0.0, 0, 0, "EXCELLENT")),
    "preemptions-2^40": ({sc.VLLM_NUM_PREEMPTIONS: 2**40}, (0.25, 1.0, 0.1, 8.0, 8, UINT16_MAX, "EXCELLENT")),
    "ttft-inf": ({sc.LATENCY_TTFT: INF}, (None, 1.0, 0.1, 8.0, 8, 0, "NONE")),
    "ttft-minus-inf-string": ({sc.LATENCY_TTFT: "-inf"}, (None, 1.0, 0.1, 8.0, 8, 0, "NONE")),
    "e2e-above-float32": ({sc.LATENCY_E2E: 3.5e38}, (0.25, None, 0.1, None, 8, 0, "EXCELLENT")),
    "e2e-negative": ({sc.LATENCY_E2E: -1.0}, (0.25, None, 0.1, None, 8, 0, "EXCELLENT")),
    "e2e-nan": ({sc.LATENCY_E2E: float("nan")}, (0.25, None, 0.1, None, 8, 0, "EXCELLENT")),
    "ttft-over-e2e": ({sc.LATENCY_TTFT: 2.0}, (None, 1.0, 0.1, 8.0, 8, 0, "INVALID")),
    "e2e-near-zero": ({sc.LATENCY_TTFT: 0.0, sc.LATENCY_E2E: 1e-12}, (0.0, 1e-12, 0.1, None, 8, 0, "EXCELLENT")),
    "tps-inf": ({sc.VLLM_TOKENS_PER_SECOND: INF}, (0.25, 1.0, 0.1, 8.0, 8, 0, "EXCELLENT")),  # derived instead
    "decode-huge": ({sc.LATENCY_DECODE: FLOAT32_MAX, sc.USAGE_OUTPUT_TOKENS: 2},
                    (0.25, 1.0, FLOAT32_MAX, 2.0, 2, 0, "EXCELLENT")),
}


def _close(got, want) -> bool:
    if want is None or got is None:
        return got is want
    if isinstance(want, str):
        return got == want
    return math.isclose(got, want, rel_tol=1e-6)  # Float32 columns


def test_hostile_values_never_drop_other_rows_and_rollups_stay_finite(make_collector):
    c = make_collector(load_analytics=True)
    spans = [request_span(name, **attrs) for name, (attrs, _) in CASES.items()]
    r = httpx.post(f"http://127.0.0.1:{c.http_port}/v1/traces", content=make_request(spans).SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200
    assert c.drain(20)
    ids = {s.span_id.hex(): name for s, name in zip(spans, CASES)}
    rows = c.store.query(
        "SELECT SpanId, TTFT, E2E, TPOT, TokensPerSecond, OutputTokens, Preemptions, toString(TTFTLevel) "
        "FROM llm_requests").result_rows
    assert sorted(ids[r[0]] for r in rows) == sorted(CASES)  # every row of the batch, none dropped
    for span_id, *got in rows:
        name = ids[span_id]
        want = CASES[name][1]
        assert all(_close(g, w) for g, w in zip(got, want)), (name, got, want)
    sums = c.store.query(
        "SELECT sum(Requests), sum(TTFTSum), sum(TTFTCount), sum(E2ESum), sum(E2ECount), sum(TPOTSum), "
        "sum(TokensPerSecondSum), max(TTFTMax), max(E2EMax), max(TPOTMax) FROM llm_requests_1m").result_rows[0]
    assert sums[0] == len(CASES)
    assert all(math.isfinite(v) for v in sums), sums
    expected_ttft = [w[0] for _, w in CASES.values() if w[0] is not None]
    assert sums[2] == len(expected_ttft) and math.isclose(sums[1], sum(expected_ttft), rel_tol=1e-6)
    expected_e2e = [w[1] for _, w in CASES.values() if w[1] is not None]
    assert sums[4] == len(expected_e2e) and math.isclose(sums[3], sum(expected_e2e), rel_tol=1e-6)
    assert sums[8] == 1.0  # the largest kept E2E
