"""Run a collector inside the current process (the demo): ``with start_embedded_collector(...) as c: ...``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from vllm_otel_collector.collector import Collector
from vllm_otel_collector.config import load_config
from vllm_otel_collector.errors import UserError
from vllm_otel_collector.store import redact_dsn


class EmbeddedCollector:
    """What the context manager yields: the running :class:`Collector` plus ``store`` and ``store_dsn``."""

    def __init__(self, collector: Collector):
        self.collector = collector
        self.store = collector.store
        self.store_dsn = redact_dsn(collector.config.dsn)

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything accepted so far is written to ClickHouse."""
        return self.collector.drain(timeout_s)


@contextlib.contextmanager
def start_embedded_collector(data_dir: Path, grpc_port: int = 4317, http_port: int | None = 4318,
                             api_port: int | None = 4319, host: str = "127.0.0.1", clickhouse: str | None = None,
                             **settings) -> Iterator[EmbeddedCollector]:
    """Start a collector storing into ``chdb://<data_dir>/clickhouse`` (or ``clickhouse``); stop (flush) on exit.

    ``http_port``/``api_port`` None disables that listener; ``settings`` are further :class:`Config` fields.
    Raises ``UserError`` (port in use, store unreachable) before yielding.
    """
    cfg = load_config(
        None, data_dir=Path(data_dir), clickhouse=clickhouse,
        grpc_listen=f"{host}:{grpc_port}",
        http_listen=f"{host}:{http_port}" if http_port is not None else "off",
        api_listen=f"{host}:{api_port}" if api_port is not None else "off",
        **settings,
    )
    collector = Collector(cfg).start()
    try:
        if not collector.wait_ready(30):
            raise UserError("the collector did not become ready within 30 s (store unreachable?)")
        yield EmbeddedCollector(collector)
    finally:
        collector.stop()
