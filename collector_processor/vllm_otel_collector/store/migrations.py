"""Versioned schema migrations: SQL templates in ``NNNN_name.sql`` files, recorded in ``schema_migrations``.

Each folder of migrations is a :class:`~vllm_otel_collector.plugins.MigrationSource` with an owner and a version
range: the core's ``store/migrations/`` (0001–0099, :data:`CORE`) and each plug-in's own folder (analytics:
``analytics/migrations/``, 0100–0199). One runner (:func:`migrate`) applies them all in version order; the rows in
``schema_migrations`` are the same whichever folder a version comes from.

File format: statements separated by a line that ends with ``;``. ``--`` comment lines are ignored. Placeholders
(``string.Template`` syntax, so ClickHouse's own ``{macro}`` braces stay untouched):

* ``${db}`` — the database (already validated as an identifier),
* ``${on_cluster}`` — empty, or ``ON CLUSTER `name``` when a cluster is configured,
* ``${engine_prefix}`` — empty, or ``Replicated`` (so ``${engine_prefix}MergeTree`` becomes ``ReplicatedMergeTree``
  with the server's default replica path) when a cluster is configured,
* ``${ttl_Timestamp}`` / ``${ttl_TimeUnix}`` / ``${ttl_Start}`` — empty, or ``TTL toDateTime(<col>) + toIntervalDay(N)``
  when a TTL in days is configured (named after the column the TTL is computed from).

Each statement must be idempotent (``IF NOT EXISTS``) so that a migration interrupted half-way re-runs cleanly.
"""

from __future__ import annotations

import hashlib
import logging
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from vllm_otel_collector.errors import UserError
from vllm_otel_collector.plugins import MigrationSource, plugin_migrations
from vllm_otel_collector.store.store import Store

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
CORE_MAX_VERSION = 99  # 0001-0099: collector core tables; plug-ins above (analytics 0100-0199)
CORE = MigrationSource("core", MIGRATIONS_DIR, 1, CORE_MAX_VERSION)
_FILE_RE = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")
_TTL_RE = re.compile(r"\$\{ttl_([A-Za-z]+)\}")


@dataclass(frozen=True)
class Migration:
    """One migration file: ``version`` (int from the 4-digit prefix), ``name``, raw ``template`` text."""

    version: int
    name: str
    template: str
    owner: str = "core"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.template.encode()).hexdigest()[:16]

    def render(self, database: str, cluster: str | None = None, ttl_days: int = 0) -> list[str]:
        """Fill the placeholders and split into statements (no trailing ``;``)."""

        def ttl(match: re.Match) -> str:
            return f"TTL toDateTime({match.group(1)}) + toIntervalDay({int(ttl_days)})" if ttl_days > 0 else ""

        text = _TTL_RE.sub(ttl, self.template)
        text = string.Template(text).substitute(
            db=f"`{database}`",
            on_cluster=f"ON CLUSTER `{cluster}`" if cluster else "",
            engine_prefix="Replicated" if cluster else "",
        )
        statements, current = [], []
        for line in text.splitlines():
            if line.strip().startswith("--"):
                continue
            current.append(line)
            if line.rstrip().endswith(";"):
                stmt = "\n".join(current).rstrip().rstrip(";").strip()
                if stmt:
                    statements.append(stmt)
                current = []
        tail = "\n".join(current).strip()
        if tail:
            statements.append(tail)
        return statements


def all_sources() -> list[MigrationSource]:
    """The core's folder and every installed plug-in's (enabled or not)."""
    return [CORE, *plugin_migrations()]


def load_migrations(sources: MigrationSource | Iterable[MigrationSource] | None = None) -> list[Migration]:
    """The migrations of ``sources`` (default: :func:`all_sources`), sorted by version.

    Raises:
        UserError: a file not named ``NNNN_name.sql``, a version outside its folder's range, or a duplicate version.
    """
    if sources is None:
        sources = all_sources()
    elif isinstance(sources, MigrationSource):
        sources = [sources]
    found: dict[int, Migration] = {}
    for source in sources:
        for path in sorted(Path(source.directory).glob("*.sql")):
            m = _FILE_RE.match(path.name)
            if not m:
                raise UserError(f"migration file {path.name!r} is not named NNNN_name.sql")
            version = int(m.group(1))
            if not source.owns(version):
                raise UserError(f"migration {path.name} is outside the {source.owner} range "
                                f"{source.first:04d}-{source.last:04d}")
            if version in found:
                raise UserError(f"two migrations with version {version:04d}: {found[version].name} and {m.group(2)}")
            found[version] = Migration(version, m.group(2), path.read_text(encoding="utf-8"), source.owner)
    return [found[v] for v in sorted(found)]


def applied_versions(store: Store) -> dict[int, str]:
    """Versions recorded in ``schema_migrations`` (version → name); empty when the table does not exist yet."""
    exists = store.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'schema_migrations'",
        parameters={"db": store.database},
    ).result_rows[0][0]
    if not exists:
        return {}
    rows = store.query("SELECT version, name FROM schema_migrations").result_rows
    return {int(v): n for v, n in rows}


def _newer(done: dict[int, str], known: list[MigrationSource], migrations: list[Migration]) -> list[int]:
    """Recorded versions this code does not know: above the newest file of the folder whose range holds them, or
    in no known range and above every known file."""
    newest = max((m.version for m in migrations), default=0)
    out = []
    for v in done:
        owner = next((s for s in known if s.owns(v)), None)
        mine = [m.version for m in migrations if owner is not None and m.owner == owner.owner]
        if v > (max(mine, default=owner.first - 1) if owner is not None else newest):
            out.append(v)
    return sorted(out)


def migrate(store: Store, cluster: str | None = None, ttl_days: int = 0,
            sources: Iterable[MigrationSource] | None = None, max_version: int | None = None) -> list[int]:
    """Apply every migration of ``sources`` (default: :func:`all_sources`) not yet recorded; return the versions
    applied now (empty when up to date).

    ``max_version`` further limits which migrations are applied (``CORE_MAX_VERSION`` = core tables only). The
    "newer schema" check considers every installed folder, applied or not (a database that a plug-in's newer version
    migrated is refused even when that plug-in is disabled here).

    Raises:
        UserError: the database holds a migration newer than any this code knows (a newer collector created it),
            or a migration statement fails (message names the version and the first line of the server error).
    """
    apply = list(all_sources() if sources is None else sources)
    known = apply + [s for s in all_sources() if s.owner not in {a.owner for a in apply}]
    every = load_migrations(known)
    migrations = [m for m in every if m.owner in {a.owner for a in apply}]
    on_cluster = f"ON CLUSTER `{cluster}`" if cluster else ""
    engine = "ReplicatedMergeTree" if cluster else "MergeTree"
    store.command(
        f"CREATE TABLE IF NOT EXISTS schema_migrations {on_cluster} (version UInt32, name String, checksum String, "
        f"applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = {engine} ORDER BY version"
    )
    done = applied_versions(store)
    newer = _newer(done, known, every)
    if newer:
        raise UserError(
            f"database {store.database!r} has schema version {newer[-1]:04d} ({done[newer[-1]]}), newer than this "
            f"collector knows (up to {max((m.version for m in every), default=0):04d}); upgrade vllm-otel or use "
            f"another database"
        )
    applied = []
    for mig in migrations:
        if mig.version in done or (max_version is not None and mig.version > max_version):
            continue
        for stmt in mig.render(store.database, cluster=cluster, ttl_days=ttl_days):
            try:
                store.command(stmt)
            except Exception as exc:  # noqa: BLE001 - reported as one line with the migration's name
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise UserError(f"migration {mig.version:04d}_{mig.name} failed: {first}") from None
        store.insert("schema_migrations", {"version": [mig.version], "name": [mig.name], "checksum": [mig.checksum]})
        log.info("applied migration %04d_%s to %s", mig.version, mig.name, store.database)
        applied.append(mig.version)
    store.forget_column_types()
    return applied


def schema_is_current(store: Store, sources: Iterable[MigrationSource] | None = None,
                      max_version: int | None = None) -> bool:
    """True when every migration of ``sources`` (default: all installed; up to ``max_version``) is recorded (used by
    ``/readyz``)."""
    try:
        done = applied_versions(store)
    except Exception:  # noqa: BLE001 - readiness probe
        return False
    return all(m.version in done for m in load_migrations(sources)
               if max_version is None or m.version <= max_version)
