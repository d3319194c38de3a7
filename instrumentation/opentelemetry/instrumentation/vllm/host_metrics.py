"""Process and GPU gauges observed at metric collection: ``process.cpu.utilization`` (a fraction of the CPUs available
to the process) and ``process.memory.usage`` (bytes) of one process (psutil), and NVML ``hw.gpu.*`` gauges when a GPU
is present (semconv types: utilization gauges, memory up-down counters). Registered by the server (for itself) or by
the telemetry child (for the server, which then stays silent: no duplicate series).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from opentelemetry.instrumentation.vllm import semconv as sc


def register_host_observers(meter: Meter, pid: int, silent: Callable[[], bool] | None = None) -> None:
    """``process.cpu.utilization`` / ``process.memory.usage`` of process ``pid`` and the NVML GPU instruments (when a
    GPU is present) on ``meter``. ``silent()`` true: the callbacks observe nothing this time."""
    proc = _ProcessObserver(pid)
    quiet = silent or (lambda: False)

    def gated(fn: Callable[[CallbackOptions], Iterable[Observation]]) -> Callable[[CallbackOptions],
                                                                                   Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [] if quiet() else fn(options)

        return observe

    meter.create_observable_gauge(sc.METRIC_PROCESS_CPU, [gated(proc.cpu)], unit="1",
                                  description="Process CPU utilization since the last collection, as a fraction "
                                              "of the CPUs available to the process (semconv)")
    meter.create_observable_up_down_counter(sc.METRIC_PROCESS_RSS, [gated(proc.rss)], unit="By",
                                            description="Process resident set size")
    gpu = _NvmlObserver.create()
    if gpu is not None:
        meter.create_observable_gauge(sc.METRIC_GPU_UTILIZATION, [gated(gpu.utilization)], unit="1",
                                      description="GPU utilization (NVML)")
        meter.create_observable_up_down_counter(sc.METRIC_GPU_MEMORY_USED, [gated(gpu.memory_used)], unit="By",
                                                description="GPU memory used (NVML)")


class _ProcessObserver:
    """psutil-based CPU utilization (delta since the last collection divided by elapsed time and by the CPUs available
    to the process, 0..1, as ``process.cpu.utilization`` is defined) and RSS (bytes) of process ``pid``."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._pid = pid
        self._proc = psutil.Process(pid)
        self._lock = threading.Lock()
        self._proc.cpu_percent(None)  # prime the delta
        try:
            self._cpus = max(len(os.sched_getaffinity(0)), 1)
        except (AttributeError, OSError):  # not Linux
            self._cpus = max(os.cpu_count() or 1, 1)

    def cpu(self, _: CallbackOptions) -> Iterable[Observation]:
        import psutil

        with self._lock:
            try:
                share = self._proc.cpu_percent(None) / 100.0 / self._cpus
            except psutil.Error:  # the observed server has exited (telemetry child at shutdown)
                return []
            return [Observation(share, {sc.PROCESS_PID: self._pid})]

    def rss(self, _: CallbackOptions) -> Iterable[Observation]:
        import psutil

        try:
            return [Observation(self._proc.memory_info().rss, {sc.PROCESS_PID: self._pid})]
        except psutil.Error:
            return []


class _NvmlObserver:
    """NVML GPU gauges; ``create()`` returns None when nvidia-ml-py or a GPU is absent (written, untested on CPU)."""

    def __init__(self, pynvml: Any, count: int) -> None:
        self._nvml = pynvml
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]

    @classmethod
    def create(cls) -> "_NvmlObserver | None":
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            return cls(pynvml, count) if count else None
        except Exception:  # noqa: BLE001 - no driver, no library, no GPU: all mean "no GPU metrics"
            return None

    def utilization(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100.0, {sc.HW_ID: str(i)})
                for i, h in enumerate(self._handles)]

    def memory_used(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._nvml.nvmlDeviceGetMemoryInfo(h).used, {sc.HW_ID: str(i)})
                for i, h in enumerate(self._handles)]
