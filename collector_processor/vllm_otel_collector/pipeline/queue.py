"""The bounded in-memory queue between admission (request threads) and the writer thread.

Holds whole requests (:class:`Entry`) in arrival order; :meth:`RequestQueue.take` hands the writer one batch: up to
``batch_rows`` rows or whatever arrived within ``flush_interval_s`` seconds of the oldest entry, and a recorded batch
(retried or replayed, ``manifest`` set) exactly as it was recorded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from vllm_otel_collector.otlp.base import Batch
from vllm_otel_collector.pipeline.spool import BatchManifest
from vllm_otel_collector.receivers.consumer import Signal
from vllm_otel_collector.selfmetrics import SelfMetrics


@dataclass
class Entry:
    """One accepted request: spool ``seq``, ``size`` (bytes), ``rows`` and its converted :class:`Batch`."""

    seq: int
    signal: Signal
    size: int
    rows: int
    batch: Batch
    enqueued: float  # time.monotonic() when queued
    manifest: BatchManifest | None = None  # set once the entry's batch is recorded (then always written together)

    @property
    def kind(self) -> str:
        """The signal name (the spool file suffix)."""
        return self.signal.name


class RequestQueue:
    """Thread-safe queue of :class:`Entry`; ``rows`` counts queued rows, ``inflight`` rows the writer holds.

    Args:
        metrics: ``queued_rows`` gauge to keep current.
        batch_rows: a batch closes at this many rows.
        flush_interval_s: a batch closes at the latest this many seconds after its oldest entry arrived.
        stopping: set at shutdown: :meth:`take` returns what is there without waiting, ``[]`` when empty.
    """

    def __init__(self, metrics: SelfMetrics, batch_rows: int, flush_interval_s: float, stopping: threading.Event):
        self.metrics, self.batch_rows, self.flush_interval_s = metrics, batch_rows, flush_interval_s
        self._stopping = stopping
        self._queue: deque[Entry] = deque()
        self._cond = threading.Condition()
        self.rows = 0
        self.inflight = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in the writer's hands."""
        return not self._queue and self.inflight == 0

    def put(self, entries: list[Entry]) -> None:
        """Queue entries together (a replayed batch is never split by the writer)."""
        with self._cond:
            self._queue.extend(entries)
            self.rows += sum(e.rows for e in entries)
            self.metrics.queued.set(self.rows)
            if self.rows >= self.batch_rows or entries[0].manifest is not None:
                self._cond.notify()

    def wake(self) -> None:
        """Wake a waiting :meth:`take` (shutdown, drain)."""
        with self._cond:
            self._cond.notify_all()

    def take(self) -> list[Entry]:
        """Block until a batch is ready and hand it to the writer (``[]``: stopping and empty)."""
        with self._cond:
            while not self._queue:
                if self._stopping.is_set():
                    return []
                self._cond.wait(0.2)
            taken, rows = [], 0
            recorded = self._queue[0].manifest
            if recorded is not None:  # a recorded batch (retried or replayed) is written again exactly as it was
                while self._queue and self._queue[0].manifest is recorded:
                    e = self._queue.popleft()
                    taken.append(e)
                    rows += e.rows
                self.inflight = rows
                return taken
            oldest = self._queue[0].enqueued
            while (self.rows < self.batch_rows and not self._stopping.is_set()
                   and time.monotonic() - oldest < self.flush_interval_s):
                self._cond.wait(max(0.005, self.flush_interval_s - (time.monotonic() - oldest)))
            while self._queue and self._queue[0].manifest is None and (
                    not taken or rows + self._queue[0].rows <= self.batch_rows):
                e = self._queue.popleft()
                taken.append(e)
                rows += e.rows
            self.inflight = rows
            return taken

    def give_back(self, entries: list[Entry]) -> None:
        """Put a taken batch back at the front (its write failed; it is retried as recorded)."""
        with self._cond:
            self._queue.extendleft(reversed(entries))
            self.inflight = 0

    def done(self, entries: list[Entry]) -> None:
        """A taken batch is finished (written or moved aside): its rows leave the queue."""
        with self._cond:
            self.rows -= sum(e.rows for e in entries)
            self.inflight = 0
            self.metrics.queued.set(self.rows)
