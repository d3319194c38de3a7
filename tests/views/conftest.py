"""View tests share one real collector (embedded chDB on the session's shared path, own database) filled once."""

from __future__ import annotations

import os
import time

import pytest

from vllm_otel_collector.store import Store
from vllm_otel_collector.store.testing import shared_chdb_path

from .data import fill


@pytest.fixture(scope="package")
def views_collector(tmp_path_factory):
    """A running :class:`Collector` (OTLP/HTTP, read API with ``/api/v1/engine``; alert rules off and evaluation
    once a day, so the alert table holds exactly what the tests write: with no rules an evaluation resolves every
    firing alert, which made tests reading alerts depend on running within 30 s of the fill)."""
    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.analytics.engine import engine_route

    cfg = load_config(None, spool={"fsync": False}, clickhouse=f"chdb://{shared_chdb_path()}",
                      database=f"views_{os.getpid()}", data_dir=tmp_path_factory.mktemp("collector"),
                      grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", api_listen="127.0.0.1:0",
                      flush_interval_s=0.2, analytics={"rules": [], "evaluation_interval_seconds": 86400})
    collector = Collector(cfg, routes={"/api/v1/engine": engine_route}).start()
    assert collector.wait_ready(60)
    yield collector
    collector.stop()
    Store(cfg.dsn, database=cfg.database).command(f"DROP DATABASE IF EXISTS `{cfg.database}`", use_database=False)


@pytest.fixture(scope="package")
def filled(views_collector):
    """``(store, Filled)``: 90 minutes of serving data ending now, stored by the real collector."""
    info = fill(views_collector, now=int(time.time()))
    return views_collector.store, info
