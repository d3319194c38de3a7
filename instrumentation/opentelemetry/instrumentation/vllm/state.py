"""Process-wide handles of the active instrumentation (None while uninstrumented).

Hooks registered by vLLM itself (the stat-logger plugin) outlive ``uninstrument()``; they look here to know whether
to do anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.instrumentation.vllm.request.instruments import RequestInstruments as Instruments
    from opentelemetry.instrumentation.vllm.request.tracker import RequestTracker

_instruments: "Instruments | None" = None
_tracker: "RequestTracker | None" = None
#: ``time.monotonic()`` by which the process's exit must be done with telemetry (:mod:`.shutdown`); None until then.
_exit_deadline: float | None = None


def activate(instruments: "Instruments", tracker: "RequestTracker") -> None:
    global _instruments, _tracker
    _instruments, _tracker = instruments, tracker


def deactivate() -> None:
    global _instruments, _tracker
    _instruments, _tracker = None, None


def instruments() -> "Instruments | None":
    return _instruments


def tracker() -> "RequestTracker | None":
    return _tracker


def begin_exit(deadline: float) -> None:
    """The process is exiting: every flush from now on ends by ``deadline`` (a ``time.monotonic()`` value)."""
    global _exit_deadline
    _exit_deadline = deadline


def exit_deadline() -> float | None:
    return _exit_deadline
