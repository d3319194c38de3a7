"""Versioned schema migrations: SQL templates in ``NNNN_name.sql`` files, recorded in ``schema_migrations``.

Each folder of migrations is a :class:`~vllm_otel_collector.plugins.MigrationSource` with an owner and a version
range: the core's ``store/migrations/`` (0001–0099, :data:`CORE`) and each plug-in's own folder (analytics:
``analytics/migrations/``, 0100–0199). One runner (:func:`migrate`) applies them all in version order; the rows in
``schema_migrations`` are the same whichever folder a version comes from.

File format: statements separated by a line that ends with ``;``. ``--`` comment lines are ignored. Placeholders
(``${name}``, so ClickHouse's own ``{macro}`` braces stay untouched; an unknown one is an error):

* ``${db}`` — the database (already validated as an identifier),
* ``${on_cluster}`` — empty, or ``ON CLUSTER `name``` when a cluster is configured,
* ``${engine_prefix}`` — empty, or ``Replicated`` (so ``${engine_prefix}MergeTree`` becomes ``ReplicatedMergeTree``
  with the server's default replica path) when a cluster is configured,
* ``${ttl_Timestamp}`` / ``${ttl_TimeUnix}`` / ``${ttl_Start}`` — empty, or ``TTL toDateTime(<col>) + toIntervalDay(N)``
  when a TTL in days is configured (named after the column the TTL is computed from),
* ``${traces}``, ``${gauge}``, ``${sum}``, ``${histogram}``, ``${exponential_histogram}``, ``${summary}`` — the
  contrib tables of the
  schema :class:`~vllm_otel_collector.store.schema.Profile`, database-qualified; ``${traces_name}`` the bare name
  (the exporter names its lookup table ``<traces>_trace_id_ts``),
* ``${global:Engine}`` / ``${global:Engine:arg}`` — ``Engine(arg)``, or on a cluster
  ``ReplicatedEngine('/clickhouse/tables/global/{database}/{table}', '{replica}', arg)``: one replication group
  across every shard, for the small tables every node must see alike (level thresholds, settings, the lease),
* ``${attr:NAME}`` / ``${has:NAME}`` — span attribute ``NAME`` of the traces table as a String (``''`` when
  missing) / 1 when present, in the profile's attribute mode (Map or JSON); ``${str:NAME}`` a string literal,
  ``${list:NAME}`` an array literal of strings, ``${attrmap:NAME}`` the listed span attributes as a
  ``Map(String, String)`` without the empty ones, ``${sql:NAME}`` a SQL fragment (its own placeholders filled);
  ``NAME`` is looked up by the folder's ``names`` resolver (the
  analytics plug-in resolves semconv constants, so attribute names are spelled in one place),
* ``${level:VALUE:THRESHOLD}`` — the performance level (``analytics/levels.py`` bands) of the alias ``VALUE``
  against the alias ``THRESHOLD`` (seconds), ``'NONE'`` when the value is NULL or the threshold not positive.

Each statement must be idempotent (``IF NOT EXISTS``) so that a migration interrupted half-way re-runs cleanly.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from vllm_otel_collector.errors import UserError
from vllm_otel_collector.plugins import MigrationSource, plugin_migrations
from vllm_otel_collector.store import schema
from vllm_otel_collector.store.schema import DEFAULT_TABLES, Profile, sql_string
from vllm_otel_collector.store.store import Store

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
CORE_MAX_VERSION = 99  # 0001-0099: collector core tables; plug-ins above (analytics 0100-0199)
CORE = MigrationSource("core", MIGRATIONS_DIR, 1, CORE_MAX_VERSION)
_FILE_RE = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:]+)\}")


@dataclass(frozen=True)
class Migration:
    """One migration file: ``version`` (int from the 4-digit prefix), ``name``, raw ``template`` text."""

    version: int
    name: str
    template: str
    owner: str = "core"
    names: Callable[[str], Any] | None = field(default=None, compare=False, repr=False)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.template.encode()).hexdigest()[:16]

    def render(self, database: str, cluster: str | None = None, ttl_days: int = 0, profile: Profile | None = None,
               names: Callable[[str], Any] | None = None) -> list[str]:
        """Fill the placeholders (module docstring) and split into statements (no trailing ``;``).

        Raises:
            UserError: an unknown placeholder, or a ``NAME`` the resolver does not know.
        """
        prof = profile or Profile()
        db = f"`{database}`"

        def resolve(name: str) -> Any:
            if names is None:
                raise UserError(f"migration {self.version:04d}_{self.name}: no resolver for ${{…:{name}}}")
            try:
                return names(name)
            except (AttributeError, KeyError):
                raise UserError(f"migration {self.version:04d}_{self.name}: unknown name {name!r}") from None

        def fill(match: re.Match) -> str:
            parts = match.group(1).split(":")
            head, args = parts[0], parts[1:]
            if head == "db" and not args:
                return db
            if head == "on_cluster" and not args:
                return f"ON CLUSTER `{cluster}`" if cluster else ""
            if head == "engine_prefix" and not args:
                return "Replicated" if cluster else ""
            if head.startswith("ttl_") and not args:
                return f"TTL toDateTime({head[4:]}) + toIntervalDay({int(ttl_days)})" if ttl_days > 0 else ""
            if head in DEFAULT_TABLES and not args:
                return f"{db}.`{getattr(prof, head)}`"
            if head == "traces_name" and not args:
                return prof.traces
            if head == "global" and 1 <= len(args) <= 2:
                engine, extra = args[0], args[1:]
                if cluster:
                    return (f"Replicated{engine}('/clickhouse/tables/global/{{database}}/{{table}}', '{{replica}}'"
                            + "".join(f", {a}" for a in extra) + ")")
                return f"{engine}({', '.join(extra)})"
            if head in ("attr", "has") and len(args) == 1:
                key = resolve(args[0])
                return (prof.attr if head == "attr" else prof.has)("SpanAttributes", key, prof.traces_attributes)
            if head == "str" and len(args) == 1:
                return sql_string(str(resolve(args[0])))
            if head == "attrmap" and len(args) == 1:
                pairs = ", ".join(f"{sql_string(k)}, {prof.attr('SpanAttributes', k, prof.traces_attributes)}"
                                  for k in resolve(args[0]))
                return f"mapFilter((k, v) -> v != '', map({pairs}))"
            if head == "sql" and len(args) == 1:
                return _PLACEHOLDER.sub(fill, str(resolve(args[0])))
            if head == "list" and len(args) == 1:
                return "[" + ", ".join(sql_string(str(v)) for v in resolve(args[0])) + "]"
            if head == "level" and len(args) == 2:
                v, t = args
                return (f"multiIf({v} IS NULL OR NOT ({t} > 0), 'NONE', {v} / {t} < 0.5, 'EXCELLENT', "
                        f"{v} / {t} <= 1.0, 'GOOD', {v} / {t} <= 1.5, 'SLOW', 'BOTTLENECK')")
            raise UserError(f"migration {self.version:04d}_{self.name}: unknown placeholder ${{{match.group(1)}}}")

        text = "\n".join(line if line.strip().startswith("--") else _PLACEHOLDER.sub(fill, line)
                         for line in self.template.splitlines())
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
            found[version] = Migration(version, m.group(2), path.read_text(encoding="utf-8"), source.owner,
                                       source.names)
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
            sources: Iterable[MigrationSource] | None = None, max_version: int | None = None,
            profile: Profile | None = None, dry_run: list[str] | None = None) -> list[int]:
    """Apply every migration of ``sources`` (default: :func:`all_sources`) not yet recorded; return the versions
    applied now (empty when up to date).

    ``profile``: the contrib tables to serve (:func:`~vllm_otel_collector.store.schema.inspect`); default: the
    profile recorded in the database by an earlier run, else the defaults (our collector's ``otel_*`` tables, Map
    attributes). It is recorded in ``vllm_otel_settings`` once that table exists. ``dry_run``: a list that receives
    every statement that would run (nothing is executed, nothing recorded; returns the versions that would apply).

    ``max_version`` further limits which migrations are applied (``CORE_MAX_VERSION`` = core tables only). The
    "newer schema" check considers every installed folder, applied or not (a database that a plug-in's newer version
    migrated is refused even when that plug-in is disabled here).

    Raises:
        UserError: the database holds a migration newer than any this code knows (a newer collector created it),
            a migration statement fails (message names the version and the first line of the server error), or
            the database's analytics were installed for other tables than ``profile`` names.
    """
    apply = list(all_sources() if sources is None else sources)
    known = apply + [s for s in all_sources() if s.owner not in {a.owner for a in apply}]
    every = load_migrations(known)
    migrations = [m for m in every if m.owner in {a.owner for a in apply}]
    on_cluster = f"ON CLUSTER `{cluster}`" if cluster else ""
    # one replication group across every shard, like the other ${global:...} tables: any node knows the schema
    engine = ("ReplicatedMergeTree('/clickhouse/tables/global/{database}/schema_migrations', '{replica}')" if cluster
              else "MergeTree")
    ddl = (f"CREATE TABLE IF NOT EXISTS schema_migrations {on_cluster} (version UInt32, name String, checksum String, "
           f"applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = {engine} ORDER BY version")
    if dry_run is None:
        store.command(ddl)
    else:
        dry_run.append(ddl)
    done = applied_versions(store)
    before = schema.recorded(store)
    if profile is not None and before is not None and before != profile:
        raise UserError(f"database {store.database!r} serves {_describe(before)}; asked for {_describe(profile)} "
                        f"(one set of tables per database: use another database)")
    prof = profile or before or Profile()
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
        statements = mig.render(store.database, cluster=cluster, ttl_days=ttl_days, profile=prof, names=mig.names)
        if dry_run is not None:
            dry_run.append(f"-- {mig.version:04d}_{mig.name} ({mig.owner})")
            dry_run.extend(statements)
            applied.append(mig.version)
            continue
        for stmt in statements:
            try:
                store.command(stmt)
            except Exception as exc:  # noqa: BLE001 - reported as one line with the migration's name
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise UserError(f"migration {mig.version:04d}_{mig.name} failed: {first}") from None
        store.insert("schema_migrations", {"version": [mig.version], "name": [mig.name], "checksum": [mig.checksum]})
        log.info("applied migration %04d_%s to %s", mig.version, mig.name, store.database)
        applied.append(mig.version)
    if dry_run is None:
        store.forget_column_types()
        if before is None and (applied or done) and schema.settings_exist(store):
            schema.record(store, prof)
    return applied


def _describe(prof: Profile) -> str:
    return (f"traces table {prof.traces!r} ({prof.traces_attributes} attributes), metrics tables "
            f"{prof.gauge!r}/{prof.sum!r}/{prof.histogram!r}/{prof.exponential_histogram!r} "
            f"({prof.metrics_attributes} attributes)")


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
