"""Write-ahead spool: every accepted OTLP request is on local disk before the client is told "success".

Layout: ``<dir>/<seq:016d>.<kind>`` files holding the accepted request's protobuf bytes (``kind`` is ``traces`` or
``metrics``), written to a ``.tmp`` name, optionally fsync'ed, then renamed (atomic on POSIX), so a crash leaves
either the whole file or no file. A file is deleted only after ClickHouse confirmed the insert of its rows; on start
the remaining files are replayed in sequence order (a crash between the insert and the delete replays that request
once more; the batch manifests below make that re-insert a no-op). ``<dir>/LOCK`` holds an exclusive ``flock`` so two collectors never share one
spool. The total size is capped (``max_bytes``): :meth:`Spool.append` refuses a request that does not fit and the
receivers answer with a retryable error (push back) instead of dropping data.

Batch manifests make re-inserts idempotent: before the writer inserts a batch it records the batch's members and a
fresh deduplication token in ``<dir>/<first_seq:016d>.batch`` (written like a request file). Every insert of that
batch carries the token (ClickHouse ``insert_deduplication_token``), so a batch inserted again — after a crash
between the insert and the deletion of its files, or after an insert whose confirmation was lost — is recognised and
dropped by ClickHouse instead of being stored twice. Replay re-forms exactly the recorded batches. The manifest is
deleted after its requests' files; a manifest whose files are partly gone belongs to a confirmed batch.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from vllm_otel_collector.errors import UserError

log = logging.getLogger(__name__)

KINDS = ("traces", "metrics")


@dataclass(frozen=True)
class BatchManifest:
    """The members ``[(seq, kind), ...]`` of one batch and the deduplication token its inserts carry."""

    token: str
    items: tuple[tuple[int, str], ...]

    @property
    def first_seq(self) -> int:
        return self.items[0][0]


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

    def _write_durably(self, final: Path, data: bytes) -> None:
        tmp = final.with_name(final.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
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
            raise

    def append(self, kind: str, body: bytes) -> int:
        """Durably store ``body``; return its sequence id. Raises :class:`SpoolFull` when over ``max_bytes``."""
        size = len(body)
        with self._guard:
            if self._bytes + size > self.max_bytes and self._bytes > 0:
                raise SpoolFull(f"spool full ({self._bytes} of {self.max_bytes} bytes)")
            self._bytes += size
            self._seq += 1
            seq = self._seq
        try:
            self._write_durably(self.dir / f"{seq:016d}.{kind}", body)
        except BaseException:
            with self._guard:
                self._bytes -= size
            raise
        return seq

    def record_batch(self, items: list[tuple[int, str]]) -> BatchManifest:
        """Durably record that ``items`` (``(seq, kind)``, in order) form one batch, with a new token.
        Raises ``OSError`` when the manifest cannot be written."""
        manifest = BatchManifest(token=uuid.uuid4().hex, items=tuple(items))
        data = json.dumps({"token": manifest.token, "items": [list(i) for i in items]}).encode()
        self._write_durably(self.dir / f"{manifest.first_seq:016d}.batch", data)
        return manifest

    def batches(self) -> list[BatchManifest]:
        """Recorded batches in sequence order (unreadable manifests are removed: their requests replay alone)."""
        found = []
        for path in sorted(self.dir.glob("*.batch")):
            try:
                raw = json.loads(path.read_bytes())
                found.append(BatchManifest(token=str(raw["token"]),
                                           items=tuple((int(s), str(k)) for s, k in raw["items"])))
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
        return found

    def forget_batch(self, manifest: BatchManifest) -> None:
        """Remove a manifest (after its requests' files were deleted)."""
        (self.dir / f"{manifest.first_seq:016d}.batch").unlink(missing_ok=True)

    def delete(self, items: list[tuple[int, str, int]]) -> bool:
        """Remove confirmed entries: ``items`` are ``(seq, kind, size_bytes)``. Returns False when a file could not
        be removed (it stays and is replayed at the next start; its batch's manifest makes that re-insert a no-op)."""
        freed, complete = 0, True
        for seq, kind, size in items:
            try:
                os.unlink(self.dir / f"{seq:016d}.{kind}")
                freed += size
            except FileNotFoundError:
                pass
            except OSError as exc:
                complete = False
                log.error("cannot delete spooled request %d (%s): %s", seq, kind, exc.strerror or exc)
        with self._guard:
            self._bytes -= freed
        return complete

    def discard(self, items: list[tuple[int, str]]) -> None:
        """Delete entries ``(seq, kind)`` whose sizes are not known (replay cleanup)."""
        sized = []
        for seq, kind in items:
            try:
                sized.append((seq, kind, (self.dir / f"{seq:016d}.{kind}").stat().st_size))
            except FileNotFoundError:
                pass
        self.delete(sized)

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
