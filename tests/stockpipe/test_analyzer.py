"""``vllm-otel analyzer``: alert evaluation and retention without any collector, two replicas on one store, one
lease row: each alert transition is recorded (and POSTed) once, a standby takes over when the holder stops."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from vllm_otel_collector.analyzer import Analyzer
from vllm_otel_collector.errors import UserError
from vllm_otel_collector.install import install
from vllm_otel_collector.store.lease import Lease

from . import contrib_exporter as X
from .spans import body, make_span, request_attrs

T0 = 1_800_000_000
RULES = [{"kind": "threshold", "name": "TTFTP95High", "metric": "ttft_p95", "op": ">", "value": 2.0,
          "window_seconds": 300}]


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", _Hook.received
    server.shutdown()


def _slow_requests(store, start_s: int, n: int, ttft: float) -> None:
    spans = [make_span("chat m", f"slow{start_s}-{i}", (start_s + i) * 10**9, 10**9,
                       request_attrs("m", **{"vllm.latency.time_to_first_token": ttft, "vllm.latency.e2e": ttft + 1}))
             for i in range(n)]
    X.insert_traces(store, "otel_traces", X.trace_rows(body(spans)))


def _transitions(store) -> list[tuple[str, str]]:
    return store.query("SELECT RuleName, toString(State) FROM llm_alerts ORDER BY Timestamp").result_rows


def test_two_analyzers_record_each_transition_once(empty_store, make_config, webhook):
    url, posts = webhook
    X.create_exporter_tables(empty_store)
    cfg = make_config(empty_store, analytics={"rules": RULES, "webhook_url": url})
    install(empty_store, cfg)
    a = Analyzer(cfg, holder="a", lease_ttl_s=600, settle_s=0, background=False).start()
    b = Analyzer(cfg, holder="b", lease_ttl_s=600, settle_s=0, background=False).start()
    try:
        _slow_requests(empty_store, T0, 30, ttft=5.0)  # the p95 of the window is 5 s: fires
        now = T0 + 120
        assert [a.tick(now), b.tick(now), a.tick(now + 1), b.tick(now + 1)] == [True, False, True, False]
        assert _transitions(empty_store) == [("TTFTP95High", "firing")]
        _slow_requests(empty_store, T0 + 400, 30, ttft=0.1)  # a later window is fast: resolves
        later = T0 + 520
        assert [b.tick(later), a.tick(later)] == [False, True]
        assert _transitions(empty_store) == [("TTFTP95High", "firing"), ("TTFTP95High", "resolved")]
        assert [p["status"] for p in posts] == ["firing", "resolved"]  # one webhook per transition
        # the holder stops renewing (a crash): after the TTL the standby takes over, and only it acts
        takeover = later + 601
        assert b.tick(takeover) is True and a.tick(takeover) is False
        assert _transitions(empty_store) == [("TTFTP95High", "firing"), ("TTFTP95High", "resolved")]
    finally:
        a.stop()
        b.stop()


def test_a_clean_stop_hands_the_lease_over_at_once(empty_store, make_config):
    install(empty_store, make_config(empty_store))
    a = Lease(empty_store, holder="a", settle_s=0)
    b = Lease(empty_store, holder="b", settle_s=0)
    assert a.hold(T0) and not b.hold(T0 + 0.5)
    a.release()
    assert b.hold(T0 + 1) and not a.hold(T0 + 1.5)


def test_racing_claims_agree_on_one_holder(empty_store, make_config):
    """Both see an expired lease and claim the next term; every reader computes the same holder from the rows."""
    install(empty_store, make_config(empty_store))
    a = Lease(empty_store, holder="a", settle_s=0)
    b = Lease(empty_store, holder="b", settle_s=0)
    term, owner, _ = a.current()
    assert (term, owner) == (0, None)
    a._write(1, T0)  # a's claim, then b's with an earlier timestamp (a clock behind): b wins, both agree
    b._write(1, T0 - 1)
    assert a.current()[:2] == b.current()[:2] == (1, "b")
    assert not a.hold(T0 + 0.5) and b.hold(T0 + 0.5)


def test_the_analyzer_refuses_a_database_migrate_has_not_set_up(empty_store, make_config):
    with pytest.raises(UserError, match="run `vllm-otel migrate`"):
        Analyzer(make_config(empty_store), background=False).start()


@pytest.mark.chdb
def test_the_analyzer_cli_runs_until_sigterm_and_releases_its_lease(tmp_path):
    """A real process: starts, takes the lease, exits 0 on SIGTERM and releases the lease for the next one."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "ch"  # chDB: one process per data path, so the processes here use their own
    dsn = f"chdb://{path}"
    subprocess.run([sys.executable, "-m", "vllm_otel_inference.cli", "migrate", "--clickhouse", dsn, "--database",
                    "otel"], check=True, timeout=300, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "vllm_otel_inference.cli", "analyzer", "--clickhouse", dsn,
                             "--database", "otel", "--lease-ttl", "30"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not any("took lease" in x for x in lines) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        running = [x for x in lines if "vllm-otel analyzer: running" in x]
        assert running and any("took lease" in x for x in lines), lines
        holder = running[0].rsplit("holder ", 1)[1].strip().rstrip(")")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out = subprocess.run([sys.executable, "-c", (
        "from vllm_otel_collector.store import Store; from vllm_otel_collector.store.lease import Lease; "
        f"s = Store({dsn!r}, database='otel'); print(Lease(s).current())")], capture_output=True, text=True,
        timeout=120, check=True)
    term, owner, _ = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own tuple
    assert term >= 2 and owner == ""  # claimed by the analyzer (term 1), released (term 2, nobody)
    assert holder.startswith(f"{__import__('socket').gethostname()}:") and os.path.exists(path)
