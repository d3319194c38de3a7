"""Moved (#11): the C hot path lives in :mod:`vllm_otel_collector.otlp.native`, :class:`SpanInterest` in
:mod:`vllm_otel_collector.plugins`. This alias stays only until ``analytics/derive.py`` imports it from there."""

from vllm_otel_collector.plugins import SpanInterest

__all__ = ["SpanInterest"]
