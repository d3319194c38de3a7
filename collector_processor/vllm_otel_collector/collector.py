"""The :class:`Collector`: wires store, spool, pipeline, forwarder, receivers and read API from a :class:`Config`.

Usable in-process (tests, the demo) and by ``vllm-otel collector``. Plug-ins (:mod:`vllm_otel_collector.plugins`)
are found through the entry-point group ``vllm_otel.collector_plugins``; each enabled one has its migrations applied
and its processors, periodic jobs and routes registered (``load_analytics: false`` disables ``analytics``). Extra
processors/periodic jobs/routes can also be passed to the constructor.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from vllm_otel_collector.api.server import RouteHandler, api_server
from vllm_otel_collector.config import Config, parse_listen
from vllm_otel_collector.forwarder import Forwarder
from vllm_otel_collector.pipeline import Pipeline
from vllm_otel_collector.plugins import PeriodicJob, Processor, enabled_plugins
from vllm_otel_collector.receivers.grpc_receiver import GrpcReceiver
from vllm_otel_collector.receivers.http_receiver import http_receiver
from vllm_otel_collector.selfmetrics import SelfMetrics
from vllm_otel_collector.pipeline.spool import Spool
from vllm_otel_collector.errors import UserError
from vllm_otel_collector.store import CORE, Store, migrate, redact_dsn, schema_is_current
from vllm_otel_collector.store.lease import Lease
from vllm_otel_collector.store.schema import MAP, Profile, profile

log = logging.getLogger(__name__)

def check_writable(store: Store) -> None:
    """Refuse a database whose contrib tables are not the ones this collector writes (``otel_*`` names, Map
    attributes), e.g. one ``vllm-otel migrate`` set up for an exporter's renamed or JSON-mode tables.

    Raises:
        UserError: one line naming the tables found.
    """
    prof = profile(store)
    ours = Profile()
    if (prof.traces, prof.gauge, prof.sum, prof.histogram, prof.exponential_histogram) != (
            ours.traces, ours.gauge, ours.sum, ours.histogram, ours.exponential_histogram) \
            or MAP != prof.traces_attributes or MAP != prof.metrics_attributes:
        raise UserError(f"database {store.database!r} serves the exporter's tables ({prof.traces}, "
                        f"{prof.traces_attributes} attributes); the vllm-otel collector writes otel_* tables with Map "
                        f"attributes: give it another database")


class Collector:
    """A running collector; ``start()`` → ``wait_ready()`` → ... → ``stop()``.

    Attributes after ``start()``: ``store``, ``pipeline``, ``metrics``, ``grpc_port``, ``http_port``, ``api_port``
    (the bound ports; useful with ``:0`` listen addresses).
    """

    def __init__(self, config: Config, processors: list[Processor] | None = None,
                 periodic: list[PeriodicJob] | None = None, routes: dict[str, RouteHandler] | None = None):
        self.config = config
        self.metrics = SelfMetrics()
        self._extra = (list(processors or []), list(periodic or []), dict(routes or {}))
        self.store: Store | None = None
        self.pipeline: Pipeline | None = None
        self.forwarder: Forwarder | None = None
        self.routes: dict[str, RouteHandler] = {}
        self.grpc_port = self.http_port = self.api_port = None
        self._servers: list = []
        self._grpc: GrpcReceiver | None = None
        self._spool: Spool | None = None
        self._ready = threading.Event()
        self._stopped = False
        self._sources = [CORE]

    def start(self) -> "Collector":
        """Open the store, apply migrations, replay the spool, start writer, forwarder, receivers and the read API.

        Raises:
            UserError: unreachable store, newer schema, spool in use, port in use, bad TLS files.
        """
        cfg = self.config
        try:
            st, pl, rc, api = cfg.store, cfg.pipeline, cfg.receivers, cfg.api
            self.store = Store(st.dsn.get_secret_value(), database=st.database)
            plugins = enabled_plugins(cfg)
            self._sources = [CORE] + [p.migrations for p in plugins if p.migrations is not None]
            migrate(self.store, cluster=st.cluster, ttl_days=st.ttl_days, sources=self._sources)
            check_writable(self.store)
            parts = [p.create(cfg) for p in plugins]
            for step in (s for part in parts for s in part.setup):
                step(self.store)
            processors = [x for part in parts for x in part.processors] + self._extra[0]
            periodic = [x for part in parts for x in part.periodic] + self._extra[1]
            self.routes = {k: v for part in parts for k, v in part.routes.items()}
            self.routes.update(self._extra[2])
            self._spool = Spool(Path(cfg.data_dir) / "spool", max_bytes=cfg.spool.max_bytes, fsync=cfg.spool.fsync)
            if cfg.forward.endpoint:
                f = cfg.forward
                self.forwarder = Forwarder(f.endpoint, self.metrics, signals=tuple(f.signals), max_queue=f.max_queue,
                                           insecure=f.insecure, ca_file=f.ca_file, headers=f.headers)
                self.forwarder.start()
            self.pipeline = Pipeline(
                self.store, self._spool, self.metrics, batch_rows=pl.batch_rows,
                flush_interval_s=pl.flush_interval_s, max_queue_rows=pl.max_queue_rows, limits=pl.limits,
                processors=processors, periodic=periodic, forward=self.forwarder.submit if self.forwarder else None,
                retry_max_wait_s=pl.retry_max_wait_s, native=pl.native_converter,
                lease=Lease(self.store, settle_s=0.2) if periodic else None)
            self.pipeline.replay()
            self.metrics.spool_bytes.set(self._spool.bytes)
            self.pipeline.start()
            token = rc.token.get_secret_value() if rc.token else None
            if rc.grpc_listen:
                host, port = parse_listen(rc.grpc_listen)
                self._grpc = GrpcReceiver(self.pipeline, host, port, token=token, tls=rc.tls,
                                          max_message_bytes=rc.max_message_bytes, workers=rc.grpc_workers)
                self._grpc.start()
                self.grpc_port = self._grpc.port
            if rc.http_listen:
                host, port = parse_listen(rc.http_listen)
                srv = http_receiver(self.pipeline, host, port, token=token, tls=rc.tls,
                                    max_message_bytes=rc.max_message_bytes)
                srv.start()
                self._servers.append(srv)
                self.http_port = srv.port
            if api.listen:
                host, port = parse_listen(api.listen)
                srv = api_server(self, host, port, self.routes, token=api.token.get_secret_value() if api.token
                                 else None, tls=api.tls)
                srv.start()
                self._servers.append(srv)
                self.api_port = srv.port
        except BaseException:
            self.stop()
            raise
        self._ready.set()
        log.info("collector up: store %s (database %s), gRPC %s, HTTP %s, API %s", redact_dsn(cfg.dsn),
                 cfg.database, self.grpc_port, self.http_port, self.api_port)
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """Block until started and the store answers with the schema applied; True when ready."""
        deadline = time.monotonic() + timeout_s
        if not self._ready.wait(timeout_s):
            return False
        while time.monotonic() < deadline:
            if self.readiness()[0]:
                return True
            time.sleep(0.05)
        return False

    def readiness(self) -> tuple[bool, dict]:
        """``(ready, detail)`` — ready when started, the store answers, every migration is applied and the writer is
        not stuck (a batch failing for more than a second: ``reason`` names the error)."""
        if not self._ready.is_set() or self.store is None or self._stopped:
            return False, {"reason": "not started"}
        if not self.store.ping():
            return False, {"reason": "store unreachable"}
        if not schema_is_current(self.store, sources=self._sources):
            return False, {"reason": "migrations not applied"}
        if (stuck := self.pipeline.stuck()) is not None:
            return False, {"reason": stuck, "queued_rows": self.pipeline.queued_rows}
        return True, {"queued_rows": self.pipeline.queued_rows, "spool_bytes": self._spool.bytes}

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every accepted request is written (and forwarded); True when done."""
        ok = self.pipeline.drain(timeout_s) if self.pipeline else True
        if self.forwarder is not None:
            ok = self.forwarder.drain(timeout_s) and ok
        return ok

    def stop(self) -> bool:
        """Stop accepting (receivers first), flush the queue into the store, stop the forwarder and the API.

        Returns True when every accepted request was written; otherwise the rest stays in the spool for the next
        start. Idempotent.
        """
        if self._stopped:
            return True
        self._stopped = True
        self._ready.clear()
        if self._grpc is not None:
            self._grpc.stop(grace_s=2.0)
        for srv in self._servers[:1] if self.config.http_listen else []:
            srv.stop()
        flushed = True
        if self.pipeline is not None:
            flushed = self.pipeline.stop(timeout_s=self.config.shutdown_timeout_s)
        if self.forwarder is not None:
            self.forwarder.stop(timeout_s=5.0)
        for srv in self._servers:
            srv.stop()
        if self._spool is not None:
            self._spool.close()
        if self.store is not None:
            self.store.close()
        return flushed

    def __enter__(self) -> "Collector":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
