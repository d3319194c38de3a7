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


_RE2_META = set("\\.^$|?*+()[]{}")


def glob_regex(glob: str) -> str:
    """The ``fnmatch.fnmatchcase`` glob ``glob`` as an anchored RE2 regex (ClickHouse ``match``), so that the
    materialized views pick thresholds exactly as :class:`Thresholds` does.

    ``*`` any run of characters (newlines too), ``?`` one character, ``[seq]`` / ``[!seq]`` a class with ranges;
    an unclosed ``[`` is literal. Classes follow CPython 3.11's ``fnmatch.translate`` (reversed ranges dropped, an
    empty class matches nothing), with RE2's escapes instead of Python's. Checked against ``fnmatchcase`` by a
    property test (tests/analytics/test_derive.py).

    >>> glob_regex("asr.*"), glob_regex("stt_processing")
    ('^(?s:asr\\..*)$', '^(?s:stt_processing)$')
    """
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append("\\[")
                continue
            out.append(_glob_class(glob, i, j))
            i = j + 1
        else:
            out.append("\\" + c if c in _RE2_META else c)
    return "^(?s:" + "".join(out) + ")$"


def glob_kind(glob: str) -> str:
    """How the views match ``glob``: ``all`` (``*``: every span name), ``exact`` (no ``*``, ``?`` or ``[``: one span
    name, a hash lookup) or ``glob`` (a regex; at most :data:`GLOB_SLOTS` per metric)."""
    if glob == "*":
        return "all"
    return "glob" if any(c in glob for c in "*?[") else "exact"


#: Wildcard globs (besides ``*`` and exact names) the views match per metric (the analytics config allows no more).
GLOB_SLOTS = 4
#: An RE2 pattern that matches no string (an unused glob slot).
NEVER = "[^\\x00-\\x{10FFFF}]"


def compile_lookup(entries: Iterable[tuple[str, str, float]], metric: str) -> tuple[list[str], list[float],
                                                                                      list[str], list[float], float]:
    """``metric``'s entries (``(span glob, metric, seconds)`` in config order) as the views look them up
    (``llm_level_lookup``, migration 0130): ``(exact names, their seconds, glob patterns, their seconds, default)``.

    A span name listed exactly gets the threshold the first matching entry (``fnmatch``, config order) gives it —
    computed here. Any other name gets the first of the wildcard globs before the first ``*`` entry that matches
    it, else that ``*`` entry's seconds, else 0 (no threshold); globs after the first ``*`` are unreachable for
    such names and dropped. The globs are padded to :data:`GLOB_SLOTS` with :data:`NEVER`.

    Raises:
        ValueError: more than :data:`GLOB_SLOTS` wildcard globs before the first ``*`` for ``metric``.
    """
    mine = [(span, float(sec)) for span, m, sec in entries if m == metric]
    exact = list(dict.fromkeys(span for span, _ in mine if glob_kind(span) == "exact"))
    thresholds = Thresholds.of((span, metric, sec) for span, sec in mine)
    globs: list[tuple[str, float]] = []
    default = 0.0
    for span, sec in mine:
        kind = glob_kind(span)
        if kind == "all":
            default = sec
            break
        if kind == "glob":
            globs.append((glob_regex(span), sec))
    if len(globs) > GLOB_SLOTS:
        raise ValueError(f"at most {GLOB_SLOTS} wildcard span globs per metric besides '*' and exact names "
                         f"({metric!r} has {len(globs)})")
    globs += [(NEVER, 0.0)] * (GLOB_SLOTS - len(globs))
    return (exact, [thresholds.get(name, metric) or 0.0 for name in exact], [g for g, _ in globs],
            [x for _, x in globs], default)


def _glob_class(glob: str, i: int, j: int) -> str:
    """RE2 for the class ``glob[i:j]`` (between ``[`` and ``]``), CPython's range handling."""
    def esc(chunk: str) -> str:
        return "".join("\\" + ch if ch in "\\[]^-" else ch for ch in chunk)

    negate = glob[i] == "!"
    start = i + 1 if negate else i
    if "-" not in glob[start:j]:
        chunks = [glob[start:j]]
        ranges = False
    else:
        chunks, k, p = [], (start + 1), start
        while True:
            k = glob.find("-", k, j)
            if k < 0:
                break
            chunks.append(glob[p:k])
            p = k + 1
            k = k + 3
        tail = glob[p:j]
        if tail:
            chunks.append(tail)
        else:
            chunks[-1] += "-"
        for k in range(len(chunks) - 1, 0, -1):  # drop empty (reversed) ranges, as CPython does
            if chunks[k - 1] and chunks[k] and chunks[k - 1][-1] > chunks[k][0]:
                chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
                del chunks[k]
        ranges = True
    body = "-".join(esc(ch) for ch in chunks) if ranges else esc(chunks[0])
    if not body:
        return "[^\\x00-\\x{10FFFF}]" if not negate else "."
    return ("[^" if negate else "[") + body + "]"


class Thresholds:
    """(span name, metric) → threshold seconds, from ordered ``(glob, metric, seconds)`` entries.

    Args:
        entries: iterable of objects with ``span``, ``metric``, ``threshold_seconds`` (``LevelThreshold``).
    """

    def __init__(self, entries: Iterable):
        self._entries = [(e.span, e.metric, float(e.threshold_seconds)) for e in entries]
        self._cache: dict[tuple[str, str], float | None] = {}
        self._duration_cache: dict[str, float | None] = {}

    @classmethod
    def of(cls, entries: Iterable[tuple[str, str, float]]) -> "Thresholds":
        """From ``(span glob, metric, seconds)`` tuples in config order."""
        self = cls(())
        self._entries = [(g, m, float(x)) for g, m, x in entries]
        return self

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

    @property
    def entries(self) -> list[tuple[str, str, float]]:
        """``[(span glob, metric, seconds), ...]`` in config order."""
        return list(self._entries)

    def level(self, span_name: str, metric: str, value: float | None) -> str | None:
        """Level of ``value`` (seconds) for (``span_name``, ``metric``); ``None`` without value or threshold."""
        return level(value, self.get(span_name, metric))
