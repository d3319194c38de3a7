"""Write-ahead spool: every accepted OTLP request is on local disk before the client is told "success".

Layout: ``<dir>/<seq:016d>.<kind>`` files holding the accepted request's protobuf bytes (``kind`` is ``traces`` or
``metrics``), written to a ``.tmp`` name, optionally fsync'ed, then renamed (atomic on POSIX), so a crash leaves
either the whole file or no file. A file is deleted only after ClickHouse confirmed the insert of its rows; on start
the remaining files are replayed in sequence order (delivery is at-least-once: a crash between the insert and the
delete replays that request once more). ``<dir>/LOCK`` holds an exclusive ``flock`` so two collectors never share one
spool. The total size is capped (``max_bytes``): :meth:`Spool.reserve` refuses a request that does not fit and the
receivers answer with a retryable error (push back) instead of dropping data.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from vllm_otel_collector.errors import UserError

KINDS = ("traces", "metrics")


class SpoolFull(Exception):
    """The spool has no room for this request (→ gRPC UNAVAILABLE / HTTP 503 with Retry-After)."""


class Spool:
    """Durable, size-capped store of accepted requests.

    Args:
        directory: spool directory (created).
        max_bytes: cap on the sum of file sizes, bytes.
        fsync: fsync each file (and the directory) before acknowledging; protects against power loss, not only a
            process crash. Costs ~1 ms per request on a typical SSD.

    Raises:
        UserError: another process holds the spool lock.
    """

    def __init__(self, directory: str | Path, max_bytes: int = 1 << 30, fsync: bool = True):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock_fh = open(self.dir / "LOCK", "a+")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_fh.close()
            raise UserError(f"spool {self.dir} is in use by another collector (lock held)") from None
        self._guard = threading.Lock()
        self._bytes = 0
        self._seq = 0
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        for path in self.dir.iterdir():
            seq, kind = _parse(path.name)
            if seq is not None:
                self._bytes += path.stat().st_size
                self._seq = max(self._seq, seq)

    @property
    def bytes(self) -> int:
        """Current total size of spooled requests, bytes."""
        return self._bytes

    def append(self, kind: str, body: bytes) -> int:
        """Durably store ``body``; return its sequence id. Raises :class:`SpoolFull` when over ``max_bytes``."""
        size = len(body)
        with self._guard:
            if self._bytes + size > self.max_bytes and self._bytes > 0:
                raise SpoolFull(f"spool full ({self._bytes} of {self.max_bytes} bytes)")
            self._bytes += size
            self._seq += 1
            seq = self._seq
        final = self.dir / f"{seq:016d}.{kind}"
        tmp = final.with_name(final.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(body)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.rename(tmp, final)
            if self.fsync:
                dfd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except BaseException:
            tmp.unlink(missing_ok=True)
            with self._guard:
                self._bytes -= size
            raise
        return seq

    def delete(self, items: list[tuple[int, str, int]]) -> None:
        """Remove confirmed entries: ``items`` are ``(seq, kind, size_bytes)``."""
        freed = 0
        for seq, kind, size in items:
            try:
                os.unlink(self.dir / f"{seq:016d}.{kind}")
                freed += size
            except FileNotFoundError:
                pass
        with self._guard:
            self._bytes -= freed

    def pending(self) -> list[tuple[int, str]]:
        """Spooled entries ``(seq, kind)`` in sequence order (for replay at start); read each with :meth:`read`."""
        found = []
        for path in self.dir.iterdir():
            seq, kind = _parse(path.name)
            if seq is not None:
                found.append((seq, kind))
        return sorted(found)

    def read(self, seq: int, kind: str) -> bytes:
        """The body of one spooled entry. Raises ``OSError`` when it is gone."""
        return (self.dir / f"{seq:016d}.{kind}").read_bytes()

    def close(self) -> None:
        """Release the directory lock."""
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
        finally:
            self._lock_fh.close()


def _parse(name: str) -> tuple[int | None, str | None]:
    stem, _, kind = name.partition(".")
    if kind in KINDS and stem.isdigit():
        return int(stem), kind
    return None, None
