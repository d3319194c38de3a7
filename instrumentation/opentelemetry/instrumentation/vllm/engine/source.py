"""Where this process's engine metric set comes from: vLLM's Prometheus registry (:mod:`.registry`) when the
engine has vLLM's ``PrometheusStatLogger`` and the SDK has the reader seam (:mod:`.bridge`); else our stat logger
(:mod:`.stat_logger` → :mod:`.aggregator`, the fallback). Decided per engine at its construction
(:func:`choose`, from :mod:`..hooks.engines`).

Registry source, by where the process's telemetry is built:

- **here** (no telemetry child, or the child is down): each collection of this process's readers reads the registry
  (:func:`.registry.snapshot` + :func:`.registry.translate`) — once per export interval, never per engine step;
- **in the telemetry child**: a daemon thread (``vllm-otel-registry``) sends a snapshot every
  :func:`snapshot_interval_s` seconds (half the export interval), and the flush chain sends one before each flush of the child (so
  ``force_flush()``/``shutdown()`` include every step recorded before them); the child translates the latest one at
  each of its collections.

A vLLM that lacks what the registry source reads (:mod:`..compat`, ``engine metrics (registry)``) keeps the stat
logger; one that also lacks what the stat logger reads (``engine metrics (stat logger)``) gets neither: our logger is
taken out, one warning says why. Kept on the stat logger: engines with LoRA on (``vllm:lora_requests_info`` carries adapter names without the
per-adapter request counts our LoRA gauges report), vLLM without ``PrometheusStatLogger`` (or a logger list we do not
recognise), ``OTEL_INSTRUMENTATION_VLLM_ENGINE_METRICS_FROM_REGISTRY=false``. With several API servers
(``--api-server-count``, Prometheus multiprocess mode) only ``client_index`` 0 exports the set (the registry there is
every API server's total, as ``/metrics``); the others export none of it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from opentelemetry.instrumentation.vllm.engine.bridge import ReaderBridge
from opentelemetry.instrumentation.vllm.engine.registry import EngineCollectors, snapshot, translate, vllm_registry
from opentelemetry.instrumentation.vllm.engine.table import HISTOGRAM
from opentelemetry.instrumentation.vllm.safety import logger, report_hook_error, timed
from opentelemetry.instrumentation.vllm import compat
from opentelemetry.instrumentation.vllm.settings import (ENV_ENGINE_HISTOGRAMS, ENV_ENGINE_METRICS_FROM_REGISTRY,
                                                         ENV_FORCE, env_flag)

SCOPE = "opentelemetry.instrumentation.vllm"
#: Most seconds between two snapshots sent to the telemetry child.
MAX_SNAPSHOT_INTERVAL_S = 30.0


def snapshot_interval_s(environ: Any = os.environ) -> float:
    """Seconds between snapshots for the child: half the SDK's ``OTEL_METRIC_EXPORT_INTERVAL`` (ms, default 60000;
    so an export carries values at most half an interval old), at most :data:`MAX_SNAPSHOT_INTERVAL_S`, at least
    0.5. A flush sends one first, whatever the interval."""
    try:
        ms = float(environ.get("OTEL_METRIC_EXPORT_INTERVAL", "60000"))
    except ValueError:
        ms = 60000.0
    if not ms == ms or ms <= 0:  # NaN or nonsense: the SDK's default
        ms = 60000.0
    return max(0.5, min(ms / 2000.0, MAX_SNAPSHOT_INTERVAL_S))


class RegistrySource:
    """The process's registry source. Server side: :meth:`activate` (an engine chose it), :meth:`points` (the
    in-process bridge), :meth:`send_snapshot` (to the child). Child side: :meth:`receive` stores the server's latest
    snapshot, which :meth:`points` then translates."""

    def __init__(self) -> None:
        self.bridge = ReaderBridge(SCOPE, self.points)
        self.active = False  # an engine of this process uses the registry and this process exports it (sticky)
        self.paused = False  # uninstrumented: export nothing until instrumented again
        self.in_child = False
        self.model = ""
        self.collectors: Any = None  # the engines' own vLLM collectors (EngineCollectors), else the registry
        self.start_ns = time.time_ns()
        self.link: Any = None  # the LinkHolder (server side; set by the instrumentor)
        #: ``sink(link, model, start_ns, families)`` sends a snapshot down the link (set by the instrumentor:
        #: :func:`..handoff.sink.snapshot_to_child`; the engine room does not know the wire).
        self.sink: Any = None
        self._latest: tuple | None = None  # (model, start_ns, families), child side
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- server side ----------------------------------------------------------------------------------------------
    def activate(self, model: str, collectors: Any = None) -> None:
        """Export the engine set from the registry (an engine chose it; ``collectors``: its
        :class:`.registry.EngineCollectors`, read instead of the global registry so that a later engine's logger
        cannot hide this one's); starts the snapshot thread when a telemetry child may take them."""
        with self._lock:
            if collectors is not None:
                if self.collectors is None:
                    self.collectors = collectors
                else:
                    self.collectors.add(collectors)
            self.model, self.active = model, True
            self.start_ns = time.time_ns()
            self._start_thread()

    def pause(self) -> None:
        """Uninstrumented: export nothing, stop the snapshot thread (the engines keep their choice: vLLM's registry
        goes on counting, and :meth:`resume` exports it again)."""
        with self._lock:
            self.paused = True
            self._stop.set()
            self._thread = None

    def resume(self) -> None:
        """Instrumented (again): export the registry of engines that chose it."""
        with self._lock:
            self.paused = False
            if self.active:
                self._start_thread()

    def _start_thread(self) -> None:
        if self.link is not None and self.link.enabled and self._thread is None and not self.paused:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="vllm-otel-registry",
                                            daemon=True)
            self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        interval = snapshot_interval_s()
        while not stop.wait(interval):
            self.send_snapshot()

    @timed("engine.registry_snapshot")
    def send_snapshot(self) -> bool:
        """Send the registry's current values to the live telemetry child; False when there is none (then this
        process's own collections read the registry) or the source is not active."""
        if not self.active or self.paused or self.link is None or self.sink is None:
            return False
        link = self.link.get()
        if link is None:
            return False
        try:
            self.sink(link, self.model, self.start_ns, self._snapshot())
            return True
        except Exception as exc:  # noqa: BLE001 - child gone, or a registry we cannot read
            report_hook_error("engine.registry", exc)
            return False

    def _snapshot(self) -> list:
        families = snapshot(self.collectors if self.collectors is not None else vllm_registry())
        if not env_flag(ENV_ENGINE_HISTOGRAMS, True):
            from opentelemetry.instrumentation.vllm.engine.table import PROMETHEUS, METRICS

            families = [f for f in families if f[0] not in PROMETHEUS or METRICS[PROMETHEUS[f[0]][0]][0] != HISTOGRAM]
        return families

    # -- child side -----------------------------------------------------------------------------------------------
    def receive(self, model: str, start_ns: int, families: list) -> None:
        """Keep the server's latest snapshot (child side)."""
        self._latest = (model, start_ns, families)

    # -- both: what a collection adds -----------------------------------------------------------------------------
    def points(self) -> list | None:
        """The engine set's points for one collection, or None: in the child the latest snapshot received; in the
        server the registry now, unless a live child exports them."""
        if self.in_child:
            latest = self._latest
            return None if latest is None else translate(latest[2], latest[0], latest[1])
        if not self.active or self.paused or (self.link is not None and self.link.up()):
            return None
        return translate(self._snapshot(), self.model, self.start_ns)


#: The process's registry source.
SOURCE = RegistrySource()


def choose(engine: Any, client_index: int = 0) -> bool:
    """Decide the engine metric source of a just-constructed ``AsyncLLM``/``LLMEngine`` (``engine``): True when the
    registry serves it (our stat logger is then taken out of vLLM's logger list: no per-step call of ours). Never
    raises."""
    try:
        from opentelemetry.instrumentation.vllm.engine.stat_logger import VLLMOtelStatLogger

        loggers = getattr(getattr(engine, "logger_manager", None), "stat_loggers", None)
        if not isinstance(loggers, list):
            return False
        if not env_flag(ENV_ENGINE_METRICS_FROM_REGISTRY, True):
            return False
        config = getattr(engine, "vllm_config", None)
        ours = [lg for lg in loggers if isinstance(lg, VLLMOtelStatLogger)]
        if (SOURCE.bridge.installed == 0  # no SDK reader seam in this process
                or not any(type(lg).__name__ == "PrometheusStatLogger" for lg in loggers)
                or getattr(config, "lora_config", None) is not None
                or compat.live_problems(compat.ENGINE_REGISTRY)):
            problems = compat.live_problems(compat.ENGINE_STAT_LOGGER)
            if problems and ours and not env_flag(ENV_FORCE, False):  # our logger would read what is not there
                compat.report_skip(compat.ENGINE_STAT_LOGGER, problems)
                loggers[:] = [lg for lg in loggers if not isinstance(lg, VLLMOtelStatLogger)]
            return False
        for lg in ours:
            lg.info.bridged = True  # what its constructor queued is not aggregated (the registry has it)
        loggers[:] = [lg for lg in loggers if not isinstance(lg, VLLMOtelStatLogger)]
        if client_index == 0:
            model = ours[0].model if ours else ""
            if not model:
                from opentelemetry.instrumentation.vllm.engine.table import served_model_name

                model = served_model_name(getattr(config, "model_config", None))
            SOURCE.activate(model, EngineCollectors.capture(vllm_registry()))
        return True
    except Exception as exc:  # noqa: BLE001 - keep whatever vLLM has
        report_hook_error("engine.init", exc)
        logger.debug("vllm-otel: engine metrics stay on the stat logger", exc_info=True)
        return False
