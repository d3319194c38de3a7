"""Analytics test fixtures: a migrated Store on the process's shared chDB path, one database per test."""

from __future__ import annotations

import os

import pytest

from vllm_otel_collector.store import Store
from vllm_otel_collector.store.testing import fresh_store, shared_chdb_path


@pytest.fixture()
def store():
    """A migrated store whose ClickHouse objects use the default analytics config (level thresholds, settle)."""
    from vllm_otel_collector.analytics.config import AnalyticsConfig
    from vllm_otel_collector.analytics.sync import sync

    s = fresh_store("an")
    sync(s, AnalyticsConfig())
    yield s
    s.command(f"DROP DATABASE IF EXISTS `{s.database}`", use_database=False)
    s.close()


@pytest.fixture()
def collector(request, tmp_path):
    """A real collector (gRPC/HTTP/API on free ports, analytics plug-in) on the shared chDB path, in a database named
    after the test module; dropped afterwards."""
    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.config import load_config

    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    cfg = load_config(None, spool={"fsync": False}, clickhouse=f"chdb://{shared_chdb_path()}",
                      database=f"an_{module}_{os.getpid()}", data_dir=tmp_path / "c", grpc_listen="127.0.0.1:0",
                      http_listen="127.0.0.1:0", api_listen="127.0.0.1:0", flush_interval_s=0.2)
    c = Collector(cfg).start()
    assert c.wait_ready(60)
    yield c
    c.stop()
    Store(cfg.dsn, database=cfg.database).command(f"DROP DATABASE IF EXISTS `{cfg.database}`", use_database=False)


def _dropped_after(prefix: str):
    s = fresh_store(prefix)
    yield s
    s.command(f"DROP DATABASE IF EXISTS `{s.database}`", use_database=False)
    s.close()


@pytest.fixture(scope="session")
def shared_store():
    """One migrated store for the whole session, for property tests that only run queries (no table writes)."""
    yield from _dropped_after("an_shared")


@pytest.fixture(scope="module")
def module_store():
    """One migrated store per test module, for tests (property tests among them) that share its tables."""
    yield from _dropped_after("an_module")
