"""Processor analytics (issue 5): derived rows, performance levels, statistics, alert rules, rollups, read API.

A collector plug-in (:mod:`vllm_otel_collector.plugins`): registered as ``analytics`` under the entry-point group
``vllm_otel.collector_plugins`` (:data:`PLUGIN`); ``load_analytics: false`` / ``--no-analytics`` leaves it out.
:func:`plugins` builds its parts:

- ``setup``: :func:`~.sync.sync` — the level thresholds and model-load settings the ClickHouse objects read;
- ``on_migrate``: the per-table retention, applied once by ``vllm-otel migrate``;
- ``periodic``: alert evaluation (``evaluation_interval_seconds``), retention check (5 min);
- ``routes``: ``/api/v1/stats``, ``/api/v1/alerts``, ``/api/v1/requests``, ``/api/v1/model_loads``, ``/api/v1/engine``,
  ``/api/v1/startup`` (engine starts in progress, :mod:`.startup`).

No processors: ``llm_requests``, ``span_levels``, ``llm_startup_spans`` and ``llm_model_loads`` are derived by
ClickHouse objects its migrations install (materialized views on the traces table, a refreshable view), so every
pipeline that writes the contrib tables gets them (issue 20).

Schema: its own migrations, ``analytics/migrations/`` (versions 0100–0199, applied by the core's runner; their
``${attr:NAME}`` placeholders resolve through :mod:`.sqlnames`). Configuration: :class:`~.config.AnalyticsConfig`
(the collector config's ``analytics:`` mapping; ``analytics: {file: path.yaml}`` reads a separate file).
See ``docs/analytics.md``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vllm_otel_collector.analytics.alerts import AlertManager
from vllm_otel_collector.analytics.api import make_routes
from vllm_otel_collector.analytics.cli import register as register_cli
from vllm_otel_collector.analytics.engine import engine_route
from vllm_otel_collector.analytics.startup import startup_route
from vllm_otel_collector.analytics.config import AnalyticsConfig
from vllm_otel_collector.analytics.levels import Thresholds
from vllm_otel_collector.analytics.retention import apply_retention
from vllm_otel_collector.analytics.sqlnames import resolve
from vllm_otel_collector.analytics.sync import sync
from vllm_otel_collector.plugins import MigrationSource, PluginParts

log = logging.getLogger(__name__)

__all__ = ["AnalyticsConfig", "AlertManager", "PLUGIN", "Thresholds", "plugins"]

MIGRATIONS = MigrationSource("analytics", Path(__file__).with_name("migrations"), 100, 199, names=resolve)


def plugins(config: Any = None) -> dict[str, Any]:
    """Build the plug-in parts from the collector config (or ``None``/dict/path/``AnalyticsConfig``).

    Returns ``{"setup": [fn(store)], "periodic": [(interval_s, job(store, now_s)), ...], "routes": {path: handler}}``.
    Raises ``UserError`` for an invalid analytics config.
    """
    cfg = AnalyticsConfig.load(config)
    cluster = getattr(config, "cluster", None)
    thresholds = Thresholds(cfg.levels)
    alerts = AlertManager(cfg, thresholds)

    def evaluate_alerts(store, now: float) -> None:
        alerts.evaluate(store, now)

    def sync_settings(store) -> None:
        sync(store, cfg)

    def retention(store, now: float) -> None:
        apply_retention(store, cfg.retention_days.model_dump(), cluster=cluster)

    return {
        "setup": [sync_settings],
        "on_migrate": [lambda store: retention(store, 0.0)],
        "periodic": [(cfg.evaluation_interval_seconds, evaluate_alerts), (300.0, retention)],
        "routes": {**make_routes(cfg.stats_window_seconds, cfg.sla_seconds), "/api/v1/engine": engine_route,
                   "/api/v1/startup": startup_route},
    }


class AnalyticsPlugin:
    """The :class:`~vllm_otel_collector.plugins.CollectorPlugin` the entry point names."""

    name = "analytics"
    migrations = MIGRATIONS

    def create(self, config: Any) -> PluginParts:
        """Parts for a collector with ``config`` (its ``analytics:`` section). Raises ``UserError``."""
        return PluginParts(**plugins(config))

    def register_commands(self, sub) -> None:
        """``vllm-otel stats``, ``alerts``, ``export``."""
        register_cli(sub)


PLUGIN = AnalyticsPlugin()
