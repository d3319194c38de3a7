"""Collector test fixtures: a migrated Store on this process's shared chDB path, unique database per test."""

from __future__ import annotations

import pytest

from vllm_otel_collector.store.testing import fresh_store


@pytest.fixture()
def store():
    s = fresh_store("col")
    yield s
    s.command(f"DROP DATABASE IF EXISTS `{s.database}`", use_database=False)
    s.close()
