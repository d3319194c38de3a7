"""The OpenTelemetry Python SDK's own cost per request, without vLLM: what any instrumentation that emits spans from
the frontend process pays at least.

One "request" = a root span with 25 attributes and one event, plus ``children`` child spans, ended; exported with a
BatchSpanProcessor over OTLP/gRPC to a null sink (:mod:`bench.instrumentation.sink`, in this process: its upb parsing is ~1 µs/span)
or not exported at all. Reported: ``time.process_time`` µs per request (all threads of this process, so the export
thread's protobuf encoding counts), median of ``rounds``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any


def measure(requests: int = 2000, rounds: int = 3) -> dict[str, float]:
    """``{"<mode>_<n>_spans_us": median CPU µs per request}`` for mode in (noexport, otlp) and 1 or 4 spans."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from bench.instrumentation.sink import OtlpSink

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


def measure_handover(requests: int = 20000, steps: int = 5000) -> dict[str, float]:
    """What the API server itself does per request and per engine step with the telemetry child (#13), warm, in an
    idle process: the floor under the served benchmark's attributed figures. CPU µs (``time.thread_time_ns``):

    - ``request_facts_us``: the writer's per-request record — the values it reads from vLLM's per-request objects
      (:func:`handoff.wire.request_record`: raw summary and raw capture; the child derives the rest) — plus its share
      of one ``marshal`` message of 16 requests;
    - ``engine_step_us``: :func:`engine.facts.step_facts` of one step of 16 running requests (16 inter-token
      latencies, one finished request) plus its share of one ``marshal`` message of 40 steps (what the drain thread
      sends the child);
    - ``engine_step_records_us``: the same with the records built in the server (``step_records(step_facts(...))``, what
      the drain thread did before it sent facts; the in-process path still does it).
    """
    from types import SimpleNamespace

    from opentelemetry.trace import SpanKind
    from vllm.v1.engine import FinishReason
    from vllm.v1.metrics.stats import FinishedRequestStats, IterationStats, SchedulerStats

    from opentelemetry.instrumentation.vllm.engine.facts import step_facts, step_records
    from opentelemetry.instrumentation.vllm.engine.table import EngineInfo
    from opentelemetry.instrumentation.vllm.handoff import wire
    from opentelemetry.instrumentation.vllm.request.facts import Capture, RequestInfo

    def convert(*args: Any) -> list:
        return step_records(step_facts(*args))

    sp = SimpleNamespace(max_tokens=16, temperature=0.8, top_p=1.0, top_k=-1, n=1, seed=11)
    capture = Capture(sp, "chatcmpl-1", None, None, None, None, True, RequestInfo("chat", True, "tiny", "chatcmpl-1"),
                       None, None, SpanKind.SERVER, 1.7e9)
    stats = SimpleNamespace(first_token_latency=0.1, queued_ts=100.0, scheduled_ts=100.01, first_token_ts=100.1,
                            last_token_ts=100.85, num_generation_tokens=16, num_preemptions=0)
    detok = SimpleNamespace(num_output_tokens=lambda: 16)
    state = SimpleNamespace(request_id="r", external_req_id="chatcmpl-1", parent_req=None, prompt_len=30,
                            num_cached_tokens=0, stats=stats, detokenizer=detok, is_prefilling=False,
                            spec_decode_metrics=None)
    entry = SimpleNamespace(states=[state], reasons=["length"], arrival=1.7e9, operation="chat", model="tiny",
                            prefill_stats=None, capture=capture)

    def facts() -> tuple:
        return wire.request_record(entry, 1.7e9 + 1, "length", None)

    t0 = time.thread_time_ns()
    for _ in range(requests // 16):
        wire.dumps((wire.REQUESTS, [facts() for _ in range(16)]))
    request_us = (time.thread_time_ns() - t0) / (requests // 16 * 16) / 1e3

    info = EngineInfo(model="tiny")
    it = IterationStats()
    it.num_generation_tokens = 16
    it.inter_token_latencies_iter = [0.05] * 16
    it.finished_requests = [FinishedRequestStats(FinishReason.LENGTH, "r", 1.0, 30, 0, 16, 16, 0.01, 0.09, 0.84,
                                                 0.75, 0.05)]
    sched = SchedulerStats(num_running_reqs=16)

    def per_step(build: Any) -> float:
        t0 = time.thread_time_ns()
        for _ in range(steps // 40):
            batch = [(1, (0,), True, build(info, sched, it, None)) for _ in range(40)]
            wire.dumps((wire.ENGINE, batch, 0))
        return (time.thread_time_ns() - t0) / (steps // 40 * 40) / 1e3

    return {"request_facts_us": request_us, "engine_step_us": per_step(step_facts),
            "engine_step_records_us": per_step(convert)}
