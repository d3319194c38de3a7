"""Metric instruments, created once per ``instrument()`` call from the given meter.

Bucket boundaries are the GenAI semantic conventions' advisories
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/): seconds for latencies, tokens for usage.
vLLM's engine metric set lives in :mod:`.engine_metrics`; process/GPU instruments are observed on collection
(semconv types: ``process.cpu.utilization`` / ``hw.gpu.utilization`` gauges, ``process.memory.usage`` /
``hw.gpu.memory.usage`` up-down counters).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from opentelemetry.instrumentation.vllm import engine_metrics
from opentelemetry.instrumentation.vllm import semconv as sc

TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]


class RequestInstruments:
    """The request-path instruments recorded by :mod:`.record` (per finished request) and the hook-error counter:
    what both the server (in-process writing) and the telemetry child (:mod:`.export_child`) create."""

    def __init__(self, meter: Meter) -> None:
        self.ttft = meter.create_histogram(sc.METRIC_TTFT, unit="s", description="Time to first token",
                                           explicit_bucket_boundaries_advisory=TTFT_BUCKETS)
        self.tpot = meter.create_histogram(sc.METRIC_TPOT, unit="s", description="Time per output token after the first",
                                           explicit_bucket_boundaries_advisory=TPOT_BUCKETS)
        self.duration = meter.create_histogram(sc.METRIC_REQUEST_DURATION, unit="s",
                                               description="Request duration, arrival to last token",
                                               explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        self.token_usage = meter.create_histogram(sc.METRIC_TOKEN_USAGE, unit="{token}",
                                                  description="Tokens per client request by gen_ai.token.type",
                                                  explicit_bucket_boundaries_advisory=TOKEN_BUCKETS)
        self.requests = meter.create_counter(sc.METRIC_REQUESTS, unit="{request}",
                                             description="Finished requests by vllm.finish_reason")
        self.zombies = meter.create_counter(sc.METRIC_ZOMBIES, unit="{request}",
                                            description="Requests ended by the instrumentation after the timeout")
        self.hook_errors = meter.create_counter(sc.METRIC_HOOK_ERRORS, unit="{error}",
                                                description="Exceptions caught in vllm-otel hooks")


class Instruments(RequestInstruments):
    """The request-path instruments, the process/GPU observers of this process, and the engine metric set
    (:mod:`.engine_metrics`, bound to the same meter). Construction registers the observable callbacks. While a
    telemetry child is up (:data:`.export_process.LINK`), the child observes this process and the GPUs instead, and
    these callbacks report nothing (no duplicate series)."""

    def __init__(self, meter: Meter) -> None:
        super().__init__(meter)
        engine_metrics.AGGREGATOR.bind(meter)
        from opentelemetry.instrumentation.vllm.export_process import LINK

        register_host_observers(meter, os.getpid(), silent=LINK.up)


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
