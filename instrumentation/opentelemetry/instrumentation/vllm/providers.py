"""Shut the OpenTelemetry SDK providers of this process down within a time bound, whatever the exporter does.

The SDK's own ``shutdown()`` is not bounded as a whole: ``TracerProvider.shutdown()`` takes no timeout and its
``BatchSpanProcessor`` waits up to 30 s for the worker, whose export to an endpoint that refuses or never answers
retries until ``OTEL_EXPORTER_OTLP_TIMEOUT`` (10 s) per batch; ``MeterProvider.shutdown`` ends with one more export
of the same kind. Measured on a served vLLM under ``opentelemetry-instrument``: SIGTERM took 21 s with the endpoint
refusing and 38 s with it blackholed (issue #22) — past Kubernetes' 30 s grace period.

:func:`shutdown_providers` runs each provider's ``shutdown`` in its own daemon thread (all at once) and waits for
them up to the bound; a provider still exporting then is abandoned (its daemon thread dies with the process) and
named in the result. Each provider's own ``atexit`` handler is unregistered first, so the interpreter does not run
the unbounded shutdown again after ours.
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import Any, Iterable


def sdk_providers() -> list[Any]:
    """This process's global tracer, meter and logger providers that are SDK objects (proxies and no-op providers
    are left out: they hold nothing to export)."""
    out: list[Any] = []
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        out += [p for p, cls in ((trace.get_tracer_provider(), TracerProvider),
                                 (metrics.get_meter_provider(), MeterProvider)) if isinstance(p, cls)]
    except ImportError:  # API without SDK: nothing of ours to shut down
        return out
    try:
        from opentelemetry._logs import get_logger_provider
        from opentelemetry.sdk._logs import LoggerProvider

        provider = get_logger_provider()
        if isinstance(provider, LoggerProvider):
            out.append(provider)
    except ImportError:
        pass
    return out


def _shutdown_call(provider: Any, timeout_s: float) -> None:
    try:
        from opentelemetry.sdk.metrics import MeterProvider

        if isinstance(provider, MeterProvider):
            provider.shutdown(timeout_millis=max(timeout_s, 0.0) * 1e3)
            return
    except ImportError:
        pass
    provider.shutdown()


def shutdown_providers(timeout_s: float, providers: Iterable[Any] | None = None) -> list[str]:
    """Shut ``providers`` (default :func:`sdk_providers`) down in parallel within ``timeout_s`` seconds.

    Returns the class names of the providers whose shutdown had not returned by then (or raised), [] when all
    finished. Never raises.
    """
    todo = list(sdk_providers() if providers is None else providers)
    deadline = time.monotonic() + max(timeout_s, 0.0)
    failed: list[str] = []
    threads = []
    for provider in todo:
        try:
            atexit.unregister(provider.shutdown)  # bound methods compare equal: the SDK's own exit handler
        except Exception:  # noqa: BLE001 - an exotic provider: its handler may run again (a second shutdown is a no-op)
            pass

        def run(p: Any = provider) -> None:
            try:
                _shutdown_call(p, deadline - time.monotonic())
            except Exception:  # noqa: BLE001 - reported by name below
                failed.append(type(p).__name__)

        thread = threading.Thread(target=run, name=f"vllm-otel-shutdown-{type(provider).__name__}", daemon=True)
        thread.start()
        threads.append((provider, thread))
    for provider, thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
        if thread.is_alive():
            failed.append(type(provider).__name__)
    return sorted(set(failed))
