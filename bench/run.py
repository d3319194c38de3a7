"""Run the benchmarks: ``python -m bench.run [--smoke] [--only NAME ...] [--results-dir DIR]``.

Each benchmark runs in its own child process (``python -m bench.run --child NAME``; chDB allows one data path per
process and vLLM engines must not outlive their benchmark) with a wall-clock limit, writes ``<results>/<name>.json``;
then :mod:`bench.report` draws the PNGs and (full runs into the default directory) rewrites ``docs/BENCHMARKS.md``.
A failed benchmark leaves a result file with ``"error"`` set and the others still run; the exit status is non-zero
only for bad arguments (benchmarks never fail on a number). ``--smoke`` runs tiny versions (seconds to ~2 min; not the served overhead benchmark, which
needs three vLLM servers) into ``bench/results/smoke/`` so that CI does not touch the committed full results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS_DIR, ROOT, new_result, write_result

#: name -> (module, limit in seconds for a full run). Order matters: truth reads overhead's offline pairs.
BENCHMARKS: dict[str, tuple[str, int]] = {
    "storage": ("bench.collector.storage", 900),
    "queries": ("bench.collector.queries", 1800),
    "ingest": ("bench.collector.ingest", 1200),
    "overhead": ("bench.instrumentation.overhead", 2400),
    "overhead_served": ("bench.instrumentation.overhead_served", 1800),
    "truth": ("bench.instrumentation.truth", 1200),
    "analytics_insert": ("bench.collector.analytics_insert", 1800),
}
SMOKE_DIR = RESULTS_DIR / "smoke"
#: Too slow for the smoke run (three vLLM servers); full runs only.
FULL_ONLY = ("overhead_served",)


def _child(name: str, smoke: bool, results_dir: Path, workdir: Path) -> int:
    """Run one benchmark in this process and write its result file."""
    import importlib

    from bench.common import environment

    os.environ["BENCH_RESULTS_DIR"] = str(results_dir)
    module = importlib.import_module(BENCHMARKS[name][0])
    t0 = time.perf_counter()
    if name == "ingest":  # bench/collector/ingest.py (collector's) has its own signature and leaves environment to us
        result = module.run(smoke=smoke)
        result.setdefault("environment", environment())
    else:
        result = module.run(smoke, workdir)
    result["elapsed_s"] = time.perf_counter() - t0
    write_result(name, result, results_dir)
    return 0


def run_all(names: list[str], smoke: bool, results_dir: Path, log=print) -> dict[str, dict]:
    """Run ``names`` one after the other in child processes; return ``{name: result dict}`` as written."""
    results = {}
    for name in names:
        module, limit = BENCHMARKS[name]
        limit = min(limit, 600) if smoke else limit
        log(f"==> {name} ({'smoke' if smoke else 'full'}, limit {limit} s)")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as work:
            cmd = [sys.executable, "-m", "bench.run", "--child", name, "--results-dir", str(results_dir),
                   "--workdir", work] + (["--smoke"] if smoke else [])
            log_path = Path(work) / "child.log"
            error = None
            with open(log_path, "wb") as fh:
                proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                        env=dict(os.environ, PYTHONPATH=str(ROOT)))
                try:
                    rc = proc.wait(timeout=limit)
                    if rc != 0:
                        error = f"exit status {rc}"
                except subprocess.TimeoutExpired:
                    import signal

                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    error = f"timed out after {limit} s"
            if error:
                tail = log_path.read_text(errors="replace").splitlines()[-20:]
                log(f"    {name} failed: {error}\n      " + "\n      ".join(tail))
                failed = new_result(name, smoke, f"{module} failed")
                failed["error"] = error + ": " + " | ".join(tail[-5:])
                write_result(name, failed, results_dir)
        path = results_dir / f"{name}.json"
        results[name] = json.loads(path.read_text())
        log(f"    {name}: {time.perf_counter() - t0:.0f} s → {path}")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny versions (CI): seconds to ~2 minutes, no thresholds")
    ap.add_argument("--only", nargs="+", metavar="NAME", help=f"run only these of: {', '.join(BENCHMARKS)}")
    ap.add_argument("--results-dir", type=Path, help="where result JSON/PNG go (default bench/results[/smoke])")
    ap.add_argument("--no-report", action="store_true", help="do not draw plots or rewrite docs/BENCHMARKS.md")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    results_dir = (args.results_dir or (SMOKE_DIR if args.smoke else RESULTS_DIR)).resolve()
    if args.child:
        return _child(args.child, args.smoke, results_dir, args.workdir)
    names = args.only or [n for n in BENCHMARKS if not (args.smoke and n in FULL_ONLY)]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})", file=sys.stderr)
        return 2
    results_dir.mkdir(parents=True, exist_ok=True)
    run_all(names, args.smoke, results_dir)
    if not args.no_report:
        from bench import report

        docs = ROOT / "docs" / "BENCHMARKS.md" if results_dir == RESULTS_DIR.resolve() else results_dir / "BENCHMARKS.md"
        report.render(results_dir, docs)
        print(f"==> report: {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
