"""The one background batch queue (:mod:`opentelemetry.instrumentation.vllm.batcher`), no vLLM, no ClickHouse: order,
batch bounds, the bound on queued items, flush markers and ``on_marker`` ordering, ``drain_now`` beside the thread,
a failing handler counted and survived, close writes everything, a fork starts empty."""

from __future__ import annotations

import os
import threading
import time

import pytest

from opentelemetry.instrumentation.vllm import safety
from opentelemetry.instrumentation.vllm.batcher import Batcher


class Sink:
    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, items: list) -> None:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.batches.append(list(items))

    def items(self) -> list:
        with self.lock:
            return [x for b in self.batches for x in b]


def test_items_are_handled_in_order_in_bounded_batches_and_a_flush_covers_them():
    sink = Sink()
    b = Batcher("t-order", sink, linger_s=30.0, max_batch=7, max_queued=1000)
    for i in range(100):
        assert b.put(i)
    assert b.flush(30.0)  # the marker cuts the 30 s linger short
    assert sink.items() == list(range(100))
    assert all(1 <= len(x) <= 7 for x in sink.batches)
    b.close()


def test_a_full_queue_refuses_and_the_caller_decides():
    release = threading.Event()
    started = threading.Event()

    def slow(items):
        started.set()
        release.wait(30)

    b = Batcher("t-full", slow, linger_s=0.0, max_batch=1, max_queued=3)
    assert b.put("first")
    assert started.wait(30)  # the thread holds "first"; the queue is empty again
    assert [b.put(i) for i in range(5)] == [True, True, True, False, False]
    assert b.queued() == 3
    release.set()
    assert b.flush(30.0) and b.queued() == 0
    b.close()


def test_on_marker_runs_after_every_earlier_item_and_before_the_flush_returns():
    seen: list = []
    b = Batcher("t-marker", seen.extend, linger_s=30.0, max_batch=100, max_queued=1000,
                on_marker=lambda: seen.append("marker"))
    for i in range(5):
        b.put(i)
    assert b.flush(30.0)
    assert seen == [0, 1, 2, 3, 4, "marker"]
    b.put(5)
    assert b.flush(30.0)
    assert seen == [0, 1, 2, 3, 4, "marker", 5, "marker"]
    b.close()


def test_flush_on_the_batchers_own_thread_returns_at_once():
    results = []
    b = Batcher("t-self", lambda items: results.append(b.flush(30.0)), linger_s=0.0, max_batch=10, max_queued=10)
    b.put(1)
    assert b.flush(30.0) and results == [True]
    b.close()


def test_drain_now_handles_what_is_queued_in_the_calling_thread():
    sink = Sink()
    b = Batcher("t-drain", sink, linger_s=3600.0, max_batch=1000, max_queued=1000, start_thread=False)
    for i in range(10):
        b.put(i)
    assert b.thread is None  # no thread ever
    assert b.drain_now() == 10 and sink.items() == list(range(10)) and b.queued() == 0
    assert b.flush(1.0)  # nothing to wait for


def test_drain_now_beside_the_thread_keeps_queue_order():
    sink = Sink(delay=0.001)
    b = Batcher("t-both", sink, linger_s=0.0, max_batch=3, max_queued=100_000)
    for i in range(3000):
        b.put(i)
        if i % 100 == 0:
            b.drain_now()
    assert b.flush(60.0)
    assert sink.items() == list(range(3000))
    b.close()


def test_a_failing_handler_is_counted_and_the_thread_lives_on(monkeypatch):
    counted = []
    monkeypatch.setattr(safety, "_error_counter", type("C", (), {"add": staticmethod(
        lambda n, attrs: counted.append(attrs["hook"]))})())
    good = []

    def handle(items):
        if "bad" in items:
            raise RuntimeError("injected")
        good.extend(items)

    b = Batcher("t-fail", handle, linger_s=0.0, max_batch=1, max_queued=100, hook="unit.hook")
    b.put("bad")
    b.put("ok")
    assert b.flush(30.0)
    assert good == ["ok"] and counted == ["unit.hook"]
    b.close()


def test_close_writes_everything_queued_then_stops():
    sink = Sink()
    b = Batcher("t-close", sink, linger_s=30.0, max_batch=4, max_queued=1000)
    for i in range(10):
        b.put(i)
    b.close(30.0)
    assert sink.items() == list(range(10)) and not b.thread.is_alive()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_starts_with_an_empty_queue_and_its_own_thread():
    sink = Sink()
    b = Batcher("t-fork", sink, linger_s=3600.0, max_batch=10, max_queued=10)
    b.put("parent")  # lingers in the parent
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: nothing of the parent's queue; a put starts a new thread that handles it
        try:
            ok = b.queued() == 0 and b.thread is None and b.put("child") and b.flush(30.0)
            os.write(w, b"1" if ok and sink.items() == ["child"] else b"0")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    assert b.flush(30.0) and sink.items() == ["parent"]
    b.close()
