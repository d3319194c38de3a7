"""The periodic-job thread: plug-ins' jobs (alert evaluation, retention) on their intervals, in the one process that
holds the database's lease (:mod:`vllm_otel_collector.store.lease`) when several could run them."""

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
    and runs again at its next interval.

    With a ``lease`` the jobs run only while this process holds it: the lease is renewed (or claimed) every
    ``lease.ttl_s / 3`` seconds; a standby process keeps trying and takes over when the holder stops renewing. A
    failing lease query counts as "not held".
    """

    def __init__(self, store, jobs: list[PeriodicJob], metrics: SelfMetrics, stopping: threading.Event,
                 lease=None):
        self.store, self.jobs, self.metrics, self._stopping = store, list(jobs), metrics, stopping
        self.lease = lease

    def thread(self) -> threading.Thread | None:
        """The (unstarted) thread, or None without jobs."""
        if not self.jobs:
            return None
        return threading.Thread(target=self._loop, name="vllm-otel-periodic", daemon=True)

    def holding(self, now: float | None = None) -> bool:
        """Renew/claim the lease (True without one); a store error means "not held" (logged)."""
        if self.lease is None:
            return True
        try:
            return self.lease.hold(now)
        except Exception as exc:  # noqa: BLE001 - the store is down: act as standby until it answers
            log.warning("lease %r: %s", self.lease.name, str(exc).splitlines()[0][:200] if str(exc) else exc)
            self.lease.held = False
            return False

    def run_once(self, now: float | None = None) -> bool:
        """Hold the lease, then run every job once at ``now`` (unix s, default the clock). Returns False (nothing
        run) when another process holds the lease."""
        now = time.time() if now is None else now
        if not self.holding(now):
            return False
        for _, job in self.jobs:
            self._run(job, now)
        return True

    def _run(self, job, now: float) -> None:
        try:
            job(self.store, now)
        except Exception:  # noqa: BLE001 - a failing job is logged and retried next interval
            self.metrics.processor_errors.inc()
            log.exception("periodic job %r failed", job)

    def _loop(self) -> None:
        start = time.monotonic()
        next_run = [start + interval for interval, _ in self.jobs]
        renew_every = self.lease.ttl_s / 3 if self.lease is not None else float("inf")
        next_renew = start
        held = self.lease is None
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now >= next_renew:
                    held = self.holding()
                    next_renew = now + renew_every
                for i, (interval, job) in enumerate(self.jobs):
                    if now >= next_run[i]:
                        next_run[i] = now + interval
                        if held:
                            self._run(job, time.time())
                self._stopping.wait(max(0.05, min(min(next_run), next_renew) - time.monotonic()))
        finally:
            if self.lease is not None:
                try:
                    self.lease.release()
                except Exception:  # noqa: BLE001 - the store is down at stop: the lease simply expires
                    pass
