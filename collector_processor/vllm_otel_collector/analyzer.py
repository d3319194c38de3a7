"""``vllm-otel analyzer``: what ClickHouse cannot do by itself, for a database that any pipeline fills.

In the stock pipeline (vLLM → OpenTelemetry Collector → clickhouseexporter → ClickHouse) the materialized views that
``vllm-otel migrate`` installs derive every table; what is left needs a process: alert evaluation (state in
``llm_alerts``, Alertmanager webhooks, log lines) and per-table retention. The analyzer runs the enabled plug-ins'
setup steps (the analytics config's level thresholds into ClickHouse) and periodic jobs — the collector's, minus
its receivers, spool and writer.

Run two or more for availability: they share one lease row (:mod:`vllm_otel_collector.store.lease`), so one runs
the jobs and the others stand by and take over within ``lease_ttl_s`` when it stops renewing (at once after a clean
stop, which releases it). A collector on the same database takes part in the same lease.
"""

from __future__ import annotations

import logging
import threading

from vllm_otel_collector.config import Config
from vllm_otel_collector.errors import UserError
from vllm_otel_collector.pipeline.scheduler import Scheduler
from vllm_otel_collector.plugins import enabled_plugins
from vllm_otel_collector.selfmetrics import SelfMetrics
from vllm_otel_collector.store import CORE, Store, schema_is_current
from vllm_otel_collector.store.lease import Lease

log = logging.getLogger(__name__)


class Analyzer:
    """A running analyzer: ``start()`` → (``tick(now)`` in tests) → ``stop()``.

    Args:
        config: the collector config (``clickhouse``/``database``, ``analytics:`` section).
        holder: lease holder id (default: host:pid:random).
        lease_ttl_s: seconds without renewal before a standby takes over.
        settle_s: seconds a claimant waits before reading who won a contested claim.
        background: start the scheduler thread (False: the caller drives :meth:`tick`).
    """

    def __init__(self, config: Config, holder: str | None = None, lease_ttl_s: float = 30.0, settle_s: float = 0.5,
                 background: bool = True):
        self.config = config
        self.metrics = SelfMetrics()
        self._holder, self._ttl, self._settle, self._background = holder, lease_ttl_s, settle_s, background
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.store: Store | None = None
        self.lease: Lease | None = None
        self.scheduler: Scheduler | None = None

    def start(self) -> "Analyzer":
        """Open the store, check the schema, run the setup steps, start the periodic jobs under the lease.

        Raises:
            UserError: unreachable store, or a database ``vllm-otel migrate`` has not set up (one line).
        """
        cfg = self.config
        self.store = Store(cfg.store.dsn.get_secret_value(), database=cfg.store.database)
        plugins = enabled_plugins(cfg)
        sources = [CORE] + [p.migrations for p in plugins if p.migrations is not None]
        if not schema_is_current(self.store, sources=sources):
            self.store.close()
            raise UserError(f"database {cfg.store.database!r} is not set up for vllm-otel (or set up by an older "
                            f"version): run `vllm-otel migrate` against it first")
        parts = [p.create(cfg) for p in plugins]
        for step in (s for part in parts for s in part.setup):
            step(self.store)
        jobs = [job for part in parts for job in part.periodic]
        self.lease = Lease(self.store, holder=self._holder, ttl_s=self._ttl, settle_s=self._settle)
        self.scheduler = Scheduler(self.store, jobs, self.metrics, self._stopping, lease=self.lease)
        if self._background:
            self._thread = self.scheduler.thread()
            if self._thread is not None:
                self._thread.start()
        log.info("analyzer up: database %s, %d periodic job(s), lease holder %s", cfg.store.database, len(jobs),
                 self.lease.holder)
        return self

    def tick(self, now: float | None = None) -> bool:
        """One round now: hold the lease, run every job; False when another process holds the lease."""
        return self.scheduler.run_once(now)

    def stop(self) -> None:
        """Stop the jobs, release the lease (a standby takes over at once), close the store. Idempotent."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        elif self.lease is not None:
            try:
                self.lease.release()
            except Exception:  # noqa: BLE001 - the store is down: the lease expires on its own
                pass
        if self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> "Analyzer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
