"""Subcommands owned by the inference package: ``model prepare``, ``demo``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the inference subcommands to the root parser's ``sub``."""
