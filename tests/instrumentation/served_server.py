"""The one served-vLLM starter of the tests: vLLM's OpenAI server under ``opentelemetry-instrument`` exporting OTLP
traces (and metrics) to an in-test receiver (:mod:`otlp_sink`) — :func:`instrumented_server`, with the environment
:func:`otel_env` (also for offline scripts) and the process-group handling :func:`server_group` (start, wait for
health, stop). Used by the served span, metric parity, FastAPI coexistence and stock-pipeline differential tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx

from opentelemetry.instrumentation.vllm import semconv as sc
from otlp_sink import OtlpSink  # noqa: E402  (tests/instrumentation is on sys.path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_group(cmd: list[str], env: dict[str, str], port: int, log: Path, startup_s: float,
                 started: list | None = None):
    """Start ``cmd`` in its own process group (output to ``log``), wait up to ``startup_s`` seconds for ``/health``,
    yield the base URL, then stop the whole group (SIGTERM, SIGKILL after 30 s). Raises ``RuntimeError`` with the
    log's tail when the server exits or stays unhealthy. ``started`` gets the ``Popen`` (the group leader)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    if started is not None:
        started.append(proc)
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


def otel_env(sink: OtlpSink, service: str, metrics: bool = True, **extra: str) -> dict[str, str]:
    """This process's environment plus the SDK's: OTLP/gRPC to ``sink``, traces (batch delay 200 ms) and, with
    ``metrics``, metrics every 500 ms; logs off; a 1 GiB CPU KV cache. ``extra`` variables win."""
    env = dict(os.environ, OTEL_SERVICE_NAME=service, OTEL_TRACES_EXPORTER="otlp",
               OTEL_METRICS_EXPORTER="otlp" if metrics else "none", OTEL_LOGS_EXPORTER="none",
               OTEL_EXPORTER_OTLP_PROTOCOL="grpc", OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint,
               OTEL_EXPORTER_OTLP_INSECURE="true", OTEL_METRIC_EXPORT_INTERVAL="500", OTEL_BSP_SCHEDULE_DELAY="200",
               VLLM_CPU_KVCACHE_SPACE="1")
    env.update(extra)
    return env


@contextmanager
def instrumented_server(model_dir: Path, log: Path, extra: list[str] = (), env_extra: dict[str, str] | None = None,
                        entry: list[str] | None = None, *, sink: OtlpSink | None = None, service: str = "vllm-test",
                        metrics: bool = True, served_name: str | None = "tiny", max_num_seqs: int = 32,
                        started: list | None = None):
    """The OpenAI server under opentelemetry-instrument (tiny model: float32, eager, max-model-len 2048) exporting to
    ``sink`` (started and stopped by the caller; a new :class:`OtlpSink` for the block when None). Yields ``(sink, base_url)``; with ``metrics`` it first waits for
    the engine metrics' first exports. ``entry`` replaces ``-m vllm.entrypoints.openai.api_server``;
    ``served_name`` None: the model is named by its path; ``started`` gets the server's ``Popen``."""
    port = free_port()
    venv_bin = Path(sys.executable).parent
    with (nullcontext(sink) if sink is not None else OtlpSink()) as receiver:  # a given sink stays the caller's
        env = otel_env(receiver, service, metrics, **(env_extra or {}))
        entry = entry or ["-m", "vllm.entrypoints.openai.api_server"]
        cmd = [str(venv_bin / "opentelemetry-instrument"), sys.executable, *entry, "--model", str(model_dir),
               *(["--served-model-name", served_name] if served_name else []), "--dtype", "float32",
               "--max-model-len", "2048", "--enforce-eager", "--host", "127.0.0.1", "--port", str(port),
               "--max-num-seqs", str(max_num_seqs), *extra]
        with server_group(cmd, env, port, log, startup_s=480, started=started) as base:  # cold starts on 2 saturated cores: > 300 s
            if metrics:
                receiver.wait_until(lambda: sc.METRIC_KV_CACHE_USAGE in receiver.names() or receiver.exports > 4, 60)
            yield receiver, base


def hook_calls(hooks_dir: Path, pid: int, deadline_s: float = 60.0) -> dict[str, int]:
    """Calls per timed hook of process ``pid`` started with ``VLLM_OTEL_BENCH_HOOK_TIMES=hooks_dir``
    (``{hook: calls}`` summed over threads): asks its dump thread for a snapshot and waits for it."""
    import json
    import time as _time

    request = hooks_dir / f"dump-{pid}"
    request.touch()
    deadline = _time.monotonic() + deadline_s
    while request.exists():
        assert _time.monotonic() < deadline, "the server's hook accounting never answered"
        _time.sleep(0.05)
    out: dict[str, int] = {}
    for key, (_, calls) in json.loads((hooks_dir / f"hooks-{pid}.json").read_text())["times"].items():
        hook = key.split("@", 1)[0]
        out[hook] = out.get(hook, 0) + calls
    return out

