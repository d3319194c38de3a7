"""Analytics test fixtures: a migrated Store on the process's shared chDB path, one database per test."""

from __future__ import annotations

import pytest

from vllm_otel_collector.store.testing import fresh_store


@pytest.fixture()
def store():
    s = fresh_store("an")
    yield s
    s.command(f"DROP DATABASE IF EXISTS `{s.database}`", use_database=False)
    s.close()
