"""Performance levels: how a latency compares to its threshold.

Bands (issue 5), with ``r = value / threshold``:
EXCELLENT ``r < 0.5``; GOOD ``0.5 <= r <= 1.0``; SLOW ``1.0 < r <= 1.5``; BOTTLENECK ``r > 1.5``.
A missing value or a metric without a threshold has no level (``None``; stored as ``NONE``).

Thresholds are looked up per (span name, metric) from :class:`~.config.LevelThreshold` entries, first glob match in
config order; lookups are memoized per span name because span names have low cardinality.
"""

from __future__ import annotations

import fnmatch
from typing import Iterable

EXCELLENT = "EXCELLENT"
GOOD = "GOOD"
SLOW = "SLOW"
BOTTLENECK = "BOTTLENECK"
NONE = "NONE"
#: A value that contradicts another of the same request (TTFT > E2E): not a measurement, kept out of the rollups.
INVALID = "INVALID"
#: Order used by the Enum8 columns (``NONE`` = 0; ``INVALID`` = 5 only in ``llm_requests.TTFTLevel``).
LEVELS = (NONE, EXCELLENT, GOOD, SLOW, BOTTLENECK, INVALID)


def level(value: float | None, threshold: float | None) -> str | None:
    """Level of ``value`` against ``threshold`` (same unit, e.g. seconds); ``None`` when either is missing.

    >>> level(0.4, 1.0), level(0.5, 1.0), level(1.0, 1.0), level(1.5, 1.0), level(1.51, 1.0)
    ('EXCELLENT', 'GOOD', 'GOOD', 'SLOW', 'BOTTLENECK')
    """
    if value is None or threshold is None or threshold <= 0 or value != value:
        return None
    ratio = value / threshold
    if ratio < 0.5:
        return EXCELLENT
    if ratio <= 1.0:
        return GOOD
    if ratio <= 1.5:
        return SLOW
    return BOTTLENECK


class Thresholds:
    """(span name, metric) → threshold seconds, from ordered ``(glob, metric, seconds)`` entries.

    Args:
        entries: iterable of objects with ``span``, ``metric``, ``threshold_seconds`` (``LevelThreshold``).
    """

    def __init__(self, entries: Iterable):
        self._entries = [(e.span, e.metric, float(e.threshold_seconds)) for e in entries]
        self._cache: dict[tuple[str, str], float | None] = {}
        self._duration_cache: dict[str, float | None] = {}

    def get(self, span_name: str, metric: str) -> float | None:
        """Threshold in seconds for ``metric`` of spans named ``span_name``; ``None`` when no entry matches."""
        key = (span_name, metric)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = None
        for pattern, m, seconds in self._entries:
            if m == metric and (pattern == "*" or fnmatch.fnmatchcase(span_name, pattern)):
                found = seconds
                break
        if len(self._cache) < 100_000:
            self._cache[key] = found
        return found

    def duration(self, span_name: str) -> float | None:
        """Threshold for any span's Duration (metric ``duration``) — the hot path of the span-level processor."""
        try:
            return self._duration_cache[span_name]
        except KeyError:
            found = self.get(span_name, "duration")
            if len(self._duration_cache) < 100_000:
                self._duration_cache[span_name] = found
            return found

    def level(self, span_name: str, metric: str, value: float | None) -> str | None:
        """Level of ``value`` (seconds) for (``span_name``, ``metric``); ``None`` without value or threshold."""
        return level(value, self.get(span_name, metric))
