"""Instrumentation must never hurt inference: every telemetry-only code path runs :func:`guarded` (or catches and
calls :func:`report_hook_error` itself). A failure is logged once per hook (with its traceback) and counted in
``vllm_otel.instrumentation.errors`` by ``hook`` and ``error.type``; vLLM carries on.

:func:`timed` is the benchmark's per-hook CPU accounting (:mod:`._bench`), the identity unless
``VLLM_OTEL_BENCH_HOOK_TIMES`` is set: the shipped hot path never loads it.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

from opentelemetry.instrumentation.vllm.settings import ENV_BENCH_HOOK_TIMES, logger

__all__ = ["BENCH_ON", "count_hook_error", "guarded", "logger", "report_hook_error", "set_error_counter", "timed"]

#: True when the benchmark-only hook accounting is on in this process.
BENCH_ON = bool(os.environ.get(ENV_BENCH_HOOK_TIMES, "").strip())

if BENCH_ON:
    from opentelemetry.instrumentation.vllm._bench import timed
else:
    def timed(hook: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Identity (the benchmark switch is off): ``fn`` is returned unchanged."""
        return _identity


def _identity(fn: Callable[..., Any]) -> Callable[..., Any]:
    return fn


_error_counter: Any = None  # set by the instrumentor (or the telemetry child) to its METRIC_HOOK_ERRORS counter
_logged_hooks: set[str] = set()


def set_error_counter(counter: Any) -> None:
    """Point hook-error counting at ``counter`` (an SDK counter, or None: log only)."""
    global _error_counter
    _error_counter = counter


def error_counter() -> Any:
    """The counter hook errors go to now (None: none)."""
    return _error_counter


def report_hook_error(hook: str, exc: BaseException) -> None:
    """Log ``exc`` once per hook name (with traceback) and count it in ``vllm_otel.instrumentation.errors``."""
    if hook not in _logged_hooks:
        _logged_hooks.add(hook)
        logger.warning("vllm-otel hook %s failed; telemetry for it is degraded, inference continues", hook,
                       exc_info=exc)
    count_hook_error(hook, exc)


def count_hook_error(hook: str, exc: BaseException, n: int = 1) -> None:
    """Count ``n`` errors of ``hook`` in ``vllm_otel.instrumentation.errors`` without logging (for callers that log
    their own one-line message)."""
    counter = _error_counter
    if counter is not None and n > 0:
        try:
            counter.add(n, {"hook": hook, "error.type": type(exc).__qualname__})
        except Exception:  # pragma: no cover - a broken meter must not break inference
            pass


def guarded(hook: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for telemetry-only code: any exception is reported via :func:`report_hook_error` and swallowed
    (the function then returns ``None``); its thread CPU is accounted under ``hook`` by :func:`timed`."""

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
