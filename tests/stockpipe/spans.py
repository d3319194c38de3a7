"""OTLP request bodies with typed attributes (doubles, ints, bools, string arrays) as our instrumentation sends them:
request spans, model-load traces, spans of other instrumentations, and the hostile corpus."""

from __future__ import annotations

import hashlib
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from opentelemetry.instrumentation.vllm import semconv as sc

T0 = 1_800_000_000_000_000_000  # ns


def any_value(v: Any) -> common_pb2.AnyValue:
    if isinstance(v, bool):
        return common_pb2.AnyValue(bool_value=v)
    if isinstance(v, int):
        return common_pb2.AnyValue(int_value=v)
    if isinstance(v, float):
        return common_pb2.AnyValue(double_value=v)
    if isinstance(v, (list, tuple)):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[any_value(x) for x in v]))
    if isinstance(v, bytes):
        return common_pb2.AnyValue(bytes_value=v)
    return common_pb2.AnyValue(string_value=str(v))


def _id(seed: str, n: int) -> bytes:
    return hashlib.sha256(seed.encode()).digest()[:n]


def make_span(name: str, seed: str, start: int = T0, duration_ns: int = 10**9, attrs: dict | None = None,
              trace: str | None = None, parent: str = "", kind: int = trace_pb2.Span.SPAN_KIND_SERVER,
              status: int = 0) -> trace_pb2.Span:
    """A span with ids derived from ``seed`` (deterministic), ``attrs`` typed by their Python type."""
    span = trace_pb2.Span(trace_id=bytes.fromhex(trace) if trace else _id("t" + seed, 16), span_id=_id("s" + seed, 8),
                          parent_span_id=bytes.fromhex(parent) if parent else b"", name=name, kind=kind,
                          start_time_unix_nano=start, end_time_unix_nano=start + duration_ns)
    span.status.code = status
    for k, v in (attrs or {}).items():
        span.attributes.add(key=k, value=any_value(v))
    return span


def body(spans: list, service: str = "vllm", scope: str = "opentelemetry.instrumentation.vllm") -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=any_value(service))
    rs.resource.attributes.add(key="process.pid", value=any_value(4242))
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = scope, "0.1.0"
    ss.spans.extend(spans)
    return req.SerializeToString()


def request_attrs(model: str = "m-ok", **overrides) -> dict:
    attrs = {sc.OPERATION_NAME: "chat", sc.REQUEST_MODEL: model, sc.RESPONSE_MODEL: model,
             sc.VLLM_FINISH_REASON: "stop", sc.RESPONSE_FINISH_REASONS: ["stop"], sc.LATENCY_TTFT: 0.25,
             sc.LATENCY_E2E: 1.5, sc.LATENCY_QUEUE: 0.01, sc.LATENCY_PREFILL: 0.24, sc.LATENCY_DECODE: 1.25,
             sc.LATENCY_TPOT: 1.25 / 19, sc.USAGE_INPUT_TOKENS: 12, sc.USAGE_OUTPUT_TOKENS: 20,
             sc.USAGE_CACHE_READ_INPUT_TOKENS: 0, sc.VLLM_NUM_PREEMPTIONS: 0, sc.VLLM_TOKENS_PER_SECOND: 20 / 1.5}
    attrs.update(overrides)
    return {k: v for k, v in attrs.items() if v is not None}


def request_body() -> bytes:
    """Two request spans: one ok, one failed (status Error, finish ``error``, no TTFT)."""
    return body([
        make_span("chat m-ok", "r1", attrs=request_attrs()),
        make_span("chat m-ok", "r2", start=T0 + 10**9, duration_ns=2 * 10**9, status=2, attrs=request_attrs(
            **{sc.VLLM_FINISH_REASON: "error", sc.RESPONSE_FINISH_REASONS: ["error"], sc.LATENCY_TTFT: None,
               sc.LATENCY_E2E: 2.0, sc.USAGE_OUTPUT_TOKENS: 3, sc.LATENCY_TPOT: None, sc.ERROR_TYPE: "EngineDead",
               sc.VLLM_TOKENS_PER_SECOND: None})),
    ])


def load_body(trace: str = "ab" * 16, start: int = T0) -> bytes:
    """A model-load trace split as vLLM's processes write it: root, Load model, Load weights, Prepare model."""
    root = make_span("Overall Loading", "l-root" + trace, start, 90 * 10**9, trace=trace, kind=1, attrs={
        sc.LOAD_TOTAL_SECONDS: 88.5, sc.LOAD_COLD_START_SECONDS: 95.25, sc.LOAD_MODEL_NAME: "tiny",
        sc.LOAD_MODEL_PATH: "/models/tiny/", "code.function": "make_async_mp_client"})
    root_id = root.span_id.hex()
    return body([
        root,
        make_span("Load model", "l-lm" + trace, start + 10**9, 20 * 10**9, trace=trace, parent=root_id, kind=1,
                  attrs={sc.LOAD_MODEL_PATH: "/models/tiny/", sc.LOAD_DTYPE: "float32", sc.LOAD_TP_SIZE: 1,
                         sc.LOAD_PP_SIZE: 1, sc.LOAD_DEVICE: "cpu", sc.LOAD_MEMORY_BEFORE: 10**8,
                         sc.LOAD_MEMORY_AFTER: 2 * 10**8, sc.LOAD_MEMORY_PEAK: 3 * 10**8, sc.LOAD_QUANTIZATION: "none"}),
        make_span("Load weights", "l-w" + trace, start + 2 * 10**9, 5 * 10**9, trace=trace, parent=root_id, kind=1,
                  attrs={sc.LOAD_WEIGHTS_BYTES: 7_340_032, sc.LOAD_WEIGHTS_SECONDS: 4.75}),
        make_span("Prepare model", "l-p" + trace, start + 30 * 10**9, 50 * 10**9, trace=trace, parent=root_id, kind=1,
                  attrs={sc.LOAD_KV_BLOCKS: 4096, sc.LOAD_KV_BYTES: 2**30, sc.LOAD_COMPILE_SECONDS: 41.5,
                         sc.LOAD_COMPILE_CACHE_HIT: False, sc.LOAD_WARMUP_SECONDS: 3.25}),
    ], scope="vllm.v1.engine.core_client")
