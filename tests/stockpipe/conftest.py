"""Stock-pipeline fixtures: empty databases on the session's chDB path (filled the way the contrib clickhouseexporter
fills them, :mod:`contrib_exporter`), and an in-process collector for the other side of the differential tests."""

from __future__ import annotations

import os

import pytest

from vllm_otel_collector.store.testing import fresh_store


@pytest.fixture()
def empty_store():
    """A store on a new, empty database (no migrations): what an exporter-only ClickHouse looks like before
    ``vllm-otel migrate``."""
    s = fresh_store("sp", apply_migrations=False)
    yield s
    s.command(f"DROP DATABASE IF EXISTS `{s.database}`", use_database=False)
    s.close()


@pytest.fixture()
def empty_stores():
    """Factory of further empty stores (dropped afterwards)."""
    made = []

    def make():
        s = fresh_store("sp", apply_migrations=False)
        made.append(s)
        return s

    yield make
    for s in made:
        s.command(f"DROP DATABASE IF EXISTS `{s.database}`", use_database=False)
        s.close()


@pytest.fixture()
def make_config():
    """``make_config(store, **fields)``: a collector config pointing at ``store``'s database."""
    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.store.testing import shared_chdb_path

    def make(store, **fields):
        return load_config(None, clickhouse=f"chdb://{shared_chdb_path()}", database=store.database, **fields)

    return make


@pytest.fixture()
def our_collector(tmp_path):
    """An in-process vllm-otel collector (no receivers' ports needed: tests hand it request bodies) on a new
    database; stopped and dropped afterwards."""
    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.store import Store
    from vllm_otel_collector.store.testing import shared_chdb_path

    cfg = load_config(None, clickhouse=f"chdb://{shared_chdb_path()}", database=f"sp_ours_{os.getpid()}_{id(tmp_path)}",
                      data_dir=tmp_path / "collector", grpc_listen="127.0.0.1:0", http_listen="off", api_listen="off",
                      spool={"fsync": False}, flush_interval_s=0.2)
    c = Collector(cfg).start()
    assert c.wait_ready(60)
    yield c
    c.stop()
    Store(cfg.dsn, database=cfg.database).command(f"DROP DATABASE IF EXISTS `{cfg.database}`", use_database=False)
