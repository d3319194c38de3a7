"""The single owner of ClickHouse access: one :class:`Store` per collector process.

Every query, command and insert in the collector goes through a ``Store``. It wraps a clickhouse-connect client for
either backend:

* ``chdb:///abs/path`` — the embedded ClickHouse engine (chDB). One data path per process; all access is serialized by
  a process-wide lock per path. Each Store has its own client (its own chDB session handle) bound to its database, so
  several ``Store`` objects on the same path (tests isolate by database name) never see each other's tables.
* ``http(s)://user:pass@host:8123/db`` — a ClickHouse server. clickhouse-connect clients are thread-safe for queries,
  but we still serialize through a lock per Store (one HTTP session) to keep behaviour identical.

Parameters are always bound by clickhouse-connect (server-side ``{name:Type}`` placeholders); user input is never
concatenated into SQL. The DSN's password is never logged (:func:`redact_dsn`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import urllib.parse
from typing import Any, Sequence

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError

from vllm_otel_collector.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "otel"

# chDB: one engine per process, so one lock per data path serializes every Store on it.
_CHDB_LOCKS: dict[str, threading.RLock] = {}
_CHDB_GUARD = threading.Lock()


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``***`` (safe for logs and error messages)."""
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _valid_identifier(name: str) -> str:
    if not name or not all(ch.isalnum() or ch == "_" for ch in name):
        raise UserError(f"invalid ClickHouse database name {name!r} (letters, digits and _ only)")
    return name


class Store:
    """Thread-safe ClickHouse access for the collector.

    Args:
        dsn: ``chdb:///abs/path`` (embedded) or ``http(s)://[user[:password]@]host[:port][/database]``. A password
            may also come from ``CLICKHOUSE_PASSWORD`` or a file named by ``CLICKHOUSE_PASSWORD_FILE``.
        database: database the collector's tables live in (default ``otel``; a path component of an HTTP DSN is
            used when ``database`` is not given). Created if missing.
        connect_timeout_s: seconds to wait when connecting to a server.

    Raises:
        UserError: the DSN is malformed or the store is unreachable (one-line message, password redacted).
    """

    def __init__(self, dsn: str, database: str | None = None, connect_timeout_s: float = 10.0):
        self.dsn = dsn
        parts = urllib.parse.urlsplit(dsn)
        self.backend = parts.scheme
        self.chdb_path: str | None = None
        if parts.scheme == "chdb":
            path = dsn[len("chdb://"):]
            if not path.startswith("/"):
                raise UserError(f"chdb DSN needs an absolute path: chdb:///abs/path (got {dsn!r})")
            self.chdb_path = os.path.abspath(path)
            self.database = _valid_identifier(database or DEFAULT_DATABASE)
            os.makedirs(self.chdb_path, exist_ok=True)
            with _CHDB_GUARD:
                self._lock = _CHDB_LOCKS.setdefault(self.chdb_path, threading.RLock())
            try:
                with self._lock:
                    self._client = clickhouse_connect.get_client(dsn=f"chdb://{self.chdb_path}")
            except Exception as exc:  # chdb raises RuntimeError for a second data path in one process
                raise UserError(f"cannot open embedded ClickHouse at {self.chdb_path}: {_one_line(exc)}") from None
        elif parts.scheme in ("http", "https"):
            db_from_path = parts.path.strip("/") or None
            self.database = _valid_identifier(database or db_from_path or DEFAULT_DATABASE)
            password = parts.password
            if password is None and os.environ.get("CLICKHOUSE_PASSWORD_FILE"):
                with open(os.environ["CLICKHOUSE_PASSWORD_FILE"], encoding="utf-8") as fh:
                    password = fh.read().strip()
            if password is None:
                password = os.environ.get("CLICKHOUSE_PASSWORD", "")
            self._lock = threading.RLock()
            try:
                self._client = clickhouse_connect.get_client(
                    host=parts.hostname or "localhost",
                    port=parts.port or (8443 if parts.scheme == "https" else 8123),
                    username=urllib.parse.unquote(parts.username or os.environ.get("CLICKHOUSE_USER", "default")),
                    password=urllib.parse.unquote(password),
                    secure=parts.scheme == "https",
                    connect_timeout=connect_timeout_s,
                    autogenerate_session_id=False,
                )
            except Exception as exc:
                raise UserError(f"cannot reach ClickHouse at {redact_dsn(dsn)}: {_one_line(exc)}") from None
        else:
            raise UserError(f"unsupported ClickHouse DSN {redact_dsn(dsn)!r}: use chdb:///abs/path or http(s)://host:8123")
        self._column_types: dict[str, tuple[list[str], list[str]]] = {}
        self._closed = False
        self.command(f"CREATE DATABASE IF NOT EXISTS `{self.database}`", use_database=False)
        self._client.database = self.database

    # -- public API --------------------------------------------------------------------------------------------------
    def command(self, sql: str, parameters: dict[str, Any] | None = None, use_database: bool = True) -> Any:
        """Run a statement (DDL, ALTER, INSERT ... SELECT); returns clickhouse-connect's command result.

        ``parameters`` are bound server-side: write ``{name:Type}`` in ``sql``.
        """
        with self._lock:
            self._check_open()
            if use_database:
                return self._client.command(sql, parameters=parameters)
            saved, self._client.database = self._client.database, None
            try:
                return self._client.command(sql, parameters=parameters)
            finally:
                self._client.database = saved

    def query(self, sql: str, parameters: dict[str, Any] | None = None):
        """Run a SELECT; returns a clickhouse-connect ``QueryResult`` (``.result_rows``, ``.column_names``, ...).

        Unqualified table names resolve in :attr:`database`. ``parameters`` are bound server-side (``{name:Type}``).
        """
        with self._lock:
            self._check_open()
            return self._client.query(sql, parameters=parameters)

    def insert(self, table: str, columns: dict[str, Sequence[Any]], dedup_token: str | None = None) -> int:
        """Columnar insert of ``columns`` (column name → equal-length list of values) into ``table`` of this database.

        Values are what clickhouse-connect accepts for the column type: ints of nanoseconds since the epoch for
        ``DateTime64(9)``, ``dict`` for ``Map``, lists for ``Array``/``Nested`` sub-columns (``"Events.Name"``).
        ``dedup_token``: ClickHouse ``insert_deduplication_token`` — the same insert with the same token again is
        dropped by ClickHouse (also in the materialized views it feeds; tables need a deduplication window, migration
        0003/0104). Returns the number of rows inserted. Raises clickhouse-connect errors (the caller retries).
        """
        names = list(columns)
        if not names:
            return 0
        data = [columns[n] for n in names]
        n_rows = len(data[0])
        if n_rows == 0:
            return 0
        with self._lock:
            self._check_open()
            types = self._types_for(table, names)
            self._client.insert(
                table,
                data,
                column_names=names,
                column_type_names=types,
                database=self.database,
                column_oriented=True,
                settings=_dedup_settings(dedup_token),
            )
        return n_rows

    def insert_native(self, table: str, block: bytes, rows: int, dedup_token: str | None = None) -> int:
        """Insert ClickHouse Native-format data (one or more concatenated blocks, column names and types inside)
        into ``table`` of this database; ClickHouse converts the block's types to the table's (e.g. ``String`` →
        ``LowCardinality(String)``). ``dedup_token`` as in :meth:`insert`. Returns ``rows``. Raises
        clickhouse-connect errors (the caller retries)."""
        if not rows:
            return 0
        with self._lock:
            self._check_open()
            self._client.raw_insert(f"`{self.database}`.`{_valid_identifier(table)}`", None, insert_block=block,
                                    fmt="Native", settings=_dedup_settings(dedup_token))
        return rows

    def query_native(self, sql: str) -> bytes:
        """The result of ``sql`` (a SELECT, this database) as ClickHouse Native-format bytes: blocks that
        :meth:`insert_native` takes back as they are (benchmarks, replays). Raises clickhouse-connect errors."""
        with self._lock:
            self._check_open()
            return self._client.raw_query(sql, fmt="Native")

    def ping(self) -> bool:
        """True if a trivial query succeeds."""
        try:
            return self.query("SELECT 1").result_rows == [(1,)]
        except Exception:  # noqa: BLE001 - readiness probe: any failure means "not ready"
            return False

    def close(self) -> None:
        """Close this Store's client (its chDB session handle; the engine stays up while other handles are open)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._client.close()

    def forget_column_types(self) -> None:
        """Drop cached column types (after DDL that changes a table's columns)."""
        with self._lock:
            self._column_types.clear()

    def __repr__(self) -> str:
        return f"Store({redact_dsn(self.dsn)!r}, database={self.database!r})"

    # -- internals ---------------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("Store is closed")

    def _types_for(self, table: str, names: list[str]) -> list[str]:
        cached = self._column_types.get(table)
        if cached is None:
            result = self._client.query(
                "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
                parameters={"db": self.database, "t": table},
            )
            all_types = {name: typ for name, typ in result.result_rows}
            if not all_types:
                raise ClickHouseError(f"table {self.database}.{table} does not exist")
            cached = (list(all_types), list(all_types.values()))
            self._column_types[table] = cached
        lookup = dict(zip(*cached))
        try:
            return [lookup[n] for n in names]
        except KeyError as exc:
            raise ClickHouseError(f"table {self.database}.{table} has no column {exc.args[0]!r}") from None


def _dedup_settings(token: str | None) -> dict[str, Any] | None:
    if token is None:
        return None
    return {"insert_deduplication_token": token, "deduplicate_blocks_in_dependent_materialized_views": 1}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    errno_msg = re.search(r"\[Errno -?\d+\] [^\"')]+", text)  # the root cause inside a urllib3 retry chain
    if errno_msg:
        return errno_msg.group(0)
    lines = text.splitlines()
    return lines[0][:300] if lines else type(exc).__name__
