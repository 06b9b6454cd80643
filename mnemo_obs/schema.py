"""The ``metrics`` schema: the SQL files shipped in ``mnemo_obs/sql`` and how to apply them."""

from __future__ import annotations

from importlib import resources

import psycopg2

from . import db
from .errors import DatabaseError

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


def apply_schema(dsn: str | None = None) -> list[str]:
    """Create the ``metrics`` table, its indexes and comments if they are missing.

    Idempotent: running it on a migrated database changes nothing. All files
    apply in one transaction, so a failure leaves the database as it was.

    Args:
        dsn: libpq connection string or URL; defaults to ``$MNEMO_OBS_DSN``.

    Returns:
        The names of the migration files applied.

    Raises:
        ConfigurationError: no DSN, or one libpq cannot parse.
        DatabaseError: the server is unreachable or refused a statement
            (for example, missing rights), with a one-line message.
    """
    dsn = db.resolve_dsn(dsn)
    files = migration_files()
    conn = db.connect(dsn, application_name="mnemo_obs.migrate")
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
            for _name, sql in files:
                cur.execute(sql)
    except psycopg2.Error as exc:
        raise DatabaseError(
            f"migration failed on {db.describe(dsn)}: {db.explain(exc, dsn)}"
        ) from exc
    finally:
        conn.close()
    return [name for name, _sql in files]
