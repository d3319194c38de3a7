"""`python -m bench.run --smoke` writes every result file with the expected keys, the plots and the report.

No thresholds: benchmarks never fail CI on a number (issue 7). Real parts: the vLLM CPU engine (tiny model), the
embedded collector, chDB.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.common import RESULT_KEYS  # noqa: E402
from bench.run import BENCHMARKS, FULL_ONLY  # noqa: E402

pytestmark = pytest.mark.engine


def test_smoke_run_writes_results(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--results-dir", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in (n for n in BENCHMARKS if n not in FULL_ONLY):
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result.get("error") is None, f"{name}: {result.get('error')}"
        assert set(RESULT_KEYS) <= set(result), f"{name} lacks {set(RESULT_KEYS) - set(result)}"
        assert result["name"] == name and result["smoke"] is True
        assert result["environment"]["cores"] >= 1 and result["environment"]["date_utc"]
    overhead = json.loads((tmp_path / "overhead.json").read_text())["summary"]["tiny"]
    assert overhead["config"]["variants"] == ["none", "ours"]
    assert overhead["none"]["spans_per_request"] == 0  # the uninstrumented engine emits nothing
    assert overhead["ours"]["span_names"]["queue"] == 2 * 16  # warm-up + 1 round of 16 requests, one queue span each
    assert set(overhead["ours"]["throughput_ratio"]) == {"n", "median", "min", "max", "p25", "p75"}
    floor = json.loads((tmp_path / "overhead.json").read_text())["sdk_floor"]
    assert set(floor) == {"noexport_1_spans_us", "noexport_4_spans_us", "otlp_1_spans_us", "otlp_4_spans_us"}
    queries = json.loads((tmp_path / "queries.json").read_text())["summary"]
    assert queries["overall"]["table_rows"]["llm_requests"] == 100_000
    assert all(p["answers"]["exact_counts"] for k, p in queries.items() if k != "overall")
    storage = json.loads((tmp_path / "storage.json").read_text())["summary"]
    assert storage["requests"] == 100_000 and storage["spans"] == 400_000
    truth = json.loads((tmp_path / "truth.json").read_text())["summary"]["served"]["tiny"]
    assert truth["ok"] == 4 and truth["vllm_histogram"]["count"] == 4 and truth["spans"] == 4
    ingest = json.loads((tmp_path / "ingest.json").read_text())
    assert {"convert_python", "convert_c", "insert_null", "storage_floor", "grpc", "grpc_null"} <= set(ingest["summary"])
    assert ingest["ratios"]["convert_c_vs_python"] > 0 and "collector_only_spans_per_core_s" in ingest["targets"]
    for png in ("overhead_tiny.png", "queries.png", "storage.png", "ingest.png"):
        assert (tmp_path / png).stat().st_size > 1000
    report = (tmp_path / "BENCHMARKS.md").read_text()
    assert "## 1. Instrumentation overhead" in report and "| variant |" in report and "Failed" not in report
