"""Collector test fixtures: a migrated Store on this process's shared chDB path, unique database per test."""

from __future__ import annotations


import pytest


@pytest.fixture()
def store(fresh_stores):
    """A migrated store with its own database (dropped after the test)."""
    return fresh_stores("col")


@pytest.fixture()
def make_collector(tmp_path):
    """Factory: ``make_collector(**config_fields)`` → started in-process Collector on ephemeral ports, with its own
    database on the session's shared chDB path and its own spool dir; stopped (and its database dropped) after."""
    import itertools

    from vllm_otel_collector.testing import start_test_collector, stop_test_collector

    started = []
    counter = itertools.count()

    def make(processors=None, periodic=None, routes=None, **fields):
        n = next(counter)
        fields.setdefault("load_analytics", False)
        data_dir = fields.pop("data_dir", tmp_path / f"c{n}")  # a test may reopen an earlier collector's spool
        collector = start_test_collector(f"col_{id(started)}_{n}", data_dir, ready_s=30,
                                         processors=processors, periodic=periodic, routes=routes, **fields)
        started.append(collector)
        return collector

    yield make
    for c in started:
        stop_test_collector(c)
