"""Hostile attributes through the exporter's path: no value may make the materialized views throw (an exception fails
the exporter's whole INSERT, which it then retries and may duplicate). Every insert below must succeed, every
request span of the block must get its row, and the other spans of the block must be stored and derived."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from opentelemetry.instrumentation.vllm import semconv as sc
from vllm_otel_collector.install import install

from . import contrib_exporter as X
from .spans import T0, body, load_body, make_span, request_attrs

INF, NAN = float("inf"), float("nan")
NUMERIC_KEYS = [sc.LATENCY_TTFT, sc.LATENCY_E2E, sc.LATENCY_QUEUE, sc.LATENCY_PREFILL, sc.LATENCY_DECODE,
                sc.LATENCY_TPOT, sc.NATIVE_LATENCY_TTFT, sc.NATIVE_LATENCY_E2E, sc.USAGE_INPUT_TOKENS,
                sc.USAGE_OUTPUT_TOKENS, sc.USAGE_CACHE_READ_INPUT_TOKENS, sc.VLLM_NUM_PREEMPTIONS,
                sc.VLLM_TOKENS_PER_SECOND, sc.NATIVE_USAGE_PROMPT_TOKENS, sc.NATIVE_USAGE_COMPLETION_TOKENS,
                sc.VLLM_ARRIVAL_RUNNING, sc.VLLM_ARRIVAL_WAITING, sc.VLLM_ARRIVAL_KV_CACHE_USAGE]
TEXT_KEYS = [sc.VLLM_FINISH_REASON, sc.RESPONSE_FINISH_REASONS, sc.RESPONSE_MODEL, sc.REQUEST_MODEL,
             sc.OPERATION_NAME, sc.ERROR_TYPE, sc.VLLM_LORA_NAME, sc.VLLM_REQUEST_ID]
LOAD_KEYS = [sc.LOAD_TOTAL_SECONDS, sc.LOAD_WEIGHTS_BYTES, sc.LOAD_TP_SIZE, sc.LOAD_KV_BLOCKS,
             sc.LOAD_COMPILE_CACHE_HIT, sc.LOAD_MEMORY_PEAK, sc.LOAD_COLD_START_SECONDS,
             sc.LOAD_COMPILE_CACHE_FALLBACK_REASON]
#: Values the poison tests (tests/collector/test_poison.py, test_hardening_*) use, typed as OTLP values.
CORPUS = [0, -1, 2**63 - 1, -(2**63), 2**32, 2**32 - 1, 65536, 0.0, -0.0, 1e-320, 5e-324, 3.4028234663852886e38,
          3.5e38, 1.7976931348623157e308, -1e308, "", "0", "-1", "abc", "inf", "-Infinity", "nan", "NaN", "1e400",
          "18446744073709551616", "9" * 5000, " 12", "12 ", "0x10", "1_000", True, False, [], ["stop"], [1, 2.5],
          b"\x00\xff", "\u0000", "'\"[]()", "x" * 100_000]


def _store_setup(store, make_config, json_mode: bool):
    X.create_exporter_tables(store, json_mode=json_mode)
    install(store, make_config(store))


def _ok_span(n: int):
    return make_span("chat m-ok", f"ok{n}", T0 + n, 10**9, request_attrs())


@pytest.mark.parametrize("json_mode", [False, True])
def test_the_poison_corpus_never_fails_an_insert(empty_store, make_config, json_mode):
    _store_setup(empty_store, make_config, json_mode)
    spans = [_ok_span(0)]
    for i, value in enumerate(CORPUS):
        for key in NUMERIC_KEYS + TEXT_KEYS:
            spans.append(make_span("chat m", f"p{i}{key}", T0 + i, 10**9, request_attrs(**{key: value})))
    spans += [make_span("stt_processing", "voice", T0, 2 * 10**9)]
    spans += [make_span("Load model", f"l{i}", T0, 10**9, {k: v for k in LOAD_KEYS}, trace="cd" * 16)
              for i, v in enumerate(CORPUS)]
    spans += [make_span("Overall Loading", "root", T0, 10**9, {sc.LOAD_TOTAL_SECONDS: "1e999"}, trace="cd" * 16)]
    rows = X.trace_rows(body(spans), json_mode=json_mode)
    X.insert_traces(empty_store, "otel_traces", rows, block_sizes=(len(rows),))  # one block: one INSERT
    n_requests = 1 + len(CORPUS) * len(NUMERIC_KEYS + TEXT_KEYS)
    got = empty_store.query("SELECT (SELECT count() FROM otel_traces), (SELECT count() FROM llm_requests), "
                            "(SELECT count() FROM span_levels), (SELECT count() FROM llm_startup_spans)").result_rows
    assert got == [(len(spans), n_requests, 1, len(CORPUS) + 1)]
    from vllm_otel_collector.analytics.loads import assemble

    assert assemble(empty_store, 4e9, settle_seconds=0, lookback_seconds=4e9) == 1
    sums = empty_store.query("SELECT sum(TTFTSum), sum(E2ESum), sum(TPOTSum), sum(TokensPerSecondSum), "
                             "max(E2EMax), sum(Requests) FROM llm_requests_1m").result_rows[0]
    assert all(math.isfinite(v) for v in sums) and sums[-1] == n_requests
    ok = empty_store.query("SELECT TTFT, E2E, OutputTokens, Status FROM llm_requests WHERE SpanId = {s:String}",
                           parameters={"s": rows[0][2]}).result_rows
    assert ok == [(0.25, 1.5, 20, "ok")]


def test_non_finite_doubles_reach_map_tables_but_fail_the_json_exporter_push(empty_store, make_config, our_collector):
    """The exporter writes NaN/±Inf doubles as ``json: unsupported value: NaN`` in Map mode (our views read NULL;
    our collector stores the same text, so both pipelines derive the same rows), while its JSON mode cannot marshal
    them and fails the push (nothing reaches ClickHouse: the exporter's own limit, documented in
    docs/scale-out.md)."""
    from .dataset import through_our_collector

    _store_setup(empty_store, make_config, False)
    spans = [make_span("chat m", f"nf{i}", T0, 10**9, request_attrs(**{
        sc.LATENCY_E2E: v, sc.USAGE_OUTPUT_TOKENS: v, sc.VLLM_TOKENS_PER_SECOND: None})) for i, v in enumerate((NAN, INF, -INF))]
    rows = X.trace_rows(body(spans))
    assert {r[11][sc.LATENCY_E2E] for r in rows} == {"json: unsupported value: NaN", "json: unsupported value: +Inf",
                                                    "json: unsupported value: -Inf"}
    X.insert_traces(empty_store, "otel_traces", rows)
    through_our_collector(our_collector, [body(spans)], [])
    for store in (empty_store, our_collector.store):
        got = store.query("SELECT E2E, OutputTokens, TokensPerSecond FROM llm_requests")
        assert got.result_rows == [(None, 0, None)] * 3
    with pytest.raises(X.ExportFailed):
        X.trace_rows(body(spans), json_mode=True)


def test_values_beyond_our_collectors_limit_are_truncated_by_it_and_not_by_the_exporter(empty_store, make_config,
                                                                                       our_collector):
    """The one intended difference between the two pipelines: our collector keeps the first 16,384 characters of a
    value (Limits.max_value_chars, issue 12), the exporter stores it whole."""
    from .dataset import through_our_collector

    _store_setup(empty_store, make_config, False)
    spans = body([make_span("chat m", "long", T0, 10**9, request_attrs(**{sc.RESPONSE_MODEL: "m" * 20000}))])
    X.insert_traces(empty_store, "otel_traces", X.trace_rows(spans))
    through_our_collector(our_collector, [spans], [])
    theirs = empty_store.query("SELECT length(Model) FROM llm_requests").result_rows
    ours = our_collector.store.query("SELECT length(Model) FROM llm_requests").result_rows
    assert (theirs, ours) == ([(20000,)], [(16384,)])


_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
    st.text(max_size=40), st.sampled_from(["inf", "nan", "", "1e999", "-0", "1" * 400]),
    st.lists(st.one_of(st.text(max_size=8), st.integers(-5, 5)), max_size=3))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attrs=st.lists(st.dictionaries(st.sampled_from(NUMERIC_KEYS + TEXT_KEYS), _values, min_size=1, max_size=8),
                      min_size=1, max_size=6),
       json_mode=st.booleans())
def test_any_attribute_values_never_fail_the_insert_and_nothing_is_lost(hostile_stores, attrs, json_mode):
    store = hostile_stores[json_mode]
    before = store.query("SELECT (SELECT count() FROM otel_traces), (SELECT count() FROM llm_requests)").result_rows[0]
    spans = [_ok_span(0)] + [make_span("chat m", f"h{i}{sorted(a)}{before}", T0 + i, 10**9, request_attrs(**a))
                             for i, a in enumerate(attrs)] + [make_span("http GET", f"other{before}", T0, 10**6)]
    rows = X.trace_rows(body(spans), json_mode=json_mode)
    X.insert_traces(store, "otel_traces", rows, block_sizes=(len(rows),))
    after = store.query("SELECT (SELECT count() FROM otel_traces), (SELECT count() FROM llm_requests)").result_rows[0]
    assert after == (before[0] + len(spans), before[1] + len(spans) - 1)


@pytest.fixture(scope="module")
def hostile_stores():
    """``{False: map store, True: json store}`` with exporter tables and the analytics installed (module scope:
    Hypothesis examples accumulate rows; each example checks only its own increments)."""
    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.store.testing import drop_store, fresh_store, shared_chdb_path

    out = {}
    for json_mode in (False, True):
        s = fresh_store("sp_hostile", apply_migrations=False)
        X.create_exporter_tables(s, json_mode=json_mode)
        install(s, load_config(None, clickhouse=f"chdb://{shared_chdb_path()}", database=s.database))
        out[json_mode] = s
    yield out
    for s in out.values():
        drop_store(s)


def test_a_load_trace_with_hostile_values_assembles_one_row(empty_store, make_config):
    _store_setup(empty_store, make_config, False)
    X.insert_traces(empty_store, "otel_traces", X.trace_rows(load_body("ee" * 16)))
    from vllm_otel_collector.analytics.loads import assemble

    assert assemble(empty_store, 4e9, settle_seconds=0, lookback_seconds=4e9) == 1
