"""The periodic-job thread: plug-ins' jobs (alert evaluation, model-load assembly, retention) on their intervals."""

from __future__ import annotations

import logging
import threading
import time

from vllm_otel_collector.plugins import PeriodicJob
from vllm_otel_collector.selfmetrics import SelfMetrics

log = logging.getLogger(__name__)


class Scheduler:
    """Runs each ``(interval_s, job(store, now_unix_s))`` every ``interval_s`` seconds (first run one interval after
    start) on one thread until ``stopping`` is set. A failing job is logged, counted (``processor_errors_total``)
    and runs again at its next interval."""

    def __init__(self, store, jobs: list[PeriodicJob], metrics: SelfMetrics, stopping: threading.Event):
        self.store, self.jobs, self.metrics, self._stopping = store, list(jobs), metrics, stopping

    def thread(self) -> threading.Thread | None:
        """The (unstarted) thread, or None without jobs."""
        if not self.jobs:
            return None
        return threading.Thread(target=self._loop, name="vllm-otel-periodic", daemon=True)

    def _loop(self) -> None:
        next_run = [time.monotonic() + interval for interval, _ in self.jobs]
        while not self._stopping.is_set():
            now = time.monotonic()
            for i, (interval, job) in enumerate(self.jobs):
                if now >= next_run[i]:
                    next_run[i] = now + interval
                    try:
                        job(self.store, time.time())
                    except Exception:  # noqa: BLE001 - a failing job is logged and retried next interval
                        self.metrics.processor_errors.inc()
                        log.exception("periodic job %r failed", job)
            self._stopping.wait(max(0.05, min(next_run) - time.monotonic()))
