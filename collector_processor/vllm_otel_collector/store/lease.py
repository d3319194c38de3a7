"""A lease in ClickHouse: at most one process at a time runs a database's periodic jobs.

``vllm-otel analyzer`` replicas (and an analyzer beside a collector) all run the same alert evaluation and
retention; two evaluators would record each alert transition twice and POST each webhook twice. ClickHouse has no
compare-and-set, so the lease is a log (``vllm_otel_leases``, core migration 0006):

- a **claim** inserts ``(name, term + 1, holder, now, ttl)`` when the newest term's holder has not renewed for
  ``ttl`` seconds (or there is no term yet);
- the **holder** of a term is its earliest claim (``At``, then ``Holder`` to break ties) — every reader computes
  the same one from the same rows, so racing claimants agree once both claims are visible (a claimant re-reads
  after ``settle_s``);
- the holder **renews** by inserting rows of its term; a holder whose term was superseded (it paused longer than
  ``ttl``) sees that on its next renewal and stops.

Times are the claimants' own clocks (unix seconds): keep them in sync (NTP) with a skew well below ``ttl``. What is
left is a window of at most one round in which two processes both act (a claim delayed by more than ``settle_s``
after its timestamp); the alert state machine tolerates it (the newest row of a fingerprint wins).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import socket
import time

log = logging.getLogger(__name__)

TABLE = "vllm_otel_leases"


def default_holder() -> str:
    """``host:pid:random``: unique per process, readable in the table."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """One named lease on ``store``'s database.

    Args:
        store: a migrated :class:`~vllm_otel_collector.store.Store` (core migration 0006).
        name: what the lease guards (``periodic``: the plug-ins' periodic jobs).
        holder: this process's id (default :func:`default_holder`).
        ttl_s: seconds without renewal after which another process may claim it; renew at least every ``ttl_s / 3``.
        settle_s: seconds a claimant waits before reading who won (claims in flight become visible).
    """

    def __init__(self, store, name: str = "periodic", holder: str | None = None, ttl_s: float = 30.0,
                 settle_s: float = 0.5):
        self.store, self.name, self.holder = store, name, holder or default_holder()
        self.ttl_s, self.settle_s = float(ttl_s), float(settle_s)
        self.held = False

    def current(self) -> tuple[int, str | None, float | None]:
        """``(term, holder, last renewal unix s)`` of the newest term; ``(0, None, None)`` when never claimed."""
        rows = self.store.query(
            f"SELECT Term, Holder, toFloat64(At), TtlSeconds FROM {TABLE} WHERE Name = {{n:String}} "
            f"AND Term = (SELECT max(Term) FROM {TABLE} WHERE Name = {{n:String}}) ORDER BY At, Holder",
            parameters={"n": self.name}).result_rows
        if not rows:
            return 0, None, None
        term, owner = int(rows[0][0]), rows[0][1]
        last = max(at for _, h, at, _ in rows if h == owner)
        return term, owner, last

    def hold(self, now: float | None = None) -> bool:
        """Renew the lease if this process holds it, claim it if it has expired; True when held after the call.

        ``now``: unix seconds (default ``time.time()``). Raises the store's errors (the caller treats a failure as
        "not held")."""
        now = time.time() if now is None else now
        term, owner, last = self.current()
        expired = owner is None or now - last >= self.ttl_s
        if owner == self.holder and not expired:
            self._write(term, now)
            self._set(True, term)
            return True
        if not expired:
            self._set(False, term)
            return False
        self._write(term + 1, now)
        if self.settle_s:
            time.sleep(self.settle_s)
        new_term, winner, _ = self.current()
        self._set(new_term == term + 1 and winner == self.holder, new_term)
        return self.held

    def release(self) -> None:
        """Give the lease up now (a clean stop): a standby claims it at its next round instead of after ``ttl_s``."""
        if self.held:
            term, owner, _ = self.current()
            if owner == self.holder:  # a next term held by nobody, already expired
                self._write(term + 1, time.time() - self.ttl_s - 1.0, holder="")
        self.held = False

    def _write(self, term: int, at: float, holder: str | None = None) -> None:
        self.store.insert(TABLE, {"Name": [self.name], "Term": [term], "Holder": [self.holder if holder is None else holder],
                                  "At": [dt.datetime.fromtimestamp(at, dt.timezone.utc)],
                                  "TtlSeconds": [self.ttl_s]})

    def _set(self, held: bool, term: int) -> None:
        if held != self.held:
            log.info("%s lease %r (term %d) as %s", "took" if held else "do not hold", self.name, term, self.holder)
        self.held = held
