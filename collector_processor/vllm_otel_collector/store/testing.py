"""Test support: chDB allows one data path per process, so every in-process test shares one.

Use :func:`shared_chdb_path` for the path and a unique database per test (:func:`fresh_store`) for isolation.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator

from vllm_otel_collector.store.migrations import migrate
from vllm_otel_collector.store.store import Store

_PATH: str | None = None
_GUARD = threading.Lock()
_COUNTER = itertools.count(1)


def shared_chdb_path() -> str:
    """The one chDB data directory of this process (a temp dir removed at exit, or ``$VLLM_OTEL_TEST_CHDB``)."""
    global _PATH
    with _GUARD:
        if _PATH is None:
            _PATH = os.environ.get("VLLM_OTEL_TEST_CHDB") or tempfile.mkdtemp(prefix="vllm-otel-chdb-")
            if "VLLM_OTEL_TEST_CHDB" not in os.environ:
                atexit.register(shutil.rmtree, _PATH, True)
        return _PATH


def fresh_store(prefix: str = "t", apply_migrations: bool = True) -> Store:
    """A :class:`Store` on the shared chDB path with a new, unique database (``<prefix>_<pid>_<n>``), migrated."""
    store = Store(f"chdb://{shared_chdb_path()}", database=f"{prefix}_{os.getpid()}_{next(_COUNTER)}")
    if apply_migrations:
        migrate(store)
    return store


def drop_store(store: Store) -> None:
    """Drop ``store``'s database and close it (the end of a :func:`fresh_store`)."""
    try:
        store.command(f"DROP DATABASE IF EXISTS `{store.database}`", use_database=False)
    finally:
        store.close()


@contextlib.contextmanager
def temporary_store(prefix: str = "t", apply_migrations: bool = True) -> Iterator[Store]:
    """:func:`fresh_store` for the duration of a ``with`` block, dropped (:func:`drop_store`) after it."""
    store = fresh_store(prefix, apply_migrations)
    try:
        yield store
    finally:
        drop_store(store)
