"""Versioned schema migrations: SQL templates in ``store/migrations/NNNN_name.sql``, recorded in ``schema_migrations``.

File format: statements separated by a line that ends with ``;``. ``--`` comment lines are ignored. Placeholders
(``string.Template`` syntax, so ClickHouse's own ``{macro}`` braces stay untouched):

* ``${db}`` — the database (already validated as an identifier),
* ``${on_cluster}`` — empty, or ``ON CLUSTER `name``` when a cluster is configured,
* ``${engine_prefix}`` — empty, or ``Replicated`` (so ``${engine_prefix}MergeTree`` becomes ``ReplicatedMergeTree``
  with the server's default replica path) when a cluster is configured,
* ``${ttl_Timestamp}`` / ``${ttl_TimeUnix}`` / ``${ttl_Start}`` — empty, or ``TTL toDateTime(<col>) + toIntervalDay(N)``
  when a TTL in days is configured (named after the column the TTL is computed from).

Versions 0001–0099 belong to the collector core, 0100+ to analytics; every file in the directory is applied in version
order. Each statement must be idempotent (``IF NOT EXISTS``) so that a migration interrupted half-way re-runs cleanly.
"""

from __future__ import annotations

import hashlib
import logging
import re
import string
from dataclasses import dataclass
from pathlib import Path

from vllm_otel_collector.errors import UserError
from vllm_otel_collector.store.store import Store

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE_RE = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")
_TTL_RE = re.compile(r"\$\{ttl_([A-Za-z]+)\}")


@dataclass(frozen=True)
class Migration:
    """One migration file: ``version`` (int from the 4-digit prefix), ``name``, raw ``template`` text."""

    version: int
    name: str
    template: str

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


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All ``NNNN_name.sql`` files in ``directory``, sorted by version. Raises ``UserError`` on duplicate versions."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if not m:
            raise UserError(f"migration file {path.name!r} is not named NNNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise UserError(f"two migrations with version {version:04d}: {found[version].name} and {m.group(2)}")
        found[version] = Migration(version, m.group(2), path.read_text(encoding="utf-8"))
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


CORE_MAX_VERSION = 99  # 0001-0099: collector core tables; 0100+: analytics


def migrate(store: Store, cluster: str | None = None, ttl_days: int = 0,
            directory: Path = MIGRATIONS_DIR, max_version: int | None = None) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now (empty when up to date).

    ``max_version`` limits which migrations are applied (``CORE_MAX_VERSION`` = core tables only, used when the
    analytics plug-in is disabled); the "newer schema" check still considers every migration file.

    Raises:
        UserError: the database holds a migration newer than any this code knows (a newer collector created it),
            or a migration statement fails (message names the version and the first line of the server error).
    """
    migrations = load_migrations(directory)
    known = {m.version for m in migrations}
    on_cluster = f"ON CLUSTER `{cluster}`" if cluster else ""
    engine = "ReplicatedMergeTree" if cluster else "MergeTree"
    store.command(
        f"CREATE TABLE IF NOT EXISTS schema_migrations {on_cluster} (version UInt32, name String, checksum String, "
        f"applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = {engine} ORDER BY version"
    )
    done = applied_versions(store)
    newer = sorted(v for v in done if v > max(known, default=0))
    if newer:
        raise UserError(
            f"database {store.database!r} has schema version {newer[-1]:04d} ({done[newer[-1]]}), newer than this "
            f"collector knows (up to {max(known, default=0):04d}); upgrade vllm-otel or use another database"
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


def schema_is_current(store: Store, directory: Path = MIGRATIONS_DIR, max_version: int | None = None) -> bool:
    """True when every known migration (up to ``max_version``) is recorded (used by ``/readyz``)."""
    try:
        done = applied_versions(store)
    except Exception:  # noqa: BLE001 - readiness probe
        return False
    return all(m.version in done for m in load_migrations(directory)
               if max_version is None or m.version <= max_version)
