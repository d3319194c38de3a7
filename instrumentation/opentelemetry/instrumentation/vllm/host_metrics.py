"""Process and GPU gauges observed at metric collection: ``process.cpu.utilization`` (a fraction of the CPUs available
to the process) and ``process.memory.usage`` (bytes) of one process (psutil), and NVML ``hw.gpu.*`` gauges when a GPU
is present (semconv types: utilization gauges, memory up-down counters). Registered once per process tree, on the
frontend's side: by the server (for itself and vLLM's EngineCore/workers below it) or by the telemetry child (for the
same tree, without itself; the server then stays silent: no duplicate series). vLLM's engine processes register none
(:mod:`.roles`), so the GPUs are observed once.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from opentelemetry.instrumentation.vllm import semconv as sc


def register_host_observers(meter: Meter, pid: int, silent: Callable[[], bool] | None = None,
                            exclude: frozenset[int] = frozenset()) -> None:
    """``process.cpu.utilization`` / ``process.memory.usage`` of process ``pid`` and its descendants (but ``exclude``)
    and the NVML GPU instruments (when a GPU is present) on ``meter``. ``silent()`` true: the callbacks observe
    nothing this time."""
    proc = _ProcessObserver(pid, exclude)
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
    to the process, 0..1, as ``process.cpu.utilization`` is defined) and RSS (bytes) of process ``pid`` and of its
    descendants (vLLM's EngineCore and workers: the model's memory lives there), each point with ``process.pid`` and
    ``process.command`` (the process title, e.g. ``VLLM::EngineCore``). ``exclude``: pids not observed (the telemetry
    child itself). A descendant's CPU is reported from its second collection on (the first primes the delta)."""

    def __init__(self, pid: int, exclude: frozenset[int] = frozenset()) -> None:
        import psutil

        self._pid = pid
        self._exclude = exclude
        self._root = psutil.Process(pid)
        self._procs: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._root.cpu_percent(None)  # prime the delta
        self._procs[pid] = (self._root, self._attrs(self._root))
        try:
            self._cpus = max(len(os.sched_getaffinity(0)), 1)
        except (AttributeError, OSError):  # not Linux
            self._cpus = max(os.cpu_count() or 1, 1)

    @staticmethod
    def _attrs(proc: Any) -> dict[str, Any]:
        attrs: dict[str, Any] = {sc.PROCESS_PID: proc.pid}
        try:
            cmd = proc.cmdline()
            if cmd:
                attrs[sc.PROCESS_COMMAND] = os.path.basename(cmd[0].split(" ", 1)[0])
        except Exception:  # noqa: BLE001 - gone, or not permitted: the pid alone
            pass
        return attrs

    def _tree(self) -> list[tuple[Any, dict[str, Any], bool]]:
        """``(process, attributes, primed)`` for the root and its live descendants (new ones primed now)."""
        import psutil

        try:
            kids = [k for k in self._root.children(recursive=True) if k.pid not in self._exclude]
        except psutil.Error:
            kids = []
        live = {self._pid} | {k.pid for k in kids}
        for pid in [p for p in self._procs if p not in live]:
            del self._procs[pid]
        out = [(self._root, self._procs[self._pid][1], True)]
        for k in kids:
            known = self._procs.get(k.pid)
            if known is None:
                try:
                    k.cpu_percent(None)
                except psutil.Error:
                    continue
                self._procs[k.pid] = (k, self._attrs(k))
                out.append((k, self._procs[k.pid][1], False))
            else:
                out.append((known[0], known[1], True))
        return out

    def cpu(self, _: CallbackOptions) -> Iterable[Observation]:
        import psutil

        with self._lock:
            out = []
            for proc, attrs, primed in self._tree():
                if not primed:
                    continue
                try:
                    out.append(Observation(proc.cpu_percent(None) / 100.0 / self._cpus, attrs))
                except psutil.Error:  # exited (the observed server, at the telemetry child's shutdown)
                    pass
            return out

    def rss(self, _: CallbackOptions) -> Iterable[Observation]:
        import psutil

        with self._lock:
            out = []
            for proc, attrs, _primed in self._tree():
                try:
                    out.append(Observation(proc.memory_info().rss, attrs))
                except psutil.Error:
                    pass
            return out


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
