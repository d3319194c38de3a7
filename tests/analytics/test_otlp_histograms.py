"""OTLP histograms as heatmap rows (issue 15 item 2) and their exemplars (item 3, collector side): real
OpenTelemetry SDK metrics (explicit-bucket histograms, cumulative and delta temporality, exemplar filter
trace_based) exported over OTLP/HTTP to a real collector into chDB."""

from __future__ import annotations

import bisect
import random
import time

import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

from vllm_otel_collector.analytics.otlp_histograms import heatmap, totals

BOUNDS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]  # the GenAI semconv's TTFT advice, shortened
METRIC = "gen_ai.server.time_to_first_token"


def _provider(port: int, service: str, temporality: AggregationTemporality) -> MeterProvider:
    exporter = OTLPMetricExporter(endpoint=f"http://127.0.0.1:{port}/v1/metrics",
                                  preferred_temporality={Histogram: temporality})
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": service}),
                         views=[View(instrument_name=METRIC,
                                     aggregation=ExplicitBucketHistogramAggregation(BOUNDS))],
                         exemplar_filter=TraceBasedExemplarFilter())


def _expected(values: list[float]) -> dict[float, int]:
    out = {le: 0 for le in BOUNDS + [float("inf")]}
    for v in values:
        out[(BOUNDS + [float("inf")])[bisect.bisect_left(BOUNDS, v)]] += 1  # (prev, le]: bisect_left
    return out


def _wait_points(store, service: str, n: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = store.query("SELECT count() FROM otel_metrics_histogram WHERE ServiceName = {s:String}",
                          parameters={"s": service}).result_rows[0][0]
        if got >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"{service}: {got} of {n} histogram points arrived")


@pytest.mark.parametrize("temporality", [AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA],
                         ids=["cumulative", "delta"])
def test_sdk_histograms_become_heatmap_rows(collector, temporality):
    service = f"hist-{temporality.name.lower()}"
    provider = _provider(collector.http_port, service, temporality)
    hist = provider.get_meter("test").create_histogram(METRIC, unit="s")
    rnd = random.Random(11)
    t0 = time.time()
    phases = []
    for phase in range(3):  # three exports; the cumulative ones repeat earlier counts that must not be re-counted
        values = [rnd.lognormvariate(-2.5, 1.0) for _ in range(50 + 25 * phase)] + [0.01, 2.5, 0.0, 30.0]
        for v in values:
            hist.record(v, {"gen_ai.request.model": "m1"})
        provider.force_flush()
        phases.append(values)
        time.sleep(1.1)  # the next export lands in a later second
    provider.shutdown()
    _wait_points(collector.store, service, 3)
    temporal = collector.store.query(
        "SELECT DISTINCT AggregationTemporality FROM otel_metrics_histogram WHERE ServiceName = {s:String}",
        parameters={"s": service}).result_rows
    assert temporal == [(2 if temporality == AggregationTemporality.CUMULATIVE else 1,)]

    since, until = t0 - 1, time.time() + 1
    rows = heatmap(collector.store, METRIC, since, until, step_seconds=1, service=service)
    all_values = [v for p in phases for v in p]
    # every observation once, in its (previous bound, le] bucket — not the cumulative totals of every export
    assert totals(rows) == _expected(all_values)
    assert sum(c for _t, _le, c in rows) == len(all_values) == 50 + 75 + 100 + 12
    # per time bucket: three exports in three different seconds, each holding its own phase's observations
    per_time: dict[int, int] = {}
    for t, _le, c in rows:
        per_time[t] = per_time.get(t, 0) + c
    assert sorted(per_time.values()) == sorted(len(p) for p in phases)
    # a window that starts after the first export: a cumulative series that began before it is differenced against
    # the point in the lookback, so only the later phases count
    first_export = min(per_time)
    later = heatmap(collector.store, METRIC, first_export + 1, until, step_seconds=60, service=service)
    assert totals(later) == _expected(phases[1] + phases[2])
    with pytest.raises(ValueError, match="step_seconds must be >= 1"):
        heatmap(collector.store, METRIC, since, until, step_seconds=0)


def test_exemplars_carry_the_trace_of_the_recording_span(collector):
    service = "hist-exemplars"
    provider = _provider(collector.http_port, service, AggregationTemporality.DELTA)
    hist = provider.get_meter("test").create_histogram(METRIC, unit="s")
    tracer = TracerProvider().get_tracer("test")
    trace_ids = set()
    for v in (0.02, 0.3, 1.7):
        with tracer.start_as_current_span("chat m1") as span:
            hist.record(v, {"gen_ai.request.model": "m1"})
            trace_ids.add(format(span.get_span_context().trace_id, "032x"))
    hist.record(0.04, {"gen_ai.request.model": "m1"})  # outside a span: trace_based keeps no exemplar for it
    provider.force_flush()
    provider.shutdown()
    _wait_points(collector.store, service, 1)
    rows = collector.store.query(
        "SELECT ex.TraceId, ex.SpanId, ex.Value FROM otel_metrics_histogram ARRAY JOIN Exemplars AS ex "
        "WHERE ServiceName = {s:String} ORDER BY ex.Value", parameters={"s": service}).result_rows
    assert {r[0] for r in rows} == trace_ids and all(len(r[1]) == 16 for r in rows)
    assert [r[2] for r in rows] == [0.02, 0.3, 1.7]
