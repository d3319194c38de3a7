"""The one read-API client and source flags (api/client.py): every reading command has the same flags; token, errors
and the store/API choice behave the same for all of them (real collector with an API token, real HTTP)."""

from __future__ import annotations

import argparse
import os

import pytest

from vllm_otel_collector.api.client import DEFAULT_API, ApiClient, fetch, open_store, reads_store
from vllm_otel_collector.errors import UserError
from vllm_otel_inference.cli import build_parser, main

TOKEN = "views-s3cret"


@pytest.fixture(scope="module")
def guarded_api(tmp_path_factory):
    """A real collector whose read API wants ``Bearer views-s3cret``."""
    from vllm_otel_collector.collector import Collector
    from vllm_otel_collector.config import load_config
    from vllm_otel_collector.store import Store
    from vllm_otel_collector.store.testing import shared_chdb_path

    cfg = load_config(None, spool={"fsync": False}, clickhouse=f"chdb://{shared_chdb_path()}",
                      database=f"views_client_{os.getpid()}", data_dir=tmp_path_factory.mktemp("guarded"),
                      grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", api_listen="127.0.0.1:0",
                      api_token=TOKEN, analytics={"rules": []})
    collector = Collector(cfg).start()
    assert collector.wait_ready(60)
    yield f"http://127.0.0.1:{collector.api_port}"
    collector.stop()
    Store(cfg.dsn, database=cfg.database).command(f"DROP DATABASE IF EXISTS `{cfg.database}`", use_database=False)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _flags(p: argparse.ArgumentParser) -> dict[str, str]:
    return {a.option_strings[0]: a.help for a in p._actions if a.option_strings and a.option_strings[0] in
            ("--api", "--token", "--clickhouse", "--database", "--data-dir")}


def test_every_reading_command_has_the_same_source_flags():
    cmds = _subparsers()
    both = {c: _flags(cmds[c]) for c in ("stats", "alerts", "export")}
    assert all(f == both["stats"] for f in both.values())
    assert sorted(both["stats"]) == ["--api", "--clickhouse", "--data-dir", "--database", "--token"]
    report, top = _flags(cmds["report"]), _flags(cmds["top"])
    assert report == {k: v for k, v in both["stats"].items() if k in ("--clickhouse", "--database", "--data-dir")}
    assert top == both["stats"]  # the API, or ClickHouse directly (a stock pipeline has no collector)
    assert both["stats"]["--api"] == f"collector read API (default {DEFAULT_API})"
    for c in ("stats", "alerts", "export", "report", "top"):  # no hidden per-command default
        assert all(a.default is None for a in cmds[c]._actions if a.option_strings and a.option_strings[0] in
                   ("--api", "--token", "--clickhouse", "--database", "--data-dir")), c


def test_source_choice():
    ns = argparse.Namespace
    assert not reads_store(ns(api=None, token=None, clickhouse=None, data_dir=None))
    assert reads_store(ns(api=None, clickhouse="chdb:///x", data_dir=None))
    assert reads_store(ns(api=None, clickhouse=None, data_dir="/x"))
    with pytest.raises(UserError, match=r"^give either --api or --clickhouse, not both$"):
        reads_store(ns(api="http://h:1", clickhouse=None, data_dir="/x"))


def test_token_from_flag_or_environment(guarded_api, monkeypatch):
    monkeypatch.delenv("VLLM_OTEL_API_TOKEN", raising=False)
    assert ApiClient(guarded_api, TOKEN).get_ok("/api/v1/alerts") == {"state": "firing", "alerts": []}
    status, body = ApiClient(guarded_api).get("/api/v1/alerts")
    assert status == 401
    with pytest.raises(UserError, match=rf"^{guarded_api}/api/v1/alerts answered HTTP 401: "):
        ApiClient(guarded_api, "wrong").get_ok("/api/v1/alerts")
    monkeypatch.setenv("VLLM_OTEL_API_TOKEN", TOKEN)
    assert ApiClient(guarded_api).get_ok("/api/v1/alerts")["alerts"] == []


def test_commands_share_the_client_errors(guarded_api, capsys, monkeypatch):
    monkeypatch.delenv("VLLM_OTEL_API_TOKEN", raising=False)
    for argv in (["alerts", "--api", guarded_api], ["top", "--once", "--api", guarded_api]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"vllm-otel {argv[0]}: error: {guarded_api}/api/v1/") and " answered HTTP 401: " in err
        assert len(err.splitlines()) == 1
    assert main(["alerts", "--api", guarded_api, "--token", TOKEN, "--json"]) == 0
    assert capsys.readouterr().out.strip().startswith("{")
    for argv in (["stats", "--api", "http://127.0.0.1:9"], ["top", "--once", "--api", "http://127.0.0.1:9"]):
        assert main(argv) == 2
        assert "error: cannot reach the collector read API at http://127.0.0.1:9: " in capsys.readouterr().err


def test_store_commands_open_the_store_the_same_way(tmp_path, capsys):
    for argv in (["stats", "--data-dir", str(tmp_path / "none")], ["report", "--data-dir", str(tmp_path / "none")],
                 ["export", "--data-dir", str(tmp_path / "none")]):
        assert main(argv) == 2
        assert capsys.readouterr().err.strip() == (
            f"vllm-otel {argv[0]}: error: no embedded store at {(tmp_path / 'none' / 'clickhouse').resolve()} "
            "(run the collector or the demo first, or pass --clickhouse)")
    with pytest.raises(UserError, match="^no embedded store at "):
        open_store(argparse.Namespace(clickhouse=f"chdb://{tmp_path}/missing", database=None, data_dir=None))


@pytest.mark.chdb
def test_fetch_runs_the_handler_on_the_store():
    """--clickhouse runs the caller's handler on the store it names (the handler table is the caller's)."""
    from vllm_otel_collector.store.testing import fresh_store, shared_chdb_path

    named = fresh_store("views_client_fetch", apply_migrations=False)
    seen = []

    def handler(s, query):
        seen.append(query)
        return 200, {"database": s.database, "answer": s.query("SELECT 41 + 1").result_rows[0][0]}

    args = argparse.Namespace(api=None, token=None, clickhouse=f"chdb://{shared_chdb_path()}",
                              database=named.database, data_dir=None)
    try:
        assert fetch(args, "/x", {"a": 1, "b": None, "c": ""}, {"/x": handler}) == {
            "database": named.database, "answer": 42}
        assert seen == [{"a": "1"}]

        def bad(s, query):
            raise ValueError("parameter window must be a number")

        with pytest.raises(UserError, match="^parameter window must be a number$"):
            fetch(args, "/x", {}, {"/x": bad})
    finally:
        named.command(f"DROP DATABASE IF EXISTS `{named.database}`", use_database=False)
