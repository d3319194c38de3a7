"""The one background batch queue of the instrumentation: finished requests (:mod:`.handoff.sink`) and engine steps
(:mod:`.engine.aggregator`) are both queued here and handled in batches off vLLM's event loop.

Policy, the same for both (only the numbers differ):

- :meth:`Batcher.put` appends to a ``deque`` (no lock, no SDK call); the first item after an idle period wakes the
  thread, which then lingers ``linger_s`` for more to arrive — one wake-up and one batch instead of one per item:
  on a busy frontend each wake-up of a cold thread costs more than the work it does (docs/BENCHMARKS.md §1b).
- Beyond ``max_queued`` items ``put`` refuses (returns False); the caller decides (drop and count, or do the work
  itself).
- :meth:`flush` queues a marker and waits until the thread has handled every item before it, then ``on_marker``
  (the next link of the flush chain, e.g. the telemetry child's flush). On the thread itself it returns at once (an
  exporter flushing from inside a batch).
- :meth:`drain_now` handles everything queued in the calling thread (a metric collection that must include every
  step recorded before it); the handling lock keeps batches in queue order.
- Fork-safe: a forked child starts with an empty queue and no thread (like the SDK's ``BatchProcessor``).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from typing import Any, Callable

from opentelemetry.instrumentation.vllm.safety import report_hook_error



class _Stop:
    """Queue item: handle everything before it, then end the thread."""


class Batcher:
    """``handle(items)`` is called with up to ``max_batch`` items at a time, in queue order, under one lock.

    Args:
        name: thread name (``vllm-otel-…``).
        handle: the batch's work; must not raise (a raise is reported and the batch is lost).
        linger_s: seconds the thread waits after the first item of a batch (cut short by a flush or close).
        max_batch: most items per ``handle`` call.
        max_queued: ``put`` refuses beyond this many waiting items.
        on_marker: called by the thread when it reaches a flush marker, after every earlier item was handled.
        hook: the hook name a failing ``handle`` is reported under (counted; the thread lives on). Default: ``name``.
        start_thread: False: no thread ever; items are handled by :meth:`drain_now` only.
    """

    def __init__(self, name: str, handle: Callable[[list], None], *, linger_s: float, max_batch: int,
                 max_queued: int, on_marker: Callable[[], None] | None = None,
                 hook: str | None = None, start_thread: bool = True) -> None:
        self.name = name
        self.hook = hook or name
        self._start_thread = start_thread
        self._handle = handle
        self.linger_s = linger_s
        self.max_batch = max_batch
        self.max_queued = max_queued
        self.on_marker = on_marker
        self._reset()
        _BATCHERS.add(self)

    def _reset(self) -> None:
        self._q: deque = deque()
        self._wake = threading.Event()
        self._idle = False  # the thread waits for a first item: the next put wakes it
        self._markers = 0  # flush markers and stops queued, not reached yet: the thread does not linger
        self._marker_lock = threading.Lock()
        self._handling = threading.Lock()
        self._start_lock = threading.Lock()
        self.thread: threading.Thread | None = None

    # ---- producers ----------------------------------------------------------------------------------------------
    def put(self, item: Any) -> bool:
        """Queue ``item``; False (nothing queued) when ``max_queued`` items are waiting already."""
        q = self._q
        if len(q) >= self.max_queued:
            return False
        q.append(item)
        if self.thread is None:
            if self._start_thread:
                self._start()
        elif self._idle:  # the first item after an idle period: the thread lingers from now
            self._idle = False
            self._wake.set()
        return True

    def queued(self) -> int:
        """Items waiting (markers included)."""
        return len(self._q)

    def discard(self) -> int:
        """Drop every waiting item that is not a marker, unhandled (benchmarks); returns how many."""
        with self._handling:
            items = self._take(stop_at_marker=True)
            n = 0
            while items:
                n += len(items)
                items = self._take(stop_at_marker=True)
            return n

    def flush_marker(self) -> threading.Event | None:
        """Queue a flush marker; its event is set once every earlier item is handled and ``on_marker`` ran. None
        when there is nothing to wait for (no thread yet, called on the thread, or the thread is gone)."""
        thread = self.thread
        if thread is None or threading.current_thread() is thread or not thread.is_alive():
            return None
        done = threading.Event()
        self._queue_marker(done)
        return done

    def _queue_marker(self, marker: Any) -> None:
        with self._marker_lock:
            self._markers += 1
        self._q.append(marker)
        self._wake.set()

    def flush(self, timeout: float) -> bool:
        """:meth:`flush_marker` and wait; True when done within ``timeout`` seconds (or nothing to wait for)."""
        done = self.flush_marker()
        return True if done is None else done.wait(timeout)

    def drain_now(self) -> int:
        """Handle every queued item in the calling thread (markers are left to the thread); returns how many."""
        n = 0
        with self._handling:
            while True:
                items = self._take(stop_at_marker=True)
                if not items:
                    return n
                n += len(items)
                self._run(items)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread after everything queued is handled."""
        thread = self.thread
        if thread is not None and thread.is_alive():
            self._queue_marker(_Stop)
            thread.join(timeout)

    # ---- the thread -----------------------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self.thread is not None:
                return
            self.thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self.thread.start()

    def _take(self, stop_at_marker: bool) -> list:
        """Pop up to ``max_batch`` items (everything up to and including the first marker, unless told to stop
        before markers)."""
        q, out = self._q, []
        while q and len(out) < self.max_batch:
            head = q[0]
            if stop_at_marker and (head is _Stop or isinstance(head, threading.Event)):
                break
            out.append(q.popleft())
            if head is _Stop or isinstance(head, threading.Event):
                break
        return out

    def _run(self, items: list) -> None:
        if items:
            try:
                self._handle(items)
            except Exception as exc:  # noqa: BLE001 - the thread must survive anything
                report_hook_error(self.hook, exc)

    def _loop(self) -> None:
        wake, q = self._wake, self._q
        while True:
            self._idle = True
            if not q:
                wake.wait()
            self._idle = False
            wake.clear()
            if not self._markers:
                wake.wait(self.linger_s)  # linger for more, unless a flush or close is waiting (it sets the event)
                wake.clear()
            with self._handling:
                while q:
                    batch = self._take(stop_at_marker=False)
                    last = batch[-1] if batch else None
                    marker = last is _Stop or isinstance(last, threading.Event)
                    self._run(batch[:-1] if marker else batch)
                    if not marker:
                        continue
                    with self._marker_lock:
                        self._markers -= 1
                    if last is _Stop:
                        return
                    if self.on_marker is not None:
                        try:
                            self.on_marker()
                        except Exception as exc:  # noqa: BLE001
                            report_hook_error(self.hook, exc)
                    last.set()


_BATCHERS: "weakref.WeakSet[Batcher]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for b in list(_BATCHERS):
        b._reset()  # the parent's queue and thread are not this process's


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
