"""What vLLM's engine metric set costs, per engine step: on vLLM's event loop and off it.

Stats of one realistic decode step (32 running requests, 32 inter-token latencies, prefix-cache stats, 1 finished
request per step) are built once from vLLM's own dataclasses. Variants, interleaved in every round (A/B on the same
machine load), CPU µs per step from ``time.thread_time_ns`` of the calling thread:

- ``ours_record``: ``VLLMOtelStatLogger.record`` — what our instrumentation adds to vLLM's event loop;
- ``vllm_prometheus_record``: vLLM's own ``PrometheusStatLogger.record`` (on the event loop in vLLM), for scale;
- ``ours_drain``: converting + aggregating one step on the drain thread (counters/gauges into our sums, histogram
  values into the SDK), i.e. the off-loop work under the same GIL; ``ours_drain_no_hist`` the same with
  ``OTEL_INSTRUMENTATION_VLLM_ENGINE_HISTOGRAMS=false``.

Run: ``python -m bench.instrumentation.engine_metrics [--steps N] [--rounds R]``; prints JSON (medians, min, max over rounds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def _step(running: int = 32):
    from vllm.v1.engine import FinishReason
    from vllm.v1.metrics.stats import FinishedRequestStats, IterationStats, PrefixCacheStats, SchedulerStats

    sched = SchedulerStats(num_running_reqs=running, num_waiting_reqs=2, kv_cache_usage=0.4,
                           prefix_cache_stats=PrefixCacheStats(requests=1, queries=128, hits=64))
    it = IterationStats()
    it.num_generation_tokens = running
    it.prompt_token_stats.computed, it.prompt_token_stats.total = 64, 128
    it.inter_token_latencies_iter = [0.02 + i * 1e-4 for i in range(running)]
    it.time_to_first_tokens_iter = [0.1]
    it.n_params_iter, it.max_num_generation_tokens_iter = [1], [64]
    it.finished_requests.append(FinishedRequestStats(finish_reason=FinishReason.LENGTH, e2e_latency=1.2,
                                                     num_prompt_tokens=128, num_generation_tokens=64,
                                                     max_tokens_param=64, queued_time=0.01, prefill_time=0.05,
                                                     inference_time=1.1, decode_time=1.05,
                                                     mean_time_per_output_token=0.016))
    return sched, it


def measure(steps: int = 5000, rounds: int = 5, model_dir: str | None = None) -> dict:
    import os

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from opentelemetry.instrumentation.vllm import state
    from opentelemetry.instrumentation.vllm.engine import aggregator as em
    from opentelemetry.instrumentation.vllm.engine.stat_logger import VLLMOtelStatLogger
    from opentelemetry.instrumentation.vllm.engine.table import EngineInfo
    from opentelemetry.instrumentation.vllm.settings import ENV_ENGINE_HISTOGRAMS

    cfg = None
    if model_dir:
        from vllm.engine.arg_utils import EngineArgs

        cfg = EngineArgs(model=model_dir, dtype="float32", max_model_len=2048,
                         enforce_eager=True).create_engine_config()
    sched, it = _step()
    info = EngineInfo.from_vllm_config(cfg, [0]) if cfg is not None else EngineInfo(model="bench")
    logger = VLLMOtelStatLogger.__new__(VLLMOtelStatLogger)
    logger.info, logger.engine_indexes, logger.model = info, [0], info.model
    logger.aggregator = em.EngineAggregator(start_thread=False)  # its own queue: no drain thread while timing
    prom = None
    if cfg is not None:
        from vllm.v1.metrics.loggers import PrometheusStatLogger

        prom = PrometheusStatLogger(cfg, [0])
    state.activate(object(), None)  # record() only checks that the instrumentation is active
    samples: dict[str, list[float]] = {}

    def timed(name, fn):
        t0 = time.thread_time_ns()
        for _ in range(steps):
            fn()
        samples.setdefault(name, []).append((time.thread_time_ns() - t0) / steps / 1e3)

    queue = logger.aggregator.queue
    for _ in range(rounds):
        queue.discard()
        timed("ours_record", lambda: logger.record(sched, it, None, 0))
        queue.discard()
        if prom is not None:
            timed("vllm_prometheus_record", lambda: prom.record(sched, it, None, 0))
        for hist in ("true", "false"):
            os.environ[ENV_ENGINE_HISTOGRAMS] = hist
            agg = em.EngineAggregator(start_thread=False)
            agg.bind(MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench"))
            item = (em.STEP, info, 0, sched, it, None)

            def one(agg=agg, item=item):
                agg.put(item)
                agg.drain()

            timed("ours_drain" if hist == "true" else "ours_drain_no_hist", one)
    os.environ.pop(ENV_ENGINE_HISTOGRAMS, None)
    state.deactivate()
    return {"unit": "CPU µs per engine step (32 running requests)", "steps": steps, "rounds": rounds,
            **{k: {"median": statistics.median(v), "min": min(v), "max": max(v)} for k, v in samples.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--model", default=None, help="model dir for a real VllmConfig (adds vLLM's Prometheus logger)")
    args = ap.parse_args()
    print(json.dumps(measure(args.steps, args.rounds, args.model), indent=2))


if __name__ == "__main__":
    main()
