"""Benchmark-only hook accounting, imported by :mod:`.safety` only when ``VLLM_OTEL_BENCH_HOOK_TIMES`` (a directory)
is set: every timed hook adds its ``time.thread_time_ns`` to a per-(hook, thread) total, and a daemon thread writes
``hooks-<pid>.json`` there whenever the benchmark asks (it creates ``dump-<pid>``; the thread looks every 0.2 s,
writes, removes the request): ``{"pid", "times": {"hook@thread": [cpu_ns, calls]}, "threads": {thread name: native
id}}``. Also charges garbage collections (``gc.gen<N>@thread``) and one clock-read gap per timed call
(``accounting@thread``), which the benchmark reports beside the hooks.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import Any, Callable

from opentelemetry.instrumentation.vllm.settings import ENV_BENCH_HOOK_TIMES

_bench_dir = os.environ.get(ENV_BENCH_HOOK_TIMES, "").strip()
_hook_times: dict[str, list[int]] = {}


def timed(hook: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Account ``fn``'s thread CPU time (ns) under ``hook``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
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
