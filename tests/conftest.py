"""Shared fixtures and the test layers. Area fixtures live in tests/<area>/conftest.py.

Markers say what a test needs (pyproject.toml lists them): ``engine`` (imports or starts vLLM: slow), ``chdb``
(embedded ClickHouse), ``browser`` (headless Chromium). ``engine`` and ``browser`` are set by the modules; ``chdb`` is
set here for every test that uses a ClickHouse fixture (:data:`CHDB_FIXTURES`) or lives in a module marked so.
``make test-fast`` runs the rest (``-m "not engine and not chdb and not browser"``) with
``VLLM_OTEL_TEST_FAST=1``, which makes importing ``vllm`` or ``chdb`` fail: a fast test that needs either is a
missing marker, caught at once instead of making the fast layer slow.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
from pathlib import Path

import pytest

#: Fixtures that open embedded ClickHouse (any area's conftest).
CHDB_FIXTURES = frozenset({
    "analytics_api", "api", "cmp_store", "collector", "demo_run", "empty_store", "empty_stores", "filled", "fresh_stores",
    "fuzz_target",
    "grafana_data", "guarded_api", "hostile_stores", "loaded", "make_collector", "module_store", "our_collector",
    "shared_store", "stock", "store", "stored", "stores", "target", "views_collector"})


class _FastLayerGuard(importlib.abc.MetaPathFinder):
    """``VLLM_OTEL_TEST_FAST=1``: importing vLLM or chDB fails with the marker to add."""

    BLOCKED = {"vllm": "engine", "chdb": "chdb"}

    def find_spec(self, fullname, path=None, target=None):  # noqa: D401 - importlib protocol
        marker = self.BLOCKED.get(fullname.split(".")[0])
        if marker is not None:
            raise ImportError(f"test-fast: this test imports {fullname}; mark it {marker!r}")
        return None


def pytest_configure(config):
    if os.environ.get("VLLM_OTEL_TEST_FAST"):
        sys.meta_path.insert(0, _FastLayerGuard())


def pytest_collection_modifyitems(config, items):
    for item in items:
        if CHDB_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("chdb"):
            item.add_marker(pytest.mark.chdb)

# vLLM on CPU: keep the KV cache small and the engine quiet in tests.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

CACHE_DIR = Path(os.environ.get("VLLM_OTEL_TEST_CACHE", Path(__file__).resolve().parent.parent / ".cache" / "tests"))


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """Directory of the tiny random-weight Llama (built once per checkout, seconds)."""
    from vllm_otel_inference.tiny_model import build_tiny_llama

    return build_tiny_llama(CACHE_DIR / "tiny-llama")


@pytest.fixture()
def fresh_stores():
    """The one store factory: ``fresh_stores(prefix, apply_migrations=True)`` → a :class:`Store` on the session's
    shared chDB path with its own new database; every one made is dropped after the test. Area fixtures (``store``,
    ``empty_store``…) are this with their prefix; module- and session-scoped ones use ``temporary_store``."""
    from vllm_otel_collector.store.testing import drop_store, fresh_store

    made = []

    def make(prefix: str = "t", apply_migrations: bool = True):
        made.append(fresh_store(prefix, apply_migrations))
        return made[-1]

    yield make
    for s in made:
        drop_store(s)
