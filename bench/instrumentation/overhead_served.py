"""Served instrumentation overhead: the vLLM OpenAI server (CPU engine, tiny model) under the streaming OpenAI-client
workload, three variants alive side by side and interleaved.

Variants: ``none`` (plain server, our vLLM plugins excluded through ``VLLM_PLUGINS``), ``ours``
(``opentelemetry-instrument`` + ``VLLMInstrumentor`` via its entry points, OTLP/gRPC traces and metrics; by default
request spans and all metrics are built in the telemetry child process, whose CPU is reported separately),
``ours_inprocess`` (the same with ``OTEL_INSTRUMENTATION_VLLM_EXPORT_PROCESS=false``: everything built in the API
server), ``ours_statlogger`` (``ours`` with the engine metric set from our own stat logger, a call per engine step,
instead of vLLM's Prometheus registry: ``OTEL_INSTRUMENTATION_VLLM_ENGINE_METRICS_FROM_REGISTRY=false``), ``native``
(``--otlp-traces-endpoint``, our plugins excluded). Each exports to its own null sink (:mod:`bench.instrumentation.sink`). OpenLIT has
no served variant: its vLLM instrumentation wraps only the offline ``LLM.generate``. All servers start first; each
round runs the same workload (``requests`` streaming chat requests, ``concurrency`` in flight, ``max_tokens``) against
each server, the order rotating; a first round warms up. Per round: throughput (completion tokens / wall s), client
TTFT p50/p99, API-server CPU µs per request (user+system of the server's main process — the frontend — over the
round, from psutil), and the API server's CPU per thread (psutil ``threads()``; thread names from the
instrumentation's benchmark-only hook accounting, ``VLLM_OTEL_BENCH_HOOK_TIMES``, on in ``ours``) with the
telemetry's own per-hook ``thread_time_ns`` per request: the breakdown of where ours spends API-server CPU, and
their sum, the telemetry's attributed API-server CPU per request (process totals cannot resolve 100 µs here). Full runs
only (engine starts make it too slow for the smoke run); ``BENCH_SERVED_ROUNDS`` / ``BENCH_SERVED_REQUESTS`` /
``BENCH_SERVED_VARIANTS`` override the rounds, requests per round and variants (besides the four: ``sdk_only``,
``opentelemetry-instrument`` with its SDK and exporters but our instrumentation disabled — the cost of the bootstrap
itself —, and ``ours_nohooks``, ``ours`` without the benchmark's hook accounting — the accounting's own cost).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bench.common import ROOT, new_result, percentile, ratios, spread
from bench.instrumentation.sink import OtlpSink

_METHOD = __doc__.split("\n\n", 1)[1].replace("\n", " ").strip()
VARIANTS = ("none", "ours", "ours_statlogger", "ours_inprocess", "native")
OURS = ("ours", "ours_statlogger", "ours_inprocess")


def _server(variant: str, model: Path, endpoint: str, log: Path, hooks_dir: Path | None = None):
    from vllm_otel_inference.launcher import VLLMServer, free_port

    from bench.instrumentation.overhead import other_general_plugins

    env = {"VLLM_CPU_KVCACHE_SPACE": "1"}
    if hooks_dir is not None:
        env["VLLM_OTEL_BENCH_HOOK_TIMES"] = str(hooks_dir)
    extra = ["--enforce-eager"]
    if variant == "ours_inprocess":
        env["OTEL_INSTRUMENTATION_VLLM_EXPORT_PROCESS"] = "false"
    if variant == "ours_statlogger":  # the engine set from our stat logger instead of vLLM's registry
        env["OTEL_INSTRUMENTATION_VLLM_ENGINE_METRICS_FROM_REGISTRY"] = "false"
    if variant not in OURS + ("ours_nohooks",):
        env["VLLM_PLUGINS"] = ",".join(other_general_plugins())
    if variant == "sdk_only":  # opentelemetry-instrument and its SDK in every process, our instrumentation off
        env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "fastapi,vllm"
    if variant == "native":
        env["OTEL_EXPORTER_OTLP_TRACES_INSECURE"] = "true"
        extra += ["--otlp-traces-endpoint", endpoint]
    sdk = variant in OURS + ("ours_nohooks", "sdk_only")
    return VLLMServer(model_dir=model, served_model_name="tiny", otlp_endpoint=endpoint if sdk else None,
                      port=free_port(), log_path=log, max_model_len=512,
                      instrumented=sdk,
                      service_name=f"bench-served-{variant}", extra_args=extra, extra_env=env)


def _cpu(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _child_cpu(pid: int) -> float:
    """CPU seconds of the server's telemetry child process(es) (:mod:`opentelemetry.instrumentation.vllm.handoff.child`)."""
    import psutil

    total = 0.0
    for child in psutil.Process(pid).children(recursive=False):
        try:
            if any("handoff.child" in part for part in child.cmdline()):
                t = child.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _engine_steps(base_url: str) -> float:
    """Engine steps so far: the count of vLLM's own ``vllm:iteration_tokens_total`` histogram (one observation per
    step) from the server's ``/metrics`` — the same in every variant, so steps per request compare across them."""
    import httpx

    try:
        text = httpx.get(f"{base_url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return float("nan")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:iteration_tokens_total_count"))


def _threads(pid: int) -> dict[int, float]:
    """CPU seconds (user+system) per thread id of process ``pid``."""
    import psutil

    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}


def _hooks(hooks_dir: Path | None, pid: int) -> dict:
    """The instrumentation's hook accounting of process ``pid`` (empty without the switch): asks the process's dump
    thread for a fresh snapshot (``dump-<pid>``) and waits up to 5 s for it."""
    if hooks_dir is None:
        return {}
    request = hooks_dir / f"dump-{pid}"
    request.touch()
    deadline = time.monotonic() + 5.0
    while request.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        return json.loads((hooks_dir / f"hooks-{pid}.json").read_text())
    except (OSError, ValueError):
        return {}


#: API-server threads that belong to the telemetry (the SDK's and ours; not the benchmark's dump thread).
TELEMETRY_THREADS = ("vllm-otel-writer", "vllm-otel-engine-metrics", "vllm-otel-registry", "vllm-otel-zombie-sweeper",
                     "OtelBatchSpanRecordProcessor", "OtelPeriodicExportingMetricReader")


def attributed_us(threads: dict[str, float], hooks: dict[str, list[float]]) -> float:
    """Telemetry's own API-server CPU per request (µs): its threads (psutil) plus its hooks on the event loop
    (``thread_time_ns`` around each hook). Unlike process totals, this resolves tens of µs on a noisy machine; what
    it leaves out is the wrappers' call overhead around the hooks and allocator/GC effects on vLLM's own code."""
    return (sum(threads.get(t, 0.0) for t in TELEMETRY_THREADS)
            + sum(us for key, (us, _) in hooks.items() if key.endswith("@MainThread")
                  and not key.startswith(("gc.", "accounting", "vllm."))))  # vllm.*: vLLM's own, for scale


def accounting_us(hooks: dict[str, list[float]]) -> float:
    """The hook accounting's own estimated share of :func:`attributed_us` (µs per request): one clock-read gap per
    timed call (``accounting@<thread>``, probed right after each timed call) on the event loop and the telemetry
    threads. On the threads it under-corrects (their psutil time also holds the probe's own reads), so
    ``attributed_us - accounting_us`` still errs on the high side."""
    threads = ("MainThread",) + TELEMETRY_THREADS
    return sum(us for key, (us, _) in hooks.items() if key.startswith("accounting@") and key.split("@", 1)[1] in threads)


def _thread_names(pid: int, hooks: dict) -> dict[int, str]:
    names = {tid: name for name, tid in hooks.get("threads", {}).items()}
    names[pid] = "MainThread (event loop)"
    return names


def breakdown(pid: int, requests: int, t0: dict[int, float], t1: dict[int, float], h0: dict, h1: dict) -> dict:
    """Per-request µs: ``threads`` {thread name: CPU µs} from psutil deltas, ``hooks`` {hook@thread: [µs, calls per
    request]} from the hook accounting deltas."""
    names = _thread_names(pid, h1)
    threads: dict[str, float] = {}
    for tid, cpu in t1.items():
        name = names.get(tid, "other (vLLM, uvicorn, torch)")
        threads[name] = threads.get(name, 0.0) + (cpu - t0.get(tid, 0.0)) / requests * 1e6
    hooks = {}
    before = h0.get("times", {})
    for key, (ns, calls) in h1.get("times", {}).items():
        ns0, calls0 = before.get(key, (0, 0))
        if calls != calls0:
            hooks[key] = [(ns - ns0) / requests / 1e3, (calls - calls0) / requests]
    raw = attributed_us(threads, hooks)
    return {"threads": threads, "hooks": hooks, "telemetry_us": raw, "telemetry_net_us": raw - accounting_us(hooks)}


def run(smoke: bool, workdir: Path) -> dict:
    from vllm_otel_inference.tiny_model import build_tiny_llama
    from vllm_otel_inference.workload import run_workload

    result = new_result("overhead_served", smoke, _METHOD)
    model = build_tiny_llama(ROOT / ".cache" / "bench" / "tiny-llama")
    rounds, requests, conc, max_tokens = (1, 4, 2, 4) if smoke else (6, 96, 16, 16)
    rounds = int(os.environ.get("BENCH_SERVED_ROUNDS", rounds))
    requests = int(os.environ.get("BENCH_SERVED_REQUESTS", requests))
    hooks_dir = workdir / "hooks"
    hooks_dir.mkdir(parents=True, exist_ok=True)
    variants = ("none", "ours") if smoke else VARIANTS
    if os.environ.get("BENCH_SERVED_VARIANTS"):  # e.g. "none,ours" for a quick check
        variants = tuple(os.environ["BENCH_SERVED_VARIANTS"].split(","))
    sinks = {v: OtlpSink().__enter__() for v in variants}
    servers = {}
    samples = {v: [] for v in variants}
    per_thread: dict[str, list[dict]] = {v: [] for v in variants}
    try:
        for v in variants:
            servers[v] = _server(v, model, sinks[v].endpoint, workdir / f"served-{v}.log",
                                 hooks_dir if v in OURS else None)
            servers[v].start()
            servers[v].wait_ready()
        for rnd in range(rounds + 1):
            order = list(variants[rnd % len(variants):]) + list(variants[:rnd % len(variants)])
            for v in order:
                pid = servers[v].pid
                h0, t0 = _hooks(hooks_dir if v in OURS else None, pid), _threads(pid)
                k0 = _child_cpu(pid)
                s0 = _engine_steps(servers[v].base_url)
                c0, w0 = _cpu(pid), time.perf_counter()
                res = run_workload(servers[v].base_url, "tiny", requests=requests, concurrency=conc,
                                   max_tokens=max_tokens)
                wall = time.perf_counter() - w0
                time.sleep(1.0)  # the writer and the span processor finish this round's requests; the dump catches up
                cpu, t1 = _cpu(pid) - c0, _threads(pid)
                h1 = _hooks(hooks_dir if v in OURS else None, pid)
                if rnd:
                    per_thread[v].append(breakdown(pid, requests, t0, t1, h0, h1))
                    per_thread[v][-1]["threads"]["telemetry child process (outside the API server)"] = (_child_cpu(pid) - k0) / requests * 1e6
                if rnd:
                    ttft = [r.client_ttft_s for r in res if r.ok and r.client_ttft_s is not None]
                    samples[v].append({"throughput_tok_s": sum(r.output_tokens or 0 for r in res) / wall,
                                       "ok": sum(r.ok for r in res), "cpu_us_per_request": cpu / requests * 1e6,
                                       "engine_steps_per_request": (_engine_steps(servers[v].base_url) - s0)
                                       / requests,
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
            "engine_steps_per_request": spread(col.get("engine_steps_per_request", [float("nan")])),
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
    result["per_thread"] = per_thread
    from bench.instrumentation.sdk_floor import measure_handover

    result["handover_floor"] = measure_handover()  # the same hand-over code, warm in an idle process
    result["breakdown"] = _median_breakdown(per_thread)
    result["summary"] = {"tiny": {"config": {"model": "tiny", "rounds": rounds, "requests_per_round": requests,
                                             "concurrency": conc, "max_tokens": max_tokens,
                                             "variants": list(variants)}, **summary}}
    result["targets"] = {}
    if "ours" not in summary:  # a reduced variant set (BENCH_SERVED_VARIANTS)
        return result
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
        for v in OURS:  # issue #13: API-server CPU added ≤ 100 µs and ≤ half of native tracing's, throughput ≥ 0.99
            if v in summary and "cpu_us_added_per_request" in summary[v]:
                v_cpu = summary[v]["cpu_us_added_per_request"]["median"]
                v_thr = summary[v]["throughput_ratio"]["median"]
                # Process totals cannot resolve 100 µs here (rounds differ by ms): a median at or below the goal
                # counts only when the telemetry's own measured CPU is within it too, so noise never reads as "met".
                own = ((result.get("breakdown") or {}).get(v) or {}).get("telemetry_net_us_per_request") or {}
                own_us = own.get("median")
                result["targets"][f"served_tiny_{v}_api_cpu_le_100us_and_half_native"] = {
                    "target": "API-server CPU added ≤ 100 µs/request and ≤ native's / 2; throughput ratio ≥ 0.99 "
                              "(and the telemetry's own attributed CPU ≤ 100 µs, which the totals cannot resolve)",
                    "measured": {"cpu_us": v_cpu, "native_cpu_us": n_cpu, "throughput_ratio": v_thr,
                                 "telemetry_us": own_us},
                    "met": v_cpu <= 100.0 and v_cpu <= n_cpu / 2 and v_thr >= 0.99
                    and (own_us is None or own_us <= 100.0)}
    for v in OURS:  # the resolvable form of the same goal: telemetry's own API-server CPU (threads + hooks)
        rounds_v = per_thread.get(v) or []
        if rounds_v and v in summary:
            t_us = result["breakdown"][v]["telemetry_us_per_request"]["median"]
            net = result["breakdown"][v]["telemetry_net_us_per_request"]["median"]
            v_thr = summary[v]["throughput_ratio"]["median"]
            result["targets"][f"served_tiny_{v}_telemetry_cpu_le_100us"] = {
                "target": "telemetry's own API-server CPU (its threads + its event-loop hooks, the accounting's "
                          "estimated share subtracted) ≤ 100 µs/request; throughput ratio ≥ 0.99",
                "measured": {"telemetry_us": net, "telemetry_us_with_accounting": t_us, "throughput_ratio": v_thr},
                "met": net <= 100.0 and v_thr >= 0.99}
    return result


def _median_breakdown(per_thread: dict[str, list[dict]]) -> dict:
    """Median over rounds of each thread's and each hook's µs per request, per variant."""
    from statistics import median

    out: dict = {}
    for v, rounds in per_thread.items():
        if not rounds:
            continue
        threads = {k: median(r["threads"].get(k, 0.0) for r in rounds) for k in {k for r in rounds for k in r["threads"]}}
        hooks = {k: [median(r["hooks"].get(k, [0.0, 0.0])[0] for r in rounds),
                     median(r["hooks"].get(k, [0.0, 0.0])[1] for r in rounds)]
                 for k in {k for r in rounds for k in r["hooks"]}}
        out[v] = {"threads_us_per_request": threads, "hooks_us_per_request": hooks,
                  "telemetry_us_per_request": spread([r.get("telemetry_us", 0.0) for r in rounds]),
                  "telemetry_net_us_per_request": spread([r.get("telemetry_net_us", r.get("telemetry_us", 0.0))
                                                          for r in rounds])}
    return out
