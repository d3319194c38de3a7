"""Processor analytics (issue 5): derived rows, performance levels, statistics, alert rules, rollups, read API.

The collector loads this package as its plug-in: :func:`plugins` returns

- ``processors``: :class:`~.derive.AnalyticsProcessor` — ``llm_requests`` and ``span_levels`` rows per span batch;
- ``periodic``: alert evaluation (``evaluation_interval_seconds``), model-load assembly (30 s), retention check (5 min);
- ``routes``: ``/api/v1/stats``, ``/api/v1/alerts``, ``/api/v1/requests``, ``/api/v1/model_loads``, ``/api/v1/engine``.

Schema: migrations ``0100``–``0103`` in ``store/migrations``. Configuration: :class:`~.config.AnalyticsConfig`
(the collector config's ``analytics:`` mapping; ``analytics: {file: path.yaml}`` reads a separate file).
See ``docs/analytics.md``.
"""

from __future__ import annotations

import logging
from typing import Any

from vllm_otel_collector.analytics.alerts import AlertManager
from vllm_otel_collector.analytics.api import make_routes
from vllm_otel_collector.analytics.engine import engine_route
from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.derive import AnalyticsProcessor
from vllm_otel_collector.analytics.levels import Thresholds
from vllm_otel_collector.analytics.loads import assemble_pending
from vllm_otel_collector.analytics.retention import apply_retention

log = logging.getLogger(__name__)

__all__ = ["AnalyticsConfig", "AnalyticsProcessor", "AlertManager", "Thresholds", "plugins"]


def plugins(config: Any = None) -> dict[str, Any]:
    """Build the plug-in parts from the collector config (or ``None``/dict/path/``AnalyticsConfig``).

    Returns ``{"processors": [...], "periodic": [(interval_s, job(store, now_s)), ...], "routes": {path: handler}}``.
    Raises ``UserError`` for an invalid analytics config.
    """
    cfg = AnalyticsConfig.load(config)
    cluster = getattr(config, "cluster", None)
    thresholds = Thresholds(cfg.levels)
    alerts = AlertManager(cfg, thresholds)

    def evaluate_alerts(store, now: float) -> None:
        alerts.evaluate(store, now)

    def assemble_model_loads(store, now: float) -> None:
        assemble_pending(store, now, thresholds, cfg.model_load_settle_seconds, cfg.model_load_lookback_seconds)

    def retention(store, now: float) -> None:
        apply_retention(store, cfg.retention_days.model_dump(), cluster=cluster)

    return {
        "processors": [AnalyticsProcessor(thresholds)],
        "periodic": [(cfg.evaluation_interval_seconds, evaluate_alerts), (30.0, assemble_model_loads),
                     (300.0, retention)],
        "routes": {**make_routes(cfg.stats_window_seconds, cfg.sla_seconds), "/api/v1/engine": engine_route},
    }
