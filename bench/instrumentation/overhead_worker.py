"""One variant of the overhead benchmark in its own process: ``python -m bench.instrumentation.overhead_worker --variant V ...``.

Builds ``vllm.LLM`` (CPU engine, ``disable_log_stats=False`` in every variant: native tracing requires it, and
``RequestOutput.metrics`` — vLLM's ``RequestStateStats``, our TTFT source — exists only then), sets up the variant's
telemetry, then serves rounds: one JSON command per stdin line, one JSON answer per line on ``--result-fd``.

Variants:
  none     — no telemetry.
  ours     — SDK TracerProvider (BatchSpanProcessor) + MeterProvider (5 s periodic reader), both OTLP/gRPC to the sink,
             set global, then ``VLLMInstrumentor().instrument(...)``.
  native   — vLLM's own tracing: ``otlp_traces_endpoint=<sink>`` (OTLP/gRPC, its BatchSpanProcessor).
  openlit  — OpenLIT 1.45's vLLM instrumentation (wraps ``LLM.generate``: one span per call) on the same SDK
             providers as ``ours``; imported from ``bench/.deps/openlit`` (see :mod:`bench.instrumentation.openlit_env`).
Every variant but ``ours`` runs with ``VLLM_PLUGINS`` excluding our general plugin (set by :mod:`bench.instrumentation.overhead`).

Round command ``{"cmd": "round", "requests": N, "max_tokens": M}`` answers ``{"wall_s", "cpu_s", "children_cpu_s",
"requests", "output_tokens", "ttft_s": [...], "truth": [...]}`` where ``cpu_s`` is ``time.process_time()`` of this
(frontend) process over the ``generate`` call, ``children_cpu_s`` the EngineCore/worker processes' CPU seconds, and
``truth`` (variant ``ours``) pairs our span's TTFT attribute with vLLM's ``first_token_latency`` per request.
``{"cmd": "quit"}`` flushes the providers and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

PROMPTS = [
    "The quick brown fox jumps over the lazy dog and",
    "Summarize continuous batching in one sentence:",
    "OpenTelemetry spans describe",
    "ClickHouse stores columns compressed, so",
    "Time to first token measures",
    "A KV cache keeps the keys and values of",
]


def _sdk_providers(endpoint: str, service: str):
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True),
                                           export_interval_millis=5000)
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    trace.set_tracer_provider(tp)
    metrics.set_meter_provider(mp)
    return tp, mp


class _Spans:
    """Keeps our request spans' TTFT by vLLM request id (variant ``ours`` only, for the truth comparison)."""

    def __init__(self):
        from opentelemetry.sdk.trace import SpanProcessor

        self.ttft: dict[str, float] = {}
        outer = self

        class _P(SpanProcessor):
            def on_end(self, span):
                from opentelemetry.instrumentation.vllm import semconv as sc

                a = span.attributes or {}
                if sc.VLLM_REQUEST_ID in a and sc.LATENCY_TTFT in a:
                    outer.ttft[a[sc.VLLM_REQUEST_ID]] = a[sc.LATENCY_TTFT]

        self.processor = _P()


def setup(variant: str, endpoint: str):
    """Install the variant's telemetry; return ``(llm_kwargs, providers, spans)``."""
    kwargs: dict = {}
    providers: tuple = ()
    spans = None
    if variant == "ours":
        tp, mp = _sdk_providers(endpoint, "bench-ours")
        spans = _Spans()
        tp.add_span_processor(spans.processor)
        from opentelemetry.instrumentation.vllm import VLLMInstrumentor

        VLLMInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
        providers = (tp, mp)
    elif variant == "ours_child":  # #13: the SDK configured from OTEL_*, spans and metrics built in the child
        os.environ.update({"OTEL_SERVICE_NAME": "bench-ours-child", "OTEL_TRACES_EXPORTER": "otlp",
                           "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "none",
                           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                           "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_METRIC_EXPORT_INTERVAL": "5000",
                           "OTEL_INSTRUMENTATION_VLLM_EXPORT_PROCESS": "true"})
        from opentelemetry.instrumentation.vllm import VLLMInstrumentor

        VLLMInstrumentor().instrument()
    elif variant == "native":
        os.environ.setdefault("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true")
        kwargs["otlp_traces_endpoint"] = endpoint
    elif variant == "openlit":
        from bench.instrumentation.openlit_env import TARGET, activate

        activate()
        tp, mp = _sdk_providers(endpoint, "bench-openlit")
        import openlit
        from openlit._instrumentors import MODULE_NAME_MAP

        pricing = str(TARGET.parent / "pricing.json")
        with open(pricing, "w") as fh:
            fh.write("{}")
        openlit.init(service_name="bench-openlit", disabled_instrumentors=[n for n in MODULE_NAME_MAP if n != "vllm"],
                     capture_message_content=False, pricing_json=pricing, collect_gpu_stats=False)
        providers = (tp, mp)
    elif variant != "none":
        raise SystemExit(f"unknown variant {variant!r}")
    return kwargs, providers, spans


def _children_cpu() -> float:
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", required=True, choices=["none", "ours", "ours_child", "native", "openlit"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--endpoint", required=True, help="OTLP/gRPC sink, http://127.0.0.1:PORT")
    ap.add_argument("--result-fd", type=int, required=True)
    ap.add_argument("--max-model-len", type=int, default=512)
    args = ap.parse_args(argv)
    out = os.fdopen(args.result_fd, "w", buffering=1)

    kwargs, providers, spans = setup(args.variant, args.endpoint)
    import vllm

    t0 = time.perf_counter()
    llm = vllm.LLM(model=args.model, max_model_len=args.max_model_len, disable_log_stats=False, seed=0,
                   enforce_eager=True, **kwargs)
    out.write(json.dumps({"ready_s": time.perf_counter() - t0, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        n, m = int(cmd["requests"]), int(cmd["max_tokens"])
        prompts = [PROMPTS[i % len(PROMPTS)] + f" #{i}" for i in range(n)]
        sp = vllm.SamplingParams(max_tokens=m, ignore_eos=True, temperature=0.0)
        if spans is not None:
            spans.ttft.clear()
        child0 = _children_cpu()
        cpu0, w0 = time.process_time(), time.perf_counter()
        outs = llm.generate(prompts, sp, use_tqdm=False)
        wall, cpu = time.perf_counter() - w0, time.process_time() - cpu0
        child = _children_cpu() - child0
        ttft = [o.metrics.first_token_latency if o.metrics is not None else None for o in outs]
        truth = []
        if spans is not None:
            for o in outs:
                if o.request_id in spans.ttft and o.metrics is not None:
                    truth.append([spans.ttft[o.request_id], o.metrics.first_token_latency])
        out.write(json.dumps({"wall_s": wall, "cpu_s": cpu, "children_cpu_s": child, "requests": n,
                              "output_tokens": sum(len(c.token_ids) for o in outs for c in o.outputs),
                              "ttft_s": ttft, "truth": truth}) + "\n")
    for p in providers:
        try:
            p.shutdown()
        except Exception:  # noqa: BLE001 - shutdown errors must not hide the measurements already sent
            pass
    out.write(json.dumps({"bye": True}) + "\n")
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
