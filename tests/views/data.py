"""A store with a realistic hour and a half of serving, for the dashboard, report and top tests.

Request spans go through the real analytics derivation (``requests_from_spans``) into ``llm_requests`` (whose
materialized views fill the 1m/1h rollups); the spans themselves go to ``otel_traces``; KV cache and running/waiting
gauges to ``otel_metrics_gauge``; model loads and alert transitions to their tables. Deterministic (seeded).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from opentelemetry.instrumentation.vllm import semconv as sc

from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.derive import requests_from_spans
from vllm_otel_collector.analytics.levels import Thresholds

SPAN_COLUMNS = ("Timestamp", "TraceId", "SpanId", "ParentSpanId", "SpanName", "SpanKind", "ServiceName",
                "ResourceAttributes", "SpanAttributes", "Duration", "StatusCode", "StatusMessage")
MODEL = "SmolLM2-135M-Instruct"


@dataclass
class Filled:
    """What :func:`fill` wrote: ``now`` and ``start`` in unix seconds, request count, the slowest request's trace."""

    now: int
    start: int
    requests: int
    slowest_trace: str
    statuses: dict[str, int] = field(default_factory=dict)


def _span(i: int, ts_s: float, e2e: float, attrs: dict, status: str = "Unset") -> dict:
    return {"Timestamp": int(ts_s * 1e9), "TraceId": f"{0xabc000 + i:032x}", "SpanId": f"{i + 1:016x}",
            "ParentSpanId": "", "SpanName": f"chat {MODEL}", "SpanKind": "Server", "ServiceName": "vllm",
            "ResourceAttributes": {"service.name": "vllm", "host.name": "test"},
            "SpanAttributes": {k: str(v) for k, v in attrs.items()}, "Duration": int(e2e * 1e9),
            "StatusCode": status, "StatusMessage": ""}


def fill(store, now: int, n_requests: int = 150, span_s: int = 90 * 60, seed: int = 7) -> Filled:
    """Write the dataset into ``store`` (a migrated :class:`Store`); requests spread over ``[now - span_s, now)``."""
    rng = random.Random(seed)
    start = now - span_s
    spans, slowest, statuses = [], (0.0, ""), {"ok": 0, "error": 0, "abort": 0, "timeout": 0}
    for i in range(n_requests):
        ts = start + (i + 0.5) * span_s / n_requests
        queue = rng.uniform(0.001, 0.05) * (8 if i % 37 == 5 else 1)
        prefill = rng.uniform(0.02, 0.2)
        out = rng.randint(16, 128)
        tpot = rng.uniform(0.004, 0.02) * (4 if i % 29 == 3 else 1)
        decode = tpot * (out - 1)
        ttft = queue + prefill
        e2e = ttft + decode
        finish = "stop" if i % 5 else "length"
        status = "Unset"
        if i % 41 == 7:
            finish, status = sc.FINISH_ERROR, "Error"
        elif i % 43 == 11:
            finish = sc.FINISH_ABORT
        elif i % 47 == 13:
            finish = sc.FINISH_TIMEOUT
        attrs = {sc.OPERATION_NAME: "chat", sc.REQUEST_MODEL: MODEL, sc.RESPONSE_MODEL: MODEL,
                 sc.LATENCY_TTFT: ttft, sc.LATENCY_E2E: e2e, sc.LATENCY_QUEUE: queue, sc.LATENCY_PREFILL: prefill,
                 sc.LATENCY_DECODE: decode, sc.LATENCY_TPOT: tpot, sc.USAGE_INPUT_TOKENS: rng.randint(20, 400),
                 sc.USAGE_OUTPUT_TOKENS: out, sc.VLLM_FINISH_REASON: finish,
                 sc.USAGE_CACHE_READ_INPUT_TOKENS: 16 if i % 3 == 0 else 0}
        if finish == sc.FINISH_ERROR:
            attrs[sc.ERROR_TYPE] = "EngineDeadError"
        spans.append(_span(i, ts, e2e, attrs, status))
        if e2e > slowest[0]:
            slowest = (e2e, spans[-1]["TraceId"])
    batch = {c: [s[c] for s in spans] for c in SPAN_COLUMNS}
    store.insert("otel_traces", batch)
    rows = requests_from_spans(batch, Thresholds(AnalyticsConfig().levels))
    store.insert("llm_requests", rows)
    for s in rows["Status"]:
        statuses[s] += 1

    gauge_t, names, values = [], [], []
    for k, t in enumerate(range(start, now, 15)):
        for name, value in (("vllm.kv_cache.usage", 0.1 + 0.6 * ((k % 40) / 40)), ("vllm.requests.running", k % 5),
                            ("vllm.requests.waiting", (k // 3) % 3)):
            gauge_t.append(int(t * 1e9))
            names.append(name)
            values.append(float(value))
    store.insert("otel_metrics_gauge", {"ServiceName": ["vllm"] * len(names), "MetricName": names,
                                        "TimeUnix": gauge_t, "StartTimeUnix": gauge_t, "Value": values})

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
    return Filled(now=now, start=start, requests=n_requests, slowest_trace=slowest[1], statuses=statuses)
