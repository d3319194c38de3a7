"""Test support for whole collectors: :func:`start_test_collector` / :func:`stop_test_collector` — the one way the
test suites (collector, analytics, views, stock pipeline) run an in-process collector: the process's shared chDB path
(:mod:`.store.testing`), a database of its own, ephemeral ports, no fsync, 0.2 s flushes; stopping drops the
database.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vllm_otel_collector.store.testing import shared_chdb_path


def start_test_collector(name: str, data_dir: str | Path, *, ready_s: float = 60.0, processors: Any = None,
                         periodic: Any = None, routes: Any = None, **fields: Any):
    """A started :class:`~vllm_otel_collector.collector.Collector` for tests, in database ``<name>_<pid>``. ``fields``
    override the test defaults (any ``load_config`` field, e.g. ``load_analytics=False``, ``http_listen="off"``,
    ``analytics={...}``, or ``database`` to reopen an existing one by its full name).

    Raises:
        AssertionError: not ready within ``ready_s`` seconds.
    """
    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.config import load_config

    settings: dict[str, Any] = dict(clickhouse=f"chdb://{shared_chdb_path()}", database=f"{name}_{os.getpid()}",
                                    data_dir=Path(data_dir), grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0",
                                    api_listen="127.0.0.1:0", flush_interval_s=0.2, spool={"fsync": False})
    settings.update(fields)
    collector = Collector(load_config(None, **settings), processors=processors, periodic=periodic,
                          routes=routes).start()
    assert collector.wait_ready(ready_s), "test collector not ready"
    return collector


def stop_test_collector(collector: Any) -> None:
    """Stop ``collector`` and drop its database."""
    from vllm_otel_collector.store import Store

    collector.stop()
    Store(collector.config.dsn, database=collector.config.database).command(
        f"DROP DATABASE IF EXISTS `{collector.config.database}`", use_database=False)
