"""Dead letters: accepted requests whose rows ClickHouse can never take (a permanent insert error, see
:mod:`vllm_otel_collector.store.errors`), kept aside instead of blocking the writer.

Layout: ``<data_dir>/dead-letters/<seq:016d>.<signal>`` holds the request's protobuf bytes as spooled, and
``<seq:016d>.<signal>.json`` the reason: ``{"table", "error", "time"}`` (time in unix seconds). Listed by
``vllm-otel dead-letters``; ``--replay`` puts them back into the spool (the collector must be stopped: the spool is
locked), so the next start writes them again — after the cause was fixed (a table repaired, a newer collector).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from vllm_otel_collector.pipeline.spool import KINDS, Spool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered request: spool ``seq``, ``signal`` name, ``size`` bytes, failing ``table``, ``error`` (one
    line), ``time`` (unix seconds) and its ``path``."""

    seq: int
    signal: str
    size: int
    table: str
    error: str
    time: float
    path: Path


class DeadLetters:
    """The dead-letter folder ``directory`` (created on first use)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def add(self, seq: int, signal: str, body: bytes, table: str, error: str) -> Path:
        """Store one request with its reason (written to a temporary name, then renamed: a crash leaves the whole
        letter or none; writing the same ``seq`` again replaces it). Raises ``OSError``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{seq:016d}.{signal}"
        reason = {"table": table, "error": error.splitlines()[0][:500] if error else "", "time": time.time()}
        for target, data in ((path.with_name(path.name + ".json"), json.dumps(reason).encode()), (path, body)):
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return path

    def list(self) -> list[DeadLetter]:
        """Every dead letter, in sequence order (a letter without a readable reason shows ``error`` "unknown")."""
        if not self.dir.is_dir():
            return []
        out = []
        for path in sorted(self.dir.iterdir()):
            stem, _, kind = path.name.partition(".")
            if kind not in KINDS or not stem.isdigit():
                continue
            try:
                reason = json.loads(path.with_name(path.name + ".json").read_bytes())
            except (OSError, ValueError):
                reason = {}
            out.append(DeadLetter(int(stem), kind, path.stat().st_size, str(reason.get("table", "")),
                                  str(reason.get("error", "unknown")), float(reason.get("time", 0.0)), path))
        return out

    def replay_into(self, spool: Spool) -> int:
        """Move every dead letter back into ``spool`` (new sequence numbers, replayed at the next start); returns how
        many. Raises ``SpoolFull``/``OSError`` (letters not yet moved stay here)."""
        n = 0
        for letter in self.list():
            spool.append(letter.signal, letter.path.read_bytes())
            self.remove(letter)
            n += 1
        return n

    def remove(self, letter: DeadLetter) -> None:
        """Delete one dead letter and its reason."""
        letter.path.with_name(letter.path.name + ".json").unlink(missing_ok=True)
        letter.path.unlink(missing_ok=True)
