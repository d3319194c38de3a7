"""Subcommands owned by the collector package: ``collector``, ``stats``, ``alerts``, ``export``, ``report``, ``top``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the collector subcommands to the root parser's ``sub``."""
    from vllm_otel_collector.cli_collector import register_collector

    register_collector(sub)
    from vllm_otel_collector.analytics.cli import register as register_analytics

    register_analytics(sub)
    from vllm_otel_collector.views.cli import register as register_views

    register_views(sub)
