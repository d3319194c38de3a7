"""Collector test fixtures: a migrated Store on this process's shared chDB path, unique database per test."""

from __future__ import annotations

import os

import pytest

from vllm_otel_collector.store.testing import fresh_store


@pytest.fixture()
def store():
    s = fresh_store("col")
    yield s
    s.command(f"DROP DATABASE IF EXISTS `{s.database}`", use_database=False)
    s.close()


@pytest.fixture()
def make_collector(tmp_path):
    """Factory: ``make_collector(**config_fields)`` → started in-process Collector on ephemeral ports, with its own
    database on the session's shared chDB path and its own spool dir; stopped (and its database dropped) after."""
    import itertools

    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.store import Store
    from vllm_otel_collector.store.testing import shared_chdb_path

    started = []
    counter = itertools.count()

    def make(processors=None, periodic=None, routes=None, **fields):
        n = next(counter)
        settings = dict(
            clickhouse=f"chdb://{shared_chdb_path()}", database=f"col_{os.getpid()}_{id(started)}_{n}",
            data_dir=tmp_path / f"c{n}", grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0",
            api_listen="127.0.0.1:0", load_analytics=False, flush_interval_s=0.2,
        )
        spool = fields.pop("spool", {"fsync": False})
        settings.update(fields)
        collector = Collector(load_config(None, spool=spool, **settings), processors=processors, periodic=periodic,
                              routes=routes).start()
        assert collector.wait_ready(30)
        started.append(collector)
        return collector

    yield make
    for c in started:
        c.stop()
        Store(c.config.dsn, database=c.config.database).command(
            f"DROP DATABASE IF EXISTS `{c.config.database}`", use_database=False)
