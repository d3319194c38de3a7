"""Temporary minimal instrumentor so the package imports; replaced by the instrumentation work."""
from __future__ import annotations

from typing import Collection

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from opentelemetry.instrumentation.vllm.package import _instruments_any


class VLLMInstrumentor(BaseInstrumentor):
    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments_any

    def _instrument(self, **kwargs):
        pass

    def _uninstrument(self, **kwargs):
        pass
