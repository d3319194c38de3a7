"""View tests share one filled store (module scope is enough: the data is read-only)."""

from __future__ import annotations

import time

import pytest

from vllm_otel_collector.store.testing import fresh_store

from .data import fill


@pytest.fixture(scope="session")
def filled():
    """``(store, Filled)``: a migrated chDB store with 90 minutes of serving data ending now."""
    store = fresh_store("views")
    info = fill(store, now=int(time.time()))
    yield store, info
    store.command(f"DROP DATABASE IF EXISTS `{store.database}`", use_database=False)
    store.close()
