"""Mergeable latency histograms: fixed log-scale buckets (OpenTelemetry exponential-histogram indexing), their SQL.

The rollups ``llm_requests_1m`` / ``_1h`` keep, per latency, a ``<M>Hist`` column of type
``SimpleAggregateFunction(sumMap, Map(Int16, UInt64))``: bucket index → number of requests. Merging buckets, parts or
rollup rows is addition (``sumMap``), so a 24 h or 7 d quantile costs one pass over the rollup rows.

Bucket math (OpenTelemetry data model, exponential histogram, scale ``SCALE``):

* base ``γ = 2 ** (2 ** -SCALE)``; bucket ``i`` holds values ``v`` with ``γ**i < v <= γ**(i+1)``, i.e.
  ``i = ceil(log2(v) · 2**SCALE) − 1``;
* values ``<= 0`` and NaN go to the zero bucket ``ZERO_KEY`` (represented by 0); +Inf and values beyond ``γ**MAX_KEY``
  go to ``MAX_KEY``, positive values below ``γ**MIN_KEY`` (2**-1000) to ``MIN_KEY`` (the error bound holds between); NULL (latency not measured) is not counted, so ``sum(counts) == <M>Count``;
* a bucket is represented by ``2·lo·hi / (lo + hi)``, the point whose relative distance to both ends is the same:
  every value in the bucket is within ``RELATIVE_ERROR = (γ − 1) / (γ + 1)`` of it (DDSketch's argument, Masson et al.,
  VLDB 2019).

Quantiles use the same definition as the exact ones (:mod:`.stats`: linear interpolation between closest ranks,
``quantileExactInclusive``): for rank ``r = q·(n − 1)`` the estimate interpolates between the representatives of the
buckets holding order statistics ``floor(r)`` and ``ceil(r)``. Each representative is within ``RELATIVE_ERROR`` of
its order statistic and interpolation is a convex combination, so ``|estimate − exact| <= RELATIVE_ERROR · exact``
for non-negative data (tested on log-normal, bimodal and long-tailed samples, and by Hypothesis).

``SCALE = 5``: 32 buckets per doubling, relative error ≤ 1.083 %. Chosen by measurement against ClickHouse's
``quantilesDD`` and t-digest states (docs/BENCHMARKS.md §3).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

SCALE = 5
GAMMA = 2.0 ** (2.0 ** -SCALE)
RELATIVE_ERROR = (GAMMA - 1.0) / (GAMMA + 1.0)
ZERO_KEY = -32768
MAX_KEY = 32000  # γ**32001 = 2**1000.03: still a finite Float64
MIN_KEY = -32000  # values in (0, 2**-1000] share this bucket (the error bound holds above it)
#: Rollup columns with a histogram (raw ``llm_requests`` column names); the rollup column is ``<name>Hist``.
METRICS = ("TTFT", "TPOT", "E2E", "Queue", "Prefill", "Decode", "TokensPerSecond")
HIST_TYPE = "SimpleAggregateFunction(sumMap, Map(Int16, UInt64))"


# ---- pure reference ---------------------------------------------------------------------------------------------------
def bucket_index(value: float, scale: int = SCALE) -> int:
    """Bucket key of ``value`` (see module docstring): ``ZERO_KEY`` for ``<= 0``/NaN, clamped to ``MAX_KEY``."""
    if not value > 0:
        return ZERO_KEY
    if math.isinf(value):
        return MAX_KEY >> (SCALE - scale)
    key = math.ceil(math.log2(value) * 2 ** scale) - 1
    return max(min(key, MAX_KEY >> (SCALE - scale)), MIN_KEY >> (SCALE - scale))


def lower_bound(key: int, scale: int = SCALE) -> float:
    """Lower (exclusive) end of bucket ``key`` in the value's unit (0 for the zero bucket)."""
    return 0.0 if key == ZERO_KEY else 2.0 ** (key / 2 ** scale)


def upper_bound(key: int, scale: int = SCALE) -> float:
    """Upper (inclusive) end of bucket ``key`` (0 for the zero bucket): the heatmap's ``le``."""
    return 0.0 if key == ZERO_KEY else 2.0 ** ((key + 1) / 2 ** scale)


def representative(key: int, scale: int = SCALE) -> float:
    """``2·lo·hi / (lo + hi)`` of bucket ``key``: within ``(γ−1)/(γ+1)`` of every value in it; 0 for the zero bucket."""
    if key == ZERO_KEY:
        return 0.0
    gamma = 2.0 ** (2.0 ** -scale)
    return lower_bound(key, scale) * 2.0 * gamma / (1.0 + gamma)  # = 2·lo·hi/(lo+hi), no overflow near MAX_KEY


def counts_of(values: Iterable[float | None], scale: int = SCALE) -> dict[int, int]:
    """Histogram of ``values`` (None skipped): {bucket key: count}."""
    out: dict[int, int] = {}
    for v in values:
        if v is not None:
            k = bucket_index(v, scale)
            out[k] = out.get(k, 0) + 1
    return out


def downscale(counts: Mapping[int, int], shift: int) -> dict[int, int]:
    """Counts at scale ``SCALE − shift`` (OpenTelemetry downscaling: key >> shift, floor for negatives)."""
    out: dict[int, int] = {}
    for k, c in counts.items():
        nk = k if k == ZERO_KEY else k >> shift
        out[nk] = out.get(nk, 0) + c
    return out


def quantile(counts: Mapping[int, int], q: float, scale: int = SCALE) -> float | None:
    """The ``q`` quantile (0..1) of a histogram, by the module's definition; None for an empty histogram.

    Raises ``ValueError`` for ``q`` outside [0, 1] or NaN.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile level must be in [0, 1], got {q!r}")
    keys = sorted(k for k, c in counts.items() if c > 0)
    cum, total = [], 0
    for k in keys:
        total += counts[k]
        cum.append(total)
    if total == 0:
        return None
    r = q * (total - 1)
    j0, j1 = math.floor(r), math.ceil(r)

    def rep_at(j: int) -> float:
        lo, hi = 0, len(cum) - 1
        while lo < hi:  # first bucket whose cumulative count exceeds j
            mid = (lo + hi) // 2
            if cum[mid] > j:
                hi = mid
            else:
                lo = mid + 1
        return representative(keys[lo], scale)

    a, b = rep_at(j0), rep_at(j1)
    return a + (b - a) * (r - j0)


# ---- SQL --------------------------------------------------------------------------------------------------------------
def key_sql(col: str) -> str:
    """SQL: bucket key (Int16) of the non-NULL Float ``col`` (same rules as :func:`bucket_index`)."""
    v = f"toFloat64(assumeNotNull({col}))"
    return (f"toInt16(if({v} > 0, greatest(least(ceil(log2({v}) * {2 ** SCALE}) - 1, {MAX_KEY}), {MIN_KEY}), "
            f"{ZERO_KEY}))")


def state_sql(col: str) -> str:
    """SQL aggregate for a materialized view: the ``Map(Int16, UInt64)`` histogram of ``col`` (NULLs skipped).

    Built from the group's sorted keys (distinct keys, ``countEqual`` per key) rather than ``sumMap(map(key, 1))``:
    the same map, ~4.5× cheaper to build per inserted row (measured on 800k rows, 7 histograms; docs/analytics.md).
    """
    g = f"arraySort(groupArrayIf({key_sql(col)}, {col} IS NOT NULL))"
    return (f"CAST(mapFromArrays(arrayDistinct({g}), arrayMap(d -> toUInt64(countEqual({g}, d)), "
            f"arrayDistinct({g}))), 'Map(Int16, UInt64)')")


def _rep_sql(k: str) -> str:
    # 2·lo·hi/(lo+hi) with lo = 2^(k/2^s), hi = 2^((k+1)/2^s) = 2·lo·γ/(1+γ)
    return f"if({k} = {ZERO_KEY}, 0., exp2({k} / {2 ** SCALE}) * {2.0 * GAMMA / (1.0 + GAMMA)!r})"


def quantiles_sql(merged: str, levels: Sequence[float], tag: str) -> str:
    """SQL: ``Array(Float64)`` of the ``levels`` quantiles of the histogram expression ``merged`` (e.g.
    ``sumMap(TTFTHist)``), NaN entries for an empty histogram. One select-list expression; ``tag`` makes its helper
    aliases (keys, cumulative counts, total) unique in the query — one tag per histogram in a SELECT."""
    ks, cs, n = f"_hk_{tag}", f"_hc_{tag}", f"_hn_{tag}"
    lv = "[" + ", ".join(repr(float(x)) for x in levels) + "]"
    r = f"(x * {n}_1)"
    at = lambda j: _rep_sql(f"{ks}[arrayFirstIndex(c -> c > {j}, {cs})]")  # noqa: E731
    helpers = (f"mapKeys({merged} AS _hm_{tag}) AS {ks}, arrayCumSum(mapValues(_hm_{tag})) AS {cs}, "
               f"({cs}[-1] AS {n}) - 1 AS {n}_1")
    body = (f"arrayMap(x -> if({n} = 0, nan, {at(f'floor({r})')} + ({at(f'ceil({r})')} - {at(f'floor({r})')}) "
            f"* ({r} - floor({r}))), {lv})")
    return f"tupleElement(tuple({body}, {helpers}), 1)"


def heatmap_key_sql(key: str, shift: int) -> str:
    """SQL: the bucket key ``key`` at scale ``SCALE − shift`` (floor division; the zero bucket stays)."""
    return key if shift == 0 else f"if({key} = {ZERO_KEY}, {key}, intDiv({key} - if({key} < 0, {2 ** shift - 1}, 0), {2 ** shift}))"


def upper_bound_sql(key: str, shift: int = 0) -> str:
    """SQL: upper bound ``le`` (value's unit) of bucket ``key`` at scale ``SCALE − shift``; 0 for the zero bucket."""
    return f"if({key} = {ZERO_KEY}, 0., exp2(({key} + 1) / {2 ** (SCALE - shift)}))"
