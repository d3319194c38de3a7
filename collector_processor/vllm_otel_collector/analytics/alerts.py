"""Alert lifecycle: evaluate rules, diff against the stored state, record firing → resolved transitions.

The state of an alert is the ``State`` of its newest ``llm_alerts`` row (per fingerprint), so the store is the one
source of truth: a restarted collector does not re-fire, and several replicas evaluating the same rollups see each
other's transitions (a race can at worst record one transition twice; readers use the newest row).

Each transition is inserted into ``llm_alerts``, logged (WARNING when firing, INFO when resolved), and — when a webhook
URL is configured — POSTed in Alertmanager's webhook payload format (version 4, one POST per evaluation).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from vllm_otel_collector.analytics import evaluate as E
from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.levels import Thresholds
from vllm_otel_collector.analytics.rules import Observation

log = logging.getLogger(__name__)

ALERT_COLUMNS = ("Timestamp", "Fingerprint", "RuleName", "State", "Severity", "Labels", "Value", "Threshold",
                 "WindowSeconds", "Message", "Suggestion", "StartsAt")


@dataclass
class Transition:
    """One state change: ``state`` is ``firing`` or ``resolved``; times are unix seconds."""

    fingerprint: str
    rule: str
    state: str
    severity: str
    labels: dict[str, str]
    value: float
    threshold: float
    window_seconds: int
    message: str
    suggestion: str
    at: float
    starts_at: float


def firing_state(store) -> dict[str, dict[str, Any]]:
    """Currently firing alerts from ``llm_alerts``: fingerprint → {rule, severity, labels, starts_at (unix s)}."""
    sql = ("SELECT Fingerprint, argMax(RuleName, Timestamp), argMax(Severity, Timestamp), argMax(Labels, Timestamp), "
           "toFloat64(argMax(StartsAt, Timestamp)), argMax(State, Timestamp) AS s FROM llm_alerts "
           "GROUP BY Fingerprint HAVING s = 'firing'")
    return {fp: {"rule": r, "severity": sev, "labels": dict(lab), "starts_at": st}
            for fp, r, sev, lab, st, _ in store.query(sql).result_rows}


def diff(observations: list[Observation], firing: dict[str, dict[str, Any]], now: float,
         failed_rules: set[str] = frozenset()) -> list[Transition]:
    """Pure state machine: which alerts start firing and which resolve.

    - an observation that fires and is not firing yet → ``firing`` (starts_at = now);
    - a firing alert whose observation no longer fires → ``resolved``;
    - a firing alert with no observation at all (no data in the window, or its rule was removed) → ``resolved``
      — unless its rule failed to evaluate this time (``failed_rules``), then it stays firing.
    Several observations with one fingerprint count once (firing wins).
    """
    by_fp: dict[str, Observation] = {}
    for o in observations:
        if o.fingerprint not in by_fp or o.firing:
            by_fp[o.fingerprint] = o
    out = []
    for fp, o in sorted(by_fp.items()):
        if o.firing and fp not in firing:
            out.append(Transition(fp, o.rule, "firing", o.severity, o.labels, o.value, o.threshold,
                                  o.window_seconds, o.message, o.suggestion, now, now))
        elif not o.firing and fp in firing:
            out.append(Transition(fp, o.rule, "resolved", o.severity, o.labels, o.value, o.threshold,
                                  o.window_seconds, o.message, "", now, firing[fp]["starts_at"]))
    for fp, st in sorted(firing.items()):
        if fp not in by_fp and st["rule"] not in failed_rules:
            out.append(Transition(fp, st["rule"], "resolved", st["severity"], st["labels"], float("nan"),
                                  float("nan"), 0, "no data in the evaluation window", "", now, st["starts_at"]))
    return out


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def alertmanager_payload(transitions: list[Transition], external_url: str = "") -> dict[str, Any]:
    """Alertmanager webhook payload (version 4) for ``transitions``; ``status`` is ``firing`` if any alert fires.

    Each alert's labels are its rule labels plus ``alertname`` and ``severity``; annotations carry ``summary``
    (the message), ``suggestion``, ``value`` and ``threshold``. Resolved alerts have ``endsAt`` = resolution time,
    firing ones the zero time ``0001-01-01T00:00:00Z`` as Alertmanager sends.
    """
    alerts = []
    for t in transitions:
        labels = {"alertname": t.rule, "severity": t.severity, **t.labels}
        alerts.append({
            "status": t.state, "labels": labels,
            "annotations": {"summary": t.message, "suggestion": t.suggestion, "value": f"{t.value:.6g}",
                            "threshold": f"{t.threshold:.6g}"},
            "startsAt": _iso(t.starts_at),
            "endsAt": _iso(t.at) if t.state == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": external_url, "fingerprint": t.fingerprint,
        })
    common = dict(alerts[0]["labels"]) if alerts else {}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    return {"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0,
            "status": "firing" if any(t.state == "firing" for t in transitions) else "resolved",
            "receiver": "vllm-otel", "groupLabels": {}, "commonLabels": common, "commonAnnotations": {},
            "externalURL": external_url, "alerts": alerts}


class _MemoStore:
    """Read-only view of a Store that answers repeated identical queries from memory (one evaluation round)."""

    def __init__(self, store):
        self._store = store
        self._memo: dict[tuple, Any] = {}

    @property
    def backing_store(self):
        """The wrapped store (for what is looked up once per store, e.g. the schema profile)."""
        return self._store

    def query(self, sql: str, parameters: dict[str, Any] | None = None):
        key = (sql, tuple(sorted((k, repr(v)) for k, v in (parameters or {}).items())))
        if key not in self._memo:
            self._memo[key] = self._store.query(sql, parameters=parameters)
        return self._memo[key]


class AlertManager:
    """Periodic evaluator: ``evaluate(store, now)`` runs every configured rule and records transitions.

    Args:
        config: :class:`AnalyticsConfig` (rules, thresholds, webhook).
        thresholds: level thresholds (built from ``config.levels`` when omitted).
    """

    def __init__(self, config: AnalyticsConfig, thresholds: Thresholds | None = None):
        self.config = config
        self.thresholds = thresholds or Thresholds(config.levels)

    def observe(self, store, now: float) -> tuple[list[Observation], set[str]]:
        """All rules' observations at ``now`` and the names of rules that failed (logged, skipped)."""
        observations, failed = [], set()
        memo = _MemoStore(store)  # rules sharing a window (e.g. the threshold rules) share one query
        for rule in self.config.rules:
            try:
                observations.extend(E.evaluate(rule, memo, now, self.thresholds))
            except Exception as exc:  # noqa: BLE001 - one broken rule must not stop the others
                failed.add(rule.name)
                log.error("alert rule %s failed: %s", rule.name, str(exc).splitlines()[0] if str(exc) else exc)
        return observations, failed

    def evaluate(self, store, now: float) -> list[Transition]:
        """Evaluate, store transitions in ``llm_alerts``, log them, POST the webhook; returns the transitions."""
        observations, failed = self.observe(store, now)
        transitions = diff(observations, firing_state(store), now, failed)
        if not transitions:
            return []
        ms = [int(t.at * 1000) for t in transitions]
        cols = {
            "Timestamp": [dt.datetime.fromtimestamp(m / 1000, dt.timezone.utc) for m in ms],
            "Fingerprint": [t.fingerprint for t in transitions], "RuleName": [t.rule for t in transitions],
            "State": [t.state for t in transitions], "Severity": [t.severity for t in transitions],
            "Labels": [t.labels for t in transitions],
            "Value": [t.value for t in transitions], "Threshold": [t.threshold for t in transitions],
            "WindowSeconds": [t.window_seconds for t in transitions], "Message": [t.message for t in transitions],
            "Suggestion": [t.suggestion for t in transitions],
            "StartsAt": [dt.datetime.fromtimestamp(t.starts_at, dt.timezone.utc) for t in transitions],
        }
        store.insert("llm_alerts", cols)
        for t in transitions:
            labels = ",".join(f"{k}={v}" for k, v in sorted(t.labels.items()))
            if t.state == "firing":
                log.warning("ALERT FIRING %s [%s] {%s}: %s%s", t.rule, t.severity, labels, t.message,
                            f" — {t.suggestion}" if t.suggestion else "")
            else:
                log.info("alert resolved %s {%s}: %s", t.rule, labels, t.message)
        if self.config.webhook_url:
            self.post_webhook(transitions)
        return transitions

    def post_webhook(self, transitions: list[Transition]) -> bool:
        """POST the Alertmanager payload; failures are logged (never raised). Returns True on a 2xx answer."""
        try:
            resp = httpx.post(self.config.webhook_url, json=alertmanager_payload(transitions),
                              timeout=self.config.webhook_timeout_seconds)
        except httpx.HTTPError as exc:
            log.error("alert webhook %s failed: %s", self.config.webhook_url, exc)
            return False
        if resp.status_code // 100 != 2:
            log.error("alert webhook %s answered HTTP %s", self.config.webhook_url, resp.status_code)
            return False
        return True
