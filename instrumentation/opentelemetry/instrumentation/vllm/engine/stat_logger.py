"""vLLM's stat-logger interface: the entry to :mod:`.aggregator` (vLLM's whole engine metric set over OTLP).

``VLLMOtelStatLogger`` is registered as the ``vllm.stat_logger_plugins`` entry point ``vllm_otel`` (AsyncLLM loads it
in the API server and, because a custom logger is present, turns ``log_stats`` on without user flags). The offline
``LLMEngine`` does not load that group: the instrumentor adds the same class to its ``stat_loggers`` (see
:mod:`..hooks.engines`). It is an *aggregate* logger (one instance for all data-parallel engines of a frontend), so vLLM also
forwards sleep-state changes and admission rejections to it.

Cost on vLLM's event loop: ``record()`` runs once per engine step and only keeps the latest ``SchedulerStats`` per
engine (for :mod:`.arrival`) and appends a tuple of references to vLLM's stats objects to a bounded queue (no
conversion, no SDK call); everything else happens on the drain thread or at metric collection. It queues nothing
while the instrumentation is not active.
"""

from __future__ import annotations

from typing import Any

from vllm.v1.metrics.loggers import AggregateStatLoggerBase

from opentelemetry.instrumentation.vllm import state
from opentelemetry.instrumentation.vllm.engine.aggregator import ADMISSION, AGGREGATOR, INIT, SLEEP, STEP
from opentelemetry.instrumentation.vllm.engine.table import EngineInfo
from opentelemetry.instrumentation.vllm.safety import report_hook_error, timed


class VLLMOtelStatLogger(AggregateStatLoggerBase):
    """Aggregate stat logger: queues every engine step's ``SchedulerStats`` / ``IterationStats`` /
    ``MultiModalCacheStats`` for :mod:`.aggregator`. ``engine_indexes`` are the data-parallel ranks this frontend
    manages (an int is accepted for the per-engine factory signature)."""

    #: Where the steps are queued (the process's aggregator; a test or benchmark may give one logger its own).
    aggregator = AGGREGATOR

    def __init__(self, vllm_config: Any, engine_indexes: Any = None) -> None:
        if isinstance(engine_indexes, int):
            engine_indexes = [engine_indexes]
        self.engine_indexes = list(engine_indexes or [0])
        self.info = EngineInfo.from_vllm_config(vllm_config, self.engine_indexes)
        self.model = self.info.model
        #: engine index -> the latest ``SchedulerStats`` (the engine state a request arriving now sees:
        #: :mod:`.arrival`, where vLLM's Prometheus logger is absent)
        self.latest_scheduler_stats: dict[int, Any] = {}
        self._enqueue((INIT, self.info, None))

    @timed("stat_logger.record")
    def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None,
               engine_idx: int = 0) -> None:
        if scheduler_stats is not None:
            self.latest_scheduler_stats[engine_idx] = scheduler_stats
        if state.instruments() is None:
            return
        self.aggregator.put((STEP, self.info, engine_idx, scheduler_stats, iteration_stats, mm_cache_stats))

    def record_sleep_state(self, sleep: int = 0, level: int = 0) -> None:
        self._enqueue((SLEEP, self.info, None, sleep, level))

    def record_admission_rejection(self, reason: str) -> None:
        self._enqueue((ADMISSION, self.info, None, reason))

    def log_engine_initialized(self) -> None:
        pass

    def _enqueue(self, item: tuple) -> None:
        try:
            self.aggregator.put(item)
        except Exception as exc:  # noqa: BLE001 - never break vLLM
            report_hook_error("stat_logger", exc)
