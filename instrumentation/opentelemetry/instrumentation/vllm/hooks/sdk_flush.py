"""The flush contract with the OpenTelemetry SDK: ``TracerProvider.force_flush()/shutdown()`` and
``MeterProvider.force_flush()/shutdown()`` first run our flush chain (:mod:`..handoff.sink`: request writer, engine
queue, telemetry child), so they include every request that had finished when they were called and shutdown loses
nothing (the writer keeps SDK work off vLLM's output loop, but must not hide finished requests from a flush).
Offline ``LLM`` calls run it on return (see :mod:`.engines`).

The wrappers run the SDK's own method afterwards in every case; a drain that times out (10 s at most, less when the
caller's ``timeout_millis`` is smaller, or the process's exit bound nearer) is counted as a hook error and the
flush goes on.
"""

from __future__ import annotations

import time

from opentelemetry.instrumentation.vllm import state
from opentelemetry.instrumentation.vllm.hooks.patcher import Patcher
from opentelemetry.instrumentation.vllm.safety import report_hook_error

_MAX_DRAIN_S = 10.0


class DrainTimeout(Exception):
    """The request writer did not catch up within the flush's time limit."""


def _drain_first(wrapped, instance, args, kwargs):
    tracker = state.tracker()
    if tracker is not None:
        try:
            millis = args[0] if args else kwargs.get("timeout_millis")
            limit = _MAX_DRAIN_S if not isinstance(millis, (int, float)) else min(_MAX_DRAIN_S, max(millis, 0) / 1e3)
            deadline = state.exit_deadline()
            if deadline is not None:  # at exit: within the shutdown bound (:mod:`..shutdown`)
                limit = min(limit, max(deadline - time.monotonic(), 0.0))
            if not tracker.flush(limit):
                raise DrainTimeout(f"request writer not drained within {limit} s")
        except Exception as exc:  # noqa: BLE001 - a flush must still flush
            report_hook_error("sdk.flush", exc)
    return wrapped(*args, **kwargs)


def install(patcher: Patcher) -> None:
    """Wrap the SDK providers' ``force_flush`` and ``shutdown`` (applied when the SDK modules are imported)."""
    for module, cls in (("opentelemetry.sdk.trace", "TracerProvider"), ("opentelemetry.sdk.metrics", "MeterProvider")):
        patcher.wrap(module, f"{cls}.force_flush", _drain_first)
        patcher.wrap(module, f"{cls}.shutdown", _drain_first)
