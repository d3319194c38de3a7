"""Deterministic synthetic spans in the columnar ``otel_traces`` shape; :func:`store_spans` inserts them, and the
analytics materialized views derive ``llm_requests`` / ``span_levels`` / ``llm_startup_spans`` from them."""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.vllm import semconv as sc

SPAN_COLUMNS = ("Timestamp", "TraceId", "SpanId", "ParentSpanId", "SpanName", "SpanKind", "ServiceName",
                "ResourceAttributes", "SpanAttributes", "Duration", "StatusCode", "StatusMessage")


def span(n: int, name: str, ts_ns: int, duration_s: float = 0.0, attrs: dict[str, Any] | None = None,
         service: str = "vllm", trace: str | None = None, parent: str = "", status: str = "Unset") -> dict:
    """One span row; attribute values are stringified like the clickhouseexporter does."""
    return {
        "Timestamp": ts_ns, "TraceId": trace or f"{n:032x}", "SpanId": f"{n:016x}", "ParentSpanId": parent,
        "SpanName": name, "SpanKind": "Server", "ServiceName": service, "ResourceAttributes": {},
        "SpanAttributes": {k: str(v) for k, v in (attrs or {}).items()}, "Duration": int(duration_s * 1e9),
        "StatusCode": status, "StatusMessage": "",
    }


def request(n: int, ts_s: float, *, ttft=0.2, e2e=None, queue=0.05, prefill=0.15, decode=0.8, inp=10, out=9,
            finish="stop", model="m1", service="vllm", cached=0, lora=None, status="Unset", op="chat",
            preemptions=0) -> dict:
    """Our instrumentation's request span (``chat <model>``) with all latency attributes (seconds).

    ``e2e`` defaults to ``max(1.0, ttft)``: a request's first token never comes after its end (a TTFT above E2E is
    flagged INVALID and kept out of the TTFT statistics, issue #12).
    """
    if e2e is None:
        e2e = max(1.0, ttft) if isinstance(ttft, (int, float)) else 1.0
    attrs = {
        sc.OPERATION_NAME: op, sc.REQUEST_MODEL: model, sc.RESPONSE_MODEL: model,
        sc.LATENCY_TTFT: ttft, sc.LATENCY_E2E: e2e, sc.LATENCY_QUEUE: queue, sc.LATENCY_PREFILL: prefill,
        sc.LATENCY_DECODE: decode, sc.USAGE_INPUT_TOKENS: inp, sc.USAGE_OUTPUT_TOKENS: out,
        sc.VLLM_FINISH_REASON: finish, sc.USAGE_CACHE_READ_INPUT_TOKENS: cached,
        sc.VLLM_NUM_PREEMPTIONS: preemptions,
    }
    if lora:
        attrs[sc.VLLM_LORA_NAME] = lora
    if finish == "error":
        attrs[sc.ERROR_TYPE] = "EngineDeadError"
    return span(n, f"{op} {model}", int(ts_s * 1e9), e2e, attrs, service=service, status=status)


def columns(spans: list[dict]) -> dict[str, list]:
    """Rows → the columnar batch (column name → list)."""
    return {c: [s[c] for s in spans] for c in SPAN_COLUMNS}


def store_spans(store, spans: list[dict]) -> int:
    """Insert ``spans`` into ``otel_traces`` (the views derive their rows in the same insert); returns the count."""
    return store.insert("otel_traces", columns(spans)) if spans else 0


def refresh_baselines(store) -> None:
    """Run ClickHouse's baseline refresh (``llm_baselines_mv``, migration 0134) now and wait for it, then stop its
    schedule so that the baselines stay what the test set up."""
    for cmd in ("SYSTEM START VIEW llm_baselines_mv", "SYSTEM REFRESH VIEW llm_baselines_mv",
                "SYSTEM WAIT VIEW llm_baselines_mv", "SYSTEM STOP VIEW llm_baselines_mv"):
        store.command(cmd)
