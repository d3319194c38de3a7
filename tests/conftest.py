"""Shared fixtures. Area fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# vLLM on CPU: keep the KV cache small and the engine quiet in tests.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

CACHE_DIR = Path(os.environ.get("VLLM_OTEL_TEST_CACHE", Path(__file__).resolve().parent.parent / ".cache" / "tests"))


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """Directory of the tiny random-weight Llama (built once per checkout, seconds)."""
    from vllm_otel_inference.tiny_model import build_tiny_llama

    return build_tiny_llama(CACHE_DIR / "tiny-llama")
