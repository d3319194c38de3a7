"""Start vLLM's OpenAI server under ``opentelemetry-instrument`` exporting OTLP metrics and traces to an in-test
receiver (:mod:`otlp_metrics_receiver`); used by the metric parity and FastAPI coexistence tests.
:func:`server_group` (start, wait for health, stop the process group) is shared with the served span tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from opentelemetry.instrumentation.vllm import semconv as sc
from otlp_metrics_receiver import OtlpMetricsReceiver  # noqa: E402  (tests/instrumentation is on sys.path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_group(cmd: list[str], env: dict[str, str], port: int, log: Path, startup_s: float):
    """Start ``cmd`` in its own process group (output to ``log``), wait up to ``startup_s`` seconds for ``/health``,
    yield the base URL, then stop the whole group (SIGTERM, SIGKILL after 30 s). Raises ``RuntimeError`` with the
    log's tail when the server exits or stays unhealthy."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def instrumented_server(model_dir: Path, log: Path, extra: list[str], env_extra: dict[str, str] | None = None,
                        entry: list[str] | None = None):
    """The OpenAI server under opentelemetry-instrument, metrics (and traces) exported every 500 ms to a receiver.
    Yields ``(receiver, base_url)``; ``entry`` replaces ``-m vllm.entrypoints.openai.api_server``."""
    port = free_port()
    venv_bin = Path(sys.executable).parent
    with OtlpMetricsReceiver() as receiver:
        env = dict(os.environ, OTEL_SERVICE_NAME="vllm-parity", OTEL_TRACES_EXPORTER="otlp",
                   OTEL_METRICS_EXPORTER="otlp", OTEL_LOGS_EXPORTER="none", OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                   OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_EXPORTER_OTLP_INSECURE="true",
                   OTEL_METRIC_EXPORT_INTERVAL="500", OTEL_BSP_SCHEDULE_DELAY="200", VLLM_CPU_KVCACHE_SPACE="1",
                   **(env_extra or {}))
        entry = entry or ["-m", "vllm.entrypoints.openai.api_server"]
        cmd = [str(venv_bin / "opentelemetry-instrument"), sys.executable, *entry,
               "--model", str(model_dir), "--served-model-name", "tiny", "--dtype", "float32", "--max-model-len",
               "2048", "--enforce-eager", "--host", "127.0.0.1", "--port", str(port), "--max-num-seqs", "32", *extra]
        with server_group(cmd, env, port, log, startup_s=480) as base:  # cold starts on 2 saturated cores: > 300 s
            receiver.wait_for(lambda: sc.METRIC_KV_CACHE_USAGE in receiver.names() or receiver.exports > 4, 60)
            yield receiver, base
