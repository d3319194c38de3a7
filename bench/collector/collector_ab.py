"""Collector ingest with analytics on, for an A/B between two commits: one run sends ``N`` OTLP requests of 512 SDK
spans (one in four a request span with our instrumentation's attributes, three child spans each) through the
in-process pipeline (spool, batch, insert into chDB) and prints JSON ``{cpu_s, wall_s, spans, requests}``; CPU is the
process's over accept → drain (chDB in-process, all threads), the span generation is not timed. The checkout measured
is the one ``PYTHONPATH`` puts first, so two commits alternate in one loop (bench/analysis.md, "analytics_insert"):

    git worktree add --detach /tmp/old <commit>   # + its C extension, built with the same CFLAGS
    for i in 1 2 3 4; do for t in /tmp/old $PWD; do
      PYTHONPATH=$t/collector_processor:$t/instrumentation:$t .venv/bin/python bench/collector/collector_ab.py 200
    done; done
"""
import json
import os
import sys
import tempfile
import time

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.instrumentation.vllm import semconv as sc


def main(argv: list[str]) -> None:
    import vllm_otel_collector

    N_REQ, PER = int(argv[0]), 512
    exp = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "vllm", "host.name": "bench"}))
    tp.add_span_processor(SimpleSpanProcessor(exp))
    tr = tp.get_tracer("opentelemetry.instrumentation.vllm", "0.1.0")
    bodies = []
    for r in range(N_REQ):
        exp.clear()
        for i in range(PER // 4):
            with tr.start_as_current_span("chat smollm2", attributes={
                    sc.OPERATION_NAME: "chat", sc.REQUEST_MODEL: "smollm2", sc.RESPONSE_MODEL: "smollm2",
                    sc.USAGE_INPUT_TOKENS: 20 + i % 50, sc.USAGE_OUTPUT_TOKENS: 64, sc.VLLM_FINISH_REASON: "stop",
                    sc.RESPONSE_FINISH_REASONS: ("stop",), sc.LATENCY_TTFT: 0.05 + (i % 7) / 100,
                    sc.LATENCY_E2E: 1.5 + i % 3, sc.LATENCY_QUEUE: 0.01, sc.LATENCY_PREFILL: 0.04,
                    sc.LATENCY_DECODE: 1.4, sc.LATENCY_TPOT: 0.02}) as s:
                s.add_event("vllm.first_token", {"gen_ai.token.index": 0})
                for name in ("tokenize", "POST /v1/chat/completions", "SELECT tenants"):
                    with tr.start_as_current_span(name, attributes={"code.function": "handle", "http.method": "POST"}):
                        pass
        bodies.append(encode_spans(exp.get_finished_spans()).SerializeToString())
    spans = N_REQ * PER
    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.config import load_config
    tmp = tempfile.mkdtemp(prefix="ab-")
    cfg = load_config(None, clickhouse=f"chdb://{tmp}/ch", database="ab", data_dir=f"{tmp}/d", grpc_listen="127.0.0.1:0",
                      http_listen="off", api_listen="off", flush_interval_s=0.2)
    c = Collector(cfg).start()
    assert c.wait_ready(120)
    c0, w0 = time.process_time(), time.perf_counter()
    for b in bodies:
        c.pipeline.accept_traces(b)
    c.pipeline.drain(600)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    n_sp = c.store.query("SELECT count() FROM otel_traces").result_rows[0][0]
    n_rq = c.store.query("SELECT count() FROM llm_requests").result_rows[0][0]
    c.stop()
    print(json.dumps({"tree": os.path.dirname(os.path.dirname(vllm_otel_collector.__file__)), "cpu_s": cpu, "wall_s": wall,
                      "spans": n_sp, "requests": n_rq, "expected": [spans, spans // 4]}))


if __name__ == "__main__":
    main(sys.argv[1:])
