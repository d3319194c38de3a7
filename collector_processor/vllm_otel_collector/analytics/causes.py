"""Why a request was slow, and whether it counted toward goodput: the rules of migration 0134 in Python.

ClickHouse derives ``llm_requests.Cause`` and ``Good`` at insert time (the materialized view of migration 0134); this
module is the reference the tests hold the view to, and what ``vllm-otel explain`` uses to put the numbers behind a
stored cause into a sentence. All times are seconds.

Rules (docs/analytics.md, "Causes and goodput"):

- **goodput** (DistServe: Zhong et al., "DistServe: Disaggregating Prefill and Decoding for Goodput-optimized Large
  Language Model Serving", OSDI 2024): a request is *good* when it finished ok, its TTFT met the model's TTFT SLO
  (a request without a TTFT cannot show that it did) and its TPOT met the TPOT SLO (no TPOT: fewer than 2 output
  tokens, nothing to miss). An SLO of 0 is no SLO.
- **slow**: missed the TTFT or TPOT SLO, or — when the model has a baseline — ``e2e > factor × expected + slack``
  with ``expected = baseline queue + baseline prefill + baseline TPOT × (output tokens − 1)`` (medians of the model's
  ok requests of the same prompt-length bucket over the last hour, ``llm_baselines``).
- **cause**: ``error`` (error or timeout), ``aborted``, ``ok`` (not slow), ``preempted`` (vLLM preempted it: its KV
  blocks were freed and its prompt recomputed), then: missed only the TTFT SLO → ``queued`` when queue ≥ prefill
  else ``prefill``; missed only the TPOT SLO → ``decode``; otherwise the phase with the largest excess over its
  baseline (``queued`` on ties, then ``prefill``).
"""

from __future__ import annotations

from dataclasses import dataclass

SLOW_FACTOR = 2.0
MIN_EXCESS_SECONDS = 0.05
CAUSE_TEXT = {
    "ok": "within its SLOs and its baseline",
    "queued": "waited in the scheduler's queue",
    "prefill": "spent its time in prefill (prompt processing)",
    "decode": "generated its tokens slowly (decode)",
    "preempted": "was preempted by the scheduler and recomputed",
    "aborted": "was aborted by its client",
    "error": "failed",
}


@dataclass(frozen=True)
class Facts:
    """One request as the views see it (seconds; ``None`` = missing). ``slo_*``: 0 = no SLO; ``baseline_*``:
    ``None`` = no baseline row for the model."""

    status: str
    ttft: float | None
    tpot: float | None
    e2e: float | None
    queue: float | None
    prefill: float | None
    decode: float | None
    output_tokens: int
    preemptions: int
    slo_ttft: float
    slo_tpot: float
    baseline_queue: float | None = None
    baseline_prefill: float | None = None
    baseline_tpot: float | None = None
    has_baseline: bool = False


def _z(x: float | None) -> float:
    return 0.0 if x is None else float(x)


def good(f: Facts) -> bool:
    """Whether ``f`` counts toward goodput (module docstring)."""
    ttft_ok = f.slo_ttft <= 0 or (f.ttft is not None and f.ttft <= f.slo_ttft)
    tpot_ok = f.slo_tpot <= 0 or f.tpot is None or f.tpot <= f.slo_tpot
    return f.status == "ok" and ttft_ok and tpot_ok


def expected_e2e(f: Facts) -> float:
    """Baseline queue + prefill + TPOT × (output tokens − 1), seconds (0 for a missing part)."""
    return _z(f.baseline_queue) + _z(f.baseline_prefill) + _z(f.baseline_tpot) * max(f.output_tokens - 1.0, 0.0)


def excess(f: Facts) -> dict[str, float]:
    """Seconds each phase took beyond its baseline: ``{"queued", "prefill", "decode"}`` (the raw phase time when
    there is no baseline)."""
    steps = max(f.output_tokens - 1.0, 0.0)
    return {"queued": _z(f.queue) - _z(f.baseline_queue), "prefill": _z(f.prefill) - _z(f.baseline_prefill),
            "decode": _z(f.decode) - _z(f.baseline_tpot) * steps}


def missed(f: Facts, factor: float = SLOW_FACTOR, slack: float = MIN_EXCESS_SECONDS) -> tuple[bool, bool, bool]:
    """``(ttft SLO missed, tpot SLO missed, e2e > factor × expected + slack with a baseline)``."""
    ttft = f.slo_ttft > 0 and f.ttft is not None and f.ttft > f.slo_ttft
    tpot = f.slo_tpot > 0 and f.tpot is not None and f.tpot > f.slo_tpot
    slow = f.has_baseline and _z(f.e2e) > factor * expected_e2e(f) + slack
    return ttft, tpot, slow


def cause(f: Facts, factor: float = SLOW_FACTOR, slack: float = MIN_EXCESS_SECONDS) -> str:
    """The cause of ``f`` (module docstring): one of ``CAUSE_TEXT``'s keys."""
    if f.status in ("error", "timeout"):
        return "error"
    if f.status == "abort":
        return "aborted"
    ttft, tpot, slow = missed(f, factor, slack)
    if not (ttft or tpot or slow):
        return "ok"
    if f.preemptions > 0:
        return "preempted"
    if ttft and not tpot:
        return "queued" if _z(f.queue) >= _z(f.prefill) else "prefill"
    if tpot and not ttft:
        return "decode"
    x = excess(f)
    if x["queued"] >= x["prefill"] and x["queued"] >= x["decode"]:
        return "queued"
    return "prefill" if x["prefill"] >= x["decode"] else "decode"


def facts_of_row(row: dict) -> Facts:
    """:class:`Facts` from an ``llm_requests`` row (a dict with its column names)."""
    return Facts(status=row["Status"], ttft=row["TTFT"], tpot=row["TPOT"], e2e=row["E2E"], queue=row["Queue"],
                 prefill=row["Prefill"], decode=row["Decode"], output_tokens=int(row["OutputTokens"]),
                 preemptions=int(row["Preemptions"]), slo_ttft=float(row["SLOTTFT"]), slo_tpot=float(row["SLOTPOT"]),
                 baseline_queue=row["BaselineQueue"], baseline_prefill=row["BaselinePrefill"],
                 baseline_tpot=row["BaselineTPOT"],
                 has_baseline=any(row[k] is not None for k in ("BaselineQueue", "BaselinePrefill", "BaselineTPOT")))
