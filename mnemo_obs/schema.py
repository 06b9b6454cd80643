"""The ``metrics`` schema: the SQL files shipped in ``mnemo_obs/sql`` and how to apply them."""

from __future__ import annotations

from importlib import resources

import psycopg2

from . import db
from .errors import ConfigurationError, DatabaseError

# Taken for the length of the migration transaction, so two processes that
# migrate at once (several app workers starting together) run one after the
# other instead of racing on CREATE TABLE IF NOT EXISTS. The value is
# arbitrary but fixed: "mnemo" in ASCII.
_ADVISORY_LOCK_KEY = 0x6D6E656D6F

METRIC_TYPES = ("api", "redis", "postgres", "system", "cache")


def migration_files() -> list[tuple[str, str]]:
    """Return ``(name, sql)`` for every shipped migration, in the order they apply."""
    folder = resources.files("mnemo_obs") / "sql"
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [(entry.name, entry.read_text(encoding="utf-8")) for entry in files]


def apply_schema(
    dsn: str | None = None, *, partitioned: bool = False, ahead_days: int | None = None
) -> list[str]:
    """Create the ``metrics`` table, its indexes and comments if they are missing.

    Idempotent: running it on a migrated database changes nothing, whatever
    its layout. All files apply in one transaction, so a failure leaves the
    database as it was.

    Args:
        dsn: libpq connection string or URL; defaults to ``$MNEMO_OBS_DSN``.
        partitioned: create ``metrics`` (and its rollups) partitioned by day
            instead (``mnemo-obs migrate --partitioned``; docs/partitions.md):
            the same columns, checks, defaults, comments and indexes, a primary
            key of ``(id, timestamp)``, a DEFAULT partition, and partitions
            made ahead. On a database already partitioned, it makes any
            partition missing ahead; a plain ``metrics`` table is refused
            (``mnemo-obs migrate --to-partitioned`` converts one).
        ahead_days: with ``partitioned``, the days of partitions kept ready
            after the current one (default 7, or the number chosen before).

    Returns:
        The names of the migration files applied.

    Raises:
        ConfigurationError: no DSN, or one libpq cannot parse.
        DatabaseError: the server is unreachable or refused a statement
            (for example, missing rights), with a one-line message.
    """
    from .partitions import build, layout  # the partitioned layout's own modules

    if not isinstance(partitioned, bool):
        raise ConfigurationError(f"partitioned must be True or False, got {partitioned!r}")
    if ahead_days is not None and (
        not partitioned
        or isinstance(ahead_days, bool)
        or not isinstance(ahead_days, int)
        or not 1 <= ahead_days <= layout.MAX_AHEAD_DAYS
    ):
        raise ConfigurationError(
            f"ahead_days must be an int from 1 to {layout.MAX_AHEAD_DAYS}, with partitioned=True; "
            f"got {ahead_days!r}"
        )
    dsn = db.resolve_dsn(dsn)
    files = migration_files()
    conn = db.connect(dsn, application_name="mnemo_obs.migrate")
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
            kinds = {spec.table: layout.relkind(cur, spec.table) for spec in layout.SPECS}
            if partitioned and "r" in kinds.values():
                plain = next(table for table, kind in kinds.items() if kind == "r")
                raise DatabaseError(
                    f'the "{plain}" table on {db.describe(dsn)} is a plain table: convert it '
                    "with `mnemo-obs migrate --to-partitioned`, which copies its rows while "
                    "apps keep writing"
                )
            for _name, sql in files:
                cur.execute(sql)
            if partitioned:
                cur.execute("SET LOCAL lock_timeout = '5s'")
                if None in kinds.values():
                    build.make_partitioned(cur, [s for s in layout.SPECS if kinds[s.table] is None])
                layout.create_settings(cur, ahead_days)
                days = layout.ahead_days(cur)
                for spec in layout.SPECS:
                    build.create_missing(cur, spec, build.ahead(cur, spec, days))
    except psycopg2.Error as exc:
        raise DatabaseError(
            f"migration failed on {db.describe(dsn)}: {db.explain(exc, dsn)}"
        ) from exc
    finally:
        conn.close()
    return [name for name, _sql in files]
