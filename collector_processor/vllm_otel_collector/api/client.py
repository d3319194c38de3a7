"""The one read-API client and data-source flags every CLI command that reads the collector's data uses.

Two sources, one set of flags (:func:`add_source_args`):

- the read API of a running collector: ``--api URL`` (default :data:`DEFAULT_API`, ``http://127.0.0.1:4319``, the
  collector's ``api_listen``), bearer token from ``--token`` or ``$VLLM_OTEL_API_TOKEN`` — :class:`ApiClient`;
- ClickHouse directly: ``--clickhouse DSN`` (``chdb:///abs/path`` or ``http(s)://user:pass@host:8123``), else
  the collector's embedded store ``chdb://<data dir>/clickhouse`` (``--data-dir``, default from the collector
  config), database ``--database`` (default ``otel``) — :func:`open_store`.

The default source of a command that can read both (``stats``, ``alerts``, ``export``) is the API; giving
``--clickhouse`` or ``--data-dir`` selects ClickHouse (:func:`reads_store`). ``report`` reads ClickHouse only, ``top``
the API only. Every failure is a :class:`~vllm_otel_collector.errors.UserError` with one line.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from vllm_otel_collector.errors import UserError

DEFAULT_API = "http://127.0.0.1:4319"
TOKEN_ENV = "VLLM_OTEL_API_TOKEN"

#: A read-API route handler: ``(store, query) -> (http_status, json_body)`` (see :mod:`.server`).
Handler = Callable[[Any, dict[str, str]], tuple[int, dict]]


def add_source_args(p: argparse.ArgumentParser, api: bool = True, store: bool = True) -> None:
    """Add the source flags: ``--api``/``--token`` (when ``api``) and ``--clickhouse``/``--database``/``--data-dir``
    (when ``store``), in one "source" group when both."""
    g = p.add_argument_group("source (one of)") if api and store else p
    if api:
        g.add_argument("--api", metavar="URL", help=f"collector read API (default {DEFAULT_API})")
        g.add_argument("--token", help=f"bearer token for the read API (default ${TOKEN_ENV})")
    if store:
        g.add_argument("--clickhouse", metavar="DSN",
                       help="read ClickHouse directly: chdb:///abs/path or http(s)://user:pass@host:8123 (default "
                            "the collector's embedded store)")
        g.add_argument("--database", help="ClickHouse database (default otel)")
        g.add_argument("--data-dir", metavar="DIR", help="the collector's data dir (for the default embedded store)")


def reads_store(args: argparse.Namespace) -> bool:
    """True when ``args`` select ClickHouse (``--clickhouse`` or ``--data-dir``); raises ``UserError`` when they
    also name ``--api``."""
    store = bool(getattr(args, "clickhouse", None) or getattr(args, "data_dir", None))
    if store and getattr(args, "api", None):
        raise UserError("give either --api or --clickhouse, not both")
    return store


def open_store(args: argparse.Namespace):
    """Open the :class:`~vllm_otel_collector.store.Store` that ``args`` name (see module docstring).

    Raises ``UserError`` when the embedded store does not exist or ClickHouse cannot be opened.
    """
    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.store import Store

    cfg = load_config(None, clickhouse=getattr(args, "clickhouse", None), database=getattr(args, "database", None),
                      data_dir=getattr(args, "data_dir", None))
    dsn = cfg.dsn
    if dsn.startswith("chdb://") and not Path(dsn[len("chdb://"):]).exists():
        raise UserError(f"no embedded store at {dsn[len('chdb://'):]} (run the collector or the demo first, "
                        "or pass --clickhouse)")
    try:
        return Store(dsn, database=cfg.database)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - connection errors of many kinds: one line for the user
        raise UserError(f"cannot open ClickHouse: {(str(exc).splitlines() or [type(exc).__name__])[0][:300]}") from None


class ApiClient:
    """GET JSON from a collector's read API at ``base`` (``http://host:port``) with an optional bearer ``token``
    (default ``$VLLM_OTEL_API_TOKEN``); ``timeout`` in seconds."""

    def __init__(self, base: str | None = None, token: str | None = None, timeout: float = 60.0):
        self.base = (base or DEFAULT_API).rstrip("/")
        token = token or os.environ.get(TOKEN_ENV)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout

    def get(self, route: str, params: Mapping[str, Any] | None = None) -> tuple[int, dict]:
        """``(status, body)`` of ``GET route?params`` (None/empty params dropped); a non-JSON body becomes
        ``{"error": <first 200 chars>}``. Raises ``UserError`` when the API cannot be reached."""
        import httpx

        query = {k: str(v) for k, v in (params or {}).items() if v not in (None, "")}
        try:
            resp = httpx.get(self.base + route, params=query, headers=self.headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise UserError(f"cannot reach the collector read API at {self.base}: {exc}") from None
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, {"error": resp.text[:200]}

    def get_ok(self, route: str, params: Mapping[str, Any] | None = None) -> dict:
        """The body of ``GET route``; raises ``UserError`` unless the answer is HTTP 200."""
        status, body = self.get(route, params)
        if status != 200:
            raise UserError(f"{self.base}{route} answered HTTP {status}: {body.get('error', body)}")
        return body


def fetch(args: argparse.Namespace, route: str, query: Mapping[str, Any], handlers: Mapping[str, Handler]) -> dict:
    """The JSON body of ``route`` with ``query``: from the read API, or — when ``args`` select ClickHouse — by
    running the same handler (``handlers[route]``) on the store, so both sources give identical answers.

    Raises ``UserError`` when the source is unreachable, answers an error, or the query fails.
    """
    if not reads_store(args):
        return ApiClient(args.api, args.token).get_ok(route, query)
    store = open_store(args)
    try:
        status, body = handlers[route](store, {k: str(v) for k, v in query.items() if v not in (None, "")})
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - e.g. tables missing: the collector never ran on this database
        raise UserError(f"query failed on {store!r}: {str(exc).splitlines()[0][:300]}") from None
    finally:
        store.close()
    if status != 200:
        raise UserError(f"{route} answered {status}: {body.get('error', body)}")
    return body
