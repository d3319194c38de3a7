"""Instrumentation overhead benchmark: offline ``LLM.generate`` on the vLLM CPU engine, five variants interleaved.

Variants (each in its own long-lived process, see :mod:`bench.instrumentation.overhead_worker`): ``none`` (uninstrumented), ``ours``
(``VLLMInstrumentor`` + SDK providers in code exporting OTLP/gRPC: in-process writing), ``ours_child`` (the SDK
configured from ``OTEL_*``, spans and metrics built in the telemetry child process), ``native`` (vLLM's ``otlp_traces_endpoint``), ``openlit``
(OpenLIT 1.45's vLLM instrumentation on the same SDK providers). Every variant exports to its own null OTLP sink
(:mod:`bench.instrumentation.sink`), which counts what each emitted. All engines start first; then each round runs the same batch
(``requests`` prompts × ``max_tokens`` tokens, ``ignore_eos``, greedy) once per variant, the order rotating every round
(ABCD, BCDA, …); a first round warms up and is not recorded. Per round: throughput (output tokens / wall s), TTFT
p50/p99 (vLLM's ``first_token_latency``), frontend CPU (``time.process_time`` of the process that calls
``generate`` / requests). Reported: per-variant medians, per-round ratios to ``none`` of the same round (median,
min, max), and CPU µs/request added over ``none``. Models: the tiny random Llama (many requests per second: the worst
case for per-request overhead) and SmolLM2-135M-Instruct (realistic compute per token) in full runs.
Targets (issue 7): ≤ 1 % throughput cost, no worse than native tracing, ≤ 30 µs frontend CPU per request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, new_result, percentile, ratios, spread
from bench.instrumentation.sink import OtlpSink

_METHOD = __doc__.split("\n\n", 1)[1].replace("\n", " ").strip()
VARIANTS = ("none", "ours", "ours_child", "native", "openlit")


def other_general_plugins() -> list[str]:
    """Names of the installed ``vllm.general_plugins`` other than ours (the ``VLLM_PLUGINS`` allow-list)."""
    from importlib.metadata import entry_points

    return [e.name for e in entry_points(group="vllm.general_plugins") if e.name != "vllm_otel"] or ["none"]


class Worker:
    """A running :mod:`bench.instrumentation.overhead_worker` process; ``round(...)`` returns its JSON answer."""

    def __init__(self, variant: str, model: Path, endpoint: str, log: Path, max_model_len: int):
        r, w = os.pipe()
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
                   TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
        env.pop("OTEL_SDK_DISABLED", None)
        if variant not in ("ours", "ours_child"):
            # Our `vllm.general_plugins` entry point instruments any vLLM process that has an SDK tracer provider
            # (OpenLIT's variant has one): keep it out of every variant but ours.
            env["VLLM_PLUGINS"] = ",".join(other_general_plugins())
        self.variant = variant
        self._log = open(log, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.instrumentation.overhead_worker", "--variant", variant, "--model", str(model),
             "--endpoint", endpoint, "--result-fd", str(w), "--max-model-len", str(max_model_len)],
            stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT, pass_fds=(w,), cwd=ROOT, env=env,
            text=True, start_new_session=True)
        os.close(w)
        self._results = os.fdopen(r, "r")
        self.log = log

    def _read(self) -> dict:
        line = self._results.readline()
        if not line:
            tail = self.log.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"overhead worker {self.variant} exited:\n" + "\n".join(tail))
        return json.loads(line)

    def ready(self) -> dict:
        return self._read()

    def round(self, requests: int, max_tokens: int) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": "round", "requests": requests, "max_tokens": max_tokens}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self, timeout: float = 60.0) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=timeout)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        if self.proc.poll() is None:
            import signal

            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._results.close()
        self._log.close()


def _round_metrics(r: dict) -> dict:
    ttft = [t for t in r["ttft_s"] if t is not None]
    return {"throughput_tok_s": r["output_tokens"] / r["wall_s"], "wall_s": r["wall_s"],
            "cpu_us_per_request": r["cpu_s"] / r["requests"] * 1e6,
            "engine_cpu_us_per_request": r["children_cpu_s"] / r["requests"] * 1e6,
            "ttft_p50_s": percentile(ttft, 50), "ttft_p99_s": percentile(ttft, 99)}


def measure_model(label: str, model: Path, variants, rounds: int, requests: int, max_tokens: int, workdir: Path,
                  max_model_len: int = 512) -> dict:
    """Run the interleaved rounds for one model; return ``{"samples", "summary", "truth"}``."""
    sinks = {v: OtlpSink().__enter__() for v in variants}
    workers: dict[str, Worker] = {}
    samples = {v: [] for v in variants}
    ready = {}
    truth: list = []
    errors: dict[str, str] = {}
    try:
        for v in variants:  # sequential start: parallel starts on 2 cores only slow each other down
            workers[v] = Worker(v, model, sinks[v].endpoint, workdir / f"overhead-{label}-{v}.log", max_model_len)
            try:
                ready[v] = workers[v].ready()["ready_s"]
            except RuntimeError as exc:  # one broken variant must not lose the others' measurements
                errors[v] = str(exc).splitlines()[-1]
                print(f"overhead: {exc}", file=sys.stderr)
                workers.pop(v).close()
        live = [v for v in variants if v in workers]
        if "none" not in live:
            raise RuntimeError(f"the uninstrumented baseline did not start: {errors.get('none')}")
        for rnd in range(rounds + 1):
            order = live[rnd % len(live):] + live[:rnd % len(live)]
            for v in order:
                if v not in workers:
                    continue
                try:
                    r = workers[v].round(requests, max_tokens)
                except RuntimeError as exc:
                    errors[v] = str(exc).splitlines()[-1]
                    workers.pop(v).close()
                    continue
                if rnd:
                    samples[v].append(_round_metrics(r))
                    truth.extend(r["truth"])
    finally:
        for w in list(workers.values()):
            w.close()
        time.sleep(1.0)
        emitted = {v: s.snapshot() for v, s in sinks.items()}
        for s in sinks.values():
            s.__exit__(None, None, None)
    total_requests = requests * (rounds + 1)
    summary = {}
    base = samples["none"]
    for v in variants:
        s = samples[v]
        if not s:
            summary[v] = {"error": errors.get(v, "no samples")}
            continue
        col = {k: [x[k] for x in s] for k in s[0]} if s else {}
        summary[v] = {
            "engine_ready_s": ready.get(v),
            "throughput_tok_s": spread(col["throughput_tok_s"]),
            "ttft_p50_s": spread(col["ttft_p50_s"]), "ttft_p99_s": spread(col["ttft_p99_s"]),
            "cpu_us_per_request": spread(col["cpu_us_per_request"]),
            "engine_cpu_us_per_request": spread(col["engine_cpu_us_per_request"]),
            "throughput_ratio": ratios(col["throughput_tok_s"], [b["throughput_tok_s"] for b in base]),
            "ttft_p50_ratio": ratios(col["ttft_p50_s"], [b["ttft_p50_s"] for b in base]),
            "ttft_p99_ratio": ratios(col["ttft_p99_s"], [b["ttft_p99_s"] for b in base]),
            "cpu_us_added_per_request": spread([x["cpu_us_per_request"] - b["cpu_us_per_request"]
                                                for x, b in zip(s, base)]),
            "spans_per_request": emitted[v]["spans"] / total_requests,
            "span_names": emitted[v]["span_names"],
            "metric_points": emitted[v]["points"],
        }
    return {"config": {"model": label, "rounds": rounds, "requests_per_round": requests, "max_tokens": max_tokens,
                       "variants": list(variants)},
            "samples": samples, "summary": summary, "truth": truth}


def _models(smoke: bool, workdir: Path) -> list[tuple[str, Path, dict]]:
    from vllm_otel_inference.tiny_model import build_tiny_llama

    tiny = build_tiny_llama(ROOT / ".cache" / "bench" / "tiny-llama")
    if smoke:
        return [("tiny", tiny, {"rounds": 1, "requests": 16, "max_tokens": 4})]
    models = [("tiny", tiny, {"rounds": 8, "requests": 512, "max_tokens": 16})]
    if os.environ.get("BENCH_OFFLINE_MODELS", "tiny,smollm2").split(",") == ["tiny"]:
        return models
    try:
        from vllm_otel_inference.model_prep import prepare_smollm2

        models.append(("smollm2", prepare_smollm2(), {"rounds": 4, "requests": 48, "max_tokens": 16}))
    except Exception as exc:  # noqa: BLE001 - no SmolLM2 (offline machine): the tiny model still runs
        print(f"overhead: SmolLM2 unavailable ({exc}); tiny model only", file=sys.stderr)
    return models


def run(smoke: bool, workdir: Path) -> dict:
    variants = ("none", "ours") if smoke else VARIANTS
    if os.environ.get("BENCH_OFFLINE_VARIANTS"):  # e.g. "none,ours,ours_child" for a quick check
        variants = tuple(os.environ["BENCH_OFFLINE_VARIANTS"].split(","))
    if "openlit" in variants:
        from bench.instrumentation.openlit_env import ensure_installed

        ensure_installed()
    result = new_result("overhead", smoke, _METHOD)
    per_model = {}
    for label, model, cfg in _models(smoke, workdir):
        per_model[label] = measure_model(label, model, variants, cfg["rounds"], cfg["requests"], cfg["max_tokens"],
                                         workdir)
    from bench.instrumentation.sdk_floor import measure

    result["sdk_floor"] = measure(200, 1) if smoke else measure(2000, 3)
    result["samples"] = {m: r["samples"] for m, r in per_model.items()}
    result["summary"] = {m: {"config": r["config"], **r["summary"]} for m, r in per_model.items()}
    result["truth_offline"] = {m: r["truth"] for m, r in per_model.items()}
    targets = {}
    for m, r in per_model.items():
        ours, nat = r["summary"]["ours"], r["summary"].get("native", {})
        if "error" in ours:
            continue
        thr = ours["throughput_ratio"]["median"]
        cpu = ours["cpu_us_added_per_request"]["median"]
        targets[f"{m}_throughput_cost_le_1pct"] = {"target": 0.99, "measured": thr,
                                                   "met": thr is not None and thr >= 0.99}
        targets[f"{m}_cpu_added_le_30us"] = {"target": 30.0, "measured": cpu, "met": cpu is not None and cpu <= 30.0}
        if nat and "error" not in nat:
            n_thr, n_cpu = nat["throughput_ratio"]["median"], nat["cpu_us_added_per_request"]["median"]
            targets[f"{m}_no_worse_than_native"] = {
                "target": "ours throughput ratio ≥ native's and added CPU ≤ native's",
                "measured": {"ours_ratio": thr, "native_ratio": n_thr, "ours_cpu_us": cpu, "native_cpu_us": n_cpu},
                "met": thr >= n_thr and cpu <= n_cpu}
    for m, r in per_model.items():  # #13's offline goal, for the default under opentelemetry-instrument (the child)
        child = r["summary"].get("ours_child")
        if child and "error" not in child:
            cpu = child["cpu_us_added_per_request"]["median"]
            targets[f"{m}_ours_child_cpu_added_le_30us"] = {"target": 30.0, "measured": cpu,
                                                            "met": cpu is not None and cpu <= 30.0}
    result["targets"] = targets
    return result
