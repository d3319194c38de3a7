"""Keep the database's analytics settings equal to an analytics config: the level thresholds the materialized views
read (``llm_level_thresholds``, migration 0130) and the model-load settle/look-back the refresh reads
(``vllm_otel_settings``). Run at start by the collector, by ``vllm-otel analyzer`` and by ``vllm-otel migrate`` —
whichever process has the config; a set equal to the stored one is not written again.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time

from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.levels import compile_lookup
from vllm_otel_collector.analytics.sqlnames import (BASELINE_MIN_KEY, BASELINE_SECONDS_KEY, CAUSE_FACTOR_KEY,
                                                     CAUSE_SLACK_KEY, LOOKBACK_KEY, METRICS, SETTLE_KEY)
from vllm_otel_collector.store.schema import SETTINGS_TABLE

log = logging.getLogger(__name__)


def stored_thresholds(store) -> list[tuple[str, str, float]]:
    """The threshold set the views use now: ``[(span glob, metric, seconds), ...]`` in config order."""
    rows = store.query("SELECT Span, toString(Metric), Seconds FROM llm_level_thresholds FINAL "
                       "WHERE SetId = (SELECT max(SetId) FROM llm_level_thresholds) ORDER BY Position").result_rows
    return [(s, m, float(x)) for s, m, x in rows if m != ""]


def _stored_set_exists(store) -> bool:
    return bool(store.query("SELECT count() FROM llm_level_thresholds").result_rows[0][0])


def sync_thresholds(store, entries: list[tuple[str, str, float]]) -> bool:
    """Store ``entries`` (``(span glob, metric, seconds)`` in config order) as the newest threshold set unless it
    equals the stored one. Returns True when a set was written.

    The set id is the time in µs times 1000 plus a random 0..999, so two writers never share one (the views read the
    set with the largest id, never a mixture). The views read the compiled per-metric lookup
    (:func:`~.levels.compile_lookup`, table ``llm_level_lookup``), written first; ``llm_level_thresholds`` keeps the
    entries as configured, ending with a marker row whose metric is ``''``, so an empty configuration is a set too.

    Raises:
        ValueError: more wildcard globs for a metric than the views match (the config refuses it first)."""
    wanted = [(s, m, float(x)) for s, m, x in entries]
    if stored_thresholds(store) == wanted and _stored_set_exists(store):
        return False
    set_id = time.time_ns() // 1000 * 1000 + random.randrange(1000)
    n = len(wanted)
    rows = wanted + [("", "", 0.0)]
    lookups = [compile_lookup(wanted, m) for m in METRICS]  # ValueError before anything is written
    store.insert("llm_level_lookup", {
        "SetId": [set_id] * len(METRICS), "Metric": list(METRICS), "ExactNames": [x[0] for x in lookups],
        "ExactSeconds": [x[1] for x in lookups], "Globs": [x[2] for x in lookups],
        "GlobSeconds": [x[3] for x in lookups], "Default": [x[4] for x in lookups]})
    store.insert("llm_level_thresholds", {
        "SetId": [set_id] * (n + 1), "Position": list(range(n + 1)), "Span": [s for s, _, _ in rows],
        "Metric": [m for _, m, _ in rows], "Seconds": [x for _, _, x in rows]})
    log.info("level thresholds updated (%d entries)", n)
    return True


def sync_settings(store, values: dict[str, float]) -> bool:
    """Store ``values`` (key → number) in ``vllm_otel_settings`` where they differ. Returns True when written."""
    current = dict(store.query(f"SELECT Key, argMax(Value, UpdatedAt) FROM {SETTINGS_TABLE} "
                               "WHERE Key IN {keys:Array(String)} GROUP BY Key",
                               parameters={"keys": list(values)}).result_rows)
    changed = {k: repr(float(v)) for k, v in values.items() if current.get(k) != repr(float(v))}
    if not changed:
        return False
    now = dt.datetime.now(dt.timezone.utc)
    store.insert(SETTINGS_TABLE, {"Key": list(changed), "Value": list(changed.values()),
                                  "UpdatedAt": [now] * len(changed)})
    return True


def sync(store, config: AnalyticsConfig) -> bool:
    """:func:`sync_thresholds` and :func:`sync_settings` for ``config``. Returns True when anything was written."""
    wrote = sync_thresholds(store, config.threshold_entries())
    return sync_settings(store, {SETTLE_KEY: config.model_load_settle_seconds,
                                 LOOKBACK_KEY: config.model_load_lookback_seconds,
                                 CAUSE_FACTOR_KEY: config.cause_slow_factor,
                                 CAUSE_SLACK_KEY: config.cause_min_excess_seconds,
                                 BASELINE_SECONDS_KEY: float(config.baseline_seconds),
                                 BASELINE_MIN_KEY: float(config.baseline_min_requests)}) or wrote
