"""A realistic hour and a half of serving, sent through a real collector, for the dashboard, report and top tests.

Request spans are exported with the OpenTelemetry SDK over OTLP/HTTP to a running collector whose analytics plug-in
derives ``llm_requests`` (materialized views fill the 1m/1h rollups) and stores ``otel_traces``; KV cache and
running/waiting gauges go over OTLP/HTTP (protobuf, explicit timestamps) into ``otel_metrics_gauge``. Model loads and
alert transitions are written directly (their producers need engine-start traces and elapsed wall time).
Deterministic (seeded) values, plus :data:`SLOW`: requests built to miss one SLO each (one per slow cause); trace ids
are the SDK's.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from opentelemetry.instrumentation.vllm import semconv as sc

MODEL = "SmolLM2-135M-Instruct"


#: Requests that miss exactly one default SLO (TTFT 2 s or TPOT 0.1 s: the level thresholds, no analytics.slos), so
#: their Cause follows from the SLO rules alone (migration 0134; baselines only rank requests that miss both or none):
#: (offset in the window (s), expected cause, queue, prefill, TPOT, output tokens, preemptions, running, waiting, KV).
SLOW = [
    (700, "queued", 2.4, 0.1, 0.01, 32, 0, 14, 9, 0.97),
    (2100, "queued", 2.05, 0.3, 0.012, 24, 0, 12, 6, 0.91),
    (2900, "prefill", 0.05, 2.2, 0.01, 40, 0, 3, 0, 0.35),
    (3500, "decode", 0.01, 0.1, 0.15, 40, 0, 9, 1, 0.62),
    (4300, "preempted", 0.1, 2.1, 0.02, 30, 2, 16, 11, 0.99),
    (5200, "decode", 0.02, 0.12, 0.12, 20, 0, 8, 0, 0.58),  # within `top`'s last 600 s
]


@dataclass
class Filled:
    """What :func:`fill` wrote: ``now`` and ``start`` in unix seconds, request count, the slowest request's trace,
    statuses as stored, and the trace id → expected cause of the :data:`SLOW` requests."""

    now: int
    start: int
    requests: int
    slowest_trace: str
    statuses: dict[str, int] = field(default_factory=dict)
    slow: dict[str, str] = field(default_factory=dict)


def _requests(now: int, n: int, span_s: int, seed: int) -> list[dict]:
    """``n`` request specs spread over ``[now - span_s, now)``: start (unix s), e2e (s), attributes, failed."""
    rng = random.Random(seed)
    start = now - span_s
    out = []
    for i in range(n):
        ts = start + (i + 0.5) * span_s / n
        queue = rng.uniform(0.001, 0.05) * (8 if i % 37 == 5 else 1)
        prefill = rng.uniform(0.02, 0.2)
        n_out = rng.randint(16, 128)
        tpot = rng.uniform(0.004, 0.02) * (4 if i % 29 == 3 else 1)
        decode = tpot * (n_out - 1)
        ttft = queue + prefill
        e2e = ttft + decode
        finish = "stop" if i % 5 else "length"
        if i % 41 == 7:
            finish = sc.FINISH_ERROR
        elif i % 43 == 11:
            finish = sc.FINISH_ABORT
        elif i % 47 == 13:
            finish = sc.FINISH_TIMEOUT
        attrs = {sc.OPERATION_NAME: "chat", sc.REQUEST_MODEL: MODEL, sc.RESPONSE_MODEL: MODEL,
                 sc.LATENCY_TTFT: ttft, sc.LATENCY_E2E: e2e, sc.LATENCY_QUEUE: queue, sc.LATENCY_PREFILL: prefill,
                 sc.LATENCY_DECODE: decode, sc.LATENCY_TPOT: tpot, sc.USAGE_INPUT_TOKENS: rng.randint(20, 400),
                 sc.USAGE_OUTPUT_TOKENS: n_out, sc.VLLM_FINISH_REASON: finish,
                 sc.USAGE_CACHE_READ_INPUT_TOKENS: 16 if i % 3 == 0 else 0}
        if finish == sc.FINISH_ERROR:
            attrs[sc.ERROR_TYPE] = "EngineDeadError"
        out.append({"ts": ts, "e2e": e2e, "attrs": attrs, "failed": finish == sc.FINISH_ERROR})
    return out


def _slow_requests(start: int) -> list[dict]:
    """The :data:`SLOW` requests as specs (status ok, finish "stop", every latency attribute set)."""
    out = []
    for offset, cause, queue, prefill, tpot, n_out, preempted, running, waiting, kv in SLOW:
        decode = tpot * (n_out - 1)
        attrs = {sc.OPERATION_NAME: "chat", sc.REQUEST_MODEL: MODEL, sc.RESPONSE_MODEL: MODEL,
                 sc.LATENCY_TTFT: queue + prefill, sc.LATENCY_E2E: queue + prefill + decode, sc.LATENCY_QUEUE: queue,
                 sc.LATENCY_PREFILL: prefill, sc.LATENCY_DECODE: decode, sc.LATENCY_TPOT: tpot,
                 sc.USAGE_INPUT_TOKENS: 256, sc.USAGE_OUTPUT_TOKENS: n_out, sc.VLLM_FINISH_REASON: "stop",
                 sc.USAGE_CACHE_READ_INPUT_TOKENS: 64, sc.VLLM_NUM_PREEMPTIONS: preempted,
                 sc.VLLM_ARRIVAL_RUNNING: running, sc.VLLM_ARRIVAL_WAITING: waiting, sc.VLLM_ARRIVAL_KV_CACHE_USAGE: kv}
        out.append({"ts": start + offset + 0.25, "e2e": queue + prefill + decode, "attrs": attrs, "failed": False,
                    "cause": cause})
    return out


def send_spans(http_port: int, specs: list[dict]) -> list[str]:
    """Export one SERVER span per spec with the OpenTelemetry SDK over OTLP/HTTP; returns the trace ids."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    tp = TracerProvider(resource=Resource.create({"service.name": "vllm", "host.name": "test"}))
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/traces")))
    tracer = tp.get_tracer("tests.views")
    ids = []
    for spec in specs:
        span = tracer.start_span(f"chat {MODEL}", kind=SpanKind.SERVER, attributes=spec["attrs"],
                                 start_time=int(spec["ts"] * 1e9))
        if spec["failed"]:
            span.set_status(Status(StatusCode.ERROR, "engine died"))
        span.end(end_time=int((spec["ts"] + spec["e2e"]) * 1e9))
        ids.append(f"{span.get_span_context().trace_id:032x}")
    tp.shutdown()
    return ids


def send_gauges(http_port: int, start: int, now: int, step: int = 15) -> int:
    """POST KV-cache-usage / running / waiting gauge points every ``step`` s as OTLP/HTTP protobuf (explicit times).
    Returns the number of points per metric."""
    import httpx
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    times = list(range(start, now, step))
    series = {"vllm.kv_cache.usage": [0.1 + 0.6 * ((k % 40) / 40) for k in range(len(times))],
              "vllm.requests.running": [float(k % 5) for k in range(len(times))],
              "vllm.requests.waiting": [float((k // 3) % 3) for k in range(len(times))]}
    metrics = [Metric(name=name, gauge=Gauge(data_points=[NumberDataPoint(time_unix_nano=t * 10**9, as_double=v)
                                                          for t, v in zip(times, vals)]))
               for name, vals in series.items()]
    req = ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="vllm"))]),
        scope_metrics=[ScopeMetrics(metrics=metrics)])])
    resp = httpx.post(f"http://127.0.0.1:{http_port}/v1/metrics", content=req.SerializeToString(),
                      headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    resp.raise_for_status()
    return len(times)


def wait_for(store, sql: str, expected, timeout_s: float = 60.0) -> None:
    """Poll ``sql`` until its single value equals ``expected`` (the collector writes in batches)."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = store.query(sql).result_rows[0][0]
        if value == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"{sql}: {value} != {expected} after {timeout_s} s")


def fill(collector, now: int, n_requests: int = 150, span_s: int = 90 * 60, seed: int = 7) -> Filled:
    """Send the dataset (``n_requests`` seeded requests + :data:`SLOW`) to a running :class:`Collector` (spans +
    gauges over OTLP/HTTP, derived by its analytics plug-in), then write model loads and alert transitions into its
    store."""
    store = collector.store
    start = now - span_s
    specs = _requests(now, n_requests, span_s, seed) + _slow_requests(start)
    n_requests = len(specs)
    trace_ids = send_spans(collector.http_port, specs)
    points = send_gauges(collector.http_port, start, now)
    wait_for(store, "SELECT count() FROM llm_requests", n_requests)
    wait_for(store, "SELECT count() FROM otel_metrics_gauge", 3 * points)
    slowest = trace_ids[max(range(n_requests), key=lambda i: specs[i]["e2e"])]
    slow = {tid: spec["cause"] for tid, spec in zip(trace_ids, specs) if "cause" in spec}
    statuses = dict(store.query("SELECT toString(Status), count() FROM llm_requests GROUP BY 1").result_rows)

    loads = [(start + 30, 41.5, 0.4, 12.0, 1.1, 0, "SLOW"), (start + 3000, 17.2, 0.2, 2.5, 0.9, 1, "GOOD")]
    store.insert("llm_model_loads", {
        "Timestamp": [int(t * 1e9) for t, *_ in loads], "TraceId": [f"{0xf00 + j:032x}" for j in range(len(loads))],
        "ServiceName": ["vllm"] * len(loads), "Model": [MODEL] * len(loads), "ModelPath": ["/models/smollm2"] * 2,
        "Dtype": ["bfloat16"] * 2, "Device": ["cpu"] * 2, "TensorParallelSize": [1, 1], "PipelineParallelSize": [1, 1],
        "LoadSeconds": [x[1] for x in loads], "WeightsSeconds": [x[2] for x in loads],
        "CompileSeconds": [x[3] for x in loads], "KVCacheSeconds": [x[4] for x in loads],
        "WarmupSeconds": [3.0, 1.5], "ColdStartSeconds": [x[1] + 2 for x in loads],
        "CompileCacheHit": [x[5] for x in loads], "LoadLevel": [x[6] for x in loads], "SpanCount": [9, 9],
        "AssembledAt": [int((t + 60) * 1e3) for t, *_ in loads]})

    alerts = [  # (ts, fingerprint, rule, state, severity, value, threshold)
        (start + 600, "fp-ttft", "ttft_p95_high", "firing", "warning", 0.9, 0.5),
        (start + 1500, "fp-ttft", "ttft_p95_high", "resolved", "warning", 0.3, 0.5),
        (now - 900, "fp-err", "error_rate_high", "firing", "critical", 0.08, 0.05),
    ]
    store.insert("llm_alerts", {
        "Timestamp": [int(a[0] * 1e3) for a in alerts], "Fingerprint": [a[1] for a in alerts],
        "RuleName": [a[2] for a in alerts], "State": [a[3] for a in alerts], "Severity": [a[4] for a in alerts],
        "Labels": [{"model": MODEL} for _ in alerts], "Value": [a[5] for a in alerts],
        "Threshold": [a[6] for a in alerts], "WindowSeconds": [300] * 3,
        "Message": [f"{a[2]}: {a[5]} vs {a[6]}" for a in alerts], "Suggestion": ["check the engine"] * 3,
        "StartsAt": [int((a[0] if a[3] == "firing" else start + 600) * 1e3) for a in alerts]})
    return Filled(now=now, start=start, requests=n_requests, slowest_trace=slowest,
                  statuses={k: statuses.get(k, 0) for k in ("ok", "error", "abort", "timeout")}, slow=slow)
