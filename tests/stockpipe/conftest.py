"""Stock-pipeline fixtures: empty databases on the session's chDB path (filled the way the contrib clickhouseexporter
fills them, :mod:`contrib_exporter`), and an in-process collector for the other side of the differential tests."""

from __future__ import annotations


import pytest



@pytest.fixture()
def empty_store(fresh_stores):
    """A store on a new, empty database (no migrations): what an exporter-only ClickHouse looks like before
    ``vllm-otel migrate``."""
    return fresh_stores("sp", apply_migrations=False)


@pytest.fixture()
def empty_stores(fresh_stores):
    """Factory of further empty stores (dropped afterwards)."""
    return lambda: fresh_stores("sp", apply_migrations=False)


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
    from vllm_otel_collector.testing import start_test_collector, stop_test_collector

    c = start_test_collector(f"sp_ours_{id(tmp_path)}", tmp_path / "collector", http_listen="off", api_listen="off")
    yield c
    stop_test_collector(c)
