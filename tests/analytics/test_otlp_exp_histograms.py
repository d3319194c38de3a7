"""OTLP exponential histograms (issue 15 item 2): real OpenTelemetry SDK metrics with
ExponentialBucketHistogramAggregation (cumulative and delta, exemplar filter trace_based) exported over OTLP/HTTP to
a real collector into chDB — exact stored rows, heatmap counts per bucket; hand-built boundary points (scale -10 / 20
/ 21, huge offsets, Float64 max, NaN sum, negative buckets, empty buckets, times >= 2^63) stored or rejected with a
partial_success message."""

from __future__ import annotations

import itertools
import math
import random
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (ExportMetricsServiceRequest,
                                                                          ExportMetricsServiceResponse)
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import TraceBasedExemplarFilter
from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.exponent_mapping import ExponentMapping
from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.logarithm_mapping import LogarithmMapping
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from vllm_otel_collector.analytics.otlp_histograms import exp_heatmap, totals

METRIC = "gen_ai.server.time_to_first_token"
COLS = ("Scale", "ZeroCount", "PositiveOffset", "PositiveBucketCounts", "NegativeOffset", "NegativeBucketCounts",
        "Count", "Sum", "Min", "Max", "AggregationTemporality")


class _Recording(OTLPMetricExporter):
    """The real OTLP/HTTP exporter; keeps the SDK's exported points to compare with the stored rows."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.points = []

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs):
        for rm in metrics_data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    self.points.extend(m.data.data_points)
        return super().export(metrics_data, timeout_millis, **kwargs)


def _mapping(scale: int):
    return LogarithmMapping(scale) if scale > 0 else ExponentMapping(scale)


def _index_counts(rows, scale: int) -> dict:
    """Heatmap rows → {bucket index at ``scale`` (or 'zero'): count}, le converted back to an index."""
    out = {}
    for le, c in totals(rows).items():
        if c == 0:  # empty buckets (the SDK sends negative=[0]) are rows with count 0
            continue
        key = "zero" if le == 0 else "inf" if math.isinf(le) else round(math.log2(le) * 2 ** scale) - 1
        out[key] = out.get(key, 0) + c
    return out


def _expected(values, scale: int) -> dict:
    m, out = _mapping(scale), {}
    for v in values:
        key = "zero" if v == 0 else m.map_to_index(v)
        if key != "zero" and (key + 1) * 2.0 ** -scale >= 1024:  # upper bound base^(i+1) beyond Float64
            key = "inf"
        out[key] = out.get(key, 0) + 1
    return out


def _rows(store, service: str, n: int) -> list[tuple]:
    deadline = time.monotonic() + 30
    sql = (f"SELECT {', '.join(COLS)}, Exemplars.TraceId FROM otel_metrics_exponential_histogram "
           "WHERE ServiceName = {s:String} ORDER BY TimeUnix")
    while time.monotonic() < deadline:
        rows = store.query(sql, parameters={"s": service}).result_rows
        if len(rows) >= n:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"{service}: {len(rows)} of {n} exponential histogram points arrived")


@pytest.mark.parametrize("temporality", [AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA],
                         ids=["cumulative", "delta"])
def test_sdk_exponential_histograms_stored_exactly_and_become_heatmap_rows(collector, temporality):
    service = f"exp-{temporality.name.lower()}"
    exporter = _Recording(endpoint=f"http://127.0.0.1:{collector.http_port}/v1/metrics",
                          preferred_temporality={Histogram: temporality})
    provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)],
                             resource=Resource.create({"service.name": service}),
                             views=[View(instrument_name=METRIC,
                                         aggregation=ExponentialBucketHistogramAggregation(max_size=40))],
                             exemplar_filter=TraceBasedExemplarFilter())
    hist = provider.get_meter("test").create_histogram(METRIC, unit="s")
    tracer = TracerProvider().get_tracer("test")
    rnd = random.Random(7)
    t0 = time.time()
    phases, trace_ids = [], []
    for phase in range(3):
        # phase 0 narrow (high scale); later phases widen the range, so the SDK lowers the scale of the series
        values = [rnd.lognormvariate(-2.5, 0.2 + phase) for _ in range(40 + 20 * phase)] + [0.0]
        with tracer.start_as_current_span("chat m1") as span:
            hist.record(0.05, {"gen_ai.request.model": "m1"})
            trace_ids.append(format(span.get_span_context().trace_id, "032x"))
        for v in values:
            hist.record(v, {"gen_ai.request.model": "m1"})
        provider.force_flush()
        phases.append(values + [0.05])
        time.sleep(1.1)  # the next export lands in a later second
    provider.shutdown()
    rows = _rows(collector.store, service, len(exporter.points))  # cumulative: shutdown exports a 4th point
    assert len(rows) == len(exporter.points) == (4 if temporality == AggregationTemporality.CUMULATIVE else 3)
    # stored rows = the SDK's points, column by column
    for row, p in zip(rows, exporter.points):
        want = (p.scale, p.zero_count, p.positive.offset, list(p.positive.bucket_counts), p.negative.offset,
                list(p.negative.bucket_counts), p.count, p.sum, p.min, p.max, int(temporality))
        assert row[:len(COLS)] == want
    scales = [r[0] for r in rows]
    assert scales[0] > scales[-1], scales  # the series' scale went down between points
    seen = [v for p in phases for v in p]
    if temporality == AggregationTemporality.CUMULATIVE:
        assert rows[-1][6] == len(seen) and rows[-1][8] == min(seen) and rows[-1][9] == max(seen)
        assert rows[-1][7] == pytest.approx(math.fsum(seen), rel=1e-12)
    else:
        assert [r[6] for r in rows] == [len(p) for p in phases]
        assert [r[1] for r in rows] == [1, 1, 1]  # the 0.0 of each phase
    # exemplar trace ids: the recording spans' (trace_based keeps only in-span recordings)
    stored_ids = {t for r in rows for t in r[len(COLS)]}
    assert set(trace_ids) <= stored_ids and stored_ids <= set(trace_ids)

    scale, hm = exp_heatmap(collector.store, METRIC, t0 - 1, time.time() + 1, step_seconds=1, service=service)
    assert scale == min(scales)
    assert _index_counts(hm, scale) == _expected(seen, scale)  # every observation once, in its bucket
    per_time: dict[int, int] = {}
    for t, _le, c in hm:
        per_time[t] = per_time.get(t, 0) + c
    assert sorted(v for v in per_time.values() if v) == sorted(len(p) for p in phases)  # shutdown's point adds 0
    # a window after the first export: the cumulative series is differenced against the point in the lookback
    later_scale, later = exp_heatmap(collector.store, METRIC, min(per_time) + 1, time.time() + 1, step_seconds=60,
                                     service=service)
    assert _index_counts(later, later_scale) == _expected(phases[1] + phases[2], later_scale)
    # a lower output scale on request: the same observations, coarser buckets
    _s, coarse = exp_heatmap(collector.store, METRIC, t0 - 1, time.time() + 1, service=service, max_scale=-1)
    assert _s == -1 and _index_counts(coarse, -1) == _expected(seen, -1)
    with pytest.raises(ValueError, match="step_seconds must be >= 1"):
        exp_heatmap(collector.store, METRIC, t0, time.time(), step_seconds=0)
    assert exp_heatmap(collector.store, "no.such.metric", t0, time.time()) == (None, [])


def _point(m, t: int, **kw):
    pos = kw.pop("pos", (0, []))
    neg = kw.pop("neg", (0, []))
    p = m.exponential_histogram.data_points.add(time_unix_nano=t, **kw)
    p.positive.offset, p.negative.offset = pos[0], neg[0]
    p.positive.bucket_counts.extend(pos[1])
    p.negative.bucket_counts.extend(neg[1])
    return p


def test_boundary_points_are_stored_or_rejected_with_a_message(collector):
    now = time.time_ns()
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "exp-bounds"
    m = rm.scope_metrics.add().metrics.add(name="b", unit="s")
    m.exponential_histogram.aggregation_temporality = 1  # DELTA
    fmax = 1.7976931348623157e308
    _point(m, now, scale=-10, count=2, sum=fmax, min=0.0, max=fmax, pos=(0, [2]))
    _point(m, now + 1, scale=20, count=4, sum=float("nan"), zero_count=1, pos=(-2**31, [1, 0, 1]),
           neg=(2**31 - 1, [1]))
    _point(m, now + 2, scale=0, count=0)                       # empty: no buckets at all
    _point(m, now + 3, scale=0, count=3, pos=(5, [0, 0, 3]), neg=(-1, [2, 0]))  # empty buckets inside the ranges
    _point(m, now + 4, scale=21, count=1, pos=(0, [1]))        # rejected: scale beyond 20
    _point(m, now + 5, scale=-11, count=1, pos=(0, [1]))       # rejected: scale below -10
    _point(m, 2**63, scale=0, count=1)                         # rejected: time beyond DateTime64(9)
    _point(m, now + 6, start_time_unix_nano=2**64 - 1, scale=0)  # rejected: start time
    _point(m, 0, scale=0)                                      # rejected: no time
    ex = _point(m, now + 7, scale=0, count=1, pos=(0, [1])).exemplars.add(time_unix_nano=2**63, as_double=1.0)
    ex.trace_id = b"\x01" * 16
    r = httpx.post(f"http://127.0.0.1:{collector.http_port}/v1/metrics", content=req.SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    assert r.status_code == 200
    resp = ExportMetricsServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_data_points == 6
    msg = resp.partial_success.error_message
    assert "metric 'b': data point exponential histogram scale = 21 is outside -10..20" in msg
    assert "scale = -11 is outside -10..20" in msg
    assert f"time_unix_nano = {2**63} is outside 0..2^63-1 ns" in msg
    assert f"start_time_unix_nano = {2**64 - 1} is outside" in msg and "without time_unix_nano" in msg
    rows = _rows(collector.store, "exp-bounds", 4)
    assert len(rows) == 4
    assert rows[0][:len(COLS)] == (-10, 0, 0, [2], 0, [], 2, fmax, 0.0, fmax, 1)
    assert rows[1][:4] == (20, 1, -2**31, [1, 0, 1]) and rows[1][4:6] == (2**31 - 1, [1]) and math.isnan(rows[1][7])
    assert rows[2][:len(COLS)] == (0, 0, 0, [], 0, [], 0, 0.0, 0.0, 0.0, 1)
    assert rows[3][2:6] == (5, [0, 0, 3], -1, [2, 0])

    scale, hm = exp_heatmap(collector.store, "b", now / 1e9 - 1, now / 1e9 + 5, step_seconds=3600,
                            service="exp-bounds")
    assert scale == -10
    got = totals(hm)
    assert sum(got.values()) == 2 + 4 + 0 + 5  # every stored observation counted once, empty buckets as 0
    # output scale -10: base = 2^1024 overflows Float64, so positive bucket 0 has le = +inf (point 0's 2, point 3's
    # indices 5..7 >> 10 = 0); scale-20 indices -2^31..-2^31+2 >> 30 = -2, le = base^-1 = 2^-1024 (subnormal); the
    # negative bucket 2^31-1 >> 30 = 1 has le = -base^1 = -inf; point 3's negative -1, 0 -> le -2^-1024 and -1.0
    tiny = 2.0 ** -1024
    assert got == {math.inf: 5, 0.0: 1, tiny: 2, -math.inf: 1, -tiny: 2, -1.0: 0}


def test_otlp_json_exponential_histogram_with_exemplar(collector):
    now = time.time_ns()
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    doc = {"resourceMetrics": [{"resource": {"attributes": [{"key": "service.name",
                                                              "value": {"stringValue": "exp-json"}}]},
           "scopeMetrics": [{"metrics": [{"name": "j", "unit": "s", "exponentialHistogram": {
               "aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
               "dataPoints": [{"startTimeUnixNano": str(now - 10**9), "timeUnixNano": str(now), "count": "5",
                               "sum": 1.25, "scale": 2, "zeroCount": "1", "min": 0, "max": 0.9,
                               "positive": {"offset": -3, "bucketCounts": ["1", "0", "3"]},
                               "negative": {"offset": 1, "bucketCounts": []},
                               "exemplars": [{"timeUnixNano": str(now), "asDouble": 0.9, "traceId": trace_id,
                                              "spanId": span_id}]},
                              {"timeUnixNano": str(now), "scale": 40}]}}]}]}]}
    r = httpx.post(f"http://127.0.0.1:{collector.http_port}/v1/metrics", json=doc, timeout=30)
    assert r.status_code == 200
    assert r.json()["partialSuccess"] == {"rejectedDataPoints": "1", "errorMessage":
                                          "metric 'j': data point exponential histogram scale = 40 is outside -10..20"}
    rows = _rows(collector.store, "exp-json", 1)
    assert rows == [(2, 1, -3, [1, 0, 3], 1, [], 5, 1.25, 0.0, 0.9, 2, [trace_id])]
    # a cumulative series that started inside the window counts whole: bucket -3 at scale 2 has le 2^(-2/4)
    scale, hm = exp_heatmap(collector.store, "j", now / 1e9 - 5, now / 1e9 + 5, service="exp-json")
    assert scale == 2 and totals(hm) == {0.0: 1, 2 ** -0.5: 1, 2 ** -0.25: 0, 1.0: 3}


_SEQ = itertools.count()


def _sdk_point(m, t: int, start: int, values, scale: int):
    """A cumulative point at ``scale`` holding ``values`` (> 0), buckets from the SDK's index mapping."""
    idx = [_mapping(scale).map_to_index(v) for v in values]
    counts = [0] * (max(idx) - min(idx) + 1)
    for i in idx:
        counts[i - min(idx)] += 1
    return _point(m, t, start_time_unix_nano=start, scale=scale, count=len(values), pos=(min(idx), counts))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(st.floats(1e-4, 1e4), min_size=1, max_size=20),
       more=st.lists(st.floats(1e-4, 1e4), max_size=20),
       s1=st.integers(-10, 8), drop=st.integers(0, 18))  # scale 20 over 1e-4..1e4 = 28M buckets
def test_scale_change_within_a_cumulative_series_is_differenced_at_one_scale(store, first, more, s1, drop):
    """Two cumulative points of one series, the second at a lower (or equal) scale: the heatmap at the smaller scale
    has every observation once in its bucket (converter -> chDB -> exp_heatmap)."""
    from vllm_otel_collector.otlp.metrics import convert_metrics

    s2 = max(-10, s1 - drop)
    t = 1_700_000_000 * 10**9
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add(name=f"p{next(_SEQ)}")
    m.exponential_histogram.aggregation_temporality = 2
    _sdk_point(m, t + 10**9, t, first, s1)
    _sdk_point(m, t + 2 * 10**9, t, first + more, s2)
    batch = convert_metrics(req)
    assert batch.rejected == 0
    for table, cols in batch.inserts():
        store.insert(table, cols)
    scale, hm = exp_heatmap(store, m.name, t / 1e9, t / 1e9 + 10, step_seconds=1)
    assert scale == s2
    assert _index_counts(hm, s2) == _expected(first + more, s2)
    assert sum(c for ts, _le, c in hm if ts == t // 10**9 + 2) == len(more)
