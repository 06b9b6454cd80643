"""Connections, cache hit ratio, size and slow queries of the current PostgreSQL database."""

from __future__ import annotations

from typing import Any

from ..partitions.status import status as partitions_status
from ._base import MB, check_positive, percent, rounded
from ._pg import PgConnections, query_or_none

STATS_QUERY = """
SELECT (SELECT count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity
         WHERE datname = current_database()),
       (SELECT count(*) FILTER (WHERE state = 'idle') FROM pg_stat_activity
         WHERE datname = current_database()),
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),
       current_setting('max_connections')::int,
       (SELECT blks_hit FROM pg_stat_database WHERE datname = current_database()),
       (SELECT blks_read FROM pg_stat_database WHERE datname = current_database()),
       pg_database_size(current_database()),
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'),
       current_database(),
       (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
       (SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()),
       (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database())
"""

# Statements of this database whose mean time so far exceeds the threshold.
STATEMENTS_QUERY = """
SELECT count(*) FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND mean_exec_time > %(ms)s
"""

# Without pg_stat_statements: what is running slowly right now (not us).
ACTIVITY_QUERY = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database()
  AND state = 'active'
  AND pid <> pg_backend_pid()
  AND now() - query_start > %(ms)s * interval '1 millisecond'
"""


class PostgresCollector:
    """Health of the database the DSN names, from the ``pg_stat_*`` views.

    Args:
        source: a DSN (we open and own a small pool; call :meth:`close`) or
            a :class:`PgConnections` shared with other collectors.
        slow_query_ms: what counts as slow, in milliseconds (default 100).

    ``collect()`` returns ``connections_active``, ``connections_idle`` and
    ``connections_total`` (this database, from ``pg_stat_activity``,
    counting our own), ``connections_max`` (``max_connections``, server
    wide), ``cache_hit_ratio`` (percent of block reads served from shared
    buffers since the statistics were reset), ``db_size_mb``, and
    ``slow_queries_count`` with ``slow_queries_source``:

    * ``"pg_stat_statements"`` when that extension is installed in this
      database and loaded: statements whose mean execution time exceeds the
      threshold, since its statistics were last reset;
    * ``"pg_stat_activity"`` otherwise: queries running right now for longer
      than the threshold. A snapshot, not a history.

    And ``partitions``: the layout of ``metrics`` (``"plain"`` or
    ``"partitioned"``, with the partitions ready ahead and the rows in the
    DEFAULT partition; docs/partitions.md).
    """

    SLOW_QUERY_MS = 100.0

    def __init__(
        self, source: str | PgConnections, *, slow_query_ms: float = SLOW_QUERY_MS
    ) -> None:
        self._slow_ms = check_positive("slow_query_ms", slow_query_ms)
        self._owned = not isinstance(source, PgConnections)
        self._connections = source if isinstance(source, PgConnections) else PgConnections(source)

    def collect(self) -> dict[str, Any]:
        """Read the statistics; raises :class:`DatabaseError` when PostgreSQL fails."""
        with self._connections.connection() as conn, conn.cursor() as cur:
            return self.read(cur)[0]

    def read(self, cur: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """:meth:`collect`'s keys from an open cursor, and the raw counters of the same read.

        The counters (``blks_hit``, ``blks_read``, ``xact_commit``,
        ``xact_rollback``) count since the statistics were last reset;
        ``stats_reset`` (ISO time, or None) changes when they are, and
        ``database`` names the database. Raises ``psycopg2.Error``.
        """
        cur.execute(STATS_QUERY)
        row = cur.fetchone()
        active, idle, total, max_conn, hit, read, size, has_statements = row[:8]
        database, commits, rollbacks, stats_reset = row[8:]
        slow, source = None, "pg_stat_activity"
        if has_statements:
            # Installed but not in shared_preload_libraries, the view raises.
            found = query_or_none(cur, STATEMENTS_QUERY, {"ms": self._slow_ms})
            if found is not None:
                slow, source = found[0], "pg_stat_statements"
        if slow is None:
            cur.execute(ACTIVITY_QUERY, {"ms": self._slow_ms})
            (slow,) = cur.fetchone()
        partitions = partitions_status(cur)
        hit, read = hit or 0, read or 0
        counters = {
            "blks_hit": hit,
            "blks_read": read,
            "xact_commit": commits or 0,
            "xact_rollback": rollbacks or 0,
            "stats_reset": stats_reset.isoformat() if stats_reset is not None else None,
            "database": database,
        }
        return {
            "connections_active": active,
            "connections_idle": idle,
            "connections_total": total,
            "connections_max": max_conn,
            "cache_hit_ratio": percent(hit, hit + read),
            "db_size_mb": rounded(size / MB),
            "slow_queries_count": slow,
            "slow_queries_source": source,
            "partitions": partitions,
        }, counters

    def close(self) -> None:
        """Close the pool this collector opened from a DSN (a shared one is left open)."""
        if self._owned:
            self._connections.close()
