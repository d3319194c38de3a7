"""View tests share one real collector (embedded chDB on the session's shared path, own database) filled once."""

from __future__ import annotations

import time

import pytest


from .data import fill


@pytest.fixture(scope="package")
def views_collector(tmp_path_factory):
    """A running :class:`Collector` (OTLP/HTTP, read API with ``/api/v1/engine``; alert rules off and evaluation
    once a day, so the alert table holds exactly what the tests write: with no rules an evaluation resolves every
    firing alert, which made tests reading alerts depend on running within 30 s of the fill)."""
    from vllm_otel_collector.analytics.engine import engine_route
    from vllm_otel_collector.testing import start_test_collector, stop_test_collector

    collector = start_test_collector("views", tmp_path_factory.mktemp("collector"),
                                     routes={"/api/v1/engine": engine_route},
                                     analytics={"rules": [], "evaluation_interval_seconds": 86400})
    yield collector
    stop_test_collector(collector)


@pytest.fixture(scope="package")
def filled(views_collector):
    """``(store, Filled)``: 90 minutes of serving data ending now, stored by the real collector."""
    info = fill(views_collector, now=int(time.time()))
    return views_collector.store, info
