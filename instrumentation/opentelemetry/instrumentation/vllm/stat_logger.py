"""vLLM's stat-logger interface: the entry to :mod:`.engine_metrics` (vLLM's whole engine metric set over OTLP).

``VLLMOtelStatLogger`` is registered as the ``vllm.stat_logger_plugins`` entry point ``vllm_otel`` (AsyncLLM loads it
in the API server and, because a custom logger is present, turns ``log_stats`` on without user flags). The offline
``LLMEngine`` does not load that group: the instrumentor adds the same class to its ``stat_loggers`` (see
:mod:`.engine`). It is an *aggregate* logger (one instance for all data-parallel engines of a frontend), so vLLM also
forwards sleep-state changes and admission rejections to it.

Cost on vLLM's event loop: ``record()`` runs once per engine step and only appends a tuple of references to vLLM's
stats objects to a bounded ``deque`` (no conversion, no SDK call); everything else happens on the drain thread or at
metric collection. It does nothing while the instrumentation is not active.
"""

from __future__ import annotations

from typing import Any

from vllm.v1.metrics.loggers import AggregateStatLoggerBase

from opentelemetry.instrumentation.vllm import engine_metrics as em
from opentelemetry.instrumentation.vllm import state
from opentelemetry.instrumentation.vllm.utils import report_hook_error, timed

_PENDING = em.PENDING
_MAX = em.MAX_PENDING


class VLLMOtelStatLogger(AggregateStatLoggerBase):
    """Aggregate stat logger: queues every engine step's ``SchedulerStats`` / ``IterationStats`` /
    ``MultiModalCacheStats`` for :mod:`.engine_metrics`. ``engine_indexes`` are the data-parallel ranks this frontend
    manages (an int is accepted for the per-engine factory signature)."""

    def __init__(self, vllm_config: Any, engine_indexes: Any = None) -> None:
        if isinstance(engine_indexes, int):
            engine_indexes = [engine_indexes]
        self.engine_indexes = list(engine_indexes or [0])
        self.info = em.EngineInfo.from_vllm_config(vllm_config, self.engine_indexes)
        self.model = self.info.model
        self._enqueue((em.INIT, self.info, None))

    @timed("stat_logger.record")
    def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None,
               engine_idx: int = 0) -> None:
        if state.instruments() is None:
            return
        if len(_PENDING) < _MAX:
            _PENDING.append((em.STEP, self.info, engine_idx, scheduler_stats, iteration_stats, mm_cache_stats))
        else:
            em.AGGREGATOR.count_dropped()

    def record_sleep_state(self, sleep: int = 0, level: int = 0) -> None:
        self._enqueue((em.SLEEP, self.info, None, sleep, level))

    def record_admission_rejection(self, reason: str) -> None:
        self._enqueue((em.ADMISSION, self.info, None, reason))

    def log_engine_initialized(self) -> None:
        pass

    @staticmethod
    def _enqueue(item: tuple) -> None:
        try:
            if len(_PENDING) < _MAX:
                _PENDING.append(item)
            else:
                em.AGGREGATOR.count_dropped()
        except Exception as exc:  # noqa: BLE001 - never break vLLM
            report_hook_error("stat_logger", exc)
