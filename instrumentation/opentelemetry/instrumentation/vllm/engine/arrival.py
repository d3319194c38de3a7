"""The engine's state when a request arrives (#24, "why was this request slow"): requests running and waiting in the
scheduler and the KV-cache usage, as vLLM last delivered them to this process (its latest ``SchedulerStats``), read
at add on vLLM's event loop from what vLLM already holds — no per-step work of ours on the default path:

- **vLLM's** ``PrometheusStatLogger`` (in vLLM's logger list whenever ``/metrics`` is served, whichever engine-metric
  source we use): the values it last set on its own per-engine gauges ``vllm:num_requests_running``,
  ``vllm:num_requests_waiting`` (waiting + deferred, as ``/metrics``) and ``vllm:kv_cache_usage_perc`` (a fraction
  0..1 despite the name). Those gauges start at 0, so whether vLLM has delivered stats yet is learned from the
  logger's first ``record()`` with scheduler stats per engine: a one-shot instance-level wrapper that takes itself out
  once every engine of the frontend has delivered — nothing of ours runs per engine step after that.
- else **our** stat logger (offline ``LLM`` with vLLM's stats off: it is the only logger): the latest
  ``SchedulerStats`` it was handed (one dict store per step, in its ``record()``).

Which engine: the request's ``data_parallel_rank`` when the client routed it to one (and this frontend has that
engine); else the frontend's first engine (the lowest index it manages: engine 0 with internal data-parallel load
balancing, where vLLM picks the engine only after our add hook; the rank itself with external load balancing, one
engine per API server). Readers (:class:`EngineState`) hang off the engine's output processor
(``processor._otel_arrival``), so two engines in one process each read their own.

What crosses to the telemetry child is the raw tuple ``(running, waiting, kv usage)`` as vLLM holds it (floats from
the gauges) or None; :func:`..request.facts.arrival_attrs` derives the attributes where the span is written.
"""

from __future__ import annotations

from typing import Any, Callable

from opentelemetry.instrumentation.vllm import compat
from opentelemetry.instrumentation.vllm.safety import report_hook_error
from opentelemetry.instrumentation.vllm.settings import ENV_FORCE, env_flag

#: A reader: ``() -> (running, waiting, kv_cache_usage)`` or None (no stats delivered yet).
Reader = Callable[[], "tuple | None"]


class EngineState:
    """One frontend's readers, by engine index (:meth:`read` is the add hook's call)."""

    __slots__ = ("by_rank", "first")

    def __init__(self, by_rank: dict[int, Reader]) -> None:
        self.by_rank = by_rank
        self.first: Reader | None = by_rank[min(by_rank)] if by_rank else None

    def read(self, rank: Any) -> tuple | None:
        """The latest ``(running, waiting, kv usage)`` of engine ``rank`` (the request's ``data_parallel_rank``;
        None or unknown: the first engine), or None when vLLM has delivered no scheduler stats for it yet."""
        reader = self.by_rank.get(rank) if rank is not None else None
        if reader is None:
            reader = self.first
            if reader is None:
                return None
        return reader()


def _gauge_reader(prom: Any, idx: int, delivered: set) -> Reader:
    """The engine's three gauge values. prometheus_client keeps a child gauge's value in a holder (``_value``:
    ``MutexValue``, or ``MmapedValue`` in multiprocess mode) whose ``get()`` takes a lock (~0.4 µs each here); where
    the holder keeps the number as its own ``_value`` attribute (both do), that attribute is read directly: one
    attribute read of a float the logger assigns whole (the lock orders writers; a reader sees the old or the new
    value), 0.2 µs for all three. Anything else: ``get()``."""
    holders = (prom.gauge_scheduler_running[idx]._value, prom.gauge_scheduler_waiting[idx]._value,
               prom.gauge_kv_cache_usage[idx]._value)
    if all(isinstance(getattr(h, "_value", None), (int, float)) for h in holders):
        run, wait, kv = holders

        def read() -> tuple | None:
            if idx not in delivered:
                return None
            return (run._value, wait._value, kv._value)

        return read
    run_get, wait_get, kv_get = (h.get for h in holders)

    def read_locked() -> tuple | None:
        if idx not in delivered:
            return None
        return (run_get(), wait_get(), kv_get())

    return read_locked


def _watch_first_records(prom: Any, indexes: list[int], delivered: set) -> None:
    """Mark each engine delivered after the first ``record()`` that carried its scheduler stats (vLLM has set its
    gauges then); the instance-level wrapper removes itself once every engine has delivered."""
    original = prom.record  # the bound method (the class's)

    def record(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        try:
            stats = args[0] if args else kwargs.get("scheduler_stats")
            if stats is not None:
                idx = kwargs.get("engine_idx", args[3] if len(args) > 3 else 0)
                delivered.add(0 if idx is None else idx)
                if all(i in delivered for i in indexes):
                    prom.__dict__.pop("record", None)  # the class's record again: nothing of ours per step
        except Exception as exc:  # noqa: BLE001 - never into vLLM
            report_hook_error("engine.arrival", exc)
        return result

    prom.record = record


def _stats_reader(latest: dict, idx: int) -> Reader:
    def read() -> tuple | None:
        s = latest.get(idx)
        if s is None:
            return None
        return (s.num_running_reqs, s.num_waiting_reqs + s.num_skipped_waiting_reqs, s.kv_cache_usage)

    return read


def attach(engine: Any) -> EngineState | None:
    """Give a just-built ``AsyncLLM``/``LLMEngine`` (after the engine-metric source was chosen: its logger list is
    final) its arrival-state readers, on its output processor. None (the attributes stay absent) when vLLM lacks
    what they read (one warning: :mod:`..compat`, ``engine state at arrival``) or neither logger is there. Never
    raises."""
    try:
        op = getattr(engine, "output_processor", None)
        if op is None:
            return None
        op._otel_arrival = None
        problems = compat.live_problems(compat.ARRIVAL_STATE)
        if problems and not env_flag(ENV_FORCE, False):
            compat.report_skip(compat.ARRIVAL_STATE, problems)
            return None
        loggers = getattr(getattr(engine, "logger_manager", None), "stat_loggers", None) or []
        state = None
        prom = next((lg for lg in loggers if type(lg).__name__ == "PrometheusStatLogger"), None)
        if prom is not None:
            indexes = sorted(prom.gauge_scheduler_running)
            delivered: set = set()
            readers = {i: _gauge_reader(prom, i, delivered) for i in indexes}
            _watch_first_records(prom, indexes, delivered)
            state = EngineState(readers)
        else:
            from opentelemetry.instrumentation.vllm.engine.stat_logger import VLLMOtelStatLogger

            ours = next((lg for lg in loggers if isinstance(lg, VLLMOtelStatLogger)), None)
            if ours is not None:
                state = EngineState({i: _stats_reader(ours.latest_scheduler_stats, i) for i in ours.engine_indexes})
        op._otel_arrival = state
        return state
    except Exception as exc:  # noqa: BLE001 - the attributes stay absent, vLLM runs on
        report_hook_error("engine.arrival", exc)
        return None
