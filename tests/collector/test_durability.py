"""No loss: a storage outage under load, and kill -9 of a collector process under load."""

from __future__ import annotations

import pytest

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc

from collector.helpers import TRACE_EXPORT, make_request, make_span
from vllm_otel_collector.store import Store


def _sender(port: int, prefix: str, acked: set, refused: list, stop: threading.Event, spans_per_request: int = 10):
    """Send requests until ``stop``; a request refused with a retryable code is re-sent, like an OTLP exporter."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(TRACE_EXPORT)
        n = 0
        while not stop.is_set():
            spans = [make_span(f"{prefix}-{n}-{k}") for k in range(spans_per_request)]
            body = make_request(spans).SerializeToString()
            n += 1
            while not stop.is_set():
                try:
                    call(body, timeout=5)
                except grpc.RpcError as exc:
                    refused.append(exc.code())
                    time.sleep(0.05)
                    continue
                acked.update(s.span_id.hex() for s in spans)
                break


def test_storage_outage_under_load_loses_nothing(make_collector):
    c = make_collector(max_queue_rows=300, batch_rows=100, flush_interval_s=0.1, retry_max_wait_s=0.2)
    outsider = Store(c.config.dsn, database=c.config.database)
    acked: set[str] = set()
    refused: list = []
    stop = threading.Event()
    senders = [threading.Thread(target=_sender, args=(c.grpc_port, f"t{i}", acked, refused, stop)) for i in range(3)]
    for t in senders:
        t.start()
    time.sleep(1.0)
    outsider.command("DETACH TABLE otel_traces")  # a real ClickHouse failure: inserts fail with UNKNOWN_TABLE
    time.sleep(3.0)
    during = len(refused)
    outsider.command("ATTACH TABLE otel_traces")
    time.sleep(1.5)
    stop.set()
    for t in senders:
        t.join(30)
    assert c.drain(30)
    stored = [r[0] for r in c.store.query("SELECT SpanId FROM otel_traces").result_rows]
    assert len(acked) > 500
    assert set(stored) == acked and len(stored) == len(acked)  # every acknowledged span once, nothing else
    assert during > 0 and set(refused) == {grpc.StatusCode.UNAVAILABLE}  # clients were told to retry
    metrics = c.metrics.render().decode()
    retried = [float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("vllm_otel_collector_retried_total")]
    assert retried and retried[0] > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(data_dir, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm_otel_inference.cli", "collector", "--no-analytics", "--data-dir", str(data_dir),
         "--listen", f"127.0.0.1:{port}", "--http-listen", "off", "--api-listen", "off", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        if "ready" in line:
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"collector did not start: {proc.stdout.read()}")


@pytest.mark.chdb
def test_kill_9_under_load_then_restart_keeps_every_acknowledged_span(tmp_path):
    port = _free_port()
    proc = _start(tmp_path, port)
    acked: set[str] = set()
    refused: list = []
    stop = threading.Event()
    try:
        sender = threading.Thread(target=_sender, args=(port, "k", acked, refused, stop, 50))
        sender.start()
        time.sleep(2.5)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: acknowledged spans sit in the spool and the batch queue
        proc.wait(10)
        stop.set()
        sender.join(30)
        assert len(acked) >= 200
        assert any(p.suffix == ".traces" for p in (tmp_path / "spool").iterdir())  # there is something to replay
        proc = _start(tmp_path, port)
        time.sleep(3)  # replay + one flush interval
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0  # graceful stop: flushed, exit 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert not any(p.suffix == ".traces" for p in (tmp_path / "spool").iterdir())
    out = subprocess.run(
        [sys.executable, "-c",
         "import json,sys; from vllm_otel_collector.store import Store; "
         f"s = Store('chdb://{tmp_path}/clickhouse'); "
         "print(json.dumps([r[0] for r in s.query('SELECT SpanId FROM otel_traces').result_rows]))"],
        capture_output=True, text=True, timeout=120, check=True)
    stored_rows = json.loads(out.stdout.strip().splitlines()[-1])
    stored = set(stored_rows)
    assert acked <= stored, f"{len(acked - stored)} acknowledged spans lost"
    assert len(stored_rows) == len(stored), "a replayed batch was stored twice"


def _request_spans(prefix: str, n: int) -> list:
    """``n`` spans; every fifth is a request span (the analytics views derive an llm_requests row from it)."""
    return [make_span(f"{prefix}-{k}", **({"vllm.finish_reason": "stop", "gen_ai.latency.e2e": 0.5} if k % 5 == 0
                                          else {})) for k in range(n)]


def _counts(store) -> tuple[int, int, int, int]:
    q = store.query("SELECT (SELECT count() FROM otel_traces), (SELECT uniqExact(SpanId) FROM otel_traces), "
                    "(SELECT count() FROM llm_requests), (SELECT sum(Requests) FROM llm_requests_1m)")
    return tuple(int(v) for v in q.result_rows[0])


def test_a_batch_inserted_again_after_a_crash_is_stored_once(make_collector):
    """The crash window of at-least-once delivery: rows inserted, spool files not yet deleted. A real unlink failure
    (injected into the spool's own delete) leaves exactly that state; a second collector on the same spool replays
    the batch with its recorded token and ClickHouse drops it: every count stays exact, in the derived tables too."""
    import errno

    from vllm_otel_collector.collector import Collector

    c = make_collector(load_analytics=True, batch_rows=10_000, flush_interval_s=0.3)
    real_unlink = os.unlink
    spool_dir = str(c.pipeline.spool.dir)

    def failing_unlink(path, *a, **kw):
        if str(path).startswith(spool_dir) and not str(path).endswith((".tmp", ".batch")):
            raise OSError(errno.EIO, "injected I/O error")
        return real_unlink(path, *a, **kw)

    os.unlink = failing_unlink
    try:
        with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
            call = ch.unary_unary(TRACE_EXPORT)
            for i in range(3):
                call(make_request(_request_spans(f"r{i}", 20)).SerializeToString(), timeout=30)
        assert c.drain(30)
    finally:
        os.unlink = real_unlink
    assert _counts(c.store) == (60, 60, 12, 12)
    left = sorted(p.suffix for p in c.pipeline.spool.dir.iterdir() if p.suffix in (".traces", ".batch"))
    assert left == [".batch", ".traces", ".traces", ".traces"]  # the crash state: inserted, still spooled
    c.stop()
    again = Collector(c.config).start()  # same spool, same database: replays the recorded batch
    try:
        assert again.wait_ready(30) and again.drain(30)
        assert _counts(again.store) == (60, 60, 12, 12)
        assert not [p for p in again.pipeline.spool.dir.iterdir() if p.suffix in (".traces", ".batch")]
    finally:
        again.stop()


def test_an_insert_whose_confirmation_is_lost_is_retried_without_duplicates(make_collector):
    """ClickHouse commits, the client sees an error (a timeout after the commit): the retry carries the same token."""
    c = make_collector(load_analytics=True, batch_rows=10_000, flush_interval_s=0.3, retry_max_wait_s=0.1)
    failed: list[str] = []

    def lose_confirmation(method):
        def wrapper(table, *args, **kwargs):
            result = method(table, *args, **kwargs)  # the real insert happens
            if table not in failed:
                failed.append(table)
                raise ConnectionError(f"injected: confirmation of the insert into {table} lost")
            return result
        return wrapper

    c.store.insert_native = lose_confirmation(c.store.insert_native)
    c.store.insert = lose_confirmation(c.store.insert)
    with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
        ch.unary_unary(TRACE_EXPORT)(make_request(_request_spans("x", 40)).SerializeToString(), timeout=30)
    assert c.drain(30)
    assert "otel_traces" in failed  # the span insert was retried; its views ran on the first attempt too
    assert _counts(c.store) == (40, 40, 8, 8)  # ...and the retry's derived rows were deduplicated with it


def test_identical_requests_in_different_batches_are_both_stored(make_collector):
    """Deduplication is by batch token, not by content: a client that sends the same spans twice (two requests, two
    acknowledgements) gets both stored, as with any collector — only a re-insert of the same batch is dropped."""
    c = make_collector(load_analytics=True, batch_rows=10_000, flush_interval_s=0.2)
    body = make_request(_request_spans("same", 10)).SerializeToString()
    with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
        call = ch.unary_unary(TRACE_EXPORT)
        call(body, timeout=30)
        assert c.drain(30)
        call(body, timeout=30)
    assert c.drain(30)
    assert _counts(c.store) == (20, 10, 4, 4)
