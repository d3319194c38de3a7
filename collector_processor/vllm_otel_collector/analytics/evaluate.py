"""Evaluate configured alert rules over ClickHouse: rollups (llm_requests_1m), llm_model_loads, otel_metrics_*,
and — for the consecutive-failure rule only — the newest raw llm_requests rows.

Every function returns :class:`~.rules.Observation` objects for the label sets that had data (firing or not);
windows over rollups end at the last complete minute (``until = floor(now / 60) · 60``), so a rule sees whole buckets.
Times are unix seconds.
"""

from __future__ import annotations

import math
from typing import Callable

from opentelemetry.instrumentation.vllm import semconv as sc

from vllm_otel_collector.analytics import rules as R
from vllm_otel_collector.analytics.config import (AnomalyRule, BottleneckRule, BurnRateRule, ConsecutiveFailuresRule,
                                                  GoodputRule, ModelLoadRule, ThresholdRule)
from vllm_otel_collector.analytics.levels import Thresholds
from vllm_otel_collector.analytics.stats import history, rollup_window
from vllm_otel_collector.store.schema import profile


def complete_until(now: float) -> float:
    """End of the last complete minute bucket at ``now`` (unix seconds)."""
    return math.floor(now / 60.0) * 60.0


def _labels(key: tuple) -> dict[str, str]:
    return {"service": key[0], "model": key[1]}


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def process_memory(store, since: float, until: float) -> dict[tuple[str, str], float]:
    """Latest ``process.memory.usage`` (bytes) per (service, process.pid) from otel_metrics_gauge/sum; the pid is the
    data point's ``process.pid`` attribute (our instrumentation), else the resource's."""
    prof = profile(store)
    pid = (f"if({prof.attr('Attributes', 'process.pid')} != '', {prof.attr('Attributes', 'process.pid')}, "
           f"{prof.attr('ResourceAttributes', 'process.pid')})")
    sql = "SELECT ServiceName, pid, argMax(Value, TimeUnix) FROM (" + " UNION ALL ".join(
        f"SELECT ServiceName, {pid} AS pid, Value, toDateTime64(TimeUnix, 9) AS TimeUnix FROM {table} "
        "WHERE MetricName = {name:String} AND TimeUnix >= toDateTime64({since:Float64}, 9) "
        "AND TimeUnix < toDateTime64({until:Float64}, 9)" for table in (prof.gauge, prof.sum)
    ) + ") GROUP BY ServiceName, pid ORDER BY ServiceName, pid"
    rows = store.query(sql, parameters={"name": sc.METRIC_PROCESS_RSS, "since": float(since),
                                        "until": float(until)}).result_rows
    return {(s, p): float(v) for s, p, v in rows}


def threshold(rule: ThresholdRule, store, now: float, thresholds: Thresholds) -> list[R.Observation]:
    """``metric op value`` per (service, model) over the window; ``process_memory_bytes`` per (service, pid)."""
    if rule.metric == "process_memory_bytes":
        obs = []
        for (svc, pid), v in process_memory(store, now - rule.window_seconds, now + 1e-3).items():
            firing = R.breaches(v, rule.op, rule.value)
            obs.append(R.Observation(rule.name, rule.severity, {"service": svc, "pid": pid}, firing, v, rule.value,
                                     rule.window_seconds,
                                     f"process memory {v / 2**30:.2f} GiB {rule.op} {rule.value / 2**30:.2f} GiB"))
        return obs
    until = complete_until(now)
    obs = []
    for key, m in rollup_window(store, until - rule.window_seconds, until).items():
        if rule.metric not in m:
            raise ValueError(f"rule {rule.name}: unknown metric {rule.metric!r}")
        v = m[rule.metric]
        if v is None or m["requests"] < rule.min_requests:
            continue
        firing = R.breaches(v, rule.op, rule.value)
        obs.append(R.Observation(rule.name, rule.severity, _labels(key), firing, float(v), rule.value,
                                 rule.window_seconds,
                                 f"{rule.metric} {_fmt(v)} {rule.op} {_fmt(rule.value)} over "
                                 f"{rule.window_seconds}s ({m['requests']} requests)"))
    return obs


def consecutive_failures(rule: ConsecutiveFailuresRule, store, now: float, thresholds: Thresholds):
    """Failure streak at the head of each (service, model)'s newest requests within the window (raw table)."""
    sql = ("SELECT ServiceName, Model, arrayMap(x -> x.2, groupArraySorted({k:UInt32})("
           "(-toUnixTimestamp64Nano(Timestamp), toString(Status)))) FROM llm_requests "
           "WHERE Timestamp >= toDateTime64({since:Float64}, 9) AND Timestamp <= toDateTime64({now:Float64}, 9) "
           "GROUP BY ServiceName, Model ORDER BY ServiceName, Model")
    rows = store.query(sql, parameters={"k": rule.max_failures + 1, "since": now - rule.window_seconds,
                                        "now": float(now)}).result_rows
    obs = []
    for svc, model, statuses in rows:
        streak = R.failure_streak(statuses)
        firing = streak > rule.max_failures
        obs.append(R.Observation(rule.name, rule.severity, {"service": svc, "model": model}, firing, float(streak),
                                 float(rule.max_failures), rule.window_seconds,
                                 f"{streak}{'+' if firing else ''} consecutive failed requests "
                                 f"(more than {rule.max_failures} fires)"))
    return obs


_ANOMALY_KEY = {"ttft": "ttft_p50", "tpot": "tpot_p50", "e2e": "e2e_p50", "tokens_per_second": "tokens_per_second_p50"}


def anomaly(rule: AnomalyRule, store, now: float, thresholds: Thresholds) -> list[R.Observation]:
    """Robust z-score of the current window's median vs the per-minute medians of the preceding baseline.

    High is bad for latencies, low is bad for tokens_per_second.
    """
    until = complete_until(now)
    since = until - rule.window_seconds
    key = _ANOMALY_KEY[rule.metric]
    current = rollup_window(store, since, until)
    baseline: dict[tuple, list[float]] = {}
    for point in history(store, since - rule.baseline_seconds, since, step_seconds=60):
        if point[key] is not None:
            baseline.setdefault((point["service"], point["model"]), []).append(point[key])
    obs = []
    sign = -1.0 if rule.metric == "tokens_per_second" else 1.0
    for k, m in current.items():
        base = baseline.get(k, [])
        if m[key] is None or len(base) < rule.min_baseline_points:
            continue
        z = R.robust_z(m[key], base)
        firing = sign * z > rule.z_threshold
        obs.append(R.Observation(rule.name, rule.severity, _labels(k), firing, z, sign * rule.z_threshold,
                                 rule.window_seconds,
                                 f"{rule.metric} median {_fmt(m[key])} vs baseline median {_fmt(R.median(base))} "
                                 f"(robust z {z:.2f}, {len(base)} baseline minutes)"))
    return obs


def burn_rate(rule: BurnRateRule, store, now: float, thresholds: Thresholds) -> list[R.Observation]:
    """Multiwindow burn rate over the events of :data:`.rules.SLO_EVENTS`. Error SLO: bad = error + timeout, total =
    requests − aborts. Latency SLO: bad = requests whose TTFT is above its level threshold (level SLOW/BOTTLENECK),
    total = requests with a TTFT."""
    until = complete_until(now)
    long_w = rollup_window(store, until - rule.long_seconds, until)
    short_w = rollup_window(store, until - rule.short_seconds, until)

    obs = []
    for k, lm in long_w.items():
        lb, lt = R.slo_events(rule.slo, lm)
        sb, st = R.slo_events(rule.slo, short_w.get(k))
        firing, lburn, sburn = R.multiwindow_burn(lb, lt, sb, st, rule.objective, rule.factor)
        if lburn is None:
            continue
        obs.append(R.Observation(rule.name, rule.severity, _labels(k), firing, lburn, rule.factor, rule.long_seconds,
                                 f"{rule.slo} SLO {rule.objective:.2%}: burn {_fmt(lburn)}x over "
                                 f"{rule.long_seconds}s and {_fmt(sburn)}x over {rule.short_seconds}s "
                                 f"(fires above {rule.factor}x in both)"))
    return obs


def bottleneck(rule: BottleneckRule, store, now: float, thresholds: Thresholds) -> list[R.Observation]:
    """e2e p95 above the e2e level threshold → name the dominant phase (mean queue/prefill/decode) and suggest."""
    until = complete_until(now)
    limit = thresholds.get("", "e2e")
    if limit is None:
        return []
    obs = []
    for k, m in rollup_window(store, until - rule.window_seconds, until).items():
        p95 = m["e2e_p95"]
        if p95 is None or m["requests"] < rule.min_requests:
            continue
        phase, share = R.dominant_phase(m["queue_avg"], m["prefill_avg"], m["decode_avg"])
        firing = p95 > limit
        obs.append(R.Observation(rule.name, rule.severity, _labels(k), firing, p95, limit, rule.window_seconds,
                                 f"e2e p95 {_fmt(p95)}s vs {_fmt(limit)}s; dominant phase {phase} "
                                 f"({share:.0%} of queue+prefill+decode)",
                                 R.SUGGESTIONS[phase] if firing else "", {"phase": phase, "share": share}))
    return obs


def model_load(rule: ModelLoadRule, store, now: float, thresholds: Thresholds) -> list[R.Observation]:
    """Newest engine start per (service, model) in the window: compile-cache miss, or load slower than ``load``."""
    sql = ("SELECT ServiceName, Model, argMax(CompileCacheHit, Timestamp), "
           "argMax(coalesce(ColdStartSeconds, LoadSeconds), Timestamp) FROM llm_model_loads FINAL "
           "WHERE Timestamp >= toDateTime64({since:Float64}, 9) AND Timestamp <= toDateTime64({now:Float64}, 9) "
           "GROUP BY ServiceName, Model ORDER BY ServiceName, Model")
    rows = store.query(sql, parameters={"since": now - rule.window_seconds, "now": float(now)}).result_rows
    limit = thresholds.get("", "load")
    obs = []
    for svc, model, hit, seconds in rows:
        labels = {"service": svc, "model": model}
        if rule.check == "compile_cache_miss":
            if hit is None:
                continue
            firing = hit == 0
            obs.append(R.Observation(rule.name, rule.severity, labels, firing, float(hit), 1.0, rule.window_seconds,
                                     f"latest engine start: torch.compile cache {'miss' if firing else 'hit'}",
                                     R.SUGGESTIONS["compile_cache_miss"] if firing else ""))
        else:
            if seconds is None or limit is None:
                continue
            firing = seconds > limit
            obs.append(R.Observation(rule.name, rule.severity, labels, firing, float(seconds), limit,
                                     rule.window_seconds,
                                     f"latest engine start took {seconds:.1f}s (threshold {limit:.0f}s)",
                                     R.SUGGESTIONS["cold_start"] if firing else ""))
    return obs


def goodput(rule: GoodputRule, store, now: float, thresholds: Thresholds) -> list[R.Observation]:
    """Goodput ratio (requests that met their model's SLOs / requests, rollup ``Good``) per (service, model) over the
    window; fires below ``min_ratio``. Names the most frequent slow cause and its suggestion."""
    until = complete_until(now)
    obs = []
    for k, m in rollup_window(store, until - rule.window_seconds, until).items():
        if m["requests"] < rule.min_requests:
            continue
        ratio = m["goodput_ratio"]
        firing = ratio < rule.min_ratio
        slow = {c: n for c, n in m["causes"].items() if c not in ("ok", "aborted") and n}
        top = max(slow, key=lambda c: (slow[c], c)) if slow else ""
        why = f"; most missed: {top} ({slow[top]} requests)" if top else ""
        obs.append(R.Observation(rule.name, rule.severity, _labels(k), firing, ratio, rule.min_ratio,
                                 rule.window_seconds,
                                 f"goodput {ratio:.1%} of {m['requests']} requests met their SLOs "
                                 f"({m['goodput_per_second']:.3g}/s of {m['throughput']:.3g} req/s){why}",
                                 R.SUGGESTIONS.get(R.CAUSE_PHASE.get(top, ""), "") if firing else "",
                                 {"cause": top} if top else {}))
    return obs


EVALUATORS: dict[str, Callable] = {
    "threshold": threshold, "consecutive_failures": consecutive_failures, "anomaly": anomaly,
    "burn_rate": burn_rate, "bottleneck": bottleneck, "model_load": model_load, "goodput": goodput,
}


def evaluate(rule, store, now: float, thresholds: Thresholds) -> list[R.Observation]:
    """Observations of one configured rule at ``now`` (unix seconds)."""
    return EVALUATORS[rule.kind](rule, store, now, thresholds)
