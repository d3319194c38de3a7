"""``vllm-otel migrate``: install the analytics onto a database that any pipeline fills.

It inspects the contrib tables that are there (:func:`vllm_otel_collector.store.schema.inspect`: ``DESC TABLE``,
not assumptions), creates those that are missing (the exporter's columns, Map attributes), applies every
migration not yet recorded in ``schema_migrations`` — the analytics' materialized views go onto the traces table
found — records the schema profile, writes the analytics config's thresholds and applies its retention. It is
idempotent (a second run applies nothing), prints the SQL instead with ``dry_run``, and refuses a table it cannot
serve with a one-line reason before changing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vllm_otel_collector.plugins import enabled_plugins
from vllm_otel_collector.store import CORE, Store, migrate
from vllm_otel_collector.store.schema import Profile, TableShape, inspect


@dataclass
class InstallReport:
    """What ``migrate`` found and did: the profile served, the tables as found, the versions applied (or that would
    apply), and with ``dry_run`` the SQL statements in order."""

    profile: Profile
    shapes: list[TableShape]
    applied: list[int]
    statements: list[str] = field(default_factory=list)


def install(store: Store, config, *, tables: dict[str, str] | None = None, attributes: str | None = None,
            cluster: str | None = None, ttl_days: int = 0, dry_run: bool = False) -> InstallReport:
    """Set ``store``'s database up for the enabled plug-ins of ``config`` (:class:`~vllm_otel_collector.config.Config`).

    Args:
        tables: contrib table names by kind (``traces``, ``gauge``, ``sum``, ``histogram``,
            ``exponential_histogram``) where they differ from the exporter's defaults.
        attributes: ``map`` or ``json`` — only needed to assert what existing tables hold; new tables are Map.
        cluster: run DDL ``ON CLUSTER`` (Replicated engines; see docs/scale-out.md).
        ttl_days: TTL of the tables created (0: none; per-table retention comes from the analytics config).
        dry_run: collect the statements instead of running them; nothing is written.

    Raises:
        UserError: a table that cannot be served, a database already set up for other tables, an unreachable store
            or a failing statement (one line each); nothing is changed by a refusal found during inspection.
    """
    profile, shapes = inspect(store, tables, attributes)
    plugins = enabled_plugins(config)
    sources = [CORE] + [p.migrations for p in plugins if p.migrations is not None]
    statements: list[str] | None = [] if dry_run else None
    applied = migrate(store, cluster=cluster, ttl_days=ttl_days, sources=sources, profile=profile,
                      dry_run=statements)
    if not dry_run:
        parts = [p.create(config) for p in plugins]
        for step in [s for part in parts for s in part.setup] + [s for part in parts for s in part.on_migrate]:
            step(store)
    return InstallReport(profile, shapes, applied, statements or [])
