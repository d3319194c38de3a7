"""Served instrumentation overhead: the vLLM OpenAI server (CPU engine, tiny model) under the streaming OpenAI-client
workload, three variants alive side by side and interleaved.

Variants: ``none`` (plain server, our vLLM plugins excluded through ``VLLM_PLUGINS``), ``ours``
(``opentelemetry-instrument`` + ``VLLMInstrumentor`` via its entry points, OTLP/gRPC traces and metrics), ``native``
(``--otlp-traces-endpoint``, our plugins excluded). Each exports to its own null sink (:mod:`bench.sink`). OpenLIT has
no served variant: its vLLM instrumentation wraps only the offline ``LLM.generate``. All servers start first; each
round runs the same workload (``requests`` streaming chat requests, ``concurrency`` in flight, ``max_tokens``) against
each server, the order rotating; a first round warms up. Per round: throughput (completion tokens / wall s), client
TTFT p50/p99, API-server CPU µs per request (user+system of the server's main process — the frontend — over the
round, from psutil). Full runs only (engine starts make it too slow for the smoke run).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.common import ROOT, new_result, percentile, ratios, spread
from bench.sink import OtlpSink

_METHOD = __doc__.split("\n\n", 1)[1].replace("\n", " ").strip()
VARIANTS = ("none", "ours", "native")


def _server(variant: str, model: Path, endpoint: str, log: Path):
    from vllm_otel_inference.launcher import VLLMServer, free_port

    from bench.overhead import _other_general_plugins

    env = {"VLLM_CPU_KVCACHE_SPACE": "1"}
    extra = ["--enforce-eager"]
    if variant != "ours":
        env["VLLM_PLUGINS"] = ",".join(_other_general_plugins())
    if variant == "native":
        env["OTEL_EXPORTER_OTLP_TRACES_INSECURE"] = "true"
        extra += ["--otlp-traces-endpoint", endpoint]
    return VLLMServer(model_dir=model, served_model_name="tiny", otlp_endpoint=endpoint if variant == "ours" else None,
                      port=free_port(), log_path=log, max_model_len=512, instrumented=variant == "ours",
                      service_name=f"bench-served-{variant}", extra_args=extra, extra_env=env)


def _cpu(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def run(smoke: bool, workdir: Path) -> dict:
    from vllm_otel_inference.tiny_model import build_tiny_llama
    from vllm_otel_inference.workload import run_workload

    result = new_result("overhead_served", smoke, _METHOD)
    model = build_tiny_llama(ROOT / ".cache" / "bench" / "tiny-llama")
    rounds, requests, conc, max_tokens = (1, 4, 2, 4) if smoke else (6, 96, 16, 16)
    variants = ("none", "ours") if smoke else VARIANTS
    sinks = {v: OtlpSink().__enter__() for v in variants}
    servers = {}
    samples = {v: [] for v in variants}
    try:
        for v in variants:
            servers[v] = _server(v, model, sinks[v].endpoint, workdir / f"served-{v}.log")
            servers[v].start()
            servers[v].wait_ready()
        for rnd in range(rounds + 1):
            order = list(variants[rnd % len(variants):]) + list(variants[:rnd % len(variants)])
            for v in order:
                pid = servers[v]._proc.pid  # the API server (opentelemetry-instrument execs into it)
                c0, w0 = _cpu(pid), time.perf_counter()
                res = run_workload(servers[v].base_url, "tiny", requests=requests, concurrency=conc,
                                   max_tokens=max_tokens)
                wall, cpu = time.perf_counter() - w0, _cpu(pid) - c0
                if rnd:
                    ttft = [r.client_ttft_s for r in res if r.ok and r.client_ttft_s is not None]
                    samples[v].append({"throughput_tok_s": sum(r.output_tokens or 0 for r in res) / wall,
                                       "ok": sum(r.ok for r in res), "cpu_us_per_request": cpu / requests * 1e6,
                                       "ttft_p50_s": percentile(ttft, 50), "ttft_p99_s": percentile(ttft, 99)})
    finally:
        for s in servers.values():
            s.stop()
        time.sleep(1.0)
        emitted = {v: s.snapshot() for v, s in sinks.items()}
        for s in sinks.values():
            s.__exit__(None, None, None)
    base = samples["none"]
    summary = {}
    for v in variants:
        s = samples[v]
        col = {k: [x[k] for x in s] for k in s[0]}
        summary[v] = {
            "throughput_tok_s": spread(col["throughput_tok_s"]), "cpu_us_per_request": spread(col["cpu_us_per_request"]),
            "ttft_p50_s": spread(col["ttft_p50_s"]), "ttft_p99_s": spread(col["ttft_p99_s"]),
            "throughput_ratio": ratios(col["throughput_tok_s"], [b["throughput_tok_s"] for b in base]),
            "ttft_p50_ratio": ratios(col["ttft_p50_s"], [b["ttft_p50_s"] for b in base]),
            "ttft_p99_ratio": ratios(col["ttft_p99_s"], [b["ttft_p99_s"] for b in base]),
            "cpu_us_added_per_request": spread([x["cpu_us_per_request"] - b["cpu_us_per_request"]
                                                for x, b in zip(s, base)]),
            "spans_per_request": emitted[v]["spans"] / (requests * (rounds + 1)),
            "span_names": emitted[v]["span_names"], "metric_points": emitted[v]["points"],
        }
    result["samples"] = samples
    result["summary"] = {"tiny": {"config": {"model": "tiny", "rounds": rounds, "requests_per_round": requests,
                                             "concurrency": conc, "max_tokens": max_tokens,
                                             "variants": list(variants)}, **summary}}
    ours = summary["ours"]
    thr, cpu = ours["throughput_ratio"]["median"], ours["cpu_us_added_per_request"]["median"]
    result["targets"] = {"served_tiny_throughput_cost_le_1pct": {"target": 0.99, "measured": thr, "met": thr >= 0.99},
                         "served_tiny_cpu_added_le_30us": {"target": 30.0, "measured": cpu, "met": cpu <= 30.0}}
    if "native" in summary:
        n_thr, n_cpu = summary["native"]["throughput_ratio"]["median"], summary["native"]["cpu_us_added_per_request"]["median"]
        result["targets"]["served_tiny_no_worse_than_native"] = {
            "target": "ours throughput ratio ≥ native's and added CPU ≤ native's",
            "measured": {"ours_ratio": thr, "native_ratio": n_thr, "ours_cpu_us": cpu, "native_cpu_us": n_cpu},
            "met": thr >= n_thr and cpu <= n_cpu}
    return result
