"""Subcommands owned by the collector package: ``collector``, ``dead-letters``, ``migrate``, ``analyzer``, each installed plug-in's commands
(analytics: ``stats``, ``alerts``, ``export``), and the views (``report``, ``top``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the collector subcommands to the root parser's ``sub``."""
    from vllm_otel_collector.cli_collector import register_collector
    from vllm_otel_collector.cli_install import register as register_install
    from vllm_otel_collector.plugins import installed_plugins
    from vllm_otel_collector.views.cli import register as register_views

    register_collector(sub)
    register_install(sub)
    for plugin in installed_plugins():
        register_commands = getattr(plugin, "register_commands", None)
        if callable(register_commands):
            register_commands(sub)
    register_views(sub)
