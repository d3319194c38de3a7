"""Small helpers shared by the hooks: settings from the environment, hook safety, clock conversion."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

logger = logging.getLogger("opentelemetry.instrumentation.vllm")

#: Seconds after arrival when an unfinished request is ended as a zombie (``error.type=timeout``).
ENV_REQUEST_TIMEOUT = "OTEL_INSTRUMENTATION_VLLM_REQUEST_TIMEOUT"
#: Upper bound on in-flight request entries; beyond it the oldest entry is ended as a zombie.
ENV_MAX_IN_FLIGHT = "OTEL_INSTRUMENTATION_VLLM_MAX_IN_FLIGHT"
#: GenAI-wide opt-in for prompt/completion text (same variable as opentelemetry-instrumentation-openai-v2).
ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
#: "false" turns off the queue/prefill/decode child spans (their durations stay attributes of the request span):
#: 1 span per request instead of 4, ~3/4 less SDK cost per request (docs/BENCHMARKS.md, section 1).
ENV_PHASE_SPANS = "OTEL_INSTRUMENTATION_VLLM_PHASE_SPANS"

#: Telemetry child process that builds spans/metrics off the API server (see :mod:`.export_process`): unset = on when
#: the SDK was configured from the environment (``opentelemetry-instrument``), "false" = never, "true" = whenever no
#: provider object is passed to ``instrument()``.
ENV_EXPORT_PROCESS = "OTEL_INSTRUMENTATION_VLLM_EXPORT_PROCESS"

DEFAULT_REQUEST_TIMEOUT_S = 60.0
DEFAULT_MAX_IN_FLIGHT = 65536
_TRUE = {"1", "true", "yes", "on", "span_only", "span_and_event"}


@dataclass(frozen=True)
class Settings:
    """Instrumentation settings, read once per ``instrument()`` call.

    ``request_timeout_s`` — zombie timeout in seconds (default 60, must be > 0);
    ``max_in_flight`` — bound on tracked requests; ``capture_content`` — record prompt/completion text;
    ``phase_spans`` — emit the queue/prefill/decode child spans (default on); ``export_process`` — build spans and
    metrics in a telemetry child process (None = auto: on under ``opentelemetry-instrument``; never when a provider
    object is passed to ``instrument()``).
    """

    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    capture_content: bool = False
    phase_spans: bool = True
    export_process: bool | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        """Build from the environment; ``overrides`` (``instrument(**kwargs)``) win. Bad values fall back to defaults
        with one warning each (never raise: a typo must not stop the server)."""
        timeout = _float_env(ENV_REQUEST_TIMEOUT, DEFAULT_REQUEST_TIMEOUT_S)
        max_in_flight = int(_float_env(ENV_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT))
        capture = os.environ.get(ENV_CAPTURE_CONTENT, "").strip().lower() in _TRUE
        phases = os.environ.get(ENV_PHASE_SPANS, "true").strip().lower() not in ("0", "false", "no", "off")
        raw = os.environ.get(ENV_EXPORT_PROCESS, "").strip().lower()
        export = True if raw in ("1", "true", "yes", "on") else False if raw in ("0", "false", "no", "off") else None
        values = {"request_timeout_s": timeout, "max_in_flight": max_in_flight, "capture_content": capture,
                  "phase_spans": phases, "export_process": export}
        values.update({k: v for k, v in overrides.items() if k in values and v is not None})
        return cls(**values)


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
        if value > 0:
            return value
    except ValueError:
        pass
    logger.warning("%s=%r is not a positive number; using %s", name, raw, default)
    return default


# ---- hook safety ----------------------------------------------------------------------------------------------------
_error_counter: Any = None  # set by the instrumentor to the METRIC_HOOK_ERRORS counter
_logged_hooks: set[str] = set()


def set_error_counter(counter: Any) -> None:
    global _error_counter
    _error_counter = counter


def report_hook_error(hook: str, exc: BaseException) -> None:
    """Log ``exc`` once per hook name (with traceback) and count it in ``vllm_otel.instrumentation.errors``."""
    if hook not in _logged_hooks:
        _logged_hooks.add(hook)
        logger.warning("vllm-otel hook %s failed; telemetry for it is degraded, inference continues", hook,
                       exc_info=exc)
    counter = _error_counter
    if counter is not None:
        try:
            counter.add(1, {"hook": hook, "error.type": type(exc).__qualname__})
        except Exception:  # pragma: no cover - a broken meter must not break inference
            pass


def guarded(hook: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for telemetry-only code: any exception is reported via :func:`report_hook_error` and swallowed
    (the function then returns ``None``). With the benchmark switch :data:`ENV_BENCH_HOOK_TIMES` set, the call's
    thread CPU time is also accounted under ``hook`` (see :func:`timed`)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - that is the point
                report_hook_error(hook, exc)
                return None

        return timed(hook)(inner)

    return deco


# ---- benchmark-only hook accounting ------------------------------------------------------------------------------
#: Benchmark-only switch: a directory. When set, every guarded hook (and the writer) adds its ``time.thread_time_ns``
#: to a per-(hook, thread) total, and a daemon thread writes ``hooks-<pid>.json`` there whenever the benchmark asks
#: (it creates ``dump-<pid>``; the thread looks every 0.2 s, writes, removes the request):
#: ``{"pid", "times": {"hook@thread": [cpu_ns, calls]}, "threads": {thread name: native id}}``.
#: Unset (the default), :func:`timed` returns the function unchanged: zero cost.
ENV_BENCH_HOOK_TIMES = "VLLM_OTEL_BENCH_HOOK_TIMES"
_bench_dir = os.environ.get(ENV_BENCH_HOOK_TIMES, "").strip()
_hook_times: dict[str, list[int]] = {}


def bench_accounting_on() -> bool:
    """True when the benchmark-only hook accounting (:data:`ENV_BENCH_HOOK_TIMES`) is on in this process."""
    return bool(_bench_dir)


def timed(hook: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Account ``fn``'s thread CPU time (ns) under ``hook`` when the benchmark switch is on; identity otherwise."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not _bench_dir:
            return fn
        _start_dumper()

        probe = "accounting.vllm" if hook.startswith("vllm.") else "accounting"  # vLLM's own methods apart

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                _charge(hook, t0)
                _probe_clock(probe)

        return inner

    return deco


def _charge(name: str, t0: int) -> None:
    """Add this thread's CPU since ``t0`` (``time.thread_time_ns``) and one call to ``<name>@<thread>`` (one key per
    thread: no two threads update the same list). The clock is read first, so the bookkeeping is not charged."""
    dt = time.thread_time_ns() - t0
    key = f"{name}@{threading.current_thread().name}"
    acc = _hook_times.get(key)
    if acc is None:
        acc = _hook_times.setdefault(key, [0, 0])
    acc[0] += dt
    acc[1] += 1


def _probe_clock(name: str = "accounting") -> None:
    """Benchmark only: two back-to-back clock reads, charged to ``<name>@<thread>`` (``accounting``; for vLLM's own
    methods timed for scale, ``accounting.vllm``), right after a timed call
    (same caches, same contention). Every timed interval contains about one such gap (from the first read's sample
    to the second read's sample), so ``accounting`` µs per call estimates what the accounting adds to each hook's
    figure; the benchmark reports it beside the hooks and subtracts it from the attributed total."""
    t0 = time.thread_time_ns()
    _charge(name, t0)


_dumper: Any = None


def _account_gc() -> None:
    """Benchmark only: charge each garbage collection's thread CPU to ``gc.gen<N>@<thread>`` (a collection runs in
    whichever thread's allocation crossed the threshold, so it inflates that thread's telemetry figures)."""
    import gc

    started: dict[int, int] = {}

    def callback(phase: str, info: dict) -> None:
        ident = threading.get_ident()
        if phase == "start":
            started[ident] = time.thread_time_ns()
            return
        t0 = started.pop(ident, None)
        if t0 is None:
            return
        _charge(f"gc.gen{info.get('generation')}", t0)

    gc.callbacks.append(callback)


def _start_dumper() -> None:
    global _dumper
    if _dumper is not None:
        return
    import json

    _account_gc()

    path = os.path.join(_bench_dir, f"hooks-{os.getpid()}.json")
    request = os.path.join(_bench_dir, f"dump-{os.getpid()}")

    def dump() -> None:
        while True:
            time.sleep(0.2)
            if not os.path.exists(request):
                continue
            try:
                snap = {"pid": os.getpid(), "times": {k: list(v) for k, v in list(_hook_times.items())},
                        "threads": {t.name: t.native_id for t in threading.enumerate()}}
                tmp = f"{path}.tmp"
                with open(tmp, "w") as fh:
                    json.dump(snap, fh)
                os.replace(tmp, path)
                os.remove(request)
            except Exception:  # noqa: BLE001 - benchmark aid only
                pass

    _dumper = threading.Thread(target=dump, name="vllm-otel-bench-dump", daemon=True)
    _dumper.start()


# ---- clocks ---------------------------------------------------------------------------------------------------------
def monotonic_to_wall_offset() -> float:
    """Seconds to add to a ``time.monotonic()`` reading to get wall-clock (epoch) seconds.

    vLLM's engine core stamps QUEUED/SCHEDULED/first/last token with ``time.monotonic()`` in its own process;
    CLOCK_MONOTONIC is system-wide on Linux, so the frontend's offset converts them (same host only).
    """
    return time.time() - time.monotonic()


def to_ns(seconds: float) -> int:
    """Epoch seconds (float) -> epoch nanoseconds (int), the unit of OTel span timestamps."""
    return int(seconds * 1e9)
