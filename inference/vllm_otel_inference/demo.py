"""``vllm-otel demo``: the whole product on one machine, end to end.

1. prepare the model (the bundled SmolLM2-135M-Instruct unless ``--model DIR``),
2. start the collector (OTLP/gRPC receiver → embedded ClickHouse at ``<data dir>/clickhouse``),
3. start vLLM's OpenAI server under ``opentelemetry-instrument`` exporting to the collector, showing the engine start
   phase by phase (weights, KV cache, compile, warm-up) from the model-load spans as the collector stores them
   (redrawn in place on a terminal; one line per phase, then the table, when stdout is a pipe or a file),
4. send a streaming chat workload with the OpenAI client (each request with its own ``traceparent``),
5. wait until the request spans are stored, read them back from ClickHouse and print a table + summary,
6. stop everything (no process left behind) — also on failure and Ctrl-C.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vllm_otel_collector.errors import UserError
from vllm_otel_inference import readback
from vllm_otel_inference.launcher import VLLMServer, ensure_port_free
from vllm_otel_inference.workload import ClientResult, run_workload


@dataclass
class DemoOptions:
    """What ``vllm-otel demo`` runs. Ports are TCP ports on 127.0.0.1; ``data_dir`` holds ClickHouse data and logs."""

    requests: int = 16
    concurrency: int = 4
    max_tokens: int = 64
    model: Path | None = None
    served_model_name: str | None = None
    data_dir: Path = Path("data/demo")
    vllm_port: int = 8000
    otlp_port: int = 4317
    otlp_http_port: int = 4318
    api_port: int = 4319
    as_json: bool = False
    report: Path | None = None
    dtype: str = "auto"
    max_model_len: int = 2048
    span_wait_s: float = 30.0


def _validate(opts: DemoOptions) -> None:
    if opts.requests < 1:
        raise UserError(f"--requests must be >= 1 (got {opts.requests})")
    if opts.concurrency < 1:
        raise UserError(f"--concurrency must be >= 1 (got {opts.concurrency})")
    if opts.model is not None and not (opts.model / "config.json").is_file():
        raise UserError(f"model directory {opts.model} does not exist or has no config.json")
    for port, what in ((opts.vllm_port, "vLLM server"), (opts.otlp_port, "collector's OTLP/gRPC receiver"),
                       (opts.otlp_http_port, "collector's OTLP/HTTP receiver"), (opts.api_port, "collector's read API")):
        ensure_port_free("127.0.0.1", port, what)


def _resolve_model(opts: DemoOptions, console: Console) -> tuple[Path, str]:
    if opts.model is not None:
        return opts.model.resolve(), opts.served_model_name or opts.model.name
    from vllm_otel_inference.model_prep import prepare_smollm2

    return prepare_smollm2(console=console), opts.served_model_name or "SmolLM2-135M-Instruct"


def run_demo(opts: DemoOptions, console: Console | None = None) -> dict:
    """Run the demo; return ``{"requests": [...], "summary": {...}, "client": [...], "model_load": {...},
    "engine_start": {...}}`` (the last two: the assembled ``llm_model_loads`` row and the live view's last fold).

    ``requests`` are rows as read from ClickHouse; ``client`` is what the OpenAI client measured per request
    (:class:`ClientResult`), for cross-checking.

    Raises ``UserError`` for bad options (missing model dir, port in use) before anything starts.
    """
    # Wide enough for a 32-hex trace id plus the metric columns even when stdout is not a terminal.
    console = console or Console(stderr=opts.as_json, width=None if sys.stdout.isatty() else 160)
    _validate(opts)
    data_dir = opts.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    model_dir, model_name = _resolve_model(opts, console)

    from vllm_otel_collector.embedded import start_embedded_collector

    with ExitStack() as stack:
        with status(console, "starting the collector (embedded ClickHouse)…"):
            collector = stack.enter_context(start_embedded_collector(
                data_dir=data_dir, grpc_port=opts.otlp_port, http_port=opts.otlp_http_port, api_port=opts.api_port,
            ))
        console.print(f"[green]✓[/] collector: OTLP gRPC 127.0.0.1:{opts.otlp_port}, store {collector.store_dsn}")

        server = VLLMServer(
            model_dir=model_dir, served_model_name=model_name, otlp_endpoint=f"http://127.0.0.1:{opts.otlp_port}",
            port=opts.vllm_port, log_path=data_dir / "vllm.log", dtype=opts.dtype, max_model_len=opts.max_model_len,
        )
        launched = time.time()
        server.start()
        stack.callback(server.stop)
        ready_s, engine_start = wait_ready_live(server, collector.store, console, since=launched - 1.0)
        console.print(f"[green]✓[/] vLLM ready in {ready_s:.1f} s ({model_name}, log {server.log_path})")

        done = []
        t0 = time.perf_counter()
        with status(console, f"workload: 0/{opts.requests} requests") as progress:
            def on_done(r: ClientResult) -> None:
                done.append(r)
                progress.update(f"workload: {len(done)}/{opts.requests} requests")

            results = run_workload(server.base_url, model_name, requests=opts.requests,
                                   concurrency=opts.concurrency, max_tokens=opts.max_tokens, on_done=on_done)
        wall_s = time.perf_counter() - t0
        failed = [r for r in results if not r.ok]
        console.print(f"[green]✓[/] workload: {len(results) - len(failed)}/{len(results)} requests succeeded "
                      f"in {wall_s:.1f} s")
        for r in failed[:3]:
            console.print(f"[red]  request {r.index} failed: {r.error}")

        trace_ids = [r.trace_id for r in results]
        with status(console, "waiting for spans in ClickHouse…") as progress:
            rows = readback.wait_for_rows(
                collector.store, trace_ids, timeout_s=opts.span_wait_s,
                on_tick=lambda n: progress.update(f"waiting for spans in ClickHouse… {n}/{len(trace_ids)}"))
        by_trace = {r.trace_id: r for r in results}
        for row in rows:
            client = by_trace.get(row.trace_id)
            row.client_ttft_s = client.client_ttft_s if client else None
        summary = readback.summarize(rows, expected=len(results), wall_s=wall_s)
        if summary["missing_spans"]:
            console.print(f"[yellow]! {summary['missing_spans']} of {len(results)} requests have no span in "
                          f"ClickHouse (was the collector reachable? see {server.log_path})")
        output = {"requests": [r.to_dict() for r in rows], "summary": summary,
                  "client": [r.to_dict() for r in results], "model_load": readback.model_load(collector.store),
                  "engine_start": engine_start}

        if opts.report is not None:
            _write_report(collector.store, opts.report, console)

    if opts.as_json:
        print(json.dumps(output, indent=2))
    else:
        render(output, console)
    return output


def interactive(console: Console) -> bool:
    """Whether ``console`` may redraw in place (rich Live, spinners): its file is a terminal and rich treats it as
    one. A pipe or file gets complete lines only, even when FORCE_COLOR / TTY_COMPATIBLE make rich treat it as a
    terminal (redraws there are carriage returns and cursor moves that run lines into each other)."""
    isatty = getattr(console.file, "isatty", None)
    try:
        tty = bool(isatty is not None and isatty())
    except ValueError:  # a closed stream
        tty = False
    return tty and console.is_terminal and not console.is_dumb_terminal


class _Lines:
    """``console.status`` for output that is not a terminal: the message once as a line; updates are dropped (the
    step's result line follows)."""

    def __init__(self, console: Console, message: str):
        self.console, self.message = console, message

    def __enter__(self) -> "_Lines":
        self.console.print(self.message)
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def update(self, message: str) -> None:
        pass


def status(console: Console, message: str):
    """A spinner with ``message`` on a terminal (:func:`interactive`), else the message printed once as a line."""
    return console.status(message) if interactive(console) else _Lines(console, message)


def wait_ready_live(server: VLLMServer, store, console: Console, since: float,
                    settle_s: float = 5.0, poll_s: float = 1.0) -> tuple[float, dict | None]:
    """Wait for vLLM's ``/health`` while showing the engine start phase by phase, read every ``poll_s`` seconds
    from the model-load spans the collector has stored since ``since`` (unix s). After ready, wait up to
    ``settle_s`` seconds for the root span and the last phases. Returns ``(seconds waited, the start as last folded or
    None)``.

    On a terminal (:func:`interactive`) the table is redrawn in place (rich Live); otherwise each phase is printed
    as one line when it completes (or turns out to have no span), then the final table once."""
    from vllm_otel_collector.analytics.startup import engine_starts
    from vllm_otel_collector.views.startup import phase_line, render_start

    state: dict = {"start": None, "polled": 0.0}
    shown: set[tuple[str, str]] = set()

    def poll(force: bool = False) -> None:
        now = time.time()
        if force or now - state["polled"] >= poll_s:
            state["polled"] = now
            try:
                starts = engine_starts(store, since, limit=1)
            except Exception:  # noqa: BLE001 - the progress display never stops the demo
                starts = []
            state["start"] = starts[0] if starts else state["start"]

    def frame(waited: float):
        poll()
        return render_start(state["start"], time.time(), waited)

    def lines(_waited: float) -> None:
        poll()
        start = state["start"]
        for p in (start or {}).get("phases", []):
            if p["state"] in ("done", "missing") and (p["phase"], p["state"]) not in shown:
                shown.add((p["phase"], p["state"]))
                console.print(phase_line(p, start, time.time()), markup=False, highlight=False)

    def settle(update) -> None:
        deadline = time.monotonic() + settle_s  # the root ends just before /health answers; its export follows
        while not _complete(state["start"]) and time.monotonic() < deadline:
            time.sleep(min(0.5, poll_s))
            poll(force=True)
            update()

    if interactive(console):
        from rich.live import Live

        with Live(frame(0.0), console=console, refresh_per_second=4) as live:
            ready_s = server.wait_ready(on_tick=lambda s: live.update(frame(s)))
            settle(lambda: live.update(frame(ready_s)))
        return ready_s, state["start"]
    console.print("engine start: waiting for the model-load spans", markup=False, highlight=False)
    ready_s = server.wait_ready(on_tick=lines)
    poll(force=True)
    lines(ready_s)
    settle(lambda: lines(ready_s))
    console.print(render_start(state["start"], time.time(), ready_s))
    return ready_s, state["start"]


def _complete(start: dict | None) -> bool:
    """The start is ready and every phase has arrived (spans of other processes may follow the root)."""
    return bool(start and start["ready"] and all(p["state"] == "done" for p in start["phases"]))


def _write_report(store, out: Path, console: Console) -> None:
    try:
        from vllm_otel_collector.views.html import write_report
    except ImportError:
        return
    path = write_report(store, out)
    console.print(f"[green]✓[/] report: {path}")


def _fmt(value, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def render(output: dict, console: Console) -> None:
    """Print the per-request table and the summary (values as read from ClickHouse)."""
    table = Table(title="Requests (read back from ClickHouse)", show_lines=False)
    for col in ("trace id", "TTFT s", "client TTFT s", "TPOT s", "e2e s", "in tok", "out tok", "tok/s", "status"):
        table.add_column(col, justify="left" if col in ("trace id", "status") else "right", no_wrap=True)
    for r in output["requests"]:
        table.add_row(r["trace_id"], _fmt(r["ttft_s"]), _fmt(r["client_ttft_s"]), _fmt(r["tpot_s"], digits=4),
                      _fmt(r["e2e_s"]), _fmt(r["input_tokens"]), _fmt(r["output_tokens"]),
                      _fmt(r["tokens_per_s"], digits=1), r["status"])
    console.print(table)
    s = output["summary"]
    summary = Table(title="Summary", show_header=False)
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    summary.add_row("requests stored / sent", f"{s['count']} / {s['expected']}")
    summary.add_row("by status", ", ".join(f"{k}={v}" for k, v in sorted(s["by_status"].items())) or "–")
    summary.add_row("TTFT p50 / p95 (s)", f"{_fmt(s['ttft_p50_s'])} / {_fmt(s['ttft_p95_s'])}")
    summary.add_row("e2e p50 / p95 (s)", f"{_fmt(s['e2e_p50_s'])} / {_fmt(s['e2e_p95_s'])}")
    summary.add_row("mean TPOT (s)", _fmt(s["mean_tpot_s"], digits=4))
    summary.add_row("throughput (output tok/s)", _fmt(s["throughput_tokens_per_s"], digits=1))
    console.print(summary)
    load = output.get("model_load")
    if load:
        mb = (load["WeightsBytes"] or 0) / 1e6
        console.print(
            f"Model load ({load['Model'] or 'model'}, {load['SpanCount']} spans): load {_fmt(load['LoadSeconds'], ' s', 1)}"
            f", cold start {_fmt(load['ColdStartSeconds'], ' s', 1)}, weights {mb:.0f} MB in "
            f"{_fmt(load['WeightsSeconds'], ' s', 1)}, compile {_fmt(load['CompileSeconds'], ' s', 1)}"
            f" (cache hit: {load['CompileCacheHit']}), KV cache {load['KVCacheBlocks']} blocks, level {load['LoadLevel']}")
