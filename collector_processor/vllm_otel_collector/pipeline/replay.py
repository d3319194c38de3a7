"""Replay: at start, the requests a previous run left in the spool are queued again, in order.

Recorded batches (manifests) are re-formed exactly, so their inserts carry the same deduplication token and a batch
that was already inserted is dropped by ClickHouse; a manifest whose files are partly gone belongs to a confirmed
batch and is cleaned up. Never more than ``max_queue_rows`` rows are held in memory (new requests meanwhile see a
full queue and are pushed back).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from vllm_otel_collector.otlp.base import Batch
from vllm_otel_collector.pipeline.queue import Entry, RequestQueue
from vllm_otel_collector.pipeline.spool import BatchManifest, Spool
from vllm_otel_collector.receivers.consumer import BY_NAME, Signal

log = logging.getLogger(__name__)

Plan = list[tuple[BatchManifest | None, list[tuple[int, str]]]]


class Replay:
    """Feeds the spool's pending requests into ``queue`` on a background thread.

    Args:
        convert: ``(signal, body) -> Batch`` (raises for an unreadable entry: it is dropped and logged).
        stopping: set at shutdown: the replay stops and :attr:`incomplete` turns True (the rest stays spooled).
    """

    def __init__(self, spool: Spool, queue: RequestQueue, convert: Callable[[Signal, bytes], Batch],
                 max_queue_rows: int, stopping: threading.Event):
        self.spool, self.queue, self.convert, self.max_queue_rows = spool, queue, convert, max_queue_rows
        self._stopping = stopping
        self.running = False
        self.incomplete = False
        self.count = 0

    def plan(self) -> Plan:
        """``[(manifest or None, [(seq, kind), ...]), ...]`` in sequence order; confirmed batches' leftovers are
        deleted on the way."""
        pending = self.spool.pending()
        present = set(pending)
        plan: Plan = []
        grouped: set[tuple[int, str]] = set()
        for manifest in self.spool.batches():
            items = [i for i in manifest.items if i in present]
            if len(items) < len(manifest.items):  # confirmed; its cleanup was interrupted
                self.spool.discard(items)
                self.spool.forget_batch(manifest)
                present.difference_update(items)
                continue
            plan.append((manifest, items))
            grouped.update(items)
        plan += [(None, [i]) for i in pending if i in present and i not in grouped]
        plan.sort(key=lambda p: p[1][0][0])
        return plan

    def start(self) -> threading.Thread | None:
        """Plan and start the replay thread; None when the spool holds nothing. :attr:`count` says how many."""
        plan = self.plan()
        self.count = sum(len(items) for _, items in plan)
        if not self.count:
            return None
        log.info("replaying %d spooled request(s)", self.count)
        self.running = True
        thread = threading.Thread(target=self._loop, args=(plan,), name="vllm-otel-replay", daemon=True)
        thread.start()
        return thread

    def _loop(self, plan: Plan) -> None:
        try:
            for manifest, items in plan:
                while self.queue.rows >= self.max_queue_rows and not self._stopping.is_set():
                    time.sleep(0.05)
                if self._stopping.is_set():
                    self.incomplete = True
                    return
                entries = []
                for seq, kind in items:
                    try:
                        body = self.spool.read(seq, kind)
                        batch = self.convert(BY_NAME[kind], body)
                    except Exception as exc:  # noqa: BLE001 - a corrupt spool file must not stop the collector
                        log.error("dropping unreadable spool entry %d (%s): %s", seq, kind, exc)
                        self.spool.delete([(seq, kind, 0)])
                        continue
                    entries.append(Entry(seq, BY_NAME[kind], len(body), batch.rows, batch, time.monotonic(),
                                         manifest))
                if entries:
                    self.queue.put(entries)
                elif manifest is not None:
                    self.spool.forget_batch(manifest)
        finally:
            self.running = False
