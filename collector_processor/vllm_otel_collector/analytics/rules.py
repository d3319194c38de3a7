"""Alert rule math: pure functions over numbers already read from ClickHouse, and the :class:`Observation` they yield.

Sources:
- robust z-score: Iglewicz & Hoaglin (1993), modified z = 0.6745 · (x − median) / MAD, outlier when |z| > 3.5;
- burn rate: Google SRE workbook, "Alerting on SLOs" (multiwindow, multi-burn-rate alerts): burn = bad ratio /
  (1 − objective); page when the 1 h AND 5 m burns exceed 14.4, ticket when the 6 h AND 30 m burns exceed 6;
- bottleneck suggestions: vLLM's tuning guide (prefix caching, chunked prefill, max_num_seqs, speculative decoding,
  torch.compile cache) and issue 5.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Sequence

SUGGESTIONS = {
    "queue": "queue-bound: add capacity (replicas / larger max_num_seqs / more KV cache) or apply admission control",
    "prefill": "prefill-bound: enable prefix caching and chunked prefill, shorten or share prompt prefixes",
    "decode": "decode-bound: tune batch size (max_num_seqs / max_num_batched_tokens) or use speculative decoding",
    "compile_cache_miss": "compile-cache miss: keep the torch.compile cache warm (persist VLLM_CACHE_ROOT across "
                          "restarts, pre-build it in the image)",
    "cold_start": "slow cold start: warm up before taking traffic (preload weights, keep a warm standby, "
                  "cache compiled graphs)",
}
#: The suggestion (above) for each slow cause (llm_requests.Cause).
CAUSE_PHASE = {"queued": "queue", "prefill": "prefill", "decode": "decode", "preempted": "queue"}
FAILURE_STATUSES = frozenset({"error", "timeout"})

#: Events of each SLO kind, as (bad, total) expressions over a rollup row (``llm_requests_1m`` columns): the error SLO
#: counts errors and timeouts among requests that were not aborted by their client; the latency SLO counts requests
#: whose TTFT level is SLOW or BOTTLENECK (value above its threshold) among requests with a TTFT; the goodput SLO
#: counts requests that did not meet every SLO of their model (``Good``, migration 0134) among all requests. The
#: evaluator (:func:`slo_events`) and the Grafana SLO panel read these same definitions.
SLO_EVENTS = {
    "error": ("Errors + Timeouts", "Requests - Aborts"),
    "latency": ("TTFTOver", "TTFTCount"),
    "goodput": ("Requests - Good", "Requests"),
}
_SLO_KEYS = {"Errors": "errors", "Timeouts": "timeouts", "Requests": "requests", "Aborts": "aborts",
             "TTFTOver": "ttft_over", "TTFTCount": "ttft_count", "Good": "good"}


def slo_events(slo: str, metrics: dict | None) -> tuple[int, int]:
    """``(bad, total)`` of SLO kind ``slo`` from :func:`~.stats.rollup_window` metrics (0, 0 for no data), by
    :data:`SLO_EVENTS`. Raises ``KeyError`` for an unknown kind."""
    if metrics is None:
        return 0, 0

    def value(expr: str) -> int:
        terms = expr.replace(" - ", " + -").split(" + ")
        return sum(-metrics[_SLO_KEYS[t[1:]]] if t.startswith("-") else metrics[_SLO_KEYS[t]] for t in terms)

    bad, total = SLO_EVENTS[slo]
    return value(bad), value(total)


def budget_left(bad: int, total: int, objective: float) -> float | None:
    """Share of the error budget not spent: ``1 − (bad / total) / (1 − objective)`` (negative when overspent);
    ``None`` when there were no events."""
    burn = burn_rate(bad, total, objective)
    return None if burn is None else 1.0 - burn


@dataclass
class Observation:
    """One rule's verdict for one label set at one evaluation.

    ``value``/``threshold`` are in the rule's unit (seconds, ratio, bytes, tokens/s, burn factor, count).
    """

    rule: str
    severity: str
    labels: dict[str, str]
    firing: bool
    value: float
    threshold: float
    window_seconds: int
    message: str
    suggestion: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """16 hex chars identifying (rule, labels) — stable across evaluations and collector replicas."""
        return fingerprint(self.rule, self.labels)


def fingerprint(rule: str, labels: dict[str, str]) -> str:
    """sha256 of the rule name and the sorted labels, first 16 hex chars (Alertmanager fingerprints are 64-bit)."""
    blob = json.dumps([rule, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def breaches(value: float | None, op: str, threshold: float) -> bool:
    """``value op threshold`` for op ``>`` or ``<``; a missing value never breaches."""
    if value is None:
        return False
    return value > threshold if op == ">" else value < threshold


def failure_streak(statuses_newest_first: Sequence[str]) -> int:
    """Number of consecutive failed requests (``error``/``timeout``) at the head of the newest-first list."""
    n = 0
    for s in statuses_newest_first:
        if s not in FAILURE_STATUSES:
            break
        n += 1
    return n


def median(values: Sequence[float]) -> float:
    """Median (mean of the two middle values for an even count). Raises ``ValueError`` on no values."""
    vals = sorted(values)
    if not vals:
        raise ValueError("median of no values")
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def robust_z(value: float, baseline: Sequence[float]) -> float:
    """Modified z-score of ``value`` against ``baseline``: 0.6745 · (value − median) / MAD (Iglewicz & Hoaglin).

    When MAD is 0 (a flat baseline) the scale falls back to 1% of |median| (or 1e-9), so a flat baseline still
    flags a clear departure without dividing by zero. Raises ``ValueError`` on an empty baseline.
    """
    med = median(baseline)
    mad = median([abs(v - med) for v in baseline])
    scale = mad if mad > 0 else max(abs(med) * 0.01, 1e-9) / 0.6745
    return 0.6745 * (value - med) / scale


def burn_rate(bad: int, total: int, objective: float) -> float | None:
    """Error-budget burn rate: (bad / total) / (1 − objective); ``None`` when there were no events."""
    if total <= 0:
        return None
    return (bad / total) / (1.0 - objective)


def multiwindow_burn(long_bad: int, long_total: int, short_bad: int, short_total: int, objective: float,
                     factor: float) -> tuple[bool, float | None, float | None]:
    """SRE-workbook multiwindow check: fires when BOTH the long and the short window burn faster than ``factor``.

    Returns ``(firing, long_burn, short_burn)``.
    """
    lb = burn_rate(long_bad, long_total, objective)
    sb = burn_rate(short_bad, short_total, objective)
    return (lb is not None and sb is not None and lb > factor and sb > factor), lb, sb


def dominant_phase(queue_s: float | None, prefill_s: float | None, decode_s: float | None) -> tuple[str, float]:
    """The phase with the largest mean time and its share of queue+prefill+decode (0..1).

    Missing phases count as 0; ``("decode", 0.0)``-style ties resolve in the order queue, prefill, decode.
    """
    phases = {"queue": queue_s or 0.0, "prefill": prefill_s or 0.0, "decode": decode_s or 0.0}
    total = sum(phases.values())
    name = max(phases, key=lambda k: phases[k])
    return name, (phases[name] / total if total > 0 else 0.0)
