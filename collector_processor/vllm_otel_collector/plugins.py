"""Collector plug-ins: the protocols a plug-in implements and their loading through an entry-point group.

A plug-in is an object registered under the entry-point group ``vllm_otel.collector_plugins`` (like vLLM's own
``vllm.general_plugins``)::

    [project.entry-points."vllm_otel.collector_plugins"]
    analytics = "vllm_otel_collector.analytics:PLUGIN"

It implements :class:`CollectorPlugin`: a ``name``, an optional ``migrations`` folder (:class:`MigrationSource`, its
own version range, applied by the core's runner), ``create(config) -> PluginParts`` — the processors, periodic
jobs and read-API routes it adds — and optionally ``register_commands(subparsers)`` for its CLI commands. The collector loads every installed plug-in except those disabled by its config
(``load_analytics: false`` / ``--no-analytics`` leaves the ``analytics`` plug-in out: no processors, no routes, no
migrations applied). Without any plug-in the collector stores raw OTLP only.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "vllm_otel.collector_plugins"

Columns = dict[str, list]
#: ``(interval_seconds, job(store, now_unix_seconds))``: run on the scheduler thread every ``interval_seconds``; an
#: exception is logged, counted in ``processor_errors_total`` and the job runs again at its next interval.
PeriodicJob = tuple[float, Callable[[Any, float], Any]]
#: ``handler(store, query) -> (http_status, json_body)``; ``query`` maps URL query parameters to their last value.
#: ``ValueError``/``UserError`` → 400 ``{"error": message}``; any other exception → 500 (logged).
RouteHandler = Callable[[Any, dict[str, str]], tuple[int, object]]


@dataclass(frozen=True)
class SpanInterest:
    """Which spans a processor needs: any span carrying one of ``attribute_keys``, or whose name makes
    ``span_name(name)`` true. Declared as ``processor.interest``; a processor without it gets every span.

    The C hot path uses it to convert only those spans to Python columns (``otlp.native.NativeTraceBatch.rows_for``).
    """

    attribute_keys: frozenset[str] = frozenset()
    span_name: Callable[[str], bool] = lambda name: False


@runtime_checkable
class Processor(Protocol):
    """Turns a batch of stored spans into rows of the plug-in's own tables, in the same flush as the spans.

    Attributes:
        interest: optional :class:`SpanInterest`; when every processor has one, a natively converted batch hands over
            at least the spans matching any of them (possibly more). Without it the processor sees every span.
    """

    def process(self, traces: Columns) -> list[tuple[str, Columns]]:
        """``traces``: ``otel_traces`` columns as inserted (column name → list, one value per span; the mapping is
        in :mod:`vllm_otel_collector.otlp.convert`: ``Timestamp`` int ns, ids lowercase hex, attributes
        ``dict[str, str]``, ``Duration`` int ns, ...).

        Returns ``[(table, columns), ...]`` inserted after ``otel_traces`` with the batch's deduplication token (each
        ``columns`` maps column name → list of equal length). An exception is logged and counted
        (``processor_errors_total``); the spans are stored anyway, this processor's rows of the batch are lost. A
        failing insert of its rows is retried 5 times, then dropped (counted): derived rows never block raw spans.
        """
        ...


@dataclass(frozen=True)
class MigrationSource:
    """A folder of ``NNNN_name.sql`` migrations owned by ``owner`` (``core`` or a plug-in's name), restricted to
    versions ``first..last`` (inclusive). Versions are recorded in ``schema_migrations`` like any other; ranges of
    different owners must not overlap (core 1-99, analytics 100-199).

    ``names`` resolves the ``NAME`` of the ``${attr:NAME}``/``${str:NAME}``/``${list:NAME}`` placeholders of its
    templates (see :mod:`vllm_otel_collector.store.migrations`); None when its templates use none.

    Raises (when loaded by :func:`vllm_otel_collector.store.migrations.load_migrations`): ``UserError`` for a file
    outside the range or a duplicate version.
    """

    owner: str
    directory: Path
    first: int
    last: int
    names: Callable[[str], Any] | None = field(default=None, compare=False)

    def owns(self, version: int) -> bool:
        return self.first <= version <= self.last


#: ``fn(store)``: run once after the migrations by every process that serves the database with a plug-in's config
#: (collector, ``vllm-otel analyzer``, ``vllm-otel migrate``); e.g. the analytics writes its level thresholds there.
SetupStep = Callable[[Any], Any]


@dataclass
class PluginParts:
    """What a plug-in adds to one collector: setup steps, processors, periodic jobs, read-API routes (path →
    handler)."""

    setup: list[SetupStep] = field(default_factory=list)
    #: run only by ``vllm-otel migrate``, after ``setup`` (e.g. apply the configured retention once, for databases
    #: no long-running vllm-otel process serves)
    on_migrate: list[SetupStep] = field(default_factory=list)
    processors: list[Processor] = field(default_factory=list)
    periodic: list[PeriodicJob] = field(default_factory=list)
    routes: dict[str, RouteHandler] = field(default_factory=dict)


@runtime_checkable
class CollectorPlugin(Protocol):
    """The object an entry point of ``vllm_otel.collector_plugins`` names.

    Attributes:
        name: the entry point's name (``analytics``); the config switch that disables it refers to it.
        migrations: its :class:`MigrationSource`, or None when it has no tables.
    """

    name: str
    migrations: MigrationSource | None

    def create(self, config: Any) -> PluginParts:
        """Build the parts for a collector with ``config`` (:class:`vllm_otel_collector.config.Config`; the plug-in
        reads its own section). Raises ``UserError`` for an invalid plug-in configuration (one line)."""
        ...

    # Optional: ``register_commands(subparsers)`` adds the plug-in's ``vllm-otel`` subcommands (argparse
    # sub-parsers whose ``func(args) -> int`` runs the command); called by ``vllm_otel_collector.commands``.


def enabled_plugins(config: Any) -> list[CollectorPlugin]:
    """The installed plug-ins ``config`` enables (all but ``analytics`` when ``config.load_analytics`` is false)."""
    found = [p for p in installed_plugins() if config.load_analytics or p.name != "analytics"]
    if config.load_analytics and "analytics" not in {p.name for p in found}:
        log.warning("analytics plug-in not found under the entry-point group %s (stale *.egg-info on sys.path, or "
                    "vllm-otel not installed): raw OTLP storage only", ENTRY_POINT_GROUP)
    return found


@functools.cache
def installed_plugins() -> tuple[CollectorPlugin, ...]:
    """Every plug-in registered under :data:`ENTRY_POINT_GROUP`, sorted by name (looked up once per process). A
    plug-in that fails to import is logged and skipped (the collector still runs raw storage)."""
    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            found.append(ep.load())
        except Exception:  # noqa: BLE001 - a broken plug-in must not stop raw ingestion
            log.exception("collector plug-in %r (%s) could not be loaded", ep.name, ep.value)
    return tuple(found)


def plugin_migrations() -> list[MigrationSource]:
    """Migration folders of every installed plug-in (for the runner's "newer schema" check and for tools)."""
    return [p.migrations for p in installed_plugins() if p.migrations is not None]
