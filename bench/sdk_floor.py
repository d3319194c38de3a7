"""The OpenTelemetry Python SDK's own cost per request, without vLLM: what any instrumentation that emits spans from
the frontend process pays at least.

One "request" = a root span with 25 attributes and one event, plus ``children`` child spans, ended; exported with a
BatchSpanProcessor over OTLP/gRPC to a null sink (:mod:`bench.sink`, in this process: its upb parsing is ~1 µs/span)
or not exported at all. Reported: ``time.process_time`` µs per request (all threads of this process, so the export
thread's protobuf encoding counts), median of ``rounds``.
"""

from __future__ import annotations

import statistics
import time


def measure(requests: int = 2000, rounds: int = 3) -> dict[str, float]:
    """``{"<mode>_<n>_spans_us": median CPU µs per request}`` for mode in (noexport, otlp) and 1 or 4 spans."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from bench.sink import OtlpSink

    attrs = {f"gen_ai.attr.{i}": (0.125 * i if i % 2 else f"value-{i}") for i in range(25)}
    out: dict[str, float] = {}
    with OtlpSink() as sink:
        for mode in ("noexport", "otlp"):
            for n_spans in (1, 4):
                samples = []
                for _ in range(rounds):
                    tp = TracerProvider()
                    if mode == "otlp":
                        tp.add_span_processor(BatchSpanProcessor(
                            OTLPSpanExporter(endpoint=sink.endpoint, insecure=True), max_queue_size=4 * requests + 8))
                    tracer = tp.get_tracer("bench")
                    c0 = time.process_time()
                    for _ in range(requests):
                        root = tracer.start_span("chat m", attributes=attrs)
                        root.add_event("vllm.first_token")
                        ctx = trace.set_span_in_context(root)
                        for _k in range(n_spans - 1):
                            tracer.start_span("phase", context=ctx).end()
                        root.end()
                    tp.force_flush()
                    samples.append((time.process_time() - c0) / requests * 1e6)
                    tp.shutdown()
                out[f"{mode}_{n_spans}_spans_us"] = statistics.median(samples)
    return out
