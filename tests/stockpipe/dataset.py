"""One realistic serving dataset as raw OTLP request bodies — what a vLLM fleet sends to any collector — and the
helpers that store it the two ways: through our collector, and the way the contrib clickhouseexporter inserts it.

Traces: 150 request spans over 90 minutes exported by the OpenTelemetry SDK (``tests/views/data.py``'s serving
mix: errors, aborts, timeouts, cached prompts), vLLM native ``llm_request`` spans, voice-pipeline spans with duration
thresholds, two model-load traces split over processes and batches, and request spans with hostile (finite) values.
Metrics: KV-cache/running/waiting gauges, a TTFT histogram with exemplars, an exponential histogram, process memory.
"""

from __future__ import annotations

import time

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as M
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from opentelemetry.instrumentation.vllm import semconv as sc
from vllm_otel_collector.receivers.consumer import METRICS, TRACES

from . import contrib_exporter as X
from .spans import body, load_body, make_span, request_attrs

MODEL = "SmolLM2-135M-Instruct"

#: Hostile but finite attribute values (a NaN/Inf double cannot cross the exporter's JSON mode: test_hostile.py).
HOSTILE = {
    "tokens-2^63": {sc.USAGE_OUTPUT_TOKENS: 2**63 - 1},
    "tokens-negative": {sc.USAGE_OUTPUT_TOKENS: -5, sc.USAGE_INPUT_TOKENS: -(2**63)},
    "tokens-string-inf": {sc.USAGE_OUTPUT_TOKENS: "inf", sc.USAGE_CACHE_READ_INPUT_TOKENS: "NaN"},
    "tokens-huge-string": {sc.USAGE_OUTPUT_TOKENS: "9" * 5000, sc.VLLM_NUM_PREEMPTIONS: "1e300"},
    "tokens-bool": {sc.USAGE_OUTPUT_TOKENS: True, sc.USAGE_INPUT_TOKENS: [1, 2]},
    "latency-above-float32": {sc.LATENCY_E2E: 3.5e38, sc.LATENCY_TTFT: 1e308},
    "latency-negative": {sc.LATENCY_E2E: -1.0, sc.LATENCY_QUEUE: -0.0},
    "latency-strings": {sc.LATENCY_TTFT: "abc", sc.LATENCY_DECODE: "", sc.LATENCY_PREFILL: "1_000"},
    "latency-tiny": {sc.LATENCY_E2E: 5e-324, sc.LATENCY_TTFT: 0.0, sc.VLLM_TOKENS_PER_SECOND: None},
    "ttft-over-e2e": {sc.LATENCY_TTFT: 9.0},
    "empty-strings": {sc.VLLM_FINISH_REASON: "", sc.RESPONSE_FINISH_REASONS: [], sc.RESPONSE_MODEL: ""},
    # 16,384 characters: the longest value our collector keeps whole (Limits.max_value_chars); beyond it our
    # collector truncates and the exporter does not (test_hostile.py)
    "huge-model-name": {sc.RESPONSE_MODEL: "m" * 16384, sc.VLLM_LORA_NAME: "\u2028<&>\u0000"},
}


def hold_baselines(store) -> None:
    """Stop ClickHouse's baseline refresh (migration 0134) in ``store`` and set one fixed baseline for :data:`MODEL`:
    both pipelines then derive causes against the same baseline whenever their inserts happen (a refresh between
    the two sides' inserts would change one side's causes only), and the baseline rules are part of the comparison."""
    store.command("SYSTEM STOP VIEW llm_baselines_mv")
    store.command("TRUNCATE TABLE llm_baselines")
    store.insert("llm_baselines", {"Model": [MODEL], "PromptBucket": [255], "Requests": [50], "Queue": [0.05],
                                   "Prefill": [0.1], "TPOT": [0.02], "Until": [int(time.time())]})


def _sdk_request_bodies(now: int, n: int = 150, span_s: int = 90 * 60, per_body: int = 40) -> list[bytes]:
    """The views' serving mix as SDK spans, encoded by the SDK's OTLP encoder ``per_body`` spans per request."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    from views.data import _requests

    exporter = InMemorySpanExporter()
    tp = TracerProvider(resource=SdkResource.create({"service.name": "vllm", "host.name": "gpu-7"}))
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tp.get_tracer("opentelemetry.instrumentation.vllm", "0.1.0")
    for spec in _requests(now, n, span_s, seed=7):
        span = tracer.start_span(f"chat {MODEL}", kind=SpanKind.SERVER, attributes=spec["attrs"],
                                 start_time=int(spec["ts"] * 1e9))
        span.add_event(sc.EVENT_FIRST_TOKEN,
                       {"gen_ai.usage.output_tokens": 1}, timestamp=int(spec["ts"] * 1e9) + 1000)
        if spec["failed"]:
            span.set_status(Status(StatusCode.ERROR, "engine died"))
        span.end(end_time=int((spec["ts"] + spec["e2e"]) * 1e9))
    spans = exporter.get_finished_spans()
    tp.shutdown()
    return [encode_spans(spans[i:i + per_body]).SerializeToString() for i in range(0, len(spans), per_body)]


def trace_bodies(now: int, hostile: bool = True) -> list[bytes]:
    """Every trace request of the dataset (deterministic for a given ``now``, unix seconds)."""
    start_ns = (now - 90 * 60) * 10**9
    out = _sdk_request_bodies(now)
    native = {sc.NATIVE_LATENCY_TTFT: 0.3, sc.NATIVE_LATENCY_E2E: 1.3, sc.NATIVE_LATENCY_QUEUE: 0.02,
              sc.NATIVE_LATENCY_PREFILL: 0.28, sc.NATIVE_LATENCY_DECODE: 1.0, sc.NATIVE_USAGE_PROMPT_TOKENS: 7,
              sc.NATIVE_USAGE_COMPLETION_TOKENS: 11}
    out.append(body([make_span("llm_request", f"native{i}", start_ns + i * 60 * 10**9, 13 * 10**8, native)
                     for i in range(5)], scope="vllm.v1.engine.output_processor"))
    out.append(body([make_span(name, f"voice{i}{name}", start_ns + i * 10**10, int(d * 1e9), kind=1)
                     for i in range(4) for name, d in (("stt_processing", 0.2 + i * 0.2),
                                                      ("llm_response", 0.5 * (i + 1)), ("tts_synthesis", 0.3))],
                    service="voice-agent", scope="voice"))
    load_a, load_b = "a1" * 16, "b2" * 16
    first, second = load_body(load_a, start_ns + 30 * 10**9), load_body(load_b, start_ns + 3000 * 10**9)
    # one load's spans in two requests (processes export separately), the other in one
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest.FromString(first)
    spans = list(req.resource_spans[0].scope_spans[0].spans)
    out += [body(spans[:1], scope="vllm.v1.engine.core_client"), body(spans[1:], service="vllm-engine",
                                                                       scope="vllm.v1.engine.core"), second]
    if hostile:
        out.append(body([make_span(f"chat {MODEL}", f"hostile-{name}", start_ns + k * 10**9, 10**9,
                                   request_attrs(MODEL, **attrs)) for k, (name, attrs) in enumerate(HOSTILE.items())]))
    return out


def _kv(key: str, value) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def metric_bodies(now: int, step: int = 15) -> list[bytes]:
    """Gauges every ``step`` s over the 90 minutes, a cumulative TTFT histogram with exemplars every minute, an
    exponential histogram, process memory above the 4 GiB alert threshold."""
    start = now - 90 * 60
    times = list(range(start, now, step))
    gauges = [M.Metric(name=name, gauge=M.Gauge(data_points=[
        M.NumberDataPoint(time_unix_nano=t * 10**9, as_double=f(k), attributes=[_kv(sc.REQUEST_MODEL, MODEL)])
        for k, t in enumerate(times)]))
        for name, f in ((sc.METRIC_KV_CACHE_USAGE, lambda k: 0.1 + 0.6 * ((k % 40) / 40)),
                        (sc.METRIC_RUNNING, lambda k: float(k % 5)), (sc.METRIC_WAITING, lambda k: float(k // 3 % 3)))]
    bounds = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
    minutes = list(range(start, now, 60))
    hist = M.Metric(name="gen_ai.server.time_to_first_token", unit="s", histogram=M.Histogram(
        aggregation_temporality=M.AGGREGATION_TEMPORALITY_CUMULATIVE, data_points=[
            M.HistogramDataPoint(start_time_unix_nano=start * 10**9, time_unix_nano=t * 10**9, count=7 * (k + 1),
                                 sum=1.5 * (k + 1), explicit_bounds=bounds,
                                 bucket_counts=[k + 1, k + 1, 2 * (k + 1), k + 1, k + 1, k + 1, 0],
                                 attributes=[_kv(sc.REQUEST_MODEL, MODEL)], min=0.01, max=2.0,
                                 exemplars=[M.Exemplar(time_unix_nano=t * 10**9 - 5 * 10**8, as_double=0.3 + k / 1000,
                                                       trace_id=bytes([k % 250 + 1]) * 16,
                                                       span_id=bytes([k % 250 + 1]) * 8)])
            for k, t in enumerate(minutes)]))
    exp = M.Metric(name="vllm.request.e2e", unit="s", exponential_histogram=M.ExponentialHistogram(
        aggregation_temporality=M.AGGREGATION_TEMPORALITY_DELTA, data_points=[
            M.ExponentialHistogramDataPoint(start_time_unix_nano=(t - 60) * 10**9, time_unix_nano=t * 10**9, count=6,
                                            sum=4.5, scale=3, zero_count=1,
                                            positive=M.ExponentialHistogramDataPoint.Buckets(offset=-2,
                                                                                            bucket_counts=[1, 2, 0, 2]))
            for t in minutes]))
    memory = M.Metric(name="process.memory.usage", unit="By", sum=M.Sum(
        aggregation_temporality=M.AGGREGATION_TEMPORALITY_CUMULATIVE, is_monotonic=False, data_points=[
            M.NumberDataPoint(start_time_unix_nano=start * 10**9, time_unix_nano=t * 10**9, as_int=5 * 2**30)
            for t in minutes[-10:]]))
    req = ExportMetricsServiceRequest(resource_metrics=[M.ResourceMetrics(
        resource=Resource(attributes=[_kv("service.name", "vllm"), _kv("process.pid", 4242)]),
        scope_metrics=[M.ScopeMetrics(metrics=gauges + [hist, exp, memory])])])
    return [req.SerializeToString()]


# -- the two ways in ------------------------------------------------------------------------------------------------
def through_our_collector(collector, traces: list[bytes], metrics: list[bytes]) -> None:
    """Hand every body to a running collector's pipeline (as its receivers do) and wait until all is written."""
    for b in traces:
        collector.pipeline.consume(TRACES, b)
    for b in metrics:
        collector.pipeline.consume(METRICS, b)
    assert collector.drain(60)


def through_the_exporter(store, traces: list[bytes], metrics: list[bytes], json_mode: bool = False,
                         spellings: str = "current", tables: dict | None = None) -> None:
    """Insert every body as the contrib clickhouseexporter would (its rows, its Native blocks of varying size)."""
    names = {"traces": "otel_traces", "gauge": "otel_metrics_gauge", "sum": "otel_metrics_sum",
             "histogram": "otel_metrics_histogram", "exponential_histogram": "otel_metrics_exponential_histogram",
             **(tables or {})}
    rows = [r for b in traces for r in X.trace_rows(b, json_mode=json_mode, spellings=spellings)]
    X.insert_traces(store, names["traces"], rows)
    merged: dict[str, list] = {}
    for b in metrics:
        for kind, r in X.metric_rows(b, json_mode=json_mode).items():
            merged.setdefault(kind, []).extend(r)
    X.insert_metrics(store, names, merged)


def now_s() -> int:
    return int(time.time())
