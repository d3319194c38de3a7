"""Engine gauges and counters from vLLM's stat-logger interface.

``VLLMOtelStatLogger`` is registered as the ``vllm.stat_logger_plugins`` entry point ``vllm_otel`` (AsyncLLM loads it
in the API server and, because a custom logger is present, turns ``log_stats`` on without user flags). The offline
``LLMEngine`` does not load that group: the instrumentor adds the same class to its ``stat_loggers`` (see
:mod:`.engine`). ``record()`` is a no-op while the instrumentation is not active.
"""

from __future__ import annotations

from typing import Any

from vllm.v1.metrics.loggers import StatLoggerBase

from opentelemetry.instrumentation.vllm import state
from opentelemetry.instrumentation.vllm.utils import guarded


class VLLMOtelStatLogger(StatLoggerBase):
    """Per-engine stat logger: KV cache usage ratio, running/waiting requests (gauges), preemptions and prefix cache
    queries/hits (counters, tokens). Called by vLLM once per engine step with ``SchedulerStats``/``IterationStats``."""

    def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
        self.engine_index = engine_index
        model_config = getattr(vllm_config, "model_config", None)
        self.model = str(getattr(model_config, "served_model_name", "") or getattr(model_config, "model", "") or "")

    @guarded("stat_logger.record")
    def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None,
               engine_idx: int = 0) -> None:
        inst = state.instruments()
        if inst is None:
            return
        idx = engine_idx or self.engine_index
        attrs = {"vllm.engine.index": idx, "gen_ai.request.model": self.model}
        if scheduler_stats is not None:
            snap = inst.snapshot
            snap.model = self.model
            snap.kv_cache_usage[idx] = float(scheduler_stats.kv_cache_usage)
            snap.running[idx] = int(scheduler_stats.num_running_reqs)
            snap.waiting[idx] = int(scheduler_stats.num_waiting_reqs)
            pcs = scheduler_stats.prefix_cache_stats
            if pcs is not None and pcs.queries:
                inst.prefix_queries.add(int(pcs.queries), attrs)
                inst.prefix_hits.add(int(pcs.hits), attrs)
        if iteration_stats is not None and iteration_stats.num_preempted_reqs:
            inst.preemptions.add(int(iteration_stats.num_preempted_reqs), attrs)

    def log_engine_initialized(self) -> None:
        pass
