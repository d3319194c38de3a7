"""Every ``OTEL_INSTRUMENTATION_VLLM_*`` variable (and the GenAI content opt-in), parsed one way: :func:`env_flag`,
:func:`env_positive`, :func:`env_tristate`. A bad value never raises (a typo must not stop the server): it falls back
to the default with one warning.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("opentelemetry.instrumentation.vllm")
if logger.level == logging.NOTSET:
    # vLLM's API server runs with the root logger at ERROR: without a level of its own, every one-time warning of
    # ours (a hook that failed, a lost child, a cut-off shutdown) would be dropped there. A user's setting wins.
    logger.setLevel(logging.WARNING)

#: Seconds after arrival when an unfinished request is ended as a zombie (``error.type=timeout``).
ENV_REQUEST_TIMEOUT = "OTEL_INSTRUMENTATION_VLLM_REQUEST_TIMEOUT"
#: Upper bound on in-flight request entries; beyond it the oldest entry is ended as a zombie.
ENV_MAX_IN_FLIGHT = "OTEL_INSTRUMENTATION_VLLM_MAX_IN_FLIGHT"
#: GenAI-wide opt-in for prompt/completion text (same variable as opentelemetry-instrumentation-openai-v2).
ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
#: "false" turns off the queue/prefill/decode child spans (their durations stay attributes of the request span):
#: 1 span per request instead of 4, ~3/4 less SDK cost per request (docs/BENCHMARKS.md, section 1).
ENV_PHASE_SPANS = "OTEL_INSTRUMENTATION_VLLM_PHASE_SPANS"
#: Telemetry child process that builds spans/metrics off the API server (see :mod:`.handoff`): unset = on when the
#: SDK was configured from the environment (``opentelemetry-instrument``), "false" = never, "true" = whenever no
#: provider object is passed to ``instrument()``.
ENV_EXPORT_PROCESS = "OTEL_INSTRUMENTATION_VLLM_EXPORT_PROCESS"
#: "false" keeps the engine counters and gauges but records no engine histogram (the histograms are the only
#: per-value SDK work: ~1 ``record`` per generated token for inter-token latency).
ENV_ENGINE_HISTOGRAMS = "OTEL_INSTRUMENTATION_VLLM_ENGINE_HISTOGRAMS"
#: "false": the engine metric set comes from our own stat logger (a call per engine step on vLLM's event loop) even
#: where vLLM's Prometheus registry has it; default true (:mod:`.engine.source`).
ENV_ENGINE_METRICS_FROM_REGISTRY = "OTEL_INSTRUMENTATION_VLLM_ENGINE_METRICS_FROM_REGISTRY"
#: "true": patch vLLM even outside the declared version range and where a feature's needs look missing or changed
#: (:mod:`.compat`); every patch stays guarded. For trying a newer vLLM before it is declared.
ENV_FORCE = "OTEL_INSTRUMENTATION_VLLM_FORCE"
#: Seconds the process's exit may spend on telemetry (flush the request writer, the telemetry child, the SDK
#: providers), whatever the OTLP backend does: refusing, never answering, or a stopped child. What is not exported by
#: then is dropped, logged once and counted. Kubernetes' default grace period is 30 s; vLLM itself exits in < 1 s.
ENV_SHUTDOWN_TIMEOUT = "OTEL_INSTRUMENTATION_VLLM_SHUTDOWN_TIMEOUT"
#: Benchmark-only switch (a directory): per-hook thread-CPU accounting, see :mod:`._bench`. Unset: zero cost.
ENV_BENCH_HOOK_TIMES = "VLLM_OTEL_BENCH_HOOK_TIMES"

DEFAULT_REQUEST_TIMEOUT_S = 60.0
DEFAULT_MAX_IN_FLIGHT = 65536
DEFAULT_SHUTDOWN_TIMEOUT_S = 5.0
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
#: The GenAI content variable also accepts the openai-v2 instrumentation's modes.
_CONTENT_TRUE = _TRUE | {"span_only", "span_and_event"}


def env_tristate(name: str) -> bool | None:
    """True / False for the usual spellings of ``name``'s value, None when unset or anything else."""
    raw = os.environ.get(name, "").strip().lower()
    return True if raw in _TRUE else False if raw in _FALSE else None


def env_flag(name: str, default: bool) -> bool:
    """``name`` as a boolean; ``default`` when unset or not a boolean spelling."""
    value = env_tristate(name)
    return default if value is None else value


def env_positive(name: str, default: float) -> float:
    """``name`` as a finite number > 0; ``default`` (with one warning) when it is not one (``inf``, ``1e400`` and
    ``nan`` included: an infinite timeout would overflow a thread wait, an infinite bound an ``int``)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
        if 0 < value < math.inf:
            return value
    except ValueError:
        pass
    logger.warning("%s=%r is not a positive number; using %s", name, raw, default)
    return default


@dataclass(frozen=True)
class Settings:
    """Instrumentation settings, read once per ``instrument()`` call.

    ``request_timeout_s`` — zombie timeout in seconds (default 60, must be > 0);
    ``max_in_flight`` — bound on tracked requests; ``capture_content`` — record prompt/completion text;
    ``phase_spans`` — emit the queue/prefill/decode child spans (default on); ``export_process`` — build spans and
    metrics in a telemetry child process (None = auto: on under ``opentelemetry-instrument``; never when a provider
    object is passed to ``instrument()``); ``shutdown_timeout_s`` — the bound on telemetry work at process exit,
    seconds (default 5, must be > 0).
    """

    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    capture_content: bool = False
    phase_spans: bool = True
    export_process: bool | None = None
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        """Build from the environment; ``overrides`` (``instrument(**kwargs)``) that are not None win."""
        values = {"request_timeout_s": env_positive(ENV_REQUEST_TIMEOUT, DEFAULT_REQUEST_TIMEOUT_S),
                  "max_in_flight": max(1, int(env_positive(ENV_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT))),  # 0.5 → 1, not 0
                  "capture_content": os.environ.get(ENV_CAPTURE_CONTENT, "").strip().lower() in _CONTENT_TRUE,
                  "phase_spans": env_flag(ENV_PHASE_SPANS, True),
                  "export_process": env_tristate(ENV_EXPORT_PROCESS),
                  "shutdown_timeout_s": env_positive(ENV_SHUTDOWN_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT_S)}
        values.update({k: v for k, v in overrides.items() if k in values and v is not None})
        return cls(**values)
