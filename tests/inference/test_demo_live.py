"""The demo's engine-start display when stdout is not a terminal: complete lines, no redraws.

A fake vLLM server (``wait_ready`` ticks like the real one) and a fake store (``llm_startup_spans`` rows growing stage
by stage, as the collector stores them while vLLM starts) drive :func:`wait_ready_live`; the fold and the table are
the real ones (analytics/startup.py, views/startup.py)."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

from rich.console import Console

from opentelemetry.instrumentation.vllm import semconv as sc
from vllm_otel_inference.demo import interactive, status, wait_ready_live

BASE = 1_700_000_000.0
TRACE = "ab" * 16


def _span(name: str, t0: float, t1: float, attrs: dict | None = None) -> tuple:
    return (TRACE, name, BASE + t0, t1 - t0, "vllm", attrs or {})


#: What the store holds at each poll: a CPU cold start whose compile fell back to the "Warmup (CPU)" span's time.
STAGES = [
    [],
    [_span("Load weights", 3, 7, {sc.LOAD_WEIGHTS_SECONDS: "4.0", sc.LOAD_WEIGHTS_BYTES: "269060000"}),
     _span("Load model", 2, 8, {sc.LOAD_MODEL_NAME: "SmolLM2-135M-Instruct"})],
    [_span("Allocate KV cache", 9, 10.5),
     _span("Warmup (CPU)", 11, 123.2, {sc.LOAD_COMPILE_SECONDS: "112.2", sc.LOAD_COMPILE_CACHE_HIT: "false"}),
     _span("Prepare model", 8.5, 124, {sc.LOAD_KV_BLOCKS: "4096", sc.LOAD_KV_BYTES: "1073741824"})],
    [_span("Overall Loading", 0, 130, {sc.LOAD_TOTAL_SECONDS: "130.0", sc.LOAD_COLD_START_SECONDS: "134.5"})],
]


class FakeStore:
    """``llm_startup_spans`` as ``engine_starts`` reads it; each query shows one more stage."""

    def __init__(self):
        self.polls = 0

    def query(self, sql: str, parameters=None):
        assert "llm_startup_spans" in sql
        stage = min(self.polls, len(STAGES) - 1)
        self.polls += 1
        rows = [r for s in STAGES[:stage + 1] for r in s]
        return SimpleNamespace(result_rows=sorted(rows, key=lambda r: r[2]))


class FakeServer:
    def wait_ready(self, on_tick=None) -> float:
        for i in range(5):
            on_tick(i * 0.5)
        return 2.5


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _plain_console(file) -> Console:
    # force_terminal: what FORCE_COLOR / TTY_COMPATIBLE=1 do to rich on a pipe (the case that redrew before)
    return Console(file=file, force_terminal=True, color_system=None, width=120)


def test_not_a_terminal_gets_one_line_per_phase_then_the_table():
    out = io.StringIO()
    console = _plain_console(out)
    assert not interactive(console)
    ready_s, start = wait_ready_live(FakeServer(), FakeStore(), console, since=BASE - 1, settle_s=2.0, poll_s=0.0)
    text = out.getvalue()
    assert ready_s == 2.5 and start["ready"] and start["trace_id"] == TRACE
    assert "\r" not in text and "\x1b" not in text  # no carriage return, no cursor movement or erase
    lines = text.splitlines()
    assert text.endswith("\n") and all(ln == ln.rstrip("\r") for ln in lines)
    progress = [ln for ln in lines if ln.startswith("engine start:")]
    assert progress == [
        "engine start: waiting for the model-load spans",
        "engine start: weights done 4.0 s, 269 MB loaded",
        "engine start: KV cache done 1.5 s, 4096 blocks, 1.07 GB",
        "engine start: compile done 112.2 s, compile cache miss (cold compile)",
        "engine start: warm-up done, not measured apart from compile (one 112.2 s span)",
        "engine start: ready done 130.0 s, cold start (process start → ready) 134.5 s",
    ]
    # then the final table, once
    assert sum(1 for ln in lines if "engine start — SmolLM2-135M-Instruct ready in 130.0 s" in ln) == 1
    (warm,) = [re.sub(r"\s+", " ", ln.replace("│", " ")).strip() for ln in lines if "warm-up" in ln and "│" in ln]
    assert warm == "warm-up ✓ done – not measured apart from compile (one 112.2 s span)"
    assert lines.index(progress[-1]) < min(i for i, ln in enumerate(lines) if "│" in ln)


def test_a_terminal_still_redraws_in_place():
    out = Tty()
    console = Console(file=out, force_terminal=True, color_system=None, width=120)
    assert interactive(console)
    wait_ready_live(FakeServer(), FakeStore(), console, since=BASE - 1, settle_s=2.0, poll_s=0.0)
    assert "\x1b[" in out.getvalue() and "engine start: weights" not in out.getvalue()


def test_status_is_a_line_when_not_a_terminal():
    out = io.StringIO()
    console = _plain_console(out)
    with status(console, "waiting for spans in ClickHouse…") as progress:
        progress.update("waiting for spans in ClickHouse… 3/16")
        progress.update("waiting for spans in ClickHouse… 16/16")
    console.print("done")
    assert out.getvalue() == "waiting for spans in ClickHouse…\ndone\n"
