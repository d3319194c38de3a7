"""Truth benchmark: is the TTFT we record the TTFT that happened?

Served: an instrumented vLLM OpenAI server (``opentelemetry-instrument``, OTLP/gRPC) exporting to the embedded
collector (chDB); the OpenAI-client workload sends a ``traceparent`` per request, so each client observation joins
its server span by trace id. Compared per request: our span's ``vllm.latency.time_to_first_token`` (and the
derived ``llm_requests.TTFT`` row) vs the client's observed TTFT (request sent → first content chunk; the difference
is HTTP, detokenization and streaming, so client − span > 0 is expected), and in aggregate vs vLLM's own
``vllm:time_to_first_token_seconds`` histogram (sum/count delta over the workload from its Prometheus ``/metrics``,
computed by vLLM from ``RequestStateStats``). Offline (from the overhead run, variant ``ours``): span TTFT vs
``RequestOutput.metrics.first_token_latency`` (``RequestStateStats``) of the same request.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx

from bench.common import RESULTS_DIR, ROOT, new_result, percentile, spread

_METHOD = __doc__.split("\n\n", 1)[1].replace("\n", " ").strip()
_PROM = re.compile(r'^vllm:time_to_first_token_seconds_(sum|count)\{[^}]*\}\s+([0-9.eE+-]+)$', re.M)


def _vllm_ttft_hist(base_url: str) -> tuple[float, float]:
    """``(sum_seconds, count)`` of vLLM's TTFT histogram, summed over its label sets."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    sums = {"sum": 0.0, "count": 0.0}
    for kind, value in _PROM.findall(text):
        sums[kind] += float(value)
    return sums["sum"], sums["count"]


def _diff_summary(diffs_s: list[float]) -> dict:
    ms = [d * 1000.0 for d in diffs_s]
    return {"n": len(ms), "p1_ms": percentile(ms, 1), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
            "min_ms": min(ms) if ms else None, "max_ms": max(ms) if ms else None,
            "mean_abs_ms": sum(abs(x) for x in ms) / len(ms) if ms else None}


def served(label: str, model: Path, requests: int, concurrency: int, max_tokens: int, workdir: Path) -> dict:
    """One served run; returns pairs and summaries (times in seconds; summaries of differences in ms)."""
    from vllm_otel_collector.embedded import start_embedded_collector
    from vllm_otel_inference import readback
    from vllm_otel_inference.launcher import VLLMServer, free_port
    from vllm_otel_inference.workload import run_workload

    data = workdir / f"truth-{label}"
    grpc_port = free_port()
    with start_embedded_collector(data_dir=data, grpc_port=grpc_port, http_port=None, api_port=None) as col:
        server = VLLMServer(model_dir=model, served_model_name=label, otlp_endpoint=f"http://127.0.0.1:{grpc_port}",
                            port=free_port(), log_path=data / "vllm.log", max_model_len=512,
                            service_name="bench-truth", extra_args=["--enforce-eager"])
        server.start()
        try:
            server.wait_ready()
            run_workload(server.base_url, label, requests=2, concurrency=1, max_tokens=4)  # warm-up
            s0, c0 = _vllm_ttft_hist(server.base_url)
            results = run_workload(server.base_url, label, requests=requests, concurrency=concurrency,
                                   max_tokens=max_tokens)
            s1, c1 = _vllm_ttft_hist(server.base_url)
            ids = [r.trace_id for r in results]  # failed requests too: vLLM's histogram counts them as well
            rows = readback.wait_for_rows(col.store, ids, timeout_s=60)
        finally:
            server.stop()
        col.drain(30)
        derived = dict(col.store.query("SELECT TraceId, TTFT FROM llm_requests WHERE TraceId IN {ids:Array(String)}",
                                       parameters={"ids": ids}).result_rows)
    span_ttft = {r.trace_id: r.ttft_s for r in rows if r.ttft_s is not None}
    client = {r.trace_id: r.client_ttft_s for r in results if r.ok and r.client_ttft_s is not None}
    pairs = [[tid, span_ttft[tid], client[tid], derived.get(tid)] for tid in client if tid in span_ttft]
    ours_sum = sum(span_ttft.values())  # every request span of the workload, as vLLM's histogram has every request
    return {
        "requests": requests, "ok": len(client), "joined": len(pairs), "derived_rows": len(derived),
        "spans": len(span_ttft), "failed": [r.error for r in results if not r.ok][:5],
        "pairs": pairs,
        "client_minus_span": _diff_summary([c - s for _t, s, c, _d in pairs]),
        "client_minus_span_relative": spread([(c - s) / c for _t, s, c, _d in pairs if c]),
        "derived_minus_span": _diff_summary([d - s for _t, s, _c, d in pairs if d is not None]),
        "vllm_histogram": {"count": c1 - c0, "sum_s": s1 - s0,
                           "mean_s": (s1 - s0) / (c1 - c0) if c1 > c0 else None},
        "span_mean_s": ours_sum / len(span_ttft) if span_ttft else None,
        "span_vs_vllm_mean_ms": ((ours_sum / len(span_ttft)) - (s1 - s0) / (c1 - c0)) * 1000.0
        if span_ttft and c1 > c0 else None,
    }


def run(smoke: bool, workdir: Path) -> dict:
    from vllm_otel_inference.tiny_model import build_tiny_llama

    result = new_result("truth", smoke, _METHOD)
    models = [("tiny", build_tiny_llama(ROOT / ".cache" / "bench" / "tiny-llama"))]
    if not smoke:
        try:
            from vllm_otel_inference.model_prep import prepare_smollm2

            models.append(("smollm2", prepare_smollm2()))
        except Exception:  # noqa: BLE001 - offline machine: tiny model only
            pass
    runs = {}
    for label, path in models:
        n, conc, mt = (4, 2, 4) if smoke else (64, 4, 32)
        runs[label] = served(label, path, n, conc, mt, workdir)
    offline = {}
    overhead = Path(os.environ.get("BENCH_RESULTS_DIR", RESULTS_DIR)) / "overhead.json"
    if overhead.is_file():
        for label, pairs in json.loads(overhead.read_text()).get("truth_offline", {}).items():
            offline[label] = {"pairs": len(pairs), "span_minus_vllm": _diff_summary([s - v for s, v in pairs])}
    result["samples"] = {label: r.pop("pairs") for label, r in runs.items()}
    result["summary"] = {"served": runs, "offline": offline}
    worst = max((abs(r["span_vs_vllm_mean_ms"]) for r in runs.values() if r["span_vs_vllm_mean_ms"] is not None),
                default=None)
    result["targets"] = {
        "span_matches_vllm_ttft_within_1ms": {"target": 1.0, "measured": worst,
                                              "met": worst is not None and worst <= 1.0},
        "every_request_joined": {"target": "all", "measured": {k: [r["joined"], r["requests"]] for k, r in runs.items()},
                                 "met": all(r["joined"] == r["requests"] for r in runs.values())},
    }
    return result
