"""Analytics test fixtures: a migrated Store on the process's shared chDB path, one database per test."""

from __future__ import annotations


import pytest

from vllm_otel_collector.store.testing import temporary_store


@pytest.fixture()
def store(fresh_stores):
    """A migrated store whose ClickHouse objects use the default analytics config (level thresholds, settle)."""
    from vllm_otel_collector.analytics.config import AnalyticsConfig
    from vllm_otel_collector.analytics.sync import sync

    s = fresh_stores("an")
    sync(s, AnalyticsConfig())
    return s


@pytest.fixture()
def collector(request, tmp_path):
    """A real collector (gRPC/HTTP/API on free ports, analytics plug-in) on the shared chDB path, in a database named
    after the test module; dropped afterwards."""
    from vllm_otel_collector.testing import start_test_collector, stop_test_collector

    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    c = start_test_collector(f"an_{module}", tmp_path / "c")
    yield c
    stop_test_collector(c)


@pytest.fixture(scope="session")
def shared_store():
    """One migrated store for the whole session, for property tests that only run queries (no table writes)."""
    with temporary_store("an_shared") as s:
        yield s


@pytest.fixture(scope="module")
def module_store():
    """One migrated store per test module, for tests (property tests among them) that share its tables."""
    with temporary_store("an_module") as s:
        yield s
